//! The API's router and the gate every call passes: injected faults, the throttles with their
//! `RateLimit-*` headers (429 with `Retry-After` and a plain-text body), the personal access
//! token and its scopes, and GitLab's error bodies.

// Handlers refuse with a ready `Response` (`Result<_, Response>`): it is large, but it is the
// answer, built once per refused request; boxing it would only add noise.
#![allow(clippy::result_large_err)]

mod projects;
mod runner_api;
mod runners;

use super::Gitlab;
use super::paging::{Page, Query};
use super::ratelimit::Window;
use crate::stats::{Counter, count_calls};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use rand::Rng;
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub const API: &str = "/api/v4";

pub fn router(gl: Arc<Gitlab>) -> Router {
    let r = |path: &str| format!("{API}{path}");
    Router::new()
        .route(&r("/user"), get(projects::current_user))
        .route(&r("/user/runners"), post(runners::create))
        .route(&r("/projects/{id}"), get(projects::project))
        .route(&r("/projects/{id}/jobs"), get(projects::jobs))
        .route(&r("/projects/{id}/jobs/{job_id}"), get(projects::job))
        .route(
            &r("/projects/{id}/jobs/{job_id}/cancel"),
            post(projects::cancel),
        )
        .route(
            &r("/projects/{id}/hooks"),
            get(projects::project_hooks).post(projects::add_project_hook),
        )
        .route(
            &r("/projects/{id}/hooks/{hook_id}"),
            get(projects::project_hook).delete(projects::delete_project_hook),
        )
        .route(&r("/projects/{id}/runners"), get(runners::project_list))
        .route(&r("/groups/{id}"), get(projects::group))
        .route(&r("/groups/{id}/projects"), get(projects::group_projects))
        .route(&r("/groups/{id}/runners"), get(runners::group_list))
        .route(
            &r("/groups/{id}/hooks"),
            get(projects::group_hooks).post(projects::add_group_hook),
        )
        .route(
            &r("/runners"),
            get(runners::owned_list).delete(runner_api::delete_by_token),
        )
        .route(&r("/runners/all"), get(runners::all_list))
        .route(&r("/runners/verify"), post(runner_api::verify))
        .route(&r("/runners/managers"), delete(runner_api::delete_manager))
        .route(
            &r("/runners/{runner_id}"),
            get(runners::get_one)
                .put(runners::update)
                .delete(runners::delete),
        )
        .route(&r("/runners/{runner_id}/jobs"), get(runners::jobs))
        .route(&r("/runners/{runner_id}/managers"), get(runners::managers))
        .route(&r("/jobs/request"), post(runner_api::request))
        .route(&r("/jobs/{job_id}"), put(runner_api::update))
        .route(
            &r("/jobs/{job_id}/trace"),
            axum::routing::patch(runner_api::trace),
        )
        .route_layer(from_fn_with_state(gl.clone(), gate))
        .route_layer(from_fn_with_state(
            Counter {
                stats: gl.stats.clone(),
                service: "gitlab",
            },
            count_calls,
        ))
        .fallback(|| async { message(StatusCode::NOT_FOUND, "404 Not Found") })
        .with_state(gl)
}

pub type Gl = State<Arc<Gitlab>>;

/// Where the caller reached the fake (`http://host:port`), for URLs in bodies and Link headers.
#[derive(Clone, Debug)]
pub struct Base {
    pub origin: String,
}

impl Base {
    /// The absolute URL of the request's own path, as the caller encoded it (a project's
    /// full path stays `acme%2Fapp`), for Link headers.
    pub fn here(&self, uri: &axum::http::Uri) -> String {
        format!("{}{}", self.origin, uri.path())
    }
}

/// The user behind the personal access token of a call.
#[derive(Clone, Debug)]
pub struct Caller {
    pub id: u64,
    pub username: String,
    pub admin: bool,
}

/// A JSON answer, typed as GitLab types it (python-gitlab compares the header exactly).
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// GitLab's usual error body: `{"message": "404 Project Not Found"}`.
pub fn message(status: StatusCode, text: &str) -> Response {
    json_response(status, &json!({ "message": text }))
}

/// Grape's validation error body: `{"error": "runner_type is missing"}`.
pub fn invalid(text: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": text }))
}

pub fn page_response(page: Page<Value>) -> Response {
    let mut r = json_response(StatusCode::OK, &Value::Array(page.items));
    r.headers_mut().extend(page.headers);
    r
}

pub fn set(h: &mut HeaderMap, name: &'static str, value: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        h.insert(name, v);
    }
}

/// A call's parameters ([`params`]) as a handler's last argument, read before the handler
/// runs as Grape reads them before the endpoint: a body it cannot read is answered 400 there.
pub struct Params(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Params, Response> {
        let query = req.uri().query().map(str::to_string);
        let headers = req.headers().clone();
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        params(query.as_deref(), &headers, &body).map(Params)
    }
}

/// The parameters of a call: the query, then the body (JSON object or form) on top, as Grape
/// merges them. Values stay JSON so that `tag_list` can be an array or a string.
pub fn params(
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Map<String, Value>, Response> {
    let mut out = Map::new();
    for (k, v) in Query::parse(query).pairs {
        out.insert(k, Value::String(v));
    }
    if body.is_empty() {
        return Ok(out);
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ctype.starts_with("application/x-www-form-urlencoded") || ctype.starts_with("multipart/") {
        let text = String::from_utf8_lossy(body);
        let q = Query::parse(Some(&text));
        for (k, v) in q.pairs {
            // Repeated form keys (`tag_list[]=a&tag_list[]=b`) gather into an array.
            let key = k.trim_end_matches("[]").to_string();
            match out.get_mut(&key) {
                Some(Value::Array(a)) if k.ends_with("[]") => a.push(Value::String(v)),
                _ if k.ends_with("[]") => {
                    out.insert(key, Value::Array(vec![Value::String(v)]));
                }
                _ => {
                    out.insert(key, Value::String(v));
                }
            }
        }
        return Ok(out);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => {
            out.extend(m);
            Ok(out)
        }
        Ok(_) => Err(invalid("the body must be a JSON object")),
        Err(_) => Err(message(
            StatusCode::BAD_REQUEST,
            "400 Bad request - invalid JSON",
        )),
    }
}

/// A string parameter (numbers accepted too).
pub fn text(p: &Map<String, Value>, key: &str) -> Option<String> {
    match p.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A boolean parameter; `Err` is Grape's answer for a value that is not one.
pub fn boolean(p: &Map<String, Value>, key: &str) -> Result<Option<bool>, Response> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if matches!(s.as_str(), "true" | "1" | "True") => Ok(Some(true)),
        Some(Value::String(s)) if matches!(s.as_str(), "false" | "0" | "False") => Ok(Some(false)),
        Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Some(true)),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(false)),
        Some(_) => Err(invalid(&format!("{key} is invalid"))),
    }
}

/// A whole-number parameter.
pub fn number(p: &Map<String, Value>, key: &str) -> Result<Option<u64>, Response> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(&format!("{key} is invalid"))),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| invalid(&format!("{key} is invalid"))),
        Some(_) => Err(invalid(&format!("{key} is invalid"))),
    }
}

/// `tag_list` as an array of strings or one comma-separated string.
pub fn tag_list(p: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, Response> {
    let tags: Vec<String> = match p.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.split(',').map(|t| t.trim().to_string()).collect(),
        Some(Value::Array(a)) => {
            let mut out = Vec::new();
            for v in a {
                match v {
                    Value::String(s) => out.push(s.trim().to_string()),
                    _ => return Err(invalid(&format!("{key} is invalid"))),
                }
            }
            out
        }
        Some(_) => return Err(invalid(&format!("{key} is invalid"))),
    };
    let mut out: Vec<String> = Vec::new();
    for t in tags.into_iter().filter(|t| !t.is_empty()) {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(Some(out))
}

/// The personal access token of a request: `PRIVATE-TOKEN`, `Authorization: Bearer`, or the
/// `private_token` query parameter.
fn access_token(req: &Request) -> Option<String> {
    let h = req.headers();
    if let Some(t) = h.get("private-token").and_then(|v| v.to_str().ok()) {
        return Some(t.trim().to_string());
    }
    if let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some((scheme, rest)) = v.trim().split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
    {
        return Some(rest.trim().to_string());
    }
    Query::parse(req.uri().query())
        .get("private_token")
        .map(str::to_string)
}

/// Endpoints a runner calls with its own token, not a person's.
fn runner_endpoint(method: &Method, route: &str) -> bool {
    let path = route.strip_prefix(API).unwrap_or(route);
    matches!(
        (method.as_str(), path),
        ("POST", "/jobs/request")
            | ("PUT", "/jobs/{job_id}")
            | ("PATCH", "/jobs/{job_id}/trace")
            | ("POST", "/runners/verify")
            | ("DELETE", "/runners")
            | ("DELETE", "/runners/managers")
    )
}

/// The scopes any one of which lets a token make this call.
fn scopes_for(method: &Method, route: &str) -> &'static [&'static str] {
    let path = route.strip_prefix(API).unwrap_or(route);
    let runnerish = path.starts_with("/runners") || path.ends_with("/runners");
    match (method.as_str(), path) {
        ("GET", "/user") => &["api", "read_api", "read_user"],
        ("POST", "/user/runners") => &["api", "create_runner"],
        ("GET", _) if runnerish => &["api", "read_api", "manage_runner"],
        ("GET", _) => &["api", "read_api"],
        (_, _) if runnerish => &["api", "manage_runner"],
        _ => &["api"],
    }
}

fn rate_headers(h: &mut HeaderMap, w: &Window) {
    set(h, "ratelimit-name", w.name);
    set(h, "ratelimit-limit", w.limit);
    set(h, "ratelimit-observed", w.observed);
    set(h, "ratelimit-remaining", w.remaining());
    set(h, "ratelimit-reset", w.reset);
}

/// 429 as Rack::Attack answers it: plain text, the window's headers, when to come back.
fn throttled(w: &Window, now_ms: i64) -> Response {
    let mut r = (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::CONTENT_TYPE, "text/plain")],
        "Retry later\n",
    )
        .into_response();
    let h = r.headers_mut();
    rate_headers(h, w);
    let wait = w.retry_after(now_ms);
    set(h, "retry-after", wait);
    if let Ok(t) = jiff::Timestamp::from_second(w.reset) {
        set(
            h,
            "ratelimit-resettime",
            jiff::fmt::rfc2822::DateTimePrinter::new()
                .timestamp_to_rfc9110_string(&t)
                .unwrap_or_default(),
        );
    }
    r
}

/// An injected fault for this call, if the knobs draw one.
fn fault(gl: &Gitlab, now_ms: i64) -> Option<Response> {
    let (share_429, share_5xx, seed, retry_after) = {
        let mut c = gl.config();
        let f = &mut c.api_faults;
        if f.next_rate_limited > 0 {
            f.next_rate_limited -= 1;
            return Some(fault_429(f.retry_after_secs, now_ms));
        }
        if f.next_server_errors > 0 {
            f.next_server_errors -= 1;
            return Some(message(StatusCode::BAD_GATEWAY, "502 Bad Gateway"));
        }
        (f.rate_limited, f.server_errors, f.seed, f.retry_after_secs)
    };
    if share_429 <= 0.0 && share_5xx <= 0.0 {
        return None;
    }
    let (r429, r5xx) = {
        let mut g = gl.fault_rng.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 != seed {
            *g = (seed, rand::SeedableRng::seed_from_u64(seed));
        }
        let clamp = |p: f64| {
            if p.is_finite() {
                p.clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        (
            g.1.random_bool(clamp(share_429)),
            g.1.random_bool(clamp(share_5xx)),
        )
    };
    if r429 {
        return Some(fault_429(retry_after, now_ms));
    }
    r5xx.then(|| {
        message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 Internal Server Error",
        )
    })
}

fn fault_429(retry_after: u64, now_ms: i64) -> Response {
    let secs = retry_after.max(1);
    let w = Window {
        name: "throttle_authenticated_api",
        limit: 0,
        observed: 1,
        reset: now_ms.div_euclid(1000) + secs as i64,
    };
    throttled(&w, now_ms)
}

async fn gate(State(gl): Gl, mut req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let origin = format!("http://{host}");
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let method = req.method().clone();
    let now = gl.clock.now_ms();
    gl.lock().origin = Some(origin.clone());
    req.extensions_mut().insert(Base { origin });
    if let Some(r) = fault(&gl, now) {
        return r;
    }
    let (limit, anon_limit, runner_limit, tokens) = {
        let c = gl.config();
        (
            c.rate_limit_per_minute,
            c.unauthenticated_per_minute,
            c.runner_requests_per_minute,
            c.tokens.clone(),
        )
    };
    if runner_endpoint(&method, &route) {
        if route.ends_with("/jobs/request") {
            let key = runner_api::runner_token_header(req.headers());
            let w = gl
                .lock()
                .buckets
                .hit("runner_jobs_request_api", &key, runner_limit, now);
            if w.exceeded() {
                return throttled(&w, now);
            }
        }
        return next.run(req).await;
    }
    let token = access_token(&req);
    let known = token
        .as_deref()
        .and_then(|t| tokens.iter().position(|a| a.token == t));
    let window = match known {
        Some(i) => gl.lock().buckets.hit(
            "throttle_authenticated_api",
            &tokens[i].username,
            limit,
            now,
        ),
        None => gl
            .lock()
            .buckets
            .hit("throttle_unauthenticated_api", "client", anon_limit, now),
    };
    if window.exceeded() {
        return throttled(&window, now);
    }
    let mut response = match known {
        None => message(StatusCode::UNAUTHORIZED, "401 Unauthorized"),
        Some(i) => {
            let t = &tokens[i];
            let allowed = scopes_for(&method, &route);
            if t.scopes.iter().any(|s| allowed.contains(&s.as_str())) {
                req.extensions_mut().insert(Caller {
                    id: 1 + i as u64,
                    username: t.username.clone(),
                    admin: t.admin,
                });
                next.run(req).await
            } else {
                json_response(
                    StatusCode::FORBIDDEN,
                    &json!({
                        "error": "insufficient_scope",
                        "error_description": "The request requires higher privileges than provided by the access token.",
                        "scope": allowed.join(" "),
                    }),
                )
            }
        }
    };
    rate_headers(response.headers_mut(), &window);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_the_route() {
        let get = Method::GET;
        assert!(scopes_for(&get, "/api/v4/projects/{id}/jobs").contains(&"read_api"));
        assert!(!scopes_for(&get, "/api/v4/projects/{id}/jobs").contains(&"manage_runner"));
        assert!(scopes_for(&get, "/api/v4/projects/{id}/runners").contains(&"manage_runner"));
        assert_eq!(
            scopes_for(&Method::POST, "/api/v4/user/runners"),
            ["api", "create_runner"]
        );
        assert_eq!(
            scopes_for(&Method::DELETE, "/api/v4/runners/{runner_id}"),
            ["api", "manage_runner"]
        );
        assert_eq!(
            scopes_for(&Method::POST, "/api/v4/projects/{id}/hooks"),
            ["api"]
        );
        assert!(runner_endpoint(&Method::POST, "/api/v4/jobs/request"));
        assert!(!runner_endpoint(
            &Method::DELETE,
            "/api/v4/runners/{runner_id}"
        ));
    }
}
