//! Calls per job on each forge, process against process: `mayfly run` (SQLite in a temporary
//! directory, webhooks on, a poll every 60 s) against `mayfly sim serve` at speed 1, once with
//! 10 GitHub repositories × 50 queued jobs and once with 10 GitLab projects × 50 pending jobs
//! (Job Hooks on). Prints the forge's calls per job (GitHub's budget too: its 304s are free) and
//! Hetzner's, against their targets. Asserts only that every job was served, each on a server
//! of its own, and that no server and no GitLab runner record is left.
//! Run with `cargo bench -p mayfly --bench forges` (`--profile dev` reuses the test build; the
//! counts do not depend on the profile). `MAYFLY_BENCH_ROUTES=1` prints the calls by route.

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::sim::{GITHUB_TOKEN, HETZNER_TOKEN, LINUX_POOL, SimServe, fast_faults};

const HOOK_SECRET: &str = "bench-hook-secret";
const GITLAB_TOKEN: &str = "sim-gitlab-token";
const SCOPES: usize = 10;
const JOBS_PER_SCOPE: u32 = 50;
const JOB_SECS: f64 = 10.0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Forge {
    Github,
    Gitlab,
}

impl Forge {
    fn name(self) -> &'static str {
        match self {
            Forge::Github => "github",
            Forge::Gitlab => "gitlab",
        }
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT MET" }
}

fn scopes(prefix: &str) -> Vec<String> {
    (0..SCOPES).map(|i| format!("acme/{prefix}{i}")).collect()
}

fn quoted(list: &[String]) -> String {
    list.iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn config_text(sim: &SimServe, forge: Forge) -> String {
    let section = match forge {
        Forge::Github => format!(
            "[github]\ntoken = \"{GITHUB_TOKEN}\"\napi_url = \"{}\"\nrepositories = [{}]\n\
             webhook_secret = \"{HOOK_SECRET}\"\n\n[github.limits]\nwrite_interval = \"1ms\"\n",
            sim.github,
            quoted(&scopes("repo")),
        ),
        Forge::Gitlab => format!(
            "[gitlab]\nurl = \"{}\"\ntoken = \"{GITLAB_TOKEN}\"\nprojects = [{}]\n\
             webhook_secret = \"{HOOK_SECRET}\"\n",
            sim.gitlab,
            quoted(&scopes("project")),
        ),
    };
    format!(
        r#"controller = "bench"
state_dir = "state"
workers = 16

{section}
[providers.hetzner]
kind = "hetzner"
token = "{HETZNER_TOKEN}"
endpoint = "{hetzner}"

[deadlines]
registration = "30s"
idle = "30s"
powered_off = "1s"

[intervals]
poll = "60s"
poll_backstop = "5m"

[recycling]
enabled = false
{LINUX_POOL}"#,
        hetzner = sim.hetzner,
    )
}

/// Jobs of the forge that are over, and how many there are.
fn over(sim: &SimServe, forge: Forge) -> (usize, usize) {
    match forge {
        Forge::Github => {
            let jobs = sim.jobs();
            let done = jobs.iter().filter(|j| j["status"] == "completed").count();
            (done, jobs.len())
        }
        Forge::Gitlab => {
            let jobs = sim.get("gitlab/jobs");
            let jobs = jobs.as_array().cloned().unwrap_or_default();
            let done = jobs.iter().filter(|j| j["status"] == "success").count();
            (done, jobs.len())
        }
    }
}

fn run(forge: Forge) {
    let sim = SimServe::start(&[]);
    // As the end-to-end tests: servers up in a second, runners a second later, the quota and
    // GitHub's write cap raised so that the run measures mayfly, not the limits.
    let mut faults = fast_faults();
    faults["hetzner"]["server_quota"] = json!(2000);
    sim.faults(faults);
    if forge == Forge::Gitlab {
        for p in scopes("project") {
            sim.post("gitlab/projects", &json!({ "path": p }));
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("mayfly.toml");
    std::fs::write(&config, config_text(&sim, forge)).expect("write the config");
    let mut daemon = support::Daemon::start_at("info", dir.path(), &config, &[]);
    let addr = daemon.listen_addr().expect("mayfly run did not start");
    match forge {
        Forge::Github => sim.post(
            "webhooks",
            &json!({ "url": format!("http://{addr}/webhooks/github"), "secret": HOOK_SECRET }),
        ),
        Forge::Gitlab => sim.post(
            "gitlab/webhooks",
            &json!({ "url": format!("http://{addr}/webhooks/gitlab"), "token": HOOK_SECRET }),
        ),
    };
    std::thread::sleep(Duration::from_secs(2));
    let start = sim.stats();
    let t0 = Instant::now();
    match forge {
        Forge::Github => {
            for r in scopes("repo") {
                sim.enqueue(
                    &r,
                    &["self-hosted", "linux", "x64"],
                    JOB_SECS,
                    5,
                    JOBS_PER_SCOPE / 5,
                );
            }
        }
        Forge::Gitlab => {
            for p in scopes("project") {
                sim.post(
                    "gitlab/pipelines",
                    &json!({ "project": p, "jobs": 5, "tags": ["linux"],
                             "duration_secs": JOB_SECS, "pipelines": JOBS_PER_SCOPE / 5 }),
                );
            }
        }
    }
    let n = SCOPES * JOBS_PER_SCOPE as usize;
    let limit = Duration::from_secs(180);
    loop {
        let (done, total) = over(&sim, forge);
        let live = sim.servers()["servers"].as_array().map_or(0, Vec::len);
        let records = match forge {
            Forge::Github => 0,
            Forge::Gitlab => sim.get("gitlab/runners").as_array().map_or(0, Vec::len),
        };
        if done == n && total == n && live == 0 && records == 0 {
            break;
        }
        assert!(
            t0.elapsed() < limit,
            "{}: not settled in {limit:?}: {done} of {n} jobs over, {live} servers, {records} runner records",
            forge.name()
        );
        daemon.drain();
        std::thread::sleep(Duration::from_millis(250));
    }
    let wall = t0.elapsed();
    daemon.stop();
    let billed = sim.servers()["billing"]["servers"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(billed, n, "{}: one server per job", forge.name());

    let stats = sim.stats();
    let rows = |s: &Value| -> Vec<Value> {
        s["api_calls"]["by_endpoint"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let sum = |s: &Value, service: &str, field: &str| -> u64 {
        rows(s)
            .iter()
            .filter(|r| r["service"] == service)
            .filter_map(|r| r[field].as_u64())
            .sum()
    };
    let delta = |service: &str, field: &str| {
        sum(&stats, service, field).saturating_sub(sum(&start, service, field))
    };
    let per = |x: u64| x as f64 / n as f64;
    let (calls, free, hz) = (
        delta(forge.name(), "calls"),
        delta(forge.name(), "not_modified"),
        delta("hetzner", "calls"),
    );
    let target = match forge {
        Forge::Github => 2.0,
        Forge::Gitlab => 3.0,
    };
    let budget = per(calls - free);
    println!(
        "calls/job  {:6}  {:.2} (budget {:.2}; target <= {target}: {})  Hetzner {:.2} (target <= 3: {})  \
         — {n} jobs, {JOBS_PER_SCOPE} in each of {SCOPES} {}, {JOB_SECS} s each, webhooks + a poll every 60 s, \
         `mayfly run` + `mayfly sim serve` at speed 1; settled in {:.1} s",
        forge.name(),
        per(calls),
        budget,
        verdict(budget <= target),
        per(hz),
        verdict(per(hz) <= 3.0),
        match forge {
            Forge::Github => "repositories",
            Forge::Gitlab => "projects",
        },
        wall.as_secs_f64(),
    );
    if std::env::var_os("MAYFLY_BENCH_ROUTES").is_some() {
        for r in rows(&stats) {
            if r["service"] == forge.name() || r["service"] == "hetzner" {
                println!(
                    "    {:7} {:6} {:55} {:5} (304: {})",
                    r["service"].as_str().unwrap_or(""),
                    r["method"].as_str().unwrap_or(""),
                    r["route"].as_str().unwrap_or(""),
                    r["calls"],
                    r["not_modified"],
                );
            }
        }
    }
}

fn main() {
    run(Forge::Github);
    run(Forge::Gitlab);
}
