//! The demand pass against the fake GitHub and a real store: polled jobs land in the store and
//! wake the reconciler; an idle pass changes nothing; a job the store holds as queued for long,
//! outside the polled repositories, is confirmed, and one GitHub no longer knows is closed.

use mayfly::demand::{Demand, Wake};
use mayfly_core::{ForgeKind, JobKey, JobStatus, Labels, Secret, Time};
use mayfly_forge::github::{AuthConfig, Client, ClientConfig, LimitsConfig, Repo};
use mayfly_sim::clock::Clock;
use mayfly_sim::github::{Github, GithubConfig, NewJob};
use mayfly_sim::stats::Stats;
use mayfly_store::{JobRecord, Store, Upsert};
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
/// A SQLite store in a temporary directory (kept as long as the directory is).
async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.db").to_str().unwrap())
        .await
        .unwrap();
    (dir, store)
}

/// The fake GitHub, served on a local port: its state, its call counts, its API address.
async fn serve() -> (Arc<Github>, Arc<Stats>, String) {
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
    (gh, stats, api_url)
}

/// Job `id` of `repo` stored as its webhook would store it (delivery `d-<id>`), from what the
/// fake says of it now.
async fn heard(client: &Client, store: &Store, repo: &Repo, id: u64) {
    let update = client.job(repo, id).await.unwrap().update(repo).unwrap();
    let rec = mayfly::demand::record(&update, mayfly::demand::now());
    store
        .upsert_job(&rec, Some(&format!("d-{id}-{:?}", rec.status)))
        .await
        .unwrap();
}

/// Calls the fake answered on routes ending in `suffix`, and how many of them were 304s.
fn answered(stats: &Stats, suffix: &str) -> (u64, u64) {
    stats
        .rows()
        .iter()
        .filter(|r| r.key.route.ends_with(suffix))
        .fold((0, 0), |(c, n), r| {
            (c + r.count.calls, n + r.count.not_modified)
        })
}

async fn fake() -> (Arc<Github>, Arc<Stats>, Client) {
    let (gh, stats, api_url) = serve().await;
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

    let (_dir, store) = store().await;
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

/// A repository is polled every pass until its webhooks prove they arrive: thirty polls in a row
/// that found new runs whose news the webhooks had all brought already (such runs are not
/// read: the store knows them). Then it is polled only once per backstop (30 s here, passes
/// every 10 s), and only its queued runs.
/// A poll that finds a job no webhook announced puts it back on every pass. Silence proves
/// nothing: a repository that sent nothing stays on every pass (free while it is quiet: 304s).
#[tokio::test]
async fn repositories_whose_webhooks_prove_they_arrive_are_polled_less() {
    let (gh, stats, client) = fake().await;
    let (_dir, store) = store().await;
    let wake = Arc::new(Wake::default());
    let hooked = Repo::parse("acme/hooked").unwrap();
    let repos = [hooked.clone(), Repo::parse("acme/quiet").unwrap()];
    let mut demand = Demand::new(
        store.clone(),
        client.clone(),
        repos.to_vec(),
        wake.clone(),
        Duration::from_secs(600),
    )
    .backstop(Duration::from_secs(30))
    // Any news a poll finds first counts as lost (the fake's jobs are seconds old).
    .timing(Duration::from_secs(600), Duration::ZERO);
    // Run lists asked so far (two per repository polled: queued and in progress), and run job
    // lists.
    let calls = |route: &str| -> u64 {
        stats
            .rows()
            .iter()
            .filter(|r| r.key.route.ends_with(route))
            .map(|r| r.count.calls)
            .sum()
    };
    let t0 = mayfly::demand::now();
    let mut at = 0;
    let mut passes = async |demand: &mut Demand, n: usize| {
        let mut polled = Vec::new();
        for _ in 0..n {
            let before = calls("/actions/runs");
            demand.pass(Time(t0.0 + at * 1000)).await;
            at += 10;
            polled.push(calls("/actions/runs") - before);
        }
        polled
    };
    // Nothing happens: no proof, every pass polls both lists of both.
    assert_eq!(passes(&mut demand, 3).await, [4, 4, 4]);
    // Jobs whose webhooks did arrive (stored as the receiver stores them) before the poll saw
    // them: their runs are not even read, and after thirty such polls the repository is trusted.
    let reads = calls("/jobs");
    for n in 0..30 {
        assert!(!demand.trusted("acme/hooked"), "not after {n}");
        let ids = gh.enqueue("acme/hooked", vec![job(&["self-hosted", "linux"])]);
        for id in ids {
            heard(&client, &store, &hooked, id).await;
        }
        // Once a webhook of its own has come, its queued runs only: the queue is where a lost
        // webhook keeps a job waiting.
        let lists = if n == 0 { 4 } else { 3 };
        assert_eq!(passes(&mut demand, 1).await, [lists], "poll {n}");
    }
    assert_eq!(
        calls("/jobs") - reads,
        0,
        "no run was read: the store knew them"
    );
    assert!(demand.trusted("acme/hooked"));
    assert!(
        !demand.trusted("acme/quiet"),
        "no webhook of it ever arrived: its hook may not exist"
    );
    // Trusted: once per backstop, and then its queued runs only (the quiet one: both lists
    // every pass); half a backstop later while the store holds jobs of it queued (the thirty
    // above), which would make GitHub's answer a paid one.
    assert_eq!(passes(&mut demand, 6).await, [2, 2, 2, 2, 3, 2]);
    // A job its webhooks never told of: the poll that finds it puts the repository back on
    // every pass, until it proves itself again.
    gh.enqueue("acme/hooked", vec![job(&["self-hosted", "linux"])]);
    let found = passes(&mut demand, 5).await;
    assert!(!demand.trusted("acme/hooked"));
    assert_eq!(found, [2, 2, 2, 3, 3]);
}

/// Webhooks prove themselves by their order too: an `in_progress` that finds its job queued in
/// the store, a `completed` that finds it running, each proves two deliveries arrived. Thirty
/// such proofs earn the backstop without a poll seeing a single run; one delivery that finds
/// its predecessor missing (a job first heard of when it started, or still queued when its
/// end names a runner) takes the trust away at the next pass.
#[tokio::test]
async fn deliveries_in_order_earn_trust_and_a_gap_takes_it_away() {
    use mayfly::demand::{Sequence, sequence};
    let cases = [
        (JobStatus::InProgress, Upsert::Started, Sequence::Proof),
        (JobStatus::Completed, Upsert::Updated, Sequence::Proof),
        (JobStatus::InProgress, Upsert::Inserted, Sequence::Gap),
        (JobStatus::Completed, Upsert::Inserted, Sequence::Gap),
        (JobStatus::Completed, Upsert::Started, Sequence::Gap),
        (JobStatus::Completed, Upsert::Unchanged, Sequence::Nothing),
        (JobStatus::Completed, Upsert::Stale, Sequence::Nothing),
        (
            JobStatus::Completed,
            Upsert::DuplicateDelivery,
            Sequence::Nothing,
        ),
        (JobStatus::Queued, Upsert::Inserted, Sequence::Nothing),
    ];
    for (status, outcome, says) in cases {
        assert_eq!(sequence(status, outcome), says, "{status:?} {outcome:?}");
    }

    let (_gh, _stats, client) = fake().await;
    let (_dir, store) = store().await;
    let wake = Arc::new(Wake::default());
    let mut demand = Demand::new(
        store,
        client,
        vec![
            Repo::parse("acme/hooked").unwrap(),
            Repo::parse("acme/quiet").unwrap(),
        ],
        wake.clone(),
        Duration::from_secs(600),
    )
    .backstop(Duration::from_secs(300));
    let t0 = mayfly::demand::now();
    for n in 0..15 {
        demand.pass(Time(t0.0 + n * 10_000)).await;
        assert!(!demand.trusted("acme/hooked"), "not after {} proofs", 2 * n);
        wake.delivered(
            ForgeKind::Github,
            "acme/hooked",
            JobStatus::InProgress,
            Upsert::Started,
        );
        wake.delivered(
            ForgeKind::Github,
            "acme/hooked",
            JobStatus::Completed,
            Upsert::Updated,
        );
    }
    demand.pass(Time(t0.0 + 150_000)).await;
    assert!(demand.trusted("acme/hooked"));
    assert!(
        !demand.trusted("acme/quiet"),
        "no webhook of its own: its hook may not exist"
    );
    wake.delivered(
        ForgeKind::Github,
        "acme/hooked",
        JobStatus::Completed,
        Upsert::Started,
    );
    let report = demand.pass(Time(t0.0 + 160_000)).await;
    assert!(!demand.trusted("acme/hooked"));
    assert_eq!(report.lossy, 1, "{report:?}");
}

/// Trust in `acme/hooked`'s webhooks earned from the deliveries' order alone: a pass every
/// 10 s from `t0`, two proofs (a start that found its job queued, an end that found it running)
/// before each of the next fifteen, trusted at the pass 160 s after `t0`.
async fn earn_trust(demand: &mut Demand, wake: &Wake, t0: Time) {
    for n in 0..16 {
        demand.pass(Time(t0.0 + n * 10_000)).await;
        let github = ForgeKind::Github;
        wake.delivered(
            github,
            "acme/hooked",
            JobStatus::InProgress,
            Upsert::Started,
        );
        wake.delivered(github, "acme/hooked", JobStatus::Completed, Upsert::Updated);
    }
    demand.pass(Time(t0.0 + 160_000)).await;
    assert!(demand.trusted("acme/hooked"));
}

/// What was learned of the webhooks survives a restart (a deploy, a failover): the next
/// process trusts them from its first pass, which still polls every repository once (jobs whose
/// webhooks were lost while nothing listened are found at once), and then keeps to the backstop.
#[tokio::test]
async fn the_trust_in_webhooks_survives_a_restart() {
    let (_gh, stats, client) = fake().await;
    let (_dir, store) = store().await;
    let repo = Repo::parse("acme/hooked").unwrap();
    let demand = |wake: Arc<Wake>| {
        Demand::new(
            store.clone(),
            client.clone(),
            vec![repo.clone()],
            wake,
            Duration::from_secs(600),
        )
        .backstop(Duration::from_secs(300))
    };
    let t0 = mayfly::demand::now();
    let at = |secs: i64| Time(t0.0 + secs * 1000);
    let wake = Arc::new(Wake::default());
    let mut first = demand(wake.clone());
    earn_trust(&mut first, &wake, t0).await;
    drop(first);

    let mut second = demand(Arc::new(Wake::default()));
    let mut polled = Vec::new();
    for n in 0..6 {
        let before = answered(&stats, "/actions/runs").0;
        second.pass(at(1000 + n * 10)).await;
        assert!(second.trusted("acme/hooked"), "pass {n}");
        polled.push(answered(&stats, "/actions/runs").0 - before);
    }
    assert_eq!(
        polled,
        [1, 0, 0, 0, 0, 0],
        "its queued runs once, at the start"
    );
}

/// A trusted repository's backstop poll waits for a moment the store holds none of its jobs
/// queued: GitHub's queue is then as empty as at the last poll, and the answer a free 304. A
/// poll while a job the webhooks announced waits would pay to show it, and pay again to show it
/// gone. The wait is bounded: half a backstop later the poll goes out whatever the store holds.
#[tokio::test]
async fn the_backstop_polls_when_the_known_queue_is_empty_and_costs_nothing() {
    let (gh, stats, client) = fake().await;
    let (_dir, store) = store().await;
    let wake = Arc::new(Wake::default());
    let repo = Repo::parse("acme/hooked").unwrap();
    let mut demand = Demand::new(
        store.clone(),
        client.clone(),
        vec![repo.clone()],
        wake.clone(),
        Duration::from_secs(600),
    )
    .backstop(Duration::from_secs(300));
    let t0 = mayfly::demand::now();
    let at = |secs: i64| Time(t0.0 + secs * 1000);
    earn_trust(&mut demand, &wake, t0).await;
    let queued_lists = || answered(&stats, "/actions/runs");
    // A job arrives, its webhook with it.
    let stored = async |id: u64| heard(&client, &store, &repo, id).await;
    let ids = gh.enqueue("acme/hooked", vec![job(&["self-hosted", "linux"])]);
    stored(ids[0]).await;
    let before = queued_lists();
    for secs in [460, 470, 480] {
        demand.pass(at(secs)).await;
    }
    assert_eq!(
        queued_lists(),
        before,
        "due at 460 s, but a job the webhooks announced waits: not yet"
    );
    // It leaves the queue (its webhook arrives): the next pass polls, and GitHub's queue is
    // what the last poll saw.
    assert!(gh.cancel(ids[0], false));
    stored(ids[0]).await;
    demand.pass(at(490)).await;
    let after = queued_lists();
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (1, 1),
        "one poll, a 304"
    );
    // A job that stays queued holds the poll off half a backstop at most.
    let ids = gh.enqueue("acme/hooked", vec![job(&["self-hosted", "linux"])]);
    stored(ids[0]).await;
    let mut polled_at = Vec::new();
    for secs in (500..=1000).step_by(10) {
        let before = queued_lists().0;
        demand.pass(at(secs)).await;
        if queued_lists().0 > before {
            polled_at.push(secs);
        }
    }
    assert_eq!(polled_at, [940], "450 s after the last poll");
}

/// A job the store holds as queued whose run a poll never sees again (it came and went between
/// polls and its webhooks were lost) is confirmed on schedule, polled repository or not, with
/// a conditional request: unchanged costs a 304.
#[tokio::test]
async fn polled_repositories_get_no_exemption_from_the_truth_check() {
    let (gh, stats, client) = fake().await;
    let (_dir, store) = store().await;
    let wake = Arc::new(Wake::default());
    let repo = Repo::parse("acme/app").unwrap();
    let mut demand = Demand::new(
        store.clone(),
        client.clone(),
        vec![repo.clone()],
        wake.clone(),
        Duration::from_secs(60),
    );
    // A job heard of by webhook, then cancelled on GitHub with that webhook lost, before the
    // first poll: its run is never listed, so no poll reads it. A minute later the truth check
    // asks.
    let webhook = async |id: u64| heard(&client, &store, &repo, id).await;
    let ids = gh.enqueue("acme/app", vec![job(&["self-hosted", "linux"])]);
    webhook(ids[0]).await;
    assert!(gh.cancel(ids[0], false));
    let now = mayfly::demand::now();
    let report = demand.pass(now).await;
    assert_eq!((report.polled, report.confirmed), (0, 0), "{report:?}");
    let later = Time(now.0 + 61_000);
    let report = demand.pass(later).await;
    assert_eq!((report.confirmed, report.changed), (1, 1), "{report:?}");
    // The last plan rested on the store's word (a machine kept for that job, say): a pass now,
    // although a finished job alone wakes none while machines are recycled.
    assert_eq!(report.urgent, 1, "{report:?}");
    let kept = store
        .job(&JobKey {
            forge: ForgeKind::Github,
            scope: "acme/app".into(),
            id: ids[0],
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.status, JobStatus::Completed);
    assert_eq!(report.lossy, 0, "untrusted already: nothing to lose");
    // Asked again about a job that has not changed: a 304.
    let ids = gh.enqueue("acme/app", vec![job(&["self-hosted", "linux"])]);
    webhook(ids[0]).await;
    demand.pass(later).await;
    let job_reads = || answered(&stats, "/actions/jobs/{job_id}");
    let before = job_reads();
    demand.pass(Time(later.0 + 122_000)).await;
    demand.pass(Time(later.0 + 183_000)).await;
    let after = job_reads();
    assert_eq!(after.0 - before.0, 2, "confirmed once a minute");
    assert_eq!(after.1 - before.1, 2, "both answers are 304s: free");
}

/// Deliveries reach mayfly by one way, so the proof is pooled: fifteen runs heard in each of two
/// repositories trust both, and a loss found in one puts both back on every pass.
#[tokio::test]
async fn the_proof_of_delivery_is_pooled_over_repositories() {
    let (gh, _stats, client) = fake().await;
    let (_dir, store) = store().await;
    let repos: Vec<Repo> = ["acme/a", "acme/b"]
        .iter()
        .map(|r| Repo::parse(r).unwrap())
        .collect();
    let mut demand = Demand::new(
        store.clone(),
        client.clone(),
        repos.clone(),
        Arc::new(Wake::default()),
        Duration::from_secs(600),
    )
    .backstop(Duration::from_secs(30))
    .timing(Duration::from_secs(600), Duration::ZERO);
    let t0 = mayfly::demand::now();
    let mut at = 0;
    for _ in 0..15 {
        for repo in &repos {
            for id in gh.enqueue(&repo.to_string(), vec![job(&["self-hosted", "linux"])]) {
                heard(&client, &store, repo, id).await;
            }
        }
        assert!(!demand.trusted("acme/a") && !demand.trusted("acme/b"));
        demand.pass(Time(t0.0 + at * 1000)).await;
        at += 10;
    }
    assert!(demand.trusted("acme/a") && demand.trusted("acme/b"));
    gh.enqueue("acme/b", vec![job(&["self-hosted", "linux"])]);
    // The backstop (30 s) comes half of it later: the store holds jobs of both queued.
    for _ in 0..5 {
        demand.pass(Time(t0.0 + at * 1000)).await;
        at += 10;
    }
    assert!(!demand.trusted("acme/b"), "the loss was found in b");
    assert!(
        !demand.trusted("acme/a"),
        "and a is no longer trusted either"
    );
}

/// Two runner lists on one client share its ETags: the second, which never read the scope,
/// must not take the client's 304 for a list of its own (a busy runner would look absent).
#[tokio::test]
async fn a_runner_list_never_takes_a_304_for_a_list_it_never_saw() {
    use mayfly::reconcile::Runners;
    use mayfly_forge::github::Scope;
    let (_gh, _stats, api_url) = serve().await;
    let config: mayfly_forge::github::GithubConfig = serde_json::from_value(serde_json::json!({
        "api_url": api_url,
        "auth": {"token": TOKEN},
        "repositories": ["acme/app"],
    }))
    .unwrap();
    let client = Client::new(&config.client).unwrap();
    let scope = Scope::Repo(Repo::parse("acme/app").unwrap());
    client
        .jit_config(&scope, "mayfly-a-1", &Labels::new(["linux"]), None)
        .await
        .unwrap();
    let now = mayfly::demand::now();
    let first = Runners::new(client.clone(), config.clone());
    assert_eq!(first.list(now).await.unwrap().len(), 1);
    let second = Runners::new(client, config);
    let seen = second.list(now).await.unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].name, "mayfly-a-1");
}
