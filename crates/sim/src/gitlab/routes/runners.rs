//! Runner records through a person's token: `POST /user/runners`, the lists (owned, all,
//! project, group) with GitLab's filters, details, updates, deletion, a runner's jobs and its
//! managers.

use super::{
    Base, Caller, Gl, Params, boolean, invalid, json_response, message, number, page_response,
    tag_list, text,
};
use crate::gitlab::Gitlab;
use crate::gitlab::paging::{self, Query};
use crate::gitlab::render;
use crate::gitlab::runners::{NewRunner, Owner, Runner};
use crate::gitlab::state::{State as World, Status};
use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// `POST /user/runners`: a runner owned by an instance, a group or a project, its token shown
/// this once.
pub async fn create(
    State(gl): Gl,
    Extension(caller): Extension<Caller>,
    Params(p): Params,
) -> Response {
    let read = || -> Result<NewRunner, Response> {
        let Some(kind) = text(&p, "runner_type") else {
            return Err(invalid(
                "runner_type is missing, runner_type does not have a valid value",
            ));
        };
        let id = |key: &str| number(&p, key);
        let owner = match kind.as_str() {
            "instance_type" => {
                if !caller.admin {
                    return Err(message(StatusCode::FORBIDDEN, "403 Forbidden"));
                }
                Owner::Instance
            }
            "group_type" => {
                let g = id("group_id")?.ok_or_else(|| invalid("group_id is missing"))?;
                if !gl.lock().groups.contains_key(&g) {
                    return Err(message(StatusCode::FORBIDDEN, "403 Forbidden"));
                }
                Owner::Group(g)
            }
            "project_type" => {
                let pr = id("project_id")?.ok_or_else(|| invalid("project_id is missing"))?;
                if !gl.lock().projects.contains_key(&pr) {
                    return Err(message(StatusCode::FORBIDDEN, "403 Forbidden"));
                }
                Owner::Project(pr)
            }
            _ => return Err(invalid("runner_type does not have a valid value")),
        };
        let access_level = text(&p, "access_level").unwrap_or_else(|| "not_protected".into());
        if !matches!(access_level.as_str(), "not_protected" | "ref_protected") {
            return Err(invalid("access_level does not have a valid value"));
        }
        let maintenance_note = text(&p, "maintenance_note").unwrap_or_default();
        if maintenance_note.chars().count() > 1024 {
            return Err(invalid(
                "maintenance_note is too long (maximum is 1024 characters)",
            ));
        }
        Ok(NewRunner {
            owner,
            description: text(&p, "description").unwrap_or_default(),
            tags: tag_list(&p, "tag_list")?.unwrap_or_default(),
            run_untagged: boolean(&p, "run_untagged")?.unwrap_or(true),
            locked: boolean(&p, "locked")?.unwrap_or(false),
            access_level,
            paused: boolean(&p, "paused")?.unwrap_or(false),
            maximum_timeout: number(&p, "maximum_timeout")?,
            maintenance_note,
            created_by: caller.username.clone(),
        })
    };
    let new = match read() {
        Ok(n) => n,
        Err(r) => return r,
    };
    if new.tags.is_empty() && !new.run_untagged {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "message": { "tags_list": ["can not be empty when runner is not allowed to pick untagged jobs"] } }),
        );
    }
    if new.maximum_timeout.is_some_and(|t| t < 600) {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "message": { "maximum_timeout": ["needs to be at least 10 minutes"] } }),
        );
    }
    let now = gl.clock.now_ms();
    let ttl = gl.config().runner_token_ttl;
    let mut st = gl.lock();
    let id = st.create_runner(new, ttl, now);
    let Some(r) = st.runners.get(&id) else {
        return message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 Internal Server Error",
        );
    };
    json_response(
        StatusCode::CREATED,
        &json!({
            "id": r.id,
            "token": r.token,
            "token_expires_at": r.token_expires_ms.map(render::iso),
        }),
    )
}

/// The list filters GitLab applies: `type`, `status`, `paused`, `tag_list`, and the deprecated
/// `scope`.
struct Filters {
    kind: Option<String>,
    status: Option<String>,
    paused: Option<bool>,
    tags: Vec<String>,
    scope: Option<String>,
}

fn filters(q: &Query) -> Result<Filters, Response> {
    let kind = q.get("type").map(str::to_string);
    if kind
        .as_deref()
        .is_some_and(|k| !matches!(k, "instance_type" | "group_type" | "project_type"))
    {
        return Err(invalid("type does not have a valid value"));
    }
    let status = q.get("status").map(str::to_string);
    if status.as_deref().is_some_and(|s| {
        !matches!(
            s,
            "online" | "offline" | "stale" | "never_contacted" | "active" | "paused"
        )
    }) {
        return Err(invalid("status does not have a valid value"));
    }
    let scope = q.get("scope").map(str::to_string);
    if scope.as_deref().is_some_and(|s| {
        !matches!(
            s,
            "active"
                | "paused"
                | "online"
                | "offline"
                | "specific"
                | "shared"
                | "instance_type"
                | "group_type"
                | "project_type"
                | "stale"
                | "never_contacted"
        )
    }) {
        return Err(invalid("scope does not have a valid value"));
    }
    Ok(Filters {
        kind,
        status,
        paused: q.flag("paused").map_err(|e| invalid(&e))?,
        tags: q.all("tag_list"),
        scope,
    })
}

impl Filters {
    fn keep(&self, r: &Runner, now_ms: i64) -> bool {
        let status = r.status(now_ms);
        let is = |s: &str| match s {
            "active" => !r.paused,
            "paused" => r.paused,
            "specific" => r.owner != Owner::Instance,
            "shared" => r.owner == Owner::Instance,
            "instance_type" | "group_type" | "project_type" => r.owner.type_name() == s,
            other => status == other,
        };
        self.kind
            .as_deref()
            .is_none_or(|k| r.owner.type_name() == k)
            && self.status.as_deref().is_none_or(is)
            && self.scope.as_deref().is_none_or(is)
            && self.paused.is_none_or(|p| r.paused == p)
            && r.has_tags(&self.tags)
    }
}

fn list(
    gl: &Gitlab,
    url: &str,
    raw: Option<&str>,
    pick: impl Fn(&World, &Runner) -> bool,
) -> Response {
    let q = Query::parse(raw);
    let f = match filters(&q) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let now = gl.clock.now_ms();
    let count_limit = gl.config().count_limit;
    let st = gl.lock();
    let items: Vec<Value> = st
        .runners
        .values()
        .filter(|r| pick(&st, r) && f.keep(r, now))
        .map(|r| render::runner_summary(r, now))
        .collect();
    page_response(paging::offset(items, url, &q, count_limit))
}

/// `GET /runners`: the runners of the user's groups and projects (not instance runners).
pub async fn owned_list(
    State(gl): Gl,
    Extension(base): Extension<Base>,
    RawQuery(raw): RawQuery,
    uri: axum::http::Uri,
) -> Response {
    list(&gl, &base.here(&uri), raw.as_deref(), |_, r| {
        r.owner != Owner::Instance
    })
}

/// `GET /runners/all`: every runner; administrators only.
pub async fn all_list(
    State(gl): Gl,
    Extension(base): Extension<Base>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
    uri: axum::http::Uri,
) -> Response {
    if !caller.admin {
        return message(StatusCode::FORBIDDEN, "403 Forbidden");
    }
    list(&gl, &base.here(&uri), raw.as_deref(), |_, _| true)
}

/// `GET /projects/:id/runners`: the runners that may take the project's jobs: its own, its
/// groups', and instance runners.
pub async fn project_list(
    State(gl): Gl,
    Extension(base): Extension<Base>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    uri: axum::http::Uri,
) -> Response {
    let Some((project, groups)) = gl.lock().find_project(&id).map(|p| (p.id, p.namespace)) else {
        return message(StatusCode::NOT_FOUND, "404 Project Not Found");
    };
    list(
        &gl,
        &base.here(&uri),
        raw.as_deref(),
        move |st, r| match r.owner {
            Owner::Instance => true,
            Owner::Project(p) => p == project,
            Owner::Group(g) => st.group_within(groups, g),
        },
    )
}

/// `GET /groups/:id/runners`: the group's runners and its ancestors', instance runners, and the
/// group and project runners below it.
pub async fn group_list(
    State(gl): Gl,
    Extension(base): Extension<Base>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    uri: axum::http::Uri,
) -> Response {
    let Some(group) = gl.lock().find_group(&id).map(|g| g.id) else {
        return message(StatusCode::NOT_FOUND, "404 Group Not Found");
    };
    list(
        &gl,
        &base.here(&uri),
        raw.as_deref(),
        move |st, r| match r.owner {
            Owner::Instance => true,
            Owner::Group(g) => st.group_within(group, g) || st.group_within(g, group),
            Owner::Project(p) => st
                .projects
                .get(&p)
                .is_some_and(|p| st.group_within(p.namespace, group)),
        },
    )
}

fn runner_id(st: &World, id: &str) -> Result<u64, Response> {
    id.parse::<u64>()
        .ok()
        .filter(|id| st.runners.contains_key(id))
        .ok_or_else(|| message(StatusCode::NOT_FOUND, "404 Runner Not Found"))
}

pub async fn get_one(
    State(gl): Gl,
    Extension(base): Extension<Base>,
    Path(id): Path<String>,
) -> Response {
    let now = gl.clock.now_ms();
    let st = gl.lock();
    match runner_id(&st, &id) {
        Ok(id) => json_response(
            StatusCode::OK,
            &render::runner_detail(&base.origin, &st, &st.runners[&id], now),
        ),
        Err(r) => r,
    }
}

/// `PUT /runners/:id`: description, tags, paused and the other settings.
pub async fn update(
    State(gl): Gl,
    Extension(base): Extension<Base>,
    Path(id): Path<String>,
    Params(p): Params,
) -> Response {
    let read = || -> Result<_, Response> {
        Ok((
            tag_list(&p, "tag_list")?,
            boolean(&p, "paused")?,
            boolean(&p, "active")?,
            boolean(&p, "run_untagged")?,
            boolean(&p, "locked")?,
            number(&p, "maximum_timeout")?,
        ))
    };
    let (tags, paused, active, untagged, locked, max_timeout) = match read() {
        Ok(v) => v,
        Err(r) => return r,
    };
    let now = gl.clock.now_ms();
    let mut st = gl.lock();
    let id = match runner_id(&st, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    if let Some(r) = st.runners.get_mut(&id) {
        if let Some(d) = text(&p, "description") {
            r.description = d;
        }
        if let Some(t) = tags {
            r.tags = t;
        }
        if let Some(v) = paused.or(active.map(|a| !a)) {
            r.paused = v;
        }
        if let Some(v) = untagged {
            r.run_untagged = v;
        }
        if let Some(v) = locked {
            r.locked = v;
        }
        if max_timeout.is_some() {
            r.maximum_timeout = max_timeout;
        }
        if let Some(a) = text(&p, "access_level") {
            r.access_level = a;
        }
        if let Some(n) = text(&p, "maintenance_note") {
            r.maintenance_note = n;
        }
    }
    if paused == Some(false) || active == Some(true) {
        // A resumed runner may find jobs it could not take before.
        st.queue_version += 1;
    }
    json_response(
        StatusCode::OK,
        &render::runner_detail(&base.origin, &st, &st.runners[&id], now),
    )
}

/// `DELETE /runners/:id`: 204. GitLab deletes a runner whatever it runs; keeping a busy runner
/// is the caller's rule (mayfly asks `GET /runners/:id/jobs?status=running` first).
pub async fn delete(State(gl): Gl, Path(id): Path<String>) -> Response {
    let mut st = gl.lock();
    match runner_id(&st, &id) {
        Ok(id) => {
            st.delete_runner(id);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

/// `GET /runners/:id/jobs`: `status` (running, success, failed, canceled, and the others),
/// `system_id`, `order_by=id`, `sort`; offset pages.
pub async fn jobs(
    State(gl): Gl,
    Extension(base): Extension<Base>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    uri: axum::http::Uri,
) -> Response {
    let q = Query::parse(raw.as_deref());
    let status = match q.get("status") {
        None => None,
        Some(s) => match Status::parse(s) {
            Some(st) => Some(st),
            None => return invalid("status does not have a valid value"),
        },
    };
    let now = gl.clock.now_ms();
    let count_limit = gl.config().count_limit;
    let st = gl.lock();
    let id_num = match runner_id(&st, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let system_id = q.get("system_id");
    let mut found: Vec<Value> = st
        .runner_jobs(id_num, status)
        .into_iter()
        .filter(|j| system_id.is_none_or(|s| j.system_id.as_deref() == Some(s)))
        .map(|j| render::job(&base.origin, &st, j, now))
        .collect();
    if q.get("sort") != Some("asc") {
        found.reverse();
    }
    page_response(paging::offset(found, &base.here(&uri), &q, count_limit))
}

pub async fn managers(State(gl): Gl, Path(id): Path<String>) -> Response {
    let now = gl.clock.now_ms();
    let st = gl.lock();
    match runner_id(&st, &id) {
        Ok(id) => json_response(
            StatusCode::OK,
            &Value::Array(
                st.runners[&id]
                    .managers
                    .values()
                    .map(|m| render::manager(m, now))
                    .collect(),
            ),
        ),
        Err(r) => r,
    }
}
