//! A stand-in for the GitHub Actions runner's listener (`bin/Runner.Listener run`), for hosts
//! where the real runner cannot be downloaded: `mayfly sim runner` runs it, from a `run.sh`
//! shaped like the runner's own (see [`run_sh`]), so mayfly starts it exactly as the real one.
//!
//! It does what the listener does with `--jitconfig`: decodes the config into `.runner`,
//! `.credentials` and `.credentials_rsaparams` in the runner root (the working directory), opens
//! a session with the Actions service named in `.runner` (the fake GitHub's `/_sim/actions`),
//! takes one job its labels match, runs the job hooks, "runs" the job for its duration in the
//! fake's simulated time under `_work/`, reports it done, deletes its configuration and exits 0.
//! Exit codes and console lines are the listener's; logs go to `_diag/`.

pub mod diag;
mod files;
mod service;

pub use files::CONFIG_FILES;

use diag::{Diag, console};
use service::{Failure, Job, Service};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;

/// The listener's return codes (`Constants.Runner.ReturnCode` in actions/runner).
pub mod exit {
    pub const SUCCESS: i32 = 0;
    /// A failure no retry fixes (bad or missing configuration, a deleted registration).
    pub const TERMINATED_ERROR: i32 = 1;
    /// Try again: `run.sh` starts the listener again after 5 s.
    pub const RETRYABLE_ERROR: i32 = 2;
    /// Another listener holds this runner's session.
    pub const SESSION_CONFLICT: i32 = 5;
}

/// The version the stand-in reports, the release mayfly pins
/// (`mayfly_provider::bootstrap::RUNNER_VERSION`; the simulator depends on no mayfly crate).
pub const VERSION: &str = "2.338.0";

/// The environment variables of the job hooks (`ACTIONS_RUNNER_HOOK_JOB_STARTED`, `…_COMPLETED`).
pub const HOOK_STARTED: &str = "ACTIONS_RUNNER_HOOK_JOB_STARTED";
pub const HOOK_COMPLETED: &str = "ACTIONS_RUNNER_HOOK_JOB_COMPLETED";

/// How long one message poll waits for a job.
const POLL: Duration = Duration::from_secs(5);
/// The listener gives up reaching the service after this long and exits retryable, so `run.sh`
/// starts it again.
const GIVE_UP: Duration = Duration::from_secs(600);
/// A hook running longer than this fails the job.
const HOOK_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

/// The command line after `run`, as the listener reads it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Args {
    jitconfig: Option<String>,
    once: bool,
}

/// Flags and arguments `run` knows; anything else is refused as the listener refuses it.
fn parse(args: &[String]) -> Result<Args, String> {
    let mut out = Args::default();
    let mut unknown = Vec::new();
    let mut words = args.iter().peekable();
    if words.peek().is_some_and(|w| w.eq_ignore_ascii_case("run")) {
        words.next();
    }
    while let Some(w) = words.next() {
        let Some(name) = w.strip_prefix("--") else {
            unknown.push(w.clone());
            continue;
        };
        match name.to_ascii_lowercase().as_str() {
            "jitconfig" => out.jitconfig = words.next().cloned(),
            "startuptype" => {
                words.next();
            }
            "once" | "ephemeral" => out.once = true,
            _ => unknown.push(name.to_string()),
        }
    }
    if out.jitconfig.is_none() {
        // As the listener: every argument may come from an ACTIONS_RUNNER_INPUT_<NAME> variable.
        out.jitconfig = std::env::var("ACTIONS_RUNNER_INPUT_JITCONFIG")
            .ok()
            .filter(|v| !v.trim().is_empty());
    }
    if unknown.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "Unrecognized command-line input arguments for command run: '{}'. For usage refer \
             to: .\\config.cmd --help or ./config.sh --help",
            unknown.join(", ")
        ))
    }
}

/// Runs the listener in `root` with `args` (what follows `Runner.Listener`); its exit code.
pub async fn run(root: &Path, args: &[String]) -> i32 {
    let args = match parse(args) {
        Ok(a) => a,
        Err(message) => {
            eprintln!("{message}");
            return exit::TERMINATED_ERROR;
        }
    };
    let mut log = Diag::open(root, "Runner");
    log.info(
        "Runner",
        &format!("Runner.Listener version {VERSION} starting"),
    );
    if let Some(config) = &args.jitconfig {
        if let Err(e) = files::write_jit(root, config) {
            log.error("Runner", &e.to_string());
            eprintln!("An error occurred: {e}");
            return exit::TERMINATED_ERROR;
        }
        log.info("Runner", "JIT configuration saved to the runner root");
    }
    let settings = match files::load(root) {
        Ok(s) => s,
        Err(e) => {
            log.error("Runner", &e.to_string());
            eprintln!("An error occurred: {e}");
            return exit::TERMINATED_ERROR;
        }
    };
    let (stop_tx, stop) = watch::channel(false);
    let signals = tokio::spawn(async move {
        if wait_for_signal().await {
            let _ = stop_tx.send(true);
        }
    });
    let ephemeral = settings.runner.ephemeral || args.once;
    let code = Listener {
        root: root.to_path_buf(),
        settings,
        log,
        stop,
        ephemeral,
    }
    .run()
    .await;
    signals.abort();
    code
}

/// SIGTERM or SIGINT; `false` if neither can be listened for.
async fn wait_for_signal() -> bool {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return false;
    };
    tokio::select! {
        _ = term.recv() => true,
        _ = int.recv() => true,
    }
}

struct Listener {
    root: PathBuf,
    settings: files::Settings,
    log: Diag,
    stop: watch::Receiver<bool>,
    ephemeral: bool,
}

/// A sleep cut short by a stop signal; `false` when stopped.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        _ = stop.changed() => false,
    }
}

impl Listener {
    async fn run(mut self) -> i32 {
        let service = match Service::new(&self.settings.runner.server_url) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("An error occurred: {e}");
                return exit::TERMINATED_ERROR;
            }
        };
        let (mut session, speed) = match self.open(&service).await {
            Ok(s) => s,
            Err(code) => return code,
        };
        println!("\n√ Connected to GitHub\n");
        println!("Current runner version: '{VERSION}'");
        console("Listening for Jobs");
        let r = &self.settings.runner;
        let line = format!(
            "Runner {} ({}) connected; listening for jobs",
            r.agent_name, r.git_hub_url
        );
        self.log.info("MessageListener", &line);
        let mut backoff = Duration::from_secs(1);
        loop {
            if *self.stop.borrow() {
                service.close(&session).await;
                console("Runner stopped: no job was running");
                return exit::SUCCESS;
            }
            let polled = tokio::select! {
                m = service.message(&session, POLL) => m,
                _ = self.stop.changed() => continue,
            };
            match polled {
                Ok(None) => backoff = Duration::from_secs(1),
                Ok(Some(job)) => {
                    let done = self.job(&service, &session, &job, speed).await;
                    if self.ephemeral || !done {
                        service.close(&session).await;
                        files::delete_local_config(&self.root);
                        self.log
                            .info("Runner", "Ephemeral runner: configuration deleted, exiting");
                        return exit::SUCCESS;
                    }
                }
                Err(Failure::SessionGone) => {
                    session = match self.open(&service).await {
                        Ok((s, _)) => s,
                        Err(code) => return code,
                    };
                }
                Err(Failure::Deleted) => return self.deleted(),
                Err(Failure::Unreachable(e) | Failure::Refused(_, e)) => {
                    self.log
                        .error("MessageListener", &format!("GetMessage failed: {e}"));
                    if !pause(&mut self.stop, backoff).await {
                        continue;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(Failure::Unauthorized | Failure::Conflict) => {
                    eprintln!("An error occurred: the runner's session was refused");
                    return exit::TERMINATED_ERROR;
                }
            }
        }
    }

    fn deleted(&mut self) -> i32 {
        let m = "The runner registration has been deleted from the server, please re-configure.";
        self.log.error("Runner", m);
        eprintln!("An error occurred: {m}");
        exit::TERMINATED_ERROR
    }

    /// A session with the Actions service, retried while it cannot be reached (up to
    /// [`GIVE_UP`]); `Err` with the exit code when the service refuses.
    async fn open(&mut self, service: &Service) -> Result<(String, f64), i32> {
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_secs(1);
        let agent = self.settings.runner.agent_id;
        loop {
            match service.open(agent, &self.settings.client_id).await {
                Ok(o) => {
                    let speed = if o.speed.is_finite() && o.speed > 0.0 {
                        o.speed
                    } else {
                        1.0
                    };
                    return Ok((o.session_id, speed));
                }
                Err(Failure::Deleted) => return Err(self.deleted()),
                Err(Failure::Unauthorized) => {
                    let m = "Failed to create a session: the runner's credentials were refused.";
                    self.log.error("Runner", m);
                    eprintln!("An error occurred: {m}");
                    return Err(exit::TERMINATED_ERROR);
                }
                Err(Failure::Conflict) => {
                    let m = "A session for this runner already exists.";
                    self.log.error("Runner", m);
                    eprintln!("{m}");
                    return Err(exit::SESSION_CONFLICT);
                }
                Err(other) => {
                    unreachable_line(&mut self.log, &other.to_string());
                    if started.elapsed() > GIVE_UP {
                        return Err(exit::RETRYABLE_ERROR);
                    }
                    if !pause(&mut self.stop, backoff).await {
                        return Err(exit::SUCCESS);
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Runs one job; `false` when it was cut short (a stop signal, or the job was taken away).
    async fn job(&mut self, service: &Service, session: &str, job: &Job, speed: f64) -> bool {
        console(&format!("Running job: {}", job.job_name));
        let mut worker = Diag::open(&self.root, "Worker");
        worker.info(
            "Worker",
            &format!(
                "Job {} (id {}) of run {} in {}",
                job.job_name, job.job_id, job.run_id, job.repository
            ),
        );
        let workspace = self.workspace(job);
        let env = self.hook_env(job, &workspace);
        let mut conclusion = "success";
        let mut whole = true;
        if let Some(hook) = std::env::var_os(HOOK_STARTED) {
            worker.info("Worker", "Set up runner: running the job-started hook");
            if let Err(e) = run_hook(Path::new(&hook), &env, &workspace).await {
                worker.error("Worker", &format!("job-started hook failed: {e}"));
                conclusion = "failure";
            }
        }
        if conclusion == "success" {
            let length = Duration::from_secs_f64(job.duration_secs.max(0.0) / speed);
            match self.work(service, session, job, length, speed).await {
                Work::Done => {}
                Work::Stopped => {
                    conclusion = "cancelled";
                    whole = false;
                }
                Work::Lost => {
                    worker.error("Worker", "the job was taken away from this runner");
                    return false;
                }
            }
        }
        if let Some(hook) = std::env::var_os(HOOK_COMPLETED) {
            worker.info("Worker", "Complete runner: running the job-completed hook");
            if let Err(e) = run_hook(Path::new(&hook), &env, &workspace).await {
                worker.error("Worker", &format!("job-completed hook failed: {e}"));
            }
        }
        let mut tries = 0;
        loop {
            match service.complete(session, job.job_id, conclusion).await {
                Ok(()) => break,
                Err(Failure::Unreachable(e)) if tries < 5 => {
                    worker.error("Worker", &format!("cannot report the result yet: {e}"));
                    tries += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    worker.error("Worker", &format!("cannot report the result: {e}"));
                    break;
                }
            }
        }
        let shown = match conclusion {
            "success" => "Succeeded",
            "cancelled" => "Canceled",
            _ => "Failed",
        };
        worker.info("Worker", &format!("Job result: {shown}"));
        console(&format!(
            "Job {} completed with result: {shown}",
            job.job_name
        ));
        whole
    }

    /// `_work/<repo>/<repo>` with a trace of the job in it, and `_work/_temp`.
    fn workspace(&self, job: &Job) -> PathBuf {
        let work = self.root.join(&self.settings.runner.work_folder);
        let repo = job
            .repository
            .rsplit('/')
            .next()
            .filter(|r| !r.is_empty() && !r.contains(".."))
            .unwrap_or("repo");
        let dir = work.join(repo).join(repo);
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::create_dir_all(work.join("_temp"));
        let _ = std::fs::write(
            dir.join(format!("job-{}.txt", job.job_id)),
            format!("{} {}\n", job.repository, job.job_name),
        );
        dir
    }

    /// What a job's steps (and hooks) see of the job.
    fn hook_env(&self, job: &Job, workspace: &Path) -> Vec<(String, String)> {
        let workspace = workspace.display().to_string();
        vec![
            ("CI".into(), "true".into()),
            ("GITHUB_ACTIONS".into(), "true".into()),
            ("GITHUB_REPOSITORY".into(), job.repository.clone()),
            ("GITHUB_RUN_ID".into(), job.run_id.to_string()),
            ("GITHUB_JOB".into(), job.job_name.clone()),
            ("GITHUB_WORKSPACE".into(), workspace.clone()),
            (
                "RUNNER_NAME".into(),
                self.settings.runner.agent_name.clone(),
            ),
            ("RUNNER_WORKSPACE".into(), workspace),
        ]
    }

    /// The job's duration in real time, renewing the job lock as the worker does.
    async fn work(
        &mut self,
        service: &Service,
        session: &str,
        job: &Job,
        length: Duration,
        speed: f64,
    ) -> Work {
        let renew_every = crate::github::actions::SESSION_TIMEOUT
            .div_f64(4.0 * speed)
            .max(Duration::from_millis(20));
        let end = tokio::time::Instant::now() + length;
        loop {
            let now = tokio::time::Instant::now();
            if now >= end {
                return Work::Done;
            }
            if !pause(&mut self.stop, (end - now).min(renew_every)).await {
                return Work::Stopped;
            }
            match service.renew(session, job.job_id).await {
                Ok(()) | Err(Failure::Unreachable(_)) => {}
                Err(_) => return Work::Lost,
            }
        }
    }
}

enum Work {
    Done,
    Stopped,
    Lost,
}

fn unreachable_line(log: &mut Diag, e: &str) {
    log.error("Runner", &format!("Cannot reach the Actions service: {e}"));
    console(&format!(
        "Failed to connect: {e}; retrying until reconnected."
    ));
}

/// `bash -e <hook>` for a `.sh` hook, with the job's variables, as the runner runs them.
async fn run_hook(hook: &Path, env: &[(String, String)], cwd: &Path) -> Result<(), String> {
    if hook.extension().and_then(|e| e.to_str()) != Some("sh") || !hook.is_absolute() {
        return Err(format!(
            "{} is not an absolute path to a .sh script",
            hook.display()
        ));
    }
    let mut child = tokio::process::Command::new("bash")
        .arg("-e")
        .arg(hook)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run bash: {e}"))?;
    match tokio::time::timeout(HOOK_TIMEOUT, child.wait()).await {
        Ok(Ok(s)) if s.success() => Ok(()),
        Ok(Ok(s)) => Err(format!("{} exited with {s}", hook.display())),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "{} ran longer than {HOOK_TIMEOUT:?}",
            hook.display()
        )),
    }
}

/// A `run.sh` for a runner directory whose listener is this stand-in, run by `mayfly` (the
/// binary at `mayfly`): it behaves as actions/runner's `run.sh` with its `run-helper.sh` — moves
/// to its own directory, refuses root without `RUNNER_ALLOW_RUNASROOT`, starts the listener
/// with `run` and the arguments, prints the helper's line for the exit code, starts it again
/// after 5 s on a retryable error, and otherwise exits 0.
pub fn run_sh(mayfly: &Path) -> String {
    let quoted = format!("'{}'", mayfly.display().to_string().replace('\'', r"'\''"));
    format!(
        r#"#!/bin/bash
# A stand-in for the GitHub Actions runner's run.sh: the listener is mayfly's emulator
# (`mayfly sim runner`), which speaks to the simulator's fake GitHub. Written by mayfly.
cd "$(dirname "${{BASH_SOURCE[0]}}")" || exit 1
if [ "$(id -u)" -eq 0 ] && [ -z "$RUNNER_ALLOW_RUNASROOT" ]; then
    echo "Must not run interactively with sudo"
    echo "Exiting runner..."
    exit 0
fi
while :; do
    {quoted} sim runner run "$@"
    returnCode=$?
    case $returnCode in
    0) echo "Runner listener exit with 0 return code, stop the service, no retry needed." ;;
    1) echo "Runner listener exit with terminated error, stop the service, no retry needed." ;;
    2)
        echo "Runner listener exit with retryable error, re-launch runner in 5 seconds."
        sleep 5
        echo "Restarting runner..."
        continue
        ;;
    5) echo "Runner listener exit with Session Conflict error, stop the service, no retry needed." ;;
    *) echo "Exiting with unknown error code: ${{returnCode}}" ;;
    esac
    echo "Exiting runner..."
    exit 0
done
"#
    )
}

/// Writes a runner directory whose `run.sh` is [`run_sh`]: what `mayfly sim install-runner`
/// and the tests point `runner_dir` at.
pub fn install(dir: &Path, mayfly: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("run.sh");
    std::fs::write(&path, run_sh(mayfly))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn the_command_line_is_read_as_the_listener_reads_it() {
        let a = parse(&words(&[
            "run",
            "--jitconfig",
            "abc",
            "--startuptype",
            "service",
        ]))
        .unwrap();
        assert_eq!(a.jitconfig.as_deref(), Some("abc"));
        assert!(!a.once);
        assert!(parse(&words(&["--once"])).unwrap().once);
        let e = parse(&words(&["--jitconfig", "x", "--url", "u"])).unwrap_err();
        assert!(e.contains("Unrecognized command-line input arguments for command run: 'url"));
    }

    #[test]
    fn the_run_sh_quotes_the_binary_and_keeps_the_helper_lines() {
        let s = run_sh(Path::new("/opt/it's/mayfly"));
        assert!(s.contains(r"'/opt/it'\''s/mayfly' sim runner run"));
        assert!(s.contains("Runner listener exit with terminated error"));
        assert!(s.starts_with("#!/bin/bash\n"));
    }
}
