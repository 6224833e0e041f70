//! The poller's cheap question, "which runs are queued or in progress?", asked with conditional
//! requests: an unchanged answer is a 304, which costs no primary budget.

use super::client::{Call, Client, PER_PAGE};
use super::error::Result;
use super::jobs::WorkflowRun;
use super::ratelimit::Priority;
use super::runners::Repo;
use reqwest::Method;

/// The run states worth polling for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Queued,
    InProgress,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::InProgress => "in_progress",
        }
    }
}

/// A conditional read's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Polled<T> {
    /// Same as the last answer to this request (304): keep what you have.
    Unchanged,
    Changed(T),
}

impl Client {
    /// The repository's runs in `status`, newest first. The first page is asked conditionally,
    /// with the ETag of the last answer; it carries `total_count` and the newest runs, so an
    /// unchanged first page stands for an unchanged list. Finding queued work serves jobs, so
    /// this is not postponed when the budget runs low.
    pub async fn runs(&self, repo: &Repo, status: RunStatus) -> Result<Polled<Vec<WorkflowRun>>> {
        let url = self.url(&format!(
            "/repos/{}/{}/actions/runs?status={}&per_page={PER_PAGE}",
            repo.owner,
            repo.name,
            status.as_str()
        ));
        let mut call = Call::new(Method::GET, url, Priority::Essential);
        call.conditional = true;
        let first = self.send(&call).await?;
        if first.status == 304 {
            return Ok(Polled::Unchanged);
        }
        let headers = first.headers.clone();
        let runs = self
            .get_all(first, "workflow_runs", Priority::Essential)
            .await?;
        // Only now: had a later page failed, the next poll must not answer "unchanged".
        self.remember_etag(&call.url, &headers);
        Ok(Polled::Changed(runs))
    }
}
