//! mayfly-store: jobs, instance intents, the event trail and the leader lease, kept in SQLite
//! (default) or PostgreSQL through sqlx, with embedded migrations applied on open.
//!
//! Replicas on one PostgreSQL store take turns through the leader lease (`lease.rs`), whose
//! fence every intent write of the leader carries; a SQLite store has one writer process
//! (`writer.rs`). What is finished is pruned by age (`retention.rs`).
//!
//! One code path serves both databases through sqlx's `Any` driver rather than an enum of two
//! pools: every query is a plain function over one concrete pool type, with no generic bounds
//! and no dispatch macro. What `Any` costs, and how it is paid:
//! - it only speaks integers, text and blobs, so times and ids are `BIGINT` milliseconds and
//!   JSON is text on both sides (see `columns.rs`);
//! - it connects from a URL, which cannot carry SQLite pragmas, so WAL is switched on once at
//!   open and each connection sets its busy timeout and foreign keys when it is made;
//! - its query builder writes `?` placeholders, so SQL is written with `$n`, which SQLite also
//!   reads;
//! - it needs its drivers installed process-wide; `Store::open` installs sqlx's defaults, so
//!   nothing else in the process may install a different set.
//!
//! The SQL itself sticks to what both databases share (`INSERT … ON CONFLICT`, `RETURNING`,
//! `IS DISTINCT FROM`); only the schema differs, in `migrations/sqlite` and
//! `migrations/postgres`.

/// `sqlx::FromRow` for a row struct read from the `Any` pool, field by column of the same name:
/// what `#[derive(FromRow)]` would write, without sqlx's `macros` feature (see `migrations.rs`).
macro_rules! from_any_row {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        impl<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> for $ty {
            fn from_row(row: &'r sqlx::any::AnyRow) -> sqlx::Result<Self> {
                use sqlx::Row as _;
                Ok($ty {
                    $($field: row.try_get(stringify!($field))?),*
                })
            }
        }
    };
}

mod columns;
mod cursors;
mod error;
mod events;
mod intents;
mod jobs;
mod lease;
mod migrations;
mod retention;
mod samples;
mod url;
mod writer;

use error::During;
pub use error::{Result, StoreError};
pub use events::{Event, EventQuery, NewEvent};
pub use intents::{Intent, IntentState};
pub use jobs::{JobRecord, JobTally, RunNews, Upsert};
pub use lease::{Acquired, Fence, Fenced, Lease, LeaseState};
pub use retention::{Pruned, Retention};
pub use samples::Sample;
pub use url::redact_url;
pub use writer::WriterLock;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, AssertSqlSafe, ConnectOptions, Connection, Transaction};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use url::Target;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// Pool limits. Every wait is bounded: for a connection by `acquire_timeout`, for a lock by
/// `lock_timeout` (SQLite's busy timeout, PostgreSQL's `lock_timeout`). On PostgreSQL a session
/// idle inside a transaction for twice `lock_timeout` is ended by the server.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub lock_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(5),
        }
    }
}

/// A handle to the store. Clones share one connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The SQLite file, for its single-writer lock; `None` in memory and on PostgreSQL.
    sqlite_path: Option<std::path::PathBuf>,
    /// An in-memory database lives as long as one connection to it: this one, outside the
    /// pool, so that the pool may close and reopen its own.
    keeper: Option<Arc<Keeper>>,
}

struct Keeper(tokio::sync::Mutex<Option<sqlx::AnyConnection>>);

impl fmt::Debug for Keeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keeper")
    }
}

impl Store {
    /// Opens `url` with default [`StoreOptions`]: a file path, `sqlite:PATH`, `sqlite://PATH`,
    /// `sqlite::memory:`, or `postgres://…` / `postgresql://…`.
    pub async fn open(url: &str) -> Result<Store> {
        Store::open_with(url, &StoreOptions::default()).await
    }

    pub async fn open_with(url: &str, options: &StoreOptions) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let target = url::target(url)?;
        let (backend, driver_url) = match &target {
            Target::SqliteFile(path) => {
                create_parent_dir(path)?;
                (Backend::Sqlite, url::sqlite_url(path)?)
            }
            Target::SqliteMemory => (Backend::Sqlite, memory_url()),
            Target::Postgres => (Backend::Postgres, url.to_string()),
        };
        let open_err = |reason: String| StoreError::Open {
            backend,
            url: redact_url(url),
            reason: url::scrub(&reason, url),
        };
        let connect: AnyConnectOptions = driver_url
            .parse()
            .map_err(|e: sqlx::Error| open_err(e.to_string()))?;
        let keeper = if target == Target::SqliteMemory {
            let conn = tokio::time::timeout(options.acquire_timeout, connect.connect())
                .await
                .map_err(|_| open_err("no connection in time".into()))?
                .map_err(|e| open_err(e.to_string()))?;
            Some(Arc::new(Keeper(tokio::sync::Mutex::new(Some(conn)))))
        } else {
            first_connection(&connect, backend, options.acquire_timeout)
                .await
                .map_err(open_err)?;
            None
        };
        let pool = pool_options(&target, backend, options).connect_lazy_with(connect);

        let migrator: &Migrator = match backend {
            Backend::Sqlite => &migrations::SQLITE_MIGRATIONS,
            Backend::Postgres => &migrations::POSTGRES_MIGRATIONS,
        };
        if let Err(source) = migrator.run(&pool).await {
            pool.close().await;
            return Err(StoreError::Migrate { backend, source });
        }
        tracing::info!(%backend, url = %redact_url(url), "store open");
        let sqlite_path = match target {
            Target::SqliteFile(path) => Some(path),
            _ => None,
        };
        Ok(Store {
            pool,
            backend,
            sqlite_path,
            keeper,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers a trivial query: what `/readyz` asks of the store. Bounded
    /// by the pool's acquire timeout.
    pub async fn ping(&self) -> Result<()> {
        sqlx::raw_sql("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .during(|| "ping the store".into())
    }

    /// Whether a write commits now: what `/readyz` asks of the store. A full disk, a read-only
    /// file or database, a lock held past the lock timeout, or an unreachable server all fail
    /// it, where a read (`ping`) would still answer. One small write transaction (an fsync on
    /// SQLite): cheap every few seconds, not on every request of a busy endpoint.
    pub async fn probe_write(&self) -> Result<()> {
        let what = || "write to the store".to_string();
        let mut tx = self.begin_write().await.during(what)?;
        sqlx::query("UPDATE health SET writes = writes + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await
            .during(what)?;
        tx.commit().await.during(what)
    }

    /// Waits for connections in use to come back and closes them all, for every clone.
    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(keeper) = &self.keeper
            && let Some(conn) = keeper.0.lock().await.take()
        {
            let _ = conn.close().await;
        }
    }

    /// A transaction for writes. SQLite takes the write lock up front (`BEGIN IMMEDIATE`): a
    /// deferred transaction that reads before it writes can fail with "database is locked"
    /// without ever waiting on the busy timeout.
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }
}

/// A connection of our own before the pool opens any: an unreachable server is then reported as
/// such rather than as a pool timeout, and SQLite's switch to WAL (which takes an exclusive lock
/// that no busy timeout waits for) happens once, not in every pooled connection at once.
async fn first_connection(
    connect: &AnyConnectOptions,
    backend: Backend,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let mut conn = tokio::time::timeout(timeout, connect.connect())
        .await
        .map_err(|_| format!("no connection within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    if backend == Backend::Sqlite {
        let wal = sqlx::raw_sql("PRAGMA journal_mode = WAL")
            .execute(&mut conn)
            .await;
        wal.map_err(|e| format!("switch to WAL: {e}"))?;
    }
    conn.close().await.map_err(|e| e.to_string())
}

/// A private in-memory database under a name of its own: sqlx's `sqlite::memory:` would name a
/// new database at every connect, so a connection the pool replaces would start empty.
fn memory_url() -> String {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "sqlite:mayfly-memory-{}-{n}?mode=memory",
        std::process::id()
    )
}

/// Every pooled connection gets its lock timeout (and SQLite its foreign keys) as it is made.
/// SQLite's `synchronous` stays at FULL: an intent must survive a power cut once its create is sent.
fn pool_options(target: &Target, backend: Backend, options: &StoreOptions) -> AnyPoolOptions {
    let ms = options.lock_timeout.as_millis();
    let setup = match backend {
        Backend::Sqlite => format!("PRAGMA busy_timeout = {ms}; PRAGMA foreign_keys = ON;"),
        // A session left idle inside a transaction (its process paused or hung) is ended by
        // the server: it would otherwise hold its locks, the lease row's share lock of a fenced
        // write included, and keep another replica from taking over.
        Backend::Postgres => format!(
            "SET lock_timeout = {ms}; SET idle_in_transaction_session_timeout = {};",
            ms.saturating_mul(2).max(1_000)
        ),
    };
    let pool = AnyPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.acquire_timeout)
        .after_connect(move |conn, _| {
            let setup = setup.clone();
            Box::pin(async move {
                sqlx::raw_sql(AssertSqlSafe(setup))
                    .execute(conn)
                    .await
                    .map(drop)
            })
        })
        .after_release(|conn, _| Box::pin(still_usable(conn)));
    match target {
        // A shared in-memory database (see `memory_url`): one connection, so that SQLite's
        // shared-cache table locks never meet; the store's keeper holds the database open.
        Target::SqliteMemory => pool
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None),
        _ => pool,
    }
}

/// Whether a connection coming back to the pool may serve again: not if it still counts an open
/// transaction.
///
/// This is what a failed SQLite write used to break for good. On a full disk or an I/O error
/// SQLite rolls the transaction back by itself; the `ROLLBACK` sqlx then sends when the
/// transaction is dropped fails ("no transaction is active"), so sqlx's count of open transactions
/// on that connection stays at one, and every later `BEGIN IMMEDIATE` on it is refused with
/// "attempted to call begin_with at non-zero transaction depth". The connection goes back to the
/// pool regardless, and once each pooled connection has seen one failure, no write succeeds
/// until a restart. Such a connection is closed here instead; the pool makes a fresh one when
/// it needs one. The same rule retires a connection that a cancelled future left mid-transaction.
///
/// On SQLite the rollback of a dropped transaction is queued to the connection's worker thread,
/// so the count is only read after a round trip; that trip is taken only when the count is not
/// zero, which a healthy release never sees.
async fn still_usable(conn: &mut sqlx::AnyConnection) -> std::result::Result<bool, sqlx::Error> {
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    conn.ping().await?;
    if conn.is_in_transaction() {
        tracing::warn!(
            "a store connection was left inside a transaction by a failed write; it is closed \
             and a new one will be opened"
        );
        return Ok(false);
    }
    Ok(true)
}

fn create_parent_dir(path: &std::path::Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })
        }
        _ => Ok(()),
    }
}
