//! The router: the /v1 routes, the guard every call passes (rate limit, then token, with the
//! RateLimit headers on every answer), and the read-only catalogue and action endpoints.

use super::catalog::{IMAGES, LOCATIONS};
use super::errors::ApiError;
use super::labels::Selector;
use super::query::Params;
use super::{Hetzner, offer, render, servers, ssh_keys};
use crate::stats::{Counter, count_calls};
use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Value, json};
use std::sync::Arc;

pub type Hz = State<Arc<Hetzner>>;
pub type RawQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;
pub type Answer = Result<Json<Value>, ApiError>;

pub fn router(h: Arc<Hetzner>) -> Router {
    let counter = Counter {
        stats: h.stats.clone(),
        service: "hetzner",
    };
    Router::new()
        .route("/v1/servers", get(servers::list).post(servers::create))
        .route(
            "/v1/servers/{id}",
            get(servers::get)
                .put(servers::update)
                .delete(servers::delete),
        )
        .route("/v1/servers/{id}/actions/poweroff", post(servers::poweroff))
        .route("/v1/servers/{id}/actions/poweron", post(servers::poweron))
        .route("/v1/servers/{id}/actions/shutdown", post(servers::shutdown))
        .route("/v1/servers/{id}/actions/reboot", post(servers::reboot))
        .route("/v1/servers/{id}/actions/reset", post(servers::reset))
        .route("/v1/servers/{id}/actions/rebuild", post(servers::rebuild))
        .route("/v1/actions", get(list_actions))
        .route("/v1/actions/{id}", get(get_action))
        .route("/v1/server_types", get(list_server_types))
        .route("/v1/server_types/{id}", get(get_server_type))
        .route("/v1/images", get(list_images))
        .route("/v1/images/{id}", get(get_image))
        .route("/v1/locations", get(list_locations))
        .route("/v1/locations/{id}", get(get_location))
        .route("/v1/ssh_keys", get(ssh_keys::list).post(ssh_keys::create))
        .route(
            "/v1/ssh_keys/{id}",
            get(ssh_keys::get).delete(ssh_keys::delete),
        )
        .route("/v1/{*rest}", any(unknown))
        .route_layer(from_fn_with_state(h.clone(), guard))
        .route_layer(from_fn_with_state(counter, count_calls))
        .with_state(h)
}

/// Rate limit first (the real API limits unauthenticated calls too), then the token.
async fn guard(State(h): Hz, req: Request, next: Next) -> Response {
    let latency = h.lock().config.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let now = h.clock.now_ms();
    let (verdict, authorized) = {
        let mut st = h.lock();
        let limit = st.config.rate_limit_per_hour;
        let verdict = st.bucket.take(limit, now);
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        (verdict, bearer == Some(st.config.token.as_str()))
    };
    let mut response = if !verdict.allowed {
        ApiError::rate_limited().into_response()
    } else if !authorized {
        ApiError::unauthorized().into_response()
    } else {
        next.run(req).await
    };
    let headers = response.headers_mut();
    headers.insert("ratelimit-limit", HeaderValue::from(verdict.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(verdict.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(verdict.reset_secs));
    response
}

async fn unknown() -> ApiError {
    ApiError::not_found("resource")
}

pub fn parse_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::invalid_field("id", "must be a positive integer"))
}

pub fn selector(p: &Params) -> Result<Option<Selector>, ApiError> {
    p.get("label_selector")
        .map(Selector::parse)
        .transpose()
        .map_err(|e| ApiError::invalid_field("label_selector", &e))
}

async fn list_actions(State(h): Hz, q: RawQuery) -> Answer {
    let p = Params::from(q)?;
    let now = h.clock.now_ms();
    let ids = p
        .all("id")
        .into_iter()
        .map(parse_id)
        .collect::<Result<Vec<_>, _>>()?;
    let st = h.lock();
    let found: Vec<Value> = ids
        .iter()
        .filter_map(|id| st.actions.get(id))
        .map(|a| render::action(a, now))
        .collect();
    let (actions, meta) = p.page(found)?;
    Ok(Json(json!({ "actions": actions, "meta": meta })))
}

async fn get_action(State(h): Hz, Path(id): Path<String>) -> Answer {
    let id = parse_id(&id)?;
    let now = h.clock.now_ms();
    let st = h.lock();
    let a = st
        .actions
        .get(&id)
        .ok_or_else(|| ApiError::not_found("action"))?;
    Ok(Json(json!({ "action": render::action(a, now) })))
}

/// Types missing from the catalogue (a fault) are not listed, as a type Hetzner dropped is not.
async fn list_server_types(State(h): Hz, q: RawQuery) -> Answer {
    let p = Params::from(q)?;
    let config = h.lock().config.clone();
    let now = h.clock.now_ms();
    let all: Vec<Value> = offer::listed(&config)
        .filter(|t| p.get("name").is_none_or(|n| n == t.name))
        .map(|t| offer::server_type_json(t, &config, now))
        .collect();
    let (server_types, meta) = p.page(all)?;
    Ok(Json(json!({ "server_types": server_types, "meta": meta })))
}

async fn get_server_type(State(h): Hz, Path(id): Path<String>) -> Answer {
    let id = parse_id(&id)?;
    let config = h.lock().config.clone();
    let t = offer::listed(&config)
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::not_found("server type"))?;
    let now = h.clock.now_ms();
    Ok(Json(
        json!({ "server_type": offer::server_type_json(t, &config, now) }),
    ))
}

async fn list_images(q: RawQuery) -> Answer {
    let p = Params::from(q)?;
    let (types, arches) = (p.all("type"), p.all("architecture"));
    for t in &types {
        if !["system", "snapshot", "backup", "app"].contains(t) {
            return Err(ApiError::invalid_field(
                "type",
                "must be one of system, snapshot, backup, app",
            ));
        }
    }
    // System images carry no labels: a selector that requires any label matches none.
    let selector = selector(&p)?;
    let none = std::collections::BTreeMap::new();
    let all: Vec<Value> = IMAGES
        .iter()
        .filter(|i| p.get("name").is_none_or(|n| n == i.name))
        .filter(|_| types.is_empty() || types.contains(&"system"))
        .filter(|i| arches.is_empty() || arches.contains(&i.architecture))
        .filter(|_| selector.as_ref().is_none_or(|s| s.matches(&none)))
        .map(|i| i.json())
        .collect();
    let (images, meta) = p.page(all)?;
    Ok(Json(json!({ "images": images, "meta": meta })))
}

async fn get_image(Path(id): Path<String>) -> Answer {
    let id = parse_id(&id)?;
    let i = IMAGES
        .iter()
        .find(|i| i.id == id)
        .ok_or_else(|| ApiError::not_found("image"))?;
    Ok(Json(json!({ "image": i.json() })))
}

async fn list_locations(q: RawQuery) -> Answer {
    let p = Params::from(q)?;
    let all: Vec<Value> = LOCATIONS
        .iter()
        .filter(|l| p.get("name").is_none_or(|n| n == l.name))
        .map(|l| l.json())
        .collect();
    let (locations, meta) = p.page(all)?;
    Ok(Json(json!({ "locations": locations, "meta": meta })))
}

async fn get_location(Path(id): Path<String>) -> Answer {
    let id = parse_id(&id)?;
    let l = LOCATIONS
        .iter()
        .find(|l| l.id == id)
        .ok_or_else(|| ApiError::not_found("location"))?;
    Ok(Json(json!({ "location": l.json() })))
}
