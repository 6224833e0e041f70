//! Every job at the floor, end to end: `mayfly run` as a process against `mayfly sim serve` as a
//! process, on the wall clock, with short boots (a server is up a second after its create, its
//! runner registers a second later: the floor is about 2 s).
//!
//! - Webhooks lost (30 % dropped, and for 30 % of jobs every webhook after `queued`): every job
//!   is served, no machine is made or reused for a job that had already finished, no server is
//!   left with an idle runner once the trace is done, and the worst wait stays near the floor.
//! - Ten jobs queued at the same instant get their creates within 2 s (GitHub's write spacing
//!   applies after a burst, not within it).
//! - A pool whose machines the provider refuses is tried once per slow retry, and `mayfly
//!   status` names it.
//!
//! Everything asserted comes from the simulator's control API (jobs, the bill with every
//! server's create and rebuild times, runners, call counts) or from `mayfly status`.

mod support;

use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::Daemon;
use support::sim::{GITHUB_TOKEN, HETZNER_TOKEN, SimServe, fast_faults, request};

const CONTROLLER: &str = "floor";
const HOOK_SECRET: &str = "floor-hook-secret";
const X64: &[&str] = &["self-hosted", "linux", "x64"];

/// The knobs of one run's `mayfly.toml`.
struct Knobs {
    recycling: bool,
    /// `[github.limits]` lines; empty: mayfly's defaults (GitHub's write spacing and burst).
    limits: &'static str,
    types: &'static str,
    refused_retry: &'static str,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            recycling: false,
            limits: "",
            types: r#"["cx23"]"#,
            refused_retry: "10m",
        }
    }
}

struct World {
    name: &'static str,
    sim: SimServe,
    dir: tempfile::TempDir,
    config: PathBuf,
    daemon: Daemon,
    listen: std::net::SocketAddr,
}

impl World {
    fn new(name: &'static str, faults: Value, knobs: Knobs) -> World {
        let sim = SimServe::start(&[]);
        let mut fast = fast_faults();
        fast["hetzner"]["server_quota"] = json!(2000);
        sim.faults(fast);
        if !faults.is_null() {
            sim.faults(faults);
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("mayfly.toml");
        std::fs::write(&config, config_text(&sim, &knobs)).expect("write the config");
        let mut daemon = Daemon::start(dir.path(), &config, &[]);
        let addr = daemon
            .listen_addr()
            .unwrap_or_else(|| panic!("mayfly run did not start:\n{}", daemon.log()));
        sim.post(
            "webhooks",
            &json!({ "url": format!("http://{addr}/webhooks/github"), "secret": HOOK_SECRET }),
        );
        World {
            name,
            sim,
            dir,
            config,
            daemon,
            listen: addr,
        }
    }

    /// Polls the simulator every 250 ms until `done`, at most `limit`.
    fn wait(&mut self, what: &str, limit: Duration, mut done: impl FnMut(&SimServe) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(&self.sim) {
            self.daemon.drain();
            assert!(
                Instant::now() < deadline,
                "{}: timed out after {limit:?} waiting for {what}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn all_completed(&mut self, n: usize, limit: Duration) {
        self.wait(&format!("{n} jobs completed"), limit, |sim| {
            let jobs = sim.jobs();
            jobs.len() == n && jobs.iter().all(|j| j["status"] == "completed")
        });
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.daemon.drain();
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join("floor")
                .join(self.name);
            let _ = std::fs::create_dir_all(&out);
            let _ = std::fs::write(out.join("mayfly.log"), self.daemon.log());
            let _ = std::fs::write(
                out.join("stats.json"),
                serde_json::to_string_pretty(&self.sim.stats()).unwrap_or_default(),
            );
            eprintln!(
                "{}: mayfly's log and the simulator's stats in {}",
                self.name,
                out.display()
            );
        }
    }
}

fn config_text(sim: &SimServe, k: &Knobs) -> String {
    format!(
        r#"controller = "{CONTROLLER}"
state_dir = "state"
workers = 16

[github]
token = "{GITHUB_TOKEN}"
api_url = "{github}"
repositories = ["acme/app"]
poll = true
webhook_secret = "{HOOK_SECRET}"

[github.limits]
{limits}

[providers.hetzner]
kind = "hetzner"
token = "{HETZNER_TOKEN}"
endpoint = "{hetzner}"

[deadlines]
registration = "20s"
idle = "5s"
powered_off = "1s"

[intervals]
reconcile = "1s"
poll = "2s"
poll_backstop = "6s"
confirm_queued = "10s"
confirm_running = "20s"
confirm_stale = "2s"
refused_retry = "{refused_retry}"

[recycling]
enabled = {recycling}

[[pools]]
name = "linux"
provider = "hetzner"
labels = ["self-hosted", "linux", "x64"]
types = {types}
locations = ["fsn1"]
"#,
        github = sim.github,
        hetzner = sim.hetzner,
        limits = k.limits,
        recycling = k.recycling,
        types = k.types,
        refused_retry = k.refused_retry,
    )
}

/// The job a server was made for, from its name `floor-linux-{job}-{attempt}[-{n}]`.
fn job_of(name: &str) -> Option<u64> {
    name.strip_prefix("floor-linux-")?
        .split('-')
        .next()?
        .parse()
        .ok()
}

fn jobs_by_id(sim: &SimServe) -> HashMap<u64, Value> {
    sim.jobs()
        .into_iter()
        .map(|j| (j["id"].as_u64().expect("job id"), j))
        .collect()
}

/// Every server ever billed: (name, created, rebuilds).
fn billed(sim: &SimServe) -> Vec<(String, i64, Vec<i64>)> {
    sim.servers()["billing"]["servers"]
        .as_array()
        .expect("billed servers")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("name").to_string(),
                s["created_ms"].as_i64().expect("created"),
                s["rebuilt_ms"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_i64)
                    .collect(),
            )
        })
        .collect()
}

/// A trace of `n` jobs, one a second, each 2 to 5 s long.
fn steady(n: usize) -> String {
    let mut csv = String::from("at,repo,labels,duration\n");
    for i in 0..n {
        csv.push_str(&format!("{i},acme/app,{},{}\n", X64.join(";"), 2 + i % 4));
    }
    csv
}

/// 30 % of webhooks dropped, and for another 30 % of jobs every webhook after `queued` lost (they
/// start and finish while mayfly hears nothing), recycling on: the ghost jobs of the old loop.
#[test]
fn lost_webhooks_leave_no_ghost_job_and_no_idle_server() {
    let mut w = World::new(
        "lost-webhooks",
        json!({ "webhooks": { "drop": 0.3, "lose_after_queued": 0.3, "seed": 12 } }),
        Knobs {
            recycling: true,
            ..Knobs::default()
        },
    );
    let n = 30;
    w.sim.post("trace", &json!({ "text": steady(n) }));
    w.all_completed(n, Duration::from_secs(180));
    let jobs = jobs_by_id(&w.sim);
    let last_done = jobs
        .values()
        .filter_map(|j| j["completed_ms"].as_i64())
        .max()
        .expect("completion times");
    // Once the trace is done, nothing is left working: no idle runner of ours at GitHub, no
    // server running (kept ones are off, paid for, waiting for a job).
    w.wait(
        "no idle runner and no server running",
        Duration::from_secs(60),
        |sim| {
            let runners = sim.github_get("/repos/acme/app/actions/runners");
            let idle = runners["runners"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["status"] == "online" && r["busy"] == false);
            let running = sim.servers()["servers"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["status"] != "off");
            !idle && !running
        },
    );
    // No machine was made or reused for a job that had finished.
    for (name, created, rebuilds) in billed(&w.sim) {
        let job = job_of(&name).unwrap_or_else(|| panic!("a server for no job: {name}"));
        let done = jobs[&job]["completed_ms"].as_i64().expect("completed");
        assert!(
            created < done,
            "{name} was created {} ms after its job finished",
            created - done
        );
        for at in rebuilds {
            assert!(
                at <= last_done,
                "{name} was rebuilt {} ms after every job had finished",
                at - last_done
            );
        }
    }
    let waits = &w.sim.stats()["jobs"]["wait_secs"];
    let worst = waits["max"].as_f64().expect("max wait");
    // The floor is about 2 s (boot 1 s, runner 1 s); a job whose every webhook is lost waits
    // for a poll (2 s) at worst.
    assert!(worst <= 2.0 + 30.0, "worst wait {worst} s");
    println!(
        "lost-webhooks: {n} jobs; queue wait p50 {} s, p95 {} s, max {} s; GitHub calls {}, \
         Hetzner calls {}",
        waits["p50"],
        waits["p95"],
        waits["max"],
        w.sim.stats()["api_calls"]["github"],
        w.sim.stats()["api_calls"]["hetzner"]
    );
}

/// Ten jobs queued at the same instant, GitHub's write spacing at its default (one a second
/// after a burst of 15): every create is sent within 2 s of its job's queueing.
#[test]
fn ten_simultaneous_jobs_get_their_creates_within_two_seconds() {
    let mut w = World::new("simultaneous", Value::Null, Knobs::default());
    // The fake's own write limit is GitHub's (80 a minute): no need to raise it here.
    w.sim
        .faults(json!({ "github": { "writes_per_minute": 80 } }));
    let ids = w.sim.enqueue("acme/app", X64, 3.0, 10, 1);
    assert_eq!(ids.len(), 10);
    w.all_completed(10, Duration::from_secs(60));
    let jobs = jobs_by_id(&w.sim);
    let mut lags: Vec<i64> = Vec::new();
    for (name, created, _) in billed(&w.sim) {
        let job = job_of(&name).expect("a job's server");
        lags.push(created - jobs[&job]["queued_ms"].as_i64().expect("queued"));
    }
    lags.sort_unstable();
    assert_eq!(lags.len(), 10, "one server per job: {lags:?}");
    assert!(
        lags.iter().all(|&l| l <= 2_000),
        "creates after their job's queueing (ms): {lags:?}"
    );
    println!("simultaneous: create sent after queueing (ms): {lags:?}");
}

/// The provider stops offering the pool's server type while mayfly runs (the catalogue mayfly
/// read at start still has it): the first create is refused, and then nothing more is tried for
/// that pool until the slow retry, however many jobs queue; `mayfly status` names the pool and
/// why, and so does the metric.
#[test]
fn a_pool_the_provider_refuses_is_tried_once_per_retry_and_named() {
    let mut w = World::new(
        "refused-pool",
        Value::Null,
        Knobs {
            refused_retry: "6s",
            ..Knobs::default()
        },
    );
    w.daemon
        .wait_for(&["reconcile pass done"])
        .expect("a first pass");
    w.sim
        .faults(json!({ "hetzner": { "missing_types": ["cx23"] } }));
    let creates = |sim: &SimServe| -> u64 {
        sim.stats()["api_calls"]["by_endpoint"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["method"] == "POST" && r["route"] == "/v1/servers")
            .map(|r| r["calls"].as_u64().unwrap_or(0))
            .sum()
    };
    let started = Instant::now();
    // A job every second for 10 s.
    for _ in 0..10 {
        w.sim.enqueue("acme/app", X64, 2.0, 1, 1);
        std::thread::sleep(Duration::from_secs(1));
        w.daemon.drain();
    }
    let tried = creates(&w.sim);
    let windows = started.elapsed().as_secs() / 6 + 1;
    assert!(
        (1..=windows).contains(&tried),
        "{tried} creates in {:?} with a 6 s retry",
        started.elapsed()
    );
    let listen = w.listen;
    let mut status = support::mayfly(w.dir.path(), &[]);
    status
        .arg("--listen")
        .arg(listen.to_string())
        .arg("-c")
        .arg(&w.config)
        .arg("status");
    let (code, out, err) = support::output(&mut status);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("! pool linux is unusable") && out.contains("cx23"),
        "mayfly status:\n{out}"
    );
    let (_, metrics) = request(&listen.to_string(), "GET", "/metrics", None);
    assert!(
        metrics.contains("mayfly_pool_unusable{pool=\"linux\"} 1"),
        "{metrics}"
    );
    // Every job is left waiting with its reason, none served by a broken pool.
    assert!(w.sim.jobs().iter().all(|j| j["status"] == "queued"));
}

/// A pool whose server type the catalogue does not have is named at start and marked unusable
/// before any create is spent on it.
#[test]
fn an_unknown_server_type_is_named_at_start_and_never_created() {
    let mut w = World::new(
        "unknown-type",
        Value::Null,
        Knobs {
            types: r#"["cx99"]"#,
            ..Knobs::default()
        },
    );
    w.daemon.wait_for(&["reconcile pass done"]);
    let line = w
        .daemon
        .seen
        .iter()
        .find(|l| l.contains("pool spec") && l.contains("cx99"))
        .cloned()
        .unwrap_or_else(|| panic!("no start-up problem logged:\n{}", w.daemon.log()));
    assert!(line.contains("does not exist"), "{line}");
    w.sim.enqueue("acme/app", X64, 2.0, 3, 1);
    std::thread::sleep(Duration::from_secs(4));
    w.daemon.drain();
    let posts: u64 = w.sim.stats()["api_calls"]["by_endpoint"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["method"] == "POST" && r["route"] == "/v1/servers")
        .map(|r| r["calls"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(posts, 0, "no create for a type that does not exist");
}

/// A thousand jobs queued at once, a webhook each: passes coalesce (one in flight, one
/// pending) and share their one server list, so the fake Hetzner sees at most three calls per
/// job (its create, its delete, and a share of the lists) and every job gets one server.
#[test]
fn a_flood_of_a_thousand_jobs_costs_at_most_three_hetzner_calls_each() {
    const JOBS: usize = 1_000;
    let mut w = World::new(
        "flood",
        Value::Null,
        Knobs {
            limits: r#"write_interval = "1ms""#,
            ..Knobs::default()
        },
    );
    let ids = w.sim.enqueue("acme/app", X64, 1.0, JOBS as u32, 1);
    assert_eq!(ids.len(), JOBS);
    w.all_completed(JOBS, Duration::from_secs(300));
    w.wait("every server gone", Duration::from_secs(120), |sim| {
        sim.servers()["servers"]
            .as_array()
            .is_some_and(|s| s.is_empty())
    });
    let servers = billed(&w.sim);
    assert_eq!(servers.len(), JOBS, "one server per job");
    let hetzner = w.sim.stats()["api_calls"]["hetzner"]
        .as_u64()
        .expect("Hetzner calls");
    println!(
        "flood: {JOBS} jobs, {hetzner} Hetzner calls ({:.2} per job)",
        hetzner as f64 / JOBS as f64
    );
    assert!(
        hetzner <= 3 * JOBS as u64,
        "{hetzner} Hetzner calls for {JOBS} jobs"
    );
}
