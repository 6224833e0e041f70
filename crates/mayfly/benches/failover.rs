//! The failover gap, whole: from the leader's `kill -9` to the first create by the new leader.
//! Three `mayfly run` replicas with the default lease (10 s) and renewal (2 s) on a throwaway
//! PostgreSQL, against `mayfly sim serve`, every replica receiving the webhooks. Each round
//! waits a random part of a renewal (the lease ages as in a running leader), kills the leader,
//! enqueues a job at once (nobody leads: a follower's webhook stores it) and times until the
//! fake Hetzner has a server for it: the election, the new leader's first pass (store, list,
//! runners) and its create. The killed replica is started again, so three always run.
//!
//! The kills run in independent groups at once (each its own simulator, database and three
//! replicas): a gap does not depend on the other groups, and 20 kills take a quarter of the
//! time they would one after another. Prints p50, p95 and max (target: p95 under 15 s).
//! Run with `scripts/with-postgres cargo bench -p mayfly --bench failover --profile dev`.
//! Knobs: `MAYFLY_BENCH_KILLS` (default 20), `MAYFLY_BENCH_GROUPS` (default 4).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::replicas::{Replica, config, database, leader, servers_ever};
use support::sim::{SimServe, fast_faults};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One group: `kills` rounds; the gaps in seconds.
fn group(admin: &str, g: usize, kills: usize) -> Vec<f64> {
    let state = database(admin, &format!("mayfly_failover_{g}"));
    let sim = SimServe::start(&[]);
    sim.faults(fast_faults());
    // The defaults of `[leader]`: what an operator gets.
    let text = config(&sim, &state, "10s", "2s");
    let mut replicas: Vec<Replica> = (0..3)
        .map(|n| Replica::start(&format!("g{g}r{n}"), &text))
        .collect();
    for r in &replicas {
        r.receive_webhooks(&sim);
    }
    let mut gaps = Vec::new();
    for kill in 0..kills {
        leader(&replicas, Duration::from_secs(30));
        // A settled world, then the kill at a random point of a renewal period.
        std::thread::sleep(Duration::from_millis(500 + rand::random_range(0..2_000)));
        let lead = leader(&replicas, Duration::from_secs(30));
        let before = servers_ever(&sim).len();
        let mut dead = replicas.remove(lead);
        let at = Instant::now();
        dead.daemon.kill9();
        sim.enqueue("acme/app", &["self-hosted", "linux", "x64"], 1.0, 1, 1);
        loop {
            if servers_ever(&sim).len() > before {
                break;
            }
            assert!(
                at.elapsed() < Duration::from_secs(60),
                "group {g}: no create within 60 s of kill {kill}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        gaps.push(at.elapsed().as_secs_f64());
        let fresh = Replica::start(&format!("g{g}r{}", 3 + kill), &text);
        fresh.receive_webhooks(&sim);
        replicas.push(fresh);
    }
    for r in &mut replicas {
        r.daemon.stop();
    }
    gaps
}

fn main() {
    let Ok(admin) = std::env::var("MAYFLY_TEST_POSTGRES_URL") else {
        println!("failover: skipped (run under scripts/with-postgres)");
        return;
    };
    let knob = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|k| k.parse().ok())
            .unwrap_or(default)
            .max(1)
    };
    let kills = knob("MAYFLY_BENCH_KILLS", 20);
    let groups = knob("MAYFLY_BENCH_GROUPS", 4).min(kills);
    let started = Instant::now();
    let handles: Vec<_> = (0..groups)
        .map(|g| {
            let admin = admin.clone();
            // The kills shared out: the first groups take one more when they do not divide.
            let n = kills / groups + usize::from(g < kills % groups);
            std::thread::spawn(move || group(&admin, g, n))
        })
        .collect();
    let mut gaps: Vec<f64> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("a group failed"))
        .collect();
    gaps.sort_by(f64::total_cmp);
    let p95 = percentile(&gaps, 95.0);
    println!(
        "failover gap, leader killed -> first create by the new leader (lease 10s, renew 2s, {} kills in {groups} groups, {:.0} s): p50 {:.1}s  p95 {:.1}s  max {:.1}s  (target p95 < 15 s: {})",
        gaps.len(),
        started.elapsed().as_secs_f64(),
        percentile(&gaps, 50.0),
        p95,
        gaps[gaps.len() - 1],
        if p95 < 15.0 { "met" } else { "NOT MET" }
    );
}
