//! The runner program's side of the Actions service (`github::actions`): plain HTTP with
//! timeouts, each answer sorted into what the listener does next.

use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

/// Every request's deadline beyond its own wait; the fake answers at once or long-polls.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How a call ended, in the listener's terms.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// No answer (connection refused, timeout): try again later, as the listener does.
    #[error("no answer: {0}")]
    Unreachable(String),
    /// The registration is gone from the server: the runner must be configured again.
    #[error("the runner registration has been deleted")]
    Deleted,
    /// The server refused the credentials.
    #[error("the credentials were refused")]
    Unauthorized,
    /// Another listener holds the runner's session.
    #[error("another session holds the runner")]
    Conflict,
    /// The session is gone (timed out): open a new one.
    #[error("the session is gone")]
    SessionGone,
    /// Anything else the server said.
    #[error("the service answered {0}: {1}")]
    Refused(u16, String),
}

pub struct Service {
    http: reqwest::Client,
    base: String,
}

#[derive(Deserialize)]
pub struct Opened {
    pub session_id: String,
    /// Simulated seconds per real second of the fake's clock: a job's duration is simulated.
    pub speed: f64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Job {
    pub job_id: u64,
    pub run_id: u64,
    pub repository: String,
    pub job_name: String,
    pub duration_secs: f64,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    message: String,
}

impl Service {
    pub fn new(server_url: &str) -> Result<Service, String> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT + Duration::from_secs(10))
            .connect_timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Service {
            http,
            base: server_url.trim_end_matches('/').to_string(),
        })
    }

    async fn sorted(
        r: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<reqwest::Response, Failure> {
        let r = r.map_err(|e| Failure::Unreachable(without_url(&e)))?;
        let status = r.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(r);
        }
        let message = r
            .json::<Message>()
            .await
            .map(|m| m.message)
            .unwrap_or_default();
        Err(match status {
            401 | 403 => Failure::Unauthorized,
            404 if message.contains("registration has been deleted") => Failure::Deleted,
            404 => Failure::SessionGone,
            409 => Failure::Conflict,
            _ => Failure::Refused(status, message),
        })
    }

    pub async fn open(&self, agent_id: u64, client_id: &str) -> Result<Opened, Failure> {
        let r = self
            .http
            .post(format!("{}/sessions", self.base))
            .json(&json!({ "agent_id": agent_id, "client_id": client_id }))
            .send()
            .await;
        Self::sorted(r)
            .await?
            .json()
            .await
            .map_err(|e| Failure::Unreachable(without_url(&e)))
    }

    /// The next job, waiting up to `wait` for one; `None` when none came.
    pub async fn message(&self, session: &str, wait: Duration) -> Result<Option<Job>, Failure> {
        let r = self
            .http
            .get(format!(
                "{}/sessions/{session}/message?wait_ms={}",
                self.base,
                wait.as_millis()
            ))
            .send()
            .await;
        let r = Self::sorted(r).await?;
        if r.status().as_u16() == 204 {
            return Ok(None);
        }
        r.json()
            .await
            .map(Some)
            .map_err(|e| Failure::Unreachable(without_url(&e)))
    }

    pub async fn renew(&self, session: &str, job: u64) -> Result<(), Failure> {
        let r = self
            .http
            .post(format!("{}/sessions/{session}/jobs/{job}/renew", self.base))
            .send()
            .await;
        Self::sorted(r).await.map(|_| ())
    }

    pub async fn complete(&self, session: &str, job: u64, conclusion: &str) -> Result<(), Failure> {
        let r = self
            .http
            .post(format!(
                "{}/sessions/{session}/jobs/{job}/complete",
                self.base
            ))
            .json(&json!({ "conclusion": conclusion }))
            .send()
            .await;
        Self::sorted(r).await.map(|_| ())
    }

    pub async fn close(&self, session: &str) {
        let _ = self
            .http
            .delete(format!("{}/sessions/{session}", self.base))
            .send()
            .await;
    }
}

/// The innermost cause of a transport error: what happened, without the URL.
fn without_url(e: &reqwest::Error) -> String {
    let mut last = e.to_string();
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        last = cause.to_string();
        next = cause.source();
    }
    last
}
