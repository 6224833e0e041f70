//! The election's part of the failover gap: three replicas with the default lease (10 s) and
//! renewal (2 s) on a throwaway PostgreSQL; the leader is killed (its task ends, nothing is
//! released, as after `kill -9`) again and again, and the time until another replica leads is
//! measured. Prints p50, p95 and max over the kills (target: p95 under 15 s for the whole gap,
//! of which the first pass and create of the new leader take the rest).
//! Run with `scripts/with-postgres cargo bench -p mayfly --bench failover --profile dev`.
//! Knob: `MAYFLY_BENCH_KILLS` (default 20; each takes up to 12 s).

use mayfly::leader::{Leader, LeaderConfig, Leadership};
use mayfly_store::Store;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

async fn database(admin: &str) -> String {
    let name = format!("mayfly_failover_{}", std::process::id());
    let mut conn = PgConnection::connect(admin).await.expect("connect");
    conn.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
        .await
        .expect("drop");
    conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create");
    let (base, _) = admin.rsplit_once('/').expect("a database in the URL");
    format!("{base}/{name}")
}

fn replica(store: &Store, n: usize) -> (Leader, watch::Receiver<Leadership>) {
    let leader = Leader::spawn(
        Arc::new(store.clone()),
        LeaderConfig::new(format!("bench-{n}")),
        Arc::new(mayfly_forge::github::SystemClock),
    );
    let watch = leader.watch();
    (leader, watch)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let Ok(admin) = std::env::var("MAYFLY_TEST_POSTGRES_URL") else {
        println!("failover: skipped (run under scripts/with-postgres)");
        return;
    };
    let kills: usize = std::env::var("MAYFLY_BENCH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20);
    let url = database(&admin).await;
    let store = Store::open(&url).await.expect("open the store");
    let mut replicas: Vec<_> = (0..3).map(|n| replica(&store, n)).collect();
    let mut gaps = Vec::new();
    for kill in 0..kills {
        let leading = loop {
            if let Some(i) = replicas.iter().position(|(_, w)| w.borrow().leads_now()) {
                break i;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // Let the lease age as it would in a running leader: killed at a random point.
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..2_000))).await;
        let (killed, _) = replicas.remove(leading);
        let at = Instant::now();
        drop(killed);
        loop {
            if replicas.iter().any(|(_, w)| w.borrow().leading) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        gaps.push(at.elapsed().as_secs_f64());
        replicas.push(replica(&store, 3 + kill));
    }
    gaps.sort_by(f64::total_cmp);
    println!(
        "failover (election only, lease 10s, renew 2s, {kills} kills): p50 {:.1}s  p95 {:.1}s  max {:.1}s",
        percentile(&gaps, 50.0),
        percentile(&gaps, 95.0),
        gaps[gaps.len() - 1]
    );
    for (leader, _) in replicas {
        leader.stop().await;
    }
    store.close().await;
}
