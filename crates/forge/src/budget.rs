//! The rate-limit rule both forges share: the budget their headers report, the pauses a 429 or
//! an exhausted budget asks for, the concurrency cap, the reserve kept for serving jobs (below
//! `reserve` of the budget, housekeeping waits for the next window), and write spacing.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use mayfly_core::Time;
use reqwest::header::HeaderMap;
use std::num::NonZeroU32;
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

/// What sets one forge's budget apart.
pub(crate) struct Rules {
    /// The documented budget, assumed until the first answer says otherwise.
    pub assumed: u32,
    pub headers: HeaderNames,
    /// Reports the remaining budget as the forge's metric.
    pub report: fn(u32),
}

/// One limiter per credential (GitHub) or token (GitLab): clones of a client share it.
pub(crate) struct Gate {
    state: Mutex<State>,
    concurrency: Semaphore,
    reserve: f64,
    rules: Rules,
    /// Write spacing, where the forge asks for it (GitHub's secondary limits).
    pub(crate) writes: Option<DefaultDirectRateLimiter>,
}

#[derive(Default)]
struct State {
    budget: Option<Budget>,
    /// Set by a pause asked for: nothing is sent before it.
    paused_until: Option<Time>,
}

impl Gate {
    pub(crate) fn new(rules: Rules, max_concurrent: usize, reserve: f64) -> Gate {
        Gate {
            state: Mutex::new(State::default()),
            concurrency: Semaphore::new(max_concurrent.max(1)),
            reserve: reserve.clamp(0.0, 1.0),
            rules,
            writes: None,
        }
    }

    /// Spaces writes: a burst of `burst` goes at once, then one per `interval` (a token
    /// bucket). A zero interval spaces nothing.
    pub(crate) fn with_write_spacing(mut self, interval: Duration, burst: u32) -> Gate {
        self.writes = Quota::with_period(interval).map(|q| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::direct(q.allow_burst(burst))
        });
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn budget(&self) -> Budget {
        self.state().budget.unwrap_or(Budget {
            limit: self.rules.assumed,
            remaining: self.rules.assumed,
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

    /// Takes in the budget headers of any answer, 304s included, and reports the remaining
    /// budget when they all came.
    pub(crate) fn observe(&self, headers: &HeaderMap) {
        if let Some(budget) = self.read(headers) {
            (self.rules.report)(budget.remaining);
        }
    }

    fn read(&self, headers: &HeaderMap) -> Option<Budget> {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        let [limit, remaining, reset] = self.rules.headers;
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

    /// Waits for the next write's turn, where writes are spaced.
    pub(crate) async fn space_write(&self) {
        if let Some(w) = &self.writes {
            w.until_ready().await;
        }
    }
}

/// For each forge's tests: that its limiter reads the budget from `names` (limit, remaining,
/// reset), assumes `assumed` until told, and keeps the default reserve (a tenth) for jobs.
#[cfg(test)]
pub(crate) fn check_forge_rules(gate: &Gate, assumed: u32, names: HeaderNames) {
    use reqwest::header::HeaderValue;
    assert_eq!(gate.budget().limit, assumed, "assumed until told");
    let mut h = HeaderMap::new();
    for (name, v) in names.iter().zip(["100", "9", "2000"]) {
        h.insert(*name, HeaderValue::from_static(v));
    }
    gate.observe(&h);
    let told = Budget {
        limit: 100,
        remaining: 9,
        reset_at: Time::from_secs(2000),
    };
    assert_eq!(gate.budget(), told);
    let now = Time::from_secs(1000);
    assert_eq!(
        gate.admit(Priority::Housekeeping, now),
        Err(Refusal::Postponed),
        "the default reserve"
    );
    assert_eq!(gate.admit(Priority::Essential, now), Ok(()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    const HEADERS: HeaderNames = ["limit", "remaining", "reset"];

    fn gate() -> Gate {
        Gate::new(
            Rules {
                assumed: 100,
                headers: HEADERS,
                report: |_| {},
            },
            4,
            0.1,
        )
    }

    fn headers(limit: u32, remaining: u32, reset: i64) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in
            HEADERS
                .iter()
                .zip([limit.to_string(), remaining.to_string(), reset.to_string()])
        {
            h.insert(*k, HeaderValue::from_str(&v).unwrap());
        }
        h
    }

    #[test]
    fn the_reserve_postpones_housekeeping_only() {
        let l = gate();
        let now = Time::from_secs(1000);
        l.observe(&headers(100, 50, 2000));
        assert_eq!(l.admit(Priority::Housekeeping, now), Ok(()));
        l.observe(&headers(100, 9, 2000));
        assert_eq!(
            l.admit(Priority::Housekeeping, now),
            Err(Refusal::Postponed)
        );
        assert_eq!(l.admit(Priority::Essential, now), Ok(()));
        l.observe(&headers(100, 0, 2000));
        assert_eq!(
            l.admit(Priority::Essential, now),
            Err(Refusal::Wait(Duration::from_secs(1001)))
        );
        assert_eq!(
            l.admit(Priority::Housekeeping, Time::from_secs(2000)),
            Ok(()),
            "the budget refills at reset"
        );
        assert_eq!(l.budget().remaining, 0);
    }

    #[test]
    fn a_pause_holds_every_request_until_it_ends() {
        let l = gate();
        l.pause(Time::from_secs(10));
        l.pause(Time::from_secs(5));
        assert_eq!(
            l.admit(Priority::Essential, Time::from_secs(4)),
            Err(Refusal::Wait(Duration::from_secs(6)))
        );
        assert_eq!(l.admit(Priority::Essential, Time::from_secs(10)), Ok(()));
    }

    #[test]
    fn a_zero_write_interval_spaces_nothing() {
        assert!(gate().writes.is_none());
        assert!(
            gate()
                .with_write_spacing(Duration::ZERO, 10)
                .writes
                .is_none()
        );
        assert!(
            gate()
                .with_write_spacing(Duration::from_secs(1), 10)
                .writes
                .is_some()
        );
    }
}
