//! Demand from GitLab CI: Job Hook webhooks and the poll of the served projects' active jobs
//! take one path into the store ([`store_update`]); the truth check ([`Confirmer`]) confirms
//! jobs the store holds as pending or running for long, and those a reconcile pass found the
//! store behind on, as for GitHub, at each pass.
//!
//! The poll is the fallback for lost Job Hooks, and costs a request per project each time
//! (GitLab's job lists carry no ETag): once the hooks prove they arrive ([`crate::trust`], the
//! same evidence as GitHub's), a project is polled only every `intervals.poll_backstop`.
//!
//! A job's tags route it to a pool, and GitLab's Job Hooks do not carry them: a pending job the
//! store does not know is read once (`GET /projects/:id/jobs/:job_id`), unless a poll's list
//! showed its tags already (the client remembers them).

use crate::demand::{Confirmer, DemandReport, Wake, store_job};
use crate::trust::{Activity, Trust};
use mayfly_core::{ForgeKind, JobStatus, Labels, Time};
use mayfly_forge::gitlab::webhook::JobUpdate;
use mayfly_forge::gitlab::{Client, Error, Poller};
use mayfly_forge::{Forge, GitlabForge};
use mayfly_store::{JobRecord, Store, Upsert};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};

/// Why an update did not reach the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreUpdateError {
    /// The job's tags could not be read: the job cannot be routed yet.
    #[error("cannot read the job's tags: {0}")]
    Tags(#[from] Error),
    #[error(transparent)]
    Store(#[from] mayfly_store::StoreError),
}

/// The store's record of a GitLab job update received at `received`: the pipeline stands for
/// GitHub's workflow run (the per-run limit), the job's name for its workflow.
pub fn record(update: &JobUpdate, labels: Labels, received: Time) -> JobRecord {
    JobRecord {
        key: update.key.clone(),
        run_id: Some(update.pipeline_id),
        attempt: 1,
        labels,
        status: update.status,
        queued_at: update.created_at.or(update.started_at).unwrap_or(received),
        updated_at: received,
        runner_name: update.runner_name.clone(),
        workflow: update.job_name.clone(),
    }
}

/// Stores a GitLab job update (a webhook's or a poll's), with the job's tags: the update's, the
/// store's, or for a pending job neither has, read once from GitLab.
pub async fn store_update(
    store: &Store,
    client: &Client,
    update: &JobUpdate,
    received: Time,
    delivery: Option<&str>,
) -> Result<Upsert, StoreUpdateError> {
    let labels = match &update.labels {
        Some(labels) => labels.clone(),
        None => match store.job(&update.key).await? {
            Some(known) => known.labels,
            None if update.status == JobStatus::Queued => {
                client.job_tags(update.project_id, update.key.id).await?
            }
            // A job first heard of running or over needs no runner: its tags do not matter.
            None => Labels::default(),
        },
    };
    let rec = record(update, labels, received);
    let started = update.started_at.unwrap_or(received);
    Ok(store_job(store, rec, started, delivery).await?)
}

/// The store name of what is known of GitLab's Job Hooks (see [`Trust::restore`]).
const TRUST_CURSOR: &str = "gitlab:webhook-trust";

/// The poll of the served projects (when `gitlab.poll` is on) and the truth check.
pub struct GitlabDemand {
    store: Store,
    client: Client,
    poller: Option<Poller>,
    wake: Arc<Wake>,
    pub confirmer: Confirmer,
    /// What is known of each polled project's Job Hooks.
    trust: Trust,
    /// Projects this process has polled: the first poll of one reports every active job, and a
    /// pending one the store knows may have come from an earlier process's poll, not a hook.
    polled: HashSet<String>,
}

impl GitlabDemand {
    /// `poll`: whether to poll the projects' active jobs (the fallback for lost webhooks, and
    /// the only way jobs arrive without them).
    pub fn new(
        store: Store,
        forge: Arc<GitlabForge>,
        poll: bool,
        wake: Arc<Wake>,
        confirm_queued: Duration,
    ) -> GitlabDemand {
        let client = forge.client().clone();
        let projects: Vec<_> = forge.served().projects().cloned().collect();
        let trust = Trust::new(
            projects.iter().map(|p| p.path_with_namespace.clone()),
            Duration::ZERO,
        );
        let poller = poll.then(|| Poller::new(client.clone(), projects));
        let confirming: Arc<dyn Forge> = forge;
        GitlabDemand {
            confirmer: Confirmer::new(store.clone(), confirming, confirm_queued),
            store,
            client,
            poller,
            wake,
            trust,
            polled: HashSet::new(),
        }
    }

    /// A project whose Job Hooks are trusted is polled only every `every` (zero, the default:
    /// every project at every pass). See [`Trust::due`].
    pub fn backstop(mut self, every: Duration) -> GitlabDemand {
        self.trust.set_backstop(every);
        self
    }

    /// Whether `project`'s Job Hooks are trusted (polled at the backstop only).
    pub fn trusted(&self, project: &str) -> bool {
        self.trust.trusted(project)
    }

    /// One poll of every project that is due (one call each while nothing ended), then the
    /// confirmations that are due.
    pub async fn pass(&mut self, now: Time) -> DemandReport {
        let mut report = DemandReport::default();
        self.trust.restore(&self.store, TRUST_CURSOR).await;
        // The hooks' own evidence first: a gap found since the last pass puts every project on
        // the poll again in this very pass.
        let deliveries = self.wake.take_deliveries(ForgeKind::Gitlab);
        for (project, n) in deliveries.proofs {
            self.learn(&project, Activity::Heard(n), now, &mut report);
        }
        if let Some(project) = deliveries.gap {
            report.lossy += usize::from(self.trust.lost(&project));
        }
        if let Some(poller) = &mut self.poller {
            // GitLab's lists have no ETag: a poll costs the same whatever it shows, so a
            // trusted project's backstop is not put off while the store holds a pending job
            // of it (as GitHub's is, for a free 304).
            let queued = HashSet::new();
            let paths: Vec<String> = poller
                .projects()
                .iter()
                .map(|p| p.path_with_namespace.clone())
                .collect();
            let due = self
                .trust
                .due(now, paths.iter().map(String::as_str), &queued);
            // A job that left the active lists is read to learn its end only while the store
            // still holds it open: its Job Hook has usually told it already.
            // `None`: the store could not say, and every job that ended is read.
            let open: Option<HashSet<u64>> = match self
                .store
                .jobs_with_status(&[JobStatus::Queued, JobStatus::InProgress])
                .await
            {
                Ok(jobs) => Some(
                    jobs.into_iter()
                        .filter(|j| j.key.forge == ForgeKind::Gitlab)
                        .map(|j| j.key.id)
                        .collect(),
                ),
                Err(e) => {
                    debug!(error = %e, "cannot read the open jobs: reading every job that ended");
                    None
                }
            };
            let polled = poller
                .poll_knowing(
                    |p| due.contains(&p.path_with_namespace),
                    |id| open.as_ref().is_none_or(|o| o.contains(&id)),
                )
                .await;
            report.failed += polled.failed.len();
            report.polled += polled.jobs.len();
            // What each polled project's news says of its hooks.
            let mut seen: HashMap<String, Activity> = due
                .into_iter()
                .filter(|p| !polled.failed.iter().any(|(f, _)| f == p))
                .map(|p| (p, Activity::Quiet))
                .collect();
            for update in &polled.jobs {
                // News is a status the store did not hold yet: a field the hook gave otherwise
                // (GitLab's older hooks give times to the second, its API to the millisecond)
                // changes the record, but says nothing of the hooks and calls for no pass.
                let behind = match self.store.job(&update.key).await {
                    Ok(known) => known.is_none_or(|k| rank(k.status) < rank(update.status)),
                    Err(_) => true,
                };
                let news = match store_update(&self.store, &self.client, update, now, None).await {
                    Ok(outcome) if outcome.changed() && behind => {
                        report.changed += 1;
                        count(&mut report, update.status);
                        Some(self.overdue(update, now))
                    }
                    Ok(outcome) => {
                        report.changed += usize::from(outcome.changed());
                        None
                    }
                    Err(e) => {
                        debug!(job = %update.key, error = %e, "polled job not stored");
                        report.failed += 1;
                        continue;
                    }
                };
                let activity = seen
                    .entry(update.key.scope.to_string())
                    .or_insert(Activity::Quiet);
                *activity = match (*activity, news) {
                    (Activity::Missed, _) | (_, Some(true)) => Activity::Missed,
                    (Activity::Unproven, _) | (_, Some(false)) => Activity::Unproven,
                    // A pending job the store had from its hook before the poll saw it.
                    (Activity::Heard(n), None) if update.status == JobStatus::Queued => {
                        Activity::Heard(n + 1)
                    }
                    (Activity::Quiet, None) if update.status == JobStatus::Queued => {
                        Activity::Heard(1)
                    }
                    (a, None) => a,
                };
            }
            for (project, activity) in seen {
                let first = self.polled.insert(project.clone());
                let activity = match activity {
                    Activity::Heard(_) if first => Activity::Quiet,
                    a => a,
                };
                self.learn(&project, activity, now, &mut report);
            }
        }
        self.confirm(now, &mut report).await;
        self.trust.persist(&self.store, TRUST_CURSOR, now).await;
        self.finish(&report);
        report
    }

    async fn confirm(&mut self, now: Time, report: &mut DemandReport) {
        let suspects = self.wake.take_suspects(mayfly_core::ForgeKind::Gitlab);
        let behind = self.confirmer.run(now, &suspects, report).await;
        if !behind.is_empty() {
            warn!(
                projects = behind.len(),
                "GitLab jobs whose news never arrived were found by the truth check"
            );
        }
        for project in behind {
            report.lossy += usize::from(self.trust.lost(&project));
        }
    }

    /// What a poll says of a project's hooks (see [`Trust::learn`]).
    fn learn(&mut self, project: &str, activity: Activity, now: Time, report: &mut DemandReport) {
        let learned = self.trust.learn(project, activity, now);
        report.urgent += usize::from(learned.urgent);
        report.lossy += usize::from(learned.lossy);
    }

    /// Whether a poll's news of `update` should have come by Job Hook already: its change
    /// happened longer than the grace ago (by GitLab's own times, where it gives them).
    fn overdue(&self, update: &JobUpdate, now: Time) -> bool {
        let since = match update.status {
            JobStatus::Queued => update.created_at,
            JobStatus::InProgress => update.started_at,
            JobStatus::Completed => update.finished_at,
        };
        since.is_none_or(|t| now.since(t) > self.confirmer.grace)
    }

    fn finish(&self, report: &DemandReport) {
        if report.urgent > 0 {
            self.wake.now.notify_one();
        } else if report.finished > 0 {
            self.wake.soon.notify_one();
        }
        if report.started > 0 {
            self.wake.started.notify_one();
        }
    }
}

/// A job's statuses in the order they come.
fn rank(status: JobStatus) -> u8 {
    match status {
        JobStatus::Queued => 0,
        JobStatus::InProgress => 1,
        JobStatus::Completed => 2,
    }
}

fn count(report: &mut DemandReport, status: JobStatus) {
    match status {
        JobStatus::Queued => report.urgent += 1,
        JobStatus::InProgress => report.started += 1,
        JobStatus::Completed => report.finished += 1,
    }
}
