//! When a failed call is tried again, and after how long: the AWS SDKs' standard retry mode.
//! Throttling codes, transient codes, 500/502/503/504 and no answer at all are retried after
//! a random wait of up to 1 s, 2 s, 4 s, … (at most 20 s); a shared quota of retries stops a
//! client from multiplying the load on a service that is already failing.

use crate::ApiError;
use std::sync::Mutex;
use std::time::Duration;

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(20);
/// The SDKs' retry quota: 500 tokens, 5 per retry, 10 per retry after no answer; a success at
/// the first attempt gives one back, a success after retries gives its retry's back.
const QUOTA: u32 = 500;
const RETRY_COST: u32 = 5;
const TIMEOUT_RETRY_COST: u32 = 10;

/// The codes AWS throttles with, across services (the SDKs' list).
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

const TRANSIENT: &[&str] = &["RequestTimeout", "RequestTimeoutException"];

pub fn retryable(e: &ApiError) -> bool {
    e.transport
        || THROTTLING.contains(&e.code.as_str())
        || TRANSIENT.contains(&e.code.as_str())
        || matches!(e.status, Some(500 | 502 | 503 | 504))
}

/// The wait before attempt `attempt + 1`: full jitter over an exponential ceiling.
pub fn backoff(attempt: u32) -> Duration {
    let ceiling = INITIAL_BACKOFF
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    ceiling.mul_f64(rand::random::<f64>())
}

#[derive(Debug)]
pub struct Quota {
    tokens: Mutex<(u32, u32)>,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            tokens: Mutex::new((QUOTA, 0)),
        }
    }
}

impl Quota {
    /// Takes the cost of retrying after `e`; `false` when the quota is spent.
    pub fn take(&self, e: &ApiError) -> bool {
        let cost = if e.transport {
            TIMEOUT_RETRY_COST
        } else {
            RETRY_COST
        };
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if t.0 < cost {
            return false;
        }
        t.0 -= cost;
        t.1 = cost;
        true
    }

    pub fn succeeded(&self, after_retry: bool) {
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let back = if after_retry { t.1 } else { 1 };
        t.0 = (t.0 + back).min(QUOTA);
    }

    #[cfg(test)]
    pub fn left(&self) -> u32 {
        self.tokens.lock().unwrap().0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_transient_and_server_errors_are_retried_others_not() {
        assert!(retryable(&ApiError::service("RequestLimitExceeded", "")));
        assert!(retryable(&ApiError::service("ThrottlingException", "")));
        assert!(retryable(&ApiError::service("RequestTimeout", "")));
        let mut e = ApiError::service("InternalError", "");
        e.status = Some(503);
        assert!(retryable(&e));
        assert!(retryable(&ApiError::no_answer("timeout")));
        assert!(!retryable(&ApiError::service(
            "InsufficientInstanceCapacity",
            ""
        )));
        assert!(!retryable(&ApiError::service("InvalidAMIID.NotFound", "")));
    }

    #[test]
    fn backoff_is_jittered_under_an_exponential_ceiling() {
        for attempt in 1..10 {
            let cap = Duration::from_secs(1 << (attempt - 1)).min(MAX_BACKOFF);
            for _ in 0..50 {
                assert!(backoff(attempt) <= cap);
            }
        }
    }

    #[test]
    fn the_quota_runs_out_and_refills() {
        let q = Quota::default();
        let e = ApiError::no_answer("timeout");
        for _ in 0..(QUOTA / TIMEOUT_RETRY_COST) {
            assert!(q.take(&e));
        }
        assert!(!q.take(&e), "spent");
        q.succeeded(true);
        assert_eq!(q.left(), TIMEOUT_RETRY_COST);
        q.succeeded(false);
        assert_eq!(q.left(), TIMEOUT_RETRY_COST + 1);
    }
}
