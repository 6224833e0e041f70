//! Where units live and how systemctl and journalctl are run: each call bounded by a timeout
//! (but a followed log), its output passed through. Tests point every path and binary elsewhere.

use anyhow::Context;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

/// Overrides, for tests and unusual systems: the unit directory, the environment file directory,
/// and the two binaries.
pub const UNIT_DIR_ENV: &str = "MAYFLY_SYSTEMD_DIR";
pub const ENV_DIR_ENV: &str = "MAYFLY_ENV_DIR";
pub const SYSTEMCTL_ENV: &str = "MAYFLY_SYSTEMCTL";
pub const JOURNALCTL_ENV: &str = "MAYFLY_JOURNALCTL";

/// The variables above: never copied into a service's environment.
pub const OVERRIDES: [&str; 4] = [UNIT_DIR_ENV, ENV_DIR_ENV, SYSTEMCTL_ENV, JOURNALCTL_ENV];

/// One system's systemd, as mayfly uses it.
#[derive(Clone, Debug)]
pub struct Systemd {
    pub systemctl: OsString,
    pub journalctl: OsString,
    pub unit_dir: PathBuf,
    pub env_dir: PathBuf,
    /// Bounds every call but `journalctl -f`.
    pub timeout: Duration,
}

impl Systemd {
    pub fn from_env(timeout: Duration) -> Systemd {
        let var = |name: &str, default: &str| -> OsString {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.into())
        };
        Systemd {
            systemctl: var(SYSTEMCTL_ENV, "systemctl"),
            journalctl: var(JOURNALCTL_ENV, "journalctl"),
            unit_dir: var(UNIT_DIR_ENV, "/etc/systemd/system").into(),
            env_dir: var(ENV_DIR_ENV, "/etc/mayfly").into(),
            timeout,
        }
    }

    pub fn unit_path(&self, name: &str) -> PathBuf {
        self.unit_dir.join(format!("{name}.service"))
    }

    pub fn env_path(&self, name: &str) -> PathBuf {
        self.env_dir.join(format!("{name}.env"))
    }

    /// `systemctl ARGS…`, as the user would type it (for `--dry-run`).
    pub fn describe(&self, call: &Call) -> String {
        let program = match call.tool {
            Tool::Systemctl => &self.systemctl,
            Tool::Journalctl => &self.journalctl,
        };
        std::iter::once(program.to_string_lossy().into_owned())
            .chain(call.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs `call` with the terminal's output; fails on a non-zero exit unless `call.check` is
    /// off, in which case the status is the answer (`systemctl status` says "not running" so).
    pub async fn run(&self, call: &Call) -> anyhow::Result<ExitStatus> {
        let program = match call.tool {
            Tool::Systemctl => &self.systemctl,
            Tool::Journalctl => &self.journalctl,
        };
        let line = self.describe(call);
        let mut child = tokio::process::Command::new(program)
            .args(&call.args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", program.to_string_lossy()))?;
        let status = if call.unbounded {
            child
                .wait()
                .await
                .with_context(|| format!("{line} failed"))?
        } else {
            tokio::time::timeout(self.timeout, child.wait())
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "`{line}` did not finish within {:?} (raise it with --timeout)",
                        self.timeout
                    )
                })?
                .with_context(|| format!("{line} failed"))?
        };
        if call.check && !status.success() {
            anyhow::bail!("`{line}` failed ({status})");
        }
        Ok(status)
    }
}

impl Systemd {
    /// Runs `call` and captures its standard output (for `is-active`, whose answer is read):
    /// the exit status and the output. Bounded by the timeout like every call.
    pub async fn output(&self, call: &Call) -> anyhow::Result<(ExitStatus, String)> {
        let program = match call.tool {
            Tool::Systemctl => &self.systemctl,
            Tool::Journalctl => &self.journalctl,
        };
        let line = self.describe(call);
        let run = tokio::process::Command::new(program)
            .args(&call.args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| anyhow::anyhow!("`{line}` did not finish within {:?}", self.timeout))?
            .with_context(|| format!("cannot start {}", program.to_string_lossy()))?;
        if call.check && !out.status.success() {
            anyhow::bail!(
                "`{line}` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok((
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Systemctl,
    Journalctl,
}

/// One systemctl or journalctl command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub tool: Tool,
    pub args: Vec<String>,
    /// A non-zero exit is an error.
    pub check: bool,
    /// Runs as long as the user wants (`journalctl -f`).
    pub unbounded: bool,
}

impl Call {
    pub fn systemctl(args: &[&str]) -> Call {
        Call {
            tool: Tool::Systemctl,
            args: args.iter().map(|s| s.to_string()).collect(),
            check: true,
            unbounded: false,
        }
    }

    pub fn journalctl(args: Vec<String>, follow: bool) -> Call {
        Call {
            tool: Tool::Journalctl,
            args,
            check: false,
            unbounded: follow,
        }
    }

    /// The exit status is reported, not turned into an error.
    pub fn unchecked(mut self) -> Call {
        self.check = false;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn systemd(dir: &tempfile::TempDir, body: &str, timeout: Duration) -> Systemd {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join("systemctl");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Systemd {
            systemctl: path.into(),
            journalctl: "journalctl".into(),
            unit_dir: dir.path().into(),
            env_dir: dir.path().into(),
            timeout,
        }
    }

    #[tokio::test]
    async fn a_failing_command_is_an_error_unless_unchecked() {
        let dir = tempfile::tempdir().unwrap();
        let s = systemd(&dir, "exit 3", Duration::from_secs(10));
        let e = s.run(&Call::systemctl(&["start", "x"])).await.unwrap_err();
        assert!(format!("{e:#}").contains("start x` failed"), "{e:#}");
        let status = s
            .run(&Call::systemctl(&["status", "x"]).unchecked())
            .await
            .unwrap();
        assert_eq!(status.code(), Some(3));
    }

    #[tokio::test]
    async fn a_command_that_hangs_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let s = systemd(&dir, "exec sleep 30", Duration::from_millis(300));
        let e = s.run(&Call::systemctl(&["stop", "x"])).await.unwrap_err();
        assert!(format!("{e:#}").contains("did not finish within"), "{e:#}");
    }
}
