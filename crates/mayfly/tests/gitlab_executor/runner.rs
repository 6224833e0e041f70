//! gitlab-runner's part, as its custom executor documentation specifies it: takes a job from
//! GitLab (`POST /jobs/request`), runs `config_exec`, `prepare_exec` (three tries on a system
//! failure, 3 s apart), `run_exec <script> <stage>` for each sub-stage in order, and always
//! `cleanup_exec`; each with the job's variables as `CUSTOM_ENV_*`, `BUILD_FAILURE_EXIT_CODE`,
//! `SYSTEM_FAILURE_EXIT_CODE`, `BUILD_EXIT_CODE_FILE`, `JOB_RESPONSE_FILE` and `TMPDIR`; each
//! in its own process group, ended on timeout or cancel with SIGTERM, then SIGKILL after the
//! graceful kill timeout; and reports the job's end with `PUT /jobs/:id`.

use super::http;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BUILD_FAILURE: i32 = 1;
const SYSTEM_FAILURE: i32 = 2;

/// The stages after `step_script`, on success and on failure.
const ON_SUCCESS: [&str; 4] = [
    "after_script",
    "archive_cache",
    "upload_artifacts_on_success",
    "cleanup_file_variables",
];
const ON_FAILURE: [&str; 4] = [
    "after_script",
    "archive_cache_on_failure",
    "upload_artifacts_on_failure",
    "cleanup_file_variables",
];
const BEFORE: [&str; 5] = [
    "prepare_script",
    "get_sources",
    "restore_cache",
    "download_artifacts",
    "step_script",
];

/// One `[[runners]]` entry with `executor = "custom"`.
pub struct Runner {
    /// `host:port` of GitLab.
    pub gitlab: String,
    pub token: String,
    pub tags: Vec<String>,
    /// The environment every executable gets besides the job's (PATH, HOME, MAYFLY_SSH, …).
    pub env: Vec<(String, String)>,
    pub work: PathBuf,
    pub exec_timeout: Duration,
    pub cleanup_timeout: Duration,
    pub graceful_kill: Duration,
    /// Stage scripts instead of the generated ones (the job's `.gitlab-ci.yml`).
    pub scripts: BTreeMap<String, String>,
    /// Laid over `env` for cleanup_exec only.
    pub cleanup_env: Vec<(String, String)>,
}

/// What a test does at two moments of a job.
#[derive(Default)]
pub struct Hooks {
    /// After prepare succeeded, before the first stage.
    pub prepared: Option<Box<dyn FnOnce() + Send>>,
    /// In a thread of its own, as the first run_exec starts.
    pub running: Option<Box<dyn FnOnce() + Send>>,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub job: u64,
    /// `success` or `failed`.
    pub state: String,
    pub failure_reason: Option<String>,
    /// Every stage started, in order, with its exit code (None: killed).
    pub stages: Vec<(String, Option<i32>)>,
    pub prepare_attempts: u32,
    pub cleanup_code: Option<i32>,
    /// What the executables printed (the job log).
    pub log: String,
    pub canceled: bool,
    /// From `prepare` started to the first `run_exec` started.
    pub prepare_to_first_run: Duration,
}

enum Ended {
    Code(i32),
    Killed,
}

impl Runner {
    /// `POST /jobs/request` until a job comes (at most `wait`).
    pub fn request_job(&self, wait: Duration) -> Value {
        let until = Instant::now() + wait;
        loop {
            let a = http::call(
                &self.gitlab,
                "POST",
                "/api/v4/jobs/request",
                Some(
                    &json!({"token": self.token, "system_id": "s_harness0001",
                            "info": {"name": "gitlab-runner", "version": "19.4.0",
                                     "executor": "custom", "shell": "bash",
                                     "features": {"cancelable": true}}})
                    .to_string(),
                ),
                "",
            );
            match a.status {
                201 => return serde_json::from_str(&a.body).unwrap(),
                204 => {}
                s => panic!("jobs/request: {s} {}", a.body),
            }
            assert!(Instant::now() < until, "no job within {wait:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The job's variables as gitlab-runner hands them to the executables.
    fn job_env(&self, job: &Value, dir: &Path) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        for v in job["variables"].as_array().into_iter().flatten() {
            env.push((
                format!("CUSTOM_ENV_{}", v["key"].as_str().unwrap()),
                v["value"].as_str().unwrap_or_default().to_string(),
            ));
        }
        let timeout = job["runner_info"]["timeout"].as_u64().unwrap_or(3600);
        env.extend([
            (
                "CUSTOM_ENV_CI_RUNNER_TAGS".into(),
                serde_json::to_string(&self.tags).unwrap(),
            ),
            ("CUSTOM_ENV_CI_JOB_TIMEOUT".into(), timeout.to_string()),
            ("BUILD_FAILURE_EXIT_CODE".into(), BUILD_FAILURE.to_string()),
            (
                "SYSTEM_FAILURE_EXIT_CODE".into(),
                SYSTEM_FAILURE.to_string(),
            ),
            (
                "JOB_RESPONSE_FILE".into(),
                dir.join("job.json").display().to_string(),
            ),
            (
                "BUILD_EXIT_CODE_FILE".into(),
                dir.join("exit_code").display().to_string(),
            ),
            ("TMPDIR".into(), dir.display().to_string()),
        ]);
        env
    }

    /// Runs the whole job through the driver and reports its end. `during_run` is called once
    /// the first `run_exec` has started (a test's moment to cancel, drop, …).
    pub fn run_job(&self, job: &Value, hooks: Hooks) -> Outcome {
        let Hooks {
            prepared: on_prepared,
            running: during_run,
        } = hooks;
        let id = job["id"].as_u64().unwrap();
        let token = job["token"].as_str().unwrap().to_string();
        let dir = self.work.join(format!("job-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("job.json"), job.to_string()).unwrap();
        let env = self.job_env(job, &dir);
        let log = Arc::new(Mutex::new(String::new()));
        let cancel = Arc::new(AtomicBool::new(false));
        let mut out = Outcome {
            job: id,
            ..Outcome::default()
        };
        // Keep-alive: gitlab-runner learns of a cancel from the Job-Status of its updates.
        let alive = Arc::new(AtomicBool::new(true));
        let keeper = {
            let (gitlab, token, cancel, alive) = (
                self.gitlab.clone(),
                token.clone(),
                cancel.clone(),
                alive.clone(),
            );
            std::thread::spawn(move || {
                while alive.load(Ordering::SeqCst) {
                    let a = http::call(
                        &gitlab,
                        "PUT",
                        &format!("/api/v4/jobs/{id}"),
                        Some(&json!({"token": token, "state": "running"}).to_string()),
                        "",
                    );
                    if matches!(a.header("job-status"), Some("canceling" | "canceled")) {
                        cancel.store(true, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        };
        let config = self.exec(&env, &["config"], self.exec_timeout, &log, None);
        let config_json: Value = match config {
            Ended::Code(0) => serde_json::from_str(
                log.lock()
                    .unwrap()
                    .lines()
                    .find(|l| l.starts_with('{'))
                    .unwrap_or("{}"),
            )
            .unwrap(),
            _ => panic!("config_exec failed:\n{}", log.lock().unwrap()),
        };
        assert!(config_json["builds_dir"].is_string(), "{config_json}");
        let prepare_started = Instant::now();
        let mut prepared = false;
        for attempt in 1..=3 {
            out.prepare_attempts = attempt;
            match self.exec(&env, &["prepare"], self.exec_timeout, &log, Some(&cancel)) {
                Ended::Code(0) => {
                    prepared = true;
                    break;
                }
                Ended::Code(SYSTEM_FAILURE) if attempt < 3 => {
                    std::thread::sleep(Duration::from_secs(3))
                }
                _ => break,
            }
        }
        let mut result: Result<(), &str> = if prepared {
            Ok(())
        } else {
            Err("runner_system_failure")
        };
        let mut hook = during_run;
        if prepared {
            if let Some(h) = on_prepared {
                h();
            }
            out.prepare_to_first_run = prepare_started.elapsed();
            let mut stages: Vec<&str> = BEFORE.to_vec();
            let mut i = 0;
            while i < stages.len() {
                let stage = stages[i];
                i += 1;
                let script = dir.join(format!("script-{stage}"));
                std::fs::write(&script, self.script(stage, job, &config_json)).unwrap();
                let args = ["run", script.to_str().unwrap(), stage];
                if let Some(h) = hook.take() {
                    // The test acts while the first run_exec runs.
                    std::thread::spawn(h);
                }
                let ended = self.exec(&env, &args, self.exec_timeout, &log, Some(&cancel));
                out.stages.push((
                    stage.to_string(),
                    match ended {
                        Ended::Code(c) => Some(c),
                        Ended::Killed => None,
                    },
                ));
                if cancel.load(Ordering::SeqCst) {
                    out.canceled = true;
                    result = Err("canceled");
                    break;
                }
                match ended {
                    Ended::Code(0) => {
                        if stage == "step_script" {
                            stages.extend(ON_SUCCESS);
                        }
                    }
                    Ended::Code(BUILD_FAILURE) if result.is_ok() => {
                        result = Err("script_failure");
                        let rest: Vec<&str> = if BEFORE.contains(&stage) {
                            ON_FAILURE.to_vec()
                        } else {
                            Vec::new()
                        };
                        stages.truncate(i);
                        stages.extend(rest.into_iter().filter(|s| !stages_contains(&out, s)));
                    }
                    Ended::Code(BUILD_FAILURE) => {}
                    Ended::Code(SYSTEM_FAILURE) => {
                        result = Err("runner_system_failure");
                        break;
                    }
                    _ => {
                        result = Err("unknown_failure");
                        break;
                    }
                }
            }
        }
        let mut cleanup_env = env.clone();
        cleanup_env.extend(self.cleanup_env.iter().cloned());
        out.cleanup_code =
            match self.exec(&cleanup_env, &["cleanup"], self.cleanup_timeout, &log, None) {
                Ended::Code(c) => Some(c),
                Ended::Killed => None,
            };
        alive.store(false, Ordering::SeqCst);
        keeper.join().unwrap();
        let (state, reason) = match result {
            Ok(()) => ("success", None),
            Err(r) => ("failed", Some(r)),
        };
        let mut body = json!({"token": token, "state": state});
        if let Some(r) = reason.filter(|r| *r != "canceled") {
            body["failure_reason"] = json!(r);
        }
        let _ = http::call(
            &self.gitlab,
            "PUT",
            &format!("/api/v4/jobs/{id}"),
            Some(&body.to_string()),
            "",
        );
        out.state = state.to_string();
        out.failure_reason = reason.map(str::to_string);
        out.log = log.lock().unwrap().clone();
        // gitlab-runner removes the job response file after cleanup.
        let _ = std::fs::remove_file(dir.join("job.json"));
        out
    }

    /// The script gitlab-runner would write for `stage` (bash), or the test's.
    fn script(&self, stage: &str, job: &Value, config: &Value) -> String {
        if let Some(s) = self.scripts.get(stage) {
            return format!("#!/usr/bin/env bash\nset -eo pipefail\n{s}\n");
        }
        let builds = config["builds_dir"].as_str().unwrap();
        let body = match stage {
            "get_sources" => format!(
                "mkdir -p \"{builds}/project\" && echo fetched > \"{builds}/project/.fetched\""
            ),
            "step_script" => job["steps"][0]["script"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| l.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            other => format!("echo \"{other} done\""),
        };
        format!("#!/usr/bin/env bash\nset -eo pipefail\n{body}\n")
    }

    /// One executable, in its own process group, within `timeout`; a cancel ends it the same
    /// way a timeout does: SIGTERM to the group, SIGKILL after the graceful kill timeout.
    fn exec(
        &self,
        env: &[(String, String)],
        args: &[&str],
        timeout: Duration,
        log: &Arc<Mutex<String>>,
        cancel: Option<&Arc<AtomicBool>>,
    ) -> Ended {
        use std::os::unix::process::CommandExt;
        let mut child: Child = Command::new(super::support::BIN)
            .arg("gitlab-executor")
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("run mayfly gitlab-executor");
        let readers: Vec<_> = [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ]
        .into_iter()
        .map(|mut pipe| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    log.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            })
        })
        .collect();
        let pid = child.id() as i32;
        let until = Instant::now() + timeout;
        let mut termed: Option<Instant> = None;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            let stop = Instant::now() > until || cancel.is_some_and(|c| c.load(Ordering::SeqCst));
            match termed {
                None if stop => {
                    signal_group(pid, rustix::process::Signal::TERM);
                    termed = Some(Instant::now());
                }
                Some(t) if t.elapsed() > self.graceful_kill => {
                    signal_group(pid, rustix::process::Signal::KILL);
                    let _ = child.wait();
                    break None;
                }
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in readers {
            let _ = r.join();
        }
        match status.and_then(|s| s.code()) {
            Some(c) => Ended::Code(c),
            None => Ended::Killed,
        }
    }
}

fn stages_contains(out: &Outcome, s: &str) -> bool {
    out.stages.iter().any(|(n, _)| n == s)
}

fn signal_group(pid: i32, sig: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process_group(p, sig);
    }
}
