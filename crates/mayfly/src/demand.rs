//! Demand from GitHub without webhooks, and the check that keeps a lost webhook from holding a
//! machine: polling, then confirming jobs held as queued for long. Both end in the store.
//!
//! Webhooks and polls take one path: a `JobUpdate` becomes a `JobRecord` upsert, and a change
//! wakes the reconciler. Nothing here calls GitHub on behalf of a webhook.

use mayfly_core::{JobKey, JobStatus, Time};
use mayfly_forge::github::webhook::{Action, JobUpdate};
use mayfly_forge::github::{Client, Error, Poller, Repo};
use mayfly_store::{JobRecord, Store, Upsert};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

/// The wall clock as mayfly's `Time`.
pub fn now() -> Time {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Time::from_millis(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
}

/// The store's record of an update received at `received`. A job's queue time is when GitHub
/// created it; older payloads without `created_at` fall back to its start, then to receipt.
pub fn record(update: &JobUpdate, received: Time) -> JobRecord {
    JobRecord {
        key: update.key.clone(),
        run_id: Some(update.run_id),
        attempt: update.run_attempt.unwrap_or(1),
        labels: update.labels.clone(),
        status: update.status,
        queued_at: update.created_at.or(update.started_at).unwrap_or(received),
        updated_at: received,
        runner_name: update.runner_name.clone(),
        workflow: update.workflow_name.clone(),
    }
}

/// Stores a job's record: the one way webhooks, polls and confirmations reach the store. The
/// upsert that takes the job out of the queue records how long it waited, from its queueing to
/// `started` (GitHub's start time where the update has one, else when the news arrived).
pub async fn store_job(
    store: &Store,
    rec: JobRecord,
    started: Time,
    delivery: Option<&str>,
) -> mayfly_store::Result<Upsert> {
    let outcome = store.upsert_job(&rec, delivery).await?;
    if outcome == Upsert::Started {
        crate::metrics::job_started(rec.queued_at, started);
    }
    Ok(outcome)
}

/// What one pass did, for the log and the tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DemandReport {
    /// Jobs the poll found in runs that changed.
    pub polled: usize,
    /// Jobs looked up one by one because the store held them as queued for long.
    pub confirmed: usize,
    /// Store records that changed.
    pub changed: usize,
    /// Changes the reconciler acts on at once (see [`wakes`]): any wakes it, once per pass.
    pub urgent: usize,
    /// Jobs that finished: they wake the loop a little later (see [`Wake`]).
    pub finished: usize,
    pub failed: usize,
}

/// Whether a job's new status calls for a reconcile pass now: a queued job needs a runner.
pub fn wakes(status: JobStatus) -> bool {
    status == JobStatus::Queued
}

/// How news of jobs reaches the reconcile loop. Every pass costs a provider list call, so
/// passes go where they serve jobs: a queued job wakes the loop `now`; a finished one `soon`
/// (its machine powers itself off within seconds, and one pass a little later, for all the
/// jobs that finished meanwhile, sees it off and keeps or deletes it); a started job changes
/// no decision and wakes nothing.
#[derive(Debug, Default)]
pub struct Wake {
    pub now: Notify,
    pub soon: Notify,
    /// Repositories a job webhook came from since the poller last asked.
    heard: std::sync::Mutex<HashSet<String>>,
}

impl Wake {
    /// A job webhook arrived from `repo`: its webhooks flow.
    pub fn heard(&self, repo: &str) {
        let mut heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        if !heard.contains(repo) {
            heard.insert(repo.to_string());
        }
    }

    fn take_heard(&self) -> HashSet<String> {
        std::mem::take(&mut *self.heard.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Wakes the loop as a job that moved to `status` calls for.
    pub fn job(&self, status: JobStatus) {
        match status {
            JobStatus::Queued => self.now.notify_one(),
            JobStatus::Completed => self.soon.notify_one(),
            JobStatus::InProgress => {}
        }
    }
}

pub struct Demand {
    store: Store,
    client: Client,
    poller: Poller,
    polled: HashSet<String>,
    wake: Arc<Wake>,
    /// A job the store holds as queued this long is confirmed with GitHub.
    confirm_after: Duration,
    /// When each job was last confirmed, so a job stuck in the queue costs one request per
    /// `confirm_after`, not one per pass.
    confirmed_at: HashMap<JobKey, Time>,
    /// Most jobs confirmed in one pass: a bound on the budget one pass can spend.
    pub confirm_per_pass: usize,
    /// Polls a repository whose webhooks flow may skip in a row (see [`Demand::backstop`]).
    backstop: u32,
    skipped: HashMap<String, u32>,
    /// Repositories whose last poll found news the webhooks had not brought: their webhooks
    /// are lost (or late), so they are polled every pass until a poll finds nothing new.
    lossy: HashSet<String>,
}

impl Demand {
    pub fn new(
        store: Store,
        client: Client,
        repos: Vec<Repo>,
        wake: Arc<Wake>,
        confirm_after: Duration,
    ) -> Demand {
        let polled: HashSet<String> = repos.iter().map(ToString::to_string).collect();
        let repos_polled = polled.clone();
        Demand {
            store,
            poller: Poller::new(client.clone(), repos),
            client,
            polled,
            wake,
            confirm_after,
            confirmed_at: HashMap::new(),
            backstop: 0,
            skipped: HashMap::new(),
            // Every repository must first prove its webhooks complete: one poll that finds
            // nothing they had not brought.
            lossy: repos_polled.clone(),
            confirm_per_pass: 50,
        }
    }

    /// A repository whose job webhooks arrived since the last poll is polled only every
    /// `skip + 1`-th pass: the poll is the fallback for lost webhooks, and while webhooks flow it
    /// would mostly read what they said already, at full price (runs that changed cost their
    /// run and job lists; only unchanged lists are free). A repository that sent nothing since
    /// the last poll is polled every pass: that costs nothing when it is quiet (304s), and finds
    /// its jobs when its webhooks are lost or not configured. So is one whose last poll found
    /// news its webhooks had not brought. 0 (the default) polls every pass.
    pub fn backstop(mut self, skip: u32) -> Demand {
        self.backstop = skip;
        self
    }

    /// The repositories this pass polls.
    fn due(&mut self) -> HashSet<String> {
        let heard = self.wake.take_heard();
        let mut due = HashSet::new();
        for repo in self.poller.repos() {
            let key = repo.to_string();
            let skipped = self.skipped.entry(key.clone()).or_default();
            if heard.contains(&key) && !self.lossy.contains(&key) && *skipped < self.backstop {
                *skipped += 1;
            } else {
                *skipped = 0;
                due.insert(key);
            }
        }
        due
    }

    /// One poll of every repository that is due, then the confirmations that are due.
    pub async fn pass(&mut self, now: Time) -> DemandReport {
        let mut report = DemandReport::default();
        let due = self.due();
        let found = self
            .poller
            .poll_where(|repo| due.contains(&repo.to_string()))
            .await;
        report.failed += found.failed.len();
        report.polled = found.jobs.len();
        self.lossy.retain(|repo| !due.contains(repo));
        for update in found.jobs {
            let before = report.changed;
            let scope = update.key.scope.to_string();
            let started = update.started_at.unwrap_or(now);
            self.store_record(record(&update, now), started, &mut report)
                .await;
            if report.changed > before {
                self.lossy.insert(scope);
            }
        }
        self.confirm(now, &mut report).await;
        if report.urgent > 0 {
            self.wake.now.notify_one();
        }
        if report.finished > 0 {
            self.wake.soon.notify_one();
        }
        if report.changed > 0 || report.failed > 0 {
            info!(
                polled = report.polled,
                confirmed = report.confirmed,
                changed = report.changed,
                failed = report.failed,
                "demand pass"
            );
        }
        report
    }

    /// Takes the record by value: a borrowed update held across the store's await trips the
    /// compiler's check that the spawned pass is `Send`.
    async fn store_record(&self, rec: JobRecord, started: Time, report: &mut DemandReport) {
        let status = rec.status;
        let key = rec.key.clone();
        match store_job(&self.store, rec, started, None).await {
            Ok(outcome) if outcome.changed() => {
                report.changed += 1;
                report.urgent += usize::from(wakes(status));
                report.finished += usize::from(status == JobStatus::Completed);
            }
            Ok(_) => {}
            Err(e) => {
                warn!(job = %key, error = %e, "job not stored");
                report.failed += 1;
            }
        }
    }

    /// Confirms jobs the store holds as queued for longer than `confirm_after`, outside the
    /// polled repositories (there a finished run is read by the poll already). A job GitHub no
    /// longer knows is recorded as completed, so it never keeps a machine alive.
    async fn confirm(&mut self, now: Time, report: &mut DemandReport) {
        let queued = match self.store.jobs_with_status(&[JobStatus::Queued]).await {
            Ok(q) => q,
            Err(e) => {
                warn!(error = %e, "cannot read queued jobs");
                report.failed += 1;
                return;
            }
        };
        let due: Vec<JobRecord> = queued
            .into_iter()
            .filter(|j| {
                !self.polled.contains(j.key.scope.as_ref())
                    && now.since(j.updated_at) > self.confirm_after
                    && self
                        .confirmed_at
                        .get(&j.key)
                        .is_none_or(|t| now.since(*t) > self.confirm_after)
            })
            .take(self.confirm_per_pass)
            .collect();
        for job in due {
            self.confirmed_at.insert(job.key.clone(), now);
            report.confirmed += 1;
            match confirm_job(&self.client, &self.store, &job, now).await {
                Ok(Confirmed {
                    changed: true,
                    status,
                }) => {
                    report.changed += 1;
                    report.urgent += usize::from(wakes(status));
                    report.finished += usize::from(status == JobStatus::Completed);
                }
                Ok(_) => {}
                Err(Error::Postponed) => {
                    debug!("GitHub budget low: confirmations postponed");
                    return;
                }
                Err(e) => {
                    debug!(job = %job.key, error = %e, "cannot confirm job");
                    report.failed += 1;
                }
            }
        }
        self.confirmed_at
            .retain(|_, t| now.since(*t) <= self.confirm_after * 2);
    }
}

/// What GitHub said of a job the store holds as queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Confirmed {
    /// GitHub's status; `Completed` for a job GitHub no longer knows.
    pub status: JobStatus,
    /// The store learned something new.
    pub changed: bool,
}

/// Asks GitHub for one job (one request) and records what it says: a status past queued, or
/// completed (conclusion `not_found`) when GitHub no longer knows the job. A store that cannot
/// be written is logged, not an error: GitHub's answer is still the truth.
pub async fn confirm_job(
    client: &Client,
    store: &Store,
    job: &JobRecord,
    now: Time,
) -> Result<Confirmed, Error> {
    let repo = Repo::parse(&job.key.scope)
        .map_err(|_| Error::Transport(format!("{} is not a repository", job.key.scope)))?;
    let update = match client.job(&repo, job.key.id).await {
        Ok(found) => match found.job_status() {
            Some(status) if status != JobStatus::Queued => JobUpdate {
                action: Action::for_status(status),
                key: job.key.clone(),
                status,
                run_id: found.run_id,
                run_attempt: found.run_attempt,
                labels: found.labels.clone(),
                conclusion: found.conclusion.clone(),
                runner_name: found.runner_name.clone(),
                workflow_name: found.workflow_name.clone(),
                created_at: Some(job.queued_at),
                started_at: found
                    .started_at
                    .as_deref()
                    .and_then(mayfly_forge::github::time::parse),
            },
            _ => {
                return Ok(Confirmed {
                    status: JobStatus::Queued,
                    changed: false,
                });
            }
        },
        Err(Error::NotFound) => JobUpdate {
            action: Action::Completed,
            key: job.key.clone(),
            status: JobStatus::Completed,
            run_id: job.run_id.unwrap_or_default(),
            run_attempt: Some(job.attempt),
            labels: job.labels.clone(),
            conclusion: Some("not_found".into()),
            runner_name: None,
            workflow_name: job.workflow.clone(),
            created_at: Some(job.queued_at),
            started_at: None,
        },
        Err(e) => return Err(e),
    };
    let started = update.started_at.unwrap_or(now);
    let changed = match store_job(store, record(&update, now), started, None).await {
        Ok(outcome) => outcome.changed(),
        Err(e) => {
            warn!(job = %job.key, error = %e, "job confirmed but not stored");
            false
        }
    };
    Ok(Confirmed {
        status: update.status,
        changed,
    })
}
