//! The `docker` command line, as mayfly uses it: each call bounded by a timeout, its arguments
//! built by small functions that the tests check word by word, its JSON lines read back.
//!
//! The CLI rather than the Engine API over the socket: it is what the operator has, honours
//! their context and configuration (`DOCKER_HOST`, contexts, rootless), and keeps an HTTP-over-
//! Unix-socket client out of the build.

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DockerError {
    #[error("cannot run {binary}: {reason}")]
    Missing { binary: String, reason: String },
    #[error("`docker {command}` did not finish within {timeout:?}")]
    Timeout { command: String, timeout: Duration },
    #[error("`docker {command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
}

/// One Docker CLI.
#[derive(Clone, Debug)]
pub struct Docker {
    pub binary: String,
    pub timeout: Duration,
}

/// What `docker ps --format '{{json .}}'` says about a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited` or `dead`.
    pub state: String,
    pub labels: BTreeMap<String, String>,
    /// `2026-05-01 12:00:00 +0000 UTC`, as the CLI prints it.
    pub created_at: String,
}

/// `k=v,k2=v2` (the CLI's `Labels` column); a key without `=` has an empty value.
pub fn parse_labels(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .map(str::trim)
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.to_string(), String::new()),
        })
        .collect()
}

/// One line of `--format '{{json .}}'` output as a map of its string fields.
pub fn json_line(line: &str) -> Option<BTreeMap<String, String>> {
    let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    Some(
        v.as_object()?
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), s)
            })
            .collect(),
    )
}

fn container(line: &str) -> Option<Container> {
    let f = json_line(line)?;
    Some(Container {
        id: f.get("ID")?.clone(),
        name: f.get("Names").cloned().unwrap_or_default(),
        state: f.get("State").cloned().unwrap_or_default(),
        labels: parse_labels(f.get("Labels").map_or("", String::as_str)),
        created_at: f.get("CreatedAt").cloned().unwrap_or_default(),
    })
}

/// `docker run` of a runner container: detached, named after the instance, labelled, the
/// environment given by name and value, then the image and its command.
pub fn run_args(
    name: &str,
    labels: &[(&str, &str)],
    env: &[(String, String)],
    image: &str,
    command: &[String],
) -> Vec<String> {
    let mut a = vec![
        "run".to_string(),
        "--detach".into(),
        "--name".into(),
        name.into(),
    ];
    for (k, v) in labels {
        a.push("--label".into());
        a.push(format!("{k}={v}"));
    }
    for (k, v) in env {
        a.push("--env".into());
        a.push(format!("{k}={v}"));
    }
    a.push(image.into());
    a.extend(command.iter().cloned());
    a
}

/// `docker ps --all` of the containers carrying every label filter (`key=value` or `key`).
pub fn ps_args(label_filters: &[String]) -> Vec<String> {
    let mut a = vec!["ps".to_string(), "--all".into(), "--no-trunc".into()];
    for f in label_filters {
        a.push("--filter".into());
        a.push(format!("label={f}"));
    }
    a.push("--format".into());
    a.push("{{json .}}".into());
    a
}

/// `docker rm --force --volumes NAME`: the container and its anonymous volumes.
pub fn rm_args(name: &str) -> Vec<String> {
    vec![
        "rm".into(),
        "--force".into(),
        "--volumes".into(),
        name.into(),
    ]
}

impl Docker {
    pub fn new(binary: impl Into<String>, timeout: Duration) -> Docker {
        Docker {
            binary: binary.into(),
            timeout,
        }
    }

    /// Runs `docker ARGS…`; its stdout on success. `redact` hides arguments from the error
    /// text (a JIT config in a run command) by index.
    pub async fn exec(&self, args: &[String], redact: &[usize]) -> Result<String, DockerError> {
        let shown: Vec<&str> = args
            .iter()
            .enumerate()
            .map(|(i, a)| {
                if redact.contains(&i) {
                    mayfly_core::secret::REDACTED
                } else {
                    a.as_str()
                }
            })
            .collect();
        let command = shown.join(" ");
        let run = tokio::process::Command::new(&self.binary)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| DockerError::Timeout {
                command: command.clone(),
                timeout: self.timeout,
            })?
            .map_err(|e| DockerError::Missing {
                binary: self.binary.clone(),
                reason: e.to_string(),
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stderr: String = stderr.trim().chars().take(500).collect();
            return Err(DockerError::Failed { command, stderr });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The daemon's API version: proof that it answers.
    pub async fn server_version(&self) -> Result<String, DockerError> {
        let args = ["version", "--format", "{{.Server.APIVersion}}"].map(String::from);
        let v = self.exec(&args, &[]).await?;
        let v = v.trim();
        if v.is_empty() {
            return Err(DockerError::Failed {
                command: args.join(" "),
                stderr: "no server version in the answer".into(),
            });
        }
        Ok(v.to_string())
    }

    /// The containers carrying every label filter, running or not.
    pub async fn ps(&self, label_filters: &[String]) -> Result<Vec<Container>, DockerError> {
        let out = self.exec(&ps_args(label_filters), &[]).await?;
        Ok(out.lines().filter_map(container).collect())
    }

    /// Removes a container; one that does not exist counts as removed.
    pub async fn remove(&self, name: &str) -> Result<(), DockerError> {
        match self.exec(&rm_args(name), &[]).await {
            Ok(_) => Ok(()),
            Err(DockerError::Failed { stderr, .. }) if stderr.contains("No such container") => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_commands_are_built_word_by_word() {
        let env = vec![("RUNNER_ALLOW_RUNASROOT".to_string(), "1".to_string())];
        let a = run_args(
            "mf-linux-7-1",
            &[("mayfly-controller", "mf"), ("mayfly-pool", "linux")],
            &env,
            "ghcr.io/actions/actions-runner:2.338.0",
            &[
                "/home/runner/run.sh".into(),
                "--jitconfig".into(),
                "J".into(),
            ],
        );
        assert_eq!(
            a.join(" "),
            "run --detach --name mf-linux-7-1 --label mayfly-controller=mf --label mayfly-pool=linux \
             --env RUNNER_ALLOW_RUNASROOT=1 ghcr.io/actions/actions-runner:2.338.0 \
             /home/runner/run.sh --jitconfig J"
        );
        assert_eq!(
            ps_args(&["mayfly-controller=mf".into()]).join(" "),
            "ps --all --no-trunc --filter label=mayfly-controller=mf --format {{json .}}"
        );
        assert_eq!(rm_args("x").join(" "), "rm --force --volumes x");
    }

    #[test]
    fn ps_lines_and_labels_are_read() {
        let line = r#"{"Command":"\"/home/runner/run.sh\"","CreatedAt":"2026-05-01 12:00:00 +0000 UTC","ID":"abc","Labels":"mayfly-controller=mf,3fa2c1=,mayfly-pool=linux","Names":"mf-linux-7-1","State":"exited","Status":"Exited (0) 2 minutes ago"}"#;
        let c = container(line).unwrap();
        assert_eq!((c.id.as_str(), c.state.as_str()), ("abc", "exited"));
        assert_eq!(c.labels["mayfly-pool"], "linux");
        assert_eq!(c.labels["3fa2c1"], "");
        assert!(container("not json").is_none());
    }

    #[tokio::test]
    async fn a_failing_or_missing_docker_is_an_error_that_hides_secrets() {
        let d = Docker::new("/nonexistent/docker", Duration::from_secs(5));
        assert!(matches!(
            d.server_version().await,
            Err(DockerError::Missing { .. })
        ));
        let d = Docker::new("false", Duration::from_secs(5));
        let e = d
            .exec(&["run".into(), "--jitconfig".into(), "SECRET".into()], &[2])
            .await
            .unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }
}
