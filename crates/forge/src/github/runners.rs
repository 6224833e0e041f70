//! Self-hosted runners in a repository, organization or enterprise: list, get, delete, and the
//! single-use credentials a new runner registers with (JIT config, registration token).

use super::client::{Call, Client, PER_PAGE, next_link};
use super::config::{ConfigError, checked_name};
use super::error::{Error, Result};
use super::poll::Polled;
use super::ratelimit::Priority;
use mayfly_core::{Labels, Secret, Time};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::fmt;

/// Repository-level runners can only be in the default group.
const DEFAULT_GROUP: u64 = 1;

/// A repository, `owner/name`, both parts checked to stay inside their path segments.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repo {
    pub owner: String,
    pub name: String,
}

impl Repo {
    pub fn parse(s: &str) -> Result<Repo, ConfigError> {
        let bad = || ConfigError::BadRepository(s.to_string());
        let (owner, name) = s.split_once('/').ok_or_else(bad)?;
        Ok(Repo {
            owner: checked_name(owner).map_err(|_| bad())?,
            name: checked_name(name).map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// Where runners are registered.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Repo(Repo),
    Org(String),
    Enterprise(String),
}

impl Scope {
    /// The scope's path under the API root: `/repos/o/r`, `/orgs/o`, `/enterprises/e`.
    fn path(&self) -> String {
        match self {
            Scope::Repo(r) => format!("/repos/{}/{}", r.owner, r.name),
            Scope::Org(o) => format!("/orgs/{o}"),
            Scope::Enterprise(e) => format!("/enterprises/{e}"),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Repo(r) => write!(f, "repo:{r}"),
            Scope::Org(o) => write!(f, "org:{o}"),
            Scope::Enterprise(e) => write!(f, "enterprise:{e}"),
        }
    }
}

/// A runner group by id, or by name (resolved once per scope).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RunnerGroup {
    Id(u64),
    Name(String),
}

/// GitHub's record of a registered runner.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RegisteredRunner {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub os: String,
    /// `online` or `offline`.
    pub status: String,
    pub busy: bool,
    #[serde(default)]
    pub ephemeral: bool,
    #[serde(default, deserialize_with = "label_names")]
    pub labels: Labels,
    #[serde(default)]
    pub runner_group_id: Option<u64>,
}

impl RegisteredRunner {
    pub fn is_online(&self) -> bool {
        self.status == "online"
    }
}

fn label_names<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
    #[derive(Deserialize)]
    struct Label {
        name: String,
    }
    Ok(Labels::new(
        Vec::<Label>::deserialize(d)?.into_iter().map(|l| l.name),
    ))
}

/// A runner registered just in time, and the config its machine starts with
/// (`./run.sh --jitconfig <config>`): single-use, and a secret.
#[derive(Clone, Debug)]
pub struct JitConfig {
    pub runner: RegisteredRunner,
    pub config: Secret,
}

/// A registration token: valid until `expires_at`, usable by any number of runners.
#[derive(Clone, Debug)]
pub struct RegistrationToken {
    pub token: Secret,
    pub expires_at: Time,
}

#[derive(Deserialize)]
struct JitAnswer {
    runner: RegisteredRunner,
    encoded_jit_config: Secret,
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: Secret,
    expires_at: String,
}

#[derive(Deserialize)]
struct Group {
    id: u64,
    name: String,
}

impl Client {
    /// Every runner of the scope, across all pages.
    pub async fn list_runners(&self, scope: &Scope) -> Result<Vec<RegisteredRunner>> {
        let url = self.url(&format!(
            "{}/actions/runners?per_page={PER_PAGE}",
            scope.path()
        ));
        let first = self
            .send(&Call::new(Method::GET, url, Priority::Housekeeping))
            .await?;
        self.get_all(first, "runners", Priority::Housekeeping).await
    }

    /// Every runner of the scope, asked conditionally: `Unchanged` (a 304, free of budget) when
    /// nothing changed since the last answer. Only a list that fits one page is asked that way:
    /// runners are listed oldest first, so a later page can change under an unchanged first one.
    pub async fn runners(&self, scope: &Scope) -> Result<Polled<Vec<RegisteredRunner>>> {
        let url = self.url(&format!(
            "{}/actions/runners?per_page={PER_PAGE}",
            scope.path()
        ));
        let mut call = Call::new(Method::GET, url, Priority::Housekeeping);
        call.conditional = true;
        let first = self.send(&call).await?;
        if first.status == 304 {
            return Ok(Polled::Unchanged);
        }
        let headers = first.headers.clone();
        let single_page = next_link(&headers).is_none();
        let runners = self
            .get_all(first, "runners", Priority::Housekeeping)
            .await?;
        if single_page {
            self.remember_etag(&call.url, &headers);
        } else {
            self.forget_etag(&call.url);
        }
        Ok(Polled::Changed(runners))
    }

    /// The runner named `name`, if registered: after a crash between asking for a JIT config
    /// and recording it, the name (mayfly's idempotency key) finds the runner again.
    pub async fn find_runner(&self, scope: &Scope, name: &str) -> Result<Option<RegisteredRunner>> {
        let mut url = reqwest::Url::parse(&self.url(&format!("{}/actions/runners", scope.path())))
            .map_err(|_| Error::Transport("the API URL does not parse".into()))?;
        url.query_pairs_mut().append_pair("name", name);
        let reply = self
            .send(&Call::new(Method::GET, url.into(), Priority::Essential))
            .await?;
        let runners: Vec<RegisteredRunner> =
            self.get_all(reply, "runners", Priority::Essential).await?;
        Ok(runners
            .into_iter()
            .find(|r| r.name.eq_ignore_ascii_case(name)))
    }

    pub async fn runner(&self, scope: &Scope, id: u64) -> Result<RegisteredRunner> {
        let url = self.url(&format!("{}/actions/runners/{id}", scope.path()));
        self.send(&Call::new(Method::GET, url, Priority::Housekeeping))
            .await?
            .json()
    }

    /// Deletes a runner. Safe to repeat: a runner that is gone already counts as deleted. A busy
    /// runner answers `Busy`, which is no failure: its job has to finish first.
    pub async fn delete_runner(&self, scope: &Scope, id: u64) -> Result<()> {
        let url = self.url(&format!("{}/actions/runners/{id}", scope.path()));
        match self
            .send(&Call::new(Method::DELETE, url, Priority::Essential))
            .await
        {
            Ok(_) | Err(Error::NotFound) => Ok(()),
            Err(Error::Http { status: 422, .. }) => Err(Error::Busy),
            Err(e) => Err(e),
        }
    }

    /// Registers runner `name` and returns its single-use config. The name is the caller's
    /// idempotency key: a second call with it answers `Conflict`.
    pub async fn jit_config(
        &self,
        scope: &Scope,
        name: &str,
        labels: &Labels,
        group: Option<&RunnerGroup>,
    ) -> Result<JitConfig> {
        let runner_group_id = self.runner_group_id(scope, group).await?;
        let mut call = Call::new(
            Method::POST,
            self.url(&format!(
                "{}/actions/runners/generate-jitconfig",
                scope.path()
            )),
            Priority::Essential,
        );
        let labels: Vec<&str> = labels.iter().collect();
        call.body = Some(json!({
            "name": name,
            "runner_group_id": runner_group_id,
            "labels": labels,
            "work_folder": "_work",
        }));
        let answer: JitAnswer = self.send(&call).await?.json()?;
        Ok(JitConfig {
            runner: answer.runner,
            config: answer.encoded_jit_config,
        })
    }

    /// A registration token, for runners configured with `config.sh --token` instead of JIT.
    pub async fn registration_token(&self, scope: &Scope) -> Result<RegistrationToken> {
        let url = self.url(&format!(
            "{}/actions/runners/registration-token",
            scope.path()
        ));
        let answer: TokenAnswer = self
            .send(&Call::new(Method::POST, url, Priority::Essential))
            .await?
            .json()?;
        let expires_at = answer
            .expires_at
            .parse::<jiff::Timestamp>()
            .map(|t| Time::from_millis(t.as_millisecond()))
            .map_err(|_| Error::Transport("expires_at is not a timestamp".into()))?;
        Ok(RegistrationToken {
            token: answer.token,
            expires_at,
        })
    }

    /// The group id for new runners: 1 in a repository, else the configured id, or the id of
    /// the configured name (asked once, then remembered).
    pub async fn runner_group_id(&self, scope: &Scope, group: Option<&RunnerGroup>) -> Result<u64> {
        let name = match (scope, group) {
            (Scope::Repo(_), _) | (_, None) => return Ok(DEFAULT_GROUP),
            (_, Some(RunnerGroup::Id(id))) => return Ok(*id),
            (_, Some(RunnerGroup::Name(n))) => n,
        };
        let key = (scope.path(), name.to_ascii_lowercase());
        if let Some(id) = self.groups().get(&key) {
            return Ok(*id);
        }
        let url = self.url(&format!(
            "{}/actions/runner-groups?per_page={PER_PAGE}",
            scope.path()
        ));
        let first = self
            .send(&Call::new(Method::GET, url, Priority::Essential))
            .await?;
        let groups: Vec<Group> = self
            .get_all(first, "runner_groups", Priority::Essential)
            .await?;
        let id = groups
            .iter()
            .find(|g| g.name.eq_ignore_ascii_case(name))
            .map(|g| g.id)
            .ok_or(Error::NotFound)?;
        self.groups().insert(key, id);
        Ok(id)
    }

    fn groups(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<(String, String), u64>> {
        self.inner.groups.lock().unwrap_or_else(|e| e.into_inner())
    }
}
