//! The current user, projects, groups (with their subgroups' projects), project jobs (the demand
//! views: `scope[]` filters, offset and keyset pages) and project and group hooks.

use super::{Base, Caller, Gl, boolean, json_response, message, page_response, params, text};
use crate::gitlab::paging::{self, Query};
use crate::gitlab::render;
use crate::gitlab::state::{Hook, HookOwner, Status};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

pub async fn current_user(
    Extension(base): Extension<Base>,
    Extension(caller): Extension<Caller>,
) -> Response {
    json_response(
        StatusCode::OK,
        &render::user(&base.origin, caller.id, &caller.username, caller.admin),
    )
}

pub async fn project(
    State(gl): Gl,
    Extension(base): Extension<Base>,
    Path(id): Path<String>,
) -> Response {
    let st = gl.lock();
    match st.find_project(&id) {
        Some(p) => json_response(StatusCode::OK, &render::project(&base.origin, &st, p)),
        None => message(StatusCode::NOT_FOUND, "404 Project Not Found"),
    }
}

use axum::extract::State;

pub async fn group(
    State(gl): Gl,
    Extension(base): Extension<Base>,
    Path(id): Path<String>,
) -> Response {
    let st = gl.lock();
    match st.find_group(&id) {
        Some(g) => json_response(StatusCode::OK, &render::group(&base.origin, g)),
        None => message(StatusCode::NOT_FOUND, "404 Group Not Found"),
    }
}

/// `GET /groups/:id/projects`: the group's projects, its subgroups' too with
/// `include_subgroups=true`; offset pages, or keyset ones by id.
pub async fn group_projects(
    State(gl): Gl,
    Extension(base): Extension<Base>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    uri: axum::http::Uri,
) -> Response {
    let q = Query::parse(raw.as_deref());
    let subgroups = match q.flag("include_subgroups") {
        Ok(v) => v.unwrap_or(false),
        Err(e) => return super::invalid(&e),
    };
    let count_limit = gl.config().count_limit;
    let st = gl.lock();
    let Some(g) = st.find_group(&id) else {
        return message(StatusCode::NOT_FOUND, "404 Group Not Found");
    };
    let group = g.id;
    let mut projects: Vec<(u64, Value)> = st
        .projects
        .values()
        .filter(|p| {
            if subgroups {
                st.group_within(p.namespace, group)
            } else {
                p.namespace == group
            }
        })
        .map(|p| (p.id, render::project(&base.origin, &st, p)))
        .collect();
    // GitLab's default order: newest first (`order_by=created_at`, `sort=desc`).
    projects.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
    page_response(paging::by_id(projects, &base.here(&uri), &q, count_limit))
}

/// `GET /projects/:id/jobs`: newest first, filtered by `scope` / `scope[]`.
pub async fn jobs(
    State(gl): Gl,
    Extension(base): Extension<Base>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    uri: axum::http::Uri,
) -> Response {
    let q = Query::parse(raw.as_deref());
    let mut scopes = Vec::new();
    for s in q.all("scope") {
        match Status::parse(&s) {
            Some(st) => scopes.push(st),
            None => return super::invalid("scope does not have a valid value"),
        }
    }
    let now = gl.clock.now_ms();
    let count_limit = gl.config().count_limit;
    let st = gl.lock();
    let Some(p) = st.find_project(&id) else {
        return message(StatusCode::NOT_FOUND, "404 Project Not Found");
    };
    let project = p.id;
    let found: Vec<(u64, Value)> = st
        .jobs
        .values()
        .rev()
        .filter(|j| j.project_id == project)
        .filter(|j| scopes.is_empty() || scopes.contains(&j.status))
        .map(|j| (j.id, render::job(&base.origin, &st, j, now)))
        .collect();
    if q.get("pagination") == Some("keyset") && q.get("order_by").is_some_and(|o| o != "id") {
        return super::invalid("order_by does not have a valid value");
    }
    page_response(paging::by_id(found, &base.here(&uri), &q, count_limit))
}

fn job_of_project(
    gl: &crate::gitlab::Gitlab,
    id: &str,
    job_id: &str,
) -> Result<(u64, u64), Response> {
    let st = gl.lock();
    let Some(p) = st.find_project(id) else {
        return Err(message(StatusCode::NOT_FOUND, "404 Project Not Found"));
    };
    let job = job_id
        .parse::<u64>()
        .ok()
        .and_then(|j| st.jobs.get(&j))
        .filter(|j| j.project_id == p.id);
    match job {
        Some(j) => Ok((p.id, j.id)),
        None => Err(message(StatusCode::NOT_FOUND, "404 Job Not Found")),
    }
}

pub async fn job(
    State(gl): Gl,
    Extension(base): Extension<Base>,
    Path((id, job_id)): Path<(String, String)>,
) -> Response {
    let (_, job) = match job_of_project(&gl, &id, &job_id) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let now = gl.clock.now_ms();
    let st = gl.lock();
    match st.jobs.get(&job) {
        Some(j) => json_response(StatusCode::OK, &render::job(&base.origin, &st, j, now)),
        None => message(StatusCode::NOT_FOUND, "404 Job Not Found"),
    }
}

pub async fn cancel(
    State(gl): Gl,
    Extension(base): Extension<Base>,
    Path((id, job_id)): Path<(String, String)>,
) -> Response {
    let (_, job) = match job_of_project(&gl, &id, &job_id) {
        Ok(v) => v,
        Err(r) => return r,
    };
    gl.cancel(job);
    let now = gl.clock.now_ms();
    let st = gl.lock();
    match st.jobs.get(&job) {
        Some(j) => json_response(StatusCode::CREATED, &render::job(&base.origin, &st, j, now)),
        None => message(StatusCode::NOT_FOUND, "404 Job Not Found"),
    }
}

fn hooks_of(gl: &crate::gitlab::Gitlab, owner: HookOwner) -> Response {
    let st = gl.lock();
    let hooks: Vec<Value> = st
        .hooks
        .values()
        .filter(|h| h.owner == owner)
        .map(render::hook)
        .collect();
    json_response(StatusCode::OK, &Value::Array(hooks))
}

fn add_hook(
    gl: &crate::gitlab::Gitlab,
    owner: HookOwner,
    raw: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let p = match params(raw, headers, body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(url) = text(&p, "url").filter(|u| !u.trim().is_empty()) else {
        return super::invalid("url is missing");
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &serde_json::json!({ "message": { "url": ["is blocked: Only allowed schemes are http, https"] } }),
        );
    }
    let job_events = match boolean(&p, "job_events") {
        Ok(v) => v.unwrap_or(false),
        Err(r) => return r,
    };
    let pipeline_events = match boolean(&p, "pipeline_events") {
        Ok(v) => v.unwrap_or(false),
        Err(r) => return r,
    };
    let now = gl.clock.now_ms();
    let mut st = gl.lock();
    let id = st.id();
    let hook = Hook {
        id,
        owner,
        url,
        token: text(&p, "token").unwrap_or_default(),
        job_events,
        pipeline_events,
        created_ms: now,
    };
    let body = render::hook(&hook);
    st.hooks.insert(id, hook);
    json_response(StatusCode::CREATED, &body)
}

fn project_owner(gl: &crate::gitlab::Gitlab, id: &str) -> Result<HookOwner, Response> {
    gl.lock()
        .find_project(id)
        .map(|p| HookOwner::Project(p.id))
        .ok_or_else(|| message(StatusCode::NOT_FOUND, "404 Project Not Found"))
}

fn group_owner(gl: &crate::gitlab::Gitlab, id: &str) -> Result<HookOwner, Response> {
    gl.lock()
        .find_group(id)
        .map(|g| HookOwner::Group(g.id))
        .ok_or_else(|| message(StatusCode::NOT_FOUND, "404 Group Not Found"))
}

pub async fn project_hooks(State(gl): Gl, Path(id): Path<String>) -> Response {
    match project_owner(&gl, &id) {
        Ok(o) => hooks_of(&gl, o),
        Err(r) => r,
    }
}

pub async fn group_hooks(State(gl): Gl, Path(id): Path<String>) -> Response {
    match group_owner(&gl, &id) {
        Ok(o) => hooks_of(&gl, o),
        Err(r) => r,
    }
}

pub async fn add_project_hook(
    State(gl): Gl,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match project_owner(&gl, &id) {
        Ok(o) => add_hook(&gl, o, raw.as_deref(), &headers, &body),
        Err(r) => r,
    }
}

pub async fn add_group_hook(
    State(gl): Gl,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match group_owner(&gl, &id) {
        Ok(o) => add_hook(&gl, o, raw.as_deref(), &headers, &body),
        Err(r) => r,
    }
}

fn find_hook(gl: &crate::gitlab::Gitlab, id: &str, hook_id: &str) -> Result<u64, Response> {
    let owner = project_owner(gl, id)?;
    let st = gl.lock();
    hook_id
        .parse::<u64>()
        .ok()
        .filter(|h| st.hooks.get(h).is_some_and(|h| h.owner == owner))
        .ok_or_else(|| message(StatusCode::NOT_FOUND, "404 Not found"))
}

pub async fn project_hook(State(gl): Gl, Path((id, hook_id)): Path<(String, String)>) -> Response {
    match find_hook(&gl, &id, &hook_id) {
        Ok(h) => {
            let st = gl.lock();
            match st.hooks.get(&h) {
                Some(h) => json_response(StatusCode::OK, &render::hook(h)),
                None => message(StatusCode::NOT_FOUND, "404 Not found"),
            }
        }
        Err(r) => r,
    }
}

pub async fn delete_project_hook(
    State(gl): Gl,
    Path((id, hook_id)): Path<(String, String)>,
) -> Response {
    match find_hook(&gl, &id, &hook_id) {
        Ok(h) => {
            gl.lock().hooks.remove(&h);
            axum::response::IntoResponse::into_response(StatusCode::NO_CONTENT)
        }
        Err(r) => r,
    }
}
