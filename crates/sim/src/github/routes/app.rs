//! The budget endpoint (free, as on GitHub) and GitHub App installation tokens, issued for an
//! RS256 JWT signed with the app's private key.

use super::{error, json_response};
use crate::github::Github;
use crate::github::auth::{self, verify_app_jwt};
use crate::github::jit;
use crate::github::render::iso8601;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const INSTALLATION_TOKEN_TTL: Duration = Duration::from_secs(3600);

pub async fn rate_limit(State(gh): State<Arc<Github>>, headers: HeaderMap) -> Response {
    let now = gh.clock.now_ms();
    let per_hour = gh.config().rate_limit_per_hour;
    let (limit, used, reset) = match auth::credential(&headers) {
        Some(who) if gh.accepts(who, now) => {
            let p = gh.lock().budgets.primary(who, per_hour, now);
            (p.limit, p.used, p.reset)
        }
        // Unauthenticated callers get GitHub's anonymous budget, untouched here.
        _ => (60, 0, now.div_euclid(1000) + 3600),
    };
    let core = json!({ "limit": limit, "remaining": limit.saturating_sub(used), "used": used, "reset": reset, "resource": "core" });
    let minute = now.div_euclid(1000) + 60;
    let search =
        json!({ "limit": 30, "remaining": 30, "used": 0, "reset": minute, "resource": "search" });
    let graphql = json!({ "limit": 5000, "remaining": 5000, "used": 0, "reset": reset, "resource": "graphql" });
    let body = json!({ "resources": { "core": core, "search": search, "graphql": graphql }, "rate": core });
    json_response(StatusCode::OK, &body)
}

pub async fn access_token(
    State(gh): State<Arc<Github>>,
    Path(installation_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(app) = gh.config().app.clone() else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let Some(jwt) = auth::credential(&headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        );
    };
    // The client signs with the wall clock, so the JWT is checked against it too.
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if let Err(e) = verify_app_jwt(&app, jwt, wall) {
        return error(StatusCode::UNAUTHORIZED, &e.to_string());
    }
    if installation_id.parse::<u64>().ok() != Some(app.installation_id) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let expires_ms = gh.clock.now_ms() + INSTALLATION_TOKEN_TTL.as_millis() as i64;
    let token = jit::installation_token();
    gh.lock()
        .installation_tokens
        .insert(token.clone(), expires_ms);
    let body = json!({
        "token": token,
        "expires_at": iso8601(expires_ms),
        "permissions": { "actions": "read", "administration": "write", "organization_self_hosted_runners": "write" },
        "repository_selection": "all",
    });
    json_response(StatusCode::CREATED, &body)
}
