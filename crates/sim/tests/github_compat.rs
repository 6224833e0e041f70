//! PyGithub and GitHub's OpenAPI schemas against the fake GitHub: seeds runs, jobs and runners
//! in-process, then runs `tests/compat/github_check.py` with the Python of `MAYFLY_PYTHON`.

mod support;

use axum::routing::post;
use mayfly_sim::clock::Clock;
use mayfly_sim::github::{AppConfig, Github, GithubConfig, NewJob, WebhookTarget};
use mayfly_sim::stats::Stats;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "compat-token";
const DIR: &str = env!("CARGO_MANIFEST_DIR");

fn job(labels: &[&str]) -> NewJob {
    NewJob {
        labels: labels.iter().map(|s| s.to_string()).collect(),
        duration: Duration::from_secs(60),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Python clients: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
async fn pygithub_and_the_openapi_schemas_accept_the_fake() {
    let python = support::python();
    let fixtures = format!("{DIR}/tests/fixtures/github");
    let public_key_pem =
        std::fs::read_to_string(format!("{fixtures}/test-app-key.TEST-ONLY.pub.pem")).unwrap();
    // A receiver that keeps every webhook body, for the schema check.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let hook = axum::Router::new().route(
        "/hook",
        post(move |body: axum::body::Bytes| async move {
            let _ = tx.send(body.to_vec());
        }),
    );
    let hook_url = format!(
        "http://{}/hook",
        mayfly_sim::serve_local(hook).await.unwrap()
    );

    let config = GithubConfig {
        tokens: vec![TOKEN.into()],
        webhooks: vec![WebhookTarget {
            url: hook_url,
            secret: "s".into(),
        }],
        app: Some(AppConfig {
            app_id: 42,
            installation_id: 7,
            public_key_pem,
        }),
        ..GithubConfig::default()
    };
    let gh = Github::new(config, Clock::new(1.0), Arc::new(Stats::default()));
    let base = gh.serve_local().await.unwrap();

    // Five runs (the first with two jobs); two jobs in progress, one completed, the rest queued.
    gh.enqueue(
        "acme/app",
        vec![
            job(&["self-hosted", "linux"]),
            job(&["self-hosted", "linux"]),
        ],
    );
    for _ in 0..4 {
        gh.enqueue("acme/app", vec![job(&["self-hosted", "linux"])]);
    }
    let http = reqwest::Client::new();
    let mut runners = Vec::new();
    // Two repository runners (one finishes its job) and a busy organization runner.
    for (scope, name) in [
        ("repos/acme/app", "seeded-busy"),
        ("repos/acme/app", "seeded-done"),
        ("orgs/acme", "seeded-org"),
    ] {
        let t: Value = http
            .post(format!("{base}/{scope}/actions/runners/registration-token"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let script = format!(
            "./config.sh --token {} --name {name} --labels linux",
            t["token"].as_str().unwrap()
        );
        let id = gh.redeem(&script, "host").unwrap();
        runners.push((id, gh.next_job(id).unwrap().job_id));
    }
    gh.finish_job(runners[1].0, runners[1].1, "success");

    // 6 queued, 3 in progress, 1 completed.
    let payloads = tempfile::tempdir().unwrap();
    for i in 0..10 {
        let body = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a webhook")
            .unwrap();
        std::fs::write(payloads.path().join(format!("{i:02}.json")), body).unwrap();
    }

    let script = format!("{DIR}/tests/compat/github_check.py");
    let args = [
        script,
        base,
        TOKEN.to_string(),
        "42".into(),
        "7".into(),
        format!("{fixtures}/test-app-key.TEST-ONLY.pem"),
    ];
    let run = python.clone();
    let dir = payloads.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(run)
            .args(args)
            .env("MAYFLY_WEBHOOK_PAYLOADS", dir)
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "github_check.py failed: {}",
        out.status
    );
}
