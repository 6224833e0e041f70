//! Retention on a schedule: the store's `prune` every `[retention] every`, so that the state
//! stays bounded under a steady load (docs/operations.md has the numbers).
//!
//! Any replica may prune (a row is deleted once; a second replica finds less to do), so this
//! runs beside the election rather than under it. A prune that finds more than one call takes
//! (after a long stop) goes on a second later until it has caught up.

use mayfly_core::Clock;
use mayfly_store::{Retention, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// The longest one prune call may take before it is given up (and tried at the next round).
const PRUNE_TIMEOUT: Duration = Duration::from_secs(60);
/// Between calls while a backlog is worked off.
const CATCH_UP: Duration = Duration::from_secs(1);

/// Prunes `store` by `policy` every `every`, the first time one minute after the start (not
/// at once: a start is busy enough). Abort the handle to stop it.
pub fn spawn(
    store: Store,
    policy: Retention,
    every: Duration,
    clock: Arc<dyn Clock>,
) -> JoinHandle<()> {
    for table in ["jobs", "deliveries", "events", "intents"] {
        metrics::counter!("mayfly_store_pruned_rows_total", "table" => table).increment(0);
    }
    tokio::spawn(async move {
        let mut wait = every.min(Duration::from_secs(60));
        loop {
            tokio::time::sleep(wait).await;
            wait = every;
            match tokio::time::timeout(PRUNE_TIMEOUT, store.prune(clock.now(), &policy)).await {
                Ok(Ok(pruned)) => {
                    for (table, rows) in [
                        ("jobs", pruned.jobs),
                        ("deliveries", pruned.deliveries),
                        ("events", pruned.events),
                        ("intents", pruned.intents),
                    ] {
                        metrics::counter!("mayfly_store_pruned_rows_total", "table" => table)
                            .increment(rows);
                    }
                    if pruned.total() > 0 {
                        info!(
                            jobs = pruned.jobs,
                            deliveries = pruned.deliveries,
                            events = pruned.events,
                            intents = pruned.intents,
                            more = pruned.more,
                            "pruned the state"
                        );
                    }
                    if pruned.more {
                        wait = CATCH_UP.min(every);
                    }
                }
                Ok(Err(e)) => warn!(error = %e, "pruning the state failed; trying again later"),
                Err(_) => warn!(timeout = ?PRUNE_TIMEOUT, "pruning the state took too long"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mayfly_core::Time;
    use mayfly_store::NewEvent;

    struct At(i64);

    impl Clock for At {
        fn now(&self) -> Time {
            Time(self.0)
        }
        fn sleep(&self, d: Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
            Box::pin(tokio::time::sleep(d))
        }
    }

    /// A backlog larger than one call (three calls' worth) is worked off round after round.
    /// Real time: the store's connections do not go with a paused clock.
    #[tokio::test]
    async fn a_backlog_is_pruned_in_rounds_until_nothing_is_old() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        for i in 0..30 {
            store
                .record_event(&NewEvent::new(Time(i), "job", "x", "old"))
                .await
                .unwrap();
        }
        let policy = Retention {
            events: Duration::from_secs(1),
            batch: 5,
            max_batches: 2,
            ..Retention::default()
        };
        let every = Duration::from_millis(20);
        let task = spawn(store.clone(), policy, every, Arc::new(At(1_000_000)));
        // Three rounds of ten: the first after `every`, the others right behind it.
        tokio::time::timeout(Duration::from_secs(10), async {
            while !store.events(None, 100).await.unwrap().is_empty() {
                tokio::time::sleep(every).await;
            }
        })
        .await
        .expect("pruned");
        task.abort();
        store.close().await;
    }
}
