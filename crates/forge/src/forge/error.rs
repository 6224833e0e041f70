//! The one error of the forge seam, cut along what the engine does next, whichever forge
//! answered. Texts come from the forges' own errors, which never carry a credential.

use crate::http::retry_hint;
use mayfly_core::ForgeKind;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForgeError {
    /// The runner has a job and cannot be removed now: expected, ask again after the job.
    #[error("{}: the runner is busy with a job", forge_name(*forge))]
    Busy { forge: ForgeKind },
    /// The resource does not exist, or the credential may not see it.
    #[error("{}: not found", forge_name(*forge))]
    NotFound { forge: ForgeKind },
    /// A runner of that name exists already (GitHub's 409).
    #[error("{}: conflict: {message}", forge_name(*forge))]
    Conflict { forge: ForgeKind, message: String },
    /// The forge's budget is spent, or it asked for a pause longer than the client may wait.
    #[error("{}: rate limited{}", forge_name(*forge), retry_hint(retry_after))]
    RateLimited {
        forge: ForgeKind,
        retry_after: Option<Duration>,
    },
    /// Housekeeping refused: the remaining budget is kept for serving jobs.
    #[error("{}: postponed, the rate-limit budget is low and kept for serving jobs", forge_name(*forge))]
    Postponed { forge: ForgeKind },
    /// The credential was refused (401).
    #[error("{}: unauthorized", forge_name(*forge))]
    Unauthorized { forge: ForgeKind },
    /// The forge refused the request itself (a 4xx other than the above): sending it again
    /// unchanged will not help.
    #[error("{message}")]
    Refused {
        forge: ForgeKind,
        status: u16,
        message: String,
    },
    /// The forge failed (5xx) or did not answer: the next try may work.
    #[error("{message}")]
    Unavailable { forge: ForgeKind, message: String },
    /// A scope or job this forge does not serve: a caller's mistake, never sent to the forge.
    #[error("{}: {what} is not served by this mayfly", forge_name(*forge))]
    NotServed { forge: ForgeKind, what: String },
}

impl ForgeError {
    pub fn forge(&self) -> ForgeKind {
        match self {
            ForgeError::Busy { forge }
            | ForgeError::NotFound { forge }
            | ForgeError::Conflict { forge, .. }
            | ForgeError::RateLimited { forge, .. }
            | ForgeError::Postponed { forge }
            | ForgeError::Unauthorized { forge }
            | ForgeError::Refused { forge, .. }
            | ForgeError::Unavailable { forge, .. }
            | ForgeError::NotServed { forge, .. } => *forge,
        }
    }

    pub fn is_busy(&self) -> bool {
        matches!(self, ForgeError::Busy { .. })
    }

    /// Worth trying again later, unchanged.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ForgeError::RateLimited { .. }
                | ForgeError::Postponed { .. }
                | ForgeError::Unavailable { .. }
        )
    }
}

fn forge_name(forge: ForgeKind) -> &'static str {
    match forge {
        ForgeKind::Github => "GitHub",
        ForgeKind::Gitlab => "GitLab",
    }
}

impl From<crate::github::Error> for ForgeError {
    fn from(e: crate::github::Error) -> ForgeError {
        use crate::github::Error as E;
        let forge = ForgeKind::Github;
        match e {
            E::NotFound => ForgeError::NotFound { forge },
            E::Busy => ForgeError::Busy { forge },
            E::RateLimited { retry_after } => ForgeError::RateLimited { forge, retry_after },
            E::Postponed => ForgeError::Postponed { forge },
            E::Unauthorized => ForgeError::Unauthorized { forge },
            E::Conflict { message } => ForgeError::Conflict { forge, message },
            E::Http { status, .. } if status < 500 => ForgeError::Refused {
                forge,
                status,
                message: e.to_string(),
            },
            E::Http { .. } | E::Transport(_) => ForgeError::Unavailable {
                forge,
                message: e.to_string(),
            },
        }
    }
}

impl From<crate::gitlab::Error> for ForgeError {
    fn from(e: crate::gitlab::Error) -> ForgeError {
        use crate::gitlab::Error as E;
        let forge = ForgeKind::Gitlab;
        match e {
            E::NotFound => ForgeError::NotFound { forge },
            E::Busy => ForgeError::Busy { forge },
            E::RateLimited { retry_after } => ForgeError::RateLimited { forge, retry_after },
            E::Postponed => ForgeError::Postponed { forge },
            E::Unauthorized => ForgeError::Unauthorized { forge },
            E::Forbidden { .. } => ForgeError::Refused {
                forge,
                status: 403,
                message: e.to_string(),
            },
            E::Invalid { .. } => ForgeError::Refused {
                forge,
                status: 400,
                message: e.to_string(),
            },
            E::Http { status, .. } if status < 500 => ForgeError::Refused {
                forge,
                status,
                message: e.to_string(),
            },
            E::Http { .. } | E::Transport(_) => ForgeError::Unavailable {
                forge,
                message: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forges_errors_map_onto_one_cut() {
        use crate::{github, gitlab};
        assert!(ForgeError::from(github::Error::Busy).is_busy());
        assert!(ForgeError::from(gitlab::Error::Busy).is_busy());
        let limited = ForgeError::from(gitlab::Error::RateLimited {
            retry_after: Some(Duration::from_secs(30)),
        });
        assert!(limited.is_transient() && limited.forge() == ForgeKind::Gitlab);
        let refused = ForgeError::from(github::Error::Http {
            status: 422,
            message: "bad labels".into(),
        });
        assert!(!refused.is_transient());
        assert!(refused.to_string().contains("bad labels"));
        assert!(ForgeError::from(github::Error::Transport("reset".into())).is_transient());
        assert_eq!(
            ForgeError::from(gitlab::Error::NotFound).to_string(),
            "GitLab: not found"
        );
    }
}
