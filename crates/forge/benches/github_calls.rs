//! GitHub API calls per job, measured on the fake GitHub: 10 repositories x 50 queued jobs.
//! Prints calls per job served in webhook mode and in poll mode, and the primary budget an idle
//! hour of polling at a 60 s interval spends. Run with `cargo bench -p mayfly-forge`.
//!
//! Serving a job here is what the forge does for it: find it (webhook: no call; poll: run lists
//! and one request per changed run), register its runner (one JIT config), and list the runners
//! of its scope once per reconcile pass for the snapshot (one pass for the burst). The reconcile
//! loop's own share arrives with the Hetzner end-to-end work. `tests/calls.rs` asserts the same
//! targets on the same world.

#[path = "../tests/calls_world/mod.rs"]
mod calls_world;

use calls_world::{JOBS_PER_REPO, JOBS_PER_RUN, REPOS, serve, spent, world};
use mayfly_forge::github::Poller;
use std::time::Duration;

#[tokio::main]
async fn main() {
    let jobs = (REPOS * JOBS_PER_REPO) as f64;

    // Webhook mode: demand arrives by webhook, no call to find it.
    let w = world(1.0, JOBS_PER_REPO).await;
    serve(&w).await;
    let webhook = w.stats.total("github") as f64 / jobs;

    // Poll mode: one poll finds every job, then the same serving.
    let w = world(1.0, JOBS_PER_REPO).await;
    let mut poller = Poller::new(w.client.clone(), w.repos.clone());
    let found = poller.poll().await;
    assert_eq!(
        found.jobs.len(),
        REPOS * JOBS_PER_REPO,
        "the poll finds every job"
    );
    let discovery = w.stats.total("github");
    serve(&w).await;
    let poll = w.stats.total("github") as f64 / jobs;

    // An idle hour of polling every 60 s in simulated time: no job queued, nothing changes, and
    // every request after the first pass is conditional. Budget used = requests not answered 304.
    let w = world(3600.0, 0).await;
    let mut poller = Poller::new(w.client.clone(), w.repos.clone());
    poller.poll().await;
    let (calls_before, costly_before) = spent(&w.stats);
    for _ in 0..60 {
        w.clock.sleep(Duration::from_secs(60)).await;
        let report = poller.poll().await;
        assert!(report.jobs.is_empty() && report.failed.is_empty());
    }
    let (calls_after, costly_after) = spent(&w.stats);
    let idle_calls = calls_after - calls_before;
    let used = costly_after - costly_before;

    println!(
        "10 repositories x 50 queued jobs ({} runs of {JOBS_PER_RUN})",
        REPOS * JOBS_PER_REPO / JOBS_PER_RUN
    );
    let verdict = |met: bool| if met { "met" } else { "NOT MET" };
    println!(
        "GitHub API calls per job served, webhook mode: {webhook:.2} (target <= 2: {})",
        verdict(webhook <= 2.0)
    );
    println!(
        "GitHub API calls per job served, poll mode: {poll:.2} ({discovery} calls to find 500 jobs)"
    );
    println!(
        "primary budget used per idle hour, poll mode at 60 s: {used} ({idle_calls} conditional requests, all 304) (target 0: {})",
        verdict(used == 0)
    );
}
