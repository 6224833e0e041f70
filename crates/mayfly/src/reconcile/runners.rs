//! The forge side of a pass, through the forge seam (`mayfly_forge::Forge`): which scope a
//! runner registers in, the runner lists (the engine's policy of planning with the last ones),
//! single-use credentials, deregistration. Nothing here knows which forge answers.

use mayfly_core::forge::{Credential, RegisteredRunner, ScopeId};
use mayfly_core::{JobKey, Labels, Time};
use mayfly_forge::github::{Client, GithubConfig};
use mayfly_forge::{Forge, ForgeError, GithubForge};
use std::sync::{Arc, Mutex};

pub struct Runners {
    forge: Arc<dyn Forge>,
    /// GitHub's client, for what does not speak the seam yet (the demand's confirmations).
    client: Client,
    /// The last complete list, and when it was read.
    last: Mutex<Option<(Time, Vec<RegisteredRunner>)>>,
}

impl Runners {
    /// The runners of the GitHub scopes `config` serves.
    pub fn new(client: Client, config: GithubConfig) -> Runners {
        Runners {
            forge: Arc::new(GithubForge::new(client.clone(), config)),
            client,
            last: Mutex::new(None),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Where a runner for `job` registers (for standby runners, `None`: the forge's first
    /// scope). `None`: the job's scope cannot be registered in.
    pub fn scope_for(&self, job: Option<&JobKey>) -> Option<ScopeId> {
        self.forge.scope_for(job)
    }

    /// What the planner must know of where runners register.
    pub fn runner_scope(&self) -> mayfly_core::RunnerScope {
        self.forge.runner_scope()
    }

    /// The scopes whose runners a pass lists.
    pub fn scopes(&self) -> Vec<ScopeId> {
        self.forge.scopes()
    }

    /// Every runner of every scope. Any scope that cannot be read fails the whole list: a pass
    /// that does not see a busy runner must not act on its machine.
    pub async fn list(&self, now: Time) -> Result<Vec<RegisteredRunner>, ForgeError> {
        let all = self.forge.runners().await?;
        *self.lock() = Some((now, all.clone()));
        Ok(all)
    }

    /// When the last [`Runners::list`] that read every scope ran.
    pub fn listed_at(&self) -> Option<Time> {
        self.lock().as_ref().map(|(at, _)| *at)
    }

    /// The runners as the last [`Runners::list`] found them, if no older than `max_age` at
    /// `now`: what a pass that acts on nothing the runners say plans with.
    pub fn last_list(
        &self,
        now: Time,
        max_age: std::time::Duration,
    ) -> Option<Vec<RegisteredRunner>> {
        match self.lock().as_ref() {
            Some((at, list)) if now.since(*at) <= max_age => Some(list.clone()),
            _ => None,
        }
    }

    /// A single-use credential for runner `name` (a runner left with that name is replaced,
    /// unless it is busy).
    pub async fn credential(
        &self,
        scope: &ScopeId,
        name: &str,
        labels: &Labels,
    ) -> Result<Credential, ForgeError> {
        Ok(self.forge.credential(scope, name, labels).await?.credential)
    }

    /// Deregisters runner `id`; `Busy` if it is running a job.
    pub async fn remove(&self, scope: &ScopeId, id: u64) -> Result<(), ForgeError> {
        self.forge.deregister(scope, id).await
    }

    /// Removes runner `name` if registered; `Busy` if it is running a job.
    pub async fn remove_by_name(&self, scope: &ScopeId, name: &str) -> Result<(), ForgeError> {
        self.forge.deregister_by_name(scope, name).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Time, Vec<RegisteredRunner>)>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}
