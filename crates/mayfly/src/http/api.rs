//! The API under `/api/v1/` (bearer token) and `/readyz`: what the last pass saw, as JSON, and
//! deletes that take turns with the passes. Reads serve the last view: they never call a forge or a cloud.

use super::{auth, readiness};
use crate::demand::Wake;
use crate::reconcile::{DeleteError, LastPass, Operator, Reconciler, Removed};
use crate::view::View;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get};
use mayfly_core::{Clock, Secret};
use mayfly_store::Store;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::info;

/// The OpenAPI 3.1 description of every endpoint, served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What the API serves from. No `Debug`: it holds the token.
pub struct Api {
    pub(super) token: Secret,
    pub(super) views: watch::Receiver<Option<Arc<View>>>,
    pub(super) last_pass: watch::Receiver<Option<LastPass>>,
    operator: Operator,
    pub(super) store: Store,
    wake: Arc<Wake>,
    pub(super) clock: Arc<dyn Clock>,
    /// `/readyz` answers 503 once no pass has read the world for this long.
    pub ready_within: Duration,
    /// Bounds the store check of `/readyz`.
    pub store_timeout: Duration,
}

impl Api {
    /// The API over `reconciler`'s views and deletes; `wake` starts a pass after a delete, so
    /// capacity a queued job needs is made again at once.
    pub fn new(
        reconciler: &Reconciler,
        store: Store,
        wake: Arc<Wake>,
        token: Secret,
        ready_within: Duration,
    ) -> Api {
        Api {
            token,
            views: reconciler.views(),
            last_pass: reconciler.last_pass(),
            operator: reconciler.operator(),
            store,
            wake,
            clock: reconciler.clock(),
            ready_within,
            store_timeout: Duration::from_secs(2),
        }
    }

    fn view(&self) -> Option<Arc<View>> {
        self.views.borrow().clone()
    }
}

/// The body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// The answer to a delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    pub name: String,
    pub result: Removed,
}

/// Every route under `/api/v1/` with its handlers: the router is built from this table, and a
/// test holds it to the OpenAPI description.
pub fn routes() -> Vec<(&'static str, MethodRouter<Arc<Api>>)> {
    vec![
        ("/api/v1/status", get(status)),
        ("/api/v1/instances", get(instances)),
        (
            "/api/v1/instances/{name}",
            get(instance).delete(delete_instance),
        ),
        ("/api/v1/jobs", get(jobs)),
        ("/api/v1/runners", get(runners)),
        ("/api/v1/pools", get(pools)),
        ("/api/v1/openapi.json", get(openapi)),
    ]
}

/// `/readyz` (no token) and the routes of [`routes`] (token), with JSON answers for unknown
/// paths and methods under `/api/v1/`.
pub fn router(api: Arc<Api>) -> Router {
    let protected = routes()
        .into_iter()
        .fold(Router::new(), |r, (path, route)| r.route(path, route))
        .route("/api/v1/{*rest}", any(unknown))
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(
            api.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/readyz", get(readiness::readyz))
        .merge(protected)
        .with_state(api)
}

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = ApiError {
        error: message.into(),
    };
    (status, axum::Json(body)).into_response()
}

/// The answer while no pass has read the world (the first seconds after a start).
fn no_view() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "no reconcile pass has read the world yet; try again in a few seconds",
    )
}

/// The last view, or a part of it.
fn serve<T: Serialize>(api: &Api, part: impl FnOnce(&View) -> &T) -> Response {
    match api.view() {
        Some(view) => axum::Json(part(&view)).into_response(),
        None => no_view(),
    }
}

async fn status(State(api): State<Arc<Api>>) -> Response {
    serve(&api, |v| v)
}

async fn instances(State(api): State<Arc<Api>>) -> Response {
    serve(&api, |v| &v.instances)
}

async fn jobs(State(api): State<Arc<Api>>) -> Response {
    serve(&api, |v| &v.jobs)
}

async fn runners(State(api): State<Arc<Api>>) -> Response {
    serve(&api, |v| &v.runners)
}

async fn pools(State(api): State<Arc<Api>>) -> Response {
    serve(&api, |v| &v.pools)
}

async fn instance(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Response {
    let Some(view) = api.view() else {
        return no_view();
    };
    match view.instance(&name) {
        Some(i) => axum::Json(i).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no instance named {name} (as of the last pass)"),
        ),
    }
}

async fn delete_instance(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Response {
    // Its own task: a client that hangs up must not cut a delete off between deregistering
    // the runner and deleting the machine.
    let operator = api.operator.clone();
    let target = name.clone();
    let done = tokio::spawn(async move { operator.delete(&target).await }).await;
    let done = match done {
        Ok(done) => done,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the delete of {name} stopped: {e}"),
            );
        }
    };
    match done {
        Ok(result) => {
            info!(instance = %name, ?result, "deleted by operator");
            api.wake.now.notify_one();
            axum::Json(Deletion { name, result }).into_response()
        }
        Err(e) => {
            let status = match &e {
                DeleteError::NotFound { .. } => StatusCode::NOT_FOUND,
                DeleteError::Busy { .. } => StatusCode::CONFLICT,
                DeleteError::RunnersUnknown(_) | DeleteError::Waited(_) | DeleteError::Read(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                DeleteError::Failed { .. } => StatusCode::BAD_GATEWAY,
            };
            info!(instance = %name, error = %e, "operator delete refused or failed");
            error(status, e.to_string())
        }
    }
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI.to_string(),
    )
        .into_response()
}

async fn unknown(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no endpoint {method} {}; /api/v1/openapi.json lists them",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} does not answer {method}; /api/v1/openapi.json lists its methods",
            uri.path()
        ),
    )
}
