//! The GitHub client's one error type, cut along what the caller does next. No variant carries
//! a credential: messages come from GitHub's `message` field or from fixed texts.

pub(crate) use crate::http::clip;
use crate::http::retry_hint;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The resource does not exist (or the credential may not see it).
    #[error("GitHub: not found")]
    NotFound,
    /// A runner that is running a job cannot be deleted: expected, try again after the job.
    #[error("GitHub: the runner is busy running a job")]
    Busy,
    /// The budget is spent or GitHub asked for a pause longer than the client may wait.
    #[error("GitHub: rate limited{}", retry_hint(retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// Housekeeping refused: the remaining budget is kept for serving jobs.
    #[error("GitHub: postponed, the rate-limit budget is low and kept for serving jobs")]
    Postponed,
    /// The credential was refused (401), or the App's JWT was.
    #[error("GitHub: unauthorized")]
    Unauthorized,
    /// 409: the resource exists already, e.g. a runner with that name.
    #[error("GitHub: conflict: {message}")]
    Conflict { message: String },
    #[error("GitHub answered {status}: {message}")]
    Http { status: u16, message: String },
    /// No answer: connection, timeout, or a body that could not be read or decoded.
    #[error("GitHub: transport: {0}")]
    Transport(String),
}

// `Error::http`, `Error::transport`, `Error::decode` and the limiter's refusal as this
// forge's error, in the words and by the rule both forges share.
crate::http::shared_errors!(Error);

pub type Result<T, E = Error> = std::result::Result<T, E>;
