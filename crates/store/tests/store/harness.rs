//! Runs one test case on a fresh SQLite file or a fresh PostgreSQL database, and the fixtures
//! the cases share.

use mayfly_core::{
    Arch, ForgeKind, Image, ImageKind, JobKey, JobStatus, Labels, MachineSpec, Time,
};
use mayfly_store::{Intent, IntentState, JobRecord, Store, Upsert};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A fresh store and the URL it was opened with (for cases that reopen it).
pub struct Db {
    pub store: Store,
    pub url: String,
}

impl Deref for Db {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

pub async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("create temp dir");
    // A parent that does not exist yet: open must create it.
    let url = format!("sqlite://{}/state/mayfly.db", dir.path().display());
    let store = Store::open(&url).await.expect("open SQLite store");
    case(Db {
        store: store.clone(),
        url,
    })
    .await;
    store.close().await;
}

/// Runs `case` in a database of its own on the cluster `MAYFLY_TEST_POSTGRES_URL` points at, so
/// cases run in parallel. The PostgreSQL cases are `#[ignore]`d (`scripts/test` runs them under
/// `scripts/with-postgres`); run without that variable they fail rather than pass having
/// checked nothing.
pub async fn on_postgres<F, Fut>(case: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    let admin = match std::env::var("MAYFLY_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "MAYFLY_TEST_POSTGRES_URL is not set: run the PostgreSQL half of the store suite \
             under scripts/with-postgres"
        ),
    };
    let name = fresh_database_name();
    let mut conn = PgConnection::connect(&admin)
        .await
        .expect("connect to MAYFLY_TEST_POSTGRES_URL");
    conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create test database");
    let url = with_database(&admin, &name);
    let store = Store::open(&url).await.expect("open PostgreSQL store");
    case(Db {
        store: store.clone(),
        url,
    })
    .await;
    store.close().await;
    conn.execute(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .await
        .expect("drop test database");
    conn.close().await.expect("close admin connection");
}

fn fresh_database_name() -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "mayfly_test_{}_{nanos:x}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// `admin` with its database name replaced by `name`, query kept.
fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = admin.split_once('?').map_or((admin, ""), |(b, q)| (b, q));
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[host_start..]
        .find('/')
        .map_or(base.len(), |i| host_start + i);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{}/{name}{query}", &base[..host_end])
}

pub fn key(id: u64) -> JobKey {
    JobKey {
        forge: ForgeKind::Github,
        scope: "acme/app".into(),
        id,
    }
}

pub fn job(id: u64, status: JobStatus, at: i64) -> JobRecord {
    JobRecord {
        key: key(id),
        run_id: Some(7000 + id),
        attempt: 1,
        labels: Labels::new(["self-hosted", "linux"]),
        status,
        queued_at: Time(1_000),
        updated_at: Time(at),
        runner_name: None,
        workflow: Some("ci".into()),
    }
}

/// Upserts every `(record, delivery id)` at once, each from its own task, as webhooks and
/// polls race each other; the outcomes in the order given.
pub async fn upsert_at_once(db: &Db, upserts: Vec<(JobRecord, Option<String>)>) -> Vec<Upsert> {
    let tasks: Vec<_> = upserts
        .into_iter()
        .map(|(rec, delivery)| {
            let store = db.store.clone();
            tokio::spawn(async move { store.upsert_job(&rec, delivery.as_deref()).await.unwrap() })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    outcomes
}

pub fn intent(name: &str, job: Option<u64>, attempt: u32, at: i64) -> Intent {
    Intent {
        name: name.into(),
        pool: "default".into(),
        provider: "hetzner".into(),
        job: job.map(key),
        attempt,
        run_id: job.map(|id| 7000 + id),
        labels: Labels::new(["self-hosted", "linux"]),
        spec: MachineSpec {
            types: vec!["cx23".into(), "cpx22".into()],
            locations: vec!["fsn1".into()],
            image: Image {
                arch: Arch::X86,
                kind: ImageKind::System,
                name: "ubuntu-24.04".into(),
            },
        },
        created_at: Time(at),
        state: IntentState::Pending,
        provider_id: None,
        updated_at: Time(at),
    }
}
