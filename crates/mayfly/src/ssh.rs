//! Runs the system's `ssh` client, for `mayfly ssh` on a runner's machine and `mayfly cloud` on the
//! controller's server. The client brings the operator's keys, agent and known hosts as they are.

use anyhow::Context;
use std::ffi::OsString;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// `MAYFLY_SSH` names another client binary (tests put a recording fake there).
pub const PROGRAM_ENV: &str = "MAYFLY_SSH";

/// One remote host.
#[derive(Clone, Debug)]
pub struct Ssh {
    program: OsString,
    destination: String,
    /// Bounds the TCP connect and the key exchange; a dead host fails within it.
    pub connect_timeout: Duration,
}

/// What a command run over ssh printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ssh {
    /// `user@host`; an IPv6 address is taken as it is (ssh needs no brackets for it).
    pub fn new(user: &str, host: &str) -> Ssh {
        Ssh {
            program: std::env::var_os(PROGRAM_ENV).unwrap_or_else(|| "ssh".into()),
            destination: format!("{user}@{host}"),
            connect_timeout: Duration::from_secs(10),
        }
    }

    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// The arguments before the remote command. A machine mayfly made is new each time, so its
    /// host key is learned on first use (`accept-new`), never silently replaced.
    fn args(&self, batch: bool) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "-o".into(),
            format!("ConnectTimeout={}", self.connect_timeout.as_secs().max(1)).into(),
            "-o".into(),
            "StrictHostKeyChecking=accept-new".into(),
        ];
        if batch {
            // Never wait on a password prompt nobody sees.
            args.extend(["-o".into(), "BatchMode=yes".into()]);
        }
        args.push(self.destination.clone().into());
        args
    }

    /// The command line, for `--dry-run` and error messages.
    pub fn describe(&self, remote: &[String]) -> String {
        let mut words: Vec<String> = std::iter::once(self.program.to_string_lossy().into_owned())
            .chain(
                self.args(true)
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned()),
            )
            .collect();
        words.extend(remote.iter().cloned());
        words.join(" ")
    }

    /// Runs `remote` with the terminal attached (a login shell when empty), for as long as the
    /// operator stays; returns the remote command's exit status.
    pub async fn interactive(&self, remote: &[String]) -> anyhow::Result<ExitStatus> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(self.args(false)).args(remote);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.program.to_string_lossy()))?;
        child.wait().await.context("ssh did not finish")
    }

    /// Runs `remote` without a terminal, feeding it `stdin` (how files with secrets travel: never
    /// on a command line, which other users of either machine could read), within `timeout`.
    pub async fn run(
        &self,
        remote: &[String],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> anyhow::Result<Output> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(self.args(true))
            .args(remote)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.program.to_string_lossy()))?;
        let work = async {
            if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
                pipe.write_all(data).await.context("cannot write to ssh")?;
                // Closing it ends the remote command's input.
                drop(pipe);
            }
            let out = child
                .wait_with_output()
                .await
                .context("ssh did not finish")?;
            anyhow::Ok(Output {
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        };
        tokio::time::timeout(timeout, work)
            .await
            .with_context(|| format!("{} gave no answer within {timeout:?}", self.destination))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_commands_never_prompt_and_learn_new_host_keys_only() {
        let ssh = Ssh {
            program: "ssh".into(),
            destination: "root@192.0.2.7".into(),
            connect_timeout: Duration::from_secs(10),
        };
        assert_eq!(
            ssh.describe(&["journalctl".into(), "-u".into(), "mayfly".into()]),
            "ssh -o ConnectTimeout=10 -o StrictHostKeyChecking=accept-new -o BatchMode=yes \
             root@192.0.2.7 journalctl -u mayfly"
        );
    }

    /// A fake client: a shell script that ignores ssh's options and runs `body`.
    fn fake(dir: &tempfile::TempDir, body: &str) -> Ssh {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join("ssh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Ssh {
            program: path.into_os_string(),
            destination: "root@192.0.2.7".into(),
            connect_timeout: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn input_goes_through_stdin_and_output_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = fake(
            &dir,
            r#"echo "last arg: $(eval echo \$$#)"; cat; echo err >&2; exit 3"#,
        );
        let out = ssh
            .run(
                &["uptime".into()],
                Some(b"secret-in"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(out.stdout, "last arg: uptime\nsecret-in");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[tokio::test]
    async fn a_command_that_hangs_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = fake(&dir, "sleep 30");
        let err = ssh
            .run(&["true".into()], None, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("no answer within"), "{err:#}");
    }
}
