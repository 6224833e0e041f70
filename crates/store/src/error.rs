//! The store's one error type: every message names the operation or value that failed, and
//! URLs in it are redacted, so an error can be logged or shown as it is.

use crate::Backend;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL was not understood; `url` is already redacted.
    #[error("store URL {url}: {reason}")]
    BadUrl { url: String, reason: String },

    #[error("create directory {} for the SQLite store: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The first connection failed. The driver's message is kept as text, scrubbed of the
    /// password, because driver errors are not ours to vouch for.
    #[error("open {backend} store at {url}: {reason}")]
    Open {
        backend: Backend,
        url: String,
        reason: String,
    },

    #[error("migrate {backend} store: {source}")]
    Migrate {
        backend: Backend,
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    #[error("{what}: {source}")]
    Query {
        what: String,
        #[source]
        source: sqlx::Error,
    },

    /// A write carried the fence of a lease its holder no longer holds: another replica leads,
    /// or the lease ran out. Nothing was written; the holder must stop acting.
    #[error("{what}: refused, {holder} no longer leads under epoch {epoch}: {reason}")]
    Fenced {
        what: String,
        holder: String,
        epoch: u64,
        reason: String,
    },

    /// Another process holds the SQLite file: one `mayfly run` per SQLite state.
    #[error(
        "{} is in use by another mayfly{} (lock file {}): a SQLite state has one writer; stop \
         the other `mayfly run`, or use PostgreSQL to run several replicas",
        database.display(),
        holder.as_deref().map(|h| format!(" ({h})")).unwrap_or_default(),
        lock.display()
    )]
    Held {
        database: PathBuf,
        lock: PathBuf,
        holder: Option<String>,
    },

    #[error("lock file {} of the SQLite state: {source}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A value that does not fit its column, or a stored row that does not read back.
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Names the operation a database error happened in; the name is only built on failure.
pub(crate) trait During<T> {
    fn during(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> During<T> for std::result::Result<T, sqlx::Error> {
    fn during(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| StoreError::Query {
            what: what(),
            source,
        })
    }
}

pub(crate) fn invalid(what: impl Into<String>, reason: impl ToString) -> StoreError {
    StoreError::Invalid {
        what: what.into(),
        reason: reason.to_string(),
    }
}
