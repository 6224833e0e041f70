//! `mayfly demo`: the simulator and the controller in one process, a built-in trace replayed on
//! a sped-up clock, live progress, and a report that judges the run (exit 1 on a failure).

use anyhow::Context;
use clap::Args;
use mayfly::estimate::Waits;
use mayfly::local::{self, Cadence, Local, Setup};
use mayfly_core::Pace;
use mayfly_core::{Arch, Limits, Pools};
use mayfly_sim::runners::{Delay, RunnerConfig};
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
    /// Also print the API calls by route
    #[arg(long)]
    pub calls: bool,
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
    let trace = mayfly_sim::trace::parse(&origin, &text)?;
    anyhow::ensure!(!trace.is_empty(), "{origin}: no jobs");
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

async fn run(
    args: DemoArgs,
    origin: String,
    trace: Vec<mayfly_sim::trace::TraceJob>,
) -> anyhow::Result<bool> {
    let mut config = SimConfig {
        speed: args.speed,
        ..SimConfig::default()
    };
    config.runners = RunnerConfig {
        boot_delay: Delay::Uniform {
            min_secs: 15.0,
            max_secs: 30.0,
        },
        ..RunnerConfig::default()
    };
    let mut repos: Vec<String> = trace.iter().map(|j| j.repo.clone()).collect();
    repos.sort();
    repos.dedup();
    // Held to the end: it owns the temporary state directory.
    let local = Local::start(
        config,
        Setup {
            pools: pools(args.recycling),
            repos,
            webhook_secret: Some("demo-webhook-secret".into()),
            workers: 10,
            confirm_after: Duration::from_secs(600),
            poll_backstop: Duration::from_secs(300),
            runners_max_age: Duration::from_secs(300),
        },
    )
    .await?;
    let (sim, at) = (local.sim.clone(), local.at);
    let mut controller = local.controller;

    let jobs = trace.len();
    println!(
        "mayfly demo: {jobs} jobs from {origin}, simulated at {}x (a minute takes {:.1} s); \
         fake GitHub on {}, fake Hetzner on {}",
        args.speed,
        60.0 / args.speed,
        at.github,
        at.hetzner
    );
    println!(
        "{:>7}  {:>6} {:>7} {:>5}  {:>7} {:>4}",
        "time", "queued", "running", "done", "servers", "off"
    );
    let start = sim.clock.now_ms();
    sim.replay(trace);
    let mut last_line: Option<i64> = None;
    let mut failed_passes = 0u32;
    // Bounded: a run that has not settled after five simulated hours has failed.
    let limit_ms = start + 5 * 3_600_000;
    let progress = |sim: &Sim, last_line: &mut Option<i64>| -> bool {
        let now = sim.clock.now_ms();
        let gh = sim.github.jobs();
        let servers = sim.hetzner.servers();
        let done = gh.iter().filter(|j| j.status == "completed").count();
        let running = gh.iter().filter(|j| j.status == "in_progress").count();
        let queued = gh.len().saturating_sub(done + running);
        let off = servers.iter().filter(|s| s.status == "off").count();
        let settled = !sim.replaying() && done == jobs && servers.is_empty();
        if last_line.is_none_or(|t| now - t >= 60_000) || settled {
            *last_line = Some(now);
            println!(
                "{:>7}  {:>6} {:>7} {:>5}  {:>7} {:>4}",
                clock(now - start),
                queued,
                running,
                done,
                servers.len(),
                off
            );
        }
        settled || now > limit_ms
    };
    controller
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
                    eprintln!("reconcile pass failed: {e}");
                }
                progress(&sim, &mut last_line)
            },
        )
        .await;
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
    Ok(report(&sim, jobs, start, failed_passes, args.recycling))
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

/// Prints the report; true when every job was served and no server is left.
fn report(sim: &Sim, jobs: usize, start: i64, failed_passes: u32, recycling: bool) -> bool {
    let gh = sim.github.jobs();
    let served = gh
        .iter()
        .filter(|j| j.conclusion.as_deref() == Some("success"))
        .count();
    let waits = Waits::of(
        gh.iter()
            .filter_map(|j| j.started_ms.map(|s| (s - j.queued_ms) as f64 / 1000.0))
            .collect(),
    );
    let job_secs: f64 = gh
        .iter()
        .filter_map(|j| Some((j.completed_ms? - j.started_ms?) as f64 / 1000.0))
        .sum();
    let calls = |service: &str| sim.stats.total(service);
    let bill = sim.hetzner.billing();
    // The job-seconds priced like the servers that ran them (their average hourly price).
    let mean_price = if bill.servers.is_empty() {
        0.0
    } else {
        bill.servers
            .iter()
            .map(|s| s.price_hourly_gross)
            .sum::<f64>()
            / bill.servers.len() as f64
    };
    let job_cost = job_secs / 3600.0 * mean_price;
    let left = sim.hetzner.servers().len();
    let per_job = |n: u64| n as f64 / served.max(1) as f64;
    println!();
    println!("report ({} simulated)", clock(sim.clock.now_ms() - start));
    println!("  jobs served          {served}/{jobs}");
    println!(
        "  queue wait           p50 {}  p95 {}  max {}",
        secs(waits.p50),
        secs(waits.p95),
        secs(waits.max)
    );
    println!(
        "  GitHub API calls     {} ({:.2} per job)",
        calls("github"),
        per_job(calls("github"))
    );
    println!(
        "  Hetzner API calls    {} ({:.2} per job)",
        calls("hetzner"),
        per_job(calls("hetzner"))
    );
    println!(
        "  servers created      {} ({})",
        bill.servers.len(),
        reuse(bill.servers.len(), served, recycling)
    );
    println!(
        "  billed cost          {:.4} {} for {} server-hours; the job-seconds alone would cost {:.4} ({:.1}x)",
        bill.total,
        bill.currency,
        bill.hours_billed,
        job_cost,
        if job_cost > 0.0 {
            bill.total / job_cost
        } else {
            0.0
        }
    );
    println!("  servers left         {left}");
    if failed_passes > 0 {
        println!("  failed passes        {failed_passes} (see the messages above)");
    }
    for j in gh
        .iter()
        .filter(|j| j.conclusion.as_deref() != Some("success"))
    {
        println!(
            "  not served: job {} [{}] {} (runner {:?})",
            j.id,
            j.labels.join(","),
            j.status,
            j.runner_name
        );
    }
    for s in sim.hetzner.servers() {
        println!("  left: server {} {} ({})", s.name, s.status, s.server_type);
    }
    let ok = served == jobs && left == 0;
    println!(
        "{}",
        if ok {
            "ok: every job was served and no server is left"
        } else {
            "FAILED: a job was not served or a server is left"
        }
    );
    ok
}

fn secs(s: Option<f64>) -> String {
    s.map_or_else(|| "-".into(), |s| format!("{s:.0}s"))
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
