//! The store's one suite: every case runs on SQLite and on PostgreSQL (`sqlite::<case>`,
//! `postgres::<case>`), each on a fresh database, so both backends answer the same assertions.

#[path = "store/harness.rs"]
mod harness;

use harness::{Db, intent, job, key, upsert_at_once};
use mayfly_core::{JobStatus, Time};
use mayfly_store::{
    Acquired, Backend, EventQuery, Fence, IntentState, Lease, NewEvent, Retention, Store,
    StoreError, StoreOptions, Upsert,
};
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
                #[ignore = "needs PostgreSQL: run under scripts/with-postgres (scripts/test does)"]
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
    samples_are_replaced_by_minute_read_in_order_and_pruned,
    probe_write_commits_until_the_store_is_closed,
    events_filter_by_time_subject_and_kind,
    prune_goes_in_bounded_batches_and_keeps_what_lives,
    lease_has_one_holder_and_a_new_epoch_per_holder,
    concurrent_acquires_have_one_winner,
    a_lease_not_renewed_runs_out_and_passes_on,
    stale_fences_write_nothing,
    a_write_in_flight_is_ordered_before_a_takeover,
    writer_elsewhere_names_the_live_leader,
];

async fn samples_are_replaced_by_minute_read_in_order_and_pruned(db: Db) {
    use mayfly_store::Sample;
    let at = |minute: i64, served: i64| Sample {
        minute: minute * 60_000,
        wait_max_secs: 30,
        queued: 2,
        starting: 1,
        busy: 3,
        idle: 0,
        powered_off: 4,
        leaving: 0,
        cost_per_hour_micros: 123_456,
        served,
    };
    for m in [3, 1, 2] {
        db.save_sample(&at(m, 1)).await.unwrap();
    }
    // A later pass of the same minute replaces its figures.
    db.save_sample(&at(2, 5)).await.unwrap();
    let all = db.samples_since(Time(0)).await.unwrap();
    assert_eq!(all, vec![at(1, 1), at(2, 5), at(3, 1)]);
    assert_eq!(db.samples_since(Time(2 * 60_000)).await.unwrap().len(), 2);
    assert_eq!(db.prune_samples(Time(3 * 60_000)).await.unwrap(), 2);
    assert_eq!(db.samples_since(Time(0)).await.unwrap(), vec![at(3, 1)]);
}

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

    assert_eq!(
        db.prune(Time(2_000), &keep_all_but_jobs())
            .await
            .unwrap()
            .jobs,
        1
    );
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
    assert_eq!(
        db.prune(Time(0), &keep_all_but_jobs()).await.unwrap().jobs,
        0
    );
}

/// A policy that prunes nothing, whatever the time.
fn keep_all() -> Retention {
    let long = Duration::from_secs(1 << 40);
    Retention {
        jobs: long,
        deliveries: long,
        events: long,
        intents: long,
        ..Retention::default()
    }
}

fn keep_all_but_jobs() -> Retention {
    Retention {
        jobs: Duration::ZERO,
        ..keep_all()
    }
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

    let only_events = Retention {
        events: Duration::ZERO,
        ..keep_all()
    };
    assert_eq!(db.prune(Time(3_000), &only_events).await.unwrap().events, 3);
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

async fn probe_write_commits_until_the_store_is_closed(db: Db) {
    for _ in 0..3 {
        db.probe_write().await.expect("an open store takes writes");
    }
    db.store.close().await;
    let err = db.probe_write().await.expect_err("a closed store does not");
    assert!(err.to_string().contains("write to the store"), "{err}");
}

async fn events_filter_by_time_subject_and_kind(db: Db) {
    let mut ids = Vec::new();
    for (at, kind, subject) in [
        (1_000, "create", "m-1"),
        (2_000, "create", "m-2"),
        (3_000, "delete", "m-1"),
        (4_000, "job", "github:acme/app#1"),
        (5_000, "delete", "m-2"),
    ] {
        let e = NewEvent::new(Time(at), kind, subject, format!("{kind} {subject}"));
        ids.push(db.record_event(&e).await.unwrap());
    }
    let got = |q: EventQuery| {
        let db = &db;
        async move {
            db.query_events(&q)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.at.millis())
                .collect::<Vec<_>>()
        }
    };
    let all = EventQuery::first(100);
    assert_eq!(got(all.clone()).await, [1_000, 2_000, 3_000, 4_000, 5_000]);
    let m1 = EventQuery {
        subject: Some("m-1".into()),
        ..all.clone()
    };
    assert_eq!(got(m1).await, [1_000, 3_000]);
    let deletes = EventQuery {
        kind: Some("delete".into()),
        ..all.clone()
    };
    assert_eq!(got(deletes).await, [3_000, 5_000]);
    let window = EventQuery {
        since: Some(Time(2_000)),
        until: Some(Time(4_000)),
        ..all.clone()
    };
    assert_eq!(
        got(window).await,
        [2_000, 3_000],
        "since inclusive, until not"
    );
    let newest = EventQuery {
        limit: 2,
        newest: true,
        ..all.clone()
    };
    assert_eq!(
        got(newest).await,
        [4_000, 5_000],
        "the newest two, oldest first"
    );
    let page = EventQuery {
        after_id: Some(ids[1]),
        limit: 2,
        ..all.clone()
    };
    assert_eq!(got(page).await, [3_000, 4_000]);
    let everything = EventQuery {
        after_id: Some(ids[0]),
        since: Some(Time(0)),
        until: Some(Time(10_000)),
        subject: Some("m-2".into()),
        kind: Some("delete".into()),
        limit: 10,
        newest: true,
    };
    assert_eq!(got(everything).await, [5_000]);
    assert!(got(EventQuery::first(0)).await.is_empty());
}

async fn prune_goes_in_bounded_batches_and_keeps_what_lives(db: Db) {
    for i in 0..25 {
        db.record_event(&NewEvent::new(Time(i), "job", "x", "old"))
            .await
            .unwrap();
    }
    db.record_event(&NewEvent::new(Time(10_000), "job", "x", "new"))
        .await
        .unwrap();
    for (name, state) in [
        ("gone", IntentState::Deleted),
        ("broken", IntentState::Failed),
        ("running", IntentState::Created),
        ("booting", IntentState::Pending),
    ] {
        let mut it = intent(name, None, 0, 100);
        it.state = state;
        db.record_intent(&it).await.unwrap();
    }
    let mut recent = intent("recently-gone", None, 0, 100);
    recent.state = IntentState::Deleted;
    recent.updated_at = Time(9_500);
    db.record_intent(&recent).await.unwrap();
    db.upsert_job(&job(1, JobStatus::Queued, 100), Some("d-old"))
        .await
        .unwrap();

    let policy = Retention {
        events: Duration::from_secs(1),
        intents: Duration::from_secs(1),
        deliveries: Duration::from_secs(1),
        batch: 10,
        max_batches: 2,
        ..keep_all()
    };
    let first = db.prune(Time(10_000), &policy).await.unwrap();
    assert_eq!(
        (first.events, first.more),
        (20, true),
        "two batches of ten, then it stops"
    );
    assert_eq!((first.intents, first.deliveries, first.jobs), (2, 1, 0));
    let second = db.prune(Time(10_000), &policy).await.unwrap();
    assert_eq!((second.events, second.more), (5, false));
    assert_eq!(second.total(), 5);
    let left = db.events(None, 100).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].message, "new");
    let mut names: Vec<_> = db
        .intents()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    names.sort();
    assert_eq!(names, ["booting", "recently-gone", "running"]);
    assert!(
        db.job(&key(1)).await.unwrap().is_some(),
        "a queued job stays"
    );
    let counts: std::collections::BTreeMap<_, _> =
        db.row_counts().await.unwrap().into_iter().collect();
    assert_eq!(
        (
            counts["events"],
            counts["intents"],
            counts["deliveries"],
            counts["jobs"]
        ),
        (1, 3, 0, 1)
    );
}

const LEASE: Duration = Duration::from_secs(30);

fn leading(a: Acquired) -> Lease {
    match a {
        Acquired::Leading(lease) => lease,
        Acquired::Held(state) => panic!("expected to lead, but {state:?}"),
    }
}

async fn lease_has_one_holder_and_a_new_epoch_per_holder(db: Db) {
    let free = db.lease().await.unwrap();
    assert_eq!((free.holder.as_deref(), free.live_holder()), (None, None));

    let a = leading(db.acquire_lease("a", LEASE).await.unwrap());
    assert_eq!(
        a.fence,
        Fence {
            holder: "a".into(),
            epoch: 1
        }
    );
    assert!(
        a.expires_at.millis() - a.acquired_at.millis() >= 29_000,
        "{a:?}"
    );
    match db.acquire_lease("b", LEASE).await.unwrap() {
        Acquired::Held(state) => {
            assert_eq!((state.live_holder(), state.epoch), (Some("a"), 1));
        }
        other => panic!("b must not lead while a does: {other:?}"),
    }
    let renewed = db
        .renew_lease(&a.fence, LEASE)
        .await
        .unwrap()
        .expect("a holds it");
    assert_eq!(renewed.fence, a.fence);
    assert!(renewed.expires_at >= a.expires_at);

    // Taking it again, as after a renewal whose answer was lost, is a new term.
    let again = leading(db.acquire_lease("a", LEASE).await.unwrap());
    assert_eq!(again.fence.epoch, 2);
    assert_eq!(
        db.renew_lease(&a.fence, LEASE).await.unwrap(),
        None,
        "epoch 1 is over"
    );

    assert!(
        !db.release_lease(&a.fence).await.unwrap(),
        "not the holder any more"
    );
    assert!(db.release_lease(&again.fence).await.unwrap());
    assert_eq!(db.lease().await.unwrap().live_holder(), None);
    let b = leading(db.acquire_lease("b", LEASE).await.unwrap());
    assert_eq!(
        b.fence,
        Fence {
            holder: "b".into(),
            epoch: 3
        }
    );
    assert_eq!(db.renew_lease(&again.fence, LEASE).await.unwrap(), None);
    assert_eq!(db.lease().await.unwrap().live_holder(), Some("b"));
}

async fn concurrent_acquires_have_one_winner(db: Db) {
    let tasks: Vec<_> = (0..15)
        .map(|i| {
            let store = db.store.clone();
            tokio::spawn(async move {
                store
                    .acquire_lease(&format!("replica-{}", i % 3), LEASE)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        if let Acquired::Leading(lease) = t.await.unwrap() {
            winners.push(lease.fence);
        }
    }
    // The holder may take it again (a new term); nobody else can while it is live.
    let holders: std::collections::BTreeSet<_> = winners.iter().map(|f| &f.holder).collect();
    assert_eq!(holders.len(), 1, "{winners:?}");
    let epochs: std::collections::BTreeSet<_> = winners.iter().map(|f| f.epoch).collect();
    assert_eq!(
        epochs.len(),
        winners.len(),
        "each term its own epoch: {winners:?}"
    );
    let state = db.lease().await.unwrap();
    assert_eq!(state.epoch, *epochs.last().unwrap());
}

async fn a_lease_not_renewed_runs_out_and_passes_on(db: Db) {
    let short = Duration::from_millis(300);
    let a = leading(db.acquire_lease("a", short).await.unwrap());
    assert!(matches!(
        db.acquire_lease("b", short).await.unwrap(),
        Acquired::Held(_)
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(db.lease().await.unwrap().live_holder(), None, "ran out");
    assert_eq!(
        db.renew_lease(&a.fence, short).await.unwrap(),
        None,
        "a lapsed lease is not revived"
    );
    let b = leading(db.acquire_lease("b", LEASE).await.unwrap());
    assert_eq!(b.fence.epoch, a.fence.epoch + 1);
    assert!(b.acquired_at.millis() >= a.expires_at.millis());
}

async fn stale_fences_write_nothing(db: Db) {
    // Long enough for two writes on a loaded machine, short enough to wait out.
    let short = Duration::from_millis(1_500);
    let a = leading(db.acquire_lease("a", short).await.unwrap());
    let fa = db.fenced(a.fence.clone());
    assert_eq!(fa.fence(), &a.fence);
    assert!(
        fa.record_intent(&intent("m-1", Some(1), 1, 1_000))
            .await
            .unwrap()
    );
    assert!(
        fa.set_intent_state("m-1", IntentState::Created, Some("srv-1"), Time(1_100))
            .await
            .unwrap()
    );

    // a pauses past its lease: its writes are refused before anyone takes over...
    tokio::time::sleep(short + Duration::from_millis(100)).await;
    let err = fa
        .record_intent(&intent("m-2", Some(2), 1, 2_000))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Fenced { epoch: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("ran out"), "{err}");

    // ...and after.
    let b = leading(db.acquire_lease("b", LEASE).await.unwrap());
    let fb = db.fenced(b.fence.clone());
    let labels = mayfly_core::Labels::new(["self-hosted"]);
    let refused = [
        fa.record_intent(&intent("m-3", Some(3), 1, 3_000))
            .await
            .unwrap_err(),
        fa.set_intent_state("m-1", IntentState::Deleted, None, Time(3_000))
            .await
            .unwrap_err(),
        fa.reassign_intent("m-1", Some(&key(9)), 1, None, &labels, Time(3_000))
            .await
            .unwrap_err(),
        fa.remove_intent("m-1").await.unwrap_err(),
    ];
    for err in refused {
        assert!(matches!(err, StoreError::Fenced { .. }), "{err:?}");
        assert!(
            err.to_string().contains("b leads now, under epoch 2"),
            "{err}"
        );
    }
    let all = db.intents().await.unwrap();
    assert_eq!(all.len(), 1, "nothing written: {all:?}");
    assert_eq!(
        (all[0].state, all[0].job.clone()),
        (IntentState::Created, Some(key(1)))
    );
    assert_eq!(db.instances_created(&key(2), 1).await.unwrap(), 0);
    assert_eq!(db.instances_created(&key(3), 1).await.unwrap(), 0);

    // The new leader writes.
    assert!(
        fb.record_intent(&intent("m-4", Some(4), 1, 4_000))
            .await
            .unwrap()
    );
    assert!(
        fb.reassign_intent("m-1", Some(&key(5)), 1, None, &labels, Time(4_100))
            .await
            .unwrap()
    );
    assert!(
        fb.set_intent_state("m-4", IntentState::Failed, None, Time(4_200))
            .await
            .unwrap()
    );
    assert!(fb.remove_intent("m-4").await.unwrap());
    assert_eq!(db.intents().await.unwrap().len(), 1);

    // A released lease fences too.
    assert!(db.release_lease(&b.fence).await.unwrap());
    let err = fb.remove_intent("m-1").await.unwrap_err();
    assert!(err.to_string().contains("released"), "{err}");
}

/// Every intent write the old leader saw succeed is visible to the new leader's first read
/// after it took over: none commits behind the takeover.
async fn a_write_in_flight_is_ordered_before_a_takeover(db: Db) {
    let lease = Duration::from_millis(1_000);
    let a = leading(db.acquire_lease("a", lease).await.unwrap());
    let fa = db.fenced(a.fence.clone());
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let fa = fa.clone();
            tokio::spawn(async move {
                let mut recorded = Vec::new();
                for i in 0.. {
                    let name = format!("w{w}-{i}");
                    match fa.record_intent(&intent(&name, None, 0, i)).await {
                        Ok(true) => recorded.push(name),
                        Ok(false) => unreachable!("names are unique"),
                        Err(StoreError::Fenced { .. }) => return recorded,
                        Err(e) => panic!("{e}"),
                    }
                }
                recorded
            })
        })
        .collect();
    let seen = loop {
        if let Acquired::Leading(_) = db.acquire_lease("b", LEASE).await.unwrap() {
            break db.intents().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let seen: std::collections::BTreeSet<_> = seen.into_iter().map(|i| i.name).collect();
    let mut total = 0;
    for w in writers {
        for name in w.await.unwrap() {
            total += 1;
            assert!(seen.contains(&name), "{name} committed behind the takeover");
        }
    }
    assert!(total > 0, "the old leader wrote before losing the lease");
}

async fn writer_elsewhere_names_the_live_leader(db: Db) {
    if db.backend() == Backend::Sqlite {
        // SQLite answers with its file lock (see `sqlite_has_one_writer`).
        return;
    }
    assert_eq!(db.writer_elsewhere().await.unwrap(), None);
    let a = leading(db.acquire_lease("host-a:42", LEASE).await.unwrap());
    assert_eq!(
        db.writer_elsewhere().await.unwrap().as_deref(),
        Some("host-a:42")
    );
    db.release_lease(&a.fence).await.unwrap();
    assert_eq!(db.writer_elsewhere().await.unwrap(), None);
    assert!(
        db.lock_single_writer().await.unwrap().is_none(),
        "replicas share PostgreSQL"
    );
}

#[tokio::test]
async fn sqlite_has_one_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mayfly.db");
    let url = path.display().to_string();
    let first = Store::open(&url).await.unwrap();
    let second = Store::open(&url).await.unwrap();
    // A dead process's lease is cleared by the next writer.
    leading(first.acquire_lease("gone", LEASE).await.unwrap());

    assert_eq!(second.writer_elsewhere().await.unwrap(), None);
    let lock = first
        .lock_single_writer()
        .await
        .unwrap()
        .expect("a SQLite file has a lock");
    assert_eq!(lock.path(), dir.path().join("mayfly.db.lock"));
    assert_eq!(first.lease().await.unwrap().live_holder(), None, "cleared");
    let err = second.lock_single_writer().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Held { .. }), "{err:?}");
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    assert!(
        text.contains("mayfly.db is in use by another mayfly"),
        "{text}"
    );
    assert!(
        text.contains("PostgreSQL"),
        "says how to run several: {text}"
    );
    let holder = second.writer_elsewhere().await.unwrap();
    assert_eq!(holder, Some(format!("pid {}", std::process::id())));

    drop(lock);
    assert_eq!(
        second.writer_elsewhere().await.unwrap(),
        None,
        "released on drop"
    );
    let lock = second.lock_single_writer().await.unwrap();
    assert!(lock.is_some());

    let memory = Store::open("sqlite::memory:").await.unwrap();
    assert!(memory.lock_single_writer().await.unwrap().is_none());
    assert_eq!(memory.writer_elsewhere().await.unwrap(), None);
    for s in [first, second, memory] {
        s.close().await;
    }
}

/// A takeover waits for a fenced write that passed its check and has not committed (here held
/// up by a row another transaction is inserting, as a paused process would hold it), so the new
/// leader's first read sees that write; without the share lock on the lease row the takeover
/// would go first and the write land behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: run under scripts/with-postgres (scripts/test does)"]
async fn postgres_a_takeover_waits_for_a_fenced_write_in_flight() {
    harness::on_postgres(|db: Db| async move {
        let lease = Duration::from_millis(2_000);
        let a = leading(db.acquire_lease("a", lease).await.unwrap());
        let mut blocker = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
            .await
            .unwrap();
        sqlx::raw_sql(
            "BEGIN; INSERT INTO intents (name, pool, provider, attempt, labels, spec, created_at,
                 state, updated_at)
             VALUES ('m-x', 'p', 'hetzner', 0, '[]', '{}', 0, 'pending', 0);",
        )
        .execute(&mut blocker)
        .await
        .unwrap();
        let fa = db.fenced(a.fence.clone());
        let write = tokio::spawn(async move { fa.record_intent(&intent("m-x", None, 0, 1)).await });
        // The write checks its fence, then waits on the uncommitted row; its lease runs out.
        tokio::time::sleep(lease + Duration::from_millis(200)).await;
        assert!(!write.is_finished());
        let store = db.store.clone();
        let takeover = tokio::spawn(async move {
            loop {
                if let Acquired::Leading(_) = store.acquire_lease("b", LEASE).await.unwrap() {
                    return store.intents().await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !takeover.is_finished(),
            "the takeover waits for the write in flight"
        );
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut blocker)
            .await
            .unwrap();
        assert!(
            write.await.unwrap().unwrap(),
            "the write went through, before the takeover"
        );
        let seen = takeover.await.unwrap();
        assert!(
            seen.iter().any(|i| i.name == "m-x"),
            "the new leader's first read sees it: {seen:?}"
        );
    })
    .await;
}
