//! Replicas of `mayfly run` on one PostgreSQL state, as processes against `mayfly sim serve`:
//! a burst served while the leader is killed (`kill -9`) at three seeded moments; a leader
//! paused (SIGSTOP) past its lease and resumed while another leads creates nothing; PostgreSQL
//! stopped for 20 s during a steady trace (webhooks 503, nothing created without its intent,
//! every job served after).
//!
//! Skipped without `MAYFLY_TEST_POSTGRES_URL` (run under scripts/with-postgres), except in CI;
//! the outage test runs a cluster of its own, with `PG_BIN`'s server binaries.

mod support;

use std::time::{Duration, Instant};
use support::replicas::{
    Cluster, Replica, admin_url, all_served, config, database, leader,
    one_machine_per_job_and_nothing_left, servers_ever,
};
use support::sim::{SimServe, fast_faults};

const LABELS: &[&str] = &["self-hosted", "linux", "x64"];

/// A small xorshift: the kill moments are the seed's, printed, and set by `MAYFLY_TEST_SEED`.
struct Seeded(u64);

impl Seeded {
    fn from_env() -> Seeded {
        let seed = std::env::var("MAYFLY_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20261207);
        println!("seed {seed} (MAYFLY_TEST_SEED)");
        Seeded(seed.max(1))
    }

    /// A duration from `lo` to `hi`.
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let span = (hi - lo).as_millis() as u64;
        lo + Duration::from_millis(self.0 % span.max(1))
    }
}

fn logs(replicas: &mut [Replica], gone: &mut [Replica]) -> String {
    let mut out = String::new();
    for r in replicas.iter_mut().chain(gone.iter_mut()) {
        r.daemon.drain();
        out.push_str(&format!("--- {} ---\n{}\n", r.name, r.daemon.log()));
    }
    out
}

#[test]
fn a_burst_is_served_once_while_the_leader_is_killed_three_times() {
    let Some(admin) = admin_url() else {
        return;
    };
    let state = database(&admin, "mayfly_replicas");
    let sim = SimServe::start(&[]);
    sim.faults(fast_faults());
    let text = config(&sim, &state, "2s", "500ms");
    let mut replicas: Vec<Replica> = (1..=3)
        .map(|n| Replica::start(&format!("r{n}"), &text))
        .collect();
    for r in &replicas {
        r.receive_webhooks(&sim);
    }
    let mut killed: Vec<Replica> = Vec::new();
    let mut seed = Seeded::from_env();
    leader(&replicas, Duration::from_secs(20));

    const JOBS: usize = 200;
    // 20 runs of 10 jobs each, of 2 to 4 seconds.
    let mut ids = Vec::new();
    for run in 0..20 {
        ids.extend(sim.enqueue("acme/app", LABELS, 2.0 + (run % 3) as f64, 10, 1));
    }
    assert_eq!(ids.len(), JOBS);

    let mut gaps = Vec::new();
    for kill in 1..=3 {
        let lead = leader(&replicas, Duration::from_secs(20));
        std::thread::sleep(seed.between(Duration::from_millis(200), Duration::from_secs(3)));
        let mut dead = replicas.remove(lead);
        let at = Instant::now();
        dead.daemon.kill9();
        let next = leader(&replicas, Duration::from_secs(15));
        let gap = at.elapsed();
        println!(
            "kill {kill}: {} killed, {} led {gap:?} later",
            dead.name, replicas[next].name
        );
        gaps.push(gap);
        killed.push(dead);
        // Three replicas again.
        let fresh = Replica::start(&format!("r{}", 3 + kill), &text);
        fresh.receive_webhooks(&sim);
        replicas.push(fresh);
    }
    all_served(&sim, JOBS, Duration::from_secs(180), || {
        logs(&mut replicas, &mut killed)
    });
    if servers_ever(&sim).len() != JOBS {
        // A machine more than jobs: what each replica said of its replacement creates (a job
        // whose machine's runner took another job gets a new one), to see which was not needed.
        for line in logs(&mut replicas, &mut killed).lines().filter(|l| {
            l.starts_with("---") || l.contains("action=create") || l.contains(" leading ")
        }) {
            eprintln!("{line}");
        }
    }
    one_machine_per_job_and_nothing_left(&sim, JOBS, Duration::from_secs(60));
    println!("gaps without a leader: {gaps:?} (lease 2 s, renew 500 ms)");
    for gap in &gaps {
        // The lease, a follower's try, and slack for a loaded machine.
        assert!(*gap < Duration::from_secs(8), "{gaps:?}");
    }
    for r in &mut replicas {
        assert!(
            r.daemon.stop().is_some_and(|s| s.success()),
            "{}",
            r.daemon.log()
        );
    }
}

#[test]
fn a_leader_paused_past_its_lease_creates_nothing_when_it_resumes() {
    let Some(admin) = admin_url() else {
        return;
    };
    let state = database(&admin, "mayfly_paused");
    let sim = SimServe::start(&[]);
    sim.faults(fast_faults());
    let text = config(&sim, &state, "2s", "500ms");
    let mut replicas: Vec<Replica> = (1..=2)
        .map(|n| Replica::start(&format!("p{n}"), &text))
        .collect();
    let first = leader(&replicas, Duration::from_secs(20));
    let other = 1 - first;
    // Slow GitHub answers: the leader is caught in the middle of a pass, between a create's
    // intent write and its machine (the JIT config call); once resumed it must prove the lease
    // before going on, and finds it lost.
    sim.faults(serde_json::json!({ "github": { "latency_secs": 1.0 } }));
    sim.enqueue("acme/app", LABELS, 2.0, 3, 1);
    assert!(
        replicas[first]
            .daemon
            .wait_for(&["plan", "actions="])
            .is_some(),
        "the leader planned nothing:\n{}",
        replicas[first].daemon.log()
    );
    replicas[first].signal("-STOP");
    let paused = Instant::now();
    // The other takes over once the lease ran out, and serves the jobs.
    let start = Instant::now();
    while !replicas[other].leads() {
        assert!(start.elapsed() < Duration::from_secs(15), "no takeover");
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("takeover {:?} after the pause", paused.elapsed());
    all_served(&sim, 3, Duration::from_secs(60), || {
        replicas[other].daemon.drain();
        replicas[other].daemon.log()
    });
    // Resumed while the other leads: whatever it was doing, it creates nothing.
    replicas[first].daemon.drain();
    let before = replicas[first].daemon.seen.len();
    replicas[first].signal("-CONT");
    sim.enqueue("acme/app", LABELS, 2.0, 2, 1);
    all_served(&sim, 5, Duration::from_secs(60), || {
        replicas[other].daemon.drain();
        replicas[other].daemon.log()
    });
    std::thread::sleep(Duration::from_secs(2));
    replicas[first].daemon.drain();
    let after: Vec<&String> = replicas[first].daemon.seen[before..].iter().collect();
    let acted: Vec<&&String> = after
        .iter()
        .filter(|l| l.contains("done action=create") || l.contains("resumed a create"))
        .collect();
    assert!(
        acted.is_empty(),
        "the resumed old leader created:\n{acted:#?}"
    );
    assert!(
        !replicas[first].leads(),
        "the old leader took the lease back"
    );
    sim.faults(serde_json::json!({ "hetzner": { "latency_secs": 0.0 } }));
    one_machine_per_job_and_nothing_left(&sim, 5, Duration::from_secs(60));
    println!(
        "the resumed leader's log:\n{}",
        after
            .iter()
            .filter(|l| l.contains("lead") || l.contains("fence") || l.contains("skipped"))
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    for r in &mut replicas {
        assert!(
            r.daemon.stop().is_some_and(|s| s.success()),
            "{}",
            r.daemon.log()
        );
    }
}

/// The `mayfly_webhook_deliveries_total` samples of a replica's `/metrics`, by outcome.
fn deliveries(r: &Replica, outcome: &str) -> u64 {
    let (_, body) = support::sim::request(&r.addr.to_string(), "GET", "/metrics", None);
    body.lines()
        .find(|l| {
            l.starts_with("mayfly_webhook_deliveries_total")
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// The outage outlasts what bounds a replica's view of the store: ten leases (2 s) and twice the
/// pool's wait for a connection (10 s, the store's default), so that the leases expire, the
/// connections break and the waits for new ones time out before PostgreSQL comes back.
/// `MAYFLY_TEST_OUTAGE_SECS` makes it longer (it was a minute; nothing more happens after the
/// first timeouts but more of the same, at a second of wall time per second).
#[test]
fn postgres_stopped_for_20_s_then_every_job_is_served_once() {
    if admin_url().is_none() {
        return;
    }
    let outage = std::env::var("MAYFLY_TEST_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(20), Duration::from_secs);
    let cluster = Cluster::start();
    let sim = SimServe::start(&[]);
    sim.faults(fast_faults());
    let text = config(&sim, &cluster.url(), "2s", "500ms");
    let mut replicas: Vec<Replica> = (1..=2)
        .map(|n| Replica::start(&format!("o{n}"), &text))
        .collect();
    for r in &replicas {
        r.receive_webhooks(&sim);
    }
    leader(&replicas, Duration::from_secs(20));
    // A steady trace: a job every second, before, during and after the outage.
    let mut jobs = 0;
    let mut enqueue = |n: usize| {
        for _ in 0..n {
            sim.enqueue("acme/app", LABELS, 2.0, 1, 1);
            jobs += 1;
            std::thread::sleep(Duration::from_secs(1));
        }
    };
    enqueue(5);
    cluster.down();
    let down = Instant::now();
    let refused_before: u64 = replicas.iter().map(|r| deliveries(r, "store_failed")).sum();
    while down.elapsed() < outage {
        enqueue(1);
    }
    let refused: u64 = replicas
        .iter()
        .map(|r| deliveries(r, "store_failed"))
        .sum::<u64>()
        - refused_before;
    // No machine was made while the store could not record its intent.
    let made_during = servers_ever(&sim);
    cluster.up();
    println!(
        "PostgreSQL down for {outage:?}: {refused} webhooks answered 503; {} servers existed or \
         were made before it came back",
        made_during.len()
    );
    assert!(
        refused > 0,
        "no webhook was refused while PostgreSQL was down"
    );
    enqueue(5);
    all_served(&sim, jobs, Duration::from_secs(120), || {
        let mut none = Vec::new();
        logs(&mut replicas, &mut none)
    });
    one_machine_per_job_and_nothing_left(&sim, jobs, Duration::from_secs(60));
    // Every server made has its intent in the store.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let intents: Vec<String> = runtime.block_on(async {
        let store = mayfly_store::Store::open(&cluster.url()).await.unwrap();
        let names = store
            .intents()
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        store.close().await;
        names
    });
    for name in servers_ever(&sim) {
        assert!(intents.contains(&name), "server {name} has no intent");
    }
    for r in &mut replicas {
        assert!(
            r.daemon.stop().is_some_and(|s| s.success()),
            "{}",
            r.daemon.log()
        );
    }
}
