//! GitLab CI behind the forge seam: the resolved projects (configured, or found through
//! configured groups); one runner record per machine (`POST /user/runners`, its `glrt-` token
//! the credential); a busy check before every delete, since GitLab deletes a busy runner.

use super::{Forge, ForgeError};
use crate::gitlab::{
    Client, Error, GitlabConfig, JobScope, RegisteredRunner as GitlabRunner, RunnerScope, Scopes,
};
use async_trait::async_trait;
use mayfly_core::forge::{Confirmation, Credential, Issued, RegisteredRunner, ScopeId};
use mayfly_core::{ForgeKind, JobKey, Labels};
use std::collections::HashMap;
use std::sync::Mutex;

const KIND: ForgeKind = ForgeKind::Gitlab;

/// How new runner records are made, beyond what a credential call names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GitlabRunners {
    /// `maximum_timeout` (seconds) of new runners (`gitlab.maximum_timeout_secs`).
    pub maximum_timeout_secs: Option<u64>,
}

impl From<&GitlabConfig> for GitlabRunners {
    fn from(config: &GitlabConfig) -> GitlabRunners {
        GitlabRunners {
            maximum_timeout_secs: config.maximum_timeout_secs,
        }
    }
}

/// GitLab as one forge: a client, the projects it serves with their runner scopes (the runner
/// type is already applied there), and how records are made.
pub struct GitlabForge {
    client: Client,
    scopes: Scopes,
    runners: GitlabRunners,
    /// Tags per runner id: GitLab's runner lists leave them out, and a record's tags never
    /// change, so each runner's are read (or known from its creation) once.
    tags: Mutex<HashMap<u64, Labels>>,
    /// The record made for each name by this process: a second credential for a name removes
    /// the first record instead of leaving two with one description.
    named: Mutex<HashMap<(RunnerScope, String), u64>>,
}

impl GitlabForge {
    /// `scopes` from [`Client::resolve`] of the `[gitlab]` section.
    pub fn new(client: Client, scopes: Scopes, runners: GitlabRunners) -> GitlabForge {
        GitlabForge {
            client,
            scopes,
            runners,
            tags: Mutex::new(HashMap::new()),
            named: Mutex::new(HashMap::new()),
        }
    }

    /// The forge of a `[gitlab]` section: its projects and groups resolved (one call per
    /// project, one per group and page of its projects), its runner settings applied.
    pub async fn resolve(client: Client, config: &GitlabConfig) -> Result<GitlabForge, ForgeError> {
        let scopes = client.resolve(config).await?;
        Ok(GitlabForge::new(
            client,
            scopes,
            GitlabRunners::from(config),
        ))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn served(&self) -> &Scopes {
        &self.scopes
    }

    fn scope_of(&self, id: &ScopeId) -> Result<RunnerScope, ForgeError> {
        self.scopes
            .runner_scopes()
            .into_iter()
            .find(|s| id.forge == KIND && *id.scope == *s.to_string())
            .ok_or_else(|| ForgeError::NotServed {
                forge: KIND,
                what: format!("scope {id}"),
            })
    }

    /// The runner's tags: from the list when it has them, else remembered from its creation,
    /// else none known. Never read one by one: the planner matches a machine's supply with the
    /// machine's own labels when its runner's are not known (mayfly made the record with
    /// them), and no decision rests on the tags of a runner that is not mayfly's.
    fn tags_of(&self, r: &GitlabRunner) -> Labels {
        if !r.tags.is_empty() {
            return r.tags.clone();
        }
        self.lock_tags().get(&r.id).cloned().unwrap_or_default()
    }

    fn lock_tags(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Labels>> {
        self.tags.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_named(&self) -> std::sync::MutexGuard<'_, HashMap<(RunnerScope, String), u64>> {
        self.named.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deletes the record (unless it has a job, when `check`ed first: a busy check costs a
    /// call), and forgets it.
    async fn remove(&self, scope: &RunnerScope, id: u64, check: bool) -> Result<(), ForgeError> {
        if check {
            self.client.deregister(id).await?;
        } else {
            self.client.delete_runner(id).await?;
        }
        self.lock_tags().remove(&id);
        self.lock_named()
            .retain(|(s, _), known| !(s == scope && *known == id));
        Ok(())
    }
}

fn scope_id(scope: &RunnerScope) -> ScopeId {
    ScopeId::new(KIND, scope.to_string())
}

#[async_trait]
impl Forge for GitlabForge {
    fn kind(&self) -> ForgeKind {
        KIND
    }

    /// A job of a resolved project (by full path or id, case-insensitive).
    fn owns(&self, job: &JobKey) -> bool {
        job.forge == KIND && self.scopes.owns(&job.scope)
    }

    /// The job's project's runner scope; a standby runner's is the first project's.
    fn scope_for(&self, job: Option<&JobKey>) -> Option<ScopeId> {
        match job {
            Some(j) if !self.owns(j) => None,
            Some(j) => self.scopes.scope_for(&j.scope).map(scope_id),
            None => self
                .scopes
                .served
                .first()
                .map(|s| scope_id(&s.runner_scope)),
        }
    }

    fn scopes(&self) -> Vec<ScopeId> {
        self.scopes.runner_scopes().iter().map(scope_id).collect()
    }

    /// `Shared` when one runner scope serves every project (an instance, or one group and no
    /// project outside it); otherwise `Repository`, standby runners in the first project. A
    /// group runner among several scopes may take a job of another project of its group than
    /// the one it was made for: the planner then counts less supply than there is, which can
    /// cost a spare machine, never a job left waiting.
    fn runner_scope(&self) -> mayfly_core::RunnerScope {
        let scopes = self.scopes.runner_scopes();
        match scopes.as_slice() {
            [RunnerScope::Instance] | [RunnerScope::Group { .. }] => {
                mayfly_core::RunnerScope::Shared
            }
            _ => mayfly_core::RunnerScope::Repository {
                standby: self
                    .scopes
                    .served
                    .first()
                    .map(|s| s.project.path_with_namespace.clone()),
            },
        }
    }

    /// Each scope's own runners (a page per 100), with the tags this process gave them (GitLab's
    /// lists leave tags out; see `tags_of`). GitLab's lists say nothing of a runner's job, so busy is learned
    /// for the online runners only (an offline or never-contacted runner runs nothing), the
    /// cheaper of two ways: one read of each online runner's newest job, or, when there are
    /// more online runners than served projects, one list per project of its pending and
    /// running jobs, whose runners are the busy ones. (A group runner busy with a job of a
    /// project mayfly does not serve then looks idle: its delete still checks it first.)
    async fn runners(&self) -> Result<Vec<RegisteredRunner>, ForgeError> {
        let mut listed = Vec::new();
        for scope in self.scopes.runner_scopes() {
            for r in self.client.list_runners(&scope).await? {
                listed.push((scope.clone(), r));
            }
        }
        let online = listed.iter().filter(|(_, r)| r.is_online()).count();
        let projects: Vec<u64> = self.scopes.projects().map(|p| p.id).collect();
        let by_jobs = online > projects.len();
        let mut with_jobs = std::collections::HashSet::new();
        if by_jobs {
            for project in projects {
                let scopes = [JobScope::Pending, JobScope::Running];
                for job in self.client.project_jobs(project, &scopes).await? {
                    with_jobs.extend(job.runner.map(|r| r.id));
                }
            }
        }
        let mut all = Vec::with_capacity(listed.len());
        for (scope, r) in listed {
            let online = r.is_online();
            let busy = if !online {
                false
            } else if by_jobs {
                with_jobs.contains(&r.id)
            } else {
                match self.client.runner_busy(r.id).await {
                    Ok(busy) => busy,
                    Err(Error::NotFound) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            let labels = self.tags_of(&r);
            all.push(RegisteredRunner {
                id: r.id,
                name: r.description,
                online,
                busy,
                labels,
                scope: scope_id(&scope),
            });
        }
        // What every scope no longer lists is gone: forget it, so memory follows the runners.
        let listed: std::collections::HashSet<u64> = all.iter().map(|r| r.id).collect();
        self.lock_tags().retain(|id, _| listed.contains(id));
        self.lock_named().retain(|_, id| listed.contains(id));
        Ok(all)
    }

    /// One `POST /user/runners` (tags = `labels`, description = `name`). A record this process
    /// made for the name before is deregistered first (a busy check and a delete; `Busy` if it
    /// has a job). The create is never repeated: a record whose answer was lost is found by its
    /// description ([`Forge::deregister_by_name`]).
    async fn credential(
        &self,
        scope: &ScopeId,
        name: &str,
        labels: &Labels,
    ) -> Result<Issued, ForgeError> {
        let scope = self.scope_of(scope)?;
        let key = (scope.clone(), name.to_string());
        let earlier = self.lock_named().get(&key).copied();
        if let Some(id) = earlier {
            self.remove(&scope, id, true).await?;
        }
        let created = self
            .client
            .create_runner(&scope, name, labels, self.runners.maximum_timeout_secs)
            .await?;
        self.lock_tags().insert(created.id, labels.clone());
        self.lock_named().insert(key, created.id);
        Ok(Issued {
            credential: Credential::Gitlab {
                url: self.client.instance_url().to_string(),
                token: created.token,
            },
            runner_id: Some(created.id),
        })
    }

    /// The runner's newest job first (`Busy` if it is pending, running or canceling), then the
    /// delete: two calls, one for a runner already gone.
    async fn deregister(&self, scope: &ScopeId, id: u64) -> Result<(), ForgeError> {
        let scope = self.scope_of(scope)?;
        self.remove(&scope, id, true).await
    }

    /// The record this process made for the name, when it knows it; else the scope's list (a
    /// page per 100), then [`Forge::deregister`] of every record with that description
    /// (case-insensitive, as GitHub's names): GitLab does not keep descriptions unique, so a
    /// lost answer can leave two (a record whose answer was lost is not in memory either).
    async fn deregister_by_name(&self, scope: &ScopeId, name: &str) -> Result<(), ForgeError> {
        let scope = self.scope_of(scope)?;
        let made = self
            .lock_named()
            .get(&(scope.clone(), name.to_string()))
            .copied();
        if let Some(id) = made {
            return self.remove(&scope, id, true).await;
        }
        let named: Vec<u64> = self
            .client
            .list_runners(&scope)
            .await?
            .into_iter()
            .filter(|r| r.description.eq_ignore_ascii_case(name))
            .map(|r| r.id)
            .collect();
        for id in named {
            self.remove(&scope, id, true).await?;
        }
        Ok(())
    }

    /// One `DELETE /runners/:id` of the record (the listed one, or the one this process made
    /// for the name), without the busy check: its machine is off. A record neither shows is
    /// looked for by description as [`Forge::deregister_by_name`] does.
    async fn deregister_stopped(
        &self,
        scope: &ScopeId,
        id: Option<u64>,
        name: &str,
    ) -> Result<(), ForgeError> {
        let gitlab_scope = self.scope_of(scope)?;
        let made = self
            .lock_named()
            .get(&(gitlab_scope.clone(), name.to_string()))
            .copied();
        match id.or(made) {
            Some(id) => self.remove(&gitlab_scope, id, false).await,
            None => self.deregister_by_name(scope, name).await,
        }
    }

    /// One `GET /projects/:id/jobs/:job_id`.
    async fn confirm(&self, job: &JobKey) -> Result<Confirmation, ForgeError> {
        let project = match self.scopes.project(&job.scope) {
            Some(served) if job.forge == KIND => served.project.id,
            _ => {
                return Err(ForgeError::NotServed {
                    forge: KIND,
                    what: format!("job {job}"),
                });
            }
        };
        match self.client.job(project, job.id).await {
            Ok(found) => Ok(match found.job_status() {
                Some(status) => Confirmation::Status {
                    status,
                    runner: found
                        .runner
                        .and_then(|r| r.description)
                        .filter(|d| !d.is_empty()),
                },
                None => Confirmation::Other,
            }),
            Err(Error::NotFound) => Ok(Confirmation::Gone),
            Err(e) => Err(e.into()),
        }
    }

    /// `gitlab-runner run-single` leaves its record behind.
    fn keeps_used_runners(&self) -> bool {
        true
    }

    /// GitLab's job reads are not conditional: nothing is kept per job.
    fn forget_job(&self, _job: &JobKey) {}
}
