//! python-gitlab against the fake GitLab: seeds a project with pending jobs in-process, then
//! runs `tests/compat/gitlab_check.py` with the Python of `MAYFLY_PYTHON`.

mod support;

use mayfly_sim::gitlab::{AccessToken, GitlabConfig, NewJob};
use mayfly_sim::{Sim, SimConfig};
use std::time::Duration;

const TOKEN: &str = "glpat-compat";
const DIR: &str = env!("CARGO_MANIFEST_DIR");
const PENDING: usize = 45;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Python clients: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
async fn python_gitlab_accepts_the_fake() {
    let python = support::python();
    let sim = Sim::start(SimConfig {
        gitlab: GitlabConfig {
            tokens: vec![AccessToken::full(TOKEN)],
            ..GitlabConfig::default()
        },
        ..SimConfig::default()
    });
    let at = support::serve(&sim).await;
    for _ in 0..PENDING {
        sim.gitlab
            .enqueue(
                "acme/platform/app",
                vec![NewJob {
                    name: "build".into(),
                    stage: 0,
                    tags: vec!["linux".into()],
                    duration: Duration::from_secs(60),
                    protected: false,
                }],
            )
            .unwrap();
    }
    let args = [
        format!("{DIR}/tests/compat/gitlab_check.py"),
        format!("http://{}", at.gitlab),
        TOKEN.to_string(),
        "acme/platform/app".into(),
        "acme".into(),
        PENDING.to_string(),
    ];
    let run = python.clone();
    let out =
        tokio::task::spawn_blocking(move || std::process::Command::new(run).args(args).output())
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "gitlab_check.py failed: {}",
        out.status
    );
}
