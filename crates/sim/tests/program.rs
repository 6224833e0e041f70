//! The runner program (`mayfly sim runner`) against the fake GitHub over HTTP: a JIT config from
//! the REST API, the files it writes, one job taken and finished, the listener's exit codes for
//! a deleted registration, a session conflict and bad input, and a killed runner going offline.

use mayfly_sim::clock::Clock;
use mayfly_sim::github::{Github, GithubConfig, NewJob};
use mayfly_sim::program::{self, exit};
use mayfly_sim::stats::Stats;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "ghp_PROGRAM_TEST";
const SPEED: f64 = 20.0;

struct World {
    gh: Arc<Github>,
    api: String,
    http: reqwest::Client,
}

async fn world() -> World {
    let gh = Github::new(
        GithubConfig {
            tokens: vec![TOKEN.into()],
            ..GithubConfig::default()
        },
        Clock::new(SPEED),
        Arc::new(Stats::default()),
    );
    let api = gh.serve_local().await.unwrap();
    World {
        gh,
        api,
        http: reqwest::Client::new(),
    }
}

impl World {
    async fn jit(&self, name: &str, labels: &[&str]) -> String {
        let r: Value = self
            .http
            .post(format!(
                "{}/repos/acme/app/actions/runners/generate-jitconfig",
                self.api
            ))
            .bearer_auth(TOKEN)
            .json(&json!({ "name": name, "runner_group_id": 1, "labels": labels }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["encoded_jit_config"]
            .as_str()
            .expect("a JIT config")
            .into()
    }

    fn enqueue(&self, labels: &[&str], secs: u64) -> u64 {
        self.gh.enqueue(
            "acme/app",
            vec![NewJob {
                labels: labels.iter().map(|l| l.to_string()).collect(),
                duration: Duration::from_secs(secs),
            }],
        )[0]
    }

    fn job(&self, id: u64) -> mayfly_sim::github::JobReport {
        self.gh.jobs().into_iter().find(|j| j.id == id).unwrap()
    }
}

fn args(jit: &str) -> Vec<String> {
    vec!["run".into(), "--jitconfig".into(), jit.into()]
}

fn files(dir: &Path, sub: &str) -> Vec<String> {
    std::fs::read_dir(dir.join(sub))
        .map(|e| {
            e.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_jit_runner_takes_one_matching_job_and_exits_0() {
    let w = world().await;
    let other = w.enqueue(&["self-hosted", "gpu"], 5);
    let mine = w.enqueue(&["self-hosted", "linux"], 10);
    let jit = w.jit("r-1", &["linux"]).await;
    let root = tempfile::tempdir().unwrap();
    let code = program::run(root.path(), &args(&jit)).await;
    assert_eq!(code, exit::SUCCESS);

    let j = w.job(mine);
    assert_eq!(j.status, "completed");
    assert_eq!(j.conclusion.as_deref(), Some("success"));
    assert_eq!(j.runner_name.as_deref(), Some("r-1"));
    let ran = (j.completed_ms.unwrap() - j.started_ms.unwrap()) as f64 / 1000.0;
    assert!(ran >= 9.5, "the job ran {ran} simulated seconds of its 10");
    assert_eq!(
        w.job(other).status,
        "queued",
        "a job its labels do not match"
    );
    assert!(w.gh.runners().is_empty(), "the ephemeral runner is gone");

    let diag = files(root.path(), "_diag");
    assert!(
        diag.iter()
            .any(|f| f.starts_with("Runner_") && f.ends_with("-utc.log")),
        "{diag:?}"
    );
    assert!(diag.iter().any(|f| f.starts_with("Worker_")), "{diag:?}");
    assert!(
        root.path()
            .join(format!("_work/app/app/job-{mine}.txt"))
            .exists()
    );
    for f in program::CONFIG_FILES {
        assert!(!root.path().join(f).exists(), "{f} left after the job");
    }
}

#[tokio::test]
async fn a_config_whose_runner_was_deleted_exits_with_a_terminated_error() {
    let w = world().await;
    let jit = w.jit("r-2", &["linux"]).await;
    let id = w.gh.runners()[0].id;
    let deleted = w
        .http
        .delete(format!("{}/repos/acme/app/actions/runners/{id}", w.api))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let root = tempfile::tempdir().unwrap();
    assert_eq!(
        program::run(root.path(), &args(&jit)).await,
        exit::TERMINATED_ERROR
    );
}

#[tokio::test]
async fn two_listeners_with_one_config_conflict() {
    let w = world().await;
    let jit = w.jit("r-3", &["linux"]).await;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = {
        let (root, args) = (a.path().to_path_buf(), args(&jit));
        tokio::spawn(async move { program::run(&root, &args).await })
    };
    until("the first runner online", || {
        w.gh.runners().iter().any(|r| r.status == "online")
    })
    .await;
    assert_eq!(
        program::run(b.path(), &args(&jit)).await,
        exit::SESSION_CONFLICT
    );
    let job = w.enqueue(&["linux"], 1);
    assert_eq!(first.await.unwrap(), exit::SUCCESS);
    assert_eq!(w.job(job).conclusion.as_deref(), Some("success"));
}

#[tokio::test]
async fn a_killed_runner_goes_offline_and_fails_its_job() {
    let w = world().await;
    let job = w.enqueue(&["linux"], 600);
    let jit = w.jit("r-4", &["linux"]).await;
    let root = tempfile::tempdir().unwrap();
    let running = {
        let (root, args) = (root.path().to_path_buf(), args(&jit));
        tokio::spawn(async move { program::run(&root, &args).await })
    };
    until("the job to start", || w.job(job).status == "in_progress").await;
    running.abort(); // kill -9: no goodbye
    // The session times out after 30 simulated seconds: 1.5 s here.
    until("the job to fail", || w.job(job).status == "completed").await;
    assert_eq!(w.job(job).conclusion.as_deref(), Some("failure"));
    assert!(w.gh.runners().iter().all(|r| r.status == "offline"));
}

#[tokio::test]
async fn bad_input_exits_with_a_terminated_error() {
    let root = tempfile::tempdir().unwrap();
    let unknown = vec!["run".to_string(), "--url".into(), "x".into()];
    assert_eq!(
        program::run(root.path(), &unknown).await,
        exit::TERMINATED_ERROR
    );
    assert_eq!(
        program::run(root.path(), &args("bm90IGpzb24=")).await,
        exit::TERMINATED_ERROR,
        "base64 of something that is not a JIT config"
    );
    assert_eq!(
        program::run(root.path(), &["run".to_string()]).await,
        exit::TERMINATED_ERROR,
        "not configured"
    );
}
