//! The store stays bounded under a steady load: a day of 10,000 jobs in virtual time, each with
//! its three webhook deliveries, its intent (recorded, created, deleted) and three events,
//! pruned every ten minutes, on SQLite and on PostgreSQL.
//!
//! The ages are shorter than the defaults (hours, not days) so that a simulated day reaches
//! the steady state several times over; the bound scales with the ages: rows ≈ rate × (age +
//! pruning interval). docs/operations.md turns the numbers printed here into the defaults'.

#[path = "store/harness.rs"]
#[allow(dead_code)] // the suite's harness: this file uses part of it
mod harness;

use harness::{Db, intent, job};
use mayfly_core::{JobStatus, Time};
use mayfly_store::{Backend, IntentState, NewEvent, Retention, Store};
use std::collections::BTreeMap;
use std::time::Duration;

const HOUR: i64 = 3_600_000;
const JOBS: u64 = 10_000;
const DAY: i64 = 24 * HOUR;
/// A job every 8.64 s.
const EVERY: i64 = DAY / JOBS as i64;
/// From queued to completed: a minute in the queue, five running.
const QUEUED: i64 = 60_000;
const RUNS: i64 = 300_000;
const PRUNE_EVERY: i64 = HOUR / 6;

fn policy() -> Retention {
    Retention {
        jobs: Duration::from_secs(6 * 3600),
        deliveries: Duration::from_secs(2 * 3600),
        events: Duration::from_secs(6 * 3600),
        intents: Duration::from_secs(6 * 3600),
        ..Retention::default()
    }
}

/// Rows of each table at most, at any prune: what one age holds at the rate, plus one pruning
/// interval, plus the jobs in flight, plus 5 %.
fn bounds() -> BTreeMap<&'static str, u64> {
    let per_hour = JOBS as f64 / 24.0;
    let held = |age: Duration, per_job: f64| {
        let hours = age.as_secs_f64() / 3600.0 + PRUNE_EVERY as f64 / HOUR as f64;
        let in_flight = (QUEUED + RUNS) as f64 / EVERY as f64 + 1.0;
        ((per_hour * hours + in_flight) * per_job * 1.05).ceil() as u64
    };
    let p = policy();
    BTreeMap::from([
        ("jobs", held(p.jobs, 1.0)),
        ("intent_counts", held(p.jobs, 1.0)),
        ("deliveries", held(p.deliveries, 3.0)),
        ("events", held(p.events, 3.0)),
        ("intents", held(p.intents, 1.0)),
    ])
}

/// One job's life: its writes at their times, in order.
enum Step {
    Queued(u64),
    Started(u64),
    Done(u64),
}

async fn apply(store: &Store, step: Step, at: i64) {
    let name = |id: u64| format!("mayfly-{id}");
    match step {
        Step::Queued(id) => {
            store
                .upsert_job(&job(id, JobStatus::Queued, at), Some(&format!("{id}-q")))
                .await
                .unwrap();
            store
                .record_intent(&intent(&name(id), Some(id), 1, at))
                .await
                .unwrap();
            store
                .record_event(&NewEvent::new(Time(at), "create", name(id), "created"))
                .await
                .unwrap();
        }
        Step::Started(id) => {
            let mut rec = job(id, JobStatus::InProgress, at);
            rec.runner_name = Some(name(id));
            store
                .upsert_job(&rec, Some(&format!("{id}-s")))
                .await
                .unwrap();
            store
                .set_intent_state(&name(id), IntentState::Created, Some("srv"), Time(at))
                .await
                .unwrap();
            store
                .record_event(&NewEvent::new(
                    Time(at),
                    "job",
                    format!("job {id}"),
                    "started",
                ))
                .await
                .unwrap();
        }
        Step::Done(id) => {
            let mut rec = job(id, JobStatus::Completed, at);
            rec.runner_name = Some(name(id));
            store
                .upsert_job(&rec, Some(&format!("{id}-d")))
                .await
                .unwrap();
            store
                .set_intent_state(&name(id), IntentState::Deleted, None, Time(at))
                .await
                .unwrap();
            store
                .record_event(&NewEvent::new(Time(at), "delete", name(id), "deleted"))
                .await
                .unwrap();
        }
    }
}

/// The SQLite database's and its WAL's sizes in bytes.
fn file_bytes(url: &str) -> Option<(u64, u64)> {
    let path = url.strip_prefix("sqlite://")?;
    let size = |suffix: &str| {
        std::fs::metadata(format!("{path}{suffix}"))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    Some((size(""), size("-wal")))
}

async fn a_day_of_jobs_stays_under_the_bound(db: Db) {
    let bounds = bounds();
    let mut steps: Vec<(i64, u8, Step)> = Vec::with_capacity(3 * JOBS as usize);
    for id in 0..JOBS {
        let at = id as i64 * EVERY;
        steps.push((at, 0, Step::Queued(id)));
        steps.push((at + QUEUED, 1, Step::Started(id)));
        steps.push((at + QUEUED + RUNS, 2, Step::Done(id)));
    }
    steps.sort_by_key(|(at, order, _)| (*at, *order));

    let mut peak: BTreeMap<&str, u64> = BTreeMap::new();
    let mut size_at_half = None;
    let started = std::time::Instant::now();
    let mut steps = steps.into_iter().peekable();
    for prune_at in (1..=DAY / PRUNE_EVERY).map(|n| n * PRUNE_EVERY) {
        // The steps before this prune, each job's in order, the jobs at once (as webhooks come).
        let mut by_job: BTreeMap<u64, Vec<(i64, Step)>> = BTreeMap::new();
        while let Some((at, _, step)) = steps.next_if(|(at, _, _)| *at < prune_at) {
            let id = match step {
                Step::Queued(id) | Step::Started(id) | Step::Done(id) => id,
            };
            by_job.entry(id).or_default().push((at, step));
        }
        // SQLite has one writer at a time: concurrent writers would only wait on each other.
        if db.backend() == Backend::Sqlite {
            let mut window: Vec<_> = by_job.into_values().flatten().collect();
            window.sort_by_key(|(at, _)| *at);
            for (at, step) in window {
                apply(&db, step, at).await;
            }
        } else {
            let mut tasks = tokio::task::JoinSet::new();
            for (_, job_steps) in by_job {
                let store = db.store.clone();
                tasks.spawn(async move {
                    for (at, step) in job_steps {
                        apply(&store, step, at).await;
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
        }
        db.prune(Time(prune_at), &policy()).await.unwrap();
        for (table, n) in db.row_counts().await.unwrap() {
            assert!(
                n <= bounds[table],
                "{table}: {n} rows at {:.1}h, bound {}",
                prune_at as f64 / HOUR as f64,
                bounds[table]
            );
            let p = peak.entry(table).or_default();
            *p = (*p).max(n);
        }
        if prune_at == DAY / 2 {
            size_at_half = file_bytes(&db.url);
        }
    }
    // The last jobs finish after the day.
    for (at, _, step) in steps {
        apply(&db, step, at).await;
    }
    let size_at_end = file_bytes(&db.url);
    println!(
        "{} backend: {JOBS} jobs in a simulated day, {:.1}s; peak rows {peak:?}; bounds {bounds:?}",
        db.backend(),
        started.elapsed().as_secs_f64()
    );
    // Not vacuous: the steady state was reached, close to the bound.
    for (table, n) in &peak {
        assert!(
            *n as f64 >= bounds[table] as f64 * 0.8,
            "{table}: peak {n} is far below its bound {}: the test did not reach the steady state",
            bounds[table]
        );
    }
    if let (Some(half), Some(end)) = (size_at_half, size_at_end) {
        println!(
            "SQLite database + WAL: {} + {} bytes at 12h, {} + {} bytes at 24h",
            half.0, half.1, end.0, end.1
        );
        assert!(
            end.0 <= half.0 + half.0 / 10,
            "the database kept growing in the steady state: {} → {} bytes",
            half.0,
            end.0
        );
        // The WAL is checkpointed back to its start every 1,000 pages (about 4 MB).
        assert!(end.0 < 8 << 20 && end.1 < 8 << 20, "{end:?} bytes");
    }
}

/// On a memory file system when there is one: the file's size is under test, not the disk's
/// fsyncs, which would make this test take minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_day_of_jobs_stays_under_the_bound() {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    let url = format!("sqlite://{}/mayfly.db", dir.path().display());
    let store = Store::open(&url).await.unwrap();
    a_day_of_jobs_stays_under_the_bound(Db {
        store: store.clone(),
        url,
    })
    .await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run under scripts/with-postgres (scripts/test does)"]
async fn postgres_a_day_of_jobs_stays_under_the_bound() {
    harness::on_postgres(a_day_of_jobs_stays_under_the_bound).await;
}
