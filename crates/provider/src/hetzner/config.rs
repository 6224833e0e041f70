//! What an operator writes to use Hetzner Cloud: the project token, the endpoint, networking and
//! SSH keys, and the client's patience (timeouts, the longest wait for the rate limit).

use mayfly_core::Secret;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One Hetzner Cloud project (a token belongs to exactly one project).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HetznerConfig {
    /// The project's API token; read only through `Secret::expose`, never printed.
    pub token: Secret,
    /// Where the API lives, `…/v1` included: overridden for tests and proxies.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// A public IPv4 costs money and is scarce; runners behind NAT64 can do without it.
    #[serde(default = "yes")]
    pub ipv4: bool,
    #[serde(default = "yes")]
    pub ipv6: bool,
    /// OpenSSH public keys for debugging access. Each is uploaded to the project once (found by
    /// fingerprint afterwards), and with keys set the API mails no root password.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// Every request gives up after this long: a hung connection must not stall a pass.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// The longest a call waits out the rate limit before answering `RateLimited`; the
    /// reconciler would rather reschedule than hold a pass for longer.
    #[serde(default = "default_max_wait_secs")]
    pub max_wait_secs: u64,
}

pub const DEFAULT_ENDPOINT: &str = "https://api.hetzner.cloud/v1";

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.to_string()
}

fn yes() -> bool {
    true
}

fn default_request_timeout_ms() -> u64 {
    10_000
}

fn default_max_wait_secs() -> u64 {
    60
}

impl HetznerConfig {
    /// A configuration with every default and this token.
    pub fn new(token: Secret) -> HetznerConfig {
        HetznerConfig {
            token,
            endpoint: default_endpoint(),
            ipv4: true,
            ipv6: true,
            ssh_keys: Vec::new(),
            request_timeout_ms: default_request_timeout_ms(),
            max_wait_secs: default_max_wait_secs(),
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn max_wait(&self) -> Duration {
        Duration::from_secs(self.max_wait_secs)
    }
}

/// A configuration that cannot work, found before any request is made. Never carries the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("hetzner: the endpoint {0:?} is not an http(s) URL")]
    BadEndpoint(String),
    #[error("hetzner: the token is empty")]
    EmptyToken,
    #[error("hetzner: request_timeout_ms must be positive")]
    ZeroTimeout,
    /// Counted from 1, as an operator reads the list.
    #[error("hetzner: ssh_keys[{0}] is not an OpenSSH public key (`<type> <base64> [comment]`)")]
    BadSshKey(usize),
    #[error("hetzner: the HTTP client could not be built")]
    HttpClient,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_what_is_left_out_and_unknown_fields_are_refused() {
        let c: HetznerConfig = serde_json::from_str(r#"{"token": "t0ken"}"#).unwrap();
        assert_eq!(c, HetznerConfig::new(Secret::new("t0ken")));
        assert_eq!(c.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(
            (c.request_timeout(), c.max_wait()),
            (Duration::from_secs(10), Duration::from_secs(60))
        );
        let e = serde_json::from_str::<HetznerConfig>(r#"{"token": "t", "tokn": "x"}"#);
        assert!(e.is_err());
        assert!(!serde_json::to_string(&c).unwrap().contains("t0ken"));
    }
}
