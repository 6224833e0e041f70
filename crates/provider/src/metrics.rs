//! What every provider's client reports under the metric contract (`mayfly_core::metrics`),
//! with its kind as the `api` label: each call sent by outcome, its duration, and the budget
//! the API's rate-limit headers report.

use mayfly_core::metrics::{API_CALLS, API_RATE_LIMIT_REMAINING, API_REQUEST_DURATION, ApiOutcome};
use std::time::Instant;

/// One call to `api` sent at `started` came to `outcome`.
pub(crate) fn call(api: &'static str, outcome: ApiOutcome, started: Instant) {
    metrics::counter!(API_CALLS, "api" => api, "outcome" => outcome.as_str()).increment(1);
    metrics::histogram!(API_REQUEST_DURATION, "api" => api).record(started.elapsed());
}

/// The requests left in `api`'s budget, as its last answer said.
pub(crate) fn remaining(api: &'static str, requests: u32) {
    metrics::gauge!(API_RATE_LIMIT_REMAINING, "api" => api).set(f64::from(requests));
}
