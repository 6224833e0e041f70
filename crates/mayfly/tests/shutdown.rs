//! SIGTERM while every API answer is slowed to 8 s: `mayfly run` exits within 10 s (systemd's
//! stop timeout is far longer), the pass in flight cut at a safe point, and no machine exists
//! without its intent. As processes, against `mayfly sim serve` and its latency fault.

mod support;

use mayfly_store::Store;
use serde_json::json;
use std::time::{Duration, Instant};
use support::Daemon;
use support::replicas::servers_ever;
use support::sim::{LINUX_POOL, RunConfig, SimServe, fast_faults};

#[test]
fn sigterm_with_every_api_answer_slowed_to_8s_exits_within_10s() {
    let sim = SimServe::start(&[]);
    sim.faults(fast_faults());
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("mayfly.toml");
    let text = sim.mayfly_config(&RunConfig {
        controller: "stop",
        repos: &["acme/app".to_string()],
        webhook_secret: None,
        registration: "30s",
        poll: "1s",
        poll_backstop: "5s",
        workers: 4,
        pools: LINUX_POOL,
    });
    // Jobs are not confirmed again before their create (their news is fresh enough): the
    // intents are written at once, and the SIGTERM comes while the creates wait for GitHub.
    let text = text.replace(
        "poll_backstop = \"5s\"",
        "poll_backstop = \"5s\"\nconfirm_stale = \"5m\"",
    );
    std::fs::write(&config, text).expect("write the config");
    let mut daemon = Daemon::start_at("info", dir.path(), &config, &[]);
    daemon
        .listen_addr()
        .unwrap_or_else(|| panic!("mayfly run did not start:\n{}", daemon.log()));
    // Slow from now on: every answer of GitHub and of Hetzner takes 8 s.
    sim.faults(json!({
        "github": { "latency_secs": 8.0 },
        "hetzner": { "latency_secs": 8.0 },
    }));
    sim.enqueue("acme/app", &["self-hosted", "linux", "x64"], 5.0, 6, 1);
    // The poll, the list and the runners take 8 s each before a plan creates.
    let mut planned = None;
    for _ in 0..3 {
        planned = daemon.wait_for(&["plan", "actions="]);
        if planned.is_some() {
            break;
        }
    }
    assert!(planned.is_some(), "no plan:\n{}", daemon.log());
    // The creates are under way: intents written, runner credentials asked for (8 s).
    std::thread::sleep(Duration::from_secs(1));
    let signalled = Instant::now();
    let status = daemon.stop();
    let took = signalled.elapsed();
    let log = daemon.log();
    println!("exited {took:?} after SIGTERM with 8 s API answers");
    assert!(status.is_some(), "still running 20 s after SIGTERM:\n{log}");
    assert!(took < Duration::from_secs(10), "{took:?}:\n{log}");
    assert!(status.unwrap().success(), "{log}");
    assert!(log.contains("stopping"), "{log}");

    // Requests sent before the exit land at the fakes up to 8 s later.
    std::thread::sleep(Duration::from_secs(9));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let intents: Vec<(String, String)> = runtime.block_on(async {
        let db = dir.path().join("state/mayfly.db");
        let store = Store::open(db.to_str().unwrap()).await.unwrap();
        let intents = store.intents().await.unwrap();
        store.close().await;
        intents
            .into_iter()
            .map(|i| (i.name, i.state.to_string()))
            .collect()
    });
    println!("intents after the stop: {intents:?}");
    // The creates cut short kept their intents, pending: the next start carries them out.
    assert!(
        intents.iter().any(|(_, state)| state == "pending"),
        "no create was under way at the SIGTERM: {intents:?}\n{log}"
    );
    for name in servers_ever(&sim) {
        assert!(
            intents.iter().any(|(n, _)| *n == name),
            "server {name} was made without its intent: {intents:?}"
        );
    }
}
