//! `GET /readyz` (no token): ready once a pass has read the world recently and the store
//! takes writes; otherwise 503 with the reason, for load balancers, systemd and people alike.
//! A follower among replicas runs no passes: it is ready while the store takes writes (it can
//! store webhooks and serve the API), and says who leads.

use super::api::Api;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mayfly_core::Time;
use mayfly_store::Store;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The body of both answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    /// Why not; `None` when ready.
    pub reason: Option<String>,
    /// When a pass last read the world (RFC 3339).
    pub read_at: Option<String>,
    pub read_seconds_ago: Option<u64>,
    pub last_pass: Option<LastPassView>,
    /// Which replica leads, when several share the state; absent for a controller alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<crate::view::LeaderView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastPassView {
    pub finished_at: String,
    pub took_ms: u64,
    /// Why it failed; `None` when it went through.
    pub error: Option<String>,
}

/// The store's write probe, taken at most every [`WriteProbe::EVERY`]: `/readyz` may be asked
/// many times a second (load balancers, a port open to the internet), and each probe is a
/// write (an fsync on SQLite). Callers at once share one probe.
#[derive(Default)]
pub struct WriteProbe {
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl WriteProbe {
    pub const EVERY: Duration = Duration::from_secs(2);

    /// Whether the store took a write within the last [`WriteProbe::EVERY`]; why not.
    pub async fn check(&self, store: &Store, timeout: Duration) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = &*last
            && at.elapsed() < Self::EVERY
        {
            return result.clone();
        }
        let result = match tokio::time::timeout(timeout, store.probe_write()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("the store cannot write: {e}")),
            Err(_) => Err(format!("the store took no write within {timeout:?}")),
        };
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

pub async fn readyz(State(api): State<Arc<Api>>) -> Response {
    let now = api.clock.now();
    let view = api.views.borrow().clone();
    let last = api.last_pass.borrow().clone();
    let store = api.write_probe.check(&api.store, api.store_timeout).await;
    let read_ago = view.as_ref().map(|v| now.since(v.at));
    let leader = api.leader();
    let following = leader.as_ref().is_some_and(|l| !l.leading);
    let mut reason = match (store, read_ago) {
        (Err(e), _) => Some(e),
        (Ok(()), _) if following => None,
        (Ok(()), None) => Some("no reconcile pass has read the world yet".to_string()),
        (Ok(()), Some(ago)) if ago > api.ready_within => Some(format!(
            "no reconcile pass has read the world for {}s (at most {}s expected)",
            ago.as_secs(),
            api.ready_within.as_secs()
        )),
        _ => None,
    };
    if let (Some(r), Some(e), false) = (
        &mut reason,
        last.as_ref().and_then(|l| l.error.as_ref()),
        following,
    ) {
        r.push_str(&format!("; the last pass failed: {e}"));
    }
    let body = Readiness {
        ready: reason.is_none(),
        reason,
        read_at: view.as_ref().map(|v| rfc3339(v.at)),
        read_seconds_ago: read_ago.map(|d| d.as_secs()),
        last_pass: last.map(|l| LastPassView {
            finished_at: rfc3339(l.finished),
            took_ms: u64::try_from(l.took.as_millis()).unwrap_or(u64::MAX),
            error: l.error,
        }),
        leader,
    };
    let status = if body.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

pub(super) fn rfc3339(t: Time) -> String {
    jiff::Timestamp::from_millisecond(t.millis())
        .map(|ts| ts.to_string())
        .unwrap_or_default()
}
