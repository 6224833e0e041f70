//! The control API's GitLab part under `/_sim/gitlab/`: projects, pipelines, jobs (cancel
//! too), runner records, webhook targets and statistics; and the `gitlab` section of
//! `/_sim/faults` and `/_sim/stats`.

use crate::control::{Answer, BadRequest, Waits, body, hook_url, overwrite, percentile, share};
use crate::gitlab::{ApiFaults, Gitlab, HookTarget, NewJob, WebhookFaults};
use crate::sim::Sim;
use crate::stats::CallRow;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/_sim/gitlab/projects", post(add_project))
        .route("/_sim/gitlab/pipelines", post(add_pipelines))
        .route("/_sim/gitlab/jobs", get(jobs))
        .route("/_sim/gitlab/jobs/{id}/cancel", post(cancel))
        .route("/_sim/gitlab/runners", get(runners))
        .route("/_sim/gitlab/webhooks", post(add_webhook))
        .route("/_sim/gitlab/stats", get(stats))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddProject {
    /// `group[/subgroup…]/project`.
    path: String,
}

fn project_path(path: &str) -> Result<(), BadRequest> {
    let parts: Vec<&str> = path.split('/').collect();
    let ok = parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if ok {
        Ok(())
    } else {
        Err(BadRequest(format!(
            "project: expected group[/subgroup…]/project of [A-Za-z0-9._-], got {path:?}"
        )))
    }
}

async fn add_project(
    State(sim): State<Arc<Sim>>,
    payload: Result<Json<AddProject>, JsonRejection>,
) -> Answer {
    let req = body(payload)?;
    project_path(&req.path)?;
    let id = sim
        .gitlab
        .project(&req.path)
        .ok_or_else(|| BadRequest(format!("path: {:?} names a group", req.path)))?;
    let group = req.path.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let group_id = sim.gitlab.group(group);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "namespace_id": group_id })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobSpec {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    stage: u32,
    #[serde(default)]
    tags: Vec<String>,
    duration_secs: f64,
    #[serde(default)]
    protected: bool,
}

/// Jobs of a pipeline: a count of identical jobs (`tags`, `duration_secs`), or each one.
#[derive(Deserialize)]
#[serde(untagged)]
enum Jobs {
    Count(u32),
    Each(Vec<JobSpec>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddPipelines {
    project: String,
    #[serde(default)]
    jobs: Option<Jobs>,
    /// For a count of jobs.
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    duration_secs: Option<f64>,
    /// Pipelines of that shape (default 1).
    #[serde(default)]
    pipelines: Option<u32>,
}

fn seconds(field: &str, v: f64) -> Result<Duration, BadRequest> {
    if v.is_finite() && v >= 0.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(BadRequest(format!("{field}: seconds, 0 or more, got {v}")))
    }
}

fn tags(field: &str, tags: &[String]) -> Result<(), BadRequest> {
    match tags.iter().find(|t| t.trim().is_empty() || t.contains(',')) {
        Some(t) => Err(BadRequest(format!(
            "{field}: a tag is empty or has a comma: {t:?}"
        ))),
        None => Ok(()),
    }
}

async fn add_pipelines(
    State(sim): State<Arc<Sim>>,
    payload: Result<Json<AddPipelines>, JsonRejection>,
) -> Answer {
    let req = body(payload)?;
    project_path(&req.project)?;
    let jobs: Vec<NewJob> = match req.jobs.unwrap_or(Jobs::Count(1)) {
        Jobs::Count(n) => {
            let duration = seconds(
                "duration_secs",
                req.duration_secs
                    .ok_or_else(|| BadRequest("duration_secs: required with a job count".into()))?,
            )?;
            tags("tags", &req.tags)?;
            (1..=n.max(1))
                .map(|i| NewJob {
                    name: format!("job-{i}"),
                    stage: 0,
                    tags: req.tags.clone(),
                    duration,
                    protected: false,
                })
                .collect()
        }
        Jobs::Each(specs) => {
            if specs.is_empty() {
                return Err(BadRequest("jobs: at least one".into()));
            }
            let mut out = Vec::new();
            for (i, j) in specs.into_iter().enumerate() {
                tags(&format!("jobs[{i}].tags"), &j.tags)?;
                out.push(NewJob {
                    name: j.name.unwrap_or_else(|| format!("job-{}", i + 1)),
                    stage: j.stage,
                    tags: j.tags,
                    duration: seconds(&format!("jobs[{i}].duration_secs"), j.duration_secs)?,
                    protected: j.protected,
                });
            }
            out
        }
    };
    let mut created = Vec::new();
    for _ in 0..req.pipelines.unwrap_or(1).max(1) {
        let (pipeline, ids) = sim
            .gitlab
            .enqueue(&req.project, jobs.clone())
            .ok_or_else(|| BadRequest(format!("project: {:?} names a group", req.project)))?;
        created.push(json!({ "id": pipeline, "job_ids": ids }));
    }
    Ok((StatusCode::CREATED, Json(json!({ "pipelines": created }))).into_response())
}

async fn jobs(State(sim): State<Arc<Sim>>) -> Response {
    Json(sim.gitlab.jobs()).into_response()
}

async fn cancel(State(sim): State<Arc<Sim>>, Path(id): Path<u64>) -> Response {
    if sim.gitlab.cancel(id) {
        Json(json!({})).into_response()
    } else {
        (
            StatusCode::CONFLICT,
            Json(json!({ "error": format!("job {id}: unknown or already over") })),
        )
            .into_response()
    }
}

async fn runners(State(sim): State<Arc<Sim>>) -> Response {
    Json(sim.gitlab.runners()).into_response()
}

async fn add_webhook(
    State(sim): State<Arc<Sim>>,
    payload: Result<Json<HookTarget>, JsonRejection>,
) -> Answer {
    let w = body(payload)?;
    hook_url(&w.url)?;
    sim.gitlab.set_config(|c| c.webhooks.push(w));
    Ok((StatusCode::CREATED, Json(json!({}))).into_response())
}

/// GitLab's part of `/_sim/stats` and all of `/_sim/gitlab/stats`.
#[derive(Serialize)]
pub struct GitlabSummary {
    total: usize,
    /// Created or pending (whether or not handed to a runner that has not confirmed it).
    pending: usize,
    running: usize,
    finished: usize,
    succeeded: usize,
    /// Queue wait (pending until a runner confirmed it, or until now), simulated seconds.
    wait_secs: Waits,
    runners: usize,
    runners_busy: usize,
}

pub fn summary(sim: &Sim) -> GitlabSummary {
    let now = sim.clock.now_ms();
    let jobs = sim.gitlab.jobs();
    let mut waits: Vec<f64> = jobs
        .iter()
        .filter_map(|j| {
            let q = j.queued_ms?;
            Some((j.started_ms.unwrap_or(now) - q).max(0) as f64 / 1000.0)
        })
        .collect();
    waits.sort_by(f64::total_cmp);
    let count = |f: &dyn Fn(&str) -> bool| jobs.iter().filter(|j| f(&j.status)).count();
    let runners = sim.gitlab.runners();
    GitlabSummary {
        total: jobs.len(),
        pending: count(&|s| matches!(s, "created" | "pending" | "waiting_for_resource")),
        running: count(&|s| matches!(s, "running" | "canceling")),
        finished: count(&|s| matches!(s, "success" | "failed" | "canceled" | "skipped")),
        succeeded: count(&|s| s == "success"),
        wait_secs: Waits {
            p50: percentile(&waits, 50.0),
            p95: percentile(&waits, 95.0),
            max: waits.last().copied().unwrap_or(0.0),
        },
        runners: runners.len(),
        runners_busy: runners.iter().filter(|r| !r.jobs.is_empty()).count(),
    }
}

#[derive(Serialize)]
struct GitlabStats {
    api_calls: u64,
    by_endpoint: Vec<CallRow>,
    #[serde(flatten)]
    summary: GitlabSummary,
}

async fn stats(State(sim): State<Arc<Sim>>) -> Response {
    Json(GitlabStats {
        api_calls: sim.stats.total("gitlab"),
        by_endpoint: sim
            .stats
            .rows()
            .into_iter()
            .filter(|r| r.key.service == "gitlab")
            .collect(),
        summary: summary(&sim),
    })
    .into_response()
}

/// The `gitlab` section of `/_sim/faults`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitlabFaults {
    #[serde(default)]
    webhooks: Option<WebhookFaults>,
    #[serde(default)]
    api: Option<ApiFaults>,
    rate_limit_per_minute: Option<u32>,
    runner_requests_per_minute: Option<u32>,
    ack_timeout_secs: Option<f64>,
    ack_delay_secs: Option<f64>,
    stuck_timeout_secs: Option<f64>,
    webhook_auto_disable: Option<bool>,
}

impl GitlabFaults {
    /// Everything checked before anything changes.
    pub fn check(&self) -> Result<(), BadRequest> {
        if let Some(w) = &self.webhooks {
            share("gitlab.webhooks.drop", w.drop)?;
            share("gitlab.webhooks.duplicate", w.duplicate)?;
            share("gitlab.webhooks.delay", w.delay)?;
            seconds("gitlab.webhooks.delay_secs", w.delay_secs)?;
        }
        if let Some(a) = &self.api {
            share("gitlab.api.rate_limited", a.rate_limited)?;
            share("gitlab.api.server_errors", a.server_errors)?;
        }
        for (name, v) in [
            ("gitlab.ack_timeout_secs", self.ack_timeout_secs),
            ("gitlab.ack_delay_secs", self.ack_delay_secs),
            ("gitlab.stuck_timeout_secs", self.stuck_timeout_secs),
        ] {
            if let Some(v) = v {
                seconds(name, v)?;
            }
        }
        Ok(())
    }

    pub fn apply(self, gl: &Gitlab) {
        let secs = |v: Option<f64>| v.map(|s| Duration::from_secs_f64(s.max(0.0)));
        gl.set_config(|c| {
            overwrite(&mut c.webhook_faults, self.webhooks);
            overwrite(&mut c.api_faults, self.api);
            overwrite(&mut c.rate_limit_per_minute, self.rate_limit_per_minute);
            overwrite(
                &mut c.runner_requests_per_minute,
                self.runner_requests_per_minute,
            );
            overwrite(&mut c.ack_timeout, secs(self.ack_timeout_secs));
            overwrite(&mut c.ack_delay, secs(self.ack_delay_secs));
            overwrite(&mut c.stuck_timeout, secs(self.stuck_timeout_secs));
            overwrite(&mut c.webhook_auto_disable, self.webhook_auto_disable);
        });
    }
}
