//! The GitHub client's one error type, cut along what the caller does next. No variant carries
//! a credential: messages come from GitHub's `message` field or from fixed texts.

use std::time::Duration;

/// How much of GitHub's `message` an error repeats.
const MESSAGE_LIMIT: usize = 300;

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

impl Error {
    pub(crate) fn http(status: u16, message: &str) -> Error {
        Error::Http {
            status,
            message: clip(message),
        }
    }

    pub(crate) fn transport(e: &reqwest::Error) -> Error {
        let kind = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else if e.is_decode() || e.is_body() {
            "could not read the body"
        } else {
            "request failed"
        };
        // The innermost cause ("Connection refused (os error 111)") says what happened; reqwest's
        // own text adds the URL, which the caller knows already. Neither holds a header.
        let mut innermost = None;
        let mut next = std::error::Error::source(e);
        while let Some(cause) = next {
            innermost = Some(cause);
            next = cause.source();
        }
        match innermost {
            Some(cause) => Error::Transport(format!("{kind}: {}", clip(&cause.to_string()))),
            None => Error::Transport(kind.to_string()),
        }
    }

    /// Decoding failures name only where, never the value (which may be a token).
    pub(crate) fn decode(e: &serde_json::Error) -> Error {
        Error::Transport(format!(
            "could not decode the answer ({:?} at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    }
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    retry_after.map_or_else(String::new, |d| format!(", retry after {}s", d.as_secs()))
}

pub(crate) fn clip(message: &str) -> String {
    message.chars().take(MESSAGE_LIMIT).collect()
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
