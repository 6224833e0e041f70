//! The forge seam: what the engine needs of a CI forge, and nothing else, as one trait that
//! GitHub Actions and GitLab CI implement over their REST clients.
//!
//! The trait is object-safe through `async-trait` (not native `async fn` in traits) because one
//! `mayfly run` serves GitHub and GitLab at once: the engine holds its forges as
//! `Arc<dyn Forge>` in one list, which native async trait methods do not allow. The boxing
//! costs one allocation per call, beside an HTTP request.

mod error;
mod github;
mod gitlab;

pub use error::ForgeError;
pub use github::GithubForge;
pub use gitlab::{GitlabForge, GitlabRunners};

use async_trait::async_trait;
use mayfly_core::forge::{Confirmation, Issued, RegisteredRunner, ScopeId};
use mayfly_core::{ForgeKind, JobKey, Labels};

/// One configured forge: its client, the scopes it serves and how it registers runners.
#[async_trait]
pub trait Forge: Send + Sync {
    /// Which forge this is: job keys and scope ids of any other kind are not its own.
    fn kind(&self) -> ForgeKind;

    /// Whether the job is one this forge instance serves (its repository, organization or
    /// enterprise; its project or group). A job that is not is foreign: it never gets a machine.
    /// No call to the forge.
    fn owns(&self, job: &JobKey) -> bool;

    /// Where a runner for `job` registers; for `None` (a standby runner) the default scope.
    /// `None` when the job is not this forge's. No call to the forge.
    fn scope_for(&self, job: Option<&JobKey>) -> Option<ScopeId>;

    /// The scopes whose runners [`Forge::runners`] lists: every scope `scope_for` can answer.
    fn scopes(&self) -> Vec<ScopeId>;

    /// Which jobs a runner can take, as the planner counts supply: `Shared` when any runner may
    /// take any served job its labels fit, `Repository` when a runner takes jobs of the
    /// repository or project it was registered for only (standby runners in the default one).
    fn runner_scope(&self) -> mayfly_core::RunnerScope;

    /// Every runner of every scope, each with its scope. A scope that cannot be read fails the
    /// whole list: a pass that does not see a busy runner must not act on its machine. Asked
    /// conditionally where the forge allows it (GitHub's ETags: an unchanged list is a free
    /// 304 and the last answer is returned).
    async fn runners(&self) -> Result<Vec<RegisteredRunner>, ForgeError>;

    /// A single-use credential for the runner `name` (mayfly's instance name, its idempotency
    /// key) with `labels` (GitHub labels, GitLab tags) in `scope`. A runner this forge knows to
    /// hold that name already is removed first, unless it is busy (`Busy`).
    async fn credential(
        &self,
        scope: &ScopeId,
        name: &str,
        labels: &Labels,
    ) -> Result<Issued, ForgeError>;

    /// Removes the runner `id` of `scope`; one already gone counts as removed. `Busy` while it
    /// has a job: the job has to end first, and the runner stays.
    async fn deregister(&self, scope: &ScopeId, id: u64) -> Result<(), ForgeError>;

    /// Removes the runner named `name` in `scope` if there is one (a machine whose runner the
    /// lists did not show, a registration whose answer was lost); `Busy` as `deregister`.
    async fn deregister_by_name(&self, scope: &ScopeId, name: &str) -> Result<(), ForgeError>;

    /// Removes the runner of a machine that is powered off, by `id` when the lists showed it,
    /// else by `name`: the machine runs nothing, whatever the forge last heard, so a busy check
    /// the forge's own delete needs first (GitLab's) is skipped. Gone already counts as
    /// removed. By default [`Forge::deregister`] or [`Forge::deregister_by_name`].
    async fn deregister_stopped(
        &self,
        scope: &ScopeId,
        id: Option<u64>,
        name: &str,
    ) -> Result<(), ForgeError> {
        match id {
            Some(id) => self.deregister(scope, id).await,
            None => self.deregister_by_name(scope, name).await,
        }
    }

    /// Whether a used single-use runner's registration stays until it is deregistered (a
    /// GitLab runner record: `run-single --max-builds 1` exits and leaves it), rather than
    /// going away with its job (GitHub's ephemeral and JIT runners). Then a machine's runner is
    /// deregistered when the machine goes, whether or not it is up.
    fn keeps_used_runners(&self) -> bool {
        false
    }

    /// The cheap confirmation of a job's status: one request (GitHub's conditional, free when
    /// unchanged). `NotServed` for a job this forge does not own, without a request.
    async fn confirm(&self, job: &JobKey) -> Result<Confirmation, ForgeError>;

    /// Forgets what the forge remembers of a job (GitHub: its ETag), once nobody will ask.
    fn forget_job(&self, job: &JobKey);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn send_and_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: T) {}

    /// The engine holds forges as `Arc<dyn Forge>` across tasks on a multi-threaded runtime:
    /// the object and every call's future must be `Send`. Never run, only compiled.
    #[allow(dead_code)]
    fn a_dyn_forge_crosses_threads(forge: Arc<dyn Forge>, key: JobKey, scope: ScopeId) {
        send_and_sync(&forge);
        send(forge.runners());
        send(forge.credential(&scope, "n", &Labels::default()));
        send(forge.deregister(&scope, 1));
        send(forge.deregister_by_name(&scope, "n"));
        send(forge.confirm(&key));
    }
}
