//! The dashboard at `/`: sign-in with the API token, then the last pass's pools, waiting jobs,
//! machines and actions, plots over the last hours, live updates by server-sent events, and the
//! operator's delete with a confirmation. Served where the API is (`listen`, or `api.listen`).
//!
//! Everything is in the binary (HTML rendered here, one CSS and one JS file by `include_str!`):
//! no CDN, no build step. JavaScript only swaps in each pass's sections; without it the page
//! and the delete work with reloads and forms.

mod history;
mod hub;
mod page;
mod plot;
mod session;

use super::api::Api;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hub::{Frame, Hub};
use serde::Deserialize;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio_stream::Stream;
use tokio_stream::wrappers::WatchStream;

const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");

/// What the browser waits before it reconnects a stream.
const RETRY: Duration = Duration::from_secs(1);

/// The dashboard's deadlines (`[dashboard]` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How long a sign-in lasts.
    pub session: Duration,
    /// How long one event stream stays open: the browser opens a new one at once (after
    /// [`RETRY`]), which checks the sign-in again and bounds every connection.
    pub stream: Duration,
    /// A comment on an idle stream this often, so proxies and the browser see it alive.
    pub keep_alive: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            session: session::LIFETIME,
            stream: Duration::from_secs(600),
            keep_alive: Duration::from_secs(15),
        }
    }
}
/// Forms are a token or a machine name.
const FORM_LIMIT: usize = 4 * 1024;

struct Dashboard {
    api: Arc<Api>,
    hub: Hub,
}

type Shared = State<Arc<Dashboard>>;

/// The dashboard's routes over `api`; starts its broadcast task (call inside a runtime).
pub fn router(api: Arc<Api>) -> Router {
    let hub = Hub::start(api.views.clone(), api.store.clone(), api.store_timeout);
    let state = Arc::new(Dashboard { api, hub });
    Router::new()
        .route("/", get(index))
        .route("/signin", post(signin))
        .route("/signout", post(signout))
        .route("/dashboard/dashboard.css", get(css))
        .route("/dashboard/dashboard.js", get(js))
        .route("/dashboard/stream", get(stream))
        .route("/dashboard/delete", get(confirm_delete).post(delete))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .layer(middleware::from_fn(guard))
        .with_state(state)
}

/// Headers on every answer (a strict content policy: scripts and styles from this origin only,
/// no frames), and cross-site form posts refused: the cookie is SameSite=Strict already, this
/// also covers browsers that do not honour it.
async fn guard(req: axum::extract::Request, next: Next) -> Response {
    if req.method() == axum::http::Method::POST && cross_site(req.headers()) {
        return (StatusCode::FORBIDDEN, "cross-site form posts are refused").into_response();
    }
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A post from another site: `Sec-Fetch-Site` says so (every current browser sends it), or,
/// without it, `Origin` names another host. An `Origin` of `null` (sent under some referrer
/// policies and by privacy settings) decides nothing.
fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text("sec-fetch-site") {
        return site == "cross-site" || site == "same-site";
    }
    match (text("origin"), text("host")) {
        (Some("null"), _) | (None, _) => false,
        (Some(origin), Some(host)) => {
            let bare = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .unwrap_or(origin);
            !bare.eq_ignore_ascii_case(host)
        }
        (Some(_), None) => true,
    }
}

fn signed_in(d: &Dashboard, headers: &HeaderMap) -> bool {
    session::signed_in(
        headers,
        &d.api.token,
        session::unix_now(),
        d.api.dashboard.session,
    )
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The sign-in page, and nothing else, for anyone without a session.
fn sign_in_first(refused: bool) -> Response {
    let status = if refused {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    html(status, page::signin(refused))
}

async fn index(State(d): Shared, headers: HeaderMap) -> Response {
    if !signed_in(&d, &headers) {
        return sign_in_first(false);
    }
    let frame = d.hub.latest();
    let controller = d
        .api
        .view()
        .await
        .map(|v| v.controller.clone())
        .unwrap_or_default();
    let waiting = page::waiting_sections();
    let sections = frame.as_ref().map_or(&waiting, |f| &f.sections);
    html(StatusCode::OK, page::page(&controller, sections))
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

async fn signin(State(d): Shared, form: Result<Form<SignIn>, FormRejection>) -> Response {
    let Ok(Form(form)) = form else {
        return sign_in_first(true);
    };
    if !session::is_token(&form.token, &d.api.token) {
        tracing::info!("dashboard sign-in with a wrong token refused");
        return sign_in_first(true);
    }
    let Some(cookie) = session::issue(&d.api.token, session::unix_now(), d.api.dashboard.session)
    else {
        return sign_in_first(true);
    };
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, HeaderValue::from_static("/")),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response()
}

async fn signout() -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, HeaderValue::from_static("/")),
            (header::SET_COOKIE, session::clear()),
        ],
    )
        .into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

/// The assets hold no secret and change only with the binary.
fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// `GET /dashboard/stream`: the current sections at once, then each pass's, as `pass` events.
async fn stream(State(d): Shared, headers: HeaderMap) -> Response {
    if !signed_in(&d, &headers) {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    }
    let frames = Frames {
        frames: WatchStream::new(d.hub.subscribe()),
        until: Box::pin(tokio::time::sleep(d.api.dashboard.stream)),
        first: true,
    };
    let mut response = Sse::new(frames)
        .keep_alive(KeepAlive::new().interval(d.api.dashboard.keep_alive))
        .into_response();
    response
        .extensions_mut()
        .insert(super::serve::EndsAtShutdown);
    response
}

/// The frames of one stream, until its lifetime is up or the broadcast ends.
struct Frames {
    frames: WatchStream<Option<Arc<Frame>>>,
    until: Pin<Box<tokio::time::Sleep>>,
    first: bool,
}

impl Stream for Frames {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.until.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut self.frames).poll_next(cx) {
                Poll::Ready(Some(Some(frame))) => {
                    let mut event = Event::default().event("pass").data(&frame.json);
                    if std::mem::take(&mut self.first) {
                        event = event.retry(RETRY);
                    }
                    return Poll::Ready(Some(Ok(event)));
                }
                Poll::Ready(Some(None)) => continue,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[derive(Deserialize)]
struct Target {
    name: String,
}

/// `GET /dashboard/delete?name=`: what would be deleted, and a button to do it.
async fn confirm_delete(
    State(d): Shared,
    headers: HeaderMap,
    query: Result<Query<Target>, QueryRejection>,
) -> Response {
    if !signed_in(&d, &headers) {
        return sign_in_first(false);
    }
    let Ok(Query(Target { name })) = query else {
        return html(
            StatusCode::BAD_REQUEST,
            page::message("Which machine?", "<p>Name a machine: ?name=NAME.</p>"),
        );
    };
    match d.api.view().await.as_ref().and_then(|v| v.instance(&name)) {
        Some(instance) => html(StatusCode::OK, page::confirm_delete(instance)),
        None => html(
            StatusCode::NOT_FOUND,
            page::message(
                "No such machine",
                &format!(
                    "<p>The last pass saw no machine named {}.</p>",
                    page::esc(&name)
                ),
            ),
        ),
    }
}

/// `POST /dashboard/delete`: the operator's delete, under the API's rules.
async fn delete(
    State(d): Shared,
    headers: HeaderMap,
    form: Result<Form<Target>, FormRejection>,
) -> Response {
    if !signed_in(&d, &headers) {
        return sign_in_first(false);
    }
    let Ok(Form(Target { name })) = form else {
        return html(
            StatusCode::BAD_REQUEST,
            page::message("Which machine?", "<p>The form named no machine.</p>"),
        );
    };
    match super::api::delete(&d.api, name.clone()).await {
        Ok(done) => {
            let what = match done.result {
                crate::reconcile::Removed::Deleted => {
                    "its runner was deregistered and the machine deleted"
                }
                crate::reconcile::Removed::IntentDropped => {
                    "no machine stood behind its recorded create, which was forgotten"
                }
            };
            html(
                StatusCode::OK,
                page::message(
                    &format!("Deleted {name}"),
                    &format!(
                        "<p id=\"result\" data-ok=\"1\">{}: {what}.</p>",
                        page::esc(&name)
                    ),
                ),
            )
        }
        Err((status, why)) => html(
            status,
            page::message(
                &format!("{name} was not deleted"),
                &format!(
                    "<p id=\"result\" data-ok=\"0\" class=\"bad\">{}</p>",
                    page::esc(&why)
                ),
            ),
        ),
    }
}
