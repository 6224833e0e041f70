//! Finds jobs by polling, for setups without a public webhook endpoint and to catch lost
//! webhooks. Per repository and pass: the queued and in-progress run lists, asked conditionally
//! (an idle repository costs two 304s and no budget); jobs fetched only for runs that changed
//! or left both lists (finished or cancelled), one request per run and never one per job.

use super::client::Client;
use super::error::{Error, Result};
use super::jobs::WorkflowRun;
use super::poll::{Polled, RunStatus};
use super::runners::Repo;
use super::sync::{RunCursor, RunSeen};
use super::webhook::JobUpdate;
use std::collections::HashMap;

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
    /// Runs whose jobs must be read again on the next poll, whatever the lists say (their
    /// jobs could not be stored).
    refetch: Vec<u64>,
    /// The cursor changed since [`Poller::take_cursor`] last asked.
    dirty: bool,
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

    /// Picks up where an earlier process left off: `repo`'s runs as it last saw them, so the
    /// first poll fetches the jobs of changed runs only.
    pub fn restore(&mut self, repo: &str, cursor: RunCursor) {
        self.state.entry(repo.to_string()).or_default().cursor = cursor;
    }

    /// `repo`'s cursor if it changed since the last call, to persist.
    pub fn take_cursor(&mut self, repo: &str) -> Option<RunCursor> {
        let state = self.state.get_mut(repo)?;
        std::mem::take(&mut state.dirty).then(|| state.cursor.clone())
    }

    /// The jobs of `run` are read again on `repo`'s next poll: what the last one found could
    /// not be kept (the store failed).
    pub fn refetch(&mut self, repo: &str, run: u64) {
        let state = self.state.entry(repo.to_string()).or_default();
        if !state.refetch.contains(&run) {
            state.refetch.push(run);
        }
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
        let mut runs: Vec<u64> = std::mem::take(&mut state.refetch);
        if changed {
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
            state.dirty = true;
            for run in changes.fetch.iter().chain(&changes.gone) {
                if !runs.contains(run) {
                    runs.push(*run);
                }
            }
        }
        for (n, run) in runs.iter().enumerate() {
            match self.client.run_jobs(repo, *run).await {
                Ok(jobs) => found.extend(jobs.iter().filter_map(|j| j.update(repo))),
                Err(e) => {
                    // Ask again next poll for this run and every one not read yet: they must not
                    // be lost because the lists look unchanged then.
                    if let Some(state) = self.state.get_mut(&repo.to_string()) {
                        state.refetch.extend(&runs[n..]);
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}
