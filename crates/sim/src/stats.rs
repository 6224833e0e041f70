//! Counts every API call each fake answers, by service, method and route template, so a run can
//! be judged by calls per job. A tower layer over each fake's router does the counting.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct CallKey {
    /// `github` or `hetzner`.
    pub service: String,
    pub method: String,
    /// The route template (`/repos/{owner}/{repo}/actions/runs`), or the raw path when no route
    /// matched.
    pub route: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CallCount {
    pub calls: u64,
    /// Answered 304 Not Modified (free for GitHub's primary rate limit).
    pub not_modified: u64,
    /// Answered with a 4xx or 5xx status.
    pub errors: u64,
}

#[derive(Debug, Default)]
pub struct Stats {
    calls: Mutex<BTreeMap<CallKey, CallCount>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CallRow {
    #[serde(flatten)]
    pub key: CallKey,
    #[serde(flatten)]
    pub count: CallCount,
}

impl Stats {
    pub fn record(&self, key: CallKey, status: u16) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let c = calls.entry(key).or_default();
        c.calls += 1;
        if status == 304 {
            c.not_modified += 1;
        }
        if status >= 400 {
            c.errors += 1;
        }
    }

    pub fn rows(&self) -> Vec<CallRow> {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls
            .iter()
            .map(|(k, c)| CallRow {
                key: k.clone(),
                count: *c,
            })
            .collect()
    }

    /// Total calls to one service, excluding the control API.
    pub fn total(&self, service: &str) -> u64 {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls
            .iter()
            .filter(|(k, _)| k.service == service)
            .map(|(_, c)| c.calls)
            .sum()
    }

    pub fn reset(&self) {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// What the counting middleware needs: the shared stats and the service's name.
#[derive(Clone)]
pub struct Counter {
    pub stats: Arc<Stats>,
    pub service: &'static str,
}

/// Axum middleware, applied with `router.route_layer(axum::middleware::from_fn_with_state(counter,
/// count_calls))` so that the matched route template is known. Paths under `/_sim/` (the control
/// API) are not counted.
pub async fn count_calls(State(counter): State<Counter>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(path.clone(), |m| m.as_str().to_string());
    let response = next.run(req).await;
    if !path.starts_with("/_sim/") {
        let key = CallKey {
            service: counter.service.to_string(),
            method,
            route,
        };
        counter.stats.record(key, response.status().as_u16());
    }
    response
}
