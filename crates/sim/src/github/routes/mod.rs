//! The REST API's router and the gate every call passes: credentials, the primary and secondary
//! rate limits with their headers, and ETags with conditional requests (a 304 costs nothing).

mod app;
mod repos;
mod runners;

use super::Github;
use super::auth;
use super::ratelimit::Primary;
use crate::stats::{Counter, count_calls};
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub fn router(gh: Arc<Github>) -> Router {
    let api = Router::new()
        .route("/rate_limit", get(app::rate_limit))
        .route(
            "/app/installations/{installation_id}/access_tokens",
            post(app::access_token),
        )
        .route("/repos/{owner}/{repo}", get(repos::repository))
        .route("/repos/{owner}/{repo}/actions/runs", get(repos::runs))
        .route(
            "/repos/{owner}/{repo}/actions/runs/{run_id}",
            get(repos::run),
        )
        .route(
            "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
            get(repos::jobs),
        )
        .route(
            "/repos/{owner}/{repo}/actions/jobs/{job_id}",
            get(repos::job),
        )
        .route(
            "/repos/{owner}/{repo}/actions/runners",
            get(runners::repo_list),
        )
        .route(
            "/repos/{owner}/{repo}/actions/runners/{runner_id}",
            get(runners::repo_get).delete(runners::repo_delete),
        )
        .route(
            "/repos/{owner}/{repo}/actions/runners/registration-token",
            post(runners::repo_registration_token),
        )
        .route(
            "/repos/{owner}/{repo}/actions/runners/remove-token",
            post(runners::repo_remove_token),
        )
        .route(
            "/repos/{owner}/{repo}/actions/runners/generate-jitconfig",
            post(runners::repo_jitconfig),
        )
        .route("/orgs/{org}", get(repos::organization))
        .route("/orgs/{org}/actions/runners", get(runners::org_list))
        .route(
            "/orgs/{org}/actions/runners/{runner_id}",
            get(runners::org_get).delete(runners::org_delete),
        )
        .route(
            "/orgs/{org}/actions/runners/registration-token",
            post(runners::org_registration_token),
        )
        .route(
            "/orgs/{org}/actions/runners/remove-token",
            post(runners::org_remove_token),
        )
        .route(
            "/orgs/{org}/actions/runners/generate-jitconfig",
            post(runners::org_jitconfig),
        )
        .route_layer(from_fn_with_state(gh.clone(), gate))
        .route_layer(from_fn_with_state(
            Counter {
                stats: gh.stats.clone(),
                service: "github",
            },
            count_calls,
        ))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "Not Found") })
        .with_state(gh.clone());
    let prefix = gh.config().api_prefix.trim_end_matches('/').to_string();
    let api = if prefix.is_empty() {
        api
    } else {
        Router::new().nest(&prefix, api)
    };
    api.merge(super::actions::router(gh))
}

/// Where the caller reached the fake: `http://host` and the API prefix, for URLs in bodies and
/// Link headers (PyGithub follows them and insists on its own host).
#[derive(Clone, Debug)]
pub struct Base {
    pub origin: String,
    pub prefix: String,
}

impl Base {
    pub fn api(&self) -> String {
        format!("{}{}", self.origin, self.prefix)
    }
}

/// GitHub's error body.
pub fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
        "status": status.as_u16().to_string(),
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

pub fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn set(headers: &mut HeaderMap, name: &'static str, value: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(name, v);
    }
}

/// Whether an If-None-Match header names this ETag (weak or strong, or `*`).
fn matches(if_none_match: Option<&HeaderValue>, etag: &str) -> bool {
    let Some(v) = if_none_match.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    v.split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

const MAX_BODY: usize = 64 << 20;

async fn gate(State(gh): State<Arc<Github>>, mut req: Request, next: Next) -> Response {
    let (prefix, per_hour, writes_per_minute, latency) = {
        let c = gh.config();
        (
            c.api_prefix.trim_end_matches('/').to_string(),
            c.rate_limit_per_hour,
            c.writes_per_minute,
            c.latency,
        )
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let base = Base {
        origin: format!("http://{host}"),
        prefix,
    };
    gh.lock().base_url = Some(base.api());
    req.extensions_mut().insert(base);
    let path = req.uri().path();
    // The budget endpoint is free, and the App endpoint authenticates with a JWT instead.
    if path.ends_with("/rate_limit") || path.ends_with("/access_tokens") {
        return next.run(req).await;
    }
    let Some(who) = auth::credential(req.headers()).map(str::to_string) else {
        return error(StatusCode::UNAUTHORIZED, "Requires authentication");
    };
    let now = gh.clock.now_ms();
    if !gh.accepts(&who, now) {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let method = req.method().clone();
    let reading = method == Method::GET || method == Method::HEAD;
    if !reading && let Err(wait) = gh.lock().budgets.write(&who, writes_per_minute, now) {
        let mut r = error(
            StatusCode::FORBIDDEN,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        );
        set(r.headers_mut(), "retry-after", wait);
        return r;
    }
    // Spent before the handler runs, under one lock, so concurrent calls cannot overdraw; a 304
    // gives it back.
    let spent = {
        let mut st = gh.lock();
        let before = st.budgets.primary(&who, per_hour, now);
        if before.remaining() == 0 {
            drop(st);
            let mut r = error(
                StatusCode::FORBIDDEN,
                "API rate limit exceeded. Wait for the reset given in x-ratelimit-reset before trying again.",
            );
            rate_headers(r.headers_mut(), &before);
            return r;
        }
        st.budgets.spend(&who, per_hour, now)
    };
    let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
    let response = next.run(req).await;
    let (mut parts, mut body) = response.into_parts();
    if reading && parts.status == StatusCode::OK {
        let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "Server Error");
        };
        let etag = format!("\"{}\"", hex::encode(Sha256::digest(&bytes)));
        set(&mut parts.headers, "etag", &etag);
        if matches(if_none_match.as_ref(), &etag) {
            let current = gh.lock().budgets.refund(&who, per_hour, now);
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            set(r.headers_mut(), "etag", &etag);
            rate_headers(r.headers_mut(), &current);
            return r;
        }
        body = Body::from(bytes);
    }
    rate_headers(&mut parts.headers, &spent);
    Response::from_parts(parts, body)
}

pub fn rate_headers(h: &mut HeaderMap, p: &Primary) {
    set(h, "x-ratelimit-limit", p.limit);
    set(h, "x-ratelimit-remaining", p.remaining());
    set(h, "x-ratelimit-used", p.used);
    set(h, "x-ratelimit-reset", p.reset);
    set(h, "x-ratelimit-resource", "core");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_takes_lists_and_weak_tags() {
        let v = HeaderValue::from_static("\"a\", W/\"b\"");
        assert!(matches(Some(&v), "\"b\""));
        assert!(!matches(Some(&v), "\"c\""));
        assert!(!matches(None, "\"a\""));
    }
}
