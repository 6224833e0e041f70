//! One limiter per client: the per-minute budget GitLab's `RateLimit-*` headers report, the
//! pauses a 429 asks for, the concurrency cap, and the reserve kept for serving jobs (the same
//! rule as GitHub's: below `reserve` of the budget, housekeeping waits for the next window).

use super::config::LimitsConfig;
use super::error::Error;
use mayfly_core::Time;
use reqwest::header::HeaderMap;
use std::time::Duration;
use tokio::sync::SemaphorePermit;

/// GitLab.com's authenticated API budget, assumed until the first answer says otherwise.
const ASSUMED_LIMIT: u32 = 2000;

pub(crate) use crate::budget::RESET_SLACK;
pub use crate::budget::{Budget, Priority};
use crate::budget::{Gate, Refusal};

/// The shared rule ([`Gate`]) with GitLab's headers.
pub(crate) struct Limiter {
    gate: Gate,
}

impl Limiter {
    pub(crate) fn new(limits: &LimitsConfig) -> Limiter {
        Limiter {
            gate: Gate::new(
                limits.max_concurrent,
                limits.reserve,
                ASSUMED_LIMIT,
                ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"],
            ),
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

    /// Takes in the `RateLimit-*` headers of any answer.
    pub(crate) fn observe(&self, headers: &HeaderMap) {
        if let Some(budget) = self.gate.observe(headers) {
            super::metrics::remaining(budget.remaining);
        }
    }

    /// Holds every request until `until` (GitLab asked for a pause).
    pub(crate) fn pause(&self, until: Time) {
        self.gate.pause(until);
    }

    /// One of the concurrent-request slots, held for the request's life.
    pub(crate) async fn slot(&self) -> Option<SemaphorePermit<'_>> {
        self.gate.slot().await
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
