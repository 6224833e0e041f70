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
use super::time;
use super::webhook::JobUpdate;
use mayfly_core::Time;
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
    /// A light poll ([`Poller::queued_runs`]) updated a list without moving the cursor: the
    /// next full poll compares the lists with the cursor even if both answer 304.
    behind: bool,
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
            let read = match self.changed_runs(repo).await {
                Ok(runs) => {
                    let ids: Vec<u64> = runs.iter().map(|r| r.id).collect();
                    self.read(repo, &ids).await
                }
                Err(e) => Err(e),
            };
            match read {
                Ok(jobs) => report.jobs.extend(jobs),
                Err(e) => {
                    tracing::debug!(repo = %repo, error = %e, "poll failed");
                    report.failed.push((repo.to_string(), e));
                }
            }
        }
        report
    }

    /// The first half of a poll: `repo`'s runs whose jobs may hold news — runs new or changed
    /// since the last poll (with GitHub's `updated_at`), runs that left both lists (finished
    /// or cancelled) and runs marked to read again (without). Two conditional requests: a
    /// quiet repository answers 304 twice and returns nothing. The cursor moves on: a run
    /// returned here that the caller chooses not to read (the store has its news already) is
    /// not returned again until it changes.
    pub async fn changed_runs(&mut self, repo: &Repo) -> Result<Vec<RunToRead>> {
        let mut changed = false;
        let mut lists = Vec::new();
        for status in [RunStatus::Queued, RunStatus::InProgress] {
            let answer = self.client.runs(repo, status).await?;
            lists.push((status.as_str(), answer));
        }
        let state = self.state.entry(repo.to_string()).or_default();
        changed |= std::mem::take(&mut state.behind);
        for (status, answer) in lists {
            if let Polled::Changed(runs) = answer {
                state.lists.insert(status, runs);
                changed = true;
            }
        }
        let mut runs: Vec<RunToRead> = std::mem::take(&mut state.refetch)
            .into_iter()
            .map(|id| RunToRead {
                id,
                updated_at: None,
                new: false,
            })
            .collect();
        if changed {
            let listed: HashMap<u64, Option<Time>> = state
                .lists
                .values()
                .flatten()
                .map(|r| (r.id, r.updated_at.as_deref().and_then(time::parse)))
                .collect();
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
            for id in changes.fetch.iter().chain(&changes.gone) {
                if !runs.iter().any(|r| r.id == *id) {
                    runs.push(RunToRead {
                        id: *id,
                        updated_at: listed.get(id).copied().flatten(),
                        new: changes.new.contains(id),
                    });
                }
            }
        }
        Ok(runs)
    }

    /// A light poll for a repository whose webhooks are trusted: its queued runs only (one
    /// conditional request, a 304 while nothing was queued or left the queue), returned whole
    /// for the caller to read those the store has no news of. The cursor stays where it is:
    /// runs that started or finished are the webhooks' news (and the truth check's), and the
    /// next full poll picks up from the cursor.
    pub async fn queued_runs(&mut self, repo: &Repo) -> Result<Vec<RunToRead>> {
        let answer = self.client.runs(repo, RunStatus::Queued).await?;
        let Polled::Changed(runs) = answer else {
            return Ok(Vec::new());
        };
        let state = self.state.entry(repo.to_string()).or_default();
        let before: Vec<u64> = state
            .lists
            .get(RunStatus::Queued.as_str())
            .map(|l| l.iter().map(|r| r.id).collect())
            .unwrap_or_default();
        let out = runs
            .iter()
            .map(|r| RunToRead {
                id: r.id,
                updated_at: r.updated_at.as_deref().and_then(time::parse),
                new: !before.contains(&r.id),
            })
            .collect();
        state.lists.insert(RunStatus::Queued.as_str(), runs);
        state.behind = true;
        Ok(out)
    }

    /// The second half of a poll: the jobs of `runs` of `repo`, one request per run. A run
    /// that could not be read, and every one after it, is read again on the next poll.
    pub async fn read(&mut self, repo: &Repo, runs: &[u64]) -> Result<Vec<JobUpdate>> {
        let mut found = Vec::new();
        for (n, run) in runs.iter().enumerate() {
            match self.client.run_jobs(repo, *run).await {
                Ok(jobs) => found.extend(jobs.iter().filter_map(|j| j.update(repo))),
                Err(e) => {
                    // They must not be lost because the lists look unchanged then.
                    let state = self.state.entry(repo.to_string()).or_default();
                    state.refetch.extend(&runs[n..]);
                    return Err(e);
                }
            }
        }
        Ok(found)
    }
}

/// A run whose jobs a poll may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunToRead {
    pub id: u64,
    /// GitHub's `updated_at` for a listed run; `None` for a run that left the lists (its end
    /// time is unknown) or is read again.
    pub updated_at: Option<Time>,
    /// Not listed by the last poll: new work (its `queued` webhook should have arrived).
    pub new: bool,
}
