//! mayfly-store: jobs, instance intents and the event trail, kept in SQLite (default) or
//! PostgreSQL through sqlx, with embedded migrations applied on open.
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

mod columns;
mod cursors;
mod error;
mod events;
mod intents;
mod jobs;
mod url;

use error::During;
pub use error::{Result, StoreError};
pub use events::{Event, NewEvent};
pub use intents::{Intent, IntentState};
pub use jobs::{JobRecord, RunNews, Upsert};
pub use url::redact_url;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, AssertSqlSafe, ConnectOptions, Connection, Transaction};
use std::fmt;
use std::time::Duration;
use url::Target;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

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
/// `lock_timeout` (SQLite's busy timeout, PostgreSQL's `lock_timeout`).
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
            Target::SqliteMemory => (Backend::Sqlite, "sqlite::memory:".to_string()),
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
        if target != Target::SqliteMemory {
            first_connection(&connect, backend, options.acquire_timeout)
                .await
                .map_err(open_err)?;
        }
        let pool = pool_options(&target, backend, options).connect_lazy_with(connect);

        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        if let Err(source) = migrator.run(&pool).await {
            pool.close().await;
            return Err(StoreError::Migrate { backend, source });
        }
        tracing::info!(%backend, url = %redact_url(url), "store open");
        Ok(Store { pool, backend })
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

    /// Waits for connections in use to come back and closes them all, for every clone.
    pub async fn close(&self) {
        self.pool.close().await;
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

/// Every pooled connection gets its lock timeout (and SQLite its foreign keys) as it is made.
/// SQLite's `synchronous` stays at FULL: an intent must survive a power cut once its create is sent.
fn pool_options(target: &Target, backend: Backend, options: &StoreOptions) -> AnyPoolOptions {
    let ms = options.lock_timeout.as_millis();
    let setup = match backend {
        Backend::Sqlite => format!("PRAGMA busy_timeout = {ms}; PRAGMA foreign_keys = ON;"),
        Backend::Postgres => format!("SET lock_timeout = {ms};"),
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
        });
    match target {
        // Each connection to `:memory:` is a database of its own: keep exactly one, forever.
        Target::SqliteMemory => pool
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None),
        _ => pool,
    }
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
