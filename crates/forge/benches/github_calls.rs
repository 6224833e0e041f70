//! GitHub API calls per job, measured on the fake GitHub: 10 repositories x 50 queued jobs.
//! Prints calls per job served in webhook mode and in poll mode, and the primary budget an idle
//! hour of polling at a 60 s interval spends. Run with `cargo bench -p mayfly-forge`.
//!
//! Serving a job here is what the forge does for it: find it (webhook: no call; poll: run lists
//! and one request per changed run), register its runner (one JIT config), and list the runners
//! of its scope once per reconcile pass for the snapshot (one pass for the burst). The reconcile
//! loop's own share arrives with the Hetzner end-to-end work.

use mayfly_core::{Labels, Secret};
use mayfly_forge::github::{AuthConfig, Client, ClientConfig, LimitsConfig, Poller, Repo, Scope};
use mayfly_sim::clock::Clock as SimClock;
use mayfly_sim::github::{Github, GithubConfig, NewJob};
use mayfly_sim::stats::Stats;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "bench-token";
const REPOS: usize = 10;
const JOBS_PER_REPO: usize = 50;
const JOBS_PER_RUN: usize = 5;

struct World {
    clock: SimClock,
    stats: Arc<Stats>,
    client: Client,
    repos: Vec<Repo>,
}

async fn world(speed: f64, jobs_per_repo: usize) -> World {
    let clock = SimClock::new(speed);
    let stats = Arc::new(Stats::default());
    let config = GithubConfig {
        tokens: vec![TOKEN.into()],
        writes_per_minute: 100_000,
        ..GithubConfig::default()
    };
    let gh = Github::new(config, clock.clone(), stats.clone());
    let api_url = gh.serve_local().await.expect("serve the fake GitHub");
    let client = Client::with_clock(
        &ClientConfig {
            api_url,
            auth: AuthConfig::Token {
                token: Secret::new(TOKEN),
            },
            limits: LimitsConfig {
                write_interval_ms: 0,
                ..LimitsConfig::default()
            },
        },
        Arc::new(clock.clone()),
    )
    .expect("client");
    let repos: Vec<Repo> = (0..REPOS)
        .map(|r| Repo::parse(&format!("acme/repo{r}")).expect("repo"))
        .collect();
    for repo in &repos {
        for _ in 0..jobs_per_repo / JOBS_PER_RUN {
            let jobs = (0..JOBS_PER_RUN)
                .map(|_| NewJob {
                    labels: vec!["self-hosted".into(), "linux".into()],
                    duration: Duration::from_secs(60),
                })
                .collect();
            gh.enqueue(&repo.to_string(), jobs);
        }
    }
    World {
        clock,
        stats,
        client,
        repos,
    }
}

/// Registers one runner per job and lists each scope's runners once, as a reconcile pass does.
async fn serve(w: &World) {
    let labels = Labels::new(["self-hosted", "linux"]);
    for repo in &w.repos {
        let scope = Scope::Repo(repo.clone());
        for n in 0..JOBS_PER_REPO {
            w.client
                .jit_config(&scope, &format!("mayfly-{}-{n}", repo.name), &labels, None)
                .await
                .expect("jit");
        }
        w.client.list_runners(&scope).await.expect("runners");
    }
}

/// GitHub calls so far, and those of them that cost primary budget (all but 304s).
fn spent(stats: &Stats) -> (u64, u64) {
    stats
        .rows()
        .iter()
        .filter(|r| r.key.service == "github")
        .fold((0, 0), |(all, costly), r| {
            (
                all + r.count.calls,
                costly + r.count.calls - r.count.not_modified,
            )
        })
}

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
    println!("GitHub API calls per job served, webhook mode: {webhook:.2} (target <= 2)");
    println!(
        "GitHub API calls per job served, poll mode: {poll:.2} ({discovery} calls to find 500 jobs)"
    );
    println!(
        "primary budget used per idle hour, poll mode at 60 s: {used} ({idle_calls} conditional requests, all 304) (target 0)"
    );
}
