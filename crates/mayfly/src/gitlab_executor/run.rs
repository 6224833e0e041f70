//! `run_exec SCRIPT STAGE`: the stage's script on the job's machine over SSH, its output
//! streamed as it comes. A connection that fails before the script started is tried again with
//! backoff; a script that started is never started again, on this or any later attempt.
//!
//! How "started" is known: the remote command first makes a directory named for this
//! invocation (`mkdir` is atomic, so only one attempt can), then prints a marker line, then
//! reads the script from stdin. No marker: the script did not start, and trying again is safe;
//! an attempt that finds the directory made refuses to run.

use super::job::JobEnv;
use super::keys::JobDir;
use super::record::MachineFile;
use super::remote::{Remote, host_key_refused};
use super::settings::Settings;
use super::{Failure, say};
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The remote command's own exit code for "this invocation started before".
const STARTED_BEFORE: i32 = 97;

/// How one attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// The script ran to its end with this exit code.
    Finished(i32),
    /// The connection failed before the script started: safe to try again.
    NotStarted(String),
    /// The script started and the connection was lost: it may have done anything.
    Dropped,
    /// An attempt before this one started the script already.
    StartedBefore,
    /// The machine is not the one made for this job.
    HostKey(String),
    /// ssh itself was ended by this signal: gitlab-runner stops the stage's process group on a
    /// timeout or a cancel, and ssh may get the SIGTERM before this process acts on its own.
    Stopped(i32),
}

pub async fn run(
    settings: &Settings,
    job: &JobEnv,
    script: &Path,
    stage: &str,
) -> Result<(), Failure> {
    let body = std::fs::read(script).map_err(|e| {
        Failure::System(format!(
            "cannot read the {stage} script {}: {e}",
            script.display()
        ))
    })?;
    let name = job.machine_name();
    let dir = JobDir::new(&settings.state_dir, &name);
    let machine = MachineFile::read(&dir).map_err(Failure::System)?;
    let remote = Remote::new(&settings.ssh, &dir, &name, &machine.address);
    let nonce = nonce();
    let command = remote_command(&settings.ssh.runs_dir, &settings.shell, &nonce);
    let marker = format!("mayfly-started-{nonce}");
    let until = Instant::now() + Duration::from_secs(settings.ssh.retry_for_secs);
    let mut pause = Duration::from_millis(500);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match once(&remote, &command, &marker, &body).await? {
            Attempt::Finished(0) => return Ok(()),
            Attempt::Finished(code) => {
                if let Some(file) = &job.build_exit_code_file {
                    std::fs::write(file, code.to_string()).map_err(|e| {
                        Failure::System(format!("cannot write {}: {e}", file.display()))
                    })?;
                }
                return Err(Failure::Build(code));
            }
            Attempt::Dropped => {
                // The process group's SIGTERM may reach ssh before this process handles its own.
                tokio::time::sleep(Duration::from_millis(200)).await;
                if super::TERMINATED.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(Failure::System(format!(
                        "{stage} on {name} ended by SIGTERM (a timeout or a cancel): stopping"
                    )));
                }
                return Err(Failure::System(format!(
                    "the connection to {name} was lost while {stage} ran; not running it again"
                )));
            }
            Attempt::StartedBefore => {
                return Err(Failure::System(format!(
                    "{stage} started on an earlier connection to {name}; not running it twice"
                )));
            }
            Attempt::Stopped(signal) => {
                return Err(Failure::System(format!(
                    "{stage} on {name} stopped by signal {signal} (a timeout or a cancel): stopping"
                )));
            }
            Attempt::HostKey(words) => {
                return Err(Failure::System(format!(
                    "{name} did not show the host key made for it; not trusting it: {words}"
                )));
            }
            Attempt::NotStarted(words) => {
                if Instant::now() + pause > until {
                    return Err(Failure::System(format!(
                        "cannot reach {name} for {stage} after {attempt} attempts: {words}"
                    )));
                }
                say(&format!(
                    "{stage}: connection to {name} failed before the script started ({words}); \
                     trying again in {:.1} s",
                    pause.as_secs_f64()
                ));
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// The remote side: claim the invocation, say so, then the shell reads the script from stdin.
fn remote_command(runs: &str, shell: &str, nonce: &str) -> String {
    format!(
        "mkdir -p {runs} && mkdir {runs}/{nonce} 2>/dev/null || exit {STARTED_BEFORE}; \
         echo mayfly-started-{nonce}; exec {shell}"
    )
}

fn nonce() -> String {
    use rand::Rng;
    let bytes: [u8; 12] = rand::rng().random();
    hex::encode(bytes)
}

/// One ssh connection: feeds the script, forwards stderr at once and stdout after the marker.
async fn once(
    remote: &Remote,
    command: &str,
    marker: &str,
    body: &[u8],
) -> Result<Attempt, Failure> {
    let mut child = remote
        .command(command)
        .spawn()
        .map_err(|e| Failure::System(format!("cannot run ssh: {e}")))?;
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let body = body.to_vec();
    // The script goes in while output comes out: a long script must not block on a full pipe.
    let feed = tokio::spawn(async move {
        if let Some(mut pipe) = stdin.take() {
            let _ = pipe.write_all(&body).await;
        }
    });
    let errors = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut buf = [0u8; 8192];
        let mut out = std::io::stderr();
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let _ = out.write_all(&buf[..n]);
            let _ = out.flush();
            if seen.len() < 64 * 1024 {
                seen.extend_from_slice(&buf[..n]);
            }
        }
        String::from_utf8_lossy(&seen).trim().to_string()
    });
    let started = forward_after_marker(&mut stdout, marker).await;
    let status = child
        .wait()
        .await
        .map_err(|e| Failure::System(format!("ssh did not finish: {e}")))?;
    feed.abort();
    let words = errors.await.unwrap_or_default();
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
        return Ok(Attempt::Stopped(signal));
    }
    let code = status.code().unwrap_or(255);
    Ok(match (started, code) {
        (true, 255) => Attempt::Dropped,
        (true, code) => Attempt::Finished(code),
        (false, STARTED_BEFORE) => Attempt::StartedBefore,
        (false, _) if host_key_refused(&words) => Attempt::HostKey(words),
        (false, _) => Attempt::NotStarted(if words.is_empty() {
            format!("ssh exited {code}")
        } else {
            words
        }),
    })
}

/// Reads until the marker line (dropping it), then copies the rest to stdout as it comes.
/// Returns whether the marker came.
async fn forward_after_marker(stdout: &mut (impl AsyncReadExt + Unpin), marker: &str) -> bool {
    // std's handle, written in place: the reader is gitlab-runner, which drains the pipe, so
    // a write blocks a worker thread for no longer than a copy.
    let mut out = std::io::stdout();
    let mut head = Vec::new();
    let mut buf = [0u8; 8192];
    let mut started = false;
    loop {
        let n = match stdout.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if started {
            let _ = out.write_all(&buf[..n]);
            let _ = out.flush();
            continue;
        }
        head.extend_from_slice(&buf[..n]);
        while !started && let Some(nl) = head.iter().position(|&b| b == b'\n') {
            if &head[..nl] == marker.as_bytes() {
                started = true;
                let _ = out.write_all(&head[nl + 1..]);
                let _ = out.flush();
                head.clear();
            } else {
                // Something printed before the marker (a login banner): not the script's.
                let _ = out.write_all(&head[..=nl]);
                head.drain(..=nl);
            }
        }
    }
    started
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_after_the_marker_is_the_scripts() {
        let mut input: &[u8] = b"banner\nmayfly-started-x\nhello\n";
        assert!(forward_after_marker(&mut input, "mayfly-started-x").await);
        let mut input: &[u8] = b"mayfly-started-x\n";
        assert!(forward_after_marker(&mut input, "mayfly-started-x").await);
        let mut input: &[u8] = b"ssh: connect refused\n";
        assert!(!forward_after_marker(&mut input, "mayfly-started-x").await);
    }

    #[test]
    fn the_remote_command_claims_the_invocation_first() {
        let c = remote_command(".mayfly-runs", "bash", "abc");
        assert!(c.starts_with("mkdir -p .mayfly-runs && mkdir .mayfly-runs/abc"));
        assert!(c.ends_with("echo mayfly-started-abc; exec bash"));
    }
}
