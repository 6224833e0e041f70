//! Workflow runs and jobs of a repository, as the poller and the truth check read them: the
//! jobs of a run (all pages) and one job by id.

use super::client::{Call, Client, PER_PAGE};
use super::error::Result;
use super::poll::Polled;
use super::ratelimit::Priority;
use super::runners::Repo;
use super::time;
use super::webhook::{Action, JobUpdate};
use mayfly_core::{ForgeKind, JobKey, JobStatus, Labels};
use reqwest::Method;
use serde::Deserialize;

/// A workflow run, as much of it as finding its jobs needs.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct WorkflowRun {
    pub id: u64,
    pub status: Option<String>,
    #[serde(default)]
    pub run_attempt: Option<u32>,
    #[serde(default)]
    pub head_branch: Option<String>,
    /// Changes whenever one of the run's jobs does: an unchanged run needs no job request.
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// One job of a workflow run.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct WorkflowJob {
    pub id: u64,
    pub run_id: u64,
    #[serde(default)]
    pub run_attempt: Option<u32>,
    /// `queued`, `waiting`, `pending`, `requested`, `in_progress`, `completed`, …
    pub status: String,
    /// An open string: GitHub adds conclusions now and then.
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub runner_id: Option<u64>,
    #[serde(default)]
    pub runner_name: Option<String>,
    #[serde(default)]
    pub runner_group_id: Option<u64>,
    #[serde(default)]
    pub workflow_name: Option<String>,
    #[serde(default)]
    pub head_branch: Option<String>,
    /// When GitHub queued the job (RFC 3339).
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    /// When the job finished, however it ended (RFC 3339).
    #[serde(default)]
    pub completed_at: Option<String>,
}

impl WorkflowJob {
    /// mayfly's three states; `None` for a status this code does not know (leave the job alone).
    pub fn job_status(&self) -> Option<JobStatus> {
        match self.status.as_str() {
            "queued" | "waiting" | "pending" | "requested" => Some(JobStatus::Queued),
            "in_progress" => Some(JobStatus::InProgress),
            "completed" => Some(JobStatus::Completed),
            _ => None,
        }
    }

    /// The job in a webhook's terms, so polls, confirmations and webhooks take one path into
    /// the store. `None` for a status this code does not know.
    pub fn update(&self, repo: &Repo) -> Option<JobUpdate> {
        let status = self.job_status()?;
        Some(JobUpdate {
            action: Action::for_status(status),
            key: self.key(repo),
            status,
            run_id: self.run_id,
            run_attempt: self.run_attempt,
            labels: self.labels.clone(),
            conclusion: self.conclusion.clone(),
            runner_name: self.runner_name.clone(),
            workflow_name: self.workflow_name.clone(),
            created_at: self.created_at.as_deref().and_then(time::parse),
            started_at: self.started_at.as_deref().and_then(time::parse),
        })
    }

    pub fn key(&self, repo: &Repo) -> JobKey {
        JobKey {
            forge: ForgeKind::Github,
            scope: repo.to_string().into(),
            id: self.id,
        }
    }
}

impl Client {
    /// Every job of a run's latest attempt, across all pages. Essential: in poll mode this is
    /// how queued jobs are found at all.
    pub async fn run_jobs(&self, repo: &Repo, run_id: u64) -> Result<Vec<WorkflowJob>> {
        let url = self.url(&format!(
            "/repos/{}/{}/actions/runs/{run_id}/jobs?filter=latest&per_page={PER_PAGE}",
            repo.owner, repo.name
        ));
        let first = self
            .send(&Call::new(Method::GET, url, Priority::Essential))
            .await?;
        self.get_all(first, "jobs", Priority::Essential).await
    }

    /// One job: the truth check before acting on a webhook or deleting an idle runner.
    pub async fn job(&self, repo: &Repo, job_id: u64) -> Result<WorkflowJob> {
        let url = self.job_url(repo, job_id);
        self.send(&Call::new(Method::GET, url, Priority::Housekeeping))
            .await?
            .json()
    }

    /// One job, asked with the ETag of the last answer for it: a job unchanged since costs a
    /// 304 and no primary budget. A finished job's ETag is forgotten (it will not be asked
    /// about again), so the client keeps ETags only for jobs in flight.
    pub async fn job_if_changed(&self, repo: &Repo, job_id: u64) -> Result<Polled<WorkflowJob>> {
        let url = self.job_url(repo, job_id);
        let mut call = Call::new(Method::GET, url, Priority::Housekeeping);
        call.conditional = true;
        let reply = match self.send(&call).await {
            Ok(reply) => reply,
            Err(e) => {
                if e == super::Error::NotFound {
                    self.forget_etag(&call.url);
                }
                return Err(e);
            }
        };
        if reply.status == 304 {
            return Ok(Polled::Unchanged);
        }
        let job: WorkflowJob = reply.json()?;
        if job.job_status() == Some(JobStatus::Completed) {
            self.forget_etag(&call.url);
        } else {
            self.remember_etag(&call.url, &reply.headers);
        }
        Ok(Polled::Changed(job))
    }

    /// Forgets what the client remembers of a job (its ETag), once nobody will ask about it.
    pub fn forget_job(&self, repo: &Repo, job_id: u64) {
        self.forget_etag(&self.job_url(repo, job_id));
    }

    fn job_url(&self, repo: &Repo, job_id: u64) -> String {
        self.url(&format!(
            "/repos/{}/{}/actions/jobs/{job_id}",
            repo.owner, repo.name
        ))
    }
}
