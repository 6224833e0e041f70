//! Leader election for replicas of `mayfly run` on one store: a task that takes and renews the
//! store's leader lease and publishes whether this replica leads, and under which fence.
//!
//! Only the leader runs reconcile passes; every replica serves webhooks and the API. The lease
//! lives in the store (`mayfly_store::lease`), whose epoch fences every intent write, so a
//! replica that believes it leads a little too long can still write nothing. This task keeps
//! that belief short: it stops leading as soon as a renewal fails, is refused, or cannot
//! complete before the lease it last renewed would run out, and every call it makes is bounded.

use async_trait::async_trait;
use mayfly_core::{Clock, Time};
use mayfly_store::{Acquired, Fence, Lease, Store, StoreError};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// How the lease is held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderConfig {
    /// This replica's name in the lease: unique per process (see [`replica_id`]), since a
    /// holder may take its own lease again at once.
    pub replica: String,
    /// How long a lease lasts unless renewed: a dead leader's successor leads at most this
    /// plus `renew_every` later.
    pub lease: Duration,
    /// How often the leader renews, and a follower tries to take over.
    pub renew_every: Duration,
    /// The longest any one store call may take.
    pub call_timeout: Duration,
}

impl LeaderConfig {
    /// Defaults: a 10 s lease renewed every 2 s, so a follower leads within 12 s of the
    /// leader's death (the target is 15 s). A leader whose renewal fails steps down at once and,
    /// if nobody else took the lease meanwhile, takes it again (a new epoch) at its next try.
    pub fn new(replica: impl Into<String>) -> LeaderConfig {
        LeaderConfig {
            replica: replica.into(),
            lease: Duration::from_secs(10),
            renew_every: Duration::from_secs(2),
            call_timeout: Duration::from_secs(2),
        }
    }
}

/// What this replica knows about leadership, as published on the watch channel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Leadership {
    /// Whether this replica leads: passes run only while it does.
    pub leading: bool,
    /// The epoch this replica leads under; otherwise the last epoch seen in the store (0 when
    /// the store could not be read).
    pub epoch: u64,
    /// Who leads as last seen: this replica while it leads, another one's name, or `None`
    /// (nobody holds the lease, or the store could not be read).
    pub holder: Option<String>,
    /// When this replica began leading (its clock); `None` while it follows.
    pub since: Option<Time>,
    /// Until when this replica is sure to hold the lease, as of its last renewal: updated
    /// without a notification. A process paused past it (SIGSTOP) wakes up believing it leads
    /// until the election task runs again; [`Leadership::leads_now`] does not.
    #[serde(skip)]
    pub sure_until: Option<Instant>,
}

impl Leadership {
    /// Whether this replica leads and its lease cannot have run out: what a pass checks
    /// before it starts, and between steps.
    pub fn leads_now(&self) -> bool {
        self.leading && self.sure_until.is_some_and(|until| Instant::now() < until)
    }

    /// The fence for intent writes (`Store::fenced`), while this replica leads.
    pub fn fence(&self) -> Option<Fence> {
        match (&self.holder, self.leading) {
            (Some(holder), true) => Some(Fence {
                holder: holder.clone(),
                epoch: self.epoch,
            }),
            _ => None,
        }
    }
}

/// A name for this process in the lease: the host, the process id and a random suffix (a
/// restarted process with the same pid on the same host is still a new holder).
pub fn replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let suffix: u16 = rand::random();
    format!("{host}-{}-{suffix:04x}", std::process::id())
}

/// The store calls the task makes; a trait so that tests can slow or fail them.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    async fn acquire(&self, holder: &str, lease: Duration) -> Result<Acquired, StoreError>;
    async fn renew(&self, fence: &Fence, lease: Duration) -> Result<Option<Lease>, StoreError>;
    async fn release(&self, fence: &Fence) -> Result<bool, StoreError>;
}

#[async_trait]
impl LeaseStore for Store {
    async fn acquire(&self, holder: &str, lease: Duration) -> Result<Acquired, StoreError> {
        self.acquire_lease(holder, lease).await
    }

    async fn renew(&self, fence: &Fence, lease: Duration) -> Result<Option<Lease>, StoreError> {
        self.renew_lease(fence, lease).await
    }

    async fn release(&self, fence: &Fence) -> Result<bool, StoreError> {
        self.release_lease(fence).await
    }
}

/// The running election; dropping it stops the task without releasing the lease (it then
/// runs out), [`Leader::stop`] releases it so a follower leads at once.
pub struct Leader {
    leadership: watch::Receiver<Leadership>,
    stop: watch::Sender<bool>,
    /// `None` once stopped.
    task: Option<JoinHandle<()>>,
}

impl Leader {
    /// Starts the task. It tries to lead at once, then every `renew_every`.
    pub fn spawn(
        store: Arc<dyn LeaseStore>,
        config: LeaderConfig,
        clock: Arc<dyn Clock>,
    ) -> Leader {
        let (publish, leadership) = watch::channel(Leadership::default());
        let (stop, stopped) = watch::channel(false);
        let election = Election {
            store,
            config,
            clock,
            publish,
        };
        let task = tokio::spawn(election.run(stopped));
        Leader {
            leadership,
            stop,
            task: Some(task),
        }
    }

    /// Leadership as it changes; `borrow()` gives the current state.
    pub fn watch(&self) -> watch::Receiver<Leadership> {
        self.leadership.clone()
    }

    pub fn current(&self) -> Leadership {
        self.leadership.borrow().clone()
    }

    /// Stops leading and following: releases the lease if held (bounded by the call timeout),
    /// then ends the task.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            warn!(error = %e, "the leader election task failed");
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

struct Election {
    store: Arc<dyn LeaseStore>,
    config: LeaderConfig,
    clock: Arc<dyn Clock>,
    publish: watch::Sender<Leadership>,
}

/// The lease as this replica holds it: its fence, and until when it can be sure to hold it.
struct Held {
    fence: Fence,
    /// The moment before the last successful renewal was sent, plus the lease: the store's
    /// expiry is no earlier, since the store computed it after that moment.
    sure_until: Instant,
}

impl Election {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let mut held: Option<Held> = None;
        loop {
            held = match held {
                None => self.try_to_lead().await,
                Some(h) => self.renew(h).await,
            };
            let wait = tokio::time::sleep(self.config.renew_every);
            tokio::select! {
                () = wait => {}
                _ = stopped.changed() => break,
            }
        }
        if let Some(h) = held {
            self.step_down(None, "stopping");
            match tokio::time::timeout(self.config.call_timeout, self.store.release(&h.fence)).await
            {
                Ok(Ok(_)) => info!(epoch = h.fence.epoch, "leader lease released"),
                Ok(Err(e)) => warn!(error = %e, "the leader lease was not released; it runs out"),
                Err(_) => warn!("releasing the leader lease timed out; it runs out"),
            }
        }
    }

    async fn try_to_lead(&self) -> Option<Held> {
        let sent = Instant::now();
        let answer = tokio::time::timeout(
            self.config.call_timeout,
            self.store.acquire(&self.config.replica, self.config.lease),
        )
        .await;
        match answer {
            Ok(Ok(Acquired::Leading(lease))) => {
                let epoch = lease.fence.epoch;
                info!(replica = %self.config.replica, epoch, "leading");
                let sure_until = sent + self.config.lease;
                self.publish.send_replace(Leadership {
                    leading: true,
                    epoch,
                    holder: Some(self.config.replica.clone()),
                    since: Some(self.clock.now()),
                    sure_until: Some(sure_until),
                });
                record(true, epoch);
                Some(Held {
                    fence: lease.fence,
                    sure_until,
                })
            }
            Ok(Ok(Acquired::Held(state))) => {
                let holder = state.live_holder().map(String::from);
                self.follow(holder, state.epoch);
                None
            }
            Ok(Err(e)) => {
                warn!(error = %e, "cannot read the leader lease");
                self.follow(None, 0);
                None
            }
            Err(_) => {
                warn!(timeout = ?self.config.call_timeout, "taking the leader lease timed out");
                self.follow(None, 0);
                None
            }
        }
    }

    async fn renew(&self, held: Held) -> Option<Held> {
        let sent = Instant::now();
        // Never past the moment the lease may have run out: a renewal that stalls until then
        // is a lost lease.
        let deadline = held.sure_until.min(sent + self.config.call_timeout);
        let answer =
            tokio::time::timeout_at(deadline, self.store.renew(&held.fence, self.config.lease))
                .await;
        match answer {
            Ok(Ok(Some(_))) => {
                debug!(epoch = held.fence.epoch, "leader lease renewed");
                let sure_until = sent + self.config.lease;
                // No notification: nothing a watcher acts on has changed.
                self.publish.send_if_modified(|now| {
                    now.sure_until = Some(sure_until);
                    false
                });
                Some(Held { sure_until, ..held })
            }
            Ok(Ok(None)) => {
                self.step_down(Some(&held), "the lease was lost to another replica");
                None
            }
            Ok(Err(e)) => {
                self.step_down(Some(&held), &format!("the renewal failed: {e}"));
                None
            }
            Err(_) => {
                self.step_down(Some(&held), "the renewal did not complete in time");
                None
            }
        }
    }

    fn step_down(&self, held: Option<&Held>, why: &str) {
        let epoch = held.map_or(self.publish.borrow().epoch, |h| h.fence.epoch);
        warn!(replica = %self.config.replica, epoch, why, "no longer leading");
        self.publish.send_replace(Leadership {
            epoch,
            ..Leadership::default()
        });
        record(false, epoch);
    }

    fn follow(&self, holder: Option<String>, epoch: u64) {
        let next = Leadership {
            epoch,
            holder,
            ..Leadership::default()
        };
        self.publish.send_if_modified(|now| {
            let changed = *now != next;
            if changed {
                debug!(leader = ?next.holder, epoch, "following");
                *now = next;
            }
            changed
        });
        record(false, epoch);
    }
}

/// `mayfly_leader` (1 while leading) and `mayfly_leader_epoch`; a controller alone on its
/// state records `record(true, 0)` at its start.
pub fn record(leading: bool, epoch: u64) {
    metrics::gauge!("mayfly_leader").set(if leading { 1.0 } else { 0.0 });
    metrics::gauge!("mayfly_leader_epoch").set(epoch as f64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use mayfly_store::LeaseState;
    use std::sync::Mutex;

    /// A lease store in memory, on tokio's (paused) clock, whose calls from one holder can be
    /// made to hang (that replica's link to the database is down; the others' is not).
    #[derive(Default)]
    struct Fake {
        state: Mutex<(Option<String>, u64, Option<Instant>)>,
        stall: Mutex<Option<String>>,
    }

    impl Fake {
        async fn stalled(&self, holder: &str) {
            if self.stall.lock().unwrap().as_deref() == Some(holder) {
                std::future::pending::<()>().await;
            }
        }

        fn stall(&self, holder: Option<&str>) {
            *self.stall.lock().unwrap() = holder.map(String::from);
        }
    }

    fn lease(holder: &str, epoch: u64) -> Lease {
        Lease {
            fence: Fence {
                holder: holder.into(),
                epoch,
            },
            acquired_at: Time(0),
            expires_at: Time(0),
        }
    }

    #[async_trait]
    impl LeaseStore for Fake {
        async fn acquire(&self, holder: &str, d: Duration) -> Result<Acquired, StoreError> {
            self.stalled(holder).await;
            let mut s = self.state.lock().unwrap();
            let live = s.2.is_some_and(|until| until > Instant::now());
            if live && s.0.as_deref() != Some(holder) {
                return Ok(Acquired::Held(LeaseState {
                    holder: s.0.clone(),
                    epoch: s.1,
                    acquired_at: Time(0),
                    expires_at: Time(1),
                    now: Time(0),
                }));
            }
            *s = (Some(holder.into()), s.1 + 1, Some(Instant::now() + d));
            Ok(Acquired::Leading(lease(holder, s.1)))
        }

        async fn renew(&self, fence: &Fence, d: Duration) -> Result<Option<Lease>, StoreError> {
            self.stalled(&fence.holder).await;
            let mut s = self.state.lock().unwrap();
            let live = s.2.is_some_and(|until| until > Instant::now());
            if !live || s.0.as_deref() != Some(&fence.holder) || s.1 != fence.epoch {
                return Ok(None);
            }
            s.2 = Some(Instant::now() + d);
            Ok(Some(lease(&fence.holder, fence.epoch)))
        }

        async fn release(&self, fence: &Fence) -> Result<bool, StoreError> {
            let mut s = self.state.lock().unwrap();
            if s.0.as_deref() == Some(&fence.holder) && s.1 == fence.epoch {
                s.0 = None;
                s.2 = None;
                return Ok(true);
            }
            Ok(false)
        }
    }

    fn config(replica: &str) -> LeaderConfig {
        LeaderConfig {
            call_timeout: Duration::from_secs(5),
            ..LeaderConfig::new(replica)
        }
    }

    fn clock() -> Arc<dyn Clock> {
        Arc::new(mayfly_forge::clock::SystemClock)
    }

    /// Waits (in paused time) until `rx` satisfies `f`; the time it took.
    async fn until(
        rx: &mut watch::Receiver<Leadership>,
        f: impl Fn(&Leadership) -> bool,
    ) -> Duration {
        let start = Instant::now();
        tokio::time::timeout(Duration::from_secs(120), rx.wait_for(|l| f(l)))
            .await
            .expect("in time")
            .expect("the task runs");
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn one_leads_and_a_stalled_leader_steps_down_before_its_lease_runs_out() {
        let store = Arc::new(Fake::default());
        let a = Leader::spawn(store.clone(), config("a"), clock());
        let mut wa = a.watch();
        until(&mut wa, |l| l.leading).await;
        let la = a.current();
        assert!(la.leads_now());
        assert_eq!((la.holder.as_deref(), la.epoch), (Some("a"), 1));
        assert_eq!(
            la.fence(),
            Some(Fence {
                holder: "a".into(),
                epoch: 1
            })
        );
        let b = Leader::spawn(store.clone(), config("b"), clock());
        let mut wb = b.watch();
        until(&mut wb, |l| l.holder.as_deref() == Some("a")).await;
        assert!(!b.current().leading);
        assert_eq!(b.current().fence(), None);

        // a's renewals hang from now on: it stops leading once its last renewal could have
        // run out (at most the lease after it was sent), not later.
        store.stall(Some("a"));
        let stepped_down = until(&mut wa, |l| !l.leading).await;
        assert!(stepped_down <= Duration::from_secs(10), "{stepped_down:?}");
        // b takes over once the lease ran out in the store: within lease + renew_every.
        let took_over = until(&mut wb, |l| l.leading).await;
        assert!(
            stepped_down + took_over <= Duration::from_secs(12) + Duration::from_millis(10),
            "{stepped_down:?} + {took_over:?}"
        );
        assert_eq!(b.current().epoch, 2);
        // Back in touch, a follows b, without taking it back.
        store.stall(None);
        until(&mut wa, |l| l.holder.as_deref() == Some("b")).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(b.current().leading && !a.current().leading);

        // A planned stop hands over at once: at the follower's next try.
        b.stop().await;
        let handover = until(&mut wa, |l| l.leading).await;
        assert!(handover <= Duration::from_secs(2), "{handover:?}");
        assert_eq!(a.current().epoch, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_renewal_steps_down_at_once() {
        let store = Arc::new(Fake::default());
        let a = Leader::spawn(store.clone(), config("a"), clock());
        let mut wa = a.watch();
        until(&mut wa, |l| l.leading).await;
        // Another holder took the lease meanwhile (as after a pause).
        *store.state.lock().unwrap() = (
            Some("x".into()),
            7,
            Some(Instant::now() + Duration::from_secs(60)),
        );
        let gone = until(&mut wa, |l| !l.leading).await;
        assert!(gone <= Duration::from_secs(2), "{gone:?}");
        until(&mut wa, |l| {
            l.holder.as_deref() == Some("x") && l.epoch == 7
        })
        .await;
    }

    #[test]
    fn replica_ids_name_the_host_and_the_process() {
        let id = replica_id();
        let (rest, suffix) = id.rsplit_once('-').unwrap();
        assert!(rest.ends_with(&format!("-{}", std::process::id())), "{id}");
        assert_eq!(suffix.len(), 4, "{id}");
        assert!(suffix.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
}
