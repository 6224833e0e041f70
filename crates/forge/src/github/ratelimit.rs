//! One limiter per credential: the primary budget as GitHub's headers report it, pauses GitHub
//! asks for, the concurrency cap, write spacing, and the reserve kept for serving jobs.

use super::config::LimitsConfig;
use super::error::Error;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use mayfly_core::Time;
use reqwest::header::HeaderMap;
use std::num::NonZeroU32;
use std::time::Duration;
use tokio::sync::SemaphorePermit;

/// GitHub's documented hourly budget, assumed until the first answer says otherwise.
const ASSUMED_LIMIT: u32 = 5000;

pub(crate) use crate::budget::RESET_SLACK;
pub use crate::budget::{Budget, Priority};
use crate::budget::{Gate, Refusal};

/// The shared rule ([`Gate`]) with GitHub's headers and its write spacing.
pub(crate) struct Limiter {
    gate: Gate,
    writes: Option<DefaultDirectRateLimiter>,
}

impl Limiter {
    pub(crate) fn new(limits: &LimitsConfig) -> Limiter {
        Limiter {
            gate: Gate::new(
                limits.max_concurrent,
                limits.reserve,
                ASSUMED_LIMIT,
                [
                    "x-ratelimit-limit",
                    "x-ratelimit-remaining",
                    "x-ratelimit-reset",
                ],
            ),
            writes: Quota::with_period(limits.write_interval()).map(|q| {
                let burst = NonZeroU32::new(limits.write_burst).unwrap_or(NonZeroU32::MIN);
                RateLimiter::direct(q.allow_burst(burst))
            }),
        }
    }

    pub(crate) fn budget(&self) -> Budget {
        self.gate.budget()
    }

    /// Whether a request may be sent at `now`; if not, how long to wait or that it is postponed.
    pub(crate) fn admit(&self, priority: Priority, now: Time) -> Result<(), Error> {
        self.gate.admit(priority, now).map_err(|r| match r {
            Refusal::Wait(d) => Error::RateLimited {
                retry_after: Some(d),
            },
            Refusal::Postponed => Error::Postponed,
        })
    }

    /// Takes in the `x-ratelimit-*` headers of any answer, 304s included.
    pub(crate) fn observe(&self, headers: &HeaderMap) {
        if let Some(budget) = self.gate.observe(headers) {
            super::metrics::remaining(budget.remaining);
        }
    }

    /// Holds every request of this credential until `until` (GitHub asked for a pause).
    pub(crate) fn pause(&self, until: Time) {
        self.gate.pause(until);
    }

    /// One of the concurrent-request slots, held for the request's life.
    pub(crate) async fn slot(&self) -> Option<SemaphorePermit<'_>> {
        self.gate.slot().await
    }

    /// Waits for the next write's turn: a burst of `write_burst` goes at once, then writes are
    /// spaced by `write_interval` (a token bucket), as GitHub's secondary limits allow.
    pub(crate) async fn space_write(&self) {
        if let Some(w) = &self.writes {
            w.until_ready().await;
        }
    }
}

/// Seconds of a `retry-after` header (GitHub sends whole seconds, not dates).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(limit: u32, remaining: u32, reset: i64) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-ratelimit-limit", limit.to_string()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-reset", reset.to_string()),
        ] {
            h.insert(k, HeaderValue::from_str(&v).unwrap());
        }
        h
    }

    #[test]
    fn the_reserve_postpones_housekeeping_only() {
        let l = Limiter::new(&LimitsConfig::default());
        let now = Time::from_secs(1000);
        l.observe(&headers(100, 50, 2000));
        assert_eq!(l.admit(Priority::Housekeeping, now), Ok(()));
        l.observe(&headers(100, 9, 2000));
        assert_eq!(l.admit(Priority::Housekeeping, now), Err(Error::Postponed));
        assert_eq!(l.admit(Priority::Essential, now), Ok(()));
        l.observe(&headers(100, 0, 2000));
        assert_eq!(
            l.admit(Priority::Essential, now),
            Err(Error::RateLimited {
                retry_after: Some(Duration::from_secs(1001))
            })
        );
        assert_eq!(
            l.admit(Priority::Housekeeping, Time::from_secs(2000)),
            Ok(()),
            "the budget refills at reset"
        );
        assert_eq!(l.budget().remaining, 0);
    }

    #[test]
    fn writes_go_out_in_a_burst_then_spaced() {
        let l = Limiter::new(&LimitsConfig {
            write_interval_ms: 60_000,
            write_burst: 10,
            ..LimitsConfig::default()
        });
        let bucket = l.writes.as_ref().expect("a write limiter");
        for n in 0..10 {
            assert!(
                bucket.check().is_ok(),
                "write {n} of the burst goes at once"
            );
        }
        assert!(bucket.check().is_err(), "the 11th waits its turn");
        let none = Limiter::new(&LimitsConfig {
            write_interval_ms: 0,
            ..LimitsConfig::default()
        });
        assert!(none.writes.is_none(), "0 turns spacing off");
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
