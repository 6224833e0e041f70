//! Finds jobs by polling, for setups without a public webhook endpoint and to catch lost
//! webhooks. Per repository and pass: the queued and in-progress run lists, asked conditionally
//! (an idle repository costs two 304s and no budget); jobs fetched only for runs that changed
//! or left both lists (finished or cancelled), one request per run and never one per job.

use super::client::Client;
use super::error::{Error, Result};
use super::jobs::{WorkflowJob, WorkflowRun};
use super::poll::{Polled, RunStatus};
use super::runners::Repo;
use super::sync::{RunCursor, RunSeen};
use super::time;
use super::webhook::{Action, JobUpdate};
use std::collections::HashMap;

/// A job as a poll found it, in the webhook's terms, so both take one path into the store.
fn job_update(repo: &Repo, job: &WorkflowJob) -> Option<JobUpdate> {
    let status = job.job_status()?;
    Some(JobUpdate {
        action: Action::for_status(status),
        key: job.key(repo),
        status,
        run_id: job.run_id,
        run_attempt: job.run_attempt,
        labels: job.labels.clone(),
        conclusion: job.conclusion.clone(),
        runner_name: job.runner_name.clone(),
        workflow_name: job.workflow_name.clone(),
        created_at: job.created_at.as_deref().and_then(time::parse),
        started_at: job.started_at.as_deref().and_then(time::parse),
    })
}

/// What one pass over the repositories found.
#[derive(Debug, Default)]
pub struct PollReport {
    /// Jobs of runs that changed, finished or were cancelled since the last pass.
    pub jobs: Vec<JobUpdate>,
    /// Repositories whose lists could not be read this pass (they are asked again next pass).
    pub failed: Vec<(String, Error)>,
}

#[derive(Default)]
struct RepoState {
    cursor: RunCursor,
    /// The last answer per list, reused when the next answer is a 304.
    lists: HashMap<&'static str, Vec<WorkflowRun>>,
}

pub struct Poller {
    client: Client,
    repos: Vec<Repo>,
    state: HashMap<String, RepoState>,
}

impl Poller {
    pub fn new(client: Client, repos: Vec<Repo>) -> Poller {
        Poller {
            client,
            repos,
            state: HashMap::new(),
        }
    }

    pub fn repos(&self) -> &[Repo] {
        &self.repos
    }

    /// One pass over every repository. Errors are per repository: one failing repository does
    /// not keep the others from being polled.
    pub async fn poll(&mut self) -> PollReport {
        self.poll_where(|_| true).await
    }

    /// [`Poller::poll`], for the repositories `due` picks only.
    pub async fn poll_where(&mut self, due: impl Fn(&Repo) -> bool) -> PollReport {
        let mut report = PollReport::default();
        for repo in self.repos.clone().iter().filter(|r| due(r)) {
            if let Err(e) = self.poll_repo(repo, &mut report.jobs).await {
                tracing::debug!(repo = %repo, error = %e, "poll failed");
                report.failed.push((repo.to_string(), e));
            }
        }
        report
    }

    async fn poll_repo(&mut self, repo: &Repo, found: &mut Vec<JobUpdate>) -> Result<()> {
        let mut changed = false;
        let mut lists = Vec::new();
        for status in [RunStatus::Queued, RunStatus::InProgress] {
            let answer = self.client.runs(repo, status).await?;
            lists.push((status.as_str(), answer));
        }
        let state = self.state.entry(repo.to_string()).or_default();
        for (status, answer) in lists {
            if let Polled::Changed(runs) = answer {
                state.lists.insert(status, runs);
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        let now: Vec<RunSeen> = state
            .lists
            .values()
            .flatten()
            .map(|r| RunSeen {
                id: r.id,
                status: r.status.clone().unwrap_or_default(),
                updated_at: r.updated_at.clone().unwrap_or_default(),
            })
            .collect();
        let changes = state.cursor.update(&now);
        let runs: Vec<u64> = changes.fetch.iter().chain(&changes.gone).copied().collect();
        for (n, run) in runs.iter().enumerate() {
            match self.client.run_jobs(repo, *run).await {
                Ok(jobs) => found.extend(jobs.iter().filter_map(|j| job_update(repo, j))),
                Err(e) => {
                    // Ask again next pass for this run and every one not read yet: they must not
                    // look unchanged then.
                    if let Some(state) = self.state.get_mut(&repo.to_string()) {
                        for r in &runs[n..] {
                            state.cursor.forget(*r);
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}
