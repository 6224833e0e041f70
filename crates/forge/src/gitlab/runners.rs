//! Runner records: one per machine, created with `POST /user/runners` (its glrt- token is the
//! machine's single-use credential), listed per scope, checked for a job, deleted after its
//! machine. GitLab deletes a busy runner without a word, so `deregister` asks first.

use super::client::{Call, Client, PER_PAGE};
use super::error::{Error, Result};
use super::ratelimit::Priority;
use mayfly_core::{Labels, Secret, Time};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use std::fmt;

/// Where a runner is registered and whose jobs it takes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunnerScope {
    /// Every project's (administrators only).
    Instance,
    /// The group's projects and its subgroups'.
    Group { id: u64, path: String },
    /// One project's.
    Project { id: u64, path: String },
}

impl fmt::Display for RunnerScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunnerScope::Instance => f.write_str("instance"),
            RunnerScope::Group { path, .. } => write!(f, "group:{path}"),
            RunnerScope::Project { path, .. } => write!(f, "project:{path}"),
        }
    }
}

impl RunnerScope {
    /// Whether a runner of this scope may take a job of the project `path`.
    pub fn covers(&self, project_path: &str) -> bool {
        match self {
            RunnerScope::Instance => true,
            RunnerScope::Project { path, .. } => path.eq_ignore_ascii_case(project_path),
            RunnerScope::Group { path, .. } => {
                project_path
                    .get(..path.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(path))
                    && project_path[path.len()..].starts_with('/')
            }
        }
    }
}

/// A runner record made for one machine: its id, and the token the machine starts with
/// (`gitlab-runner run-single --token`), shown by GitLab this once.
#[derive(Clone, Debug)]
pub struct CreatedRunner {
    pub id: u64,
    pub token: Secret,
    pub token_expires_at: Option<Time>,
}

/// GitLab's record of a runner. Lists leave `tags` empty; `Client::runner` fills them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RegisteredRunner {
    pub id: u64,
    /// mayfly's instance name.
    #[serde(default, deserialize_with = "null_is_empty")]
    pub description: String,
    #[serde(default)]
    pub runner_type: String,
    /// `online`, `offline`, `stale` or `never_contacted`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub paused: bool,
    #[serde(default, rename = "tag_list", deserialize_with = "tags")]
    pub tags: Labels,
    #[serde(default)]
    pub contacted_at: Option<String>,
}

impl RegisteredRunner {
    pub fn is_online(&self) -> bool {
        self.status == "online"
    }
}

fn null_is_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

fn tags<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
    Ok(Labels::new(
        Option::<Vec<String>>::deserialize(d)?.unwrap_or_default(),
    ))
}

#[derive(Deserialize)]
struct Created {
    id: u64,
    token: Secret,
    token_expires_at: Option<String>,
}

/// What `POST /runners/verify` says of a valid authentication token.
#[derive(Clone, Debug, Deserialize)]
pub struct VerifiedRunner {
    pub id: u64,
    #[serde(default)]
    pub token_expires_at: Option<String>,
}

#[derive(Deserialize)]
struct RunnerJob {
    id: u64,
    status: String,
}

impl Client {
    /// Creates the runner record a machine starts with: tags = the pool's, type and owner from
    /// the scope, description = the instance name, no untagged jobs (unless it has no tags),
    /// locked to its project. One `POST /user/runners`, never repeated on a failure: the
    /// caller finds a record whose answer was lost by its description.
    pub async fn create_runner(
        &self,
        scope: &RunnerScope,
        description: &str,
        tags: &Labels,
        maximum_timeout_secs: Option<u64>,
    ) -> Result<CreatedRunner> {
        let tag_list: Vec<&str> = tags.iter().collect();
        let mut body = json!({
            "description": description,
            "tag_list": tag_list,
            // mayfly counts a job without tags as served by any runner its pool makes, as a
            // GitHub job's labels by a runner with more: the runner must take untagged jobs.
            "run_untagged": true,
            "access_level": "not_protected",
            "paused": false,
        });
        match scope {
            RunnerScope::Instance => body["runner_type"] = json!("instance_type"),
            RunnerScope::Group { id, .. } => {
                body["runner_type"] = json!("group_type");
                body["group_id"] = json!(id);
            }
            RunnerScope::Project { id, .. } => {
                body["runner_type"] = json!("project_type");
                body["project_id"] = json!(id);
                body["locked"] = json!(true);
            }
        }
        if let Some(t) = maximum_timeout_secs {
            body["maximum_timeout"] = json!(t);
        }
        let mut call = Call::new(Method::POST, self.url("/user/runners"), Priority::Essential);
        call.body = Some(body);
        let created: Created = self.send(&call).await?.json()?;
        let token_expires_at = created
            .token_expires_at
            .as_deref()
            .map(|t| {
                super::time::parse(t)
                    .ok_or_else(|| Error::Transport("token_expires_at is not a time".into()))
            })
            .transpose()?;
        Ok(CreatedRunner {
            id: created.id,
            token: created.token,
            token_expires_at,
        })
    }

    /// `POST /runners/verify {token, system_id}`, as `gitlab-runner register` does: checks a
    /// `glrt-` token and records this host as one of the runner's managers. Needs no personal
    /// token. A bad token is `Forbidden`.
    pub async fn verify_runner(&self, token: &Secret, system_id: &str) -> Result<VerifiedRunner> {
        let mut call = Call::new(
            Method::POST,
            self.url("/runners/verify"),
            Priority::Essential,
        );
        call.anonymous = true;
        call.body = Some(json!({"token": token.expose(), "system_id": system_id}));
        self.send(&call).await?.json()
    }

    /// `GET /runners/:id`, tags included.
    pub async fn runner(&self, id: u64) -> Result<RegisteredRunner> {
        let url = self.url(&format!("/runners/{id}"));
        self.send(&Call::new(Method::GET, url, Priority::Housekeeping))
            .await?
            .json()
    }

    /// Every runner registered in the scope itself (not the ones it inherits), across pages.
    pub async fn list_runners(&self, scope: &RunnerScope) -> Result<Vec<RegisteredRunner>> {
        let path = match scope {
            RunnerScope::Instance => "/runners/all?type=instance_type".to_string(),
            RunnerScope::Group { id, .. } => format!("/groups/{id}/runners?type=group_type"),
            RunnerScope::Project { id, .. } => format!("/projects/{id}/runners?type=project_type"),
        };
        let mut runners: Vec<RegisteredRunner> = self
            .list(
                self.url(&format!("{path}&per_page={PER_PAGE}")),
                Priority::Housekeeping,
            )
            .await?;
        // A group's list shows its subgroups' runners too; keep the scope's own.
        if let RunnerScope::Group { .. } | RunnerScope::Project { .. } = scope {
            let want = match scope {
                RunnerScope::Group { .. } => "group_type",
                _ => "project_type",
            };
            runners.retain(|r| r.runner_type.is_empty() || r.runner_type == want);
        }
        Ok(runners)
    }

    /// Whether the runner has a job: its newest job is running, or pending, which with
    /// two-phase commit means handed to it and not yet confirmed (a job in that window would be
    /// missed by `?status=running`). One `GET /runners/:id/jobs?order_by=id&sort=desc&per_page=1`:
    /// a single-use runner's newest job is its only one.
    pub async fn runner_busy(&self, id: u64) -> Result<bool> {
        let url = self.url(&format!(
            "/runners/{id}/jobs?order_by=id&sort=desc&per_page=1"
        ));
        let jobs: Vec<RunnerJob> = self
            .send(&Call::new(Method::GET, url, Priority::Essential))
            .await?
            .json()?;
        let busy = jobs
            .first()
            .is_some_and(|j| matches!(j.status.as_str(), "pending" | "running" | "canceling"));
        if let Some(j) = jobs.first() {
            tracing::debug!(runner = id, job = j.id, status = %j.status, busy, "runner's newest job");
        }
        Ok(busy)
    }

    /// `DELETE /runners/:id`, unconditionally. Safe to repeat: a runner that is gone already
    /// counts as deleted.
    pub async fn delete_runner(&self, id: u64) -> Result<()> {
        let url = self.url(&format!("/runners/{id}"));
        match self
            .send(&Call::new(Method::DELETE, url, Priority::Essential))
            .await
        {
            Ok(_) | Err(Error::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes the runner unless it has a job (`Busy`: its job must end first). Two calls: the
    /// check and the delete; a runner already gone costs one and is no error.
    pub async fn deregister(&self, id: u64) -> Result<()> {
        match self.runner_busy(id).await {
            Ok(true) => Err(Error::Busy),
            Ok(false) => self.delete_runner(id).await,
            Err(Error::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_cover_their_projects() {
        let g = RunnerScope::Group {
            id: 1,
            path: "acme/platform".into(),
        };
        assert!(g.covers("acme/platform/app") && g.covers("ACME/Platform/deep/app"));
        assert!(!g.covers("acme/platformer/app") && !g.covers("acme/platform"));
        let p = RunnerScope::Project {
            id: 2,
            path: "acme/app".into(),
        };
        assert!(p.covers("Acme/App") && !p.covers("acme/app2"));
        assert!(RunnerScope::Instance.covers("any/thing"));
        assert_eq!(g.to_string(), "group:acme/platform");
    }

    #[test]
    fn a_created_runner_never_shows_its_token() {
        let c = CreatedRunner {
            id: 1,
            token: Secret::new("glrt-secret"),
            token_expires_at: None,
        };
        assert!(!format!("{c:?}").contains("glrt-secret"));
    }
}
