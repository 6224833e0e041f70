//! Repository reads: the repository, its workflow runs (filtered by status and creation time),
//! the jobs of a run, and one job.

use super::{Base, error, json_response};
use crate::github::Github;
use crate::github::created;
use crate::github::paging::Paging;
use crate::github::render;
use axum::Extension;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

type Q = Query<HashMap<String, String>>;

/// A paged list answer: the object with `total_count` and the page under `key`, plus Link.
pub fn page(
    base: &Base,
    uri: &OriginalUri,
    q: &HashMap<String, String>,
    key: &str,
    items: Vec<Value>,
) -> Response {
    let total = items.len();
    page_of(base, uri, q, key, items, total)
}

/// A page of `items` whose `total_count` is `total`: more than the items when a search limit
/// cut the list short.
fn page_of(
    base: &Base,
    uri: &OriginalUri,
    q: &HashMap<String, String>,
    key: &str,
    items: Vec<Value>,
    total: usize,
) -> Response {
    let paging = Paging::from_query(q);
    let (items, last) = paging.slice(items);
    let mut r = json_response(StatusCode::OK, &json!({ "total_count": total, key: items }));
    let url = format!("{}{}", base.origin, uri.path());
    if let Some(link) = paging.link(&url, uri.query().unwrap_or(""), last)
        && let Ok(v) = HeaderValue::from_str(&link)
    {
        r.headers_mut().insert(header::LINK, v);
    }
    r
}

pub async fn repository(
    State(gh): State<Arc<Github>>,
    Extension(base): Extension<Base>,
    Path((o, r)): Path<(String, String)>,
) -> Response {
    let now = gh.clock.now_ms();
    let repo = gh.lock().repo(&o, &r, now);
    json_response(
        StatusCode::OK,
        &render::repository(&base.api(), &repo, true),
    )
}

pub async fn organization(
    State(gh): State<Arc<Github>>,
    Extension(base): Extension<Base>,
    Path(org): Path<String>,
) -> Response {
    let id = gh.lock().org_id(&org);
    json_response(
        StatusCode::OK,
        &render::organization_full(&base.api(), &org, id, gh.clock.now_ms()),
    )
}

/// Runs newest first, filtered by `status` (or conclusion) and `created` (GitHub's date
/// qualifiers). A filtered list yields at most `search_limit` runs, as GitHub's does, while
/// `total_count` counts them all.
pub async fn runs(
    State(gh): State<Arc<Github>>,
    Extension(base): Extension<Base>,
    uri: OriginalUri,
    Path((o, r)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let now = gh.clock.now_ms();
    let api = base.api();
    let created = match q
        .get("created")
        .filter(|c| !c.is_empty())
        .map(|c| created::parse(c))
    {
        Some(Ok(c)) => Some(c),
        Some(Err(message)) => return error(StatusCode::UNPROCESSABLE_ENTITY, &message),
        None => None,
    };
    let status = q.get("status").filter(|s| !s.is_empty());
    let limit = (status.is_some() || created.is_some()).then(|| gh.config().search_limit);
    let (items, total) = {
        let mut st = gh.lock();
        let repo = st.repo(&o, &r, now);
        let full = repo.full_name();
        let mut runs: Vec<_> = st
            .runs
            .values()
            .filter(|run| run.repo == full)
            .filter(|run| {
                status.is_none_or(|s| run.status == s || run.conclusion.as_ref() == Some(s))
            })
            .filter(|run| created.is_none_or(|c| c.contains(run.created_ms)))
            .collect();
        // GitHub lists the newest run first.
        runs.sort_by_key(|run| std::cmp::Reverse((run.created_ms, run.id)));
        let total = runs.len();
        runs.truncate(limit.unwrap_or(usize::MAX));
        let items = runs
            .into_iter()
            .map(|run| render::run(&api, run, &repo))
            .collect();
        (items, total)
    };
    page_of(&base, &uri, &q, "workflow_runs", items, total)
}

fn id(s: &str) -> Option<u64> {
    s.parse().ok()
}

pub async fn run(
    State(gh): State<Arc<Github>>,
    Extension(base): Extension<Base>,
    Path((o, r, run_id)): Path<(String, String, String)>,
) -> Response {
    let now = gh.clock.now_ms();
    let mut st = gh.lock();
    let repo = st.repo(&o, &r, now);
    match id(&run_id)
        .and_then(|i| st.runs.get(&i))
        .filter(|run| run.repo == repo.full_name())
    {
        Some(run) => json_response(StatusCode::OK, &render::run(&base.api(), run, &repo)),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

pub async fn jobs(
    State(gh): State<Arc<Github>>,
    Extension(base): Extension<Base>,
    uri: OriginalUri,
    Path((o, r, run_id)): Path<(String, String, String)>,
    Query(q): Q,
) -> Response {
    let now = gh.clock.now_ms();
    let api = base.api();
    let items = {
        let mut st = gh.lock();
        let repo = st.repo(&o, &r, now);
        let Some(run) = id(&run_id)
            .and_then(|i| st.runs.get(&i))
            .filter(|run| run.repo == repo.full_name())
        else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        // One attempt per run here, so `filter=latest` and `filter=all` agree.
        run.jobs
            .iter()
            .filter_map(|j| st.jobs.get(j))
            .map(|j| render::job(&api, j, Some(run)))
            .collect()
    };
    page(&base, &uri, &q, "jobs", items)
}

pub async fn job(
    State(gh): State<Arc<Github>>,
    Extension(base): Extension<Base>,
    Path((o, r, job_id)): Path<(String, String, String)>,
) -> Response {
    let now = gh.clock.now_ms();
    let mut st = gh.lock();
    let repo = st.repo(&o, &r, now);
    match id(&job_id)
        .and_then(|i| st.jobs.get(&i))
        .filter(|j| j.repo == repo.full_name())
    {
        Some(j) => json_response(
            StatusCode::OK,
            &render::job(&base.api(), j, st.runs.get(&j.run_id)),
        ),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}
