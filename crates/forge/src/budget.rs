//! The rate-limit rule both forges share: the budget their headers report, the pauses a 429 or
//! an exhausted budget asks for, the concurrency cap, and the reserve kept for serving jobs
//! (below `reserve` of the budget, housekeeping waits for the next window).

use mayfly_core::Time;
use reqwest::header::HeaderMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// The reset headers have whole seconds; waiting one more avoids arriving a moment early.
pub(crate) const RESET_SLACK: Duration = Duration::from_secs(1);

/// Which requests may spend the last of the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Stops paying (deletes) or serves a job (single-use credentials, finding queued jobs).
    Essential,
    /// Reads that can wait for the next window: runner lists, job lookups.
    Housekeeping,
}

/// The budget as last reported, for metrics. It refills at `reset_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub limit: u32,
    pub remaining: u32,
    pub reset_at: Time,
}

/// Why a request may not go now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not before this long: a pause asked for, or the budget spent until its reset.
    Wait(Duration),
    /// Housekeeping, and the budget is down to the reserve.
    Postponed,
}

/// The names of a forge's budget headers: limit, remaining, reset (epoch seconds).
pub(crate) type HeaderNames = [&'static str; 3];

pub(crate) struct Gate {
    state: Mutex<State>,
    concurrency: Semaphore,
    reserve: f64,
    /// The documented budget, assumed until the first answer says otherwise.
    assumed: u32,
    headers: HeaderNames,
}

#[derive(Default)]
struct State {
    budget: Option<Budget>,
    /// Set by a pause asked for: nothing is sent before it.
    paused_until: Option<Time>,
}

impl Gate {
    pub(crate) fn new(
        max_concurrent: usize,
        reserve: f64,
        assumed: u32,
        headers: HeaderNames,
    ) -> Gate {
        Gate {
            state: Mutex::new(State::default()),
            concurrency: Semaphore::new(max_concurrent.max(1)),
            reserve: reserve.clamp(0.0, 1.0),
            assumed,
            headers,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn budget(&self) -> Budget {
        self.state().budget.unwrap_or(Budget {
            limit: self.assumed,
            remaining: self.assumed,
            reset_at: Time::default(),
        })
    }

    /// Whether a request may be sent at `now`; if not, how long to wait or that it is postponed.
    pub(crate) fn admit(&self, priority: Priority, now: Time) -> Result<(), Refusal> {
        let st = self.state();
        if let Some(until) = st.paused_until.filter(|u| *u > now) {
            return Err(Refusal::Wait(until.since(now)));
        }
        let Some(b) = st.budget.filter(|b| b.reset_at > now) else {
            return Ok(());
        };
        if b.remaining == 0 {
            return Err(Refusal::Wait(b.reset_at.since(now) + RESET_SLACK));
        }
        if priority == Priority::Housekeeping
            && f64::from(b.remaining) < self.reserve * f64::from(b.limit)
        {
            return Err(Refusal::Postponed);
        }
        Ok(())
    }

    /// Takes in the budget headers of any answer, 304s included; the budget they report, if
    /// they all came.
    pub(crate) fn observe(&self, headers: &HeaderMap) -> Option<Budget> {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        let [limit, remaining, reset] = self.headers;
        let (limit, remaining, reset) = (num(limit)?, num(remaining)?, num(reset)?);
        let budget = Budget {
            limit: limit.clamp(0, i64::from(u32::MAX)) as u32,
            remaining: remaining.clamp(0, i64::from(u32::MAX)) as u32,
            reset_at: Time::from_secs(reset),
        };
        self.state().budget = Some(budget);
        Some(budget)
    }

    /// Holds every request until `until` (the forge asked for a pause).
    pub(crate) fn pause(&self, until: Time) {
        let mut st = self.state();
        st.paused_until = Some(st.paused_until.map_or(until, |u| u.max(until)));
    }

    /// One of the concurrent-request slots, held for the request's life.
    pub(crate) async fn slot(&self) -> Option<SemaphorePermit<'_>> {
        self.concurrency.acquire().await.ok()
    }
}
