//! The system `ssh` client, pinned to one job's machine: its key only, its host key only
//! (looked up by the machine's name through `HostKeyAlias`), never a prompt, never "accept new".
//!
//! The system client rather than an SSH library: it is on every runner manager already, is the
//! one implementation operators trust and debug, and brings proxies and ciphers policy with it;
//! a Rust SSH stack would add a large dependency for what one `Command` does.

use super::keys::JobDir;
use super::settings::SshSettings;
use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

/// How to reach one job's machine.
#[derive(Clone, Debug)]
pub struct Remote {
    program: OsString,
    /// The machine's name: its `HostKeyAlias`, the name its known_hosts line has.
    alias: String,
    address: String,
    user: String,
    port: u16,
    dir: JobDir,
    connect_timeout: Duration,
    alive: (u64, u32),
}

impl Remote {
    pub fn new(ssh: &SshSettings, dir: &JobDir, alias: &str, address: &str) -> Remote {
        Remote {
            program: std::env::var_os(mayfly::ssh::PROGRAM_ENV).unwrap_or_else(|| "ssh".into()),
            alias: alias.to_string(),
            address: address.to_string(),
            user: ssh.user.clone(),
            port: ssh.port,
            dir: dir.clone(),
            connect_timeout: Duration::from_secs(ssh.connect_timeout_secs),
            alive: (ssh.alive_interval_secs, ssh.alive_count),
        }
    }

    /// Every option is set with `-o` so that a wrapper's own (earlier) `-o` wins, as ssh keeps
    /// the first value it reads.
    pub fn args(&self, remote: &str) -> Vec<OsString> {
        let o = |s: String| -> [OsString; 2] { ["-o".into(), s.into()] };
        let mut args: Vec<OsString> = Vec::new();
        for opt in [
            "BatchMode=yes".to_string(),
            format!("ConnectTimeout={}", self.connect_timeout.as_secs().max(1)),
            "StrictHostKeyChecking=yes".to_string(),
            format!("UserKnownHostsFile={}", self.dir.known_hosts().display()),
            "GlobalKnownHostsFile=/dev/null".to_string(),
            format!("HostKeyAlias={}", self.alias),
            "IdentitiesOnly=yes".to_string(),
            format!("IdentityFile={}", self.dir.identity().display()),
            "PasswordAuthentication=no".to_string(),
            "KbdInteractiveAuthentication=no".to_string(),
            format!("ServerAliveInterval={}", self.alive.0.max(1)),
            format!("ServerAliveCountMax={}", self.alive.1.max(1)),
            format!("Port={}", self.port),
            format!("User={}", self.user),
            "LogLevel=ERROR".to_string(),
        ] {
            args.extend(o(opt));
        }
        args.push(self.address.clone().into());
        args.push(remote.into());
        args
    }

    /// `ssh … remote` with piped stdout and stderr, killed when dropped.
    pub fn command(&self, remote: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(self.args(remote))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// One `ssh … true`: whether the machine answers with the pinned key and takes ours.
    /// `Err` carries ssh's words; a changed host key is `Fatal`, never worth another try.
    pub async fn probe(&self) -> Result<(), Probe> {
        let out = tokio::time::timeout(
            self.connect_timeout + Duration::from_secs(5),
            self.command("true").stdin(Stdio::null()).output(),
        )
        .await
        .map_err(|_| Probe::Retry("no answer".into()))?
        .map_err(|e| Probe::Fatal(format!("cannot run ssh: {e}")))?;
        if out.status.success() {
            return Ok(());
        }
        let words = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if host_key_refused(&words) {
            Err(Probe::Fatal(words))
        } else {
            Err(Probe::Retry(words))
        }
    }
}

#[derive(Debug)]
pub enum Probe {
    Retry(String),
    Fatal(String),
}

/// ssh's words for a host key that is not the pinned one.
pub fn host_key_refused(stderr: &str) -> bool {
    stderr.contains("Host key verification failed")
        || stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_key_is_pinned_and_nothing_prompts() {
        let dir = JobDir::new(std::path::Path::new("/s"), "mayfly-gl-9");
        let r = Remote::new(&SshSettings::default(), &dir, "mayfly-gl-9", "192.0.2.9");
        let line = r
            .args("true")
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        for want in [
            "StrictHostKeyChecking=yes",
            "UserKnownHostsFile=/s/jobs/mayfly-gl-9/known_hosts",
            "HostKeyAlias=mayfly-gl-9",
            "BatchMode=yes",
            "IdentitiesOnly=yes",
        ] {
            assert!(line.contains(want), "{line}");
        }
        assert!(!line.contains("accept-new") && !line.contains("StrictHostKeyChecking=no"));
        assert!(line.ends_with("192.0.2.9 true"), "{line}");
    }
}
