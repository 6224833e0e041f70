//! Jobs of a project: the pending ones (the demand), one job (the cheap confirmation of its
//! status), and a job's tags, fetched at most once per job because Job Hooks do not carry them.

use super::client::{Call, Client, PER_PAGE};
use super::error::Result;
use super::ratelimit::Priority;
use mayfly_core::{JobStatus, Labels};
use reqwest::Method;
use serde::Deserialize;

/// The `scope[]` values of `GET /projects/:id/jobs` mayfly asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobScope {
    Created,
    Pending,
    Running,
}

impl JobScope {
    pub fn as_str(self) -> &'static str {
        match self {
            JobScope::Created => "created",
            JobScope::Pending => "pending",
            JobScope::Running => "running",
        }
    }
}

/// A job status GitLab did not have when this was written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown GitLab job status {0:?}")]
pub struct UnknownStatus(pub String);

/// What a GitLab job status means to mayfly: queued (it needs a runner now), in progress,
/// completed; `None` for a job that waits for an earlier stage, a resource group, a person or a
/// schedule (`created`, `waiting_for_resource`, `manual`, `scheduled`), which is no demand yet.
pub fn job_status(gitlab_status: &str) -> std::result::Result<Option<JobStatus>, UnknownStatus> {
    Ok(Some(match gitlab_status {
        // `created` (a later stage's job, waiting for the earlier ones) and
        // `waiting_for_resource` (for its resource group) take no runner yet, and may never:
        // they are demand once they turn `pending`.
        "pending" | "preparing" => JobStatus::Queued,
        "running" | "canceling" => JobStatus::InProgress,
        "success" | "failed" | "canceled" | "skipped" => JobStatus::Completed,
        "created" | "waiting_for_resource" | "manual" | "scheduled" => return Ok(None),
        other => return Err(UnknownStatus(other.chars().take(64).collect())),
    }))
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PipelineRef {
    pub id: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RunnerRef {
    pub id: u64,
    #[serde(default)]
    pub description: Option<String>,
}

/// A job as `GET /projects/:id/jobs[/:job_id]` shows it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Job {
    pub id: u64,
    pub status: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub stage: String,
    #[serde(default)]
    pub tag_list: Vec<String>,
    #[serde(default)]
    pub pipeline: Option<PipelineRef>,
    #[serde(default)]
    pub runner: Option<RunnerRef>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub failure_reason: Option<String>,
}

impl Job {
    pub fn labels(&self) -> Labels {
        Labels::new(&self.tag_list)
    }

    /// See [`job_status`]; an unknown status reads as `None`.
    pub fn job_status(&self) -> Option<JobStatus> {
        job_status(&self.status).ok().flatten()
    }
}

impl Client {
    /// The project's jobs in `scopes` (`scope[]=…`), newest first, across pages. Finding
    /// queued work serves jobs, so this is not postponed when the budget runs low. The tags of
    /// every job seen are remembered, so `job_tags` costs nothing for them.
    pub async fn project_jobs(&self, project: u64, scopes: &[JobScope]) -> Result<Vec<Job>> {
        let mut query = format!("per_page={PER_PAGE}");
        for s in scopes {
            query.push_str("&scope%5B%5D=");
            query.push_str(s.as_str());
        }
        let url = self.url(&format!("/projects/{project}/jobs?{query}"));
        let jobs: Vec<Job> = self.list(url, Priority::Essential).await?;
        for j in &jobs {
            self.remember_tags(j.id, &j.labels());
        }
        Ok(jobs)
    }

    /// One job: the cheap confirmation of its status (`GET /projects/:id/jobs/:job_id`).
    pub async fn job(&self, project: u64, id: u64) -> Result<Job> {
        let url = self.url(&format!("/projects/{project}/jobs/{id}"));
        let job: Job = self
            .send(&Call::new(Method::GET, url, Priority::Essential))
            .await?
            .json()?;
        self.remember_tags(job.id, &job.labels());
        Ok(job)
    }

    /// The job's tags (`tag_list`), which route it to a pool: asked at most once per job, as
    /// tags never change; a job already seen in a list or read costs nothing.
    pub async fn job_tags(&self, project: u64, id: u64) -> Result<Labels> {
        if let Some(tags) = self.cached_tags(id) {
            return Ok(tags);
        }
        Ok(self.job(project, id).await?.labels())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_statuses_map_to_mayflys() {
        assert_eq!(job_status("created"), Ok(None));
        assert_eq!(job_status("pending"), Ok(Some(JobStatus::Queued)));
        assert_eq!(job_status("running"), Ok(Some(JobStatus::InProgress)));
        for done in ["success", "failed", "canceled", "skipped"] {
            assert_eq!(job_status(done), Ok(Some(JobStatus::Completed)), "{done}");
        }
        assert_eq!(job_status("manual"), Ok(None));
        assert_eq!(
            job_status("exploded"),
            Err(UnknownStatus("exploded".into()))
        );
    }
}
