//! Leader election against a real PostgreSQL: three replicas in one process, one leads; a
//! leader whose link to the database stalls past its lease steps down, another leads, and the
//! old one's intent writes are refused once it is back; a stopped leader hands over at once,
//! a killed one within the lease.
//!
//! Skipped without `MAYFLY_TEST_POSTGRES_URL` (run under scripts/with-postgres), except in CI.

use async_trait::async_trait;
use mayfly::leader::{Leader, LeaderConfig, Leadership, LeaseStore};
use mayfly_core::{Arch, Labels, Time};
use mayfly_store::{Acquired, Fence, Intent, IntentState, Lease, Store, StoreError};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const LEASE: Duration = Duration::from_millis(1_500);
const RENEW: Duration = Duration::from_millis(250);

/// A fresh database on the test cluster, or `None` to skip.
async fn database() -> Option<String> {
    let admin = match std::env::var("MAYFLY_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ if std::env::var("CI").is_ok_and(|v| !v.is_empty()) => {
            panic!("MAYFLY_TEST_POSTGRES_URL is not set but CI is: run under scripts/with-postgres")
        }
        _ => {
            eprintln!("skipped: MAYFLY_TEST_POSTGRES_URL not set");
            return None;
        }
    };
    let name = format!(
        "mayfly_leader_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let (base, query) = admin.split_once('?').unwrap_or((&admin, ""));
    let host_end = base[base.find("://").unwrap() + 3..]
        .find('/')
        .map_or(base.len(), |i| base.find("://").unwrap() + 3 + i);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    Some(format!("{}/{name}{query}", &base[..host_end]))
}

/// The store, with this replica's link to it able to hang (a partition, or a process paused
/// mid-call): every lease call waits while `stalled` is set.
struct Link {
    store: Store,
    stalled: AtomicBool,
}

impl Link {
    async fn wait(&self) {
        while self.stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[async_trait]
impl LeaseStore for Link {
    async fn acquire(&self, holder: &str, lease: Duration) -> Result<Acquired, StoreError> {
        self.wait().await;
        self.store.acquire_lease(holder, lease).await
    }
    async fn renew(&self, fence: &Fence, lease: Duration) -> Result<Option<Lease>, StoreError> {
        self.wait().await;
        self.store.renew_lease(fence, lease).await
    }
    async fn release(&self, fence: &Fence) -> Result<bool, StoreError> {
        self.store.release_lease(fence).await
    }
}

struct Replica {
    name: String,
    link: Arc<Link>,
    leader: Option<Leader>,
    watch: watch::Receiver<Leadership>,
}

fn start(store: &Store, name: &str) -> Replica {
    let link = Arc::new(Link {
        store: store.clone(),
        stalled: AtomicBool::new(false),
    });
    let config = LeaderConfig {
        lease: LEASE,
        renew_every: RENEW,
        call_timeout: Duration::from_secs(1),
        ..LeaderConfig::new(name)
    };
    let leader = Leader::spawn(
        link.clone(),
        config,
        Arc::new(mayfly_forge::github::SystemClock),
    );
    let watch = leader.watch();
    Replica {
        name: name.into(),
        link,
        leader: Some(leader),
        watch,
    }
}

/// Who leads, as the replicas themselves believe, once exactly one does; panics if two ever
/// believe it at once, or if nobody leads within `within`.
async fn one_leader(replicas: &[&Replica], within: Duration) -> (String, Leadership, Duration) {
    let start = Instant::now();
    loop {
        let leading: Vec<_> = replicas
            .iter()
            .filter(|r| r.watch.borrow().leading)
            .collect();
        assert!(leading.len() <= 1, "two leaders at once");
        if let [r] = leading.as_slice() {
            return (r.name.clone(), r.watch.borrow().clone(), start.elapsed());
        }
        assert!(start.elapsed() < within, "nobody leads after {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn all(replicas: &[Replica]) -> Vec<&Replica> {
    replicas.iter().collect()
}

fn intent(name: &str) -> Intent {
    Intent {
        name: name.into(),
        pool: "default".into(),
        provider: "hetzner".into(),
        job: None,
        attempt: 0,
        run_id: None,
        labels: Labels::new(["self-hosted"]),
        spec: mayfly_controller::sample::spec(&["cx22"], &["fsn1"], Arch::X86),
        created_at: Time(0),
        state: IntentState::Pending,
        provider_id: None,
        updated_at: Time(0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_one_leader_failover_and_fencing() {
    let Some(url) = database().await else {
        return;
    };
    let store = Store::open(&url).await.unwrap();
    let mut replicas = vec![
        start(&store, "r1"),
        start(&store, "r2"),
        start(&store, "r3"),
    ];

    let (first, lead, _) = one_leader(&all(&replicas), LEASE * 2).await;
    assert!(lead.leads_now());
    let fence = lead.fence().unwrap();
    assert_eq!(fence.holder, first);
    let old = store.fenced(fence.clone());
    assert!(old.record_intent(&intent("before")).await.unwrap());
    // Followers know who leads.
    tokio::time::sleep(RENEW * 3).await;
    for r in replicas.iter().filter(|r| r.name != first) {
        let l = r.watch.borrow().clone();
        assert_eq!(
            (l.leading, l.holder.as_deref()),
            (false, Some(first.as_str()))
        );
    }
    assert_eq!(
        store.writer_elsewhere().await.unwrap().as_deref(),
        Some(first.as_str())
    );

    // The leader's link stalls: it steps down by the time its lease may run out, and another
    // replica leads within a lease and a renewal of the last renewal.
    let stalled = replicas.iter().position(|r| r.name == first).unwrap();
    replicas[stalled].link.stalled.store(true, Ordering::SeqCst);
    let stalled_at = Instant::now();
    let mut w = replicas[stalled].watch.clone();
    tokio::time::timeout(LEASE + RENEW, w.wait_for(|l| !l.leading))
        .await
        .expect("a stalled leader steps down within its lease")
        .unwrap();
    let stepped_down = stalled_at.elapsed();
    let (second, lead2, _) = one_leader(&all(&replicas), LEASE * 3).await;
    let gap = stalled_at.elapsed();
    println!(
        "stalled leader stepped down after {stepped_down:?}; {second} led {gap:?} after the stall"
    );
    assert_ne!(second, first);
    // The lease, one try of the follower's, and slack for a loaded machine.
    assert!(gap <= LEASE + RENEW + Duration::from_secs(1), "{gap:?}");
    assert!(lead2.epoch > fence.epoch);

    // Back in touch, the old leader writes nothing under its old epoch, and follows.
    replicas[stalled]
        .link
        .stalled
        .store(false, Ordering::SeqCst);
    let err = old.record_intent(&intent("after")).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("{second} leads now, under epoch {}", lead2.epoch)),
        "{err}"
    );
    assert!(
        store
            .fenced(lead2.fence().unwrap())
            .record_intent(&intent("new"))
            .await
            .unwrap()
    );
    tokio::time::sleep(RENEW * 4).await;
    let (still, _, _) = one_leader(&all(&replicas), LEASE).await;
    assert_eq!(still, second, "the old leader did not take it back");
    let back = replicas[stalled].watch.borrow().clone();
    assert_eq!(back.holder.as_deref(), Some(second.as_str()));
    let names: Vec<_> = store
        .intents()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names.len(), 2);
    assert!(!names.contains(&"after".to_string()));

    // A planned stop releases the lease: a follower leads at its next try, not a lease later.
    let i = replicas.iter().position(|r| r.name == second).unwrap();
    let stopping = replicas.remove(i);
    let stopped_at = Instant::now();
    stopping.leader.unwrap().stop().await;
    let (third, _, _) = one_leader(&all(&replicas), LEASE * 2).await;
    let handover = stopped_at.elapsed();
    println!("planned stop: {third} led {handover:?} later");
    assert!(
        handover < LEASE,
        "before the lease could have run out: {handover:?}"
    );

    // A killed leader (its task gone, nothing released): another leads within lease + renew.
    let i = replicas.iter().position(|r| r.name == third).unwrap();
    let killed = replicas.remove(i);
    let killed_at = Instant::now();
    drop(killed.leader);
    let (fourth, _, _) = one_leader(&all(&replicas), LEASE * 3).await;
    let failover = killed_at.elapsed();
    println!("killed leader: {fourth} led {failover:?} later");
    assert_ne!(fourth, third);
    assert!(
        failover <= LEASE + RENEW + Duration::from_secs(1),
        "{failover:?}"
    );

    for r in replicas {
        if let Some(l) = r.leader {
            l.stop().await;
        }
    }
    store.close().await;
}
