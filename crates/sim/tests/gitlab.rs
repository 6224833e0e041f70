//! The fake GitLab over real HTTP: tokens and scopes, runner records, the runner API and the job
//! state machine (two-phase commit and its expiry), the demand views and their pagination, rate
//! limits, Job Hooks and their faults, API faults, and virtual runners that start from a
//! `gitlab-runner run-single` command line in a server's user data.

mod support;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use mayfly_sim::clock::Clock;
use mayfly_sim::gitlab::{AccessToken, ApiFaults, Gitlab, GitlabConfig, NewJob, WebhookFaults};
use mayfly_sim::hetzner::HetznerConfig;
use mayfly_sim::runners::{Delay, RunnerConfig};
use mayfly_sim::stats::Stats;
use mayfly_sim::{Sim, SimConfig};
use reqwest::Client;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const TOKEN: &str = "glpat-test-root";
const READER: &str = "glpat-test-reader";
const CREATOR: &str = "glpat-test-creator";

struct Fake {
    gl: Arc<Gitlab>,
    stats: Arc<Stats>,
    /// `http://127.0.0.1:port/api/v4`.
    api: String,
    http: Client,
}

fn config() -> GitlabConfig {
    GitlabConfig {
        tokens: vec![
            AccessToken::full(TOKEN),
            AccessToken {
                token: READER.into(),
                username: "reader".into(),
                scopes: vec!["read_api".into()],
                admin: false,
            },
            AccessToken {
                token: CREATOR.into(),
                username: "creator".into(),
                scopes: vec!["create_runner".into()],
                admin: false,
            },
        ],
        ..GitlabConfig::default()
    }
}

async fn start(config: GitlabConfig, speed: f64) -> Fake {
    let stats = Arc::new(Stats::default());
    let gl = Gitlab::new(config, Clock::new(speed), stats.clone());
    let url = gl.serve_local().await.unwrap();
    Fake {
        gl,
        stats,
        api: format!("{url}/api/v4"),
        http: Client::new(),
    }
}

fn job(tags: &[&str], stage: u32) -> NewJob {
    NewJob {
        name: format!("job-{stage}"),
        stage,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        duration: Duration::from_secs(60),
        protected: false,
    }
}

impl Fake {
    async fn get_as(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.api))
            .header("PRIVATE-TOKEN", token)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.get_as(TOKEN, path).await
    }

    async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        assert_eq!(r.headers()["content-type"], "application/json");
        r.json().await.unwrap()
    }

    async fn post_as(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.api))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.post_as(TOKEN, path, body).await
    }

    /// A runner record; its id and glrt- token.
    async fn runner(&self, body: Value) -> (u64, String) {
        let r = self.post("/user/runners", body).await;
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        (
            v["id"].as_u64().unwrap(),
            v["token"].as_str().unwrap().to_string(),
        )
    }

    /// `POST /jobs/request` as gitlab-runner 19 sends it.
    async fn request(&self, token: &str, last_update: Option<&str>) -> reqwest::Response {
        let mut body = json!({
            "token": token,
            "system_id": "s_0123456789ab",
            "info": { "name": "gitlab-runner", "version": "19.4.0", "executor": "shell",
                      "features": { "two_phase_job_commit": true, "cancelable": true } },
        });
        if let Some(l) = last_update {
            body["last_update"] = json!(l);
        }
        self.http
            .post(format!("{}/jobs/request", self.api))
            .header("RUNNER-TOKEN", token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn put_job(&self, id: u64, job_token: &str, state: &str) -> reqwest::Response {
        self.http
            .put(format!("{}/jobs/{id}", self.api))
            .json(&json!({ "token": job_token, "state": state }))
            .send()
            .await
            .unwrap()
    }

    fn calls(&self, method: &str, route_suffix: &str) -> u64 {
        self.stats
            .rows()
            .iter()
            .filter(|r| r.key.method == method && r.key.route.ends_with(route_suffix))
            .map(|r| r.count.calls)
            .sum()
    }
}

#[tokio::test]
async fn runner_records_are_created_verified_listed_filtered_and_deleted() {
    let f = start(config(), 1.0).await;
    let app = f.gl.project("acme/platform/app").unwrap();
    let group = f.gl.group("acme");

    // tag_list as an array, and as a comma-separated string (what python-gitlab sends).
    let (project_runner, token) = f
        .runner(json!({ "runner_type": "project_type", "project_id": app, "tag_list": ["linux", "docker"],
                        "description": "mayfly-linux-1", "run_untagged": false, "locked": true }))
        .await;
    assert!(token.starts_with("glrt-"));
    let (group_runner, group_token) = f
        .runner(json!({ "runner_type": "group_type", "group_id": group, "tag_list": "gpu, linux", "paused": true }))
        .await;
    // A form body, as curl --form sends it.
    let r = f
        .http
        .post(format!("{}/user/runners", f.api))
        .header("PRIVATE-TOKEN", TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("runner_type=instance_type&tag_list=any")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Bad requests say what is wrong.
    for (body, want) in [
        (json!({}), "runner_type is missing"),
        (
            json!({ "runner_type": "group_type" }),
            "group_id is missing",
        ),
        (
            json!({ "runner_type": "fleet_type" }),
            "runner_type does not have a valid value",
        ),
    ] {
        let r = f.post("/user/runners", body).await;
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains(want), "{v}");
    }
    let r = f
        .post(
            "/user/runners",
            json!({ "runner_type": "project_type", "project_id": app, "run_untagged": false }),
        )
        .await;
    assert_eq!(
        r.status(),
        400,
        "no tags and no untagged jobs: nothing to run"
    );

    // Verify: 200 with the id; a system id adds a manager.
    let r = f
        .post_as("", "/runners/verify", json!({ "token": token }))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], project_runner);
    let detail = f.get_json(&format!("/runners/{project_runner}")).await;
    assert_eq!(detail["status"], "online");
    let r = f
        .post_as(
            "",
            "/runners/verify",
            json!({ "token": token, "system_id": "s_aaaa" }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let managers = f
        .get_json(&format!("/runners/{project_runner}/managers"))
        .await;
    assert_eq!(managers[0]["system_id"], "s_aaaa");
    let r = f
        .post_as("", "/runners/verify", json!({ "token": "glrt-unknown" }))
        .await;
    assert_eq!(r.status(), 403);

    let detail = f.get_json(&format!("/runners/{project_runner}")).await;
    assert_eq!(detail["runner_type"], "project_type");
    assert_eq!(detail["tag_list"], json!(["linux", "docker"]));
    assert_eq!(detail["description"], "mayfly-linux-1");
    assert_eq!(
        (detail["locked"].as_bool(), detail["run_untagged"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(
        detail["projects"][0]["path_with_namespace"],
        "acme/platform/app"
    );
    assert!(detail.get("token").is_none(), "the token is shown once");
    let g = f.get_json(&format!("/runners/{group_runner}")).await;
    assert_eq!(g["tag_list"], json!(["gpu", "linux"]));
    assert_eq!(
        (g["paused"].as_bool(), g["status"].as_str()),
        (Some(true), Some("never_contacted"))
    );

    // Lists and their filters.
    let ids = |v: &Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(
        ids(&f.get_json("/runners").await),
        [project_runner, group_runner],
        "no instance runner"
    );
    assert_eq!(ids(&f.get_json("/runners/all").await).len(), 3);
    assert_eq!(
        ids(&f.get_json("/projects/acme%2Fplatform%2Fapp/runners").await).len(),
        3,
        "own, group's, instance"
    );
    for (query, want) in [
        ("/runners?type=group_type".to_string(), group_runner),
        ("/runners?paused=true".to_string(), group_runner),
        ("/runners?status=online".to_string(), project_runner),
        ("/runners?tag_list=linux,docker".to_string(), project_runner),
        (
            format!("/projects/{app}/runners?type=project_type"),
            project_runner,
        ),
        (
            format!("/groups/{group}/runners?type=group_type"),
            group_runner,
        ),
    ] {
        assert_eq!(ids(&f.get_json(&query).await), [want], "{query}");
    }
    let r = f.get("/runners?type=fleet").await;
    assert_eq!(r.status(), 400);

    // Deleted by id (then 404), and by token.
    let r = f
        .http
        .delete(format!("{}/runners/{project_runner}", f.api))
        .header("PRIVATE-TOKEN", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = f.get(&format!("/runners/{project_runner}")).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["message"],
        "404 Runner Not Found"
    );
    let r = f
        .http
        .delete(format!("{}/runners?token={group_token}", f.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        f.gl.runners()
            .iter()
            .all(|r| r.runner_type == "instance_type")
    );
}

#[tokio::test]
async fn tokens_and_scopes_are_answered_401_and_403_as_gitlab_does() {
    let f = start(config(), 1.0).await;
    let app = f.gl.project("acme/app").unwrap();
    let r = f
        .http
        .get(format!("{}/projects/{app}/jobs", f.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["message"],
        "401 Unauthorized"
    );
    let r = f
        .get_as("glpat-wrong", &format!("/projects/{app}/jobs"))
        .await;
    assert_eq!(r.status(), 401);
    // The query parameter works too.
    let r = f
        .http
        .get(format!("{}/projects/{app}?private_token={TOKEN}", f.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = f.get_as(READER, &format!("/projects/{app}/jobs")).await;
    assert_eq!(r.status(), 200);
    let r = f
        .post_as(
            READER,
            "/user/runners",
            json!({ "runner_type": "project_type", "project_id": app }),
        )
        .await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "insufficient_scope");
    assert_eq!(v["scope"], "api create_runner");

    let r = f.get_as(CREATOR, &format!("/projects/{app}/jobs")).await;
    assert_eq!(r.status(), 403, "create_runner cannot read");
    let r = f
        .post_as(
            CREATOR,
            "/user/runners",
            json!({ "runner_type": "project_type", "project_id": app, "tag_list": ["x"] }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = f
        .post_as(
            CREATOR,
            "/user/runners",
            json!({ "runner_type": "instance_type", "tag_list": ["x"] }),
        )
        .await;
    assert_eq!(r.status(), 403, "instance runners need an administrator");
    let r = f.get_as(READER, "/runners/all").await;
    assert_eq!(r.status(), 403);
    let r = f
        .post_as(
            TOKEN,
            "/user/runners",
            json!({ "runner_type": "project_type", "project_id": 999_999, "tag_list": ["x"] }),
        )
        .await;
    assert_eq!(r.status(), 403, "a project the user cannot see");
    let r = f.get(&format!("/projects/{}", 999_999)).await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["message"],
        "404 Project Not Found"
    );
}

#[tokio::test]
async fn jobs_move_through_the_runner_api_and_the_stages() {
    let f = start(config(), 1.0).await;
    let (pipeline, ids) =
        f.gl.enqueue("acme/app", vec![job(&["linux"], 0), job(&["linux"], 1)])
            .unwrap();
    let app = f.gl.project("acme/app").unwrap();
    let one = |id: u64| format!("/projects/{app}/jobs/{id}");
    assert_eq!(f.get_json(&one(ids[0])).await["status"], "pending");
    assert_eq!(f.get_json(&one(ids[1])).await["status"], "created");
    assert_eq!(f.get_json(&one(ids[0])).await["tag_list"], json!(["linux"]));

    let (runner, token) = f
        .runner(json!({ "runner_type": "project_type", "project_id": app, "tag_list": ["linux"], "run_untagged": false }))
        .await;
    let r = f.request(&token, None).await;
    assert_eq!(r.status(), 201);
    let handed: Value = r.json().await.unwrap();
    assert_eq!(handed["id"], ids[0]);
    let job_token = handed["token"].as_str().unwrap().to_string();
    assert_eq!(handed["git_info"]["sha"].as_str().map(str::len), Some(40));
    assert_eq!(handed["job_info"]["project_id"], app);
    // Two-phase commit: still pending until confirmed, but the runner is named.
    let shown = f.get_json(&one(ids[0])).await;
    assert_eq!(
        (shown["status"].as_str(), shown["runner"]["id"].as_u64()),
        (Some("pending"), Some(runner))
    );
    let running = f
        .get_json(&format!("/runners/{runner}/jobs?status=running"))
        .await;
    assert_eq!(running, json!([]));

    let r = f.put_job(ids[0], &job_token, "running").await;
    assert_eq!(
        (r.status(), r.headers()["job-status"].to_str().unwrap()),
        (StatusCode::OK, "running")
    );
    let running = f
        .get_json(&format!("/runners/{runner}/jobs?status=running"))
        .await;
    assert_eq!(running[0]["id"], ids[0]);
    let r = f.put_job(ids[0], "glcbt-wrong", "success").await;
    assert_eq!(r.status(), 403);

    // The trace: appended where it ends; elsewhere 416 with the size to resume from.
    let patch = |range: &'static str, body: &'static str| {
        f.http
            .patch(format!("{}/jobs/{}/trace", f.api, ids[0]))
            .header("JOB-TOKEN", &job_token)
            .header("Content-Range", range)
            .body(body)
            .send()
    };
    let r = patch("0-4", "hello").await.unwrap();
    assert_eq!(
        (r.status(), r.headers()["range"].to_str().unwrap()),
        (StatusCode::ACCEPTED, "0-5")
    );
    let r = patch("0-4", "hello").await.unwrap();
    assert_eq!(
        (r.status(), r.headers()["range"].to_str().unwrap()),
        (StatusCode::RANGE_NOT_SATISFIABLE, "0-5")
    );
    let r = f
        .http
        .patch(format!("{}/jobs/{}/trace", f.api, ids[0]))
        .header("JOB-TOKEN", &job_token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Nothing else matches yet: 204, and the same answer at once for the same queue version.
    let r = f.request(&token, None).await;
    assert_eq!(r.status(), 204);
    let version = r.headers()["x-gitlab-last-update"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(f.request(&token, Some(&version)).await.status(), 204);
    assert_eq!(f.request("glrt-nope", None).await.status(), 403);

    let r = f.put_job(ids[0], &job_token, "success").await;
    assert_eq!(r.headers()["job-status"], "success");
    assert_eq!(
        f.get_json(&one(ids[1])).await["status"],
        "pending",
        "the next stage"
    );
    let r = f.request(&token, Some(&version)).await;
    assert_eq!(r.status(), 201, "a new job changed the queue version");
    let second: Value = r.json().await.unwrap();
    let t2 = second["token"].as_str().unwrap().to_string();
    f.put_job(ids[1], &t2, "running").await;
    let r = f.put_job(ids[1], &t2, "failed").await;
    assert_eq!(r.headers()["job-status"], "failed");
    let shown = f.get_json(&one(ids[1])).await;
    assert_eq!(shown["failure_reason"], "script_failure");
    let p = f.get_json(&one(ids[0])).await;
    assert_eq!(
        (
            p["pipeline"]["id"].as_u64(),
            p["pipeline"]["status"].as_str()
        ),
        (Some(pipeline), Some("failed"))
    );
    let r = f.put_job(ids[0], &job_token, "running").await;
    assert_eq!(
        (r.status(), r.headers()["job-status"].to_str().unwrap()),
        (StatusCode::FORBIDDEN, "success")
    );

    // Cancel: a pending job ends, a running one is `canceling` until its runner reports.
    let (_, more) =
        f.gl.enqueue("acme/app", vec![job(&["linux"], 0), job(&["linux"], 0)])
            .unwrap();
    let r = f
        .post(
            &format!("/projects/{app}/jobs/{}/cancel", more[1]),
            json!({}),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "canceled");
    let got: Value = f.request(&token, None).await.json().await.unwrap();
    let t3 = got["token"].as_str().unwrap().to_string();
    f.put_job(more[0], &t3, "running").await;
    f.gl.cancel(more[0]);
    let r = f.put_job(more[0], &t3, "running").await;
    assert_eq!(r.headers()["job-status"], "canceling");
    f.put_job(more[0], &t3, "success").await;
    assert_eq!(f.get_json(&one(more[0])).await["status"], "canceled");
}

#[tokio::test]
async fn an_unconfirmed_job_goes_back_to_the_queue_after_two_minutes() {
    // 600x: two simulated minutes pass in 200 ms.
    let f = start(config(), 600.0).await;
    let (_, ids) = f.gl.enqueue("acme/app", vec![job(&["linux"], 0)]).unwrap();
    let app = f.gl.project("acme/app").unwrap();
    let body = json!({ "runner_type": "project_type", "project_id": app, "tag_list": ["linux"] });
    let (_, first) = f.runner(body.clone()).await;
    let (second_id, second) = f.runner(body).await;
    let got: Value = f.request(&first, None).await.json().await.unwrap();
    let stale_token = got["token"].as_str().unwrap().to_string();
    assert_eq!(
        f.request(&second, None).await.status(),
        204,
        "handed out already"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    // A keep-alive (state=pending) holds it for another two minutes.
    let r = f.put_job(ids[0], &stale_token, "pending").await;
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(f.request(&second, None).await.status(), 204, "kept alive");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let job = f
        .get_json(&format!("/projects/{app}/jobs/{}", ids[0]))
        .await;
    assert_eq!(
        (job["status"].as_str(), job["runner"].is_null()),
        (Some("pending"), true)
    );
    let r = f.request(&second, None).await;
    assert_eq!(r.status(), 201, "requeued, and taken by the other runner");
    let r = f.put_job(ids[0], &stale_token, "running").await;
    assert_eq!(r.status(), 403, "the first runner's job token is void");
    let fresh: Value = r.json().await.unwrap_or(json!(null));
    let _ = fresh;
    let job = f
        .get_json(&format!("/projects/{app}/jobs/{}", ids[0]))
        .await;
    assert_eq!(job["runner"]["id"].as_u64(), Some(second_id));
}

#[tokio::test]
async fn project_jobs_page_by_offset_and_keyset_and_filter_by_scope() {
    let f = start(config(), 1.0).await;
    for _ in 0..45 {
        f.gl.enqueue("acme/platform/app", vec![job(&["linux"], 0)])
            .unwrap();
    }
    f.gl.enqueue(
        "acme/platform/app",
        vec![job(&["linux"], 0), job(&["linux"], 1)],
    )
    .unwrap();
    let path = "/projects/acme%2Fplatform%2Fapp/jobs";

    // Offset pages of pending jobs (20 by default), newest first, with every header.
    let r = f.get(&format!("{path}?scope[]=pending")).await;
    let h = r.headers().clone();
    let page: Value = r.json().await.unwrap();
    assert_eq!(page.as_array().unwrap().len(), 20);
    let hv = |k: &str| h[k].to_str().unwrap().to_string();
    assert_eq!(
        (
            hv("x-page"),
            hv("x-per-page"),
            hv("x-next-page"),
            hv("x-prev-page")
        ),
        ("1".into(), "20".into(), "2".into(), String::new())
    );
    assert_eq!(
        (hv("x-total"), hv("x-total-pages")),
        ("46".into(), "3".into())
    );
    let link = hv("link");
    assert!(
        link.contains("rel=\"next\"")
            && link.contains("rel=\"first\"")
            && link.contains("rel=\"last\""),
        "{link}"
    );
    assert!(
        link.contains(&f.api),
        "links point at the caller's host: {link}"
    );
    let ids: Vec<u64> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");

    // Following `next` visits each pending job once.
    let mut seen = Vec::new();
    let mut url = Some(format!("{}{path}?scope[]=pending&per_page=100", f.api));
    let mut n = 0;
    while let Some(u) = url.take() {
        let r = f
            .http
            .get(&u)
            .header("PRIVATE-TOKEN", TOKEN)
            .send()
            .await
            .unwrap();
        url = r.headers().get("link").and_then(|l| {
            l.to_str()
                .unwrap()
                .split(',')
                .find(|p| p.contains("rel=\"next\""))
                .map(|p| {
                    p.split(';')
                        .next()
                        .unwrap()
                        .trim()
                        .trim_matches(['<', '>'])
                        .to_string()
                })
        });
        let items: Value = r.json().await.unwrap();
        seen.extend(
            items
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_u64().unwrap()),
        );
        n += 1;
    }
    assert_eq!((seen.len(), n), (46, 1));
    assert_eq!(
        f.get_json(&format!("{path}?scope=created"))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        f.get_json(&format!(
            "{path}?scope[]=created&scope[]=pending&per_page=100"
        ))
        .await
        .as_array()
        .unwrap()
        .len(),
        47
    );
    assert_eq!(f.get(&format!("{path}?scope[]=queued")).await.status(), 400);

    // Keyset: `Link rel="next"` only, until the end.
    let mut keyset = Vec::new();
    let mut url = Some(format!(
        "{}{path}?pagination=keyset&order_by=id&sort=desc&per_page=20&scope[]=pending",
        f.api
    ));
    while let Some(u) = url.take() {
        let r = f
            .http
            .get(&u)
            .header("PRIVATE-TOKEN", TOKEN)
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("x-total").is_none());
        url = r.headers().get("link").map(|l| {
            l.to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .trim()
                .trim_matches(['<', '>'])
                .to_string()
        });
        let items: Value = r.json().await.unwrap();
        assert!(items.is_array(), "{items}");
        keyset.extend(
            items
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_u64().unwrap()),
        );
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(keyset, sorted);

    // Group projects, with and without subgroups.
    f.gl.project("acme/web").unwrap();
    let top = f.get_json("/groups/acme/projects").await;
    assert_eq!(top.as_array().unwrap().len(), 1);
    let all = f
        .get_json("/groups/acme/projects?include_subgroups=true")
        .await;
    let paths: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path_with_namespace"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["acme/web", "acme/platform/app"]);
    assert_eq!(f.get("/groups/nobody/projects").await.status(), 404);
    assert_eq!(f.calls("GET", "/projects/{id}/jobs"), 1 + 1 + 1 + 1 + 1 + 3);
}

#[tokio::test]
async fn rate_limits_count_per_user_and_answer_429_as_rack_attack_does() {
    let f = start(
        GitlabConfig {
            rate_limit_per_minute: 3,
            ..config()
        },
        1.0,
    )
    .await;
    let app = f.gl.project("acme/app").unwrap();
    for i in 1..=3u32 {
        let r = f.get(&format!("/projects/{app}")).await;
        assert_eq!(r.status(), 200);
        let h = r.headers();
        assert_eq!(h["ratelimit-name"], "throttle_authenticated_api");
        assert_eq!(h["ratelimit-limit"], "3");
        assert_eq!(h["ratelimit-observed"], i.to_string().as_str());
        assert_eq!(h["ratelimit-remaining"], (3 - i).to_string().as_str());
        assert!(
            h["ratelimit-reset"]
                .to_str()
                .unwrap()
                .parse::<i64>()
                .is_ok()
        );
    }
    let r = f.get(&format!("/projects/{app}")).await;
    assert_eq!(r.status(), 429);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/plain");
    let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait));
    assert!(h["ratelimit-resettime"].to_str().unwrap().ends_with(" GMT"));
    assert_eq!(h["ratelimit-remaining"], "0");
    assert_eq!(r.text().await.unwrap(), "Retry later\n");
    let r = f.get_as(READER, &format!("/projects/{app}")).await;
    assert_eq!(r.status(), 200, "another user has a budget of their own");
}

#[tokio::test]
async fn api_faults_answer_429_and_5xx_then_recover() {
    let f = start(config(), 1.0).await;
    let app = f.gl.project("acme/app").unwrap();
    f.gl.set_config(|c| {
        c.api_faults = ApiFaults {
            next_rate_limited: 1,
            next_server_errors: 1,
            retry_after_secs: 7,
            ..ApiFaults::default()
        }
    });
    let r = f.get(&format!("/projects/{app}/jobs")).await;
    assert_eq!(
        (r.status(), r.headers()["retry-after"].to_str().unwrap()),
        (StatusCode::TOO_MANY_REQUESTS, "7")
    );
    assert_eq!(f.get(&format!("/projects/{app}/jobs")).await.status(), 502);
    assert_eq!(f.get(&format!("/projects/{app}/jobs")).await.status(), 200);
    f.gl.set_config(|c| {
        c.api_faults = ApiFaults {
            server_errors: 1.0,
            ..ApiFaults::default()
        }
    });
    assert_eq!(f.get(&format!("/projects/{app}/jobs")).await.status(), 500);
    assert_eq!(
        f.calls("GET", "/projects/{id}/jobs"),
        4,
        "faults are counted like answers"
    );
}

/// A receiver that keeps every delivery's headers and body.
async fn receiver() -> (String, mpsc::UnboundedReceiver<(HeaderMap, Value)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route(
            "/hook",
            post(
                |State(tx): State<mpsc::UnboundedSender<(HeaderMap, Value)>>,
                 headers: HeaderMap,
                 body: axum::body::Bytes| async move {
                    let _ = tx.send((
                        headers,
                        serde_json::from_slice(&body).unwrap_or(Value::Null),
                    ));
                    StatusCode::OK
                },
            ),
        )
        .with_state(tx);
    let addr = mayfly_sim::serve_local(app).await.unwrap();
    (format!("http://{addr}/hook"), rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<(HeaderMap, Value)>) -> (HeaderMap, Value) {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a delivery")
        .unwrap()
}

#[tokio::test]
async fn job_hooks_follow_every_status_change_with_gitlabs_headers() {
    let f = start(config(), 1.0).await;
    let (url, mut rx) = receiver().await;
    let app = f.gl.project("acme/app").unwrap();
    let r = f
        .post(
            &format!("/projects/{app}/hooks"),
            json!({ "url": url, "job_events": true, "token": "hook-secret" }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let hook: Value = r.json().await.unwrap();
    assert_eq!(
        f.get_json(&format!("/projects/{app}/hooks")).await[0]["id"],
        hook["id"]
    );

    let (_, ids) = f.gl.enqueue("acme/app", vec![job(&["linux"], 0)]).unwrap();
    let (h, created) = next(&mut rx).await;
    assert_eq!(h["x-gitlab-event"], "Job Hook");
    assert_eq!(h["x-gitlab-token"], "hook-secret");
    assert_eq!(h["content-type"], "application/json");
    for name in [
        "idempotency-key",
        "x-gitlab-webhook-uuid",
        "x-gitlab-event-uuid",
        "x-gitlab-instance",
    ] {
        assert!(h.contains_key(name), "{name}");
    }
    assert_eq!(
        (
            created["object_kind"].as_str(),
            created["build_status"].as_str()
        ),
        (Some("build"), Some("created"))
    );
    assert_eq!(created["build_id"], ids[0]);
    assert_eq!(created["project_id"], app);
    assert_eq!(created["project"]["path_with_namespace"], "acme/app");
    assert!(
        created.get("tag_list").is_none(),
        "a Job Hook carries no job tags"
    );
    let (_, pending) = next(&mut rx).await;
    assert_eq!(pending["build_status"], "pending");
    assert!(pending["runner"].is_null());

    let (_, token) = f
        .runner(json!({ "runner_type": "project_type", "project_id": app, "tag_list": ["linux"] }))
        .await;
    let got: Value = f.request(&token, None).await.json().await.unwrap();
    let jt = got["token"].as_str().unwrap().to_string();
    f.put_job(ids[0], &jt, "running").await;
    let (_, running) = next(&mut rx).await;
    assert_eq!(running["build_status"], "running");
    assert_eq!(running["runner"]["tags"], json!(["linux"]));
    assert!(
        running["build_started_at_iso"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    f.put_job(ids[0], &jt, "success").await;
    let (_, done) = next(&mut rx).await;
    assert_eq!(done["build_status"], "success");
    assert!(rx.try_recv().is_err(), "four changes, four hooks");

    // Configured targets (instance-wide) get every project's events; a deleted hook gets none.
    let r = f
        .http
        .delete(format!("{}/projects/{app}/hooks/{}", f.api, hook["id"]))
        .header("PRIVATE-TOKEN", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (url2, mut rx2) = receiver().await;
    f.gl.set_config(|c| {
        c.webhooks.push(mayfly_sim::gitlab::HookTarget {
            url: url2,
            token: String::new(),
        })
    });
    f.gl.enqueue("else/web", vec![job(&[], 0)]).unwrap();
    let (h, v) = next(&mut rx2).await;
    assert!(h.get("x-gitlab-token").is_none());
    assert_eq!(v["build_status"], "created");
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn webhook_faults_drop_duplicate_and_delay_deliveries() {
    let f = start(config(), 100.0).await;
    let (url, mut rx) = receiver().await;
    f.gl.set_config(|c| {
        c.webhooks.push(mayfly_sim::gitlab::HookTarget {
            url,
            token: "t".into(),
        });
        c.webhook_faults = WebhookFaults {
            drop: 1.0,
            ..WebhookFaults::default()
        };
    });
    f.gl.enqueue("acme/app", vec![job(&["x"], 0)]).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx.try_recv().is_err(), "all dropped");

    f.gl.set_config(|c| {
        c.webhook_faults = WebhookFaults {
            duplicate: 1.0,
            ..WebhookFaults::default()
        }
    });
    f.gl.enqueue("acme/app", vec![job(&["x"], 0)]).unwrap();
    let (a, first) = next(&mut rx).await;
    let (b, again) = next(&mut rx).await;
    assert_eq!(first, again);
    assert_eq!(
        a["idempotency-key"], b["idempotency-key"],
        "the same key on a redelivery"
    );
    assert_ne!(
        a["x-gitlab-webhook-uuid"], b["x-gitlab-webhook-uuid"],
        "a new one per attempt"
    );
    while tokio::time::timeout(Duration::from_millis(200), rx.recv())
        .await
        .is_ok()
    {}

    // Delayed: 60 simulated seconds (0.6 s here) late, after the events that follow.
    f.gl.set_config(|c| {
        c.webhook_faults = WebhookFaults {
            delay: 1.0,
            delay_secs: 60.0,
            ..WebhookFaults::default()
        }
    });
    let (_, ids) = f.gl.enqueue("acme/app", vec![job(&["x"], 0)]).unwrap();
    f.gl.set_config(|c| c.webhook_faults = WebhookFaults::default());
    f.gl.cancel(ids[0]);
    let (_, first) = next(&mut rx).await;
    assert_eq!(
        first["build_status"], "canceled",
        "the undelayed event overtakes"
    );
    let (_, later) = next(&mut rx).await;
    assert_eq!(later["build_id"], ids[0]);
}

#[tokio::test]
async fn a_failing_receiver_gets_its_hook_disabled_for_a_while() {
    let f = start(config(), 1.0).await;
    // Nothing listens here.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (url, mut rx) = receiver().await;
    f.gl.set_config(|c| {
        c.webhooks.push(mayfly_sim::gitlab::HookTarget {
            url: format!("http://{dead}/hook"),
            token: String::new(),
        });
        c.webhooks.push(mayfly_sim::gitlab::HookTarget {
            url,
            token: String::new(),
        });
    });
    for _ in 0..3 {
        f.gl.enqueue("acme/app", vec![job(&["x"], 0)]).unwrap();
    }
    for _ in 0..6 {
        next(&mut rx).await;
    }
    assert!(rx.try_recv().is_err());
}

/// A fake GitLab and a fake Hetzner served together, with virtual runners that start from the
/// user data of the machines made there.
struct Cloud {
    sim: Arc<Sim>,
    /// `http://127.0.0.1:port`.
    gl: String,
    /// `http://127.0.0.1:port/v1`.
    hz: String,
    http: Client,
}

const HZ: &str = "hz-token";

async fn cloud(hetzner: HetznerConfig, boot_delay: Delay) -> Cloud {
    let sim = Sim::start(SimConfig {
        speed: 100.0,
        gitlab: config(),
        hetzner: HetznerConfig {
            token: HZ.into(),
            ..hetzner
        },
        runners: RunnerConfig {
            boot_delay,
            ..RunnerConfig::default()
        },
        ..SimConfig::default()
    });
    let at = support::serve(&sim).await;
    Cloud {
        gl: format!("http://{}", at.gitlab),
        hz: format!("http://{}/v1", at.hetzner),
        http: Client::new(),
        sim,
    }
}

impl Cloud {
    /// `jobs` pending jobs tagged `linux` in `project`, through the control API.
    async fn pipelines(&self, project: &str, duration_secs: u64, jobs: u32) {
        let r = self
            .http
            .post(format!("{}/_sim/gitlab/pipelines", self.gl))
            .json(&json!({ "project": project, "tags": ["linux"], "duration_secs": duration_secs, "jobs": jobs }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    /// A project runner record with one tag; its glrt- token.
    async fn runner_record(&self, project: u64, tag: &str, description: &str) -> String {
        let created: Value = self
            .http
            .post(format!("{}/api/v4/user/runners", self.gl))
            .header("PRIVATE-TOKEN", TOKEN)
            .json(
                &json!({ "runner_type": "project_type", "project_id": project, "tag_list": [tag],
                           "run_untagged": false, "description": description }),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        created["token"].as_str().unwrap().to_string()
    }

    /// A machine that boots with `user_data`; its server id.
    async fn machine(&self, name: &str, user_data: &str) -> u64 {
        let r = self
            .http
            .post(format!("{}/servers", self.hz))
            .bearer_auth(HZ)
            .json(
                &json!({ "name": name, "server_type": "cx23", "image": "ubuntu-24.04",
                           "location": "fsn1", "labels": {}, "user_data": user_data }),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        r.json::<Value>().await.unwrap()["server"]["id"]
            .as_u64()
            .unwrap()
    }

    fn machines_off(&self) -> usize {
        self.sim
            .hetzner
            .servers()
            .iter()
            .filter(|s| s.status == "off")
            .count()
    }

    async fn control(&self, path: &str) -> Value {
        support::get_json(&self.http, format!("{}/_sim{path}", self.gl)).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_runners_start_from_run_single_in_user_data_and_take_one_job() {
    let c = cloud(HetznerConfig::default(), Delay::Fixed { secs: 10.0 }).await;
    let gl = &c.gl;
    c.pipelines("acme/app", 120, 2).await;
    let project = c.sim.gitlab.project("acme/app").unwrap();
    // The third runner's tags match no job: it waits 30 s and gives up.
    for (i, wait, tag) in [(0, 600, "linux"), (1, 600, "linux"), (2, 30, "gpu")] {
        let token = c.runner_record(project, tag, &format!("m-{i}")).await;
        let user_data = format!(
            "#!/bin/bash\nstart_runner() {{\n    as_runner gitlab-runner run-single --url '{gl}' --token '{token}' --executor shell --shell bash --builds-dir '/home/runner/builds' --cache-dir '/home/runner/cache' --max-builds 1 --wait-timeout {wait}\n}}\n"
        );
        c.machine(&format!("m-{i}"), &user_data).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = c.control("/gitlab/stats").await;
        if stats["succeeded"] == 2 && c.machines_off() == 3 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "jobs {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let jobs = c.control("/gitlab/jobs").await;
    let mut ran_on: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["runner_description"].as_str().unwrap())
        .collect();
    ran_on.sort_unstable();
    assert_eq!(
        ran_on,
        ["m-0", "m-1"],
        "one job per machine, none on the third"
    );
    let runners = c.control("/gitlab/runners").await;
    assert!(
        runners
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["managers"] == 1 && r["status"] == "online")
    );
    let v = c.sim.runners.stats();
    assert_eq!((v.registered, v.jobs_completed, v.timed_out), (3, 2, 1));
    let s = c.control("/stats").await;
    assert_eq!(s["gitlab"]["succeeded"], 2);
    assert_eq!(
        s["api_calls"]["gitlab"], 3,
        "the three runner records; runners' own calls are in-process"
    );
}

/// The fake at the scale of the forge's burst tests: 200 pending jobs in 10 projects, 200 runner
/// records, 200 machines; every job runs once, on its own machine, and every machine powers off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_200_jobs_on_200_machines() {
    let hetzner = HetznerConfig {
        rate_limit_per_hour: 100_000,
        server_quota: 1000,
        ..HetznerConfig::default()
    };
    let boot = Delay::Uniform {
        min_secs: 20.0,
        max_secs: 40.0,
    };
    let c = cloud(hetzner, boot).await;
    let sim = &c.sim;
    let started = std::time::Instant::now();
    for p in 0..10 {
        let path = format!("acme/project{p}");
        sim.gitlab.project(&path).unwrap();
        c.pipelines(&path, 60, 20).await;
    }
    for i in 0..200 {
        let project = sim
            .gitlab
            .project(&format!("acme/project{}", i % 10))
            .unwrap();
        let token = c.runner_record(project, "linux", &format!("m-{i}")).await;
        let user_data = format!(
            "#!/bin/bash\nas_runner gitlab-runner run-single --url '{}' --token '{token}' --executor shell --max-builds 1 --wait-timeout 900\n",
            c.gl
        );
        c.machine(&format!("m-{i}"), &user_data).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = sim
            .gitlab
            .jobs()
            .iter()
            .filter(|j| j.status == "success")
            .count();
        let off = c.machines_off();
        if s == 200 && off == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{s} jobs done, {off} machines off"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let jobs = sim.gitlab.jobs();
    let mut on: Vec<String> = jobs
        .iter()
        .filter_map(|j| j.runner_description.clone())
        .collect();
    on.sort_unstable();
    on.dedup();
    assert_eq!(on.len(), 200, "one machine per job");
    println!("200 jobs on 200 machines in {:?} real", started.elapsed());
}
