//! The store's one suite: every case runs on SQLite and on PostgreSQL (`sqlite::<case>`,
//! `postgres::<case>`), each on a fresh database, so both backends answer the same assertions.

#[path = "store/harness.rs"]
mod harness;

use harness::{Db, intent, job, key, upsert_at_once};
use mayfly_core::{JobStatus, Time};
use mayfly_store::{Backend, IntentState, NewEvent, Store, StoreError, StoreOptions, Upsert};
use serde_json::json;
use std::time::Duration;

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    crate::harness::on_sqlite(super::$case).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    crate::harness::on_postgres(super::$case).await
                }
            )*
        }
    };
}

on_both_backends![
    upsert_inserts_updates_and_ignores_what_is_not_new,
    upsert_never_moves_a_status_back,
    upsert_keeps_fields_a_later_event_lacks,
    duplicate_delivery_changes_nothing,
    concurrent_upserts_keep_one_row_with_the_highest_status,
    concurrent_redeliveries_apply_once,
    a_job_leaves_the_queue_once,
    jobs_list_by_status_in_queue_order,
    retention_forgets_only_old_finished_jobs,
    record_intent_inserts_only_if_absent,
    concurrent_record_intent_has_one_winner,
    intent_states_change_and_filter,
    a_reused_instance_is_reassigned_to_its_next_job,
    instances_created_counts_every_intent_ever_recorded,
    events_page_in_id_order_and_prune,
    reopening_keeps_data_and_reapplies_no_migration,
    ids_past_i64_are_refused,
    ping_answers_until_the_store_is_closed,
    cursors_are_saved_and_replaced,
];

async fn cursors_are_saved_and_replaced(db: Db) {
    assert_eq!(db.cursor("github:acme/app").await.unwrap(), None);
    db.save_cursor("github:acme/app", r#"{"seen":{}}"#, Time(1_000))
        .await
        .unwrap();
    db.save_cursor(
        "github:acme/app",
        r#"{"seen":{"1":["queued","t"]}}"#,
        Time(2_000),
    )
    .await
    .unwrap();
    db.save_cursor("github:acme/other", "{}", Time(2_000))
        .await
        .unwrap();
    assert_eq!(
        db.cursor("github:acme/app").await.unwrap().as_deref(),
        Some(r#"{"seen":{"1":["queued","t"]}}"#)
    );
    assert_eq!(
        db.cursor("github:acme/other").await.unwrap().as_deref(),
        Some("{}")
    );
}

async fn upsert_inserts_updates_and_ignores_what_is_not_new(db: Db) {
    let queued = job(1, JobStatus::Queued, 1_000);
    assert_eq!(
        db.upsert_job(&queued, None).await.unwrap(),
        Upsert::Inserted
    );
    assert_eq!(db.job(&key(1)).await.unwrap(), Some(queued.clone()));

    let mut again = queued.clone();
    again.updated_at = Time(1_500);
    assert_eq!(
        db.upsert_job(&again, None).await.unwrap(),
        Upsert::Unchanged
    );
    assert_eq!(
        db.job(&key(1)).await.unwrap().unwrap().updated_at,
        Time(1_000),
        "no change, no new time"
    );

    let mut running = job(1, JobStatus::InProgress, 2_000);
    running.runner_name = Some("mayfly-a1".into());
    assert_eq!(
        db.upsert_job(&running, None).await.unwrap(),
        Upsert::Started,
        "out of the queue: an update that says so"
    );
    assert_eq!(db.job(&key(1)).await.unwrap(), Some(running.clone()));

    let mut relabelled = running.clone();
    relabelled.labels = mayfly_core::Labels::new(["self-hosted", "linux", "x64"]);
    relabelled.updated_at = Time(2_500);
    assert_eq!(
        db.upsert_job(&relabelled, None).await.unwrap(),
        Upsert::Updated,
        "same rank, new field"
    );

    let planned = relabelled.to_job(2);
    assert_eq!(
        (planned.key, planned.instances_created, planned.status),
        (key(1), 2, JobStatus::InProgress)
    );
    assert_eq!(db.job(&key(2)).await.unwrap(), None);
}

async fn upsert_never_moves_a_status_back(db: Db) {
    let done = job(1, JobStatus::Completed, 3_000);
    assert_eq!(
        db.upsert_job(&done, Some("d-3")).await.unwrap(),
        Upsert::Inserted
    );
    // The earlier events arrive late.
    assert_eq!(
        db.upsert_job(&job(1, JobStatus::InProgress, 2_000), Some("d-2"))
            .await
            .unwrap(),
        Upsert::Stale
    );
    assert_eq!(
        db.upsert_job(&job(1, JobStatus::Queued, 1_000), Some("d-1"))
            .await
            .unwrap(),
        Upsert::Stale
    );
    assert_eq!(db.job(&key(1)).await.unwrap(), Some(done));
}

async fn upsert_keeps_fields_a_later_event_lacks(db: Db) {
    let mut running = job(1, JobStatus::InProgress, 2_000);
    running.runner_name = Some("mayfly-a1".into());
    db.upsert_job(&running, None).await.unwrap();

    let mut done = job(1, JobStatus::Completed, 3_000);
    done.run_id = None;
    done.workflow = None;
    assert_eq!(db.upsert_job(&done, None).await.unwrap(), Upsert::Updated);
    let stored = db.job(&key(1)).await.unwrap().unwrap();
    assert_eq!(stored.status, JobStatus::Completed);
    assert_eq!(stored.runner_name.as_deref(), Some("mayfly-a1"));
    assert_eq!(stored.run_id, Some(7001));
    assert_eq!(stored.workflow.as_deref(), Some("ci"));
    assert_eq!(db.upsert_job(&done, None).await.unwrap(), Upsert::Unchanged);
}

async fn duplicate_delivery_changes_nothing(db: Db) {
    let queued = job(1, JobStatus::Queued, 1_000);
    assert_eq!(
        db.upsert_job(&queued, Some("d-1")).await.unwrap(),
        Upsert::Inserted
    );
    let done = job(1, JobStatus::Completed, 2_000);
    assert_eq!(
        db.upsert_job(&done, Some("d-1")).await.unwrap(),
        Upsert::DuplicateDelivery
    );
    assert_eq!(db.job(&key(1)).await.unwrap(), Some(queued));
    // A delivery id is global: reused for another job it is still a duplicate.
    assert_eq!(
        db.upsert_job(&job(2, JobStatus::Queued, 1_000), Some("d-1"))
            .await
            .unwrap(),
        Upsert::DuplicateDelivery
    );
    assert_eq!(db.job(&key(2)).await.unwrap(), None);
    assert_eq!(
        db.upsert_job(&done, Some("d-2")).await.unwrap(),
        Upsert::Updated
    );
}

async fn concurrent_upserts_keep_one_row_with_the_highest_status(db: Db) {
    let statuses = [
        JobStatus::Queued,
        JobStatus::InProgress,
        JobStatus::Completed,
    ];
    let upserts = (0..20)
        .map(|i| {
            (
                job(1, statuses[i % 3], 1_000 + i as i64),
                Some(format!("d-{i}")),
            )
        })
        .collect();
    let outcomes = upsert_at_once(&db, upserts).await;
    assert_eq!(
        outcomes.iter().filter(|o| **o == Upsert::Inserted).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        !outcomes.contains(&Upsert::DuplicateDelivery),
        "{outcomes:?}"
    );
    let all = db.jobs_with_status(&statuses).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].status, JobStatus::Completed);
}

async fn concurrent_redeliveries_apply_once(db: Db) {
    let upserts = (0..20)
        .map(|i| {
            (
                job(1, JobStatus::InProgress, 1_000 + i),
                Some("same".into()),
            )
        })
        .collect();
    let outcomes = upsert_at_once(&db, upserts).await;
    let applied = outcomes
        .iter()
        .filter(|o| **o != Upsert::DuplicateDelivery)
        .count();
    assert_eq!(applied, 1);
}

/// Exactly one upsert reports that a queued job started, under any interleaving: the queue
/// wait is measured there, once per job.
async fn a_job_leaves_the_queue_once(db: Db) {
    db.upsert_job(&job(1, JobStatus::Queued, 1_000), None)
        .await
        .unwrap();
    let upserts = (0..20)
        .map(|i| {
            let mut rec = job(1, JobStatus::InProgress, 2_000 + i);
            rec.runner_name = Some(format!("runner-{}", i % 3));
            (rec, Some(format!("d-{i}")))
        })
        .collect();
    let outcomes = upsert_at_once(&db, upserts).await;
    assert_eq!(
        outcomes.iter().filter(|o| **o == Upsert::Started).count(),
        1,
        "{outcomes:?}"
    );
    let mut done = job(1, JobStatus::Completed, 3_000);
    done.runner_name = Some("runner-0".into());
    assert_eq!(db.upsert_job(&done, None).await.unwrap(), Upsert::Updated);

    // Queued, then completed: started if a runner ran it, not if it was cancelled in the queue.
    db.upsert_job(&job(2, JobStatus::Queued, 1_000), None)
        .await
        .unwrap();
    let mut ran = job(2, JobStatus::Completed, 2_000);
    ran.runner_name = Some("runner-9".into());
    assert_eq!(db.upsert_job(&ran, None).await.unwrap(), Upsert::Started);
    db.upsert_job(&job(3, JobStatus::Queued, 1_000), None)
        .await
        .unwrap();
    let cancelled = job(3, JobStatus::Completed, 2_000);
    assert_eq!(
        db.upsert_job(&cancelled, None).await.unwrap(),
        Upsert::Updated
    );
    // First seen in progress: it never waited in this store's queue.
    assert_eq!(
        db.upsert_job(&job(4, JobStatus::InProgress, 2_000), None)
            .await
            .unwrap(),
        Upsert::Inserted
    );
    assert!(Upsert::Started.changed() && !Upsert::Stale.changed());
}

async fn jobs_list_by_status_in_queue_order(db: Db) {
    let mut recs = Vec::new();
    for (id, status, queued) in [
        (30, JobStatus::Queued, 2_000),
        (20, JobStatus::Queued, 1_000),
        (10, JobStatus::InProgress, 2_000),
        (40, JobStatus::Completed, 500),
    ] {
        let mut rec = job(id, status, 3_000);
        rec.queued_at = Time(queued);
        db.upsert_job(&rec, None).await.unwrap();
        recs.push(rec);
    }
    let mut other_scope = job(5, JobStatus::Queued, 3_000);
    other_scope.key.scope = "Zeta/app".into();
    other_scope.queued_at = Time(2_000);
    db.upsert_job(&other_scope, None).await.unwrap();

    let ids = |jobs: Vec<mayfly_store::JobRecord>| {
        jobs.into_iter()
            .map(|j| (j.key.scope.to_string(), j.key.id))
            .collect::<Vec<_>>()
    };
    let live = db
        .jobs_with_status(&[JobStatus::Queued, JobStatus::InProgress])
        .await
        .unwrap();
    // Byte order on both backends: "Zeta" sorts before "acme".
    let want = [
        ("acme/app", 20),
        ("Zeta/app", 5),
        ("acme/app", 10),
        ("acme/app", 30),
    ];
    assert_eq!(ids(live), want.map(|(s, id)| (s.to_string(), id)));
    assert_eq!(
        ids(db.jobs_with_status(&[JobStatus::Completed]).await.unwrap()),
        [("acme/app".to_string(), 40)]
    );
    assert!(db.jobs_with_status(&[]).await.unwrap().is_empty());
}

async fn retention_forgets_only_old_finished_jobs(db: Db) {
    db.upsert_job(&job(1, JobStatus::Completed, 1_000), Some("old-done"))
        .await
        .unwrap();
    db.upsert_job(&job(2, JobStatus::Completed, 5_000), Some("new-done"))
        .await
        .unwrap();
    db.upsert_job(&job(3, JobStatus::Queued, 1_000), Some("old-queued"))
        .await
        .unwrap();
    assert!(
        db.record_intent(&intent("mayfly-1-0", Some(1), 1, 900))
            .await
            .unwrap()
    );

    assert_eq!(db.forget_finished_jobs(Time(2_000)).await.unwrap(), 1);
    assert_eq!(db.job(&key(1)).await.unwrap(), None);
    assert!(db.job(&key(2)).await.unwrap().is_some());
    assert!(db.job(&key(3)).await.unwrap().is_some());
    assert_eq!(
        db.instances_created(&key(1), 1).await.unwrap(),
        0,
        "its counts go with it"
    );
    // Its deliveries went too; the others stay.
    assert_eq!(
        db.upsert_job(&job(1, JobStatus::Completed, 1_000), Some("old-done"))
            .await
            .unwrap(),
        Upsert::Inserted
    );
    let dup = db
        .upsert_job(&job(2, JobStatus::Completed, 5_000), Some("new-done"))
        .await
        .unwrap();
    assert_eq!(dup, Upsert::DuplicateDelivery);
    assert_eq!(db.forget_finished_jobs(Time(0)).await.unwrap(), 0);
}

async fn record_intent_inserts_only_if_absent(db: Db) {
    let first = intent("mayfly-1-0", Some(1), 1, 1_000);
    assert!(db.record_intent(&first).await.unwrap());
    let mut second = intent("mayfly-1-0", Some(2), 3, 2_000);
    second.pool = "other".into();
    assert!(!db.record_intent(&second).await.unwrap());
    assert_eq!(db.intents().await.unwrap(), [first]);
    assert_eq!(db.instances_created(&key(2), 3).await.unwrap(), 0);
}

async fn concurrent_record_intent_has_one_winner(db: Db) {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = db.store.clone();
            let it = intent("mayfly-1-0", Some(1), 1, 1_000 + i);
            tokio::spawn(async move { store.record_intent(&it).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
    assert_eq!(db.intents().await.unwrap().len(), 1);
    assert_eq!(db.instances_created(&key(1), 1).await.unwrap(), 1);
}

async fn a_reused_instance_is_reassigned_to_its_next_job(db: Db) {
    db.record_intent(&intent("m-1", Some(1), 1, 1_000))
        .await
        .unwrap();
    let labels = mayfly_core::Labels::new(["self-hosted", "gpu"]);
    assert!(
        db.reassign_intent("m-1", Some(&key(2)), 3, Some(77), &labels, Time(5_000))
            .await
            .unwrap()
    );
    let all = db.intents().await.unwrap();
    let m = &all[0];
    assert_eq!(
        (m.job.clone(), m.attempt, m.run_id, m.state, m.updated_at),
        (Some(key(2)), 3, Some(77), IntentState::Created, Time(5_000))
    );
    assert!(m.labels.contains("gpu"));
    assert_eq!(m.created_at, Time(1_000), "still the same instance");
    assert_eq!(
        db.instances_created(&key(2), 3).await.unwrap(),
        0,
        "reuse creates nothing"
    );
    assert_eq!(db.instances_created(&key(1), 1).await.unwrap(), 1);
    assert!(
        !db.reassign_intent("nope", None, 0, None, &labels, Time(6_000))
            .await
            .unwrap()
    );
}

async fn intent_states_change_and_filter(db: Db) {
    db.record_intent(&intent("b", Some(1), 1, 1_000))
        .await
        .unwrap();
    db.record_intent(&intent("a", Some(2), 1, 1_000))
        .await
        .unwrap();
    db.record_intent(&intent("standby", None, 0, 500))
        .await
        .unwrap();
    let names = |v: Vec<mayfly_store::Intent>| v.into_iter().map(|i| i.name).collect::<Vec<_>>();
    assert_eq!(names(db.intents().await.unwrap()), ["standby", "a", "b"]);

    assert!(
        db.set_intent_state("a", IntentState::Created, Some("srv-42"), Time(2_000))
            .await
            .unwrap()
    );
    assert!(
        db.set_intent_state("a", IntentState::Deleted, None, Time(3_000))
            .await
            .unwrap()
    );
    assert!(
        !db.set_intent_state("nope", IntentState::Failed, None, Time(3_000))
            .await
            .unwrap()
    );
    let a = db.intents_in_state(&[IntentState::Deleted]).await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(
        (a[0].provider_id.as_deref(), a[0].updated_at),
        (Some("srv-42"), Time(3_000))
    );
    assert_eq!(a[0].job, Some(key(2)));
    assert_eq!(
        names(db.intents_in_state(&[IntentState::Pending]).await.unwrap()),
        ["standby", "b"]
    );
    assert!(db.intents_in_state(&[]).await.unwrap().is_empty());

    let standby = &db.intents_in_state(&[IntentState::Pending]).await.unwrap()[0];
    assert_eq!((standby.job.as_ref(), standby.run_id), (None, None));
    assert_eq!(
        *standby,
        intent("standby", None, 0, 500),
        "round trip, spec and labels included"
    );

    assert!(db.remove_intent("a").await.unwrap());
    assert!(!db.remove_intent("a").await.unwrap());
    assert_eq!(names(db.intents().await.unwrap()), ["standby", "b"]);
}

async fn instances_created_counts_every_intent_ever_recorded(db: Db) {
    db.record_intent(&intent("j1-a1-0", Some(1), 1, 1_000))
        .await
        .unwrap();
    db.record_intent(&intent("j1-a1-1", Some(1), 1, 1_100))
        .await
        .unwrap();
    db.record_intent(&intent("j1-a2-0", Some(1), 2, 1_200))
        .await
        .unwrap();
    db.record_intent(&intent("standby", None, 0, 1_300))
        .await
        .unwrap();
    db.set_intent_state("j1-a1-0", IntentState::Failed, None, Time(1_400))
        .await
        .unwrap();
    db.remove_intent("j1-a1-1").await.unwrap();
    assert_eq!(
        db.instances_created(&key(1), 1).await.unwrap(),
        2,
        "removed and failed ones count"
    );
    assert_eq!(db.instances_created(&key(1), 2).await.unwrap(), 1);

    // Enough attempts to take several queries, one of them for another forge with the same id.
    let mut asked: Vec<_> = (0..1_200).map(|id| (key(id), 1)).collect();
    asked.push((key(1), 2));
    let gitlab = mayfly_core::JobKey {
        forge: mayfly_core::ForgeKind::Gitlab,
        ..key(1)
    };
    asked.push((gitlab.clone(), 1));
    let counts = db.instances_created_for(&asked).await.unwrap();
    assert_eq!(counts.len(), asked.len());
    assert_eq!(counts[&(key(1), 1)], 2);
    assert_eq!(counts[&(key(1), 2)], 1);
    assert_eq!(counts[&(gitlab, 1)], 0);
    assert_eq!(counts.values().sum::<u32>(), 3);
}

async fn events_page_in_id_order_and_prune(db: Db) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let e = NewEvent::new(
            Time(1_000 * i),
            "create",
            format!("mayfly-{i}"),
            format!("created mayfly-{i}"),
        );
        let e = if i == 2 {
            e.with_details(json!({"pool": "default", "type": "cx23"}))
        } else {
            e
        };
        ids.push(db.record_event(&e).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let first = db.events(None, 2).await.unwrap();
    assert_eq!(first.iter().map(|e| e.id).collect::<Vec<_>>(), ids[..2]);
    let next = db.events(Some(first[1].id), 2).await.unwrap();
    assert_eq!(next.iter().map(|e| e.id).collect::<Vec<_>>(), ids[2..4]);
    assert_eq!(
        next[0].details,
        Some(json!({"pool": "default", "type": "cx23"}))
    );
    assert_eq!(
        (next[0].kind.as_str(), next[0].subject.as_str(), next[0].at),
        ("create", "mayfly-2", Time(2_000))
    );
    assert_eq!(next[1].details, None);
    assert!(db.events(Some(ids[4]), 10).await.unwrap().is_empty());

    assert_eq!(db.prune_events(Time(3_000)).await.unwrap(), 3);
    let left = db.events(None, 10).await.unwrap();
    assert_eq!(left.iter().map(|e| e.id).collect::<Vec<_>>(), ids[3..]);
    let newer = db
        .record_event(&NewEvent::new(
            Time(9_000),
            "job",
            "github:acme/app#1",
            "queued",
        ))
        .await
        .unwrap();
    assert!(newer > ids[4], "ids are not reused after pruning");
}

async fn reopening_keeps_data_and_reapplies_no_migration(db: Db) {
    db.upsert_job(&job(1, JobStatus::Queued, 1_000), Some("d-1"))
        .await
        .unwrap();
    db.record_intent(&intent("mayfly-1-0", Some(1), 1, 1_000))
        .await
        .unwrap();
    let second = Store::open(&db.url)
        .await
        .expect("open the same database twice");
    assert_eq!(
        second.job(&key(1)).await.unwrap(),
        Some(job(1, JobStatus::Queued, 1_000))
    );
    second.close().await;
    db.store.close().await;

    let reopened = Store::open(&db.url).await.expect("reopen");
    assert_eq!(reopened.backend(), db.backend());
    assert_eq!(reopened.intents().await.unwrap().len(), 1);
    let dup = reopened
        .upsert_job(&job(1, JobStatus::Completed, 2_000), Some("d-1"))
        .await
        .unwrap();
    assert_eq!(dup, Upsert::DuplicateDelivery);
    reopened.close().await;
}

async fn ids_past_i64_are_refused(db: Db) {
    let mut rec = job(1, JobStatus::Queued, 1_000);
    rec.key.id = u64::MAX;
    let err = db.upsert_job(&rec, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("job id"), "{err}");
}

async fn ping_answers_until_the_store_is_closed(db: Db) {
    db.ping().await.expect("an open store answers");
    db.store.close().await;
    let err = db.ping().await.expect_err("a closed store does not answer");
    assert!(err.to_string().contains("ping the store"), "{err}");
}

// Backend-specific checks that need no suite.

#[tokio::test]
async fn sqlite_opens_every_url_form_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("mayfly.db");
    for url in [
        path.display().to_string(),
        format!("sqlite:{}", path.display()),
        format!("sqlite://{}", path.display()),
    ] {
        let store = Store::open(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(store.backend(), Backend::Sqlite);
        assert_eq!(store.backend().to_string(), "sqlite");
        store.close().await;
    }
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn sqlite_in_memory_is_one_database() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let tasks: Vec<_> = (0..5)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .record_intent(&intent(&format!("m-{i}"), None, 0, i))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(store.intents().await.unwrap().len(), 5);
    store.close().await;
}

#[tokio::test]
async fn bad_urls_are_refused_with_the_reason_and_no_password() {
    for url in [
        "mysql://root:hunter2@db/mayfly",
        "sqlite:",
        "sqlite:x.db?mode=ro",
    ] {
        let err = Store::open(url).await.expect_err(url);
        let text = format!("{err} {err:?}");
        assert!(matches!(err, StoreError::BadUrl { .. }), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let err = Store::open(&file.join("mayfly.db").display().to_string())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::CreateDir { .. }), "{err:?}");
    assert!(err.to_string().contains("create directory"), "{err}");
}

#[tokio::test]
async fn unreachable_postgres_is_reported_without_the_password() {
    let options = StoreOptions {
        acquire_timeout: Duration::from_secs(2),
        ..StoreOptions::default()
    };
    let url = "postgres://mayfly:hunter2@127.0.0.1:1/mayfly";
    let err = Store::open_with(url, &options).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        matches!(
            err,
            StoreError::Open {
                backend: Backend::Postgres,
                ..
            }
        ),
        "{text}"
    );
    assert!(
        text.contains("postgres://mayfly:***@127.0.0.1:1/mayfly"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("refused") || text.contains("no connection within"),
        "says why: {text}"
    );
}
