//! The forge's GitHub call targets, asserted on the fixed world of the `github_calls`
//! benchmark (10 repositories x 50 queued jobs on the fake GitHub): at most 2 calls per job
//! served in webhook mode, and no primary budget spent by an idle hour of polling (every
//! conditional request answered 304). Counts, not timings: they do not depend on the machine.

mod calls_world;

use calls_world::{JOBS_PER_REPO, REPOS, serve, spent, world};
use mayfly_forge::github::Poller;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mode_costs_at_most_two_github_calls_per_job() {
    let w = world(1.0, JOBS_PER_REPO).await;
    serve(&w).await;
    let jobs = (REPOS * JOBS_PER_REPO) as f64;
    let per_job = w.stats.total("github") as f64 / jobs;
    println!("GitHub calls per job, webhook mode: {per_job:.2}");
    assert!(
        per_job <= 2.0,
        "{per_job:.2} GitHub calls per job (target <= 2)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_hour_of_polling_spends_no_primary_budget() {
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
    assert!(
        calls_after - calls_before >= 60 * REPOS as u64,
        "every poll asked every repository"
    );
    assert_eq!(
        costly_after - costly_before,
        0,
        "an idle hour of polling spent primary budget (target 0)"
    );
}
