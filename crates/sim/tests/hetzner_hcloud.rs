//! The official `hcloud` Python client against the fake Hetzner Cloud, served in-process:
//! if the real client cannot create, list, power, rebuild and delete, or read the catalogue with
//! its per-location deprecations, neither can anyone.

mod support;

use mayfly_sim::clock::Clock;
use mayfly_sim::hetzner::{Hetzner, HetznerConfig};
use mayfly_sim::stats::Stats;
use std::process::Command;
use std::sync::Arc;

const TOKEN: &str = "compat-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Python clients: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
async fn the_official_hcloud_client_drives_the_fake() {
    let python = support::python();
    let hz = Hetzner::new(
        HetznerConfig {
            token: TOKEN.into(),
            ..HetznerConfig::default()
        },
        Clock::new(100.0),
        Arc::new(Stats::default()),
    );
    let endpoint = hz.serve_local().await.unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/compat/hcloud_check.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(endpoint)
            .arg(TOKEN)
            .output()
    })
    .await
    .unwrap()
    .expect("python runs");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "hcloud_check.py failed: {}",
        out.status
    );
    assert!(hz.servers().is_empty(), "the script deleted its servers");
    assert_eq!(hz.billing().servers.len(), 3);
}
