//! The aws-asg pools' loop: every interval, the queue depth of the pool's labels from the
//! store and its runners from GitHub go to the group's scaler, which decides and acts.
//! These pools are not the planner's: their runners are long-lived and register themselves.

use crate::reconcile::Runners;
use async_trait::async_trait;
use mayfly_core::{Clock, JobStatus, LabelRules, Pool};
use mayfly_provider_aws::asg::{Deregister, RunnerState, Scaler};
use mayfly_store::Store;
use std::sync::Arc;
use tracing::{debug, warn};

/// One aws-asg pool and what its loop reads.
pub struct AsgPool {
    pub scaler: Scaler,
    pub pool: Pool,
    pub rules: LabelRules,
    pub store: Store,
    pub runners: Arc<Runners>,
    pub clock: Arc<dyn Clock>,
}

/// Deregisters a runner by name in every scope mayfly serves (a group's runners register in
/// one of them).
struct ByName<'a>(&'a Runners);

#[async_trait]
impl Deregister for ByName<'_> {
    async fn deregister(&self, runner: &str) -> Result<(), String> {
        for scope in self.0.scopes() {
            self.0
                .remove_by_name(&scope, runner)
                .await
                .map_err(|e| format!("{scope}: {e}"))?;
        }
        Ok(())
    }
}

impl AsgPool {
    /// Queued jobs this pool's labels serve.
    async fn queued(&self) -> anyhow::Result<u32> {
        let jobs = self.store.jobs_with_status(&[JobStatus::Queued]).await?;
        Ok(jobs
            .iter()
            .filter(|j| {
                self.rules
                    .requirements(&j.labels)
                    .is_ok_and(|r| self.pool.serves(&r))
            })
            .count() as u32)
    }

    /// One decision.
    pub async fn pass(&self) -> anyhow::Result<mayfly_provider_aws::asg::Decision> {
        let queued = self.queued().await?;
        let runners: Vec<RunnerState> = self
            .runners
            .list(self.clock.now())
            .await?
            .into_iter()
            .map(|r| RunnerState {
                online: r.online,
                busy: r.busy,
                name: r.name,
            })
            .collect();
        let now = self.clock.now();
        Ok(self
            .scaler
            .pass(queued, &runners, &ByName(&self.runners), now)
            .await?)
    }

    /// Decides every interval until the task is aborted.
    pub async fn run(self) {
        self.run_while(|| true).await
    }

    /// [`AsgPool::run`], skipping every interval at which `acts` says no: among replicas only
    /// the leader scales the group.
    pub async fn run_while(self, acts: impl Fn() -> bool + Send) {
        let every = self.scaler.config().interval;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !acts() {
                continue;
            }
            match self.pass().await {
                Ok(d) => debug!(pool = %self.pool.name, reason = %d.reason, "aws-asg pass"),
                Err(e) => {
                    warn!(pool = %self.pool.name, error = %e, "aws-asg pass failed; trying again next interval")
                }
            }
        }
    }
}
