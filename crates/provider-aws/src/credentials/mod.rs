//! Where the AWS keys come from, in the order the AWS SDKs and CLI look: the environment, the
//! shared config and credentials files (profiles), a web identity token (IRSA), the ECS
//! container endpoint, and the EC2 instance metadata service (IMDSv2).
//!
//! The source is chosen once from what is configured (no network call); its credentials are
//! fetched on the first call and fetched again before they expire. A failed refresh keeps the
//! old credentials while they are still valid, so a metadata hiccup does not stop the loop.

mod env;
mod imds;
mod process;
mod profile;
mod remote;
mod sts;

pub use env::Env;
pub use profile::Profiles;

use async_trait::async_trait;
use jiff::Timestamp;
use mayfly_core::Secret;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Temporary credentials are fetched again this long before they expire.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);
/// ... but not more often than this while they are still valid: the instance metadata service
/// rotates its keys only minutes before they expire, and would answer the same ones again.
const REFETCH_AFTER: Duration = Duration::from_secs(60);
/// Credentials this close to their expiry are not used at all.
const EXPIRED_WITHIN: Duration = Duration::from_secs(10);

/// One set of keys. The secret and the token are `Secret`s: never printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    /// `None`: long-lived keys.
    pub expires: Option<Timestamp>,
    /// Which source gave them (`environment`, `profile dev`, `instance metadata`, …).
    pub source: &'static str,
}

/// Why no credentials could be had. Never carries a key, a token or a process's output.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// No source is configured at all.
    #[error("no AWS credentials found; looked at {0}")]
    Missing(String),
    /// A source is configured but cannot work (a file, a profile, a process's answer).
    #[error("AWS credentials from {from}: {message}")]
    Invalid { from: &'static str, message: String },
    /// A credential endpoint (instance metadata, container, STS) did not answer.
    #[error("AWS credentials from {from}: no answer: {message}")]
    Unreachable { from: &'static str, message: String },
}

impl CredentialsError {
    fn invalid(source: &'static str, message: impl Into<String>) -> CredentialsError {
        CredentialsError::Invalid {
            from: source,
            message: message.into(),
        }
    }
}

/// One way to get credentials.
#[async_trait]
pub(crate) trait Fetch: Send + Sync + std::fmt::Debug {
    async fn fetch(&self) -> Result<Credentials, CredentialsError>;
}

/// Keys given in code or found in the environment or a file: nothing to fetch.
#[derive(Debug)]
struct Fixed(Credentials);

#[async_trait]
impl Fetch for Fixed {
    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        Ok(self.0.clone())
    }
}

/// A source that cannot work, found while choosing: every call says why.
#[derive(Debug)]
struct Broken(CredentialsError);

#[async_trait]
impl Fetch for Broken {
    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        Err(self.0.clone())
    }
}

/// The chosen source with its last credentials.
#[derive(Debug)]
pub struct Provider {
    fetch: Arc<dyn Fetch>,
    cached: tokio::sync::Mutex<Option<(Credentials, Instant)>>,
}

impl Provider {
    pub(crate) fn new(fetch: Arc<dyn Fetch>) -> Provider {
        Provider {
            fetch,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// Fixed keys (tests against an emulator).
    pub fn fixed(credentials: Credentials) -> Provider {
        Provider::new(Arc::new(Fixed(credentials)))
    }

    /// The source the environment and the shared files configure (see the module's summary).
    pub fn from_env(env: &Env, http: &reqwest::Client, region: Option<&str>) -> Provider {
        Provider::new(choose(env, http, region))
    }

    /// Credentials valid for at least a few more seconds: cached, or fetched now.
    pub async fn get(&self) -> Result<Credentials, CredentialsError> {
        let mut cached = self.cached.lock().await;
        let now = Timestamp::now();
        if let Some((c, fetched)) = cached.as_ref() {
            let due = seconds_left(c, now)
                .is_some_and(|left| left < REFRESH_BEFORE.as_secs() as i64)
                && fetched.elapsed() >= REFETCH_AFTER;
            if usable(c, now) && !due {
                return Ok(c.clone());
            }
        }
        match self.fetch.fetch().await {
            Ok(c) => {
                *cached = Some((c.clone(), Instant::now()));
                Ok(c)
            }
            Err(e) => match cached.as_ref() {
                Some((old, _)) if usable(old, now) => {
                    tracing::warn!(error = %e, "AWS credentials: refresh failed, the current ones are still valid");
                    Ok(old.clone())
                }
                _ => Err(e),
            },
        }
    }
}

/// Seconds until the credentials expire; `None` for long-lived keys.
fn seconds_left(c: &Credentials, now: Timestamp) -> Option<i64> {
    c.expires.map(|e| e.as_second() - now.as_second())
}

fn usable(c: &Credentials, now: Timestamp) -> bool {
    seconds_left(c, now).is_none_or(|left| left > EXPIRED_WITHIN.as_secs() as i64)
}

/// The source, in the SDKs' order: environment keys, the profile, a web identity token, the
/// container endpoint, the instance metadata service.
fn choose(env: &Env, http: &reqwest::Client, region: Option<&str>) -> Arc<dyn Fetch> {
    if let Some(c) = env::keys(env) {
        return Arc::new(Fixed(c));
    }
    let profiles = match Profiles::load(env) {
        Ok(p) => p,
        Err(e) => return Arc::new(Broken(e)),
    };
    match profile::source(&profiles, env, http, region) {
        Ok(Some(f)) => return f,
        Ok(None) => {}
        Err(e) => return Arc::new(Broken(e)),
    }
    if let Some(f) = sts::WebIdentity::from_env(env, http, region) {
        return Arc::new(f);
    }
    match remote::Container::from_env(env, http) {
        Ok(Some(f)) => return Arc::new(f),
        Ok(None) => {}
        Err(e) => return Arc::new(Broken(e)),
    }
    if let Some(f) = imds::Imds::from_env(env, http) {
        return Arc::new(f);
    }
    Arc::new(Broken(CredentialsError::Missing(format!(
        "AWS_ACCESS_KEY_ID, the profile {:?} in {} and {}, AWS_WEB_IDENTITY_TOKEN_FILE, \
         AWS_CONTAINER_CREDENTIALS_*_URI; the instance metadata service is off \
         (AWS_EC2_METADATA_DISABLED)",
        profiles.name(),
        profiles.config_path(),
        profiles.credentials_path(),
    ))))
}

/// The region the environment and the profile name, without asking the network.
pub fn region(env: &Env) -> Option<String> {
    env.get("AWS_REGION")
        .or_else(|| env.get("AWS_DEFAULT_REGION"))
        .map(str::to_string)
        .or_else(|| {
            Profiles::load(env)
                .ok()
                .and_then(|p| p.get("region").map(str::to_string))
        })
}

/// The region of the instance this runs on, from its metadata service (bounded: two seconds
/// when there is none).
pub async fn instance_region(env: &Env, http: &reqwest::Client) -> Option<String> {
    imds::Imds::from_env(env, http)?.region().await
}

/// Parses an RFC 3339 expiry (`2026-01-01T00:00:00Z`) as the credential endpoints write it.
fn expiry(source: &'static str, text: &str) -> Result<Timestamp, CredentialsError> {
    text.parse::<Timestamp>()
        .map_err(|e| CredentialsError::invalid(source, format!("expiration {text:?}: {e}")))
}

#[cfg(test)]
pub(crate) mod fakes;
#[cfg(test)]
mod sources_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Hands out credentials that expire `lifetime` after each fetch, or fails.
    #[derive(Debug)]
    struct Counting {
        fetches: AtomicU32,
        lifetime: jiff::SignedDuration,
        fail_after: u32,
    }

    #[async_trait]
    impl Fetch for Counting {
        async fn fetch(&self) -> Result<Credentials, CredentialsError> {
            let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
            if n > self.fail_after {
                return Err(CredentialsError::Unreachable {
                    from: "test",
                    message: "down".into(),
                });
            }
            Ok(Credentials {
                access_key_id: format!("AKID{n}"),
                secret_access_key: Secret::new("s"),
                session_token: Some(Secret::new("t")),
                expires: Some(Timestamp::now() + self.lifetime),
                source: "test",
            })
        }
    }

    fn provider(lifetime_secs: i64, fail_after: u32) -> (Arc<Counting>, Provider) {
        let c = Arc::new(Counting {
            fetches: AtomicU32::new(0),
            lifetime: jiff::SignedDuration::from_secs(lifetime_secs),
            fail_after,
        });
        (c.clone(), Provider::new(c))
    }

    #[tokio::test]
    async fn credentials_are_cached_until_shortly_before_they_expire() {
        let (c, p) = provider(3600, 10);
        assert_eq!(p.get().await.unwrap().access_key_id, "AKID1");
        assert_eq!(p.get().await.unwrap().access_key_id, "AKID1");
        assert_eq!(c.fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn expired_credentials_are_fetched_again() {
        // Five seconds left: inside the no-use margin, so every get fetches.
        let (c, p) = provider(5, 10);
        assert_eq!(p.get().await.unwrap().access_key_id, "AKID1");
        assert_eq!(p.get().await.unwrap().access_key_id, "AKID2");
        assert_eq!(c.fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn credentials_near_expiry_are_refreshed_but_not_hammered() {
        // Two minutes left: due for a refresh, but fetched just now, so kept for a minute.
        let (c, p) = provider(120, 10);
        p.get().await.unwrap();
        p.get().await.unwrap();
        assert_eq!(c.fetches.load(Ordering::SeqCst), 1);
        // As if fetched a minute ago: refreshed.
        p.cached.lock().await.as_mut().unwrap().1 = Instant::now() - REFETCH_AFTER;
        assert_eq!(p.get().await.unwrap().access_key_id, "AKID2");
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_valid_credentials_and_reports_expired_ones() {
        let (_, p) = provider(120, 1);
        p.get().await.unwrap();
        p.cached.lock().await.as_mut().unwrap().1 = Instant::now() - REFETCH_AFTER;
        assert_eq!(p.get().await.unwrap().access_key_id, "AKID1", "still valid");
        let (_, p) = provider(5, 1);
        p.get().await.unwrap();
        let e = p.get().await.unwrap_err();
        assert!(matches!(e, CredentialsError::Unreachable { .. }), "{e}");
    }

    #[test]
    fn errors_never_carry_secrets() {
        let c = Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: Secret::new("very-secret"),
            session_token: Some(Secret::new("token-secret")),
            expires: None,
            source: "test",
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("very-secret") && !shown.contains("token-secret"),
            "{shown}"
        );
    }
}
