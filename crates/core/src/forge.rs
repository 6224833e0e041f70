//! The forge seam in data: what a forge's runners, scopes, credentials and job confirmations
//! look like to the engine, whichever forge (GitHub, GitLab) answered. Pure types, no I/O.

use crate::labels::Labels;
use crate::model::{ForgeKind, JobStatus};
use crate::secret::Secret;
use std::fmt;
use std::sync::Arc;

/// Where runners register, named so that any forge's scope fits one type: `repo:acme/app`,
/// `org:acme` or `enterprise:e` on GitHub, `project:acme/app`, `group:acme` or `instance` on
/// GitLab. The forge that made it reads it back; the engine only compares and prints it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeId {
    pub forge: ForgeKind,
    pub scope: Arc<str>,
}

impl ScopeId {
    pub fn new(forge: ForgeKind, scope: impl Into<Arc<str>>) -> ScopeId {
        ScopeId {
            forge,
            scope: scope.into(),
        }
    }
}

impl fmt::Display for ScopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.forge.as_str(), self.scope)
    }
}

/// A runner as its forge lists it, with the scope it is registered in (a runner id is only
/// unique within its forge, and a name only within its scope).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredRunner {
    pub id: u64,
    /// mayfly's instance name (GitHub's runner name, GitLab's runner description).
    pub name: String,
    pub online: bool,
    /// Running a job, or (GitLab) holding one handed to it and not yet confirmed.
    pub busy: bool,
    /// GitHub's labels, GitLab's tags.
    pub labels: Labels,
    pub scope: ScopeId,
}

/// The single-use credential a machine boots with: whatever it holds, a secret never shows in
/// `Debug` or `Display`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// `encoded_jit_config` from generate-jitconfig: registers and starts the runner in one
    /// step, already bound to its name, labels and group. The default.
    Jit(Secret),
    /// A registration token (valid an hour) for `config.sh --unattended --ephemeral`: the
    /// fallback where JIT configs are not available.
    Token {
        /// The repository, organization or enterprise URL the runner registers with.
        url: String,
        token: Secret,
        name: String,
        labels: Vec<String>,
        /// The runner group's name; `None` for the default group.
        group: Option<String>,
    },
    /// A GitLab runner authentication token (`glrt-`) of a runner record made for this machine
    /// alone, for `gitlab-runner run-single --url URL --token TOKEN --max-builds 1`. Unlike a JIT
    /// config it is not spent by use: it stays valid until the record is deleted.
    Gitlab {
        /// The GitLab instance (`https://gitlab.com`), not its API.
        url: String,
        token: Secret,
    },
    /// No runner at all: the machine of a GitLab custom executor job (`mayfly gitlab-executor`),
    /// reached over SSH. The user data is the executor's own; a container gets the job's client
    /// key as `SSH_PUBLIC_KEY` (the Fargate driver's variable) and its sshd host key as
    /// `MAYFLY_SSH_HOST_KEY`, made for this machine alone so the executor pins it before boot.
    Ssh {
        authorized_key: String,
        host_key: Secret,
    },
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Jit(_) => f.write_str("JIT config"),
            Credential::Token { url, name, .. } => {
                write!(f, "registration token for runner {name:?} at {url}")
            }
            Credential::Gitlab { url, .. } => write!(f, "GitLab runner token for {url}"),
            Credential::Ssh { .. } => f.write_str("SSH keys of an executor job"),
        }
    }
}

/// A credential just issued, and the id of the runner it registers when the forge made that
/// runner already (a JIT config, a GitLab runner record; not a registration token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub credential: Credential,
    pub runner_id: Option<u64>,
}

/// What the forge said when asked about one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// The same answer as the last time this job was asked about (GitHub's 304, free): what
    /// the caller holds from that answer still stands.
    Unchanged,
    /// The job's status, and the runner running it once there is one (its name).
    Status {
        status: JobStatus,
        runner: Option<String>,
    },
    /// The forge knows the job but its status means no demand and no run (GitLab's `manual`
    /// or `scheduled`), or is one this code does not know: leave the job alone.
    Other,
    /// The forge no longer knows the job (deleted, or its project or repository is gone): it
    /// will never need a runner.
    Gone,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_print_with_their_forge_and_credentials_hide_their_secret() {
        let s = ScopeId::new(ForgeKind::Gitlab, "project:acme/app");
        assert_eq!(s.to_string(), "gitlab:project:acme/app");
        assert_ne!(s, ScopeId::new(ForgeKind::Github, "project:acme/app"));
        for c in [
            Credential::Jit(Secret::new("jit-SECRET")),
            Credential::Gitlab {
                url: "https://gitlab.com".into(),
                token: Secret::new("glrt-SECRET"),
            },
        ] {
            let issued = Issued {
                credential: c.clone(),
                runner_id: Some(1),
            };
            assert!(!format!("{issued:?} {c}").contains("SECRET"));
        }
    }
}
