//! How far above the physical floor jobs wait: the whole controller in-process against the
//! simulator (`mayfly::local`), a server up 20 s after its create and its runner online 8 s
//! later (the floor is 28 s on a new server, 18 s on a rebuilt one: a 10 s rebuild, then the
//! runner), the steady hour of examples/traces/steady-hour.csv, recycling on, the daemon's
//! default intervals. Three ways jobs reach mayfly: every webhook delivered; 30 % of webhooks
//! dropped; polling only. Prints, per way: the wait above each job's floor (p50, p95, max),
//! GitHub calls and primary budget per job, machines per job, each against its target.
//!
//! Every wait is in simulated seconds at `MAYFLY_BENCH_FLOOR_SPEED` (default 10) times real
//! time: the controller's own work (a pass, a store write) counts `speed` times its real
//! length, so the figures are an upper bound; a lower speed is closer to the truth and slower.
//! Run with `cargo bench -p mayfly --bench floor --profile dev` (the counts do not depend on
//! the profile).

use mayfly::local::{self, Cadence, Local, Setup};
use mayfly_core::{Arch, Deadlines, Pace};
use mayfly_sim::SimConfig;
use mayfly_sim::github::WebhookFaults;
use mayfly_sim::runners::{Delay, RunnerConfig};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const STEADY_HOUR: &str = include_str!("../../../examples/traces/steady-hour.csv");
const LABELS: [&str; 3] = ["self-hosted", "linux", "x64"];
/// The simulated cloud: create to running, rebuild to running, then the runner.
const BOOT: Duration = Duration::from_secs(20);
const REBUILD: Duration = Duration::from_secs(10);
const RUNNER: f64 = 8.0;

/// The daemon's default intervals (`[intervals]`).
fn cadence() -> Cadence {
    Cadence {
        pace: Pace {
            unsettled: Duration::from_secs(15),
            resync: Duration::from_secs(300),
            settle: Some(Duration::from_secs(20)),
            coalesce: Duration::from_millis(500),
        },
        poll: Duration::from_secs(10),
    }
}

#[derive(Clone, Copy)]
struct Way {
    name: &'static str,
    webhooks: bool,
    drop: f64,
    /// Target for the p95 wait above the floor, simulated seconds.
    p95_target: f64,
}

const WAYS: [Way; 3] = [
    Way {
        name: "webhooks",
        webhooks: true,
        drop: 0.0,
        p95_target: 2.0,
    },
    Way {
        name: "30 % webhooks lost",
        webhooks: true,
        drop: 0.3,
        p95_target: 20.0,
    },
    Way {
        name: "polling only",
        webhooks: false,
        drop: 0.0,
        p95_target: 20.0,
    },
];

struct Measured {
    routes: Vec<String>,
    /// Jobs that waited longer above their floor than the p95 target.
    outliers: Vec<String>,
    jobs: usize,
    above: Vec<f64>,
    github: u64,
    budget: u64,
    hetzner: u64,
    machines: usize,
    wall: Duration,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn run(way: Way, speed: f64) -> Measured {
    let trace = mayfly_sim::trace::parse("steady-hour.csv", STEADY_HOUR).expect("steady-hour.csv");
    let n = trace.len();
    let mut repos: Vec<String> = trace.iter().map(|j| j.repo.clone()).collect();
    repos.sort();
    repos.dedup();
    let mut config = SimConfig {
        speed,
        ..SimConfig::default()
    };
    config.hetzner.boot_delay = BOOT;
    config.hetzner.action_delay = REBUILD;
    config.runners = RunnerConfig {
        boot_delay: Delay::Fixed { secs: RUNNER },
        ..RunnerConfig::default()
    };
    config.github.webhook_faults = WebhookFaults {
        drop: way.drop,
        seed: 12,
        ..WebhookFaults::default()
    };
    let pool = local::pool("linux", &LABELS, &["cx23"], &["fsn1"], Arch::X86);
    let pools = mayfly_core::Pools {
        deadlines: Deadlines::default(),
        ..local::pools("floor", vec![pool], true)
    };
    let cadence = cadence();
    let backstop = Duration::from_secs(300);
    let local = Local::start(
        config,
        Setup {
            pools,
            repos,
            webhook_secret: way.webhooks.then(|| "floor-bench-secret".to_string()),
            workers: 10,
            confirm_after: Duration::from_secs(60),
            poll_backstop: backstop,
            runners_max_age: mayfly::reconcile::RUNNERS_MAX_AGE,
            gitlab_projects: Vec::new(),
        },
    )
    .await
    .expect("start the simulator and the controller");
    let Local {
        sim, controller, ..
    } = local;
    let mut controller = controller;
    let started = Instant::now();
    sim.replay(trace);
    let watch = sim.clone();
    let start_ms = sim.clock.now_ms();
    let limit_ms = start_ms + 3 * 3_600_000;
    controller
        .run(cadence, |pass, _| {
            if let Err(e) = pass {
                eprintln!("floor: reconcile pass failed: {e}");
            }
            let jobs = watch.github.jobs();
            let done = !watch.replaying()
                && jobs.len() == n
                && jobs.iter().all(|j| j.status == "completed");
            done || watch.clock.now_ms() > limit_ms
        })
        .await;
    let wall = started.elapsed();
    let jobs = sim.github.jobs();
    let served = jobs
        .iter()
        .filter(|j| j.conclusion.as_deref() == Some("success"))
        .count();
    assert_eq!(served, n, "{}: every job served", way.name);
    let bill = sim.hetzner.billing();
    let rebuilds: HashMap<&str, &[i64]> = bill
        .servers
        .iter()
        .map(|s| (s.name.as_str(), s.rebuilt_ms.as_slice()))
        .collect();
    let mut above = Vec::with_capacity(n);
    let mut outliers = Vec::new();
    for j in &jobs {
        let (Some(start), Some(runner)) = (j.started_ms, &j.runner_name) else {
            continue;
        };
        // The floor of the boot that ran it: a rebuild before the start, else the create.
        let rebuilt = rebuilds
            .get(runner.as_str())
            .is_some_and(|r| r.iter().any(|&t| t <= start));
        let floor = if rebuilt { REBUILD } else { BOOT }.as_secs_f64() + RUNNER;
        let wait = (start - j.queued_ms) as f64 / 1000.0;
        above.push((wait - floor).max(0.0));
        if wait - floor > way.p95_target {
            outliers.push(format!(
                "    job {} queued at {:.0} s waited {wait:.0} s on {runner}",
                j.id,
                (j.queued_ms - start_ms) as f64 / 1000.0
            ));
        }
    }
    above.sort_by(f64::total_cmp);
    let rows = sim.stats.rows();
    let sum = |service: &str, f: &dyn Fn(&mayfly_sim::stats::CallCount) -> u64| -> u64 {
        rows.iter()
            .filter(|r| r.key.service == service)
            .map(|r| f(&r.count))
            .sum()
    };
    Measured {
        outliers,
        routes: rows
            .iter()
            .map(|r| {
                format!(
                    "    {:7} {:6} {:55} {:5} (304: {})",
                    r.key.service, r.key.method, r.key.route, r.count.calls, r.count.not_modified
                )
            })
            .collect(),
        jobs: n,
        above,
        github: sum("github", &|c| c.calls),
        budget: sum("github", &|c| c.calls - c.not_modified),
        hetzner: sum("hetzner", &|c| c.calls),
        machines: bill.servers.len(),
        wall,
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}

fn main() {
    // `MAYFLY_BENCH_LOG=FILE` writes the controller's debug log there.
    if let Ok(path) = std::env::var("MAYFLY_BENCH_LOG") {
        let file = std::fs::File::create(&path).expect("the log file");
        tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .with_env_filter("mayfly=debug,mayfly_forge=debug")
            .init();
    }
    let speed: f64 = std::env::var("MAYFLY_BENCH_FLOOR_SPEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // `MAYFLY_BENCH_FLOOR_ONLY=webhooks` (a prefix of a way's name) runs that way alone.
        let only = std::env::var("MAYFLY_BENCH_FLOOR_ONLY").unwrap_or_default();
        let ways: Vec<Way> = WAYS
            .iter()
            .copied()
            .filter(|w| w.name.starts_with(&only))
            .collect();
        let runs: Vec<_> = ways
            .iter()
            .map(|w| tokio::spawn(run(*w, speed)))
            .collect();
        for (way, r) in ways.iter().zip(runs) {
            let m = r.await.expect("a floor run");
            let per = |x: u64| x as f64 / m.jobs as f64;
            let (p50, p95, max) = (
                percentile(&m.above, 0.5),
                percentile(&m.above, 0.95),
                m.above.last().copied().unwrap_or(0.0),
            );
            let github_target = if way.webhooks && way.drop == 0.0 {
                format!(" (target <= 2: {})", met(per(m.budget) <= 2.0))
            } else {
                String::new()
            };
            println!(
                "floor {:<19} wait above the floor p50 {p50:.1} s, p95 {p95:.1} s (target <= {} s: {}), \
                 max {max:.1} s; GitHub {:.2} calls/job, budget {:.2}/job{github_target}; \
                 Hetzner {:.2} calls/job (target <= 3: {}); machines {:.2}/job — {} jobs, \
                 {:.0} s at speed {speed}",
                way.name,
                way.p95_target,
                met(p95 <= way.p95_target),
                per(m.github),
                per(m.budget),
                per(m.hetzner),
                met(per(m.hetzner) <= 3.0),
                m.machines as f64 / m.jobs as f64,
                m.jobs,
                m.wall.as_secs_f64(),
            );
            if std::env::var_os("MAYFLY_BENCH_ROUTES").is_some() {
                for line in m.routes.iter().chain(&m.outliers) {
                    println!("{line}");
                }
            }
        }
    });
}
