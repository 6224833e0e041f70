//! Demand from GitLab CI: Job Hook webhooks and the poll of the served projects' active jobs
//! take one path into the store ([`store_update`]); the truth check ([`Confirmer`]) confirms
//! jobs the store holds as pending or running for long, and those a reconcile pass found the
//! store behind on, as for GitHub, at each pass.
//!
//! A job's tags route it to a pool, and GitLab's Job Hooks do not carry them: a pending job the
//! store does not know is read once (`GET /projects/:id/jobs/:job_id`), unless a poll's list
//! showed its tags already (the client remembers them).

use crate::demand::{Confirmer, DemandReport, Wake, store_job};
use mayfly_core::{ForgeKind, JobStatus, Labels, Time};
use mayfly_forge::gitlab::webhook::JobUpdate;
use mayfly_forge::gitlab::{Client, Error, Poller};
use mayfly_forge::{Forge, GitlabForge};
use mayfly_store::{JobRecord, Store, Upsert};
use std::collections::HashSet;
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

/// The poll of the served projects (when `gitlab.poll` is on) and the truth check.
pub struct GitlabDemand {
    store: Store,
    client: Client,
    poller: Option<Poller>,
    wake: Arc<Wake>,
    pub confirmer: Confirmer,
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
        let poller =
            poll.then(|| Poller::new(client.clone(), forge.served().projects().cloned().collect()));
        let confirming: Arc<dyn Forge> = forge;
        GitlabDemand {
            confirmer: Confirmer::new(store.clone(), confirming, confirm_queued),
            store,
            client,
            poller,
            wake,
        }
    }

    /// One poll of every project (one call each while nothing ended), then the
    /// confirmations that are due.
    pub async fn pass(&mut self, now: Time) -> DemandReport {
        let mut report = DemandReport::default();
        if let Some(poller) = &mut self.poller {
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
                .poll_knowing(|_| true, |id| open.as_ref().is_none_or(|o| o.contains(&id)))
                .await;
            report.failed += polled.failed.len();
            report.polled += polled.jobs.len();
            for update in &polled.jobs {
                match store_update(&self.store, &self.client, update, now, None).await {
                    Ok(outcome) if outcome.changed() => {
                        report.changed += 1;
                        count(&mut report, update.status);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        debug!(job = %update.key, error = %e, "polled job not stored");
                        report.failed += 1;
                    }
                }
            }
        }
        self.confirm(now, &mut report).await;
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

fn count(report: &mut DemandReport, status: JobStatus) {
    match status {
        JobStatus::Queued => report.urgent += 1,
        JobStatus::InProgress => report.started += 1,
        JobStatus::Completed => report.finished += 1,
    }
}
