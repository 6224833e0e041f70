//! The control API under `/_sim/` on every fake: enqueue jobs (GitHub runs, GitLab pipelines),
//! replay traces, read statistics, set fault knobs, reset. JSON in, JSON out; a bad request
//! says which field is wrong. GitLab's own calls live under `/_sim/gitlab/` (control_gitlab.rs).

use crate::github::WebhookFaults;
use crate::hetzner::DeprecationFault;
use crate::hetzner::catalog::Deprecation;
use crate::runners::{Delay, RunnerConfig, RunnerStats};
use crate::sim::Sim;
use crate::stats::CallRow;
use crate::trace::{self, TraceJob};
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/_sim/jobs", post(enqueue).get(jobs))
        .route("/_sim/jobs/{id}/cancel", post(cancel))
        .route("/_sim/trace", post(replay))
        .route("/_sim/stats", get(stats))
        .route("/_sim/servers", get(servers))
        .route("/_sim/faults", post(faults))
        .route("/_sim/webhooks", post(add_webhook))
        .route("/_sim/reset", post(reset))
        .merge(crate::control_gitlab::routes())
        .with_state(sim)
}

/// A request the control API refuses: 400 with `{"error": "…"}` naming the field.
pub(crate) struct BadRequest(pub(crate) String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, Json(json!({ "error": self.0 }))).into_response()
    }
}

pub(crate) type Answer = Result<Response, BadRequest>;

pub(crate) fn body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, BadRequest> {
    payload
        .map(|Json(v)| v)
        .map_err(|e| BadRequest(e.body_text()))
}

/// Checks jobs the way trace files are checked, so both say the same about the same mistake.
fn checked(jobs: &[TraceJob]) -> Result<Vec<TraceJob>, BadRequest> {
    let text = serde_json::to_string(jobs).map_err(|e| BadRequest(e.to_string()))?;
    trace::parse("request", &text).map_err(|e| BadRequest(e.to_string().replace("request: ", "")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Enqueue {
    repo: String,
    labels: Vec<String>,
    duration_secs: f64,
    /// Jobs in the run (default 1).
    #[serde(default)]
    jobs: Option<u32>,
    /// Runs of that shape (default 1).
    #[serde(default)]
    runs: Option<u32>,
}

async fn enqueue(
    State(sim): State<Arc<Sim>>,
    payload: Result<Json<Enqueue>, JsonRejection>,
) -> Answer {
    let req = body(payload)?;
    checked(&[TraceJob {
        at: 0.0,
        repo: req.repo.clone(),
        labels: req.labels.clone(),
        duration: req.duration_secs,
        run: None,
        forge: crate::trace::TraceForge::Github,
    }])?;
    let duration = Duration::from_secs_f64(req.duration_secs);
    let mut ids = Vec::new();
    for _ in 0..req.runs.unwrap_or(1).max(1) {
        ids.extend(sim.enqueue(&req.repo, &req.labels, duration, req.jobs.unwrap_or(1)));
    }
    Ok((StatusCode::CREATED, Json(json!({ "job_ids": ids }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cancel {
    /// Send the `completed` webhook (default true); false loses it.
    #[serde(default = "yes")]
    webhooks: bool,
}

fn yes() -> bool {
    true
}

async fn cancel(
    State(sim): State<Arc<Sim>>,
    axum::extract::Path(id): axum::extract::Path<u64>,
    payload: Result<Json<Cancel>, JsonRejection>,
) -> Answer {
    let req = body(payload)?;
    if sim.github.cancel(id, req.webhooks) {
        Ok(Json(json!({ "cancelled": id })).into_response())
    } else {
        Err(BadRequest(format!("job {id}: no such queued job")))
    }
}

async fn jobs(State(sim): State<Arc<Sim>>) -> Response {
    Json(sim.github.jobs()).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Replay {
    /// A trace as CSV or JSON text.
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    jobs: Option<Vec<TraceJob>>,
}

async fn replay(
    State(sim): State<Arc<Sim>>,
    payload: Result<Json<Replay>, JsonRejection>,
) -> Answer {
    let jobs = match body(payload)? {
        Replay {
            text: Some(text),
            jobs: None,
        } => trace::parse("trace", &text).map_err(|e| BadRequest(e.to_string()))?,
        Replay {
            text: None,
            jobs: Some(jobs),
        } => checked(&jobs)?,
        _ => {
            return Err(BadRequest(
                "give exactly one of `text` (CSV or JSON) and `jobs`".into(),
            ));
        }
    };
    let runs = trace::submissions(&jobs).len();
    let n = jobs.len();
    sim.replay(jobs);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "jobs": n, "runs": runs })),
    )
        .into_response())
}

async fn servers(State(sim): State<Arc<Sim>>) -> Response {
    Json(json!({ "servers": sim.hetzner.servers(), "billing": sim.hetzner.billing() }))
        .into_response()
}

#[derive(Serialize)]
pub(crate) struct Waits {
    pub(crate) p50: f64,
    pub(crate) p95: f64,
    pub(crate) max: f64,
}

#[derive(Serialize)]
struct JobStats {
    total: usize,
    queued: usize,
    in_progress: usize,
    completed: usize,
    succeeded: usize,
    /// Queue wait (queued until a runner took it, or until now), simulated seconds.
    wait_secs: Waits,
    per_job: Vec<JobWait>,
}

#[derive(Serialize)]
struct JobWait {
    id: u64,
    repo: String,
    status: String,
    wait_secs: f64,
}

#[derive(Serialize)]
struct ApiCalls {
    github: u64,
    gitlab: u64,
    hetzner: u64,
    by_endpoint: Vec<CallRow>,
}

#[derive(Serialize)]
struct Report {
    now_ms: i64,
    speed: f64,
    replaying: bool,
    api_calls: ApiCalls,
    jobs: JobStats,
    servers: serde_json::Value,
    /// Servers that exist now; at the end of a run every one of them is a leak.
    servers_existing: usize,
    billing: serde_json::Value,
    runners: usize,
    virtual_runners: RunnerStats,
    gitlab: crate::control_gitlab::GitlabSummary,
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn stats(State(sim): State<Arc<Sim>>) -> Response {
    let now = sim.clock.now_ms();
    let jobs = sim.github.jobs();
    let wait = |j: &crate::github::JobReport| {
        (j.started_ms.unwrap_or(now) - j.queued_ms).max(0) as f64 / 1000.0
    };
    let per_job: Vec<JobWait> = jobs
        .iter()
        .map(|j| JobWait {
            id: j.id,
            repo: j.repo.clone(),
            status: j.status.clone(),
            wait_secs: wait(j),
        })
        .collect();
    let mut waits: Vec<f64> = per_job.iter().map(|w| w.wait_secs).collect();
    waits.sort_by(f64::total_cmp);
    let count = |s: &str| jobs.iter().filter(|j| j.status == s).count();
    let servers = sim.hetzner.servers();
    let report = Report {
        now_ms: now,
        speed: sim.clock.speed(),
        replaying: sim.replaying(),
        api_calls: ApiCalls {
            github: sim.stats.total("github"),
            gitlab: sim.stats.total("gitlab"),
            hetzner: sim.stats.total("hetzner"),
            by_endpoint: sim.stats.rows(),
        },
        jobs: JobStats {
            total: jobs.len(),
            queued: count("queued"),
            in_progress: count("in_progress"),
            completed: count("completed"),
            succeeded: jobs
                .iter()
                .filter(|j| j.conclusion.as_deref() == Some("success"))
                .count(),
            wait_secs: Waits {
                p50: percentile(&waits, 50.0),
                p95: percentile(&waits, 95.0),
                max: waits.last().copied().unwrap_or(0.0),
            },
            per_job,
        },
        servers_existing: servers.len(),
        servers: serde_json::to_value(&servers).unwrap_or_default(),
        billing: serde_json::to_value(sim.hetzner.billing()).unwrap_or_default(),
        runners: sim.github.runners().len(),
        virtual_runners: sim.runners.stats(),
        gitlab: crate::control_gitlab::summary(&sim),
    };
    Json(report).into_response()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Faults {
    #[serde(default)]
    webhooks: Option<WebhookFaults>,
    #[serde(default)]
    runners: Option<RunnerFaults>,
    #[serde(default)]
    hetzner: Option<HetznerFaults>,
    #[serde(default)]
    github: Option<GithubLimits>,
    #[serde(default)]
    gitlab: Option<crate::control_gitlab::GitlabFaults>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunnerFaults {
    never_register: Option<f64>,
    crash: Option<f64>,
    boot_delay: Option<Delay>,
    seed: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HetznerFaults {
    server_quota: Option<u32>,
    /// `[["cpx32", "hel1"], …]`: types out of stock in those locations.
    unavailable: Option<Vec<(String, String)>>,
    /// `["cx23", …]`: types gone from the catalogue (not listed, creates refused as unknown).
    missing_types: Option<Vec<String>>,
    /// Deprecations announced now, replacing the earlier injected ones.
    deprecations: Option<Vec<DeprecationSpec>>,
    rate_limit_per_hour: Option<u32>,
    /// Simulated seconds from create (or power on) until `running`.
    boot_delay_secs: Option<f64>,
    /// Simulated seconds from the OS powering off until `off`.
    shutdown_delay_secs: Option<f64>,
    /// Simulated seconds a rebuild runs.
    action_delay_secs: Option<f64>,
    /// Wall-clock seconds added to every answer, whatever the speed.
    latency_secs: Option<f64>,
}

/// `{"server_type": "cx23", "location": "fsn1", "unavailable_in_secs": 86400}`: announced now,
/// orderable for that many more simulated seconds (negative: already past). Without a location,
/// everywhere the type is sold.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeprecationSpec {
    server_type: String,
    location: Option<String>,
    unavailable_in_secs: f64,
}

impl HetznerFaults {
    /// The deprecations to set, dated from `now_ms`; each delay must be a finite number.
    fn deprecations(&self, now_ms: i64) -> Result<Option<Vec<DeprecationFault>>, BadRequest> {
        let Some(specs) = &self.deprecations else {
            return Ok(None);
        };
        specs
            .iter()
            .map(|d| {
                if !d.unavailable_in_secs.is_finite() {
                    return Err(BadRequest(format!(
                        "hetzner.deprecations: unavailable_in_secs must be a number of seconds, got {}",
                        d.unavailable_in_secs
                    )));
                }
                Ok(DeprecationFault {
                    server_type: d.server_type.clone(),
                    location: d.location.clone(),
                    deprecation: Deprecation {
                        announced_ms: now_ms,
                        unavailable_after_ms: now_ms + (d.unavailable_in_secs * 1000.0) as i64,
                    },
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The delays that are set, checked: each a finite number of seconds, not negative.
    fn delays(&self) -> Result<[Option<Duration>; 3], BadRequest> {
        let check = |name: &str, v: Option<f64>| match v {
            Some(s) if !(s.is_finite() && s >= 0.0) => Err(BadRequest(format!(
                "hetzner.{name}: seconds, 0 or more, got {s}"
            ))),
            v => Ok(v.map(Duration::from_secs_f64)),
        };
        Ok([
            check("boot_delay_secs", self.boot_delay_secs)?,
            check("shutdown_delay_secs", self.shutdown_delay_secs)?,
            check("action_delay_secs", self.action_delay_secs)?,
        ])
    }

    fn latency(&self) -> Result<Option<Duration>, BadRequest> {
        latency("hetzner", self.latency_secs)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GithubLimits {
    rate_limit_per_hour: Option<u32>,
    writes_per_minute: Option<u32>,
    /// Wall-clock seconds added to every REST answer, whatever the speed.
    latency_secs: Option<f64>,
}

/// A latency fault: wall-clock seconds, 0 to an hour (a longer one would only hang a test).
fn latency(api: &str, secs: Option<f64>) -> Result<Option<Duration>, BadRequest> {
    match secs {
        Some(s) if !(s.is_finite() && (0.0..=3600.0).contains(&s)) => Err(BadRequest(format!(
            "{api}.latency_secs: seconds from 0 to 3600, got {s}"
        ))),
        s => Ok(s.map(Duration::from_secs_f64)),
    }
}

pub(crate) fn share(name: &str, v: f64) -> Result<f64, BadRequest> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(BadRequest(format!("{name}: a share from 0 to 1, got {v}")))
    }
}

/// A setting changed only where the request named it: the others keep their values.
pub(crate) fn overwrite<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

async fn faults(
    State(sim): State<Arc<Sim>>,
    payload: Result<Json<Faults>, JsonRejection>,
) -> Answer {
    let f = body(payload)?;
    // Check everything before changing anything: a bad request changes nothing.
    if let Some(w) = &f.webhooks {
        share("webhooks.drop", w.drop)?;
        share("webhooks.duplicate", w.duplicate)?;
        share("webhooks.reorder", w.reorder)?;
    }
    if let Some(r) = &f.runners {
        r.never_register
            .map(|v| share("runners.never_register", v))
            .transpose()?;
        r.crash.map(|v| share("runners.crash", v)).transpose()?;
    }
    let delays = match &f.hetzner {
        Some(h) => h.delays()?,
        None => [None; 3],
    };
    let hetzner_latency = match &f.hetzner {
        Some(h) => h.latency()?,
        None => None,
    };
    let github_latency = match &f.github {
        Some(g) => latency("github", g.latency_secs)?,
        None => None,
    };
    if let Some(g) = &f.gitlab {
        g.check()?;
    }
    let deprecations = match &f.hetzner {
        Some(h) => h.deprecations(sim.clock.now_ms())?,
        None => None,
    };
    if let Some(w) = f.webhooks {
        sim.github.set_config(|c| c.webhook_faults = w);
    }
    if let Some(r) = f.runners {
        let mut config: RunnerConfig = sim.runners.config();
        overwrite(&mut config.never_register, r.never_register);
        overwrite(&mut config.crash, r.crash);
        overwrite(&mut config.boot_delay, r.boot_delay);
        overwrite(&mut config.seed, r.seed);
        sim.runners.set_config(config);
    }
    if let Some(h) = f.hetzner {
        sim.hetzner.set_config(|c| {
            overwrite(&mut c.server_quota, h.server_quota);
            overwrite(&mut c.unavailable, h.unavailable);
            overwrite(&mut c.missing_types, h.missing_types);
            overwrite(&mut c.deprecations, deprecations);
            overwrite(&mut c.rate_limit_per_hour, h.rate_limit_per_hour);
            let [boot, shutdown, action] = delays;
            overwrite(&mut c.boot_delay, boot);
            overwrite(&mut c.shutdown_delay, shutdown);
            overwrite(&mut c.action_delay, action);
            overwrite(&mut c.latency, hetzner_latency);
        });
    }
    if let Some(g) = f.gitlab {
        g.apply(&sim.gitlab);
    }
    if let Some(g) = f.github {
        sim.github.set_config(|c| {
            overwrite(&mut c.rate_limit_per_hour, g.rate_limit_per_hour);
            overwrite(&mut c.writes_per_minute, g.writes_per_minute);
            overwrite(&mut c.latency, github_latency);
        });
    }
    Ok(Json(json!({})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Webhook {
    url: String,
    secret: String,
}

/// A webhook receiver's URL, for either forge: http(s) only, as both forges require.
pub(crate) fn hook_url(url: &str) -> Result<(), BadRequest> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(BadRequest(format!(
            "url: expected http(s)://…, got {url:?}"
        )))
    }
}

async fn add_webhook(
    State(sim): State<Arc<Sim>>,
    payload: Result<Json<Webhook>, JsonRejection>,
) -> Answer {
    let w = body(payload)?;
    hook_url(&w.url)?;
    sim.github.set_config(|c| {
        c.webhooks.push(crate::github::WebhookTarget {
            url: w.url,
            secret: w.secret,
        })
    });
    Ok((StatusCode::CREATED, Json(json!({}))).into_response())
}

async fn reset(State(sim): State<Arc<Sim>>) -> Response {
    sim.reset();
    Json(json!({})).into_response()
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 10.0);
        assert_eq!(percentile(&v, 95.0), 19.0);
        assert_eq!(percentile(&[], 95.0), 0.0);
        assert_eq!(percentile(&[3.0], 50.0), 3.0);
    }
}
