//! End to end on this host: `mayfly run` as a process with a `local` pool against `mayfly sim
//! serve`, its runners real processes — a `run.sh` whose listener is `mayfly sim runner`, which
//! redeems its JIT config at the fake GitHub and runs the job it is given. A steady trace and a
//! burst are served one process per job with nothing left; `kill -9` of mayfly mid-burst and a
//! restart serve every job once, leaving no process and no directory.
//!
//! A watcher notes every instance root that ever appears in the work directory, so "one runner
//! per job" is counted from the host, not from mayfly's own view.

mod support;

use mayfly_provider::local::process;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::Daemon;
use support::sim::{GITHUB_TOKEN, SimServe, fast_faults};

const CONTROLLER: &str = "lo";
const X64: &[&str] = &["self-hosted", "linux", "x64"];

struct World {
    name: &'static str,
    sim: SimServe,
    dir: tempfile::TempDir,
    config: PathBuf,
    daemon: Option<Daemon>,
    earlier: Vec<String>,
    seen: Arc<Mutex<BTreeSet<String>>>,
    watching: Arc<AtomicBool>,
}

impl World {
    fn new(name: &'static str, slots: u32) -> World {
        let sim = SimServe::start(&[]);
        sim.faults(fast_faults());
        let dir = tempfile::tempdir().expect("temp dir");
        let runner = dir.path().join("runner");
        mayfly_sim::program::install(&runner, Path::new(support::BIN)).expect("the runner");
        let work = dir.path().join("work");
        let config = dir.path().join("mayfly.toml");
        let text = format!(
            r#"controller = "{CONTROLLER}"
state_dir = "state"
workers = 8

[github]
token = "{GITHUB_TOKEN}"
api_url = "{github}"
repositories = ["acme/app"]
poll = true

[github.limits]
write_interval = "1ms"

[providers.here]
kind = "local"
slots = {slots}
runner_dir = "{runner}"
work_dir = "{work}"
stop_timeout = "2s"

[deadlines]
registration = "20s"
idle = "20s"
powered_off = "1s"

[intervals]
reconcile = "1s"
settle = "2s"
poll = "1s"
poll_backstop = "3s"

[[pools]]
name = "host"
provider = "here"
labels = ["self-hosted", "linux", "x64"]
"#,
            github = sim.github,
            runner = runner.display(),
            work = work.display(),
        );
        std::fs::write(&config, text).expect("write the config");
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let watching = Arc::new(AtomicBool::new(true));
        {
            let (seen, watching, work) = (seen.clone(), watching.clone(), work.clone());
            std::thread::spawn(move || {
                while watching.load(Ordering::Relaxed) {
                    for n in entries(&work) {
                        seen.lock().unwrap_or_else(|e| e.into_inner()).insert(n);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
        }
        let mut w = World {
            name,
            sim,
            dir,
            config,
            daemon: None,
            earlier: Vec::new(),
            seen,
            watching,
        };
        w.start_daemon();
        w
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn start_daemon(&mut self) {
        let mut d = Daemon::start(self.dir.path(), &self.config, &[("PATH", &support::path())]);
        assert!(
            d.listen_addr().is_some(),
            "{}: mayfly run did not start:\n{}",
            self.name,
            d.log()
        );
        self.daemon = Some(d);
    }

    fn kill9(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill9();
            self.earlier.push(d.log());
        }
    }

    fn log(&mut self) -> String {
        let mut all = self.earlier.clone();
        if let Some(d) = &mut self.daemon {
            d.drain();
            all.push(d.log());
        }
        all.join("\n----- mayfly restarted -----\n")
    }

    fn wait(&mut self, what: &str, limit: Duration, mut done: impl FnMut(&World) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            if let Some(d) = &mut self.daemon {
                d.drain();
            }
            assert!(
                Instant::now() < deadline,
                "{}: timed out waiting for {what}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn completed(&self) -> usize {
        self.sim
            .jobs()
            .iter()
            .filter(|j| j["status"] == "completed")
            .count()
    }

    /// Every job completed, then nothing left on the host: no root, no runner process.
    fn settle(&mut self, n: usize, limit: Duration) {
        self.wait(&format!("{n} jobs completed"), limit, |w| {
            w.completed() == n
        });
        self.wait("no runner root left", Duration::from_secs(30), |w| {
            entries(&w.work()).is_empty()
        });
        let work = self.work().display().to_string();
        let orphans: Vec<_> = process::all_marked()
            .into_iter()
            .filter(|(root, _)| root.starts_with(&work))
            .collect();
        assert!(
            orphans.is_empty(),
            "{}: orphan processes {orphans:?}",
            self.name
        );
    }

    /// The numbers of a run, printed for the report (`--no-capture` shows them).
    fn report(&self, jobs: usize, started: Instant) {
        let stats = self.sim.stats();
        let github = stats["api_calls"]["github"].as_f64().unwrap_or(0.0);
        let w = &stats["jobs"]["wait_secs"];
        println!(
            "{}: {jobs} jobs in {:.1}s; GitHub calls {github} ({:.2}/job); queue wait p50 {}s p95 {}s max {}s",
            self.name,
            started.elapsed().as_secs_f64(),
            github / jobs.max(1) as f64,
            w["p50"],
            w["p95"],
            w["max"],
        );
    }

    /// Each job completed with success on a runner of its own: every instance root ever seen
    /// was made for one job, no job had two, none went without.
    fn assert_one_runner_per_job(&self, n: usize) {
        let jobs: BTreeMap<u64, Value> = self
            .sim
            .jobs()
            .into_iter()
            .map(|j| (j["id"].as_u64().expect("id"), j))
            .collect();
        assert_eq!(jobs.len(), n);
        let failed: Vec<_> = jobs
            .values()
            .filter(|j| j["conclusion"] != "success")
            .collect();
        assert!(
            failed.is_empty(),
            "{}: jobs not served: {failed:#?}",
            self.name
        );
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut per_job: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for name in &seen {
            let job = name
                .strip_prefix(&format!("{CONTROLLER}-host-"))
                .and_then(|r| r.split('-').next())
                .and_then(|id| id.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("a root for no job: {name}"));
            assert!(jobs.contains_key(&job), "root {name} for an unknown job");
            per_job.entry(job).or_default().push(name.clone());
        }
        let twice: Vec<_> = per_job.iter().filter(|(_, v)| v.len() > 1).collect();
        assert!(
            twice.is_empty(),
            "{}: jobs with two runners: {twice:?}",
            self.name
        );
        assert_eq!(per_job.len(), n, "{}: every job had its runner", self.name);
        for j in jobs.values() {
            let runner = j["runner_name"].as_str().unwrap_or("");
            assert!(seen.contains(runner), "job ran on {runner:?}: {j}");
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.watching.store(false, Ordering::Relaxed);
        if std::thread::panicking() {
            let log = self.log();
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join("local_e2e")
                .join(self.name);
            let _ = std::fs::create_dir_all(&out);
            let _ = std::fs::write(out.join("mayfly.log"), &log);
            let _ = std::fs::write(out.join("sim.log"), self.sim.log());
            eprintln!("full logs in {}", out.display());
            let tail: Vec<&str> = log.lines().rev().take(120).collect();
            eprintln!(
                "===== {}: mayfly's log (end) =====\n{}\n===== simulator =====\n{}",
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                self.sim.log()
            );
        }
        // Whatever happened: no runner of this test outlives it.
        if let Some(mut d) = self.daemon.take() {
            d.kill9();
        }
        let work = self.work().display().to_string();
        for (root, procs) in process::all_marked() {
            if root.starts_with(&work) {
                for p in procs {
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", &p.pid.to_string()])
                        .status();
                }
            }
        }
    }
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|e| {
            e.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

fn steady_trace(n: usize, every: u64) -> String {
    let mut csv = String::from("at,repo,labels,duration\n");
    for i in 0..n {
        csv.push_str(&format!(
            "{},acme/app,{},{}\n",
            i as u64 * every,
            X64.join(";"),
            2 + i % 3
        ));
    }
    csv
}

#[test]
fn a_steady_trace_runs_one_process_per_job_and_leaves_nothing() {
    let started = Instant::now();
    let mut w = World::new("local-steady", 3);
    let n = 8;
    w.sim.post("trace", &json!({ "text": steady_trace(n, 2) }));
    w.settle(n, Duration::from_secs(120));
    w.assert_one_runner_per_job(n);
    w.report(n, started);
}

#[test]
fn a_burst_on_four_slots_is_served_and_nothing_is_left() {
    let started = Instant::now();
    let mut w = World::new("local-burst", 4);
    let n = w.sim.enqueue("acme/app", X64, 2.0, 4, 4).len();
    assert_eq!(n, 16);
    // Never more than four runners at once.
    let peak = Arc::new(Mutex::new(0usize));
    w.wait("16 jobs completed", Duration::from_secs(180), |w| {
        let live = entries(&w.work()).len();
        let mut p = peak.lock().unwrap();
        *p = (*p).max(live);
        w.completed() == n
    });
    w.settle(n, Duration::from_secs(30));
    w.assert_one_runner_per_job(n);
    let peak = *peak.lock().unwrap();
    assert!(peak <= 4, "{peak} runner roots at once on 4 slots");
    println!("local-burst: peak {peak} runner roots at once");
    w.report(n, started);
}

#[test]
fn kill_9_mid_burst_and_a_restart_serve_every_job_once_and_leave_nothing() {
    let started = Instant::now();
    let mut w = World::new("local-chaos", 4);
    let n = w.sim.enqueue("acme/app", X64, 3.0, 4, 4).len();
    for at in [2, 9] {
        w.wait(
            &format!("{at} jobs completed"),
            Duration::from_secs(120),
            |w| w.completed() >= at,
        );
        w.kill9();
        println!("local-chaos: kill -9 after {at} completed jobs");
        std::thread::sleep(Duration::from_millis(700));
        w.start_daemon();
    }
    w.settle(n, Duration::from_secs(180));
    w.assert_one_runner_per_job(n);
    w.report(n, started);
}
