//! The store under faults: a disk that fills up and is freed (SQLite), sessions that the server
//! ends (PostgreSQL, as a restart does). A failed write must leave the pool usable, and the
//! write probe must say when writes fail.
//!
//! Its own test binary: the disk is "filled" with a process-wide file size limit
//! (RLIMIT_FSIZE), which must not reach any other test.

#[path = "store/harness.rs"]
#[allow(dead_code)] // the suite's harness: this file uses part of it
mod harness;

use harness::{Db, intent, job};
use mayfly_core::JobStatus;
use mayfly_store::{Store, StoreOptions};
use rustix::process::{Resource, Rlimit, Signal, getrlimit, setrlimit};
use std::time::Duration;

/// While alive, the process may not write a file at or past byte `limit`: a write there fails
/// (EFBIG), one across it is cut short, which SQLite reports as a full disk. Dropped, the limit
/// is lifted again: the disk is "freed".
struct FullDisk {
    before: Rlimit,
}

impl FullDisk {
    fn at(limit: u64) -> FullDisk {
        let before = getrlimit(Resource::Fsize);
        setrlimit(
            Resource::Fsize,
            Rlimit {
                current: Some(limit),
                maximum: before.maximum,
            },
        )
        .expect("lower RLIMIT_FSIZE");
        FullDisk { before }
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        setrlimit(Resource::Fsize, self.before).expect("restore RLIMIT_FSIZE");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_full_disk_fails_writes_and_freeing_it_heals_the_pool() {
    // Past the limit the kernel also sends SIGXFSZ, which would end the process: take it.
    let _sigxfsz = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(
        Signal::XFSZ.as_raw(),
    ))
    .expect("handle SIGXFSZ");
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("mayfly.db").display().to_string();
    let options = StoreOptions {
        max_connections: 3,
        ..StoreOptions::default()
    };
    let store = Store::open_with(&url, &options).await.unwrap();
    for id in 0..5 {
        store
            .upsert_job(&job(id, JobStatus::Queued, 1_000), Some(&format!("d-{id}")))
            .await
            .unwrap();
    }

    let full = FullDisk::at(512);
    let mut failures = 0;
    for id in 100..110 {
        let rec = job(id, JobStatus::Queued, 1_000);
        if let Err(e) = store.upsert_job(&rec, Some(&format!("d-{id}"))).await {
            assert!(
                e.to_string()
                    .contains(&format!("upsert job github:acme/app#{id}")),
                "{e}"
            );
            failures += 1;
        }
    }
    assert_eq!(failures, 10, "no write commits on a full disk");
    let err = store.probe_write().await.expect_err("the probe sees it");
    assert!(err.to_string().contains("write to the store"), "{err}");
    drop(full);

    // Freed: every write succeeds again, on every pooled connection, without a restart.
    let tasks: Vec<_> = (200..230)
        .map(|id| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .upsert_job(&job(id, JobStatus::Queued, 2_000), Some(&format!("d-{id}")))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await
            .unwrap()
            .expect("writes succeed once the disk is freed");
    }
    store.probe_write().await.expect("the probe says so");
    for id in 100..110 {
        let rec = job(id, JobStatus::Queued, 1_000);
        store
            .upsert_job(&rec, Some(&format!("d-{id}")))
            .await
            .expect("a dropped delivery is taken when it comes again");
        assert!(store.job(&rec.key).await.unwrap().is_some());
    }
    assert!(
        store
            .record_intent(&intent("m-1", Some(1), 1, 3_000))
            .await
            .unwrap()
    );
    store.close().await;
}

/// PostgreSQL ends every session of the store (as a restart or a failover of the server
/// does): the writes after it fail at most once per broken connection, then succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: run under scripts/with-postgres (scripts/test does)"]
async fn postgres_sessions_ended_by_the_server_are_replaced() {
    harness::on_postgres(|db: Db| async move {
        let options = StoreOptions {
            max_connections: 3,
            acquire_timeout: Duration::from_secs(5),
            ..StoreOptions::default()
        };
        let store = Store::open_with(&db.url, &options).await.unwrap();
        // Three connections in the pool, all in use at once.
        let warm: Vec<_> = (0..6)
            .map(|id| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .upsert_job(&job(id, JobStatus::Queued, 1_000), None)
                        .await
                        .unwrap()
                })
            })
            .collect();
        for t in warm {
            t.await.unwrap();
        }
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
            .await
            .unwrap();
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut admin)
        .await
        .unwrap();
        assert!(!ended.is_empty(), "the store's sessions were ended");

        let mut failures = 0;
        for id in 100..120 {
            if store
                .upsert_job(&job(id, JobStatus::Queued, 2_000), None)
                .await
                .is_err()
            {
                failures += 1;
            }
        }
        assert!(failures <= ended.len(), "{failures} failures for {ended:?}");
        for id in 200..210 {
            store
                .upsert_job(&job(id, JobStatus::Queued, 3_000), None)
                .await
                .expect("the pool has replaced its connections");
        }
        store.probe_write().await.unwrap();
        store.close().await;
    })
    .await;
}
