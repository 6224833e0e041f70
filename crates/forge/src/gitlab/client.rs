//! The wire: every GitLab request passes one gate here (limiter, token, timeout, retries on
//! rate limits and on transient failures of requests safe to repeat, paging). The endpoint files
//! build on `send` and `get_all`.

use super::config::{ClientSettings, ConfigError, LimitsConfig, instance_url};
use super::error::{Error, Result, clip};
use super::metrics;
use super::ratelimit::{Budget, Limiter, Priority, limiter, retry_after};
use crate::http;
use crate::link::next_link;
use mayfly_core::metrics::ApiOutcome;
use mayfly_core::{Labels, Secret};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Backoff after a rate limit that names no wait, and after a transient failure.
const RATE_BACKOFF: Duration = Duration::from_secs(60);
const TRANSIENT_BACKOFF: Duration = Duration::from_millis(500);
/// A runaway Link chain stops here (10,000 items at 100 a page).
const MAX_PAGES: usize = 100;
pub(crate) const PER_PAGE: u32 = 100;
/// Jobs whose tags are remembered; the oldest half is forgotten beyond it.
const TAG_CACHE: usize = 20_000;

/// The client's notion of now and of waiting (budget resets, `Retry-After`).
pub use mayfly_core::Clock;

pub use crate::clock::SystemClock;

/// A GitLab REST client for one token: make one and clone it, so that every request of that
/// token passes the same limiter. Clones share the limiter and the tag cache.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
    /// Whether a rate-limited request waits (within `max_wait_secs`) or fails at once.
    wait: bool,
}

pub(crate) struct Inner {
    http: reqwest::Client,
    /// `https://gitlab.com`, without a trailing slash.
    instance_url: String,
    /// `https://gitlab.com/api/v4`.
    api_url: String,
    token: Secret,
    limiter: Limiter,
    limits: LimitsConfig,
    clock: Arc<dyn Clock>,
    /// A job's tags never change: each is fetched once (webhooks do not carry them).
    pub(crate) tags: Mutex<HashMap<u64, (u64, Labels)>>,
    tag_order: Mutex<u64>,
}

/// One request to make.
pub(crate) struct Call {
    pub method: Method,
    /// Absolute URL.
    pub url: String,
    pub body: Option<serde_json::Value>,
    pub priority: Priority,
    /// Sent without the personal token: runner endpoints authenticate by the runner's own
    /// token in the body, and GitLab refuses a call whose PRIVATE-TOKEN is not valid.
    pub anonymous: bool,
}

impl Call {
    pub(crate) fn new(method: Method, url: String, priority: Priority) -> Call {
        Call {
            method,
            url,
            body: None,
            priority,
            anonymous: false,
        }
    }

    /// Reads and deletes may be sent twice; a create may not (a retried `POST /user/runners`
    /// whose first answer was lost would make a second runner record).
    fn repeatable(&self) -> bool {
        self.method != Method::POST && self.method != Method::PATCH
    }
}

/// A successful answer. `body` is empty for 204.
pub(crate) struct Reply {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| Error::decode(&e))
    }
}

/// The text of GitLab's error body: `{"message": "..."}` (a string or an object of field
/// errors), `{"error": "..."}`, or `insufficient_scope` with the scopes that would do.
fn error_text(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::from_utf8_lossy(body).trim().to_string();
    };
    if v["error"] == "insufficient_scope" {
        return format!(
            "the token lacks a scope; any of these would do: {}",
            v["scope"].as_str().unwrap_or("api")
        );
    }
    match (&v["message"], &v["error"]) {
        (serde_json::Value::String(s), _) => s.clone(),
        (m @ serde_json::Value::Object(_), _) => m.to_string(),
        (_, serde_json::Value::String(e)) => e.clone(),
        _ => String::new(),
    }
}

/// The error for an answer that is not a success (429 is sorted out before this).
pub(crate) fn error_for(status: u16, body: &[u8]) -> Error {
    let message = clip(&error_text(body));
    match status {
        401 => Error::Unauthorized,
        403 => Error::Forbidden { message },
        404 => Error::NotFound,
        400 | 422 => Error::Invalid { message },
        _ => Error::http(status, &message),
    }
}

/// A project or group reference as one URL path segment: an id as is, a full path encoded
/// (`acme/app` → `acme%2Fapp`), as GitLab's API wants it.
pub(crate) fn segment(reference: &str) -> String {
    reference.replace('%', "%25").replace('/', "%2F")
}

impl Client {
    pub fn new(settings: &ClientSettings) -> Result<Client, ConfigError> {
        Client::with_clock(settings, Arc::new(SystemClock))
    }

    pub fn with_clock(
        settings: &ClientSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Client, ConfigError> {
        let instance_url = instance_url(&settings.url)?;
        if settings.token.expose().trim().is_empty() {
            return Err(ConfigError::NoToken);
        }
        if !(0.0..=1.0).contains(&settings.limits.reserve) {
            return Err(ConfigError::BadReserve);
        }
        let http =
            http::client(settings.limits.request_timeout()).ok_or(ConfigError::HttpClient)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                api_url: format!("{instance_url}/api/v4"),
                instance_url,
                token: settings.token.clone(),
                limiter: limiter(&settings.limits),
                limits: settings.limits.clone(),
                clock,
                tags: Mutex::new(HashMap::new()),
                tag_order: Mutex::new(0),
            }),
            wait: true,
        })
    }

    /// This client, but a rate-limited request fails at once with `RateLimited` instead of
    /// waiting: for callers that would rather reschedule (the reconciler's next pass).
    pub fn without_waiting(&self) -> Client {
        Client {
            inner: self.inner.clone(),
            wait: false,
        }
    }

    /// The budget as GitLab last reported it, for metrics.
    pub fn budget(&self) -> Budget {
        self.inner.limiter.budget()
    }

    /// `https://gitlab.com`: what a runner's `--url` is.
    pub fn instance_url(&self) -> &str {
        &self.inner.instance_url
    }

    /// `https://gitlab.com/api/v4`.
    pub fn api_url(&self) -> &str {
        &self.inner.api_url
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.inner.api_url)
    }

    /// Sends a call. On a 429 it waits as GitLab asks (within `max_wait_secs`); a 5xx or a lost
    /// connection is tried again after a backoff when the call is safe to repeat; at most
    /// `max_retries` times either way. Anything else is the caller's to handle.
    ///
    /// A plain loop rather than backon, as in the GitHub client: a spawned caller must stay
    /// `Send`, which backon's closures over the borrowed call prevent.
    pub(crate) async fn send(&self, call: &Call) -> Result<Reply> {
        let limits = &self.inner.limits;
        let max_wait = limits.max_wait();
        let mut rate_backoff = RATE_BACKOFF;
        let mut transient_backoff = TRANSIENT_BACKOFF;
        let mut tries = 0;
        loop {
            let e = match self.attempt(call).await {
                Ok(reply) => return Ok(reply),
                Err(e) => e,
            };
            if tries >= limits.max_retries {
                return Err(e);
            }
            let wait = match &e {
                Error::RateLimited { retry_after } => {
                    let need = retry_after.unwrap_or(rate_backoff);
                    if !self.wait || need > max_wait {
                        return Err(e);
                    }
                    rate_backoff = (rate_backoff * 2).min(max_wait.max(RATE_BACKOFF));
                    tracing::warn!(error = %e, wait_secs = need.as_secs(), "GitLab rate limit: waiting");
                    need
                }
                e if e.is_transient() && call.repeatable() => {
                    let need = transient_backoff.min(max_wait);
                    transient_backoff *= 2;
                    tracing::debug!(error = %e, wait_ms = need.as_millis() as u64, "GitLab: trying again");
                    need
                }
                _ => return Err(e),
            };
            self.inner.clock.sleep(wait).await;
            tries += 1;
        }
    }

    async fn attempt(&self, call: &Call) -> Result<Reply> {
        let inner = &*self.inner;
        let now = inner.clock.now();
        inner.limiter.admit(call.priority, now)?;
        let _slot = inner.limiter.slot().await;
        let mut request = inner.http.request(call.method.clone(), &call.url);
        if !call.anonymous {
            request = request.header("private-token", inner.token.expose());
        }
        request = request
            .header("accept", "application/json")
            .header("user-agent", concat!("mayfly/", env!("CARGO_PKG_VERSION")));
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let (status, headers, body, started) =
            http::exchange(request, |h| inner.limiter.observe(h), metrics::call)
                .await
                .map_err(|e| Error::transport(&e))?;
        metrics::call(ApiOutcome::of_status(status), started);
        tracing::debug!(method = %call.method, url = %call.url, status, "GitLab");
        if status == 429 {
            let wait = retry_after(&headers, inner.clock.now());
            if let Some(w) = wait {
                inner.limiter.pause(inner.clock.now().plus(w));
            }
            return Err(Error::RateLimited { retry_after: wait });
        }
        if !(200..300).contains(&status) {
            return Err(error_for(status, &body));
        }
        Ok(Reply { headers, body })
    }

    /// Every item of a paged list (the body is a JSON array), following `Link rel="next"` on the
    /// same API only: the token never goes to another host.
    pub(crate) async fn get_all<T: DeserializeOwned>(
        &self,
        first: Reply,
        priority: Priority,
    ) -> Result<Vec<T>> {
        let mut items = Vec::new();
        let mut reply = first;
        for _ in 0..MAX_PAGES {
            let page: Vec<T> = reply.json()?;
            items.extend(page);
            let Some(next) = next_link(&reply.headers)
                .filter(|u| u.starts_with(&format!("{}/", self.inner.api_url)))
            else {
                return Ok(items);
            };
            reply = self.send(&Call::new(Method::GET, next, priority)).await?;
        }
        Ok(items)
    }

    /// A GET of every page of a list.
    pub(crate) async fn list<T: DeserializeOwned>(
        &self,
        url: String,
        priority: Priority,
    ) -> Result<Vec<T>> {
        let first = self.send(&Call::new(Method::GET, url, priority)).await?;
        self.get_all(first, priority).await
    }

    pub(crate) fn cached_tags(&self, job: u64) -> Option<Labels> {
        let tags = self.inner.tags.lock().unwrap_or_else(|e| e.into_inner());
        tags.get(&job).map(|(_, l)| l.clone())
    }

    pub(crate) fn remember_tags(&self, job: u64, labels: &Labels) {
        let n = {
            let mut order = self
                .inner
                .tag_order
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *order += 1;
            *order
        };
        let mut tags = self.inner.tags.lock().unwrap_or_else(|e| e.into_inner());
        tags.insert(job, (n, labels.clone()));
        if tags.len() > TAG_CACHE {
            let cut = n.saturating_sub((TAG_CACHE / 2) as u64);
            tags.retain(|_, (seen, _)| *seen > cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_gitlabs_words() {
        assert_eq!(
            error_for(404, br#"{"message":"404 Project Not Found"}"#),
            Error::NotFound
        );
        assert_eq!(error_for(401, b""), Error::Unauthorized);
        assert_eq!(
            error_for(
                403,
                br#"{"error":"insufficient_scope","error_description":"...","scope":"api create_runner"}"#
            ),
            Error::Forbidden {
                message: "the token lacks a scope; any of these would do: api create_runner".into()
            }
        );
        assert_eq!(
            error_for(400, br#"{"error":"runner_type is missing"}"#),
            Error::Invalid {
                message: "runner_type is missing".into()
            }
        );
        assert!(matches!(
            error_for(400, br#"{"message":{"tags_list":["can not be empty"]}}"#),
            Error::Invalid { message } if message.contains("tags_list")
        ));
        assert_eq!(error_for(502, b"<html>"), Error::http(502, "<html>"));
        assert!(error_for(502, b"").is_transient());
    }

    #[test]
    fn references_become_one_segment() {
        assert_eq!(segment("acme/platform/app"), "acme%2Fplatform%2Fapp");
        assert_eq!(segment("42"), "42");
    }
}
