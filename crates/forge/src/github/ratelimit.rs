//! One limiter per credential: the primary budget as GitHub's headers report it, pauses GitHub
//! asks for, the concurrency cap, write spacing, and the reserve kept for serving jobs.

use super::config::LimitsConfig;
use crate::budget::{Gate, Rules};
use reqwest::header::HeaderMap;
use std::time::Duration;

/// GitHub's documented hourly budget, assumed until the first answer says otherwise.
const ASSUMED_LIMIT: u32 = 5000;

pub(crate) use crate::budget::RESET_SLACK;
pub use crate::budget::{Budget, Priority};

/// The shared rule ([`Gate`]): its `space_write` spaces writes as GitHub's secondary limits
/// allow, a burst of `write_burst` at once, then one per `write_interval`.
pub(crate) type Limiter = Gate;

/// The limiter of one credential: GitHub's `x-ratelimit-*` headers and its write spacing.
pub(crate) fn limiter(limits: &LimitsConfig) -> Limiter {
    Gate::new(
        Rules {
            assumed: ASSUMED_LIMIT,
            headers: [
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-ratelimit-reset",
            ],
            report: super::metrics::remaining,
        },
        limits.max_concurrent,
        limits.reserve,
    )
    .with_write_spacing(limits.write_interval(), limits.write_burst)
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

    #[test]
    fn githubs_headers_set_the_budget() {
        crate::budget::check_forge_rules(
            &limiter(&LimitsConfig::default()),
            5000,
            [
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-ratelimit-reset",
            ],
        );
    }

    #[test]
    fn writes_go_out_in_a_burst_then_spaced() {
        let l = limiter(&LimitsConfig {
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
        let none = limiter(&LimitsConfig {
            write_interval_ms: 0,
            ..LimitsConfig::default()
        });
        assert!(none.writes.is_none(), "0 turns spacing off");
    }
}
