//! `GET /readyz` (no token): ready once a pass has read the world recently and the store
//! answers; otherwise 503 with the reason, for load balancers, systemd and people alike.

use super::api::Api;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mayfly_core::Time;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

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
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastPassView {
    pub finished_at: String,
    pub took_ms: u64,
    /// Why it failed; `None` when it went through.
    pub error: Option<String>,
}

pub async fn readyz(State(api): State<Arc<Api>>) -> Response {
    let now = api.clock.now();
    let view = api.views.borrow().clone();
    let last = api.last_pass.borrow().clone();
    let store = tokio::time::timeout(api.store_timeout, api.store.ping()).await;
    let read_ago = view.as_ref().map(|v| now.since(v.at));
    let mut reason = match (store, read_ago) {
        (Err(_), _) => Some(format!(
            "the store gave no answer within {:?}",
            api.store_timeout
        )),
        (Ok(Err(e)), _) => Some(format!("the store does not answer: {e}")),
        (Ok(Ok(())), None) => Some("no reconcile pass has read the world yet".to_string()),
        (Ok(Ok(())), Some(ago)) if ago > api.ready_within => Some(format!(
            "no reconcile pass has read the world for {}s (at most {}s expected)",
            ago.as_secs(),
            api.ready_within.as_secs()
        )),
        _ => None,
    };
    if let (Some(r), Some(e)) = (&mut reason, last.as_ref().and_then(|l| l.error.as_ref())) {
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
    };
    let status = if body.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

fn rfc3339(t: Time) -> String {
    jiff::Timestamp::from_millisecond(t.millis())
        .map(|ts| ts.to_string())
        .unwrap_or_default()
}
