//! What the operator writes about GitHub: where the API is, which credential, which scopes, how
//! runners register, and the rate-limit knobs. Plain serde types, checked by `scopes()`.

use super::runners::{Repo, RunnerGroup, Scope};
use mayfly_core::Secret;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

pub const GITHUB_API: &str = "https://api.github.com";

/// Unknown keys are not refused here: `flatten` cannot be combined with `deny_unknown_fields`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GithubConfig {
    #[serde(flatten)]
    pub client: ClientConfig,
    /// Repositories (`owner/name`) whose jobs mayfly serves with repository-level runners.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Organization-level runners: one registration serves every repository of the org.
    #[serde(default)]
    pub organization: Option<String>,
    /// Enterprise-level runners (same endpoints under `/enterprises/{enterprise}`).
    #[serde(default)]
    pub enterprise: Option<String>,
    /// Runner group by id or name; a name is resolved once. Repository runners always use group 1.
    #[serde(default)]
    pub runner_group: Option<RunnerGroup>,
    #[serde(default)]
    pub registration: Registration,
}

/// How a new runner gets its single-use credential.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// A JIT config: the runner is registered before the machine exists and can take one job only.
    #[default]
    Jit,
    /// A registration token (valid an hour, reusable): for runner versions without `--jitconfig`.
    Token,
}

/// Everything the REST client needs, and nothing about scopes: one client serves many scopes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientConfig {
    /// `https://api.github.com`, or `https://ghes.example/api/v3` for GitHub Enterprise Server.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    pub auth: AuthConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
}

fn default_api_url() -> String {
    GITHUB_API.to_string()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AuthConfig {
    /// A personal access token (classic or fine-grained).
    Token { token: Secret },
    /// A GitHub App installation: higher budgets, short-lived tokens, no person's account.
    App {
        app_id: u64,
        installation_id: u64,
        /// The App's private key (PEM, PKCS#1 as GitHub hands it out, or PKCS#8).
        private_key_path: PathBuf,
    },
}

/// Rate-limit and timing knobs. Durations are whole units named in the field, as in TOML.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Every request's deadline, connection included.
    pub request_timeout_ms: u64,
    /// GitHub's secondary limit: at most this many requests in flight per credential.
    pub max_concurrent: usize,
    /// Average spacing of writes (POST, DELETE) over a minute: GitHub asks for a second between
    /// mutating requests when many are made, and caps content-creating requests at 80 a minute.
    /// 0 disables the write limiter.
    pub write_interval_ms: u64,
    /// Writes that may go out at once before the spacing applies: the first `write_burst` of a
    /// burst of jobs get their JIT configs together instead of one a second. With the default
    /// spacing, a minute holds at most `write_burst + 60` writes: 75 by default, inside GitHub's
    /// 80 content-creating requests a minute and its 900 points (5 a write). 1 spaces every write.
    pub write_burst: u32,
    /// The longest the client waits on a rate limit before it gives the caller `RateLimited`.
    pub max_wait_secs: u64,
    /// Retries after a rate-limit answer, each after a wait within `max_wait_secs`.
    pub max_retries: usize,
    /// Share (0..=1) of the hourly budget kept for serving jobs: below it, housekeeping calls
    /// are `Postponed` so that a JIT config can still be had.
    pub reserve: f64,
    /// Fetch a new installation token this long before the current one expires.
    pub token_refresh_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            request_timeout_ms: 10_000,
            max_concurrent: 100,
            write_interval_ms: 1_000,
            write_burst: 15,
            max_wait_secs: 120,
            max_retries: 3,
            reserve: 0.1,
            token_refresh_secs: 300,
        }
    }
}

impl LimitsConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn write_interval(&self) -> Duration {
        Duration::from_millis(self.write_interval_ms)
    }

    pub fn max_wait(&self) -> Duration {
        Duration::from_secs(self.max_wait_secs)
    }

    pub fn token_refresh(&self) -> Duration {
        Duration::from_secs(self.token_refresh_secs)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("github: {0:?} is not `owner/name`")]
    BadRepository(String),
    #[error("github: {0:?} is not a valid organization or enterprise name")]
    BadName(String),
    #[error("github: no scope: set repositories, organization or enterprise")]
    NoScope,
    #[error("github: api_url {0:?} is not an http(s) URL")]
    BadApiUrl(String),
    #[error("github: limits.reserve must be within 0..=1")]
    BadReserve,
    #[error("github: could not build the HTTP client (TLS setup)")]
    HttpClient,
    #[error("github: cannot read the App private key at {path}: {reason}")]
    PrivateKey { path: String, reason: String },
}

impl GithubConfig {
    /// The scopes runners are registered in, checked: repositories, then org, then enterprise.
    pub fn scopes(&self) -> Result<Vec<Scope>, ConfigError> {
        let mut out = Vec::new();
        for r in &self.repositories {
            out.push(Scope::Repo(Repo::parse(r)?));
        }
        if let Some(org) = &self.organization {
            out.push(Scope::Org(checked_name(org)?));
        }
        if let Some(e) = &self.enterprise {
            out.push(Scope::Enterprise(checked_name(e)?));
        }
        if out.is_empty() {
            return Err(ConfigError::NoScope);
        }
        Ok(out)
    }
}

/// GitHub names are ASCII letters, digits, `-`, `_` and `.`: anything else could leave its
/// path segment.
pub(crate) fn checked_name(s: &str) -> Result<String, ConfigError> {
    let ok = !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(s.to_string())
    } else {
        Err(ConfigError::BadName(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_or_app_and_scopes() {
        let c: GithubConfig = serde_json::from_str(
            r#"{"auth": {"token": "ghp_x"}, "repositories": ["acme/app"], "organization": "acme",
                "runner_group": "linux"}"#,
        )
        .unwrap();
        assert_eq!(c.client.api_url, GITHUB_API);
        assert_eq!(c.registration, Registration::Jit);
        assert_eq!(c.runner_group, Some(RunnerGroup::Name("linux".into())));
        assert_eq!(c.scopes().unwrap().len(), 2);
        assert!(!format!("{c:?}").contains("ghp_x"));

        let c: GithubConfig = serde_json::from_str(
            r#"{"api_url": "https://ghes.example/api/v3", "enterprise": "big", "runner_group": 7,
                "auth": {"app_id": 1, "installation_id": 2, "private_key_path": "k.pem"},
                "limits": {"write_interval_ms": 750}}"#,
        )
        .unwrap();
        assert!(matches!(c.client.auth, AuthConfig::App { app_id: 1, .. }));
        assert_eq!(c.client.limits.write_interval_ms, 750);
        assert_eq!(c.client.limits.max_concurrent, 100);
        assert_eq!(c.runner_group, Some(RunnerGroup::Id(7)));
    }

    #[test]
    fn names_cannot_leave_their_path_segment() {
        for bad in ["", "..", "a/b", "a?b", "a b"] {
            assert!(checked_name(bad).is_err(), "{bad:?}");
        }
        assert!(Repo::parse("acme/app/x").is_err());
        assert!(Repo::parse("acme").is_err());
        let empty = GithubConfig {
            client: ClientConfig {
                api_url: GITHUB_API.into(),
                auth: AuthConfig::Token {
                    token: Secret::new("t"),
                },
                limits: LimitsConfig::default(),
            },
            repositories: vec![],
            organization: None,
            enterprise: None,
            runner_group: None,
            registration: Registration::Jit,
        };
        assert_eq!(empty.scopes(), Err(ConfigError::NoScope));
    }
}
