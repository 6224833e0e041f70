//! The wire: every Hetzner request passes one gate here (token, timeout, RateLimit headers, the
//! bounded wait on 429, retries of idempotent calls, errors without secrets).
//!
//! Public so that `mayfly cloud` makes its few calls (the controller's own server, which must
//! not carry the runner labels of [`super::Hetzner`]) through the same gate.

use super::config::{ConfigError, HetznerConfig};
use super::mapping::{self, Refusal};
use crate::{Error, Result, metrics};
use mayfly_core::metrics::ApiOutcome;
use mayfly_core::{Clock, Secret, Time};
use reqwest::header::HeaderMap;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The provider's kind, and the `api` label of its calls.
pub(crate) const API: &str = "hetzner";
/// Rate-limit answers waited out per call before giving up (each wait also counts against
/// `max_wait`).
const MAX_RATE_RETRIES: u32 = 3;
/// Retries of an idempotent call after a 5xx or no answer at all; the reconciler's next pass
/// retries anything beyond.
const MAX_TRANSIENT_RETRIES: u32 = 2;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Used when a 429 comes without headers: Hetzner refills about one request per second.
const RATE_FALLBACK_WAIT: Duration = Duration::from_secs(5);

/// The request budget as the last answer reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub limit: u32,
    pub remaining: u32,
    /// When the bucket is full again (Hetzner's `RateLimit-Reset`).
    pub full_at: Time,
}

impl Budget {
    /// How long until one more request is allowed. Hetzner refills the bucket evenly until
    /// `full_at`, so one request comes back every `(full_at - now) / missing`.
    pub(crate) fn next_request_in(&self, now: Time) -> Duration {
        let missing = self.limit.saturating_sub(self.remaining).max(1);
        let until_full = self.full_at.since(now);
        let per_request = until_full / missing;
        // Whole seconds, at least one: the headers have second precision.
        Duration::from_secs(per_request.as_secs_f64().ceil().max(1.0) as u64)
    }
}

#[derive(Default)]
struct Limits {
    budget: Option<Budget>,
    /// After a 429 nothing is sent before this: other calls would only spend more 429s.
    paused_until: Option<Time>,
}

/// One request to make.
pub struct Call<'a> {
    pub method: Method,
    pub url: Url,
    pub body: Option<Value>,
    /// Text that must never come back in an error (the user data of a create or rebuild).
    pub sensitive: Option<&'a Secret>,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, url: Url) -> Call<'a> {
        Call {
            method,
            url,
            body: None,
            sensitive: None,
        }
    }

    pub fn json(mut self, body: Value) -> Call<'a> {
        self.body = Some(body);
        self
    }

    pub fn sensitive(mut self, secret: &'a Secret) -> Call<'a> {
        self.sensitive = Some(secret);
        self
    }

    /// Reads and deletes can be sent twice with the same effect; a POST is never repeated
    /// after an unclear outcome (a create that timed out answers `AlreadyExists` next pass).
    fn idempotent(&self) -> bool {
        matches!(self.method, Method::GET | Method::DELETE | Method::HEAD)
    }
}

/// A successful answer.
pub struct Reply {
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| mapping::invalid_answer(&format!("unexpected answer: {e}")))
    }
}

/// Why a call failed. The provider acts on [`Error`] (`From` turns one into the other);
/// `mayfly cloud` shows a refusal in Hetzner's own words, with the fields it named.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Hetzner answered with an error (not a rate limit: that is waited out, or `Failed`).
    #[error(transparent)]
    Refused(Refusal),
    /// No usable answer: the transport failed, the rate limit outlasted the longest wait, or the
    /// answer was unreadable.
    #[error(transparent)]
    Failed(Error),
}

impl From<CallError> for Error {
    fn from(e: CallError) -> Error {
        match e {
            CallError::Refused(r) => r.error(),
            CallError::Failed(e) => e,
        }
    }
}

impl From<Error> for CallError {
    fn from(e: Error) -> CallError {
        CallError::Failed(e)
    }
}

impl CallError {
    fn is_transient(&self) -> bool {
        match self {
            CallError::Refused(r) => r.error().is_transient(),
            CallError::Failed(e) => e.is_transient(),
        }
    }
}

/// Why one attempt failed: a rate limit carries its wait, so the loop can decide.
enum Failure {
    RateLimited(Duration),
    Other(CallError),
}

/// The HTTP client of one project. Shared by every call of the provider, so all of them see
/// the same budget and pause.
pub struct Api {
    http: reqwest::Client,
    /// Without a trailing slash: `https://api.hetzner.cloud/v1`.
    endpoint: String,
    token: Secret,
    clock: Arc<dyn Clock>,
    max_wait: Duration,
    limits: Mutex<Limits>,
}

impl Api {
    /// Checks the endpoint, token and timeout of `config` without calling the API; `clock` is
    /// what rate-limit waits and backoffs are measured with.
    pub fn new(
        config: &HetznerConfig,
        clock: Arc<dyn Clock>,
    ) -> std::result::Result<Api, ConfigError> {
        let endpoint = config.endpoint.trim_end_matches('/').to_string();
        let parsed =
            Url::parse(&endpoint).map_err(|_| ConfigError::BadEndpoint(endpoint.clone()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
            return Err(ConfigError::BadEndpoint(endpoint));
        }
        if config.token.expose().trim().is_empty() {
            return Err(ConfigError::EmptyToken);
        }
        if config.request_timeout_ms == 0 {
            return Err(ConfigError::ZeroTimeout);
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout())
            .connect_timeout(config.request_timeout())
            .user_agent(concat!("mayfly/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| ConfigError::HttpClient)?;
        Ok(Api {
            http,
            endpoint,
            token: config.token.clone(),
            clock,
            max_wait: config.max_wait(),
            limits: Mutex::new(Limits::default()),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub(crate) fn now(&self) -> Time {
        self.clock.now()
    }

    pub fn budget(&self) -> Option<Budget> {
        self.limits().budget
    }

    fn limits(&self) -> std::sync::MutexGuard<'_, Limits> {
        self.limits.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `endpoint + path` with the query pairs encoded.
    pub fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url> {
        let mut url =
            Url::parse(&format!("{}{path}", self.endpoint)).map_err(|_| Error::Invalid {
                message: format!("cannot build a URL for {path:?}"),
            })?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// Sends a call. A 429 (or an earlier 429's pause) is waited out with the injected clock
    /// as long as the waits add up to at most `max_wait`; beyond, `RateLimited` says how long.
    /// An idempotent call is retried a few times after a 5xx or a lost answer.
    ///
    /// A plain loop rather than a retry crate: their futures hold closures over the borrowed
    /// call, which keeps callers spawned on a multi-threaded runtime from being `Send`.
    pub async fn send(&self, call: &Call<'_>) -> std::result::Result<Reply, CallError> {
        let mut waited = Duration::ZERO;
        let (mut rate_tries, mut transient_tries) = (0, 0);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let now = self.clock.now();
            let paused = self.limits().paused_until.filter(|u| *u > now);
            let outcome = match paused {
                Some(until) => Err(Failure::RateLimited(until.since(now))),
                None => self.attempt(call).await,
            };
            match outcome {
                Ok(reply) => return Ok(reply),
                Err(Failure::RateLimited(wait)) => {
                    if rate_tries >= MAX_RATE_RETRIES || waited + wait > self.max_wait {
                        return Err(CallError::Failed(Error::RateLimited {
                            retry_after: Some(wait),
                        }));
                    }
                    tracing::warn!(wait_secs = wait.as_secs(), "Hetzner rate limit: waiting");
                    self.clock.sleep(wait).await;
                    waited += wait;
                    rate_tries += u32::from(paused.is_none());
                }
                Err(Failure::Other(e)) => {
                    let retry = call.idempotent()
                        && e.is_transient()
                        && transient_tries < MAX_TRANSIENT_RETRIES
                        && waited + backoff <= self.max_wait;
                    if !retry {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "Hetzner: retrying an idempotent call");
                    self.clock.sleep(backoff).await;
                    waited += backoff;
                    backoff *= 2;
                    transient_tries += 1;
                }
            }
        }
    }

    async fn attempt(&self, call: &Call<'_>) -> std::result::Result<Reply, Failure> {
        let mut request = self
            .http
            .request(call.method.clone(), call.url.clone())
            .bearer_auth(self.token.expose());
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let started = Instant::now();
        let response = request.send().await.map_err(|e| {
            metrics::call(API, ApiOutcome::Transport, started);
            Failure::Other(CallError::Failed(transport(&e)))
        })?;
        let status = response.status().as_u16();
        let budget = self.observe(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|e| {
                metrics::call(API, ApiOutcome::Transport, started);
                Failure::Other(CallError::Failed(transport(&e)))
            })?
            .to_vec();
        tracing::debug!(method = %call.method, path = call.url.path(), status, "Hetzner");
        if (200..300).contains(&status) {
            metrics::call(API, ApiOutcome::Ok, started);
            return Ok(Reply { body });
        }
        let code = mapping::error_code(&body).map(|(c, _)| c);
        let limited = status == 429 || code.as_deref() == Some("rate_limit_exceeded");
        let outcome = match limited {
            true => ApiOutcome::RateLimited,
            false => ApiOutcome::of_status(status),
        };
        metrics::call(API, outcome, started);
        if limited {
            let now = self.clock.now();
            let wait = budget.map_or(RATE_FALLBACK_WAIT, |b| b.next_request_in(now));
            let mut limits = self.limits();
            let until = now.plus(wait);
            limits.paused_until = Some(limits.paused_until.map_or(until, |u| u.max(until)));
            return Err(Failure::RateLimited(wait));
        }
        let secrets: Vec<&str> = std::iter::once(self.token.expose())
            .chain(call.sensitive.map(Secret::expose))
            .collect();
        Err(Failure::Other(CallError::Refused(Refusal::read(
            status, &body, &secrets,
        ))))
    }

    /// Takes in the RateLimit headers of any answer; returns the budget they describe.
    fn observe(&self, headers: &HeaderMap) -> Option<Budget> {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        let (limit, remaining, reset) = (
            num("ratelimit-limit")?,
            num("ratelimit-remaining")?,
            num("ratelimit-reset")?,
        );
        let budget = Budget {
            limit: limit.clamp(0, i64::from(u32::MAX)) as u32,
            remaining: remaining.clamp(0, i64::from(u32::MAX)) as u32,
            full_at: Time::from_secs(reset),
        };
        metrics::remaining(API, budget.remaining);
        self.limits().budget = Some(budget);
        Some(budget)
    }

    /// GETs one JSON document.
    pub async fn get<T: DeserializeOwned>(&self, url: Url) -> std::result::Result<T, CallError> {
        Ok(self.send(&Call::new(Method::GET, url)).await?.json()?)
    }
}

/// No answer, said without the URL's query or any header: what went wrong, not what was sent.
fn transport(e: &reqwest::Error) -> Error {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else {
        "request failed"
    };
    Error::Transport(format!("hetzner: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_comes_back_per_refill_step() {
        // 3,600 an hour, empty, full in an hour: one a second.
        let b = Budget {
            limit: 3600,
            remaining: 0,
            full_at: Time::from_secs(3600),
        };
        assert_eq!(
            b.next_request_in(Time::from_secs(0)),
            Duration::from_secs(1)
        );
        // 60 an hour: one a minute.
        let b = Budget {
            limit: 60,
            remaining: 0,
            full_at: Time::from_secs(3600),
        };
        assert_eq!(
            b.next_request_in(Time::from_secs(0)),
            Duration::from_secs(60)
        );
        // A reset in the past still waits a second, never zero.
        assert_eq!(
            b.next_request_in(Time::from_secs(7200)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn a_bad_endpoint_or_an_empty_token_is_refused() {
        struct Never;
        impl Clock for Never {
            fn now(&self) -> Time {
                Time::default()
            }
            fn sleep(
                &self,
                _: Duration,
            ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
                Box::pin(std::future::ready(()))
            }
        }
        let clock: Arc<dyn Clock> = Arc::new(Never);
        let mut c = HetznerConfig::new(Secret::new("tok"));
        c.endpoint = "ftp://example.com/v1".into();
        assert!(matches!(
            Api::new(&c, clock.clone()),
            Err(ConfigError::BadEndpoint(_))
        ));
        c.endpoint = "not a url".into();
        assert!(matches!(
            Api::new(&c, clock.clone()),
            Err(ConfigError::BadEndpoint(_))
        ));
        c.endpoint = "http://127.0.0.1:1/v1/".into();
        let client = Api::new(&c, clock.clone()).ok().unwrap();
        assert_eq!(client.endpoint(), "http://127.0.0.1:1/v1");
        assert_eq!(
            client
                .url("/servers", &[("label_selector", "a==b c")])
                .unwrap()
                .as_str(),
            "http://127.0.0.1:1/v1/servers?label_selector=a%3D%3Db+c"
        );
        c.token = Secret::new("  ");
        assert!(matches!(Api::new(&c, clock), Err(ConfigError::EmptyToken)));
    }
}
