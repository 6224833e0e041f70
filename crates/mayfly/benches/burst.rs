//! A burst of 500 jobs, process against process: `mayfly run` (SQLite in a temporary directory,
//! webhooks and a poll every 60 s) against `mayfly sim serve` at speed 1, as the end-to-end
//! burst test runs them. Prints the controller's memory and CPU while it serves the burst, read
//! from `/proc/<pid>/status` (VmRSS) and `/proc/<pid>/stat` (utime + stime) every 100 ms, and
//! the GitHub and Hetzner API calls per job counted by the simulator. Asserts only that every
//! job was served, each by a server of its own, and that none is left.
//! Run with `cargo bench -p mayfly --bench burst` (`--profile dev` reuses the test build; the
//! CPU figure depends on the profile, the calls do not).
//!
//! Knobs (environment): `MAYFLY_BENCH_BURST_SECS` (how long each job runs, default 15: long
//! enough that all 500 servers are alive at once), `MAYFLY_BENCH_ROUTES=1` (calls by route).

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::{Value, json};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::sim::{LINUX_POOL, RunConfig, SimServe};

const HOOK_SECRET: &str = "bench-hook-secret";
const REPOS: usize = 10;
const RUNS_PER_REPO: u32 = 10;
const JOBS_PER_RUN: u32 = 5;
const X64: &[&str] = &["self-hosted", "linux", "x64"];

/// How a printed figure stands against its target.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT MET" }
}

/// One reading of the process: resident set (kB) and CPU time used so far (clock ticks).
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Duration,
    rss_kb: u64,
    cpu_ticks: u64,
}

fn sample(pid: u32, at: Duration) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Sample {
        at,
        rss_kb,
        cpu_ticks: utime + stime,
    })
}

/// Clock ticks per second for `/proc/<pid>/stat`.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn config_text(sim: &SimServe) -> String {
    let repos: Vec<String> = (0..REPOS).map(|i| format!("acme/repo{i}")).collect();
    sim.mayfly_config(&RunConfig {
        controller: "bench",
        repos: &repos,
        webhook_secret: Some(HOOK_SECRET),
        registration: "30s",
        poll: "60s",
        poll_backstop: "5m",
        workers: 16,
        pools: LINUX_POOL,
    })
}

fn main() {
    let job_secs: f64 = std::env::var("MAYFLY_BENCH_BURST_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15.0);
    let sim = SimServe::start(&[]);
    // As the end-to-end tests: servers up in a second, runners a second later, the quota and
    // GitHub's write cap raised so that the burst measures mayfly, not the limits.
    sim.faults(json!({
        "runners": { "boot_delay": { "kind": "fixed", "secs": 1 } },
        "hetzner": {
            "boot_delay_secs": 1, "shutdown_delay_secs": 0.5, "action_delay_secs": 1,
            "server_quota": 2000,
        },
        "github": { "writes_per_minute": 100000 },
    }));
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("mayfly.toml");
    std::fs::write(&config, config_text(&sim)).expect("write the config");
    // At log level info, as an operator runs it: debug logging would inflate the CPU figure.
    let mut run = support::Daemon::start_at("info", dir.path(), &config, &[]);
    let addr = run
        .listen_addr()
        .expect("mayfly run did not start")
        .to_string();
    sim.post(
        "webhooks",
        &json!({ "url": format!("http://{addr}/webhooks/github"), "secret": HOOK_SECRET }),
    );
    let pid = run.pid();
    // Settled after start-up (the first poll and pass): the idle footprint.
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    let idle = sample(pid, Duration::ZERO).expect("read /proc for mayfly run");

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(s) = sample(pid, t0.elapsed()) {
                    samples.push(s);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        })
    };

    for r in 0..REPOS {
        sim.enqueue(
            &format!("acme/repo{r}"),
            X64,
            job_secs,
            JOBS_PER_RUN,
            RUNS_PER_REPO,
        );
    }
    let n = REPOS * (RUNS_PER_REPO * JOBS_PER_RUN) as usize;
    let mut live_max = 0usize;
    let mut live_max_at = Duration::ZERO;
    let limit = Duration::from_secs(150) + Duration::from_secs_f64(job_secs);
    loop {
        let live = sim.servers()["servers"].as_array().map_or(0, Vec::len);
        if live > live_max {
            live_max = live;
            live_max_at = t0.elapsed();
        }
        let jobs = sim.jobs();
        if live == 0 && jobs.len() == n && jobs.iter().all(|j| j["status"] == "completed") {
            break;
        }
        assert!(
            t0.elapsed() < limit,
            "the burst did not settle within {limit:?}: {} of {n} jobs completed, {live} servers",
            jobs.iter().filter(|j| j["status"] == "completed").count()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let wall = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("the sampler");
    let end = sample(pid, wall).expect("read /proc for mayfly run");
    // SIGTERM, as an operator stops it; the figures above are taken.
    run.stop();

    // Correctness: every job served, each by a server of its own (recycling is off).
    let jobs = sim.jobs();
    let served = jobs.iter().filter(|j| j["conclusion"] == "success").count();
    assert_eq!(served, n, "every job served");
    let billed = sim.servers()["billing"]["servers"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(billed, n, "one server per job");

    let peak = samples
        .iter()
        .max_by_key(|s| s.rss_kb)
        .copied()
        .unwrap_or(end);
    let at_live_max = samples
        .iter()
        .min_by_key(|s| s.at.abs_diff(live_max_at))
        .copied()
        .unwrap_or(end);
    let mb = |kb: u64| kb as f64 / 1024.0;
    let ticks = clock_ticks();
    let cpu = (end.cpu_ticks - idle.cpu_ticks) as f64 / ticks;
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    println!(
        "burst RSS            peak {:.1} MB  at {} live servers {:.1} MB  idle before {:.1} MB  after {:.1} MB \
         (target < 50 MB at 500 live instances: {}) — VmRSS of `mayfly run` every 100 ms, {} samples, {profile} profile",
        mb(peak.rss_kb),
        live_max,
        mb(at_live_max.rss_kb),
        mb(idle.rss_kb),
        mb(end.rss_kb),
        verdict(mb(at_live_max.rss_kb) < 50.0),
        samples.len(),
    );
    println!(
        "burst CPU            {cpu:.2} s CPU in {:.1} s wall = {:.0} % of one core ({:.1} ms CPU per job) \
         — utime + stime of `mayfly run` from the burst's start until every job was done and every \
         server deleted, {profile} profile",
        wall.as_secs_f64(),
        100.0 * cpu / wall.as_secs_f64(),
        1000.0 * cpu / n as f64,
    );
    let stats = sim.stats();
    let rows: Vec<&Value> = stats["api_calls"]["by_endpoint"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let sum = |service: &str, field: &str| -> u64 {
        rows.iter()
            .filter(|r| r["service"] == service)
            .filter_map(|r| r[field].as_u64())
            .sum()
    };
    let per = |x: u64| x as f64 / n as f64;
    let (gh, gh_304, hz) = (
        sum("github", "calls"),
        sum("github", "not_modified"),
        sum("hetzner", "calls"),
    );
    println!(
        "calls/job  burst-500         recycling off  GitHub {:.2}, budget (non-304) {:.2} (target <= 2: {})  \
         Hetzner {:.2} (target <= 3: {})  — {n} jobs in 100 runs over 10 repositories, {job_secs} s each, \
         webhooks + a poll every 60 s, `mayfly run` + `mayfly sim serve` at speed 1; settled in {:.1} s \
         (tests/e2e.rs asserts both targets on a 500-job burst in webhook mode)",
        per(gh),
        per(gh - gh_304),
        verdict(per(gh) <= 2.0),
        per(hz),
        verdict(per(hz) <= 3.0),
        wall.as_secs_f64(),
    );
    if std::env::var_os("MAYFLY_BENCH_ROUTES").is_some() {
        for r in &rows {
            println!(
                "    {:7} {:6} {:55} {:5} (304: {}, errors: {})",
                r["service"].as_str().unwrap_or(""),
                r["method"].as_str().unwrap_or(""),
                r["route"].as_str().unwrap_or(""),
                r["calls"],
                r["not_modified"],
                r["errors"],
            );
        }
    }
}
