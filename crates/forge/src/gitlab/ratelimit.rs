//! One limiter per client: the per-minute budget GitLab's `RateLimit-*` headers report, the
//! pauses a 429 asks for, the concurrency cap, and the reserve kept for serving jobs (the same
//! rule as GitHub's: below `reserve` of the budget, housekeeping waits for the next window).

use super::config::LimitsConfig;
use crate::budget::{Gate, Rules};
use mayfly_core::Time;
use reqwest::header::HeaderMap;
use std::time::Duration;

/// GitLab.com's authenticated API budget, assumed until the first answer says otherwise.
const ASSUMED_LIMIT: u32 = 2000;

pub(crate) use crate::budget::RESET_SLACK;
pub use crate::budget::{Budget, Priority};

/// The shared rule ([`Gate`]); GitLab asks for no write spacing.
pub(crate) type Limiter = Gate;

/// The limiter of one token: GitLab's `RateLimit-*` headers.
pub(crate) fn limiter(limits: &LimitsConfig) -> Limiter {
    Gate::new(
        Rules {
            assumed: ASSUMED_LIMIT,
            headers: ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"],
            report: super::metrics::remaining,
        },
        limits.max_concurrent,
        limits.reserve,
    )
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

    #[test]
    fn gitlabs_headers_set_the_budget() {
        crate::budget::check_forge_rules(
            &limiter(&LimitsConfig::default()),
            2000,
            ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"],
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
}
