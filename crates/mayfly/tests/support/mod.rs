//! `mayfly run` as a child process: a clean environment in a given directory, its log lines read
//! as they come, its listening address, and a SIGTERM stop. Shared by the process-level tests.

#![allow(dead_code)] // each test binary uses a part

pub mod local;
pub mod node;
pub mod replicas;
pub mod sim;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mayfly");

/// How long any single wait on the child may take.
const PATIENCE: Duration = Duration::from_secs(20);

/// `mayfly` in `dir` with a clean environment (`HOME=dir` and `env` only): no stray
/// GITHUB_TOKEN or ~/.ssh from the machine running the tests.
/// Polls `done` every `every` until it holds, at most `limit` (a test named `name` fails
/// saying it timed out waiting for `what`); reads the daemon's log meanwhile, so its pipe never
/// fills.
pub fn wait_until(
    name: &str,
    what: &str,
    limit: Duration,
    every: Duration,
    mut daemon: Option<&mut Daemon>,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done() {
        if let Some(d) = daemon.as_deref_mut() {
            d.drain();
        }
        assert!(
            Instant::now() < deadline,
            "{name}: timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(every);
    }
}

pub fn mayfly(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .current_dir(dir)
        .env("HOME", dir)
        .envs(env.iter().copied());
    cmd
}

/// Runs `cmd` to its end: exit code (-1 for a signal), stdout, stderr.
pub fn output(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run mayfly");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`output`], asserting that none of `secrets` was printed.
pub fn output_without(cmd: &mut Command, secrets: &[&str]) -> (i32, String, String) {
    let (code, stdout, stderr) = output(cmd);
    for secret in secrets {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a secret was printed:\n{stdout}\n{stderr}"
        );
    }
    (code, stdout, stderr)
}

/// The test's own `PATH`, for a `mayfly` that runs tools (ssh, systemctl) found there.
pub fn path() -> String {
    std::env::var("PATH").unwrap_or_default()
}

pub struct Daemon {
    child: Child,
    rx: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Daemon {
    /// Starts `mayfly --log-level debug --listen 127.0.0.1:0 run -c CONFIG` in `dir` with only
    /// `HOME=dir` and `env`: no stray GITHUB_TOKEN from the machine running the tests.
    pub fn start(dir: &Path, config: &Path, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_at("debug", dir, config, env)
    }

    /// [`Daemon::start`] at another log level (`info`, as an operator runs it, for measuring).
    pub fn start_at(level: &str, dir: &Path, config: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = mayfly(dir, env);
        // Port 0: any free port, so a test never collides with a server on 8080.
        cmd.args(["--log-level", level, "--listen", "127.0.0.1:0", "run", "-c"])
            .arg(config);
        Daemon::spawn(cmd)
    }

    /// [`Daemon::start`] under a limit of `files` open files (soft and hard, as `ulimit -n`
    /// sets them), through `/bin/sh`.
    pub fn start_with_file_limit(
        dir: &Path,
        config: &Path,
        env: &[(&str, &str)],
        files: u64,
    ) -> Daemon {
        let mut cmd = Command::new("/bin/sh");
        cmd.env_clear()
            .current_dir(dir)
            .env("HOME", dir)
            .envs(env.iter().copied())
            .arg("-c")
            .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
            .arg(BIN)
            .args([
                "--log-level",
                "debug",
                "--listen",
                "127.0.0.1:0",
                "run",
                "-c",
            ])
            .arg(config);
        Daemon::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Daemon {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mayfly run");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon {
            child,
            rx,
            seen: Vec::new(),
        }
    }

    /// The next log line holding every needle, within 20 s.
    pub fn wait_for(&mut self, needles: &[&str]) -> Option<String> {
        let deadline = Instant::now() + PATIENCE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let line = self.rx.recv_timeout(left).ok()?;
            self.seen.push(line.clone());
            if needles.iter().all(|n| line.contains(n)) {
                return Some(line);
            }
        }
        None
    }

    /// The address from the `started` line.
    pub fn listen_addr(&mut self) -> Option<SocketAddr> {
        let started = self.wait_for(&["started", "listen="])?;
        let rest = started.split("listen=").nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    }

    /// SIGTERM, then the exit status within 20 s (None: it had to be killed). Reads the log
    /// until the child's end.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for mayfly") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.rx.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        status
    }

    pub fn log(&self) -> String {
        self.seen.join("\n")
    }

    /// Moves the log lines written so far into `seen`, without waiting.
    pub fn drain(&mut self) {
        while let Ok(line) = self.rx.try_recv() {
            self.seen.push(line);
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (`kill -9`): no signal handler runs, nothing is flushed or closed. Waits for the
    /// child's end and reads what it logged before it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        while let Ok(line) = self.rx.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
    }
}

impl Drop for Daemon {
    /// A failed assertion must not leave a daemon running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The Python of `MAYFLY_PYTHON` (`scripts/py-env` makes it, with the third-party clients).
/// The tests that need it are `#[ignore]`d with that reason (`scripts/test` runs them); run
/// without it they fail rather than pass having checked nothing.
pub fn python() -> String {
    match std::env::var("MAYFLY_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => panic!("MAYFLY_PYTHON is not set: run `export MAYFLY_PYTHON=$(scripts/py-env)` first"),
    }
}
