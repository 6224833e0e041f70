//! `mayfly demo`: the simulator and the controller in one process, a built-in trace replayed on
//! a sped-up clock, live progress, and a report that judges the run (exit 1 on a failure).
//! The same trace then runs without recycling and without webhooks, for a side-by-side of what
//! each buys; quiet stretches (machines waiting out a paid hour) are fast-forwarded.

mod dashboard;
mod story;

use anyhow::Context;
use clap::Args;
use mayfly::local::{self, Cadence, Local, Setup};
use mayfly_core::Pace;
use mayfly_core::{Arch, Limits, Pools, Recycling};
use mayfly_sim::runners::{Delay, RunnerConfig};
use mayfly_sim::trace::{TraceForge, TraceJob};
use mayfly_sim::{Sim, SimConfig};
use std::path::PathBuf;
use std::time::Duration;

/// The built-in trace: 40 jobs with mixed labels over two minutes.
const TRACE: &str = include_str!("../../../examples/traces/demo.csv");

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Simulated seconds per real second. At 60 a simulated hour (the billing period the run
    /// ends in) passes in a minute
    #[arg(long, default_value_t = 60.0)]
    pub speed: f64,
    /// Replay this trace (CSV or JSON, see docs/simulator.md) instead of the built-in one
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Keep powered-off servers for later jobs while their hour is paid (the default); off
    /// deletes each server when its job is done
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub recycling: bool,
    /// Receive jobs by webhook as well as by polling (the default); off polls only
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub webhooks: bool,
    /// Also run the trace once without recycling and once without webhooks (in the
    /// background, fast-forwarded), and show the three runs side by side
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub compare: bool,
    /// Whose jobs the trace's jobs are: github, gitlab, or both (each repository of the trace
    /// in turn a GitHub repository or a GitLab project). A trace with a forge column keeps it
    #[arg(long, value_enum, default_value_t = DemoForge::Github)]
    pub forge: DemoForge,
    /// Also print the API calls by route
    #[arg(long)]
    pub calls: bool,
    /// Serve the dashboard (and the API) on ADDR while the demo runs, and after it until
    /// Ctrl-C; sign in with the token in the file it names [default ADDR: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8080")]
    pub dashboard: Option<std::net::SocketAddr>,
    /// With --dashboard: the API token is this file's contents instead of a new random one
    #[arg(long, value_name = "FILE", requires = "dashboard")]
    pub token_file: Option<PathBuf>,
    // The global flags of the commands that read a configuration. The demo reads none: these
    // keep them out of its help (clap does not add a global flag a command defines itself)
    // and refuse them, rather than accept and ignore them.
    #[arg(
        short = 'c',
        long = "config",
        id = "config",
        hide = true,
        value_name = "FILE"
    )]
    pub unused_config: Option<PathBuf>,
    #[arg(long = "state", id = "state", hide = true, value_name = "URL")]
    pub unused_state: Option<String>,
    #[arg(long = "listen", id = "listen", hide = true, value_name = "ADDR")]
    pub unused_listen: Option<String>,
}

/// Which fake forge the demo's jobs go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoForge {
    Github,
    Gitlab,
    Both,
}

/// The trace's jobs moved to the chosen forge: all to GitLab, or every other repository (in
/// name order) for both. A trace that names forges itself is left as it is.
fn assign_forges(trace: &mut [TraceJob], forge: DemoForge) {
    if forge == DemoForge::Github || trace.iter().any(|j| j.forge != TraceForge::Github) {
        return;
    }
    let repos = scopes(trace, TraceForge::Github);
    for j in trace.iter_mut() {
        let n = repos.iter().position(|r| *r == j.repo).unwrap_or(0);
        if forge == DemoForge::Gitlab || n % 2 == 1 {
            j.forge = TraceForge::Gitlab;
        }
    }
}

/// The repositories (or projects) of `forge`'s jobs in the trace, in name order, once each.
fn scopes(trace: &[TraceJob], forge: TraceForge) -> Vec<String> {
    let mut scopes: Vec<String> = trace
        .iter()
        .filter(|j| j.forge == forge)
        .map(|j| j.repo.clone())
        .collect();
    scopes.sort();
    scopes.dedup();
    scopes
}

/// What the demo says about servers and reuse: only what happened.
fn reuse(created: usize, served: usize, recycling: bool) -> String {
    let per_job = created as f64 / served.max(1) as f64;
    if created < served {
        format!(
            "{per_job:.2} per job: {} jobs ran on a server an earlier job had paid for",
            served - created
        )
    } else if recycling {
        format!("{per_job:.2} per job: no server was reused")
    } else {
        format!("{per_job:.2} per job: recycling is off, so none was reused")
    }
}

pub fn demo(args: DemoArgs) -> anyhow::Result<bool> {
    if let Some(flag) = [
        args.unused_config.as_ref().map(|_| "--config"),
        args.unused_state.as_ref().map(|_| "--state"),
        args.unused_listen.as_ref().map(|_| "--listen"),
    ]
    .into_iter()
    .flatten()
    .next()
    {
        anyhow::bail!(
            "{flag} does not apply to the demo: it reads no configuration and keeps its state in memory"
        );
    }
    let (origin, text) = match &args.trace {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the trace {}", path.display()))?,
        ),
        None => ("the built-in trace".to_string(), TRACE.to_string()),
    };
    let mut trace = mayfly_sim::trace::parse(&origin, &text)?;
    anyhow::ensure!(!trace.is_empty(), "{origin}: no jobs");
    assign_forges(&mut trace, args.forge);
    anyhow::ensure!(
        args.speed.is_finite() && args.speed > 0.0,
        "--speed must be a positive number"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(args, origin, trace))
}

/// One run of the trace: how it is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    pub recycling: bool,
    pub webhooks: bool,
}

impl Variant {
    fn label(self) -> &'static str {
        match (self.recycling, self.webhooks) {
            (true, true) => "recycling, webhooks",
            (false, true) => "no recycling",
            (true, false) => "no webhooks",
            (false, false) => "neither",
        }
    }
}

async fn start(
    speed: f64,
    trace: &[mayfly_sim::trace::TraceJob],
    v: Variant,
) -> anyhow::Result<Local> {
    let mut config = SimConfig {
        speed,
        ..SimConfig::default()
    };
    config.runners = RunnerConfig {
        boot_delay: Delay::Uniform {
            min_secs: 15.0,
            max_secs: 30.0,
        },
        ..RunnerConfig::default()
    };
    let repos = scopes(trace, TraceForge::Github);
    Local::start(
        config,
        Setup {
            pools: pools(v.recycling),
            repos,
            webhook_secret: v.webhooks.then(|| "demo-webhook-secret".into()),
            workers: 10,
            confirm_after: Duration::from_secs(600),
            poll_backstop: Duration::from_secs(300),
            runners_max_age: mayfly::reconcile::RUNNERS_MAX_AGE,
            gitlab_projects: scopes(trace, TraceForge::Gitlab),
        },
    )
    .await
}

/// Replays `trace` on `local` until every job is served and no server is left (or five
/// simulated hours pass). With `print`, the progress table; quiet stretches are skipped either way.
async fn replay(
    local: &mut Local,
    trace: Vec<mayfly_sim::trace::TraceJob>,
    print: bool,
) -> story::Outcome {
    let sim = local.sim.clone();
    let jobs = trace.len();
    let views = local.controller.reconciler.views();
    let start = sim.clock.now_ms();
    sim.replay(trace);
    let mut last_line: Option<i64> = None;
    let mut failed_passes = 0u32;
    // Bounded: a run that has not settled after five simulated hours has failed.
    let limit_ms = start + 5 * 3_600_000;
    let mut progress = |sim: &Sim| -> bool {
        let now = sim.clock.now_ms();
        let world = story::World::of(sim, views.borrow().as_deref());
        let settled = !sim.replaying() && world.done == jobs && world.servers == 0;
        if print && (last_line.is_none_or(|t| now - t >= 60_000) || settled) {
            last_line = Some(now);
            println!("{}", world.line(now, start));
        }
        if !settled
            && !sim.replaying()
            && let Some(skip) = world.quiet(now, Recycling::default().margin)
        {
            if print {
                println!("{}", world.skipped(now, skip, start));
            }
            sim.clock.advance(skip);
            last_line = None;
        }
        settled || now > limit_ms
    };
    local
        .controller
        .run(
            Cadence {
                pace: Pace {
                    unsettled: Duration::from_secs(15),
                    resync: Duration::from_secs(300),
                    settle: Some(Duration::from_secs(20)),
                    coalesce: Duration::from_millis(500),
                },
                poll: Duration::from_secs(60),
            },
            |pass, _| {
                if let Err(e) = pass {
                    failed_passes += 1;
                    if print {
                        eprintln!("reconcile pass failed: {e}");
                    }
                }
                progress(&sim)
            },
        )
        .await;
    story::Outcome::of(&sim, jobs, start, failed_passes)
}

async fn run(
    args: DemoArgs,
    origin: String,
    trace: Vec<mayfly_sim::trace::TraceJob>,
) -> anyhow::Result<bool> {
    let main = Variant {
        recycling: args.recycling,
        webhooks: args.webhooks,
    };
    // Held to the end: it owns the temporary state directory.
    let mut local = start(args.speed, &trace, main).await?;
    let served = match args.dashboard {
        Some(addr) => {
            Some(dashboard::serve(&local.controller, addr, args.token_file.as_deref()).await?)
        }
        None => None,
    };
    let jobs = trace.len();
    let gitlab = trace
        .iter()
        .filter(|j| j.forge == TraceForge::Gitlab)
        .count();
    println!(
        "mayfly demo: {jobs} jobs from {origin} ({} GitHub, {gitlab} GitLab), simulated at {}x \
         (a minute takes {:.1} s), {}; fake GitHub on {}, fake GitLab on {}, fake Hetzner on {}",
        jobs - gitlab,
        args.speed,
        60.0 / args.speed,
        main.label(),
        local.at.github,
        local.at.gitlab,
        local.at.hetzner
    );
    if let Some(d) = &served {
        println!("{}", d.banner());
    }
    println!("{}", story::World::header());
    let outcome = replay(&mut local, trace.clone(), true).await;
    let sim = local.sim.clone();
    if args.calls {
        println!("\n{:>7} {:>5} {:>6}  route", "calls", "304", "errors");
        for row in sim.stats.rows() {
            println!(
                "{:>7} {:>5} {:>6}  {} {} {}",
                row.count.calls,
                row.count.not_modified,
                row.count.errors,
                row.key.service,
                row.key.method,
                row.key.route
            );
        }
    }
    let mut ok = outcome.report(&sim, main.recycling);
    if args.compare {
        let others = [
            Variant {
                recycling: !main.recycling,
                webhooks: main.webhooks,
            },
            Variant {
                recycling: main.recycling,
                webhooks: !main.webhooks,
            },
        ];
        println!(
            "\nThe same trace, once with {} and once with {} (run in the background, fast-forwarded):",
            others[0].label(),
            others[1].label()
        );
        let runs = others.map(|v| {
            let trace = trace.clone();
            let speed = args.speed;
            tokio::spawn(async move {
                let mut local = start(speed, &trace, v).await?;
                anyhow::Ok(replay(&mut local, trace, false).await)
            })
        });
        let mut rows = vec![(main.label(), outcome)];
        for (v, run) in others.iter().zip(runs) {
            let o = run.await.context("a comparison run stopped")??;
            rows.push((v.label(), o));
        }
        ok &= rows.iter().all(|(_, o)| o.ok());
        story::compare(&rows);
    }
    if let Some(d) = served {
        println!(
            "\nThe dashboard stays up on http://{}/ (its numbers stand still): Ctrl-C ends the demo.",
            d.addr
        );
        let _ = tokio::signal::ctrl_c().await;
        d.stop();
    }
    Ok(ok)
}

fn pools(recycling: bool) -> Pools {
    let locations = &["fsn1", "nbg1"];
    let x64 = &["self-hosted", "linux", "x64"];
    let arm64 = &["self-hosted", "linux", "arm64"];
    Pools {
        limits: Limits {
            max_instances: Some(40),
            ..Limits::default()
        },
        ..local::pools(
            "demo",
            vec![
                local::pool("x64", x64, &["cx23", "cpx22"], locations, Arch::X86),
                local::pool("arm64", arm64, &["cax11"], locations, Arch::Arm),
            ],
            recycling,
        )
    }
}

/// `mm:ss` of simulated time.
fn clock(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    format!("{:02}:{:02}", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_says_reuse_only_when_there_was_some() {
        assert_eq!(
            reuse(30, 40, true),
            "0.75 per job: 10 jobs ran on a server an earlier job had paid for"
        );
        assert_eq!(reuse(40, 40, true), "1.00 per job: no server was reused");
        assert_eq!(
            reuse(40, 40, false),
            "1.00 per job: recycling is off, so none was reused"
        );
    }
}
