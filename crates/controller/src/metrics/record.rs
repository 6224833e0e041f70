//! The counters and histograms of events the binary sees: a job leaving the queue, a pass, a
//! step of the executor, a webhook delivery. Each is recorded where it happens, once.

use super::world::allowed;
use mayfly_core::metrics::{API_CALLS, API_REQUEST_DURATION, ApiOutcome};
use mayfly_core::{Pools, Time};
use std::time::Duration;

/// What became of a step of the executor: the `outcome` label of creates, reuses and deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Ok,
    Failed,
    Skipped,
}

impl Step {
    const ALL: [Step; 3] = [Step::Ok, Step::Failed, Step::Skipped];

    fn as_str(self) -> &'static str {
        match self {
            Step::Ok => "ok",
            Step::Failed => "failed",
            Step::Skipped => "skipped",
        }
    }
}

/// The `reason` of a delete that freed room at a provider's quota (not a plan's reason).
pub const QUOTA: &str = "quota";

/// A job queued at `queued_at` started at `started_at`: once per job (see `Upsert::Started`).
pub fn job_started(queued_at: Time, started_at: Time) {
    metrics::histogram!("mayfly_job_queue_wait_seconds").record(started_at.since(queued_at));
}

/// What a reconcile pass came to: `ok`, `partial` (the runners could not be read) or `failed`.
pub fn pass(outcome: &'static str, took: Duration) {
    metrics::counter!("mayfly_reconcile_passes_total", "outcome" => outcome).increment(1);
    metrics::histogram!("mayfly_reconcile_duration_seconds").record(took);
}

pub fn create(pool: &str, provider: &str, outcome: Step) {
    metrics::counter!(
        "mayfly_instance_creates_total",
        "pool" => pool.to_string(),
        "provider" => provider.to_string(),
        "outcome" => outcome.as_str(),
    )
    .increment(1);
}

pub fn reuse(pool: &str, provider: &str, outcome: Step) {
    metrics::counter!(
        "mayfly_instance_reuses_total",
        "pool" => pool.to_string(),
        "provider" => provider.to_string(),
        "outcome" => outcome.as_str(),
    )
    .increment(1);
}

/// `reason` is a plan reason's kind (`Reason::kind`) or [`QUOTA`].
pub fn delete(pool: &str, provider: &str, reason: &'static str, outcome: Step) {
    metrics::counter!(
        "mayfly_instance_deletes_total",
        "pool" => pool.to_string(),
        "provider" => provider.to_string(),
        "reason" => reason,
        "outcome" => outcome.as_str(),
    )
    .increment(1);
}

/// What became of a webhook delivery of `forge` (the contract's `outcome` values).
pub fn webhook(forge: mayfly_core::ForgeKind, outcome: &'static str) {
    metrics::counter!(
        "mayfly_webhook_deliveries_total",
        "forge" => forge.as_str(),
        "outcome" => outcome,
    )
    .increment(1);
}

/// Every counter and histogram a controller of these pools can report, at zero: a series that
/// first appears at 1 loses that first increment to `rate()` and `increase()`, and a
/// dashboard shows "no data" where 0 is the truth. `apis` are the kinds of the providers in
/// use (GitHub is always there). Safe to call again: nothing is reset.
pub fn announce(pools: &Pools, forges: &[mayfly_core::ForgeKind], apis: &[&'static str]) {
    for outcome in allowed("mayfly_reconcile_passes_total", "outcome") {
        metrics::counter!("mayfly_reconcile_passes_total", "outcome" => *outcome).increment(0);
    }
    for forge in forges {
        for outcome in allowed("mayfly_webhook_deliveries_total", "outcome") {
            metrics::counter!(
                "mayfly_webhook_deliveries_total",
                "forge" => forge.as_str(),
                "outcome" => *outcome,
            )
            .increment(0);
        }
    }
    let _ = metrics::histogram!("mayfly_reconcile_duration_seconds");
    let _ = metrics::histogram!("mayfly_job_queue_wait_seconds");
    for pool in &pools.pools {
        for outcome in Step::ALL {
            let labels = |l: &[(&'static str, &'static str)]| {
                let mut all = vec![
                    metrics::Label::new("pool", pool.name.clone()),
                    metrics::Label::new("provider", pool.provider.clone()),
                    metrics::Label::new("outcome", outcome.as_str()),
                ];
                all.extend(l.iter().map(|(k, v)| metrics::Label::new(*k, *v)));
                all
            };
            metrics::counter!("mayfly_instance_creates_total", labels(&[])).increment(0);
            metrics::counter!("mayfly_instance_reuses_total", labels(&[])).increment(0);
            for reason in allowed("mayfly_instance_deletes_total", "reason") {
                let labels = labels(&[("reason", reason)]);
                metrics::counter!("mayfly_instance_deletes_total", labels).increment(0);
            }
        }
    }
    let apis = std::iter::once(mayfly_forge::github::metrics::API).chain(apis.iter().copied());
    for api in apis {
        for outcome in ApiOutcome::ALL {
            metrics::counter!(API_CALLS, "api" => api, "outcome" => outcome.as_str()).increment(0);
        }
        let _ = metrics::histogram!(API_REQUEST_DURATION, "api" => api);
    }
}
