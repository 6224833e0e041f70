//! Knobs of the fake Hetzner Cloud: its token, simulated delays, quota and fault injection.
//! Every duration here is simulated time (see [`crate::clock::Clock`]).

use super::catalog::Deprecation;
use std::time::Duration;

/// Changed at run time through [`super::Hetzner::set_config`], so faults can be injected in the
/// middle of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct HetznerConfig {
    /// The one project token; any other Bearer token gets 401 `unauthorized`.
    pub token: String,
    /// From create (or power on) until the server is `running`.
    pub boot_delay: Duration,
    /// From a shutdown (or the OS powering off) until the server is `off`. An API `poweroff`
    /// cuts power at once.
    pub shutdown_delay: Duration,
    /// How long a rebuild runs.
    pub action_delay: Duration,
    /// Size of the request bucket, refilled continuously at `limit / 3600` per simulated second.
    pub rate_limit_per_hour: u32,
    /// Servers the project may hold at once; a create beyond answers `resource_limit_exceeded`.
    pub server_quota: u32,
    /// `(server_type, location)` pairs out of stock: creates answer `resource_unavailable`.
    pub unavailable: Vec<(String, String)>,
    /// Server types gone from the catalogue (as Hetzner drops a retired type from its lists):
    /// `GET /server_types` does not list them, and a create answers them as unknown.
    pub missing_types: Vec<String>,
    /// Deprecations announced on top of the catalogue's own, the later ones winning.
    pub deprecations: Vec<DeprecationFault>,
    /// Added to every answer of the API, in wall-clock time whatever the speed (a slow or
    /// congested API, for shutdown and timeout tests). Zero by default.
    pub latency: Duration,
}

/// A deprecation of `server_type` in `location` (every location that offers it if `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeprecationFault {
    pub server_type: String,
    pub location: Option<String>,
    pub deprecation: Deprecation,
}

impl Default for HetznerConfig {
    fn default() -> Self {
        HetznerConfig {
            token: "sim-hcloud-token".into(),
            boot_delay: Duration::from_secs(10),
            shutdown_delay: Duration::from_secs(2),
            action_delay: Duration::from_secs(5),
            rate_limit_per_hour: 3600,
            server_quota: 100,
            unavailable: Vec::new(),
            missing_types: Vec::new(),
            deprecations: Vec::new(),
            latency: Duration::ZERO,
        }
    }
}

impl HetznerConfig {
    /// Out of stock there (the `unavailable` fault).
    pub(crate) fn is_unavailable(&self, server_type: &str, location: &str) -> bool {
        self.unavailable
            .iter()
            .any(|(t, l)| t == server_type && l == location)
    }

    pub(crate) fn is_missing(&self, server_type: &str) -> bool {
        self.missing_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(server_type))
    }

    /// The injected deprecation of `server_type` in `location`, if any (the last one set wins).
    pub(crate) fn deprecation(&self, server_type: &str, location: &str) -> Option<Deprecation> {
        self.deprecations
            .iter()
            .rev()
            .find(|d| {
                d.server_type.eq_ignore_ascii_case(server_type)
                    && d.location.as_deref().is_none_or(|l| l == location)
            })
            .map(|d| d.deprecation)
    }
}
