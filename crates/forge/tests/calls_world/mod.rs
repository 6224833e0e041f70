//! The world the GitHub call counts are taken in, shared by the benchmark that prints them
//! (`benches/github_calls.rs`) and the test that asserts the targets (`tests/calls.rs`): the
//! fake GitHub with 10 repositories x 50 queued jobs, and what serving a job costs the forge.
#![allow(dead_code)]

use mayfly_core::{Labels, Secret};
use mayfly_forge::github::{AuthConfig, Client, ClientConfig, LimitsConfig, Repo, Scope};
use mayfly_sim::clock::Clock as SimClock;
use mayfly_sim::github::{Github, GithubConfig, NewJob};
use mayfly_sim::stats::Stats;
use std::sync::Arc;
use std::time::Duration;

pub const TOKEN: &str = "bench-token";
pub const REPOS: usize = 10;
pub const JOBS_PER_REPO: usize = 50;
pub const JOBS_PER_RUN: usize = 5;

pub struct World {
    pub clock: SimClock,
    pub stats: Arc<Stats>,
    pub client: Client,
    pub repos: Vec<Repo>,
}

pub async fn world(speed: f64, jobs_per_repo: usize) -> World {
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
pub async fn serve(w: &World) {
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
pub fn spent(stats: &Stats) -> (u64, u64) {
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
