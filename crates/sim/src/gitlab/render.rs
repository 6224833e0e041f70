//! The fake GitLab's JSON, shaped as GitLab's API entities and webhook payloads (the fields
//! python-gitlab and mayfly read, and enough of the rest to look like GitLab).

use super::runners::Runner;
use super::state::{Group, Job, Project, State, Status};
use serde_json::{Value, json};

/// GitLab's REST timestamps: `2015-12-24T15:51:21.880Z`.
pub fn iso(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// Whole seconds, for the `*_iso` webhook fields: `2021-02-23T02:41:37Z`.
fn iso_secs(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn opt_iso(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |m| Value::String(iso(m)))
}

pub fn user(origin: &str, id: u64, username: &str, admin: bool) -> Value {
    json!({
        "id": id,
        "username": username,
        "name": username,
        "state": "active",
        "locked": false,
        "avatar_url": null,
        "web_url": format!("{origin}/{username}"),
        "is_admin": admin,
        "bot": false,
    })
}

pub fn namespace(origin: &str, g: &Group) -> Value {
    json!({
        "id": g.id,
        "name": g.path,
        "path": g.path,
        "kind": "group",
        "full_path": g.full_path,
        "parent_id": g.parent,
        "web_url": format!("{origin}/groups/{}", g.full_path),
    })
}

pub fn group(origin: &str, g: &Group) -> Value {
    json!({
        "id": g.id,
        "name": g.path,
        "path": g.path,
        "full_name": g.full_path.replace('/', " / "),
        "full_path": g.full_path,
        "parent_id": g.parent,
        "visibility": "private",
        "created_at": iso(g.created_ms),
        "web_url": format!("{origin}/groups/{}", g.full_path),
    })
}

pub fn project(origin: &str, st: &State, p: &Project) -> Value {
    let ns = st.groups.get(&p.namespace);
    json!({
        "id": p.id,
        "name": p.path,
        "path": p.path,
        "name_with_namespace": p.full_path.replace('/', " / "),
        "path_with_namespace": p.full_path,
        "description": "",
        "default_branch": "main",
        "visibility": "private",
        "created_at": iso(p.created_ms),
        "web_url": format!("{origin}/{}", p.full_path),
        "http_url_to_repo": format!("{origin}/{}.git", p.full_path),
        "namespace": ns.map(|g| namespace(origin, g)),
        "shared_runners_enabled": true,
        "jobs_enabled": true,
    })
}

fn project_ref(origin: &str, p: &Project) -> Value {
    json!({
        "id": p.id,
        "name": p.path,
        "name_with_namespace": p.full_path.replace('/', " / "),
        "path": p.path,
        "path_with_namespace": p.full_path,
        "web_url": format!("{origin}/{}", p.full_path),
    })
}

/// A runner as lists show it.
pub fn runner_summary(r: &Runner, now_ms: i64) -> Value {
    let status = r.status(now_ms);
    json!({
        "id": r.id,
        "description": r.description,
        "ip_address": null,
        "active": !r.paused,
        "paused": r.paused,
        "is_shared": r.owner == super::runners::Owner::Instance,
        "runner_type": r.owner.type_name(),
        "name": null,
        "online": status == "online",
        "status": status,
        "created_at": iso(r.created_ms),
        "created_by": { "username": r.created_by },
    })
}

/// `GET /runners/:id`.
pub fn runner_detail(origin: &str, st: &State, r: &Runner, now_ms: i64) -> Value {
    let mut v = runner_summary(r, now_ms);
    let (projects, groups): (Vec<Value>, Vec<Value>) = match r.owner {
        super::runners::Owner::Project(p) => (
            st.projects
                .get(&p)
                .map(|p| project_ref(origin, p))
                .into_iter()
                .collect(),
            Vec::new(),
        ),
        super::runners::Owner::Group(g) => (
            Vec::new(),
            st.groups
                .get(&g)
                .map(|g| json!({ "id": g.id, "name": g.path, "web_url": format!("{origin}/groups/{}", g.full_path) }))
                .into_iter()
                .collect(),
        ),
        super::runners::Owner::Instance => (Vec::new(), Vec::new()),
    };
    if let Some(m) = v.as_object_mut() {
        for (k, val) in [
            ("tag_list", json!(r.tags)),
            ("run_untagged", json!(r.run_untagged)),
            ("locked", json!(r.locked)),
            ("maximum_timeout", json!(r.maximum_timeout)),
            ("access_level", json!(r.access_level)),
            ("maintenance_note", json!(r.maintenance_note)),
            ("contacted_at", opt_iso(r.contacted_ms)),
            // Since GitLab 18.0 these live on the managers.
            ("version", Value::Null),
            ("revision", Value::Null),
            ("platform", Value::Null),
            ("architecture", Value::Null),
            ("projects", json!(projects)),
            ("groups", json!(groups)),
        ] {
            m.insert(k.into(), val);
        }
    }
    v
}

pub fn manager(m: &super::runners::Manager, now_ms: i64) -> Value {
    json!({
        "id": m.id,
        "system_id": m.system_id,
        "version": m.version,
        "revision": "sim",
        "platform": m.platform,
        "architecture": m.architecture,
        "created_at": iso(m.created_ms),
        "contacted_at": iso(m.contacted_ms),
        "ip_address": "127.0.0.1",
        "status": super::runners::liveness(m.created_ms, Some(m.contacted_ms), now_ms),
    })
}

fn sha_of(st: &State, j: &Job) -> String {
    st.pipelines
        .get(&j.pipeline_id)
        .map(|p| p.sha.clone())
        .unwrap_or_default()
}

fn durations(j: &Job, now_ms: i64) -> (Value, Value) {
    let duration = j
        .started_ms
        .map(|s| (j.finished_ms.unwrap_or(now_ms) - s) as f64 / 1000.0);
    let queued = j
        .queued_ms
        .map(|q| (j.started_ms.unwrap_or(now_ms) - q) as f64 / 1000.0);
    (json!(duration), json!(queued))
}

/// A job as `GET /projects/:id/jobs[/:job_id]` shows it.
pub fn job(origin: &str, st: &State, j: &Job, now_ms: i64) -> Value {
    let project = st.projects.get(&j.project_id);
    let path = project.map(|p| p.full_path.clone()).unwrap_or_default();
    let sha = sha_of(st, j);
    let pipeline = st.pipelines.get(&j.pipeline_id);
    let (duration, queued) = durations(j, now_ms);
    let runner = j
        .runner_id
        .and_then(|r| st.runners.get(&r))
        .map(|r| runner_summary(r, now_ms));
    let mut v = json!({
        "id": j.id,
        "status": j.status.as_str(),
        "stage": j.stage_name(),
        "name": j.name,
        "ref": "main",
        "tag": false,
        "coverage": null,
        "allow_failure": false,
        "created_at": iso(j.created_ms),
        "started_at": opt_iso(j.started_ms),
        "finished_at": opt_iso(j.finished_ms),
        "erased_at": null,
        "duration": duration,
        "queued_duration": queued,
        "user": user(origin, 1, "root", true),
        "commit": {
            "id": sha,
            "short_id": sha.get(..8).unwrap_or(""),
            "title": "Simulated commit",
            "message": "Simulated commit\n",
            "author_name": "root",
        },
        "pipeline": pipeline.map(|p| json!({
            "id": p.id,
            "iid": p.iid,
            "project_id": p.project_id,
            "sha": p.sha,
            "ref": p.ref_name,
            "status": st.pipeline_status(p.id).as_str(),
            "source": "push",
            "created_at": iso(p.created_ms),
            "updated_at": iso(p.updated_ms),
            "web_url": format!("{origin}/{path}/-/pipelines/{}", p.id),
        })),
        "web_url": format!("{origin}/{path}/-/jobs/{}", j.id),
        "project": { "ci_job_token_scope_enabled": false },
        "artifacts": [],
        "runner": runner,
        "runner_manager": null,
        "artifacts_expire_at": null,
        "archived": false,
        "tag_list": j.tags,
    });
    if let (Some(reason), Some(m)) = (&j.failure_reason, v.as_object_mut()) {
        m.insert("failure_reason".into(), json!(reason));
    }
    v
}

/// The job a runner gets from `POST /jobs/request` (a subset of gitlab-runner's `JobResponse`).
pub fn job_for_runner(origin: &str, st: &State, j: &Job) -> Value {
    let project = st.projects.get(&j.project_id);
    let path = project.map(|p| p.full_path.clone()).unwrap_or_default();
    let sha = sha_of(st, j);
    let var = |key: &str, value: String, public: bool, masked: bool| json!({ "key": key, "value": value, "public": public, "file": false, "masked": masked, "raw": false });
    let secs = j.duration.as_secs_f64();
    json!({
        "id": j.id,
        "token": j.token,
        "allow_git_fetch": true,
        "job_info": {
            "id": j.id,
            "name": j.name,
            "stage": j.stage_name(),
            "pipeline_id": j.pipeline_id,
            "project_id": j.project_id,
            "project_name": project.map(|p| p.path.clone()),
            "project_full_path": path,
            "time_in_queue_seconds": 0,
        },
        "git_info": {
            "repo_url": format!("{origin}/{path}.git"),
            "repo_object_format": "sha1",
            "ref": "main",
            "sha": sha,
            "before_sha": "0000000000000000000000000000000000000000",
            "ref_type": "branch",
            "refspecs": ["+refs/heads/main:refs/remotes/origin/main"],
            "depth": 20,
            "protected": j.protected,
        },
        "runner_info": { "timeout": j.timeout_secs, "runner_session_url": null },
        "inputs": [],
        "variables": [
            var("CI_JOB_ID", j.id.to_string(), true, false),
            var("CI_JOB_TOKEN", j.token.clone(), false, true),
            var("CI_PROJECT_ID", j.project_id.to_string(), true, false),
            var("CI_PROJECT_PATH", path.clone(), true, false),
            var("CI_PIPELINE_ID", j.pipeline_id.to_string(), true, false),
            var("CI_SERVER_URL", origin.to_string(), true, false),
        ],
        "steps": [{
            "name": "script",
            "script": [format!("sleep {secs}")],
            "timeout": j.timeout_secs,
            "when": "on_success",
            "allow_failure": false,
        }],
        "image": null,
        "services": [],
        "artifacts": [],
        "cache": [],
        "credentials": [],
        "dependencies": [],
        "features": { "trace_sections": true, "failure_reasons": ["script_failure", "runner_system_failure", "job_execution_timeout"] },
    })
}

/// GitLab's old webhook time format (`2021-02-23 02:41:37 UTC`) is long gone from Job Hooks;
/// they carry ISO times with milliseconds plus whole-second `*_iso` fields.
fn hook_times(ms: Option<i64>) -> (Value, Value) {
    match ms {
        Some(m) => (json!(iso(m)), json!(iso_secs(m))),
        None => (Value::Null, Value::Null),
    }
}

/// A Job Hook payload (`object_kind: build`) for the job's change to `status`. The job's own
/// tags are not in it, as in GitLab; `runner` is null until a runner runs the job.
pub fn job_hook(origin: &str, st: &State, j: &Job, status: Status, now_ms: i64) -> Value {
    let project = st.projects.get(&j.project_id);
    let path = project.map(|p| p.full_path.clone()).unwrap_or_default();
    let sha = sha_of(st, j);
    let (created, created_iso) = hook_times(Some(j.created_ms));
    let waiting = matches!(status, Status::Created | Status::Pending);
    let (started, started_iso) = hook_times(j.started_ms.filter(|_| !waiting));
    let (finished, finished_iso) = hook_times(j.finished_ms.filter(|_| status.finished()));
    let (duration, queued) = durations(j, now_ms);
    let runner = j
        .runner_id
        .filter(|_| !waiting)
        .and_then(|r| st.runners.get(&r))
        .map(|r| {
            json!({
                "id": r.id,
                "description": r.description,
                "runner_type": r.owner.type_name(),
                "active": !r.paused,
                "is_shared": r.owner == super::runners::Owner::Instance,
                "tags": r.tags,
            })
        });
    let pipeline_status = st.pipeline_status(j.pipeline_id);
    json!({
        "object_kind": "build",
        "ref": "main",
        "tag": false,
        "before_sha": "0000000000000000000000000000000000000000",
        "sha": sha,
        "retries_count": 0,
        "build_id": j.id,
        "build_name": j.name,
        "build_stage": j.stage_name(),
        "build_status": status.as_str(),
        "build_created_at": created,
        "build_started_at": started,
        "build_finished_at": finished,
        "build_created_at_iso": created_iso,
        "build_started_at_iso": started_iso,
        "build_finished_at_iso": finished_iso,
        "build_duration": duration,
        "build_queued_duration": queued,
        "build_allow_failure": false,
        "build_failure_reason": j.failure_reason.clone().unwrap_or_else(|| "unknown_failure".into()),
        "pipeline_id": j.pipeline_id,
        "runner": runner,
        "project_id": j.project_id,
        "project_name": path.replace('/', " / "),
        "user": { "id": 1, "name": "root", "username": "root", "avatar_url": null, "email": "[REDACTED]" },
        "commit": {
            "id": j.pipeline_id,
            "name": null,
            "sha": sha,
            "message": "Simulated commit\n",
            "author_name": "root",
            "author_email": "root@example.com",
            "author_url": format!("{origin}/root"),
            "status": pipeline_status.as_str(),
            "duration": null,
            "started_at": null,
            "finished_at": null,
        },
        "repository": {
            "name": project.map(|p| p.path.clone()),
            "url": format!("{origin}/{path}.git"),
            "description": "",
            "homepage": format!("{origin}/{path}"),
            "git_http_url": format!("{origin}/{path}.git"),
            "git_ssh_url": format!("git@sim:{path}.git"),
            "visibility_level": 0,
        },
        "project": {
            "id": j.project_id,
            "name": project.map(|p| p.path.clone()),
            "description": "",
            "web_url": format!("{origin}/{path}"),
            "avatar_url": null,
            "git_ssh_url": format!("git@sim:{path}.git"),
            "git_http_url": format!("{origin}/{path}.git"),
            "namespace": path.rsplit_once('/').map(|(ns, _)| ns.to_string()),
            "visibility_level": 0,
            "path_with_namespace": path,
            "default_branch": "main",
            "ci_config_path": null,
        },
        "environment": null,
    })
}

pub fn hook(h: &super::state::Hook) -> Value {
    let (project_id, group_id) = match h.owner {
        super::state::HookOwner::Project(p) => (Some(p), None),
        super::state::HookOwner::Group(g) => (None, Some(g)),
    };
    json!({
        "id": h.id,
        "url": h.url,
        "project_id": project_id,
        "group_id": group_id,
        "job_events": h.job_events,
        "pipeline_events": h.pipeline_events,
        "push_events": false,
        "enable_ssl_verification": true,
        "alert_status": "executable",
        "created_at": iso(h.created_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_like_gitlabs() {
        assert_eq!(iso(1_450_972_281_880), "2015-12-24T15:51:21.880Z");
        assert_eq!(iso_secs(1_614_048_097_886), "2021-02-23T02:41:37Z");
    }
}
