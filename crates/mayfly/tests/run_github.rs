//! `mayfly run` as a process against the fake GitHub standing for GitHub Enterprise Server,
//! authenticated as a GitHub App and without webhooks: polling alone brings the queued job into
//! the store, and neither the App's key, its JWT nor the installation token reaches the log.

mod support;

use mayfly_core::JobStatus;
use mayfly_sim::clock::Clock;
use mayfly_sim::github::{AppConfig, Github, GithubConfig, NewJob};
use mayfly_sim::stats::Stats;
use mayfly_store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::Daemon;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sim/tests/fixtures/github");

#[test]
fn an_app_on_an_enterprise_server_polls_jobs_into_the_store() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let stats = Arc::new(Stats::default());
    let _in_runtime = runtime.enter(); // the fake spawns its webhook sender
    let gh = Github::new(
        GithubConfig {
            api_prefix: "/api/v3".into(),
            app: Some(AppConfig {
                app_id: 42,
                installation_id: 7,
                public_key_pem: std::fs::read_to_string(format!(
                    "{FIXTURES}/test-app-key.TEST-ONLY.pub.pem"
                ))
                .expect("public key fixture"),
            }),
            ..GithubConfig::default()
        },
        Clock::new(1.0),
        stats.clone(),
    );
    let api_url = runtime
        .block_on(gh.serve_local())
        .expect("serve the fake GitHub");
    let job_id = gh.enqueue(
        "acme/app",
        vec![NewJob {
            labels: vec!["self-hosted".into(), "linux".into()],
            duration: Duration::from_secs(60),
        }],
    )[0];

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        format!("{FIXTURES}/test-app-key.TEST-ONLY.pem"),
        dir.path().join("app.pem"),
    )
    .expect("copy the App key");
    let config = format!(
        "state_dir = \"state\"\n\
         [github]\nrepositories = [\"acme/app\"]\napi_url = \"{api_url}\"\n\
         [github.app]\nid = 42\ninstallation_id = 7\nprivate_key_file = \"app.pem\"\n\
         [intervals]\npoll = \"1s\"\nreconcile = \"1h\"\n"
    );
    let config_path = dir.path().join("mayfly.toml");
    std::fs::write(&config_path, config).expect("write config");
    // No GITHUB_TOKEN: the App is the only credential.
    let mut daemon = Daemon::start(dir.path(), &config_path, &[("HETZNER_TOKEN", "hz_DUMMY")]);
    let woken = daemon.wait_for(&["reconcile pass", "trigger=\"demand\""]);

    let db = dir.path().join("state/mayfly.db");
    let stored = runtime.block_on(async {
        let store = Store::open(db.to_str().expect("utf-8 path"))
            .await
            .expect("open the store file");
        let deadline = Instant::now() + Duration::from_secs(20);
        let found = loop {
            let queued = store
                .jobs_with_status(&[JobStatus::Queued])
                .await
                .expect("read jobs");
            if !queued.is_empty() || Instant::now() > deadline {
                break queued;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        store.close().await;
        found
    });
    let status = daemon.stop();
    let log = daemon.log();

    assert_eq!(
        stored.iter().map(|j| j.key.id).collect::<Vec<_>>(),
        [job_id],
        "the polled job is not in the store:\n{log}"
    );
    assert!(
        stored[0].labels.contains("linux"),
        "labels: {:?}",
        stored[0].labels
    );
    assert!(
        woken.is_some(),
        "the new job did not wake the reconciler:\n{log}"
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "did not stop cleanly ({status:?}):\n{log}"
    );
    let token_calls: u64 = stats
        .rows()
        .iter()
        .filter(|r| r.key.route.ends_with("/access_tokens"))
        .map(|r| r.count.calls)
        .sum();
    assert_eq!(token_calls, 1, "one installation token serves every poll");
    for leak in ["ghs_", "BEGIN RSA", "eyJ"] {
        assert!(!log.contains(leak), "the log shows {leak:?}:\n{log}");
    }
}
