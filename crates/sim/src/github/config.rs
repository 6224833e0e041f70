//! Configuration of the fake GitHub: accepted credentials, budgets, webhook targets and the
//! fault knobs, all changeable at run time through `Github::set_config`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq)]
pub struct GithubConfig {
    /// `""` for github.com style paths, `"/api/v3"` to stand for GitHub Enterprise Server.
    pub api_prefix: String,
    /// Accepted personal access tokens (sent as `token X` or `Bearer X`).
    pub tokens: Vec<String>,
    /// The GitHub App whose installation tokens the fake issues, if any.
    pub app: Option<AppConfig>,
    /// Primary budget per token and hour (installation tokens too).
    pub rate_limit_per_hour: u32,
    /// Secondary limit on POST/PUT/PATCH/DELETE per token and minute.
    pub writes_per_minute: u32,
    pub webhooks: Vec<WebhookTarget>,
    pub webhook_faults: WebhookFaults,
    /// Most runs a filtered run list yields (`status`, `created`): GitHub's is 1,000, whatever
    /// `total_count` says. Lower in tests, to see a client split its window.
    pub search_limit: usize,
    /// Added to every answer of the REST API, in wall-clock time whatever the speed (a slow
    /// API, for shutdown and timeout tests). Zero by default.
    pub latency: std::time::Duration,
}

impl Default for GithubConfig {
    fn default() -> Self {
        GithubConfig {
            api_prefix: String::new(),
            tokens: Vec::new(),
            app: None,
            rate_limit_per_hour: 5000,
            writes_per_minute: 80,
            webhooks: Vec::new(),
            webhook_faults: WebhookFaults::default(),
            search_limit: 1000,
            latency: std::time::Duration::ZERO,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct AppConfig {
    pub app_id: u64,
    pub installation_id: u64,
    /// The app's RSA public key (SPKI PEM, `-----BEGIN PUBLIC KEY-----`) that checks its JWTs.
    pub public_key_pem: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookTarget {
    pub url: String,
    pub secret: String,
}

/// Shares (0..=1) of webhook deliveries that go wrong, drawn per delivery from a seeded RNG so a
/// run can be repeated.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookFaults {
    /// Never delivered: mayfly has to notice the job by polling.
    pub drop: f64,
    /// Delivered twice with the same delivery id: mayfly has to deduplicate.
    pub duplicate: f64,
    /// Held back and delivered after the next delivery: mayfly must not rely on order.
    pub reorder: f64,
    /// Share of jobs whose webhooks after `queued` are all lost: the job starts and finishes
    /// on GitHub while mayfly hears nothing of it (drawn once per job, apart from the draws
    /// above, so setting it does not shift their sequence).
    pub lose_after_queued: f64,
    /// Seed of the draws; changing it restarts the sequence.
    pub seed: u64,
}
