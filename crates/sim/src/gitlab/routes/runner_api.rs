//! The runner's own API, authenticated by its glrt- token or a job token: verify, delete itself
//! (by token, or one manager), ask for a job (201/204 with `X-GitLab-Last-Update`, two-phase
//! commit when the runner offers it), report a job's state and append to its trace.

use super::{Base, Gl, Params, invalid, json_response, message, set, text};
use crate::gitlab::render;
use crate::gitlab::runners::{Request, Update, Updated};
use crate::gitlab::state::Status;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The throttle key of `POST /jobs/request`: the `RUNNER-TOKEN` header gitlab-runner sends
/// (the body, which has the token too, is not read before the handler).
pub fn runner_token_header(headers: &HeaderMap) -> String {
    headers
        .get("runner-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous")
        .to_string()
}

fn forbidden() -> Response {
    message(StatusCode::FORBIDDEN, "403 Forbidden")
}

/// `POST /runners/verify {token, system_id}`: 200 with the runner's id; a system id registers
/// (or refreshes) that host's manager. Without one the runner is checked only, as GitLab does
/// for callers that send none.
pub async fn verify(State(gl): Gl, Params(p): Params) -> Response {
    let Some(token) = text(&p, "token") else {
        return invalid("token is missing");
    };
    let system_id = text(&p, "system_id");
    let now = gl.clock.now_ms();
    let mut st = gl.lock();
    let Some(id) = st.runner_by_token(&token, now) else {
        return forbidden();
    };
    st.contact(id, system_id.as_deref(), now);
    let expires = st.runners.get(&id).and_then(|r| r.token_expires_ms);
    json_response(
        StatusCode::OK,
        &json!({ "id": id, "token": token, "token_expires_at": expires.map(render::iso) }),
    )
}

/// `DELETE /runners {token}`: the whole runner goes.
pub async fn delete_by_token(State(gl): Gl, Params(p): Params) -> Response {
    let Some(token) = text(&p, "token") else {
        return invalid("token is missing");
    };
    let now = gl.clock.now_ms();
    let mut st = gl.lock();
    match st.runner_by_token(&token, now) {
        Some(id) => {
            st.delete_runner(id);
            StatusCode::NO_CONTENT.into_response()
        }
        None => forbidden(),
    }
}

/// `DELETE /runners/managers {token, system_id}` (`gitlab-runner unregister`): one host goes,
/// the runner stays.
pub async fn delete_manager(State(gl): Gl, Params(p): Params) -> Response {
    let (Some(token), Some(system_id)) = (text(&p, "token"), text(&p, "system_id")) else {
        return invalid("token, system_id are missing");
    };
    let now = gl.clock.now_ms();
    let mut st = gl.lock();
    let Some(id) = st.runner_by_token(&token, now) else {
        return forbidden();
    };
    match st
        .runners
        .get_mut(&id)
        .and_then(|r| r.managers.remove(&system_id))
    {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => message(StatusCode::NOT_FOUND, "404 Not Found"),
    }
}

/// `POST /jobs/request`: 201 with the job, or 204 with `X-GitLab-Last-Update` to send back.
pub async fn request(
    State(gl): Gl,
    Extension(base): Extension<Base>,
    headers: HeaderMap,
    Params(p): Params,
) -> Response {
    let token = text(&p, "token").or_else(|| {
        headers
            .get("runner-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    let Some(token) = token else {
        return invalid("token is missing");
    };
    let system_id = text(&p, "system_id");
    let last_update = text(&p, "last_update");
    let two_phase = p
        .get("info")
        .and_then(|i| i.get("features"))
        .and_then(|f| f.get("two_phase_job_commit"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let now = gl.clock.now_ms();
    let mut st = gl.lock();
    let outcome = st.request_job(
        &token,
        system_id.as_deref(),
        last_update.as_deref(),
        two_phase,
        now,
    );
    let response = match outcome {
        Request::Forbidden => forbidden(),
        Request::Nothing(version) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            set(r.headers_mut(), "x-gitlab-last-update", version);
            r
        }
        Request::Job(id) => match st.jobs.get(&id) {
            Some(j) => json_response(
                StatusCode::CREATED,
                &render::job_for_runner(&base.origin, &st, j),
            ),
            None => message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error",
            ),
        },
    };
    drop(st);
    // Legacy runners start at once: their `running` event goes out now.
    gl.settle();
    response
}

fn job_token(headers: &HeaderMap, p: &serde_json::Map<String, Value>) -> Option<String> {
    text(p, "token").or_else(|| {
        headers
            .get("job-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    })
}

fn with_status(mut r: Response, status: Status) -> Response {
    set(r.headers_mut(), "job-status", status.as_str());
    r
}

/// `PUT /jobs/:id {token, state, failure_reason}`: the runner confirms, keeps alive or ends
/// its job; `Job-Status` tells it the job's state (`canceling` asks it to stop).
pub async fn update(
    State(gl): Gl,
    Path(id): Path<String>,
    headers: HeaderMap,
    Params(p): Params,
) -> Response {
    let Ok(job) = id.parse::<u64>() else {
        return message(StatusCode::NOT_FOUND, "404 Not Found");
    };
    let Some(token) = job_token(&headers, &p) else {
        return forbidden();
    };
    let update = match text(&p, "state").as_deref() {
        None => Update::Running,
        Some("pending") => Update::Pending,
        Some("running") => Update::Running,
        Some("success") => Update::Success,
        Some("failed") => Update::Failed {
            reason: text(&p, "failure_reason"),
        },
        Some(_) => return invalid("state does not have a valid value"),
    };
    let now = gl.clock.now_ms();
    let out = {
        let mut st = gl.lock();
        st.update_job(job, &token, update, now)
    };
    gl.settle();
    match out {
        Updated::Ok(s) => with_status(json_response(StatusCode::OK, &json!(null)), s),
        Updated::NotFound => message(StatusCode::NOT_FOUND, "404 Not Found"),
        Updated::Forbidden(s) => with_status(
            message(
                StatusCode::FORBIDDEN,
                "403 Forbidden - Job is not processing on runner",
            ),
            s,
        ),
        Updated::Conflict(s) => with_status(message(StatusCode::CONFLICT, "409 Conflict"), s),
    }
}

/// `PATCH /jobs/:id/trace` with `Content-Range: start-end`: appends where the trace ends, or
/// answers 416 with the size to resume from.
pub async fn trace(
    State(gl): Gl,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(job) = id.parse::<u64>() else {
        return message(StatusCode::NOT_FOUND, "404 Not Found");
    };
    let Some(token) = headers
        .get("job-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return forbidden();
    };
    let range = headers
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once('-'))
        .and_then(|(a, b)| {
            Some((
                a.trim().parse::<usize>().ok()?,
                b.trim().parse::<usize>().ok()?,
            ))
        });
    let Some((start, _end)) = range else {
        return message(
            StatusCode::BAD_REQUEST,
            "400 Bad request - Content-Range missing",
        );
    };
    let mut st = gl.lock();
    let Some(j) = st.jobs.get_mut(&job) else {
        return message(StatusCode::NOT_FOUND, "404 Not Found");
    };
    if j.token != token {
        return forbidden();
    }
    if !matches!(j.status, Status::Running | Status::Canceling) {
        return with_status(
            message(StatusCode::FORBIDDEN, "403 Forbidden - Job is not running"),
            j.status,
        );
    }
    let size = j.trace.len();
    if start != size {
        let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
        set(r.headers_mut(), "range", format!("0-{size}"));
        return with_status(r, j.status);
    }
    j.trace.extend_from_slice(&body);
    let mut r = StatusCode::ACCEPTED.into_response();
    set(r.headers_mut(), "range", format!("0-{}", j.trace.len()));
    set(r.headers_mut(), "x-gitlab-trace-update-interval", 60);
    with_status(r, j.status)
}
