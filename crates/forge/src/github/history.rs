//! A repository's finished work: its completed workflow runs created in a time window, and
//! their jobs. `mayfly estimate --from-github` turns them into a trace; the controller never asks.

use super::client::{Call, Client, PER_PAGE};
use super::error::{Error, Result};
use super::jobs::{WorkflowJob, WorkflowRun};
use super::ratelimit::Priority;
use super::runners::Repo;
use mayfly_core::Time;
use reqwest::Method;
use serde::Deserialize;
use std::collections::BTreeSet;

/// GitHub yields at most this many runs for a filtered list (`created`, `status`), whatever
/// `total_count` says; a window that holds more is asked for in halves.
pub const SEARCH_LIMIT: u64 = 1000;

/// How many runs' jobs are asked for at once. The client's limiter caps requests in flight
/// too; this only bounds the tasks waiting on it.
const CONCURRENT_RUNS: usize = 4;

/// The completed runs of a window and all their jobs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// Completed runs created in the window.
    pub runs: usize,
    /// The jobs of their latest attempts.
    pub jobs: Vec<WorkflowJob>,
    /// Runs GitHub counted but would not list: more than the search limit created within one
    /// second. Zero in practice; reported rather than hidden.
    pub unlisted: u64,
}

#[derive(Deserialize)]
struct Count {
    total_count: u64,
}

impl Client {
    /// Every completed run of `repo` created from `since` until before `until` (whole seconds),
    /// newest first. `created` and `status` make the list a search capped at 1,000 runs, so a
    /// window that is full is split in two until each half fits. Returns the runs and how many
    /// could not be listed.
    pub async fn completed_runs(
        &self,
        repo: &Repo,
        since: Time,
        until: Time,
    ) -> Result<(Vec<WorkflowRun>, u64)> {
        let first =
            since.millis().div_euclid(1000) + i64::from(since.millis().rem_euclid(1000) > 0);
        let last =
            until.millis().div_euclid(1000) - i64::from(until.millis().rem_euclid(1000) == 0);
        let mut windows = vec![(first, last)];
        let mut runs = Vec::new();
        let mut seen = BTreeSet::new();
        let mut unlisted = 0;
        while let Some((a, b)) = windows.pop() {
            if a > b {
                continue;
            }
            let url = self.url(&format!(
                "/repos/{}/{}/actions/runs?status=completed&created={}..{}&per_page={PER_PAGE}",
                repo.owner,
                repo.name,
                rfc3339(a)?,
                rfc3339(b)?
            ));
            let reply = self
                .send(&Call::new(Method::GET, url, Priority::Essential))
                .await?;
            let total = reply.json::<Count>()?.total_count;
            let split = |windows: &mut Vec<(i64, i64)>| {
                let mid = a + (b - a) / 2;
                // Newest first: the later half is popped first.
                windows.push((a, mid));
                windows.push((mid + 1, b));
            };
            if total >= SEARCH_LIMIT && a < b {
                split(&mut windows);
                continue;
            }
            let page: Vec<WorkflowRun> = self
                .get_all(reply, "workflow_runs", Priority::Essential)
                .await?;
            // Cut short below the documented limit (a server with a lower one): split as well.
            if (page.len() as u64) < total && a < b {
                split(&mut windows);
                continue;
            }
            unlisted += total.saturating_sub(page.len() as u64);
            runs.extend(page.into_iter().filter(|r| seen.insert(r.id)));
        }
        Ok((runs, unlisted))
    }

    /// The completed runs of the window (see `completed_runs`) and every job of each; `progress`
    /// hears (runs done, runs in all) after each run. One request per run, plus one per 100
    /// runs: budget it against the token's hourly limit.
    pub async fn history(
        &self,
        repo: &Repo,
        since: Time,
        until: Time,
        progress: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<History> {
        let (runs, unlisted) = self.completed_runs(repo, since, until).await?;
        let total = runs.len();
        let mut pending = runs.into_iter().map(|r| r.id);
        let mut tasks = tokio::task::JoinSet::new();
        let mut jobs = Vec::new();
        let mut done = 0;
        loop {
            while tasks.len() < CONCURRENT_RUNS
                && let Some(id) = pending.next()
            {
                let (client, repo) = (self.clone(), repo.clone());
                tasks.spawn(async move { client.run_jobs(&repo, id).await });
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            let mut more = joined.map_err(|e| Error::Transport(format!("task failed: {e}")))??;
            jobs.append(&mut more);
            done += 1;
            progress(done, total);
        }
        jobs.sort_by_key(|j| j.id);
        Ok(History {
            runs: total,
            jobs,
            unlisted,
        })
    }
}

/// A second since the epoch as GitHub writes times (`2026-01-31T08:00:00Z`).
fn rfc3339(secs: i64) -> Result<String> {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .map_err(|_| Error::Transport(format!("{secs} s is not a time GitHub can be asked for")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_github_reads_them() {
        assert_eq!(rfc3339(1_769_846_400).unwrap(), "2026-01-31T08:00:00Z");
    }
}
