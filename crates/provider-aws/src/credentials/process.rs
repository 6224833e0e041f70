//! A profile's `credential_process`: a command that prints the keys as JSON (`Version` 1,
//! `AccessKeyId`, `SecretAccessKey`, optional `SessionToken` and `Expiration`), run through the
//! shell as the AWS CLI runs it, within a bounded time.

use super::{Credentials, CredentialsError, Fetch};
use async_trait::async_trait;
use mayfly_core::Secret;
use serde::Deserialize;
use std::process::Stdio;
use std::time::Duration;

const SOURCE: &str = "credential_process";
/// A helper that asks a vault or a hardware key gets this long.
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Process {
    command: String,
}

impl Process {
    pub fn new(command: &str) -> Process {
        Process {
            command: command.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Output {
    version: u32,
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    expiration: Option<String>,
}

/// The command's first word, for messages: its arguments may hold anything.
fn program(command: &str) -> &str {
    command.split_whitespace().next().unwrap_or(command)
}

#[async_trait]
impl Fetch for Process {
    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let mut cmd = if cfg!(windows) {
            let mut c = tokio::process::Command::new("cmd.exe");
            c.arg("/C").arg(&self.command);
            c
        } else {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c").arg(&self.command);
            c
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let name = program(&self.command);
        let child = cmd
            .spawn()
            .map_err(|e| CredentialsError::invalid(SOURCE, format!("cannot run {name}: {e}")))?;
        let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                CredentialsError::invalid(
                    SOURCE,
                    format!("{name} did not finish within {TIMEOUT:?}"),
                )
            })?
            .map_err(|e| CredentialsError::invalid(SOURCE, format!("{name}: {e}")))?;
        if !out.status.success() {
            // Its error output says why; its standard output may hold keys and is never shown.
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            let last: String = last.chars().take(200).collect();
            return Err(CredentialsError::invalid(
                SOURCE,
                format!("{name} failed ({}): {last}", out.status),
            ));
        }
        let parsed: Output = serde_json::from_slice(&out.stdout).map_err(|e| {
            // Only where and what kind of error: serde's message may quote a value.
            CredentialsError::invalid(
                SOURCE,
                format!(
                    "{name} printed no valid credentials JSON ({:?} error at line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            )
        })?;
        if parsed.version != 1 {
            return Err(CredentialsError::invalid(
                SOURCE,
                format!("{name} printed Version {}, expected 1", parsed.version),
            ));
        }
        Ok(Credentials {
            access_key_id: parsed.access_key_id,
            secret_access_key: Secret::new(parsed.secret_access_key),
            session_token: parsed
                .session_token
                .filter(|t| !t.is_empty())
                .map(Secret::new),
            expires: match parsed.expiration.as_deref() {
                Some(e) => Some(super::expiry(SOURCE, e)?),
                None => None,
            },
            source: SOURCE,
        })
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn script(dir: &tempfile::TempDir, body: &str) -> String {
        let path = dir.path().join("get-keys");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        format!("sh {} --profile ci", path.display())
    }

    #[tokio::test]
    async fn a_script_gives_keys_with_their_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = script(
            &dir,
            r#"echo '{"Version": 1, "AccessKeyId": "AKIDPROC", "SecretAccessKey": "proc-secret", "SessionToken": "proc-token", "Expiration": "2099-01-01T00:00:00Z"}'"#,
        );
        let c = Process::new(&cmd).fetch().await.unwrap();
        assert_eq!(c.access_key_id, "AKIDPROC");
        assert_eq!(c.secret_access_key.expose(), "proc-secret");
        assert_eq!(c.session_token.unwrap().expose(), "proc-token");
        assert_eq!(c.expires.unwrap().to_string(), "2099-01-01T00:00:00Z");
    }

    #[tokio::test]
    async fn failures_say_why_without_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let failing = script(
            &dir,
            "echo 'AKIDLEAK secret' ; echo 'vault: permission denied' >&2; exit 3",
        );
        let e = Process::new(&failing)
            .fetch()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("permission denied") && e.contains("exit status: 3"),
            "{e}"
        );
        assert!(!e.contains("AKIDLEAK"), "{e}");
        let garbage = script(
            &dir,
            r#"echo '{"Version": 1, "AccessKeyId": "AKID", "SecretAccessKey": "leaky-secret"'"#,
        );
        let e = Process::new(&garbage)
            .fetch()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no valid credentials JSON") && !e.contains("leaky-secret"),
            "{e}"
        );
        let v2 = script(
            &dir,
            r#"echo '{"Version": 2, "AccessKeyId": "A", "SecretAccessKey": "S"}'"#,
        );
        let e = Process::new(&v2).fetch().await.unwrap_err().to_string();
        assert!(e.contains("Version 2"), "{e}");
    }

    #[tokio::test]
    async fn a_profile_with_credential_process_runs_it() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = script(
            &dir,
            r#"echo '{"Version": 1, "AccessKeyId": "AKIDPROFILE", "SecretAccessKey": "s"}'"#,
        );
        let config = dir.path().join("config");
        std::fs::write(
            &config,
            format!("[profile ci]\ncredential_process = {cmd}\n"),
        )
        .unwrap();
        let config = config.display().to_string();
        let env = super::super::Env::of([
            ("AWS_CONFIG_FILE", config.as_str()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
            ("AWS_PROFILE", "ci"),
        ]);
        let p = super::super::Provider::from_env(&env, &reqwest::Client::new(), None);
        let c = p.get().await.unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.source),
            ("AKIDPROFILE", SOURCE)
        );
    }
}
