//! Configuration of the fake GitLab: the personal access tokens it accepts (with their user and
//! scopes), rate limits, webhook targets, timings of the runner protocol and the fault knobs, all
//! changeable at run time through `Gitlab::set_config`.

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct GitlabConfig {
    /// Accepted personal access tokens (`PRIVATE-TOKEN`, `Authorization: Bearer` or the
    /// `private_token` query parameter).
    pub tokens: Vec<AccessToken>,
    /// `throttle_authenticated_api`: requests per user and minute (GitLab.com: 2,000).
    pub rate_limit_per_minute: u32,
    /// `throttle_unauthenticated_api`: requests per client address and minute (GitLab.com: 500).
    pub unauthenticated_per_minute: u32,
    /// `runner_jobs_request_api`: `POST /jobs/request` per runner token and minute.
    pub runner_requests_per_minute: u32,
    /// Instance-wide Job Hook targets: every project's job events go to each, as a group hook on
    /// every top-level group would. Project and group hooks made through the API come on top.
    pub webhooks: Vec<HookTarget>,
    pub webhook_faults: WebhookFaults,
    /// GitLab disables a hook for a minute after 4 failed deliveries in a row (doubling up to a
    /// day) and for good after 40. Off to keep a receiver that was down from missing more.
    pub webhook_auto_disable: bool,
    pub api_faults: ApiFaults,
    /// Two-phase commit: a job handed to a runner that does not confirm it (`PUT /jobs/:id
    /// state=running`) within this long is queued again (`RUNNER_ACK_QUEUE_EXPIRY_TIME`).
    pub ack_timeout: Duration,
    /// How long a virtual runner takes from getting a job to confirming it.
    pub ack_delay: Duration,
    /// A running job whose runner died stays `running` this long, then fails with
    /// `stuck_or_timeout_failure`, as GitLab drops builds nobody updates.
    pub stuck_timeout: Duration,
    /// A job's timeout when its runner sets none (GitLab's project default: one hour).
    pub job_timeout: Duration,
    /// How long a runner's glrt- token lives; `None`: no expiry (GitLab's default).
    pub runner_token_ttl: Option<Duration>,
    /// Most records a list counts in `x-total`: above it GitLab omits the totals and `rel="last"`.
    pub count_limit: usize,
}

impl Default for GitlabConfig {
    fn default() -> Self {
        GitlabConfig {
            tokens: Vec::new(),
            rate_limit_per_minute: 2000,
            unauthenticated_per_minute: 500,
            runner_requests_per_minute: 2000,
            webhooks: Vec::new(),
            webhook_faults: WebhookFaults::default(),
            webhook_auto_disable: true,
            api_faults: ApiFaults::default(),
            ack_timeout: Duration::from_secs(120),
            ack_delay: Duration::ZERO,
            stuck_timeout: Duration::from_secs(3600),
            job_timeout: Duration::from_secs(3600),
            runner_token_ttl: None,
            count_limit: 10_000,
        }
    }
}

/// A personal access token, the user it belongs to and what it may do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessToken {
    pub token: String,
    pub username: String,
    /// `api`, `read_api`, `read_user`, `create_runner`, `manage_runner`.
    pub scopes: Vec<String>,
    /// Administrators may create instance runners and list `/runners/all`.
    #[serde(default)]
    pub admin: bool,
}

impl AccessToken {
    /// A token of user `root` with every scope mayfly may need, for tests and `sim serve`.
    pub fn full(token: &str) -> AccessToken {
        AccessToken {
            token: token.to_string(),
            username: "root".to_string(),
            scopes: ["api", "read_api", "create_runner", "manage_runner"]
                .map(String::from)
                .to_vec(),
            admin: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookTarget {
    pub url: String,
    /// Sent as `X-Gitlab-Token`; none when empty.
    #[serde(default)]
    pub token: String,
}

/// Shares (0..=1) of webhook deliveries that go wrong, drawn per delivery from a seeded RNG so a
/// run can be repeated.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookFaults {
    /// Never delivered: mayfly has to notice the job by polling.
    pub drop: f64,
    /// Delivered twice with the same `Idempotency-Key` (a redelivery): mayfly has to deduplicate.
    pub duplicate: f64,
    /// Held back `delay_secs` (simulated) and delivered after later events.
    pub delay: f64,
    pub delay_secs: f64,
    pub seed: u64,
}

/// Faults of the REST API (not the control API): shares drawn per call, and counts of the next
/// calls to fail, for tests that want to know exactly which call fails.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiFaults {
    /// Share of calls answered 429 as the rate limiter would.
    pub rate_limited: f64,
    /// Share of calls answered 500.
    pub server_errors: f64,
    /// The next this many calls are answered 429.
    pub next_rate_limited: u32,
    /// The next this many calls are answered 502.
    pub next_server_errors: u32,
    /// Seconds a 429 fault asks the client to wait (`Retry-After`).
    pub retry_after_secs: u64,
    pub seed: u64,
}
