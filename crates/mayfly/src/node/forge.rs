//! What node mode needs of a forge, and GitHub Actions behind it. Everything forge-specific of
//! a node sits here: how a single-use runner is registered and started, how it is found,
//! removed and checked. A second forge (GitLab) is another implementation of [`NodeForge`].

use super::settings::{Scope as NodeScope, Settings};
use async_trait::async_trait;
use mayfly_core::{Labels, Secret};
use mayfly_forge::github::{Client, Error, Probe, Repo, Scope};
use std::path::Path;

/// A runner as the forge knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Runner {
    pub id: u64,
    pub name: String,
    pub online: bool,
    pub busy: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForgeError {
    /// No answer: the next try may work.
    #[error("{0}")]
    Unreachable(String),
    #[error("the credential was refused")]
    Unauthorized,
    /// The runner is running a job and cannot be removed now.
    #[error("the runner is running a job")]
    Busy,
    /// A runner of that name exists already.
    #[error("a runner named {0} exists already")]
    Conflict(String),
    #[error("{0}")]
    Other(String),
}

impl From<Error> for ForgeError {
    fn from(e: Error) -> ForgeError {
        match e {
            Error::Transport(m) => ForgeError::Unreachable(format!("GitHub: {m}")),
            Error::RateLimited { .. } | Error::Postponed => ForgeError::Unreachable(e.to_string()),
            Error::Unauthorized => ForgeError::Unauthorized,
            Error::Busy => ForgeError::Busy,
            Error::Conflict { message } => ForgeError::Conflict(message),
            Error::Http { status, .. } if status >= 500 => ForgeError::Unreachable(e.to_string()),
            other => ForgeError::Other(other.to_string()),
        }
    }
}

/// The calls a node makes of its forge.
#[async_trait]
pub trait NodeForge: Send + Sync {
    /// `github`, for output.
    fn kind(&self) -> &'static str;
    /// Where the runners register, for output (`repository acme/app`).
    fn scope(&self) -> String;
    /// Registers a single-use runner `name`; its id and the credential it starts with.
    async fn register(&self, name: &str, labels: &[String]) -> Result<(u64, Secret), ForgeError>;
    /// The runner, `None` when the forge no longer knows it.
    async fn runner(&self, id: u64) -> Result<Option<Runner>, ForgeError>;
    /// Every runner of the scope whose name starts with `prefix`.
    async fn runners_named(&self, prefix: &str) -> Result<Vec<Runner>, ForgeError>;
    /// Removes a runner; one already gone counts as removed.
    async fn remove(&self, id: u64) -> Result<(), ForgeError>;
    /// A free request: reachable, budget, the server's clock, the credential's expiry.
    async fn probe(&self) -> Result<Probe, ForgeError>;
    /// The program and arguments that start a runner with `credential` from its root.
    fn runner_command(&self, run_sh: &Path, credential: &Secret) -> Vec<String>;
}

/// GitHub Actions: JIT configs (`generate-jitconfig`) started by `run.sh --jitconfig`.
pub struct Github {
    client: Client,
    scope: Scope,
    group: Option<mayfly_forge::github::RunnerGroup>,
}

impl Github {
    pub fn new(client: Client, settings: &Settings) -> anyhow::Result<Github> {
        let scope = match &settings.scope {
            NodeScope::Repository(r) => Scope::Repo(
                Repo::parse(r).map_err(|e| anyhow::anyhow!("node repository {r:?}: {e}"))?,
            ),
            NodeScope::Organization(o) => Scope::Org(o.clone()),
        };
        Ok(Github {
            client,
            scope,
            group: settings.runner_group.clone(),
        })
    }

    fn runner_of(r: mayfly_forge::github::RegisteredRunner) -> Runner {
        Runner {
            online: r.is_online(),
            id: r.id,
            name: r.name,
            busy: r.busy,
        }
    }
}

#[async_trait]
impl NodeForge for Github {
    fn kind(&self) -> &'static str {
        "github"
    }

    fn scope(&self) -> String {
        self.scope.to_string()
    }

    async fn register(&self, name: &str, labels: &[String]) -> Result<(u64, Secret), ForgeError> {
        let labels = Labels::new(labels.iter().map(String::as_str));
        let jit = self
            .client
            .jit_config(&self.scope, name, &labels, self.group.as_ref())
            .await?;
        Ok((jit.runner.id, jit.config))
    }

    async fn runner(&self, id: u64) -> Result<Option<Runner>, ForgeError> {
        match self.client.runner(&self.scope, id).await {
            Ok(r) => Ok(Some(Github::runner_of(r))),
            Err(Error::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn runners_named(&self, prefix: &str) -> Result<Vec<Runner>, ForgeError> {
        Ok(self
            .client
            .list_runners(&self.scope)
            .await?
            .into_iter()
            .filter(|r| r.name.starts_with(prefix))
            .map(Github::runner_of)
            .collect())
    }

    async fn remove(&self, id: u64) -> Result<(), ForgeError> {
        Ok(self.client.delete_runner(&self.scope, id).await?)
    }

    async fn probe(&self) -> Result<Probe, ForgeError> {
        Ok(self.client.probe().await?)
    }

    fn runner_command(&self, run_sh: &Path, credential: &Secret) -> Vec<String> {
        mayfly_provider::local::Local::runner_command(run_sh, credential)
    }
}
