//! The GitLab client's one error type, cut along what the caller does next. No variant carries
//! a credential: messages come from GitLab's `message` or `error` field, clipped, or fixed texts.

pub(crate) use crate::http::clip;
use crate::http::retry_hint;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The resource does not exist, or the token may not see it.
    #[error("GitLab: not found")]
    NotFound,
    /// The runner has a job (running, or handed to it and not yet confirmed): it must not go
    /// now. Expected; ask again after the job.
    #[error("GitLab: the runner is busy with a job")]
    Busy,
    /// GitLab asked for a pause (429) longer than the client may wait, or the budget is spent.
    #[error("GitLab: rate limited{}", retry_hint(retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// Housekeeping refused: the remaining budget is kept for serving jobs.
    #[error("GitLab: postponed, the rate-limit budget is low and kept for serving jobs")]
    Postponed,
    /// 401: the token is unknown, expired or revoked.
    #[error("GitLab: unauthorized (check gitlab.token)")]
    Unauthorized,
    /// 403: the token lacks a scope or role (`insufficient_scope` names the scopes that would do).
    #[error("GitLab: forbidden: {message}")]
    Forbidden { message: String },
    /// 400 or 422: GitLab refused the request's parameters.
    #[error("GitLab: refused: {message}")]
    Invalid { message: String },
    #[error("GitLab answered {status}: {message}")]
    Http { status: u16, message: String },
    /// No answer: connection, timeout, or a body that could not be read or decoded.
    #[error("GitLab: transport: {0}")]
    Transport(String),
}

impl Error {
    /// Worth sending again (after a wait): the server failed or the answer got lost.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Transport(_)
                | Error::Http {
                    status: 500..=599,
                    ..
                }
        )
    }
}

// `Error::http`, `Error::transport`, `Error::decode` and the limiter's refusal as this
// forge's error, in the words and by the rule both forges share.
crate::http::shared_errors!(Error);

pub type Result<T, E = Error> = std::result::Result<T, E>;
