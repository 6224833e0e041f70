//! Self-hosted runners of a repository or an organization: list, get, delete (not while busy),
//! registration and remove tokens, and just-in-time configs.

use super::repos::page;
use super::{Base, error, json_response};
use crate::github::Github;
use crate::github::jit;
use crate::github::render;
use crate::github::state::{Credential, Scope};
use axum::extract::rejection::JsonRejection;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

type Q = Query<HashMap<String, String>>;

/// Registration and remove tokens live an hour.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

fn repo_scope(gh: &Github, owner: &str, repo: &str) -> Scope {
    let now = gh.clock.now_ms();
    Scope::Repo(
        gh.lock()
            .repo(owner, repo, now)
            .full_name()
            .to_ascii_lowercase(),
    )
}

fn org_scope(org: &str) -> Scope {
    Scope::Org(org.to_ascii_lowercase())
}

fn list(
    gh: &Github,
    scope: &Scope,
    base: &Base,
    uri: &OriginalUri,
    q: &HashMap<String, String>,
) -> Response {
    let items = {
        let st = gh.lock();
        let name = q.get("name").filter(|n| !n.is_empty());
        st.runners
            .values()
            .filter(|r| &r.scope == scope && name.is_none_or(|n| r.name.eq_ignore_ascii_case(n)))
            .map(render::runner)
            .collect()
    };
    page(base, uri, q, "runners", items)
}

fn get_one(gh: &Github, scope: &Scope, runner_id: &str) -> Response {
    let st = gh.lock();
    match runner_id
        .parse()
        .ok()
        .and_then(|id| st.runner_in(scope, id))
    {
        Some(r) => json_response(StatusCode::OK, &render::runner(r)),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn delete(gh: &Github, scope: &Scope, runner_id: &str) -> Response {
    let mut st = gh.lock();
    let Some(r) = runner_id
        .parse()
        .ok()
        .and_then(|id| st.runner_in(scope, id))
    else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if r.busy() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!(
                "Bad request - Runner \"{}\" is still running a job\"",
                r.name
            ),
        );
    }
    let id = r.id;
    st.runners.remove(&id);
    StatusCode::NO_CONTENT.into_response()
}

fn token(gh: &Github, scope: Option<Scope>) -> Response {
    let now = gh.clock.now_ms();
    let expires_ms = now + TOKEN_TTL.as_millis() as i64;
    let token = jit::registration_token();
    if let Some(scope) = scope {
        gh.lock().credentials.insert(
            token.clone(),
            Credential::Registration {
                scope,
                expires_ms,
                used: false,
            },
        );
    }
    json_response(
        StatusCode::CREATED,
        &json!({ "token": token, "expires_at": render::iso8601(expires_ms) }),
    )
}

#[derive(Deserialize)]
pub struct JitRequest {
    name: String,
    /// Required by GitHub; the fake has one runner group (1, "Default") and files every runner there.
    #[serde(rename = "runner_group_id")]
    _runner_group_id: u64,
    labels: Vec<String>,
}

fn jitconfig(
    gh: &Github,
    scope: Scope,
    github_url: String,
    base: &Base,
    payload: Result<Json<JitRequest>, JsonRejection>,
) -> Response {
    let req = match payload {
        Ok(Json(r)) => r,
        Err(JsonRejection::JsonSyntaxError(_) | JsonRejection::MissingJsonContentType(_)) => {
            return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
        }
        Err(_) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid request. \"name\", \"runner_group_id\" and \"labels\" are required.",
            );
        }
    };
    let name = req.name.trim();
    if name.is_empty()
        || req.labels.is_empty()
        || req.labels.len() > 100
        || req.labels.iter().any(|l| l.trim().is_empty())
    {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    }
    let mut st = gh.lock();
    if st.name_taken(&scope, name) {
        return error(
            StatusCode::CONFLICT,
            &format!("Already exists - A runner with the name {name} already exists."),
        );
    }
    let mut labels = vec!["self-hosted".to_string()];
    labels.extend(req.labels);
    let id = st.add_runner(name, scope, &labels, false);
    let server_url = format!("{}{}", base.origin, crate::github::actions::PATH);
    let jit::Issued { encoded, client_id } = jit::encode(id, name, &github_url, &server_url);
    st.jit_clients.insert(id, client_id);
    st.credentials.insert(
        encoded.clone(),
        Credential::Jit {
            runner_id: id,
            used: false,
        },
    );
    let runner = st.runners.get(&id).map(render::runner).unwrap_or_default();
    json_response(
        StatusCode::CREATED,
        &json!({ "runner": runner, "encoded_jit_config": encoded }),
    )
}

type RepoPath = Path<(String, String)>;
type RepoRunnerPath = Path<(String, String, String)>;
type OrgPath = Path<String>;
type OrgRunnerPath = Path<(String, String)>;
type Gh = State<Arc<Github>>;

pub async fn repo_list(
    State(gh): Gh,
    Extension(base): Extension<Base>,
    uri: OriginalUri,
    Path((o, r)): RepoPath,
    Query(q): Q,
) -> Response {
    list(&gh, &repo_scope(&gh, &o, &r), &base, &uri, &q)
}

pub async fn org_list(
    State(gh): Gh,
    Extension(base): Extension<Base>,
    uri: OriginalUri,
    Path(org): OrgPath,
    Query(q): Q,
) -> Response {
    list(&gh, &org_scope(&org), &base, &uri, &q)
}

pub async fn repo_get(State(gh): Gh, Path((o, r, id)): RepoRunnerPath) -> Response {
    get_one(&gh, &repo_scope(&gh, &o, &r), &id)
}

pub async fn org_get(State(gh): Gh, Path((org, id)): OrgRunnerPath) -> Response {
    get_one(&gh, &org_scope(&org), &id)
}

pub async fn repo_delete(State(gh): Gh, Path((o, r, id)): RepoRunnerPath) -> Response {
    delete(&gh, &repo_scope(&gh, &o, &r), &id)
}

pub async fn org_delete(State(gh): Gh, Path((org, id)): OrgRunnerPath) -> Response {
    delete(&gh, &org_scope(&org), &id)
}

pub async fn repo_registration_token(State(gh): Gh, Path((o, r)): RepoPath) -> Response {
    token(&gh, Some(repo_scope(&gh, &o, &r)))
}

pub async fn org_registration_token(State(gh): Gh, Path(org): OrgPath) -> Response {
    token(&gh, Some(org_scope(&org)))
}

/// Remove tokens are handed out but not needed: the fake deletes runners through the API.
pub async fn repo_remove_token(State(gh): Gh, Path((o, r)): RepoPath) -> Response {
    repo_scope(&gh, &o, &r);
    token(&gh, None)
}

pub async fn org_remove_token(State(gh): Gh, Path(_org): OrgPath) -> Response {
    token(&gh, None)
}

pub async fn repo_jitconfig(
    State(gh): Gh,
    Extension(base): Extension<Base>,
    Path((o, r)): RepoPath,
    payload: Result<Json<JitRequest>, JsonRejection>,
) -> Response {
    let scope = repo_scope(&gh, &o, &r);
    let url = format!("https://github.com/{o}/{r}");
    jitconfig(&gh, scope, url, &base, payload)
}

pub async fn org_jitconfig(
    State(gh): Gh,
    Extension(base): Extension<Base>,
    Path(org): OrgPath,
    payload: Result<Json<JitRequest>, JsonRejection>,
) -> Response {
    let url = format!("https://github.com/{org}");
    jitconfig(&gh, org_scope(&org), url, &base, payload)
}
