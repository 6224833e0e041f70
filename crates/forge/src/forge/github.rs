//! GitHub Actions behind the forge seam: the configured repositories, organization or
//! enterprise; runner lists asked with ETags; JIT configs (or registration tokens) as credentials.

use super::{Forge, ForgeError};
use crate::github::{
    Client, Error, GithubConfig, Polled, RegisteredRunner as GithubRunner, Registration, Repo,
    RunnerGroup, Scope,
};
use async_trait::async_trait;
use mayfly_core::forge::{Confirmation, Credential, Issued, RegisteredRunner, ScopeId};
use mayfly_core::{ForgeKind, JobKey, Labels};
use std::collections::HashMap;
use std::sync::Mutex;

const KIND: ForgeKind = ForgeKind::Github;

/// GitHub as one forge: a client, the `[github]` scopes, the registration mode and the group.
pub struct GithubForge {
    client: Client,
    config: GithubConfig,
    /// The last answer per scope: a 304 means it still holds.
    cache: Mutex<HashMap<Scope, Vec<GithubRunner>>>,
    /// The web address runners register against in token mode (`https://github.com`).
    web_url: String,
}

impl GithubForge {
    pub fn new(client: Client, config: GithubConfig) -> GithubForge {
        let web_url = web_url(&config.client.api_url);
        GithubForge {
            client,
            config,
            cache: Mutex::new(HashMap::new()),
            web_url,
        }
    }

    /// A forge that confirms jobs and nothing else: it owns every GitHub job and lists no
    /// scope. The demand's truth check, which asks about whatever GitHub job the store holds.
    pub fn confirming(client: Client) -> GithubForge {
        let config = GithubConfig {
            client: crate::github::ClientConfig {
                api_url: crate::github::config::GITHUB_API.into(),
                auth: crate::github::AuthConfig::Token {
                    token: mayfly_core::Secret::new(""),
                },
                limits: Default::default(),
            },
            repositories: Vec::new(),
            organization: None,
            enterprise: None,
            runner_group: None,
            registration: Registration::default(),
        };
        GithubForge::new(client, config)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Organization or enterprise runners when one is configured (they serve every repository
    /// in it); otherwise the job's repository, and for standby runners the first repository.
    fn github_scope(&self, job: Option<&JobKey>) -> Option<Scope> {
        if let Some(org) = &self.config.organization {
            return Some(Scope::Org(org.clone()));
        }
        if let Some(e) = &self.config.enterprise {
            return Some(Scope::Enterprise(e.clone()));
        }
        match job {
            Some(k) => Repo::parse(&k.scope).ok().map(Scope::Repo),
            None => self
                .config
                .repositories
                .first()
                .and_then(|r| Repo::parse(r).ok())
                .map(Scope::Repo),
        }
    }

    fn github_scopes(&self) -> Vec<Scope> {
        if let Some(scope) = self.github_scope(None)
            && !matches!(scope, Scope::Repo(_))
        {
            return vec![scope];
        }
        self.config
            .repositories
            .iter()
            .filter_map(|r| Repo::parse(r).ok())
            .map(Scope::Repo)
            .collect()
    }

    /// The GitHub scope a scope id names, if it is one this forge lists runners of.
    fn scope_of(&self, id: &ScopeId) -> Result<Scope, ForgeError> {
        // GitHub's names are case-insensitive: a job's repository may be spelled otherwise
        // than the configuration spells it.
        self.github_scopes()
            .into_iter()
            .find(|s| id.forge == KIND && s.to_string().eq_ignore_ascii_case(&id.scope))
            .ok_or_else(|| ForgeError::NotServed {
                forge: KIND,
                what: format!("scope {id}"),
            })
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<Scope, Vec<GithubRunner>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn remove_by_name(&self, scope: &Scope, name: &str) -> Result<(), Error> {
        match self.client.find_runner(scope, name).await? {
            Some(r) => self.client.delete_runner(scope, r.id).await,
            None => Ok(()),
        }
    }

    fn scope_url(&self, scope: &Scope) -> String {
        match scope {
            Scope::Repo(r) => format!("{}/{}/{}", self.web_url, r.owner, r.name),
            Scope::Org(o) => format!("{}/{o}", self.web_url),
            Scope::Enterprise(e) => format!("{}/enterprises/{e}", self.web_url),
        }
    }
}

fn scope_id(scope: &Scope) -> ScopeId {
    ScopeId::new(KIND, scope.to_string())
}

fn runner(scope: &Scope, r: &GithubRunner) -> RegisteredRunner {
    RegisteredRunner {
        id: r.id,
        name: r.name.clone(),
        online: r.is_online(),
        busy: r.busy,
        labels: r.labels.clone(),
        scope: scope_id(scope),
    }
}

#[async_trait]
impl Forge for GithubForge {
    fn kind(&self) -> ForgeKind {
        KIND
    }

    /// The repository list wins where there is one; else every repository of the organization;
    /// else (an enterprise, whose organizations GitHub does not list for free) every job.
    /// GitHub's names are case-insensitive.
    fn owns(&self, job: &JobKey) -> bool {
        if job.forge != KIND {
            return false;
        }
        let repo = job.scope.to_lowercase();
        if !self.config.repositories.is_empty() {
            return self
                .config
                .repositories
                .iter()
                .any(|r| r.to_lowercase() == repo);
        }
        if let Some(org) = &self.config.organization {
            return repo
                .split_once('/')
                .is_some_and(|(owner, _)| owner == org.to_lowercase());
        }
        true
    }

    fn scope_for(&self, job: Option<&JobKey>) -> Option<ScopeId> {
        if job.is_some_and(|j| !self.owns(j)) {
            return None;
        }
        self.github_scope(job).map(|s| scope_id(&s))
    }

    fn scopes(&self) -> Vec<ScopeId> {
        self.github_scopes().iter().map(scope_id).collect()
    }

    fn runner_scope(&self) -> mayfly_core::RunnerScope {
        match self.github_scope(None) {
            Some(Scope::Repo(r)) => mayfly_core::RunnerScope::Repository {
                standby: Some(r.to_string()),
            },
            Some(_) => mayfly_core::RunnerScope::Shared,
            None => mayfly_core::RunnerScope::Repository { standby: None },
        }
    }

    async fn runners(&self) -> Result<Vec<RegisteredRunner>, ForgeError> {
        let mut all = Vec::new();
        for scope in self.github_scopes() {
            let known = self.lock_cache().contains_key(&scope);
            let list = match self.client.runners(&scope).await? {
                Polled::Changed(list) => list,
                // The ETag was the client's (a clone shares them) and the answer is not
                // this forge's: a 304 would stand for a list it never saw. Ask in full.
                Polled::Unchanged if !known => self.client.list_runners(&scope).await?,
                Polled::Unchanged => {
                    let cache = self.lock_cache();
                    let list = cache.get(&scope).map(Vec::as_slice).unwrap_or_default();
                    all.extend(list.iter().map(|r| runner(&scope, r)));
                    continue;
                }
            };
            all.extend(list.iter().map(|r| runner(&scope, r)));
            self.lock_cache().insert(scope, list);
        }
        Ok(all)
    }

    /// JIT mode: one `generate-jitconfig`; a `Conflict` (a runner left with that name by a
    /// crash or a recycled machine) removes it by name and asks once more. Token mode: the
    /// name is removed first, then a registration token.
    async fn credential(
        &self,
        scope: &ScopeId,
        name: &str,
        labels: &Labels,
    ) -> Result<Issued, ForgeError> {
        let scope = self.scope_of(scope)?;
        match self.config.registration {
            Registration::Jit => {
                let group = self.config.runner_group.as_ref();
                let jit = match self.client.jit_config(&scope, name, labels, group).await {
                    Ok(jit) => jit,
                    Err(Error::Conflict { .. }) => {
                        self.remove_by_name(&scope, name).await?;
                        self.client.jit_config(&scope, name, labels, group).await?
                    }
                    Err(e) => return Err(e.into()),
                };
                Ok(Issued {
                    credential: Credential::Jit(jit.config),
                    runner_id: Some(jit.runner.id),
                })
            }
            Registration::Token => {
                self.remove_by_name(&scope, name).await?;
                let token = self.client.registration_token(&scope).await?;
                Ok(Issued {
                    credential: Credential::Token {
                        url: self.scope_url(&scope),
                        token: token.token,
                        name: name.to_string(),
                        labels: labels.iter().map(str::to_string).collect(),
                        group: match &self.config.runner_group {
                            Some(RunnerGroup::Name(n)) => Some(n.clone()),
                            _ => None,
                        },
                    },
                    runner_id: None,
                })
            }
        }
    }

    /// One `DELETE`; GitHub answers 422 for a runner running a job, which is `Busy`.
    async fn deregister(&self, scope: &ScopeId, id: u64) -> Result<(), ForgeError> {
        let scope = self.scope_of(scope)?;
        Ok(self.client.delete_runner(&scope, id).await?)
    }

    async fn deregister_by_name(&self, scope: &ScopeId, name: &str) -> Result<(), ForgeError> {
        let scope = self.scope_of(scope)?;
        Ok(self.remove_by_name(&scope, name).await?)
    }

    async fn confirm(&self, job: &JobKey) -> Result<Confirmation, ForgeError> {
        let repo = match Repo::parse(&job.scope) {
            Ok(repo) if self.owns(job) => repo,
            _ => {
                return Err(ForgeError::NotServed {
                    forge: KIND,
                    what: format!("job {job}"),
                });
            }
        };
        match self.client.job_if_changed(&repo, job.id).await {
            Ok(Polled::Unchanged) => Ok(Confirmation::Unchanged),
            Ok(Polled::Changed(found)) => Ok(match found.job_status() {
                Some(status) => Confirmation::Status {
                    status,
                    runner: found.runner_name.filter(|n| !n.is_empty()),
                },
                None => Confirmation::Other,
            }),
            Err(Error::NotFound) => Ok(Confirmation::Gone),
            Err(e) => Err(e.into()),
        }
    }

    fn forget_job(&self, job: &JobKey) {
        if let Ok(repo) = Repo::parse(&job.scope) {
            self.client.forget_job(&repo, job.id);
        }
    }
}

/// `https://api.github.com` → `https://github.com`; `https://ghes/api/v3` → `https://ghes`.
fn web_url(api_url: &str) -> String {
    let api = api_url.trim_end_matches('/');
    if let Some(host) = api.strip_prefix("https://api.") {
        return format!("https://{host}");
    }
    api.strip_suffix("/api/v3").unwrap_or(api).to_string()
}

#[cfg(test)]
mod tests {
    use super::web_url;

    #[test]
    fn runners_register_against_the_web_address() {
        assert_eq!(web_url("https://api.github.com"), "https://github.com");
        assert_eq!(
            web_url("https://ghes.example/api/v3/"),
            "https://ghes.example"
        );
        assert_eq!(web_url("http://127.0.0.1:9"), "http://127.0.0.1:9");
    }
}
