//! `mayfly run` serving GitLab CI, as a process, against `mayfly sim serve` as a process: the
//! fake GitLab hands jobs to the virtual `gitlab-runner run-single` each server boots with (its
//! `glrt-` token in the user data), and sends Job Hooks to mayfly. Everything asserted comes
//! from the simulator's control API: the jobs and which runner ran each, the servers ever
//! billed, the runner records left.

mod support;

use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::Daemon;
use support::sim::{GITHUB_TOKEN, HETZNER_TOKEN, SimServe, fast_faults};

const CONTROLLER: &str = "gl";
const HOOK_TOKEN: &str = "gitlab-hook-token";
const GITLAB_TOKEN: &str = "sim-gitlab-token";
const PROJECT: &str = "acme/app";

struct World {
    name: &'static str,
    sim: SimServe,
    dir: tempfile::TempDir,
    daemon: Option<Daemon>,
    earlier: Vec<String>,
    started: Instant,
}

/// The forges of a run, and how GitLab's jobs arrive.
struct Setup {
    /// GitHub's repositories too (one run serving both).
    github: bool,
    webhooks: bool,
    /// Faults on top of the fast defaults.
    faults: Value,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            github: false,
            webhooks: true,
            faults: Value::Null,
        }
    }
}

fn config_text(sim: &SimServe, setup: &Setup) -> String {
    let github = if setup.github {
        format!(
            r#"
[github]
token = "{GITHUB_TOKEN}"
api_url = "{}"
repositories = ["acme/hub"]

[github.limits]
write_interval = "1ms"
"#,
            sim.github
        )
    } else {
        String::new()
    };
    let secret = if setup.webhooks {
        format!("webhook_secret = \"{HOOK_TOKEN}\"")
    } else {
        String::new()
    };
    format!(
        r#"controller = "{CONTROLLER}"
state_dir = "state"
workers = 8
{github}
[gitlab]
url = "{gitlab}"
token = "{GITLAB_TOKEN}"
projects = ["{PROJECT}"]
{secret}

[providers.hetzner]
kind = "hetzner"
token = "{HETZNER_TOKEN}"
endpoint = "{hetzner}"

[deadlines]
registration = "20s"
idle = "20s"
powered_off = "1s"

[intervals]
reconcile = "1s"
poll = "2s"

[recycling]
enabled = false

[[pools]]
name = "linux"
provider = "hetzner"
labels = ["self-hosted", "linux", "x64"]
types = ["cx23"]
locations = ["fsn1"]
image = "x86:system:ubuntu-24.04"
"#,
        gitlab = sim.gitlab,
        hetzner = sim.hetzner,
    )
}

impl World {
    fn new(name: &'static str, setup: Setup) -> World {
        let started = Instant::now();
        let sim = SimServe::start(&[]);
        let mut faults = fast_faults();
        faults["hetzner"]["server_quota"] = json!(2000);
        sim.faults(faults);
        if !setup.faults.is_null() {
            sim.faults(setup.faults.clone());
        }
        sim.post("gitlab/projects", &json!({ "path": PROJECT }));
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("mayfly.toml");
        std::fs::write(&config, config_text(&sim, &setup)).expect("write the config");
        let mut daemon = Daemon::start(dir.path(), &config, &[]);
        let addr = daemon
            .listen_addr()
            .unwrap_or_else(|| panic!("{name}: mayfly run did not start:\n{}", daemon.log()));
        if setup.webhooks {
            sim.post(
                "gitlab/webhooks",
                &json!({ "url": format!("http://{addr}/webhooks/gitlab"), "token": HOOK_TOKEN }),
            );
        }
        World {
            name,
            sim,
            dir,
            daemon: Some(daemon),
            earlier: Vec::new(),
            started,
        }
    }

    fn restart_after_kill9(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill9();
            self.earlier.push(d.log());
        }
        let config = self.dir.path().join("mayfly.toml");
        let mut daemon = Daemon::start(self.dir.path(), &config, &[]);
        daemon.listen_addr().expect("mayfly run started again");
        self.daemon = Some(daemon);
    }

    fn wait(&mut self, what: &str, limit: Duration, mut done: impl FnMut(&SimServe) -> bool) {
        let sim = &self.sim;
        let every = Duration::from_millis(250);
        support::wait_until(self.name, what, limit, every, self.daemon.as_mut(), || {
            done(sim)
        });
    }

    fn gitlab_jobs(&self) -> Vec<Value> {
        gitlab_jobs_of(&self.sim)
    }

    /// Waits until every job of both forges finished, then until no server and no GitLab
    /// runner record is left.
    fn settle(&mut self, gitlab: usize, github: usize, limit: Duration) {
        self.wait(
            &format!("{gitlab} GitLab and {github} GitHub jobs over"),
            limit,
            |sim| {
                let gl = gitlab_jobs_of(sim);
                let gh = sim.jobs();
                gl.len() == gitlab
                    && gl.iter().all(|j| j["status"] == "success")
                    && gh.len() == github
                    && gh.iter().all(|j| j["status"] == "completed")
            },
        );
        self.wait("no server left", Duration::from_secs(30), |sim| {
            sim.servers()["servers"]
                .as_array()
                .is_some_and(|s| s.is_empty())
        });
        self.wait(
            "no GitLab runner record left",
            Duration::from_secs(30),
            |sim| {
                sim.get("gitlab/runners")
                    .as_array()
                    .is_some_and(|r| r.is_empty())
            },
        );
    }

    /// The names of every server ever billed.
    fn billed(&self) -> Vec<String> {
        self.sim.servers()["billing"]["servers"]
            .as_array()
            .expect("billed servers")
            .iter()
            .map(|s| s["name"].as_str().expect("name").to_string())
            .collect()
    }

    /// Every one of the `n` GitLab jobs succeeded on a server of its own, and every server
    /// ever billed was made for one of them: `n` servers for `n` jobs.
    fn assert_served_once(&self, n: usize) {
        let billed = self.billed();
        let served = assert_one_server_per_gitlab_job(&self.gitlab_jobs(), &billed);
        assert_eq!(served.len(), n, "GitLab jobs");
        assert!(
            billed
                .iter()
                .all(|s| job_of(s).is_some_and(|j| served.contains(&j))),
            "a server for no job: {billed:?}"
        );
    }

    fn report(&self, jobs: usize) {
        let stats = self.sim.stats();
        let calls = &stats["api_calls"];
        let per_job = |n: &Value| n.as_f64().unwrap_or(0.0) / jobs.max(1) as f64;
        println!(
            "{}: {jobs} jobs in {:.1}s; GitLab calls {} ({:.2}/job), GitHub calls {}, Hetzner calls {} ({:.2}/job)",
            self.name,
            self.started.elapsed().as_secs_f64(),
            calls["gitlab"],
            per_job(&calls["gitlab"]),
            calls["github"],
            calls["hetzner"],
            per_job(&calls["hetzner"]),
        );
        for row in calls["by_endpoint"].as_array().into_iter().flatten() {
            if row["service"] == "gitlab" {
                println!(
                    "  {:6} {:50} {:5}",
                    row["method"].as_str().unwrap_or(""),
                    row["route"].as_str().unwrap_or(""),
                    row["calls"],
                );
            }
        }
    }
}

fn gitlab_jobs_of(sim: &SimServe) -> Vec<Value> {
    match sim.get("gitlab/jobs") {
        Value::Array(jobs) => jobs,
        other => panic!("GET /_sim/gitlab/jobs: {other}"),
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut log = self.earlier.join("\n----- killed -----\n");
        if let Some(d) = &mut self.daemon {
            d.drain();
            log.push_str(&d.log());
        }
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("run_gitlab")
            .join(self.name);
        let _ = std::fs::create_dir_all(&out);
        let _ = std::fs::write(out.join("mayfly.log"), &log);
        let _ = std::fs::write(out.join("sim.log"), self.sim.log());
        let tail: Vec<&str> = log.lines().rev().take(120).collect();
        eprintln!(
            "===== {}: mayfly's log, its end =====\n{}\n===== GitLab jobs =====\n{:#?}\nfiles in {}",
            self.name,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            gitlab_jobs_of(&self.sim),
            out.display()
        );
    }
}

/// `n` pipelines of one job each with `tags`, lasting `secs`.
fn pipelines(sim: &SimServe, n: u32, tags: &[&str], secs: f64) -> Vec<u64> {
    let answer = sim.post(
        "gitlab/pipelines",
        &json!({ "project": PROJECT, "jobs": 1, "tags": tags, "duration_secs": secs, "pipelines": n }),
    );
    answer["pipelines"]
        .as_array()
        .expect("pipelines")
        .iter()
        .flat_map(|p| p["job_ids"].as_array().cloned().unwrap_or_default())
        .map(|id| id.as_u64().expect("job id"))
        .collect()
}

/// The job a server was made for, from its name `{controller}-{pool}-{job id}-{attempt}[-n]`.
fn job_of(server: &str) -> Option<u64> {
    server
        .strip_prefix(CONTROLLER)?
        .strip_prefix("-linux-")?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// Each GitLab job succeeded, each on a runner record of its own (a GitLab runner took it:
/// the simulator forgets a record's description once it is deleted, not its id), and each had
/// exactly one server named for it. Returns the job ids.
fn assert_one_server_per_gitlab_job(jobs: &[Value], billed: &[String]) -> HashSet<u64> {
    let mut runners = HashSet::new();
    let mut ids = HashSet::new();
    for j in jobs {
        assert_eq!(j["status"], "success", "job not served: {j}");
        let runner = j["runner_id"]
            .as_u64()
            .unwrap_or_else(|| panic!("no runner: {j}"));
        assert!(runners.insert(runner), "runner {runner} ran two jobs: {j}");
        ids.insert(j["id"].as_u64().expect("id"));
    }
    for id in &ids {
        let servers: Vec<&String> = billed.iter().filter(|s| job_of(s) == Some(*id)).collect();
        assert_eq!(servers.len(), 1, "job {id}: servers {servers:?}");
    }
    ids
}

/// Jobs arriving over about 15 s, by Job Hook: each served by a server of its own whose runner
/// record was made for it, and once the last is done no server and no runner record is left.
#[test]
fn gitlab_steady_trace_one_server_per_job_none_left() {
    let mut w = World::new("steady", Setup::default());
    let mut n = 0;
    for i in 0..6 {
        n += pipelines(&w.sim, 1, &["linux"], 2.0 + f64::from(i % 3)).len();
        std::thread::sleep(Duration::from_millis(2500));
    }
    w.settle(n, 0, Duration::from_secs(90));
    w.assert_served_once(n);
    w.report(n);
}

/// A burst of 40 pending jobs at once, webhooks 30 % lost: polling finds the rest, every job is
/// served once, and nothing is left.
#[test]
fn gitlab_burst_with_lost_webhooks_serves_every_job_once() {
    let mut w = World::new(
        "burst_lossy",
        Setup {
            faults: json!({ "gitlab": { "webhooks": { "drop": 0.3, "seed": 7 } } }),
            ..Setup::default()
        },
    );
    let n = pipelines(&w.sim, 40, &["linux"], 2.0).len();
    w.settle(n, 0, Duration::from_secs(120));
    w.assert_served_once(n);
    w.report(n);
}

/// 200 pending jobs at once, runners confirming each job 3 s after they took it (GitLab's
/// two-phase commit keeps a taken job `pending` meanwhile): every job served once, one server
/// each, nothing left: the window never makes a second machine.
#[test]
fn gitlab_burst_of_200_with_slow_job_confirmations() {
    let mut w = World::new(
        "burst_200",
        Setup {
            faults: json!({ "gitlab": { "ack_delay_secs": 3.0 } }),
            ..Setup::default()
        },
    );
    let n = pipelines(&w.sim, 200, &["linux"], 3.0).len();
    w.settle(n, 0, Duration::from_secs(180));
    w.assert_served_once(n);
    w.report(n);
}

/// kill -9 of mayfly at three seeded moments of a burst, started again on the same state each
/// time: every job is served, no job gets two servers, nothing is left.
#[test]
fn gitlab_kill_9_during_a_burst_loses_nothing_and_doubles_nothing() {
    let mut w = World::new("kill9", Setup::default());
    let n = pipelines(&w.sim, 40, &["linux"], 4.0).len();
    // SplitMix64 from a fixed seed: the same three moments every run.
    let mut seed: u64 = 0x6d61_7966_6c79;
    for _ in 0..3 {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let wait = Duration::from_millis(300 + (z ^ (z >> 31)) % 2500);
        std::thread::sleep(wait);
        w.restart_after_kill9();
    }
    w.settle(n, 0, Duration::from_secs(150));
    w.assert_served_once(n);
    w.report(n);
}

/// One `mayfly run` serving a GitHub repository and a GitLab project from one pool: each job
/// runs on a server whose runner registered with its own forge, one server per job.
#[test]
fn github_and_gitlab_jobs_in_one_run_each_on_its_own_forges_runner() {
    let mut w = World::new(
        "both",
        Setup {
            github: true,
            ..Setup::default()
        },
    );
    let gl = pipelines(&w.sim, 5, &["linux"], 2.0).len();
    let gh = w
        .sim
        .enqueue("acme/hub", &["self-hosted", "linux"], 2.0, 5, 1)
        .len();
    w.settle(gl, gh, Duration::from_secs(120));
    let billed = w.billed();
    assert_one_server_per_gitlab_job(&w.gitlab_jobs(), &billed);
    let mut github_runners = HashSet::new();
    let github_jobs: HashSet<u64> = w
        .sim
        .jobs()
        .iter()
        .filter_map(|j| j["id"].as_u64())
        .collect();
    for j in w.sim.jobs() {
        assert_eq!(j["conclusion"], "success", "GitHub job not served: {j}");
        let runner = j["runner_name"].as_str().expect("runner").to_string();
        assert!(billed.contains(&runner), "{j} ran on {runner}");
        // Its server was made for a GitHub job (the name holds the job's id; GitHub hands a
        // job to any fitting runner of its repository): its runner registered with GitHub, as
        // GitLab's jobs ran on GitLab runner records.
        let made_for = job_of(&runner).expect("a job's server");
        assert!(github_jobs.contains(&made_for), "{j} ran on {runner}");
        assert!(
            github_runners.insert(runner),
            "a runner ran two GitHub jobs"
        );
    }
    assert_eq!(billed.len(), gl + gh, "servers billed: {billed:?}");
    w.report(gl + gh);
}
