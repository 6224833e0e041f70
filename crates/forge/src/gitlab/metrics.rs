//! What the GitLab client reports under the metric contract (`mayfly_core::metrics`): every
//! call it sends by outcome, how long each took, and the budget GitLab's headers report.

use mayfly_core::metrics::{API_CALLS, API_RATE_LIMIT_REMAINING, API_REQUEST_DURATION, ApiOutcome};
use std::time::Instant;

/// The `api` label of GitLab (GitLab.com and self-managed alike).
pub const API: &str = "gitlab";

/// One call sent at `started` came to `outcome`.
pub(crate) fn call(outcome: ApiOutcome, started: Instant) {
    metrics::counter!(API_CALLS, "api" => API, "outcome" => outcome.as_str()).increment(1);
    metrics::histogram!(API_REQUEST_DURATION, "api" => API).record(started.elapsed());
}

/// The per-minute budget's remaining requests, as the last answer said.
pub(crate) fn remaining(requests: u32) {
    metrics::gauge!(API_RATE_LIMIT_REMAINING, "api" => API).set(f64::from(requests));
}
