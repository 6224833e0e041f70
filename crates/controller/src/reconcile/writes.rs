//! Who may act, and how a pass's intent writes prove it: plain writes for a controller that is
//! the store's only writer, writes fenced by the leader's lease when replicas share the store.
//!
//! A pass takes its [`Writer`] once, when it starts, so every write of the pass carries the
//! epoch it started under: a replica that lost the lease meanwhile (paused, partitioned) is
//! refused by the store at its first write, and [`Stop`] then keeps the pass's other steps from
//! starting. A shutdown uses the same stop: steps not yet started are skipped, a step in flight
//! reaches its next safe point (never between an intent and its create without the intent kept).

use crate::leader::Leadership;
use mayfly_core::{JobKey, Labels, Time};
use mayfly_store::{Fenced, Intent, IntentState, Store, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

/// The intent writes of one pass.
#[derive(Clone, Debug)]
pub enum Writer {
    /// This process is the store's only writer (SQLite's file lock, the demo, `mayfly status`).
    Alone(Store),
    /// One of several replicas, leading under this fence.
    Fenced(Fenced),
    /// One of several replicas, not leading: every write is refused.
    NotLeading { holder: Option<String>, epoch: u64 },
}

impl Writer {
    /// The writer for a pass starting now: plain without an election, fenced while leading.
    pub fn now(store: &Store, leadership: Option<&watch::Receiver<Leadership>>) -> Writer {
        let Some(leadership) = leadership else {
            return Writer::Alone(store.clone());
        };
        let l = leadership.borrow();
        match l.fence() {
            Some(fence) if l.leads_now() => Writer::Fenced(store.fenced(fence)),
            _ => Writer::NotLeading {
                holder: l.holder.clone().filter(|_| !l.leading),
                epoch: l.epoch,
            },
        }
    }

    /// Why this writer may not act, if it may not.
    pub fn refusal(&self) -> Option<String> {
        match self {
            Writer::NotLeading { holder, .. } => Some(match holder {
                Some(h) => format!("this replica does not lead ({h} does)"),
                None => "this replica does not lead".to_string(),
            }),
            _ => None,
        }
    }

    fn refuse(&self, what: String) -> StoreError {
        let (holder, epoch) = match self {
            Writer::NotLeading { holder, epoch } => (holder.clone(), *epoch),
            _ => (None, 0),
        };
        StoreError::Fenced {
            what,
            holder: "this replica".into(),
            epoch,
            reason: match holder {
                Some(h) => format!("{h} leads"),
                None => "it holds no lease".into(),
            },
        }
    }

    /// Whether this writer may act now (see `Fenced::check`): before a rebuild or a delete,
    /// acts no intent write comes before.
    pub async fn check(&self, what: &str) -> Result<(), StoreError> {
        match self {
            Writer::Alone(_) => Ok(()),
            Writer::Fenced(f) => f.check().await,
            Writer::NotLeading { .. } => Err(self.refuse(what.to_string())),
        }
    }

    pub async fn record_intent(&self, intent: &Intent) -> Result<bool, StoreError> {
        match self {
            Writer::Alone(s) => s.record_intent(intent).await,
            Writer::Fenced(f) => f.record_intent(intent).await,
            Writer::NotLeading { .. } => Err(self.refuse(format!("record intent {}", intent.name))),
        }
    }

    pub async fn set_intent_state(
        &self,
        name: &str,
        state: IntentState,
        provider_id: Option<&str>,
        at: Time,
    ) -> Result<bool, StoreError> {
        match self {
            Writer::Alone(s) => s.set_intent_state(name, state, provider_id, at).await,
            Writer::Fenced(f) => f.set_intent_state(name, state, provider_id, at).await,
            Writer::NotLeading { .. } => Err(self.refuse(format!("set intent {name} to {state}"))),
        }
    }

    pub async fn reassign_intent(
        &self,
        name: &str,
        job: Option<&JobKey>,
        attempt: u32,
        run_id: Option<u64>,
        labels: &Labels,
        at: Time,
    ) -> Result<bool, StoreError> {
        match self {
            Writer::Alone(s) => {
                s.reassign_intent(name, job, attempt, run_id, labels, at)
                    .await
            }
            Writer::Fenced(f) => {
                f.reassign_intent(name, job, attempt, run_id, labels, at)
                    .await
            }
            Writer::NotLeading { .. } => Err(self.refuse(format!("reassign intent {name}"))),
        }
    }

    pub async fn remove_intent(&self, name: &str) -> Result<bool, StoreError> {
        match self {
            Writer::Alone(s) => s.remove_intent(name).await,
            Writer::Fenced(f) => f.remove_intent(name).await,
            Writer::NotLeading { .. } => Err(self.refuse(format!("remove intent {name}"))),
        }
    }
}

/// Set when the daemon is shutting down: steps not yet started are skipped. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Halt(Arc<AtomicBool>);

impl Halt {
    pub fn halt(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn halted(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Whether a pass's steps may still start, and why not: a shutdown, a write the store refused
/// for a lost lease, or leadership seen lost.
pub struct Stop {
    halt: Halt,
    leadership: Option<watch::Receiver<Leadership>>,
    fenced: std::sync::Mutex<Option<String>>,
}

impl Stop {
    pub fn new(halt: Halt, leadership: Option<watch::Receiver<Leadership>>) -> Stop {
        Stop {
            halt,
            leadership,
            fenced: std::sync::Mutex::new(None),
        }
    }

    /// Why no step may start now; `None` while steps may.
    pub fn why(&self) -> Option<String> {
        if self.halt.halted() {
            return Some("shutting down".into());
        }
        if let Some(why) = self
            .fenced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Some(why);
        }
        match &self.leadership {
            Some(l) if !l.borrow().leads_now() => Some("this replica no longer leads".into()),
            _ => None,
        }
    }

    /// Notes a store error: a refused fence stops every later step of the pass.
    pub fn saw(&self, e: &StoreError) {
        if matches!(e, StoreError::Fenced { .. }) {
            let mut f = self.fenced.lock().unwrap_or_else(|e| e.into_inner());
            if f.is_none() {
                tracing::warn!(error = %e, "the store refused this replica's fence: the pass stops");
                *f = Some(format!("the lease was lost: {e}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mayfly_core::Arch;

    fn intent() -> Intent {
        Intent {
            name: "mf-linux-1-1".into(),
            pool: "linux".into(),
            provider: "hetzner".into(),
            job: None,
            attempt: 1,
            run_id: None,
            labels: Labels::new(["self-hosted"]),
            spec: crate::sample::spec(&["cx23"], &["fsn1"], Arch::X86),
            created_at: Time(0),
            state: IntentState::Pending,
            provider_id: None,
            updated_at: Time(0),
        }
    }

    fn leadership(leading: bool, holder: &str, epoch: u64, lease: u64) -> Leadership {
        Leadership {
            leading,
            epoch,
            holder: Some(holder.into()),
            since: None,
            sure_until: Some(tokio::time::Instant::now() + std::time::Duration::from_secs(lease)),
        }
    }

    #[tokio::test]
    async fn a_follower_writes_nothing_and_a_leader_writes_under_its_epoch() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        // Without an election: plain writes.
        let alone = Writer::now(&store, None);
        assert!(alone.refusal().is_none());
        assert!(alone.check("a delete").await.is_ok());

        let (publish, rx) = watch::channel(leadership(false, "other", 3, 60));
        let follower = Writer::now(&store, Some(&rx));
        assert_eq!(
            follower.refusal().as_deref(),
            Some("this replica does not lead (other does)")
        );
        let e = follower.record_intent(&intent()).await.unwrap_err();
        assert!(matches!(e, StoreError::Fenced { .. }), "{e}");
        assert!(follower.check("a delete").await.is_err());
        assert!(store.intents().await.unwrap().is_empty());

        // Leading under a lease the store granted: fenced writes go through.
        let Ok(mayfly_store::Acquired::Leading(lease)) = store
            .acquire_lease("me", std::time::Duration::from_secs(60))
            .await
        else {
            panic!("no lease");
        };
        publish.send_replace(leadership(true, "me", lease.fence.epoch, 60));
        let leader = Writer::now(&store, Some(&rx));
        assert!(matches!(leader, Writer::Fenced(_)));
        assert!(leader.record_intent(&intent()).await.unwrap());
        leader.check("a delete").await.unwrap();

        // Another replica takes over: the writer of the old epoch is refused, and a pass's
        // stop says so from then on.
        store.release_lease(&lease.fence).await.unwrap();
        store
            .acquire_lease("other", std::time::Duration::from_secs(60))
            .await
            .unwrap();
        let e = leader
            .set_intent_state("mf-linux-1-1", IntentState::Created, Some("1"), Time(1))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("other leads now"), "{e}");
        let stop = Stop::new(Halt::default(), Some(rx.clone()));
        assert_eq!(stop.why(), None);
        stop.saw(&e);
        assert!(stop.why().unwrap().contains("the lease was lost"));
        let intents = store.intents().await.unwrap();
        assert_eq!(intents[0].state, IntentState::Pending, "nothing written");
    }

    #[test]
    fn a_halt_or_a_lapsed_lease_stops_the_steps() {
        let halt = Halt::default();
        let stop = Stop::new(halt.clone(), None);
        assert_eq!(stop.why(), None);
        halt.halt();
        assert_eq!(stop.why().as_deref(), Some("shutting down"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _in = rt.enter();
        let (_publish, rx) = watch::channel(leadership(true, "me", 1, 0));
        let stop = Stop::new(Halt::default(), Some(rx));
        assert_eq!(stop.why().as_deref(), Some("this replica no longer leads"));
    }
}
