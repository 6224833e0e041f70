//! The provider errors the executor acts on, one case per different reaction. None of them
//! carries a credential or user data.

use std::time::Duration;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("not found")]
    NotFound,
    /// The name is taken: for a deterministic name, the instance exists already.
    #[error("an instance with this name exists")]
    AlreadyExists,
    /// The project's quota (servers, cores) is reached: stop creating until something is freed.
    #[error("quota reached: {message}")]
    Quota { message: String },
    /// No type and location of the fallbacks could be had: for this spec, not for others.
    #[error("capacity unavailable: {message}")]
    CapacityUnavailable { message: String },
    #[error("rate limited (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// Another action is running on the instance: try again on a later pass.
    #[error("locked: an action is running on the instance")]
    Locked,
    /// The request was refused as malformed: a configuration problem (unknown type, image).
    #[error("invalid request: {message}")]
    Invalid { message: String },
    #[error("the credential was refused ({status})")]
    Unauthorized { status: u16 },
    #[error("API error {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The provider has no such operation (EC2 has no rebuild): never worth trying again, and the
    /// planner must not plan it for this provider's machines.
    #[error("{operation} is not supported by this provider")]
    Unsupported { operation: &'static str },
    /// No answer: connection refused, timeout, TLS.
    #[error("transport: {0}")]
    Transport(String),
}

impl Error {
    /// Worth trying again on the next pass without any change.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. } | Error::Locked | Error::Transport(_)
        ) || matches!(self, Error::Api { status, .. } if *status >= 500)
    }
}
