//! The forge side of a pass, through the forge seam (`mayfly_forge::Forge`): which forge and
//! scope a runner registers in, the runner lists (the engine's policy of planning with the last
//! ones), single-use credentials, deregistration. Nothing here knows which forge answers.

use mayfly_core::forge::{Credential, RegisteredRunner, ScopeId};
use mayfly_core::{ForgeKind, JobKey, Labels, RunnerScope, Time};
use mayfly_forge::github::{Client, GithubConfig};
use mayfly_forge::{Forge, ForgeError, GithubForge};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Runner ids are unique within a forge only: the engine sees GitLab's with this bit set, so
/// one list of both forges' runners never holds one id twice. Both forges' ids are far below.
const GITLAB_ID: u64 = 1 << 62;

pub struct Runners {
    /// The configured forges, GitHub first.
    forges: Vec<Arc<dyn Forge>>,
    /// The last complete list, and when it was read.
    last: Mutex<Option<(Time, Vec<RegisteredRunner>)>>,
}

impl Runners {
    /// The runners of the GitHub scopes `config` serves.
    pub fn new(client: Client, config: GithubConfig) -> Runners {
        Runners::of(vec![Arc::new(GithubForge::new(client, config))])
    }

    /// The runners of these forges (one of each kind at most; the first of a kind counts).
    pub fn of(forges: Vec<Arc<dyn Forge>>) -> Runners {
        Runners {
            forges,
            last: Mutex::new(None),
        }
    }

    /// Every forge, GitHub first.
    pub fn forges(&self) -> &[Arc<dyn Forge>] {
        &self.forges
    }

    /// The forge of `kind`, when it is configured.
    pub fn forge(&self, kind: ForgeKind) -> Option<&Arc<dyn Forge>> {
        self.forges.iter().find(|f| f.kind() == kind)
    }

    fn forge_for(&self, kind: ForgeKind) -> Result<&Arc<dyn Forge>, ForgeError> {
        self.forge(kind).ok_or_else(|| ForgeError::NotServed {
            forge: kind,
            what: format!("{} is not configured", kind.as_str()),
        })
    }

    /// Where a runner for `job` registers; for a standby runner (`None`), the default scope of
    /// `standby` (its pool's first forge). `None`: no scope to register in.
    pub fn scope_for(&self, job: Option<&JobKey>, standby: ForgeKind) -> Option<ScopeId> {
        let kind = job.map_or(standby, |j| j.forge);
        self.forge(kind)?.scope_for(job)
    }

    /// What the planner must know of where runners register: GitHub's (or the only forge's),
    /// and each other forge's.
    pub fn runner_scopes(&self) -> (RunnerScope, BTreeMap<ForgeKind, RunnerScope>) {
        let main = self
            .forge(ForgeKind::Github)
            .or(self.forges.first())
            .map(|f| f.runner_scope())
            .unwrap_or_default();
        let others = self
            .forges
            .iter()
            .filter(|f| f.kind() != ForgeKind::Github)
            .map(|f| (f.kind(), f.runner_scope()))
            .collect();
        (main, others)
    }

    /// The scopes whose runners a pass lists.
    pub fn scopes(&self) -> Vec<ScopeId> {
        self.forges.iter().flat_map(|f| f.scopes()).collect()
    }

    /// Every runner of every forge and scope. Any scope that cannot be read fails the whole
    /// list: a pass that does not see a busy runner must not act on its machine.
    pub async fn list(&self, now: Time) -> Result<Vec<RegisteredRunner>, ForgeError> {
        let mut all = Vec::new();
        for forge in &self.forges {
            let mut listed = forge.runners().await?;
            if forge.kind() == ForgeKind::Gitlab {
                for r in &mut listed {
                    r.id |= GITLAB_ID;
                }
            }
            all.extend(listed);
        }
        *self.lock() = Some((now, all.clone()));
        Ok(all)
    }

    /// When the last [`Runners::list`] that read every scope ran.
    pub fn listed_at(&self) -> Option<Time> {
        self.lock().as_ref().map(|(at, _)| *at)
    }

    /// Takes the registrations named `names` out of the last list: what this process did since
    /// it was read made them outdated (see `execute::Executed::outdated`), and a pass planning
    /// with it would act on them — deregister a runner GitHub already removed, or read the lists
    /// again to remove it.
    pub fn forget(&self, names: &[String]) {
        if names.is_empty() {
            return;
        }
        if let Some((_, list)) = self.lock().as_mut() {
            list.retain(|r| !names.contains(&r.name));
        }
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
        let forge = self.forge_for(scope.forge)?;
        Ok(forge.credential(scope, name, labels).await?.credential)
    }

    /// Deregisters runner `id` (as [`Runners::list`] gave it); `Busy` if it is running a job.
    pub async fn remove(&self, scope: &ScopeId, id: u64) -> Result<(), ForgeError> {
        let forge = self.forge_for(scope.forge)?;
        forge.deregister(scope, id & !GITLAB_ID).await
    }

    /// Removes the runner of a powered-off machine (`id` as [`Runners::list`] gave it, else by
    /// `name`), without a busy check where the forge's delete needs one: it runs nothing.
    pub async fn remove_stopped(
        &self,
        scope: &ScopeId,
        id: Option<u64>,
        name: &str,
    ) -> Result<(), ForgeError> {
        self.forge_for(scope.forge)?
            .deregister_stopped(scope, id.map(|id| id & !GITLAB_ID), name)
            .await
    }

    /// Whether the forge of `scope` keeps a used runner's registration until it is removed
    /// (see `Forge::keeps_used_runners`).
    pub fn keeps_used_runners(&self, scope: &ScopeId) -> bool {
        self.forge(scope.forge)
            .is_some_and(|f| f.keeps_used_runners())
    }

    /// Removes runner `name` if registered; `Busy` if it is running a job.
    pub async fn remove_by_name(&self, scope: &ScopeId, name: &str) -> Result<(), ForgeError> {
        self.forge_for(scope.forge)?
            .deregister_by_name(scope, name)
            .await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Time, Vec<RegisteredRunner>)>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_ids_stay_apart_from_github_ids_and_come_back_whole() {
        let id = 4_242_u64;
        let engine = id | GITLAB_ID;
        assert_ne!(engine, id);
        assert_eq!(engine & !GITLAB_ID, id);
    }
}
