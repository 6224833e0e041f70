//! Retention: what is finished is forgotten after an age, in short batches, so that the store
//! stays bounded under a steady load and pruning never holds the write lock for long.
//!
//! Under a steady load of J jobs a day the store holds about J × age of each kind of row (see
//! docs/operations.md for the numbers measured at 10,000 jobs a day). SQLite reuses the pages
//! pruning frees, so its file stops growing once pruning keeps pace; it does not shrink.

use crate::Store;
use crate::error::{During, Result};
use mayfly_core::Time;
use sqlx::AssertSqlSafe;
use std::time::Duration;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// How long finished things are kept, and how pruning paces itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Completed jobs, by their last update, with their delivery ids and intent counts. A week
    /// covers `mayfly status` and the API's questions about recent jobs.
    pub jobs: Duration,
    /// Webhook delivery ids, by receipt: GitHub lets a delivery be redelivered for 3 days, and
    /// past that a repeated delivery is still harmless (a job's status never moves back).
    pub deliveries: Duration,
    /// The event trail (`mayfly events`), by time.
    pub events: Duration,
    /// Intents whose instance is gone (`deleted`, `failed`), by their last update. Live ones
    /// (`pending`, `created`) are never pruned.
    pub intents: Duration,
    /// Rows per batch: each batch is one short transaction.
    pub batch: u32,
    /// Batches per kind of row per call: one call is bounded, and what is left (after a long
    /// stop, say) goes at the next.
    pub max_batches: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            jobs: 7 * DAY,
            deliveries: 3 * DAY,
            events: 7 * DAY,
            intents: 7 * DAY,
            batch: 1_000,
            max_batches: 50,
        }
    }
}

/// What one call pruned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub jobs: u64,
    pub deliveries: u64,
    pub events: u64,
    pub intents: u64,
    /// Some kind of row had more to prune than one call takes: call again soon.
    pub more: bool,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.jobs + self.deliveries + self.events + self.intents
    }
}

fn before(now: Time, age: Duration) -> Time {
    Time(
        now.millis()
            .saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)),
    )
}

/// The oldest `$2` completed jobs last updated before `$1`.
const FINISHED_JOBS: &str = "SELECT forge, scope, job_id FROM jobs
     WHERE status = 'completed' AND updated_at < $1 ORDER BY updated_at LIMIT $2";

/// The kinds of rows pruned, each by its own statement.
#[derive(Clone, Copy)]
enum Kind {
    Jobs,
    Deliveries,
    Events,
    Intents,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Jobs => "finished jobs",
            Kind::Deliveries => "delivery ids",
            Kind::Events => "events",
            Kind::Intents => "finished intents",
        }
    }

    fn age(self, policy: &Retention) -> Duration {
        match self {
            Kind::Jobs => policy.jobs,
            Kind::Deliveries => policy.deliveries,
            Kind::Events => policy.events,
            Kind::Intents => policy.intents,
        }
    }

    /// One batch: `$1` the cutoff, `$2` the batch size. Jobs take three statements.
    fn sql(self) -> &'static str {
        match self {
            Kind::Jobs => "",
            Kind::Deliveries => {
                "DELETE FROM deliveries WHERE delivery_id IN
                 (SELECT delivery_id FROM deliveries WHERE received_at < $1 LIMIT $2)"
            }
            Kind::Events => {
                "DELETE FROM events WHERE id IN
                 (SELECT id FROM events WHERE at < $1 ORDER BY at LIMIT $2)"
            }
            Kind::Intents => {
                "DELETE FROM intents WHERE name IN
                 (SELECT name FROM intents WHERE state IN ('deleted', 'failed') AND updated_at < $1
                  LIMIT $2)"
            }
        }
    }
}

impl Store {
    /// Prunes what `policy` says is old at `now`: the daemon calls it on a schedule. Safe
    /// beside webhooks and passes (each batch is its own short transaction) and on several
    /// replicas at once (a row is deleted once; a second caller finds less to do).
    pub async fn prune(&self, now: Time, policy: &Retention) -> Result<Pruned> {
        let mut pruned = Pruned::default();
        for kind in [Kind::Jobs, Kind::Deliveries, Kind::Events, Kind::Intents] {
            let (n, more) = self
                .prune_kind(kind, before(now, kind.age(policy)), policy)
                .await?;
            pruned.more |= more;
            *match kind {
                Kind::Jobs => &mut pruned.jobs,
                Kind::Deliveries => &mut pruned.deliveries,
                Kind::Events => &mut pruned.events,
                Kind::Intents => &mut pruned.intents,
            } = n;
        }
        if pruned.total() > 0 {
            tracing::debug!(?pruned, "store pruned");
        }
        Ok(pruned)
    }

    /// Batches of `kind` until one comes back short or `max_batches` ran: the total, and
    /// whether the last batch was full.
    async fn prune_kind(
        &self,
        kind: Kind,
        cutoff: Time,
        policy: &Retention,
    ) -> Result<(u64, bool)> {
        let batch = policy.batch.max(1);
        let mut total = 0;
        for _ in 0..policy.max_batches.max(1) {
            let n = self
                .prune_batch(kind, cutoff, i64::from(batch))
                .await
                .during(|| format!("prune {}", kind.name()))?;
            total += n;
            if n < u64::from(batch) {
                return Ok((total, false));
            }
            // Let webhooks and passes take the write lock between batches.
            tokio::task::yield_now().await;
        }
        Ok((total, true))
    }

    async fn prune_batch(
        &self,
        kind: Kind,
        cutoff: Time,
        batch: i64,
    ) -> std::result::Result<u64, sqlx::Error> {
        if let Kind::Jobs = kind {
            return self.forget_finished_batch(cutoff, batch).await;
        }
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(kind.sql())
            .bind(cutoff.millis())
            .bind(batch)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// One batch of completed jobs, with their deliveries and intent counts, in one
    /// transaction. A completed job is final, so the three deletes see the same jobs.
    async fn forget_finished_batch(
        &self,
        before: Time,
        batch: i64,
    ) -> std::result::Result<u64, sqlx::Error> {
        let mut tx = self.begin_write().await?;
        for table in ["deliveries", "intent_counts"] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE (forge, scope, job_id) IN ({FINISHED_JOBS})"
            )))
            .bind(before.millis())
            .bind(batch)
            .execute(&mut *tx)
            .await?;
        }
        let jobs = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM jobs WHERE (forge, scope, job_id) IN ({FINISHED_JOBS})"
        )))
        .bind(before.millis())
        .bind(batch)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(jobs.rows_affected())
    }

    /// Rows per table, for tests and `mayfly status`-like reports of the store's size.
    pub async fn row_counts(&self) -> Result<Vec<(&'static str, u64)>> {
        let mut out = Vec::new();
        for table in ["jobs", "deliveries", "intents", "intent_counts", "events"] {
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&self.pool)
                .await
                .during(|| format!("count {table}"))?;
            out.push((table, u64::try_from(n).unwrap_or(0)));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_never_overflow() {
        assert_eq!(before(Time(10_000), Duration::from_secs(3)), Time(7_000));
        assert_eq!(
            before(Time(0), Duration::MAX),
            Time(-i64::MAX),
            "an age past any time keeps everything"
        );
    }
}
