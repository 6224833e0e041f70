//! The forge side of a pass: which scope a runner registers in, the runner lists (asked
//! conditionally, so an unchanged list is free), single-use credentials, deregistration.

use mayfly_core::{JobKey, Labels};
use mayfly_forge::github::{
    Client, Error, GithubConfig, Polled, RegisteredRunner, Registration, Repo, Scope,
};
use mayfly_provider::bootstrap::Credential;
use std::collections::HashMap;
use std::sync::Mutex;

pub struct Runners {
    client: Client,
    config: GithubConfig,
    /// The last answer per scope: a 304 means it still holds.
    cache: Mutex<HashMap<Scope, Vec<RegisteredRunner>>>,
    /// When every scope was last read.
    listed_at: Mutex<Option<mayfly_core::Time>>,
    /// The web address runners register against in token mode (`https://github.com`).
    web_url: String,
}

impl Runners {
    pub fn new(client: Client, config: GithubConfig) -> Runners {
        let web_url = web_url(&config.client.api_url);
        Runners {
            client,
            config,
            cache: Mutex::new(HashMap::new()),
            listed_at: Mutex::new(None),
            web_url,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Organization or enterprise runners when one is configured (they serve every repository
    /// in it); otherwise the job's repository, and for standby runners the first repository.
    pub fn scope_for(&self, job: Option<&JobKey>) -> Option<Scope> {
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

    /// What the planner must know of where runners register.
    pub fn runner_scope(&self) -> mayfly_core::RunnerScope {
        match self.scope_for(None) {
            Some(Scope::Repo(r)) => mayfly_core::RunnerScope::Repository {
                standby: Some(r.to_string()),
            },
            Some(_) => mayfly_core::RunnerScope::Shared,
            None => mayfly_core::RunnerScope::Repository { standby: None },
        }
    }

    /// The scopes whose runners a pass lists: where `scope_for` registers them.
    pub fn scopes(&self) -> Vec<Scope> {
        if let Some(scope) = self.scope_for(None)
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

    /// Every runner of every scope, with its scope. Any scope that cannot be read fails the
    /// whole list: a pass that does not see a busy runner must not act on its machine.
    pub async fn list(
        &self,
        now: mayfly_core::Time,
    ) -> Result<Vec<(Scope, RegisteredRunner)>, Error> {
        let mut all = Vec::new();
        for scope in self.scopes() {
            let known = self
                .cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&scope);
            let polled = match self.client.runners(&scope).await? {
                // The ETag was the client's (clones share them), not this list's: a 304 would
                // stand for runners this pass never saw, and a busy one would look absent.
                Polled::Unchanged if !known => {
                    Polled::Changed(self.client.list_runners(&scope).await?)
                }
                polled => polled,
            };
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Polled::Changed(list) = polled {
                cache.insert(scope.clone(), list);
            }
            if let Some(list) = cache.get(&scope) {
                all.extend(list.iter().map(|r| (scope.clone(), r.clone())));
            }
        }
        *self.listed_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        Ok(all)
    }

    /// When the last [`Runners::list`] that read every scope ran.
    pub fn listed_at(&self) -> Option<mayfly_core::Time> {
        *self.listed_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The runners as the last [`Runners::list`] found them, if it read every scope no longer
    /// than `max_age` before `now`: what a pass that acts on nothing the runners say plans with.
    pub fn last_list(
        &self,
        now: mayfly_core::Time,
        max_age: std::time::Duration,
    ) -> Option<Vec<(Scope, RegisteredRunner)>> {
        let listed_at = (*self.listed_at.lock().unwrap_or_else(|e| e.into_inner()))?;
        if now.since(listed_at) > max_age {
            return None;
        }
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = Vec::new();
        for scope in self.scopes() {
            let list = cache.get(&scope)?;
            all.extend(list.iter().map(|r| (scope.clone(), r.clone())));
        }
        Some(all)
    }

    /// A single-use credential for runner `name`. A runner left with that name (a crash after
    /// an earlier registration, or the previous job of a recycled machine) is removed first,
    /// unless it is busy.
    pub async fn credential(
        &self,
        scope: &Scope,
        name: &str,
        labels: &Labels,
    ) -> Result<Credential, Error> {
        match self.config.registration {
            Registration::Jit => {
                let group = self.config.runner_group.as_ref();
                match self.client.jit_config(scope, name, labels, group).await {
                    Ok(jit) => Ok(Credential::Jit(jit.config)),
                    Err(Error::Conflict { .. }) => {
                        self.remove_by_name(scope, name).await?;
                        let jit = self.client.jit_config(scope, name, labels, group).await?;
                        Ok(Credential::Jit(jit.config))
                    }
                    Err(e) => Err(e),
                }
            }
            Registration::Token => {
                self.remove_by_name(scope, name).await?;
                let token = self.client.registration_token(scope).await?;
                Ok(Credential::Token {
                    url: self.scope_url(scope),
                    token: token.token,
                    name: name.to_string(),
                    labels: labels.iter().map(str::to_string).collect(),
                    group: match &self.config.runner_group {
                        Some(mayfly_forge::github::RunnerGroup::Name(n)) => Some(n.clone()),
                        _ => None,
                    },
                })
            }
        }
    }

    pub async fn remove(&self, scope: &Scope, id: u64) -> Result<(), Error> {
        self.client.delete_runner(scope, id).await
    }

    /// Removes runner `name` if registered; `Busy` if it is running a job.
    pub async fn remove_by_name(&self, scope: &Scope, name: &str) -> Result<(), Error> {
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
