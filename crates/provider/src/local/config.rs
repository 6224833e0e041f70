//! What an operator writes to run single-use runners on this host: how many at once, where the
//! runner is installed, where each instance gets its own runner root, and whether it runs in a
//! Docker container.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// One host's share of runners.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// How many runners run at once; a create beyond it answers `Quota`.
    pub slots: u32,
    /// An installed (extracted) actions/runner: the directory holding `run.sh`. Each instance
    /// gets its own runner root made from it (see `layout`), as two JIT runners cannot share
    /// one. With `docker`, the directory of `run.sh` inside the image instead.
    pub runner_dir: PathBuf,
    /// Where instances live: one runner root per instance, named after it, holding the record
    /// that lets a restarted mayfly find and clean it.
    pub work_dir: PathBuf,
    /// Run each runner in a container of `docker_image` instead of as a process.
    pub docker: bool,
    pub docker_image: Option<String>,
    /// The `docker` program (found on PATH by default).
    pub docker_binary: String,
    /// How long a stopped runner gets between SIGTERM and SIGKILL (or `docker stop -t`).
    pub stop_timeout_ms: u64,
    /// Variables every runner gets besides a minimal environment (PATH, HOME, USER, LANG):
    /// runners never inherit mayfly's own environment, which holds its tokens.
    pub env: Vec<(String, String)>,
    /// Run runners (and so jobs) as this user, not as mayfly's: a job of the same user could
    /// read mayfly's environment and memory. Needs mayfly to run as root.
    pub runner_user: Option<String>,
}

impl LocalConfig {
    /// `slots` runners of the runner in `runner_dir`, roots under `work_dir`, as processes.
    pub fn new(slots: u32, runner_dir: PathBuf, work_dir: PathBuf) -> LocalConfig {
        LocalConfig {
            slots,
            runner_dir,
            work_dir,
            docker: false,
            docker_image: None,
            docker_binary: "docker".into(),
            stop_timeout_ms: 10_000,
            env: Vec::new(),
            runner_user: None,
        }
    }

    pub fn stop_timeout(&self) -> Duration {
        Duration::from_millis(self.stop_timeout_ms)
    }

    /// Checks what can be checked without touching the host.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.slots == 0 {
            return Err(ConfigError::Invalid {
                key: "slots",
                reason: "must be at least 1".into(),
            });
        }
        for (key, dir) in [
            ("runner_dir", &self.runner_dir),
            ("work_dir", &self.work_dir),
        ] {
            if !dir.is_absolute() {
                return Err(ConfigError::Invalid {
                    key,
                    reason: format!("{} is not an absolute path", dir.display()),
                });
            }
        }
        if !self.docker && self.work_dir.starts_with(&self.runner_dir) {
            return Err(ConfigError::Invalid {
                key: "work_dir",
                reason: "must not be inside runner_dir".into(),
            });
        }
        if self.docker {
            match &self.docker_image {
                None => {
                    return Err(ConfigError::Invalid {
                        key: "docker_image",
                        reason: "docker = true needs an image with the runner installed".into(),
                    });
                }
                Some(i) if i.trim().is_empty() || i.contains(char::is_whitespace) => {
                    return Err(ConfigError::Invalid {
                        key: "docker_image",
                        reason: "not an image reference".into(),
                    });
                }
                Some(_) => {}
            }
        }
        if self.docker && self.runner_user.is_some() {
            return Err(ConfigError::Invalid {
                key: "runner_user",
                reason: "a container runs as its image's user; leave runner_user out".into(),
            });
        }
        for (name, _) in &self.env {
            let ok = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(ConfigError::Invalid {
                    key: "env",
                    reason: format!("{name:?} is not a variable name"),
                });
            }
        }
        Ok(())
    }
}

/// A configuration that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("local: {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    /// Checked at start: the runner is not where the configuration says.
    #[error("local: runner_dir: no executable run.sh in {0}")]
    NoRunner(String),
    #[error("local: work_dir: {0}")]
    WorkDir(String),
    #[error("local: docker = true, but the Docker daemon does not answer: {0}")]
    NoDocker(String),
    #[error("local: runner_user: {0}")]
    RunnerUser(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> LocalConfig {
        LocalConfig::new(2, "/opt/runner".into(), "/var/lib/mayfly/local".into())
    }

    #[test]
    fn every_bad_key_is_named() {
        ok().validate().unwrap();
        let cases: Vec<(LocalConfig, &str)> = vec![
            (LocalConfig { slots: 0, ..ok() }, "slots"),
            (
                LocalConfig {
                    runner_dir: "runner".into(),
                    ..ok()
                },
                "runner_dir",
            ),
            (
                LocalConfig {
                    work_dir: "/opt/runner/work".into(),
                    ..ok()
                },
                "work_dir",
            ),
            (
                LocalConfig {
                    docker: true,
                    ..ok()
                },
                "docker_image",
            ),
            (
                LocalConfig {
                    env: vec![("A-B".into(), "x".into())],
                    ..ok()
                },
                "env",
            ),
        ];
        for (c, key) in cases {
            match c.validate() {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }
}
