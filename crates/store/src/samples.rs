//! The dashboard's minute samples (queue wait, machines by state, cost per hour, jobs served):
//! saved as the passes come and read back after a restart or a failover, pruned by age.

use crate::Store;
use crate::error::{During, Result};
use mayfly_core::Time;

/// One minute of figures. Counts are plain integers; the cost is kept in millionths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// The minute's start, in milliseconds since the epoch.
    pub minute: i64,
    pub wait_max_secs: i64,
    pub queued: i64,
    pub starting: i64,
    pub busy: i64,
    pub idle: i64,
    pub powered_off: i64,
    pub leaving: i64,
    pub cost_per_hour_micros: i64,
    pub served: i64,
}

from_any_row!(Sample {
    minute,
    wait_max_secs,
    queued,
    starting,
    busy,
    idle,
    powered_off,
    leaving,
    cost_per_hour_micros,
    served
});

impl Store {
    /// Saves `sample`, replacing what its minute held.
    pub async fn save_sample(&self, s: &Sample) -> Result<()> {
        sqlx::query(
            "INSERT INTO samples (minute, wait_max_secs, queued, starting, busy, idle, powered_off, leaving,
                                  cost_per_hour_micros, served)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (minute) DO UPDATE SET
                 wait_max_secs = excluded.wait_max_secs, queued = excluded.queued,
                 starting = excluded.starting, busy = excluded.busy, idle = excluded.idle,
                 powered_off = excluded.powered_off, leaving = excluded.leaving,
                 cost_per_hour_micros = excluded.cost_per_hour_micros, served = excluded.served",
        )
        .bind(s.minute)
        .bind(s.wait_max_secs)
        .bind(s.queued)
        .bind(s.starting)
        .bind(s.busy)
        .bind(s.idle)
        .bind(s.powered_off)
        .bind(s.leaving)
        .bind(s.cost_per_hour_micros)
        .bind(s.served)
        .execute(&self.pool)
        .await
        .during(|| "save a dashboard sample".to_string())?;
        Ok(())
    }

    /// The samples of minutes at or after `since`, oldest first.
    pub async fn samples_since(&self, since: Time) -> Result<Vec<Sample>> {
        sqlx::query_as(
            "SELECT minute, wait_max_secs, queued, starting, busy, idle, powered_off, leaving,
                    cost_per_hour_micros, served
             FROM samples WHERE minute >= $1 ORDER BY minute",
        )
        .bind(since.millis())
        .fetch_all(&self.pool)
        .await
        .during(|| "read the dashboard samples".to_string())
    }

    /// Forgets the samples of minutes before `before`; how many went.
    pub async fn prune_samples(&self, before: Time) -> Result<u64> {
        let done = sqlx::query("DELETE FROM samples WHERE minute < $1")
            .bind(before.millis())
            .execute(&self.pool)
            .await
            .during(|| "prune the dashboard samples".to_string())?;
        Ok(done.rows_affected())
    }
}
