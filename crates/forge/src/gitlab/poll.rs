//! Finds jobs by polling, for setups without a reachable webhook endpoint and to catch lost
//! Job Hooks. Per project and pass: one `GET /projects/:id/jobs?scope[]=created&scope[]=pending
//! &scope[]=running&per_page=100` (more pages only past 100 active jobs); only jobs that are
//! new or changed become updates; a job that left the list is read once to learn how it ended.
//!
//! GitLab's job lists carry no ETag to ask conditionally, and every request counts against the
//! per-minute budget, so the cheapest unchanged answer is that one request: an idle project
//! costs exactly one call a pass, and nothing reaches the store.

use super::client::Client;
use super::error::Error;
use super::jobs::{Job, JobScope};
use super::projects::Project;
use super::webhook::JobUpdate;
use mayfly_core::{ForgeKind, JobKey, JobStatus};
use std::collections::HashMap;

/// The scopes asked each pass: the jobs that need or use a runner.
pub const SCOPES: [JobScope; 3] = [JobScope::Created, JobScope::Pending, JobScope::Running];

/// What one pass over the projects found.
#[derive(Debug, Default)]
pub struct PollReport {
    /// New jobs, jobs whose status changed, and jobs that left the lists (with their end).
    pub jobs: Vec<JobUpdate>,
    /// Projects (full path) that could not be read this pass: asked again next pass.
    pub failed: Vec<(String, Error)>,
    /// Calls sent this pass.
    pub calls: u64,
}

/// A job as a poll found it, in the webhook's terms, so both take one path into the store.
pub fn job_update(project: &Project, job: &Job) -> Option<JobUpdate> {
    let status = job.job_status()?;
    let time = |t: &Option<String>| t.as_deref().and_then(super::time::parse);
    Some(JobUpdate {
        key: JobKey {
            forge: ForgeKind::Gitlab,
            scope: project.path_with_namespace.as_str().into(),
            id: job.id,
        },
        status,
        gitlab_status: job.status.clone(),
        project_id: project.id,
        pipeline_id: job.pipeline.as_ref().map_or(0, |p| p.id),
        labels: Some(job.labels()),
        conclusion: (status == JobStatus::Completed).then(|| job.status.clone()),
        failure_reason: job
            .failure_reason
            .clone()
            .filter(|_| status == JobStatus::Completed),
        runner_id: job.runner.as_ref().map(|r| r.id),
        runner_name: job.runner.as_ref().and_then(|r| r.description.clone()),
        job_name: Some(job.name.clone()),
        created_at: time(&job.created_at),
        started_at: time(&job.started_at),
        finished_at: time(&job.finished_at),
    })
}

pub struct Poller {
    client: Client,
    projects: Vec<Project>,
    /// Per project id: the active jobs of the last answer and their status.
    seen: HashMap<u64, HashMap<u64, String>>,
}

impl Poller {
    pub fn new(client: Client, projects: Vec<Project>) -> Poller {
        Poller {
            client,
            projects,
            seen: HashMap::new(),
        }
    }

    pub fn projects(&self) -> &[Project] {
        &self.projects
    }

    /// One pass over every project. Errors are per project: one failing project does not keep
    /// the others from being polled.
    pub async fn poll(&mut self) -> PollReport {
        self.poll_where(|_| true).await
    }

    /// [`Poller::poll`], for the projects `due` picks only.
    pub async fn poll_where(&mut self, due: impl Fn(&Project) -> bool) -> PollReport {
        self.poll_knowing(due, |_| true).await
    }

    /// [`Poller::poll_where`], reading a job that left the lists only when `open` says its end
    /// is not known yet (a Job Hook may have told it already): the caller's store decides.
    pub async fn poll_knowing(
        &mut self,
        due: impl Fn(&Project) -> bool,
        open: impl Fn(u64) -> bool,
    ) -> PollReport {
        let mut report = PollReport::default();
        for project in self.projects.clone().iter().filter(|p| due(p)) {
            if let Err(e) = self.poll_project(project, &open, &mut report).await {
                tracing::debug!(project = %project.path_with_namespace, error = %e, "poll failed");
                report.failed.push((project.path_with_namespace.clone(), e));
            }
        }
        report
    }

    async fn poll_project(
        &mut self,
        project: &Project,
        open: &impl Fn(u64) -> bool,
        report: &mut PollReport,
    ) -> Result<(), Error> {
        report.calls += 1;
        let jobs = self.client.project_jobs(project.id, &SCOPES).await?;
        let before = self.seen.remove(&project.id).unwrap_or_default();
        let mut now: HashMap<u64, String> = HashMap::with_capacity(jobs.len());
        for job in &jobs {
            if before.get(&job.id) != Some(&job.status)
                && let Some(u) = job_update(project, job)
            {
                report.jobs.push(u);
            }
            now.insert(job.id, job.status.clone());
        }
        // Jobs that left the active lists ended (or wait for a person): one read each, once.
        let mut gone: Vec<u64> = before
            .keys()
            .filter(|id| !now.contains_key(id) && open(**id))
            .copied()
            .collect();
        gone.sort_unstable();
        let mut result = Ok(());
        for id in gone {
            report.calls += 1;
            match self.client.job(project.id, id).await {
                Ok(job) => report.jobs.extend(job_update(project, &job)),
                Err(Error::NotFound) => {}
                Err(e) => {
                    // Ask again next pass: keep it among the seen.
                    now.insert(id, before.get(&id).cloned().unwrap_or_default());
                    result = Err(e);
                }
            }
        }
        self.seen.insert(project.id, now);
        result
    }
}
