//! The wire: every GitHub request passes one gate here (limiter, credential, timeout, retries on
//! rate limits, ETags, paging). The endpoint files build on `send` and `get_all`.

use super::auth::{AppAuth, Auth};
use super::config::{AuthConfig, ClientConfig, ConfigError, LimitsConfig};
use super::error::{Error, Result};
use super::metrics;
use super::ratelimit::{Budget, Limiter, Priority, RESET_SLACK, limiter, retry_after};
use crate::http;
pub(crate) use crate::link::next_link;
use mayfly_core::metrics::ApiOutcome;
use mayfly_core::{Secret, Time};
use reqwest::header::{ETAG, HeaderMap, IF_NONE_MATCH};
use reqwest::{Method, RequestBuilder};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// GitHub advises waiting at least a minute after a rate-limit answer that names no time.
const FIRST_BACKOFF: Duration = Duration::from_secs(60);
/// A runaway Link chain stops here (10,000 items at 100 a page).
const MAX_PAGES: usize = 100;
pub(crate) const PER_PAGE: u32 = 100;

/// The client's notion of now and of waiting (budget resets, `retry-after`, token expiry);
/// the App's JWT uses the wall clock whatever the client's clock.
pub use mayfly_core::Clock;

pub use crate::clock::SystemClock;

/// A GitHub REST client for one credential: make one per credential and clone it, so that
/// every request of that credential passes the same limiter. Clones share the limiter, the token
/// cache, the ETags and the runner groups.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
    /// Whether a rate-limited request waits (within `max_wait_secs`) or fails at once.
    wait: bool,
}

pub(crate) struct Inner {
    http: reqwest::Client,
    /// Without a trailing slash: `https://api.github.com`, `https://ghes.example/api/v3`.
    pub(crate) api_url: String,
    auth: Auth,
    limiter: Limiter,
    limits: LimitsConfig,
    clock: Arc<dyn Clock>,
    /// The last ETag per URL, for conditional requests.
    etags: Mutex<HashMap<String, String>>,
    /// Runner group names resolved to ids, per scope path.
    pub(crate) groups: Mutex<HashMap<(String, String), u64>>,
}

/// One request to make.
pub(crate) struct Call {
    pub method: Method,
    /// Absolute URL.
    pub url: String,
    pub body: Option<serde_json::Value>,
    pub priority: Priority,
    /// Send If-None-Match with the URL's last remembered ETag.
    pub conditional: bool,
}

impl Call {
    pub(crate) fn new(method: Method, url: String, priority: Priority) -> Call {
        Call {
            method,
            url,
            body: None,
            priority,
            conditional: false,
        }
    }
}

/// A successful answer. `body` is empty for 204 and 304.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| Error::decode(&e))
    }
}

/// Headers GitHub asks every client to send.
pub(crate) fn with_defaults(r: RequestBuilder) -> RequestBuilder {
    r.header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        .header("user-agent", concat!("mayfly/", env!("CARGO_PKG_VERSION")))
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    message: String,
}

/// The error for an answer that is not a success (rate limits are sorted out before this).
pub(crate) fn error_for(status: u16, body: &[u8]) -> Error {
    let message = serde_json::from_slice::<Message>(body)
        .map(|m| m.message)
        .unwrap_or_default();
    match status {
        401 => Error::Unauthorized,
        404 => Error::NotFound,
        409 => Error::Conflict {
            message: super::error::clip(&message),
        },
        _ => Error::http(status, &message),
    }
}

impl Client {
    pub fn new(config: &ClientConfig) -> Result<Client, ConfigError> {
        Client::with_clock(config, Arc::new(SystemClock))
    }

    pub fn with_clock(config: &ClientConfig, clock: Arc<dyn Clock>) -> Result<Client, ConfigError> {
        let api_url = config.api_url.trim_end_matches('/').to_string();
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            return Err(ConfigError::BadApiUrl(config.api_url.clone()));
        }
        if !(0.0..=1.0).contains(&config.limits.reserve) {
            return Err(ConfigError::BadReserve);
        }
        let auth = match &config.auth {
            AuthConfig::Token { token } => Auth::Token(token.clone()),
            AuthConfig::App {
                app_id,
                installation_id,
                private_key_path,
            } => Auth::App(Box::new(AppAuth::load(
                *app_id,
                *installation_id,
                private_key_path,
                config.limits.token_refresh(),
            )?)),
        };
        let http = http::client(config.limits.request_timeout()).ok_or(ConfigError::HttpClient)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                api_url,
                auth,
                limiter: limiter(&config.limits),
                limits: config.limits.clone(),
                clock,
                etags: Mutex::new(HashMap::new()),
                groups: Mutex::new(HashMap::new()),
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

    /// The primary budget as GitHub last reported it, for metrics.
    pub fn budget(&self) -> Budget {
        self.inner.limiter.budget()
    }

    pub fn api_url(&self) -> &str {
        &self.inner.api_url
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.inner.api_url)
    }

    /// Sends a call; on a rate limit, waits as GitHub asks (`retry-after`, or until the reset;
    /// otherwise exponential backoff from 60 s), within `max_wait_secs` and at most
    /// `max_retries` times, then tries again. Anything else is the caller's to handle.
    ///
    /// A plain loop rather than backon: backon's retry future holds its closures over the
    /// borrowed call, and the compiler then cannot prove a spawned caller (the daemon's poll
    /// task) `Send` (a known limitation with higher-ranked closures in async code).
    pub(crate) async fn send(&self, call: &Call) -> Result<Reply> {
        let max_wait = self.inner.limits.max_wait();
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            let e = match self.attempt(call).await {
                Ok(reply) => return Ok(reply),
                Err(e) => e,
            };
            let Error::RateLimited { retry_after } = &e else {
                return Err(e);
            };
            let need = retry_after.unwrap_or(backoff);
            if !self.wait || tries >= self.inner.limits.max_retries || need > max_wait {
                return Err(e);
            }
            tracing::warn!(error = %e, wait_secs = need.as_secs(), "GitHub rate limit: waiting");
            self.inner.clock.sleep(need).await;
            backoff = (backoff * 2).min(max_wait.max(FIRST_BACKOFF));
            tries += 1;
        }
    }

    async fn attempt(&self, call: &Call) -> Result<Reply> {
        let inner = &*self.inner;
        let now = inner.clock.now();
        inner.limiter.admit(call.priority, now)?;
        let _slot = inner.limiter.slot().await;
        if call.method != Method::GET && call.method != Method::HEAD {
            inner.limiter.space_write().await;
        }
        let token = self.credential(now).await?;
        let mut request = with_defaults(inner.http.request(call.method.clone(), &call.url))
            .bearer_auth(token.expose());
        if call.conditional
            && let Some(etag) = self.etag(&call.url)
        {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let (status, headers, body, started) =
            http::exchange(request, |h| inner.limiter.observe(h), metrics::call)
                .await
                .map_err(|e| Error::transport(&e))?;
        tracing::debug!(method = %call.method, url = %call.url, status, "GitHub");
        let limited = self.rate_limited(status, &headers, &body);
        let outcome = match limited {
            Some(_) => ApiOutcome::RateLimited,
            None => ApiOutcome::of_status(status),
        };
        metrics::call(outcome, started);
        if let Some(e) = limited {
            return Err(e);
        }
        if status == 401
            && let Auth::App(app) = &inner.auth
        {
            app.forget().await;
        }
        if !(200..300).contains(&status) && status != 304 {
            return Err(error_for(status, &body));
        }
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    async fn credential(&self, now: Time) -> Result<Secret> {
        match &self.inner.auth {
            Auth::Token(t) => Ok(t.clone()),
            Auth::App(app) => app.token(&self.inner.http, &self.inner.api_url, now).await,
        }
    }

    /// Sorts a 403 or 429 into a rate limit (with the wait GitHub implies) or not; a rate limit
    /// also pauses every other request of this credential.
    fn rate_limited(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Option<Error> {
        if status != 403 && status != 429 {
            return None;
        }
        let now = self.inner.clock.now();
        let exhausted = headers
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "0");
        let says_so = serde_json::from_slice::<Message>(body)
            .is_ok_and(|m| m.message.to_ascii_lowercase().contains("rate limit"));
        let wait = retry_after(headers);
        if status == 403 && wait.is_none() && !exhausted && !says_so {
            return None;
        }
        let wait = wait.or_else(|| {
            exhausted.then(|| self.inner.limiter.budget().reset_at.since(now) + RESET_SLACK)
        });
        if let Some(w) = wait {
            self.inner.limiter.pause(now.plus(w));
        }
        Some(Error::RateLimited { retry_after: wait })
    }

    fn etag(&self, url: &str) -> Option<String> {
        let etags = self.inner.etags.lock().unwrap_or_else(|e| e.into_inner());
        etags.get(url).cloned()
    }

    /// Keeps a reply's ETag for its URL. Called once the whole answer is in the caller's hands:
    /// a later 304 then means "what you already have".
    pub(crate) fn forget_etag(&self, url: &str) {
        let mut etags = self.inner.etags.lock().unwrap_or_else(|e| e.into_inner());
        etags.remove(url);
    }

    pub(crate) fn remember_etag(&self, url: &str, reply_headers: &HeaderMap) {
        if let Some(etag) = reply_headers.get(ETAG).and_then(|v| v.to_str().ok()) {
            let mut etags = self.inner.etags.lock().unwrap_or_else(|e| e.into_inner());
            etags.insert(url.to_string(), etag.to_string());
        }
    }

    /// Every item of a paged list (`key` names the array), following Link `rel="next"` on the
    /// same API only: the credential never goes to another host.
    pub(crate) async fn get_all<T: DeserializeOwned>(
        &self,
        first: Reply,
        key: &str,
        priority: Priority,
    ) -> Result<Vec<T>> {
        let mut items = Vec::new();
        let mut reply = first;
        for _ in 0..MAX_PAGES {
            let mut page: HashMap<String, serde_json::Value> = reply.json()?;
            let list = page.remove(key).unwrap_or_default();
            let more: Vec<T> = serde_json::from_value(list).map_err(|e| Error::decode(&e))?;
            items.extend(more);
            let Some(next) = next_link(&reply.headers)
                .filter(|u| u.starts_with(&format!("{}/", self.inner.api_url)))
            else {
                return Ok(items);
            };
            reply = self.send(&Call::new(Method::GET, next, priority)).await?;
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_githubs_message() {
        let e = error_for(409, br#"{"message": "Already exists"}"#);
        assert_eq!(
            e,
            Error::Conflict {
                message: "Already exists".into()
            }
        );
        assert_eq!(error_for(404, b"not json"), Error::NotFound);
        assert_eq!(error_for(500, b""), Error::http(500, ""));
    }
}
