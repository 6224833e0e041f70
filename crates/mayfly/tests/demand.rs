//! The demand pass against the fake GitHub and a real store: polled jobs land in the store and
//! wake the reconciler; an idle pass changes nothing; a job the store holds as queued for long,
//! outside the polled repositories, is confirmed, and one GitHub no longer knows is closed.

use mayfly::demand::{Demand, Wake};
use mayfly_core::{ForgeKind, JobKey, JobStatus, Labels, Secret, Time};
use mayfly_forge::github::{AuthConfig, Client, ClientConfig, LimitsConfig, Repo};
use mayfly_sim::clock::Clock;
use mayfly_sim::github::{Github, GithubConfig, NewJob};
use mayfly_sim::stats::Stats;
use mayfly_store::{JobRecord, Store};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "demand-test-token";

fn job(labels: &[&str]) -> NewJob {
    NewJob {
        labels: labels.iter().map(|s| s.to_string()).collect(),
        duration: Duration::from_secs(60),
    }
}

/// The fake GitHub (its call counts) and a client for it.
async fn fake() -> (Arc<Github>, Arc<Stats>, Client) {
    let stats = Arc::new(Stats::default());
    let gh = Github::new(
        GithubConfig {
            tokens: vec![TOKEN.into()],
            ..GithubConfig::default()
        },
        Clock::new(1.0),
        stats.clone(),
    );
    let api_url = gh.serve_local().await.unwrap();
    let client = Client::new(&ClientConfig {
        api_url,
        auth: AuthConfig::Token {
            token: Secret::new(TOKEN),
        },
        limits: LimitsConfig {
            write_interval_ms: 0,
            ..LimitsConfig::default()
        },
    })
    .unwrap();
    (gh, stats, client)
}

#[tokio::test]
async fn polled_jobs_reach_the_store_and_stale_ones_are_confirmed() {
    let (gh, _, client) = fake().await;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.db").to_str().unwrap())
        .await
        .unwrap();
    let wake = Arc::new(Wake::default());
    let mut demand = Demand::new(
        store.clone(),
        client,
        vec![Repo::parse("acme/app").unwrap()],
        wake.clone(),
        Duration::from_secs(600),
    );

    gh.enqueue(
        "acme/app",
        vec![job(&["self-hosted", "linux"]), job(&["self-hosted", "gpu"])],
    );
    let now = mayfly::demand::now();
    let report = demand.pass(now).await;
    assert_eq!(
        (report.polled, report.changed, report.failed),
        (2, 2, 0),
        "{report:?}"
    );
    let woken = tokio::time::timeout(Duration::from_secs(1), wake.now.notified()).await;
    assert!(woken.is_ok(), "a change wakes the reconciler");
    let queued = store.jobs_with_status(&[JobStatus::Queued]).await.unwrap();
    assert_eq!(queued.len(), 2);
    assert!(
        queued
            .iter()
            .any(|j| j.labels == Labels::new(["self-hosted", "gpu"]))
    );

    // Idle: nothing found, nothing changed.
    let report = demand.pass(now).await;
    assert_eq!((report.polled, report.changed), (0, 0), "{report:?}");

    // A job from a webhook for a repository nobody polls, held as queued for an hour, that
    // GitHub does not know (its run was deleted): confirmed once and closed.
    let lost = JobRecord {
        key: JobKey {
            forge: ForgeKind::Github,
            scope: "acme/other".into(),
            id: 987_654,
        },
        run_id: Some(1),
        attempt: 1,
        labels: Labels::new(["self-hosted"]),
        status: JobStatus::Queued,
        queued_at: Time(now.0 - 3_600_000),
        updated_at: Time(now.0 - 3_600_000),
        runner_name: None,
        workflow: None,
    };
    store.upsert_job(&lost, Some("delivery-1")).await.unwrap();
    let report = demand.pass(now).await;
    assert_eq!((report.confirmed, report.changed), (1, 1), "{report:?}");
    let after = store.job(&lost.key).await.unwrap().unwrap();
    assert_eq!(after.status, JobStatus::Completed);
    // The polled repository's jobs are not looked up one by one: the poll covers them.
    let report = demand.pass(now).await;
    assert_eq!(report.confirmed, 0, "{report:?}");
}

/// A repository whose webhooks arrive is polled every third pass only (backstop 2); one that
/// sent nothing is polled every pass.
#[tokio::test]
async fn repositories_whose_webhooks_flow_are_polled_less() {
    let (gh, stats, client) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.db").to_str().unwrap())
        .await
        .unwrap();
    let wake = Arc::new(Wake::default());
    let repos = ["acme/hooked", "acme/quiet"].map(|r| Repo::parse(r).unwrap());
    let mut demand = Demand::new(
        store,
        client,
        repos.to_vec(),
        wake.clone(),
        Duration::from_secs(600),
    )
    .backstop(2);
    // Run lists asked so far (two per repository polled: queued and in progress).
    let run_lists = || -> u64 {
        stats
            .rows()
            .iter()
            .filter(|r| r.key.route.ends_with("/actions/runs"))
            .map(|r| r.count.calls)
            .sum()
    };
    let mut passes = async |n: usize| {
        let mut polled = Vec::new();
        for _ in 0..n {
            wake.heard("acme/hooked");
            let before = run_lists();
            demand.pass(mayfly::demand::now()).await;
            polled.push((run_lists() - before) / 2);
        }
        polled
    };
    // Every pass polls the quiet repository. The hooked one is polled first (its webhooks must
    // prove complete: that poll finds nothing they had not brought), then every third pass.
    assert_eq!(passes(6).await, [2, 1, 1, 2, 1, 1]);
    // A job its webhooks never told of: the poll that finds it puts the repository back on
    // every pass, until a poll finds nothing new again.
    gh.enqueue("acme/hooked", vec![job(&["self-hosted", "linux"])]);
    assert_eq!(passes(4).await, [2, 2, 1, 1]);
}
