//! One limiter per client: the per-minute budget GitLab's `RateLimit-*` headers report, the
//! pauses a 429 asks for, the concurrency cap, and the reserve kept for serving jobs (the same
//! rule as GitHub's: below `reserve` of the budget, housekeeping waits for the next window).

use super::config::LimitsConfig;
use super::error::Error;
use mayfly_core::Time;
use reqwest::header::HeaderMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// GitLab.com's authenticated API budget, assumed until the first answer says otherwise.
const ASSUMED_LIMIT: u32 = 2000;
/// `RateLimit-Reset` has whole seconds; waiting one more avoids arriving a moment early.
pub(crate) const RESET_SLACK: Duration = Duration::from_secs(1);

/// Which requests may spend the last of the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Stops paying (deletes) or serves a job (runner records, pending jobs, a job's tags).
    Essential,
    /// Reads that can wait for the next window: runner lists, runner details, group projects.
    Housekeeping,
}

/// The budget as last reported, for metrics. It refills at `reset_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub limit: u32,
    pub remaining: u32,
    pub reset_at: Time,
}

pub(crate) struct Limiter {
    state: Mutex<State>,
    concurrency: Semaphore,
    reserve: f64,
}

#[derive(Default)]
struct State {
    budget: Option<Budget>,
    /// Set by a 429: nothing is sent before it.
    paused_until: Option<Time>,
}

impl Limiter {
    pub(crate) fn new(limits: &LimitsConfig) -> Limiter {
        Limiter {
            state: Mutex::new(State::default()),
            concurrency: Semaphore::new(limits.max_concurrent.max(1)),
            reserve: limits.reserve.clamp(0.0, 1.0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn budget(&self) -> Budget {
        self.state().budget.unwrap_or(Budget {
            limit: ASSUMED_LIMIT,
            remaining: ASSUMED_LIMIT,
            reset_at: Time::default(),
        })
    }

    /// Whether a request may be sent at `now`; if not, how long to wait or that it is postponed.
    pub(crate) fn admit(&self, priority: Priority, now: Time) -> Result<(), Error> {
        let st = self.state();
        if let Some(until) = st.paused_until.filter(|u| *u > now) {
            return Err(Error::RateLimited {
                retry_after: Some(until.since(now)),
            });
        }
        let Some(b) = st.budget.filter(|b| b.reset_at > now) else {
            return Ok(());
        };
        if b.remaining == 0 {
            return Err(Error::RateLimited {
                retry_after: Some(b.reset_at.since(now) + RESET_SLACK),
            });
        }
        if priority == Priority::Housekeeping
            && f64::from(b.remaining) < self.reserve * f64::from(b.limit)
        {
            return Err(Error::Postponed);
        }
        Ok(())
    }

    /// Takes in the `RateLimit-*` headers of any answer.
    pub(crate) fn observe(&self, headers: &HeaderMap) {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        if let (Some(limit), Some(remaining), Some(reset)) = (
            num("ratelimit-limit"),
            num("ratelimit-remaining"),
            num("ratelimit-reset"),
        ) {
            let budget = Budget {
                limit: limit.clamp(0, i64::from(u32::MAX)) as u32,
                remaining: remaining.clamp(0, i64::from(u32::MAX)) as u32,
                reset_at: Time::from_secs(reset),
            };
            super::metrics::remaining(budget.remaining);
            self.state().budget = Some(budget);
        }
    }

    /// Holds every request until `until` (GitLab asked for a pause).
    pub(crate) fn pause(&self, until: Time) {
        let mut st = self.state();
        st.paused_until = Some(st.paused_until.map_or(until, |u| u.max(until)));
    }

    /// One of the concurrent-request slots, held for the request's life.
    pub(crate) async fn slot(&self) -> Option<SemaphorePermit<'_>> {
        self.concurrency.acquire().await.ok()
    }
}

/// How long a 429 asks to wait: `Retry-After` (seconds, relative, so immune to skew between
/// GitLab's clock and ours), else `RateLimit-ResetTime` (an HTTP date), else `RateLimit-Reset`
/// (epoch seconds). gitlab-runner reads the date first; the relative header is the safer one.
pub(crate) fn retry_after(headers: &HeaderMap, now: Time) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(secs) = text("retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    let at = text("ratelimit-resettime")
        .and_then(|v| jiff::fmt::rfc2822::parse(v).ok())
        .map(|z| Time::from_millis(z.timestamp().as_millisecond()))
        .or_else(|| {
            text("ratelimit-reset")
                .and_then(|v| v.parse::<i64>().ok())
                .map(Time::from_secs)
        })?;
    Some(at.since(now) + RESET_SLACK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn budget(limit: u32, remaining: u32, reset: i64) -> HeaderMap {
        headers(&[
            ("ratelimit-limit", &limit.to_string()),
            ("ratelimit-remaining", &remaining.to_string()),
            ("ratelimit-reset", &reset.to_string()),
        ])
    }

    #[test]
    fn the_reserve_postpones_housekeeping_only() {
        let l = Limiter::new(&LimitsConfig::default());
        let now = Time::from_secs(1000);
        l.observe(&budget(2000, 1000, 1060));
        assert_eq!(l.admit(Priority::Housekeeping, now), Ok(()));
        l.observe(&budget(2000, 199, 1060));
        assert_eq!(l.admit(Priority::Housekeeping, now), Err(Error::Postponed));
        assert_eq!(l.admit(Priority::Essential, now), Ok(()));
        l.observe(&budget(2000, 0, 1060));
        assert_eq!(
            l.admit(Priority::Essential, now),
            Err(Error::RateLimited {
                retry_after: Some(Duration::from_secs(61))
            })
        );
        assert_eq!(
            l.admit(Priority::Housekeeping, Time::from_secs(1060)),
            Ok(()),
            "the next minute's budget"
        );
    }

    #[test]
    fn a_429_says_how_long_in_one_of_three_ways() {
        let now = Time::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(
                &headers(&[("ratelimit-resettime", "Tue, 14 Nov 2023 22:13:40 GMT")]),
                now
            ),
            Some(Duration::from_secs(21))
        );
        assert_eq!(
            retry_after(&headers(&[("ratelimit-reset", "1700000030")]), now),
            Some(Duration::from_secs(31))
        );
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn a_pause_holds_every_request_until_it_ends() {
        let l = Limiter::new(&LimitsConfig::default());
        l.pause(Time::from_secs(10));
        l.pause(Time::from_secs(5));
        assert!(matches!(
            l.admit(Priority::Essential, Time::from_secs(4)),
            Err(Error::RateLimited { retry_after: Some(d) }) if d == Duration::from_secs(6)
        ));
        assert_eq!(l.admit(Priority::Essential, Time::from_secs(10)), Ok(()));
    }
}
