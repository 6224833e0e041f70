//! The API under `/api/v1/` (bearer token) and `/readyz`: what the last pass saw, as JSON, and
//! deletes that take turns with the passes. Reads serve the last view: they never call a forge or a cloud.

use super::{auth, readiness};
use crate::demand::Wake;
use crate::reconcile::{DeleteError, LastPass, Operator, Reconciler, Removed};
use crate::view::View;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get};
use mayfly_core::{Clock, Secret};
use mayfly_store::{IntentState, Store};
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
    pub(super) write_probe: readiness::WriteProbe,
    /// The dashboard's deadlines.
    pub dashboard: super::dashboard::Settings,
    /// Under an election, whether this replica leads and who does; `None` when it acts alone.
    pub(super) leadership: Option<Replica>,
}

/// This replica under an election: its name, its leadership, and the leader's view as last
/// read from the store (a follower serves it; the leader shares it, see [`SHARED_VIEW`]).
pub(super) struct Replica {
    pub(super) name: String,
    pub(super) leadership: watch::Receiver<crate::leader::Leadership>,
    shared: tokio::sync::Mutex<Option<(std::time::Instant, Option<Arc<View>>)>>,
}

/// The store cursor under which the leader shares its last view, for followers' APIs.
pub const SHARED_VIEW: &str = "leader_view";

/// A follower reads the shared view at most this often.
const SHARED_VIEW_EVERY: Duration = Duration::from_secs(1);

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
            write_probe: readiness::WriteProbe::default(),
            dashboard: super::dashboard::Settings::default(),
            leadership: None,
        }
    }

    /// Serves a replica under an election: `/readyz` and the status say who leads, and a
    /// follower is ready without passes of its own.
    pub fn under(
        mut self,
        replica: &str,
        leadership: Option<watch::Receiver<crate::leader::Leadership>>,
    ) -> Api {
        self.leadership = leadership.map(|leadership| Replica {
            name: replica.to_string(),
            leadership,
            shared: tokio::sync::Mutex::new(None),
        });
        self
    }

    /// Leadership as this replica sees it; `None` when it acts alone.
    pub(super) fn leader(&self) -> Option<crate::view::LeaderView> {
        let r = self.leadership.as_ref()?;
        Some(crate::view::LeaderView::of(&r.name, &r.leadership.borrow()))
    }

    /// The view to serve: this replica's last pass while it acts, the leader's shared view on
    /// a follower; with leadership as this replica sees it.
    pub(super) async fn view(&self) -> Option<Arc<View>> {
        let Some(r) = &self.leadership else {
            return self.views.borrow().clone();
        };
        let leading = r.leadership.borrow().leading;
        let view = if leading {
            self.views.borrow().clone()
        } else {
            self.shared_view(r).await
        };
        view.map(|v| {
            let mut v = (*v).clone();
            v.leader = self.leader();
            Arc::new(v)
        })
    }

    async fn shared_view(&self, r: &Replica) -> Option<Arc<View>> {
        let mut cached = r.shared.lock().await;
        if let Some((at, view)) = &*cached
            && at.elapsed() < SHARED_VIEW_EVERY
        {
            return view.clone();
        }
        let read = tokio::time::timeout(self.store_timeout, self.store.cursor(SHARED_VIEW)).await;
        let view = match read {
            Ok(Ok(Some(json))) => serde_json::from_str::<View>(&json).ok().map(Arc::new),
            _ => None,
        };
        *cached = Some((std::time::Instant::now(), view.clone()));
        view
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

/// One event of the trail, as `GET /api/v1/events` serves it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    pub kind: String,
    pub subject: String,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

impl From<mayfly_store::Event> for EventView {
    fn from(e: mayfly_store::Event) -> Self {
        EventView {
            id: e.id,
            at: readiness::rfc3339(e.at),
            kind: e.kind,
            subject: e.subject,
            message: e.message,
            details: e.details,
        }
    }
}

/// A page of events: pass `next_after` as `after` for the next one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Events {
    pub events: Vec<EventView>,
    pub next_after: Option<i64>,
}

/// The query of `GET /api/v1/events`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest: Option<bool>,
}

/// Most events one request returns.
pub const EVENTS_LIMIT: u32 = 1_000;

impl EventsQuery {
    /// The store's query, or what is wrong with a parameter.
    pub fn to_store(&self) -> Result<mayfly_store::EventQuery, String> {
        let time = |name: &str, v: &Option<String>| {
            v.as_deref()
                .map(|t| {
                    t.parse::<jiff::Timestamp>()
                        .map(|ts| mayfly_core::Time(ts.as_millisecond()))
                        .map_err(|_| {
                            format!("{name}: expected an RFC 3339 time like 2026-08-01T12:00:00Z")
                        })
                })
                .transpose()
        };
        let limit = self.limit.unwrap_or(100);
        if !(1..=EVENTS_LIMIT).contains(&limit) {
            return Err(format!("limit: expected 1 to {EVENTS_LIMIT}, got {limit}"));
        }
        Ok(mayfly_store::EventQuery {
            after_id: self.after,
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            subject: self.subject.clone(),
            kind: self.kind.clone(),
            limit,
            newest: self.newest.unwrap_or(false),
        })
    }
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
        ("/api/v1/events", get(events)),
        ("/api/v1/openapi.json", get(openapi)),
    ]
}

/// `/readyz` (no token), the routes of [`routes`] (token), with JSON answers for unknown
/// paths and methods under `/api/v1/`, and the dashboard at `/` (sign-in with the token).
/// Call inside a tokio runtime: the dashboard's broadcast is a task.
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
    let dashboard = super::dashboard::router(api.clone());
    Router::new()
        .route("/readyz", get(readiness::readyz))
        .merge(protected)
        .with_state(api)
        .merge(dashboard)
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
async fn serve<T: Serialize>(api: &Api, part: impl FnOnce(&View) -> &T) -> Response {
    match api.view().await {
        Some(view) => axum::Json(part(&view)).into_response(),
        None => no_view(),
    }
}

async fn status(State(api): State<Arc<Api>>) -> Response {
    serve(&api, |v| v).await
}

async fn instances(State(api): State<Arc<Api>>) -> Response {
    serve(&api, |v| &v.instances).await
}

async fn jobs(State(api): State<Arc<Api>>) -> Response {
    serve(&api, |v| &v.jobs).await
}

async fn runners(State(api): State<Arc<Api>>) -> Response {
    serve(&api, |v| &v.runners).await
}

async fn pools(State(api): State<Arc<Api>>) -> Response {
    serve(&api, |v| &v.pools).await
}

/// `GET /api/v1/events`: from the store, not the view; bounded by the store timeout.
async fn events(
    State(api): State<Arc<Api>>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(q)) => q.to_store(),
        Err(e) => Err(e.body_text()),
    };
    let query = match query {
        Ok(q) => q,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    match tokio::time::timeout(api.store_timeout, api.store.query_events(&query)).await {
        Ok(Ok(events)) => {
            let full = events.len() == query.limit as usize;
            let next_after = events
                .last()
                .filter(|_| full && !query.newest)
                .map(|e| e.id);
            axum::Json(Events {
                events: events.into_iter().map(EventView::from).collect(),
                next_after,
            })
            .into_response()
        }
        Ok(Err(e)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read the events: {e}"),
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store gave no events within {:?}", api.store_timeout),
        ),
    }
}

async fn instance(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Response {
    let Some(view) = api.view().await else {
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
    match delete(&api, name).await {
        Ok(deletion) => axum::Json(deletion).into_response(),
        Err((status, why)) => error(status, why),
    }
}

/// The operator's delete, as the API and the dashboard ask for it: a name nobody knows is
/// refused without a call, a busy machine is kept (`DeleteError::Busy`), and a pass is woken
/// after a delete.
pub(super) async fn delete(api: &Api, name: String) -> Result<Deletion, (StatusCode, String)> {
    if let Some(unknown) = unknown_instance(api, &name).await {
        return Err(unknown);
    }
    // Its own task: a client that hangs up must not cut a delete off between deregistering
    // the runner and deleting the machine.
    let operator = api.operator.clone();
    let target = name.clone();
    let done = tokio::spawn(async move { operator.delete(&target).await }).await;
    let done = match done {
        Ok(done) => done,
        Err(e) => {
            return Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the delete of {name} stopped: {e}"),
            ));
        }
    };
    match done {
        Ok(result) => {
            info!(instance = %name, ?result, "deleted by operator");
            api.wake.now.notify_one();
            Ok(Deletion { name, result })
        }
        Err(e) => {
            let status = match &e {
                DeleteError::NotFound { .. } => StatusCode::NOT_FOUND,
                DeleteError::Busy { .. } => StatusCode::CONFLICT,
                DeleteError::RunnersUnknown(_)
                | DeleteError::Waited(_)
                | DeleteError::Read(_)
                | DeleteError::NotLeader(_) => StatusCode::SERVICE_UNAVAILABLE,
                DeleteError::Failed { .. } => StatusCode::BAD_GATEWAY,
            };
            info!(instance = %name, error = %e, "operator delete refused or failed");
            Err((status, e.to_string()))
        }
    }
}

/// 404 for a name neither the last pass saw nor the store records a live intent for: a typo
/// costs no call to GitHub or a cloud. A machine made since the last pass has its intent, so
/// it still goes to the operator, which reads the world afresh.
async fn unknown_instance(api: &Api, name: &str) -> Option<(StatusCode, String)> {
    let view = api.view().await?;
    if view.instance(name).is_some() {
        return None;
    }
    let live = [IntentState::Pending, IntentState::Created];
    let intents = tokio::time::timeout(api.store_timeout, api.store.intents_in_state(&live));
    match intents.await {
        Ok(Ok(intents)) if !intents.iter().any(|i| i.name == name) => Some((
            StatusCode::NOT_FOUND,
            format!("no instance named {name} (as of the last pass, and none being created)"),
        )),
        // Recorded, or the store cannot say: the operator reads the world.
        _ => None,
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
