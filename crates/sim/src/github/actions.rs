//! The Actions service a runner program talks to once it holds a JIT config: open a session,
//! long-poll for a job, renew it while it runs, complete it, close the session.
//!
//! GitHub's runner speaks a private protocol to its pipelines hosts (an OAuth token from its RSA
//! key, a message queue, job locks). This is that conversation's shape in plain JSON under
//! `/_sim/actions`, where no REST route of GitHub's lives: a runner proves the OAuth client id its
//! JIT config carries, is online while it polls, and a runner that stops polling (killed) goes
//! offline and fails its job after [`SESSION_TIMEOUT`], as on GitHub.

use super::Github;
use super::routes::{error, json_response};
use super::state::{Credential, Session};
use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Where the service lives on the fake GitHub's listener; `ServerUrl` of every JIT config.
pub const PATH: &str = "/_sim/actions";
/// A session silent this long (simulated) is dropped: its runner goes offline, its job fails.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest one message poll holds the connection (real time), like the listener's 50 s
/// long poll, shortened so a test's runner notices a deleted registration quickly.
const MAX_POLL: Duration = Duration::from_secs(10);

pub fn router(gh: Arc<Github>) -> Router {
    Router::new()
        .route(&format!("{PATH}/sessions"), post(open))
        .route(&format!("{PATH}/sessions/{{session}}"), delete(close))
        .route(
            &format!("{PATH}/sessions/{{session}}/message"),
            get(message),
        )
        .route(
            &format!("{PATH}/sessions/{{session}}/jobs/{{job}}/renew"),
            post(renew),
        )
        .route(
            &format!("{PATH}/sessions/{{session}}/jobs/{{job}}/complete"),
            post(complete),
        )
        .with_state(gh)
}

#[derive(Deserialize)]
pub struct Open {
    agent_id: u64,
    client_id: String,
}

fn session_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill(&mut b);
    hex::encode(b)
}

/// Opens a session for the runner of `.runner`'s `AgentId`, if the client id is its JIT
/// config's: 404 when the registration is gone, 401 for another client id, 409 while another
/// session of the runner is alive (the listener's session conflict).
async fn open(
    State(gh): State<Arc<Github>>,
    payload: Result<Json<Open>, JsonRejection>,
) -> Response {
    let Ok(Json(req)) = payload else {
        return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let now = gh.clock.now_ms();
    let timeout = SESSION_TIMEOUT.as_millis() as i64;
    let mut st = gh.lock();
    if !st.runners.contains_key(&req.agent_id) {
        return error(
            StatusCode::NOT_FOUND,
            "The runner registration has been deleted from the server, please re-configure.",
        );
    }
    if st.jit_clients.get(&req.agent_id) != Some(&req.client_id) {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let live = st
        .sessions
        .values()
        .any(|s| s.runner_id == req.agent_id && now - s.last_seen_ms < timeout);
    if live {
        return error(
            StatusCode::CONFLICT,
            "A session for this runner already exists.",
        );
    }
    st.sessions.retain(|_, s| s.runner_id != req.agent_id);
    // Its JIT config is spent: an in-process virtual runner can no longer redeem it.
    for c in st.credentials.values_mut() {
        if let Credential::Jit { runner_id, used } = c
            && *runner_id == req.agent_id
        {
            *used = true;
        }
    }
    if let Some(r) = st.runners.get_mut(&req.agent_id) {
        r.online = true;
    }
    let id = session_id();
    st.sessions.insert(
        id.clone(),
        Session {
            runner_id: req.agent_id,
            last_seen_ms: now,
        },
    );
    drop(st);
    json_response(
        StatusCode::CREATED,
        &json!({ "session_id": id, "speed": gh.clock.speed() }),
    )
}

/// Why a session's request finds nothing to talk to.
enum Gone {
    /// Unknown or timed out: the listener opens a new one.
    Session,
    /// Its runner was deleted: the listener must be configured again.
    Runner,
}

impl IntoResponse for Gone {
    fn into_response(self) -> Response {
        match self {
            Gone::Session => error(StatusCode::NOT_FOUND, "Session not found"),
            Gone::Runner => error(
                StatusCode::NOT_FOUND,
                "The runner registration has been deleted from the server, please re-configure.",
            ),
        }
    }
}

/// The session's runner, after noting that it is alive.
fn touch(gh: &Github, session: &str) -> Result<u64, Gone> {
    let now = gh.clock.now_ms();
    let mut st = gh.lock();
    let Some(s) = st.sessions.get_mut(session) else {
        return Err(Gone::Session);
    };
    s.last_seen_ms = now;
    let runner = s.runner_id;
    if !st.runners.contains_key(&runner) {
        st.sessions.remove(session);
        return Err(Gone::Runner);
    }
    Ok(runner)
}

async fn close(State(gh): State<Arc<Github>>, Path(session): Path<String>) -> Response {
    let mut st = gh.lock();
    if let Some(s) = st.sessions.remove(&session)
        && let Some(r) = st.runners.get_mut(&s.runner_id)
    {
        r.online = false;
    }
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
pub struct Poll {
    #[serde(default)]
    wait_ms: Option<u64>,
}

/// The job assigned to the session's runner: the one it has already, or the oldest queued job
/// it satisfies. Holds the request up to `wait_ms` (at most [`MAX_POLL`]) while none is queued;
/// 204 then.
async fn message(
    State(gh): State<Arc<Github>>,
    Path(session): Path<String>,
    Query(q): Query<Poll>,
) -> Response {
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(MAX_POLL);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let runner = match touch(&gh, &session) {
            Ok(r) => r,
            Err(gone) => return gone.into_response(),
        };
        let held = gh.lock().runners.get(&runner).and_then(|r| r.job);
        let job = held.or_else(|| gh.next_job(runner).map(|a| a.job_id));
        if let Some(job) = job {
            return job_message(&gh, job);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return StatusCode::NO_CONTENT.into_response();
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(20))).await;
    }
}

fn job_message(gh: &Github, job_id: u64) -> Response {
    let st = gh.lock();
    let Some(j) = st.jobs.get(&job_id) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let workflow = st.runs.get(&j.run_id).map_or(1, |r| r.run_number);
    json_response(
        StatusCode::OK,
        &json!({
            "job_id": j.id,
            "run_id": j.run_id,
            "run_number": workflow,
            "repository": j.repo,
            "job_name": j.name,
            "labels": j.labels,
            "duration_secs": j.duration.as_secs_f64(),
        }),
    )
}

/// The runner is still on the job (the worker's job lock renewal): 404 when the job is no
/// longer its own (cancelled, or failed because the runner was lost).
async fn renew(
    State(gh): State<Arc<Github>>,
    Path((session, job)): Path<(String, u64)>,
) -> Response {
    let runner = match touch(&gh, &session) {
        Ok(r) => r,
        Err(gone) => return gone.into_response(),
    };
    let holds = gh
        .lock()
        .runners
        .get(&runner)
        .is_some_and(|r| r.job == Some(job));
    if holds {
        json_response(StatusCode::OK, &json!({ "job_id": job }))
    } else {
        error(StatusCode::NOT_FOUND, "Job not found")
    }
}

#[derive(Deserialize)]
pub struct Complete {
    conclusion: String,
}

async fn complete(
    State(gh): State<Arc<Github>>,
    Path((session, job)): Path<(String, u64)>,
    payload: Result<Json<Complete>, JsonRejection>,
) -> Response {
    let Ok(Json(done)) = payload else {
        return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let allowed = ["success", "failure", "cancelled"];
    if !allowed.contains(&done.conclusion.as_str()) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    }
    let runner = match touch(&gh, &session) {
        Ok(r) => r,
        Err(gone) => return gone.into_response(),
    };
    let holds = gh
        .lock()
        .runners
        .get(&runner)
        .is_some_and(|r| r.job == Some(job));
    if !holds {
        return error(StatusCode::NOT_FOUND, "Job not found");
    }
    gh.finish_job(runner, job, &done.conclusion);
    json_response(StatusCode::OK, &json!({ "job_id": job }))
}

/// Drops sessions that fell silent, until the fake is gone: their runners were killed.
pub(super) async fn sweep(gh: Weak<Github>) {
    loop {
        let Some(gh) = gh.upgrade() else { return };
        let tick = gh
            .clock
            .real(Duration::from_secs(1))
            .clamp(Duration::from_millis(20), Duration::from_secs(1));
        let now = gh.clock.now_ms();
        let timeout = SESSION_TIMEOUT.as_millis() as i64;
        let silent: Vec<u64> = {
            let mut st = gh.lock();
            let mut gone = Vec::new();
            st.sessions.retain(|_, s| {
                let alive = now - s.last_seen_ms < timeout;
                if !alive {
                    gone.push(s.runner_id);
                }
                alive
            });
            gone
        };
        for runner in silent {
            tracing::debug!(runner, "runner session timed out: the runner is offline");
            gh.runner_lost(runner);
        }
        drop(gh);
        tokio::time::sleep(tick).await;
    }
}
