//! What the operator writes about GitLab: the instance, the token, the projects and groups whose
//! jobs mayfly serves, the webhook secret, polling, the kind of runner to register and the
//! rate-limit knobs. Plain serde types; `check()` says what is wrong, naming the field.

use mayfly_core::Secret;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub const GITLAB_COM: &str = "https://gitlab.com";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitlabConfig {
    /// The instance: `https://gitlab.com` or a self-managed one (`https://gitlab.example.com`,
    /// a relative-URL install like `https://example.com/gitlab` too). The API is `<url>/api/v4`.
    #[serde(default = "default_url")]
    pub url: String,
    /// A personal, group or project access token with the scopes `create_runner` (make runner
    /// records), `manage_runner` (read and delete them) and `read_api` (projects and jobs);
    /// `api` covers all three.
    pub token: Secret,
    /// Projects by id (`42`) or full path (`group/subgroup/project`).
    #[serde(default)]
    pub projects: Vec<String>,
    /// Groups by id or full path: every project in them, subgroups included, is served.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The secret token of the project or group hooks (sent as `X-Gitlab-Token`).
    #[serde(default)]
    pub webhook_secret: Option<Secret>,
    /// Whether to poll the projects' pending jobs (the fallback for lost webhooks).
    #[serde(default = "yes")]
    pub poll: bool,
    /// Which runners to register; by default a project runner for a configured project and a
    /// group runner for a project found through a configured group.
    #[serde(default)]
    pub runner_type: Option<RunnerType>,
    /// `maximum_timeout` (seconds, at least 600) of new runners: a job's own timeout is cut
    /// to it. None: the job's timeout.
    #[serde(default)]
    pub maximum_timeout_secs: Option<u64>,
    #[serde(default)]
    pub limits: LimitsConfig,
}

fn default_url() -> String {
    GITLAB_COM.to_string()
}

fn yes() -> bool {
    true
}

/// The kind of runner record mayfly creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerType {
    /// An instance runner (administrators only): any project's jobs.
    Instance,
    /// A runner of the configured group the job's project is in.
    Group,
    /// A runner of the job's project: the narrowest, and what a project's Owner may create.
    Project,
}

impl RunnerType {
    /// The `runner_type` value of `POST /user/runners`.
    pub fn api_name(self) -> &'static str {
        match self {
            RunnerType::Instance => "instance_type",
            RunnerType::Group => "group_type",
            RunnerType::Project => "project_type",
        }
    }
}

/// Rate-limit and timing knobs. Durations are whole units named in the field, as in TOML.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Every request's deadline, connection included.
    pub request_timeout_ms: u64,
    /// At most this many requests in flight.
    pub max_concurrent: usize,
    /// The longest the client waits on a rate limit before it gives the caller `RateLimited`.
    pub max_wait_secs: u64,
    /// Retries after a rate limit, a 5xx or a lost connection (the last two only for reads
    /// and deletes, which are safe to repeat), each after a wait.
    pub max_retries: usize,
    /// Share (0..=1) of the per-minute budget kept for serving jobs: below it, housekeeping
    /// calls are `Postponed` so that a runner can still be created.
    pub reserve: f64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            request_timeout_ms: 10_000,
            max_concurrent: 20,
            max_wait_secs: 120,
            max_retries: 3,
            reserve: 0.1,
        }
    }
}

impl LimitsConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn max_wait(&self) -> Duration {
        Duration::from_secs(self.max_wait_secs)
    }
}

/// What the REST client needs, and nothing about scopes.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientSettings {
    pub url: String,
    pub token: Secret,
    pub limits: LimitsConfig,
}

impl GitlabConfig {
    pub fn client(&self) -> ClientSettings {
        ClientSettings {
            url: self.url.clone(),
            token: self.token.clone(),
            limits: self.limits.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("gitlab.url {0:?} is not an http(s) URL of a GitLab instance (without /api/v4)")]
    BadUrl(String),
    #[error("gitlab: no scope: set projects or groups")]
    NoScope,
    #[error("gitlab.{field}: {value:?} is not a project or group id or full path")]
    BadPath { field: &'static str, value: String },
    #[error("gitlab.token is empty")]
    NoToken,
    #[error("gitlab.limits.reserve must be within 0..=1")]
    BadReserve,
    #[error("gitlab.maximum_timeout_secs must be at least 600 (GitLab's minimum)")]
    BadMaximumTimeout,
    #[error("gitlab.runner_type = \"group\" needs gitlab.groups")]
    GroupRunnersWithoutGroups,
    #[error("gitlab: could not build the HTTP client (TLS setup)")]
    HttpClient,
}

/// A project or group reference: digits are an id, anything else a full path whose segments
/// GitLab would accept (letters, digits, `_`, `-`, `.`), which cannot leave its URL segment.
pub fn checked_ref(field: &'static str, s: &str) -> Result<String, ConfigError> {
    let bad = || ConfigError::BadPath {
        field,
        value: s.chars().take(100).collect(),
    };
    let s = s.trim().trim_matches('/');
    if s.is_empty() {
        return Err(bad());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(s.to_string());
    }
    let ok = s.split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    });
    if ok { Ok(s.to_string()) } else { Err(bad()) }
}

impl GitlabConfig {
    /// Checks every field, so a bad configuration fails at load time.
    pub fn check(&self) -> Result<(), ConfigError> {
        instance_url(&self.url)?;
        if self.token.expose().trim().is_empty() {
            return Err(ConfigError::NoToken);
        }
        if self.projects.is_empty() && self.groups.is_empty() {
            return Err(ConfigError::NoScope);
        }
        for p in &self.projects {
            checked_ref("projects", p)?;
        }
        for g in &self.groups {
            checked_ref("groups", g)?;
        }
        if !(0.0..=1.0).contains(&self.limits.reserve) {
            return Err(ConfigError::BadReserve);
        }
        if self.maximum_timeout_secs.is_some_and(|t| t < 600) {
            return Err(ConfigError::BadMaximumTimeout);
        }
        if self.runner_type == Some(RunnerType::Group) && self.groups.is_empty() {
            return Err(ConfigError::GroupRunnersWithoutGroups);
        }
        Ok(())
    }
}

/// The instance URL without a trailing slash, checked.
pub fn instance_url(url: &str) -> Result<String, ConfigError> {
    let u = url.trim().trim_end_matches('/');
    let ok = (u.starts_with("https://") || u.starts_with("http://"))
        && u.len() > "https://".len()
        && !u.ends_with("/api/v4")
        && !u.contains(char::is_whitespace)
        && !u.contains(['?', '#']);
    if ok {
        Ok(u.to_string())
    } else {
        Err(ConfigError::BadUrl(url.chars().take(200).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> GitlabConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_and_checks() {
        let c = config(r#"{"token": "glpat-x", "projects": ["acme/app", "42"]}"#);
        assert_eq!(c.url, GITLAB_COM);
        assert!(c.poll);
        assert_eq!(c.runner_type, None);
        assert_eq!(c.limits.reserve, 0.1);
        c.check().unwrap();
        assert!(!format!("{c:?}").contains("glpat-x"));

        let bad = |json: &str| config(json).check().unwrap_err();
        assert_eq!(bad(r#"{"token": "t"}"#), ConfigError::NoScope);
        assert_eq!(
            bad(r#"{"token": " ", "groups": ["g"]}"#),
            ConfigError::NoToken
        );
        assert!(matches!(
            bad(r#"{"token": "t", "url": "https://gitlab.com/api/v4", "groups": ["g"]}"#),
            ConfigError::BadUrl(_)
        ));
        assert!(matches!(
            bad(r#"{"token": "t", "projects": ["acme/../x"]}"#),
            ConfigError::BadPath {
                field: "projects",
                ..
            }
        ));
        assert_eq!(
            bad(r#"{"token": "t", "projects": ["a/b"], "maximum_timeout_secs": 60}"#),
            ConfigError::BadMaximumTimeout
        );
        assert_eq!(
            bad(r#"{"token": "t", "projects": ["a/b"], "runner_type": "group"}"#),
            ConfigError::GroupRunnersWithoutGroups
        );
        assert!(serde_json::from_str::<GitlabConfig>(r#"{"token": "t", "project": []}"#).is_err());
    }

    #[test]
    fn references_stay_in_their_segment() {
        assert_eq!(checked_ref("projects", "/acme/app/").unwrap(), "acme/app");
        assert_eq!(checked_ref("projects", "42").unwrap(), "42");
        for bad in ["", "a b", "a?b", "..", "a//b", "a/%2e%2e"] {
            assert!(checked_ref("projects", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            instance_url("https://example.com/gitlab/").unwrap(),
            "https://example.com/gitlab"
        );
    }
}
