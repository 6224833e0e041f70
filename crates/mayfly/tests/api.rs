//! The HTTP API in-process: `mayfly run`'s router over a controller driven against the simulator
//! (`mayfly::local`), on a sped-up clock. The token, every endpoint's answers, deletes through
//! the executor, readiness; and the OpenAPI description, which every answer is checked against
//! (with jsonschema, as the fake GitHub is) and which lists exactly the routes the router serves.

mod support;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine;
use mayfly::http::api::{self, OPENAPI};
use mayfly::http::{Api, Webhooks};
use mayfly::local::{self, Local};
use mayfly_core::{Arch, Secret};
use mayfly_forge::github::webhook::sign;
use mayfly_sim::github::NewJob;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const TOKEN: &str = "api-test-token-DUMMY-7f3a";
const HOOK_SECRET: &str = "api-test-hook-secret-DUMMY";
const REPO: &str = "acme/app";
const LABELS: &[&str] = &["self-hosted", "linux"];

/// One answer, as `openapi_check.py` reads it.
#[derive(Clone, Debug, Serialize)]
struct Answer {
    method: String,
    template: String,
    path: String,
    status: u16,
    content_type: Option<String>,
    body: Value,
}

struct World {
    local: Local,
    /// The whole router of `mayfly run`. Webhooks go to a store of their own: the fixtures'
    /// jobs are not this controller's.
    router: Router,
    /// Where `hook` posts: `router`, or one with webhooks off.
    hooks: Router,
    _hook_state: tempfile::TempDir,
    answers: Vec<Answer>,
}

async fn world(standby: u32, ready_within: Duration) -> World {
    let mut pool = local::pool("linux", LABELS, &["cx23"], &["fsn1"], Arch::X86);
    pool.standby = standby;
    let pools = local::pools("mf", vec![pool], false);
    let local = support::local::start(support::local::sim_config(50.0), pools, &[REPO], None).await;
    let c = &local.controller;
    let api = Api::new(
        &c.reconciler,
        c.store.clone(),
        c.wake.clone(),
        Secret::new(TOKEN),
        ready_within,
    );
    let hook_state = tempfile::tempdir().unwrap();
    let hook_store = mayfly_store::Store::open(hook_state.path().join("h.db").to_str().unwrap())
        .await
        .unwrap();
    // As `mayfly run` puts them together.
    let router = mayfly::http::router(Webhooks::new(
        hook_store,
        Some(Secret::new(HOOK_SECRET)),
        Arc::new(mayfly::demand::Wake::default()),
    ))
    .merge(api::router(Arc::new(api)));
    let hooks = router.clone();
    World {
        local,
        router,
        hooks,
        _hook_state: hook_state,
        answers: Vec::new(),
    }
}

impl World {
    /// One request to the API router; the answer is recorded for the description check.
    async fn call(
        &mut self,
        method: Method,
        template: &str,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::builder().method(method.clone()).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(Body::empty()).unwrap();
        let response = self.router.clone().oneshot(req).await.unwrap();
        self.record(method, template, path, response).await
    }

    async fn api(&mut self, method: Method, template: &str, path: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.call(method, template, path, Some(TOKEN)).await;
        (status, body)
    }

    async fn hook(&mut self, headers: &[(&str, String)], body: Vec<u8>) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/webhooks/github");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let response = self
            .hooks
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let (status, _, body) = self
            .record(
                Method::POST,
                "/webhooks/github",
                "/webhooks/github",
                response,
            )
            .await;
        (status, body)
    }

    async fn record(
        &mut self,
        method: Method,
        template: &str,
        path: &str,
        response: axum::response::Response,
    ) -> (StatusCode, HeaderMap, Value) {
        let status = response.status();
        let headers = response.headers().clone();
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(response.into_body(), 4 << 20)
            .await
            .unwrap();
        let body = if content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json"))
        {
            serde_json::from_slice(&bytes).expect("a JSON answer parses")
        } else {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        };
        self.answers.push(Answer {
            method: method.to_string(),
            template: template.into(),
            path: path.into(),
            status: status.as_u16(),
            content_type,
            body: body.clone(),
        });
        (status, headers, body)
    }
}

fn jobs(n: usize, secs: u64) -> Vec<NewJob> {
    (0..n)
        .map(|_| NewJob {
            labels: LABELS.iter().map(|l| l.to_string()).collect(),
            duration: Duration::from_secs(secs),
        })
        .collect()
}

fn error_of(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("an error body: {body}"))
}

const READS: [&str; 5] = ["status", "instances", "jobs", "runners", "pools"];

/// Every endpoint and answer: refusals without the token, the view before and after the first
/// pass, deletes of a busy and an idle machine, webhooks; then every answer is held to the
/// OpenAPI description, and none carries a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_as_described() {
    let answers = every_answer().await;
    no_secret_in(&answers);
    covered(&answers);
}

/// The same answers held to the description's schemas, with jsonschema (Python).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Python clients: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
async fn every_answer_matches_the_openapi_schemas() {
    let answers = every_answer().await;
    schemas_match(&answers);
}

/// Drives every endpoint (see `the_api_answers_as_described`) and returns what it answered.
async fn every_answer() -> Vec<Answer> {
    let mut w = world(1, Duration::from_secs(600)).await;

    // Before any pass: alive, not ready, and the API says why it has nothing to show.
    let (status, _, body) = w.call(Method::GET, "/healthz", "/healthz", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!("ok")));
    let (status, _, body) = w.call(Method::GET, "/readyz", "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["ready"], false);
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("no reconcile pass has read the world yet"),
        "{body}"
    );
    for read in READS {
        let path = format!("/api/v1/{read}");
        for token in [None, Some("wrong-token"), Some("")] {
            let (status, headers, body) = w.call(Method::GET, &path, &path, token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} with {token:?}");
            assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer realm=\"mayfly\"");
            assert!(error_of(&body).contains("API token"), "{body}");
        }
        let (status, body) = w.api(Method::GET, &path, &path).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        assert!(error_of(&body).contains("no reconcile pass"), "{body}");
    }
    let one = "/api/v1/instances/{name}";
    let (status, _, _) = w.call(Method::GET, one, "/api/v1/instances/x", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = w
        .call(Method::DELETE, one, "/api/v1/instances/x", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "deletes need the token");
    let (status, _) = w.api(Method::GET, one, "/api/v1/instances/x").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let spec = "/api/v1/openapi.json";
    let (status, _, _) = w.call(Method::GET, spec, spec, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = w.api(Method::GET, spec, spec).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::from_str::<Value>(OPENAPI).unwrap());
    // Unknown paths and methods: the token first, then JSON errors.
    let (status, _, _) = w.call(Method::GET, "", "/api/v1/nothing-here", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = w.api(Method::GET, "", "/api/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_of(&body).contains("no endpoint GET /api/v1/nothing-here"));
    let (status, body) = w.api(Method::POST, "", "/api/v1/status").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(error_of(&body).contains("does not answer POST"), "{body}");

    // A job that runs for long, and the pool's standby runner.
    w.local.sim.github.enqueue(REPO, jobs(1, 100_000));
    support::local::run_until(&mut w.local, |sim| {
        let runners = sim.github.runners();
        let online = |busy: bool| {
            runners
                .iter()
                .filter(|r| r.status == "online" && r.busy == busy)
                .count()
        };
        online(true) == 1 && online(false) == 1
    })
    .await;
    let runners = w.local.sim.github.runners();
    let busy = runners.iter().find(|r| r.busy).unwrap().name.clone();
    let idle = runners.iter().find(|r| !r.busy).unwrap().name.clone();
    // The view the API serves is the last pass's: one more, so it has seen both runners, and
    // more until it has the job's start too (the fake GitHub's webhook for it comes when it
    // comes: on a busy machine after the runner shows busy).
    for _ in 0..100 {
        w.local.controller.reconciler.pass().await.unwrap();
        let (_, view) = w.api(Method::GET, "/api/v1/status", "/api/v1/status").await;
        if view["jobs"][0]["status"] == "in_progress" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (status, _, body) = w.call(Method::GET, "/readyz", "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["ready"].clone(), body["reason"].clone()),
        (json!(true), Value::Null)
    );
    assert_eq!(body["last_pass"]["error"], Value::Null);

    let (status, view) = w.api(Method::GET, "/api/v1/status", "/api/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["controller"], "mf");
    let names: BTreeSet<&str> = view["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from([busy.as_str(), idle.as_str()]));
    assert_eq!(view["jobs"][0]["status"], "in_progress");
    assert_eq!(view["jobs"][0]["instance"], busy.as_str());
    assert_eq!(view["pools"][0]["busy"], 1);
    assert_eq!(view["pools"][0]["idle"], 1);
    for (read, part) in [
        ("instances", "instances"),
        ("jobs", "jobs"),
        ("runners", "runners"),
        ("pools", "pools"),
    ] {
        let path = format!("/api/v1/{read}");
        let (status, body) = w.api(Method::GET, &path, &path).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, view[part], "{path} is that part of the view");
    }
    let (status, instance) = w
        .api(Method::GET, one, &format!("/api/v1/instances/{busy}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(instance["runner"], "busy");
    assert!(instance["address"].is_string(), "{instance}");
    assert!(
        instance["cost_so_far"].as_f64().unwrap() > 0.0,
        "{instance}"
    );
    let (status, body) = w.api(Method::GET, one, "/api/v1/instances/mf-nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_of(&body).contains("no instance named mf-nope"));

    // A busy machine is kept; an unknown one is not found.
    let (status, body) = w
        .api(Method::DELETE, one, &format!("/api/v1/instances/{busy}"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        error_of(&body).contains("never deletes a busy machine"),
        "{body}"
    );
    assert!(
        w.local.sim.hetzner.servers().iter().any(|s| s.name == busy),
        "the busy machine is still there"
    );
    // A name in no view and no intent is not found from memory: not one call to a forge or
    // a cloud.
    let calls = |w: &World| {
        let stats = &w.local.sim.stats;
        (stats.total("github"), stats.total("hetzner"))
    };
    let before = calls(&w);
    let (status, body) = w
        .api(Method::DELETE, one, "/api/v1/instances/mf-nope")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_of(&body).contains("none being created"), "{body}");
    assert_eq!(calls(&w), before, "an unknown name costs no API call");

    // Runners GitHub does not show: nothing is deleted.
    let mut tokens = Vec::new();
    w.local
        .sim
        .github
        .set_config(|c| tokens = std::mem::replace(&mut c.tokens, vec!["other".into()]));
    let (status, body) = w
        .api(Method::DELETE, one, &format!("/api/v1/instances/{idle}"))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        error_of(&body).contains("cannot read the runners"),
        "{body}"
    );
    assert!(w.local.sim.hetzner.servers().iter().any(|s| s.name == idle));
    w.local.sim.github.set_config(|c| c.tokens = tokens);

    // The idle one goes: runner first, then the machine, on the record.
    let (status, body) = w
        .api(Method::DELETE, one, &format!("/api/v1/instances/{idle}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"name": idle, "result": "deleted"}));
    assert!(!w.local.sim.hetzner.servers().iter().any(|s| s.name == idle));
    assert!(!w.local.sim.github.runners().iter().any(|r| r.name == idle));
    let events = w.local.controller.store.events(None, 1000).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "delete"
            && e.subject == idle
            && e.message.contains("deleted by operator")),
        "{events:?}"
    );

    // Webhooks, for the description: refused, malformed, ignored, stored, too large.
    let body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../forge/tests/fixtures/webhooks/workflow_job.6.queued.json"),
    )
    .unwrap();
    let signed = |b: &[u8]| sign(&Secret::new(HOOK_SECRET), b);
    let sig = "X-Hub-Signature-256";
    let (status, _) = w.hook(&[(sig, "sha256=00".into())], body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = w.hook(&[(sig, signed(&body))], body.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no event header");
    let event = |e: &str, d: &str| {
        vec![
            ("X-GitHub-Event", e.to_string()),
            ("X-GitHub-Delivery", d.to_string()),
        ]
    };
    let mut ping = event("ping", "d-1");
    ping.push((sig, signed(b"{}")));
    assert_eq!(
        w.hook(&ping, b"{}".to_vec()).await.0,
        StatusCode::NO_CONTENT
    );
    let mut job = event("workflow_job", "d-2");
    job.push((sig, signed(&body)));
    assert_eq!(w.hook(&job, body.clone()).await.0, StatusCode::ACCEPTED);
    let huge = vec![b' '; mayfly::http::BODY_LIMIT + 1];
    assert_eq!(
        w.hook(&[(sig, signed(&huge))], huge).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    w.hooks = mayfly::http::router(Webhooks::new(
        w.local.controller.store.clone(),
        None,
        Arc::new(mayfly::demand::Wake::default()),
    ));
    let (status, _) = w.hook(&job, body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "webhooks off");

    // The event trail: what the passes and the delete above recorded, filtered and paged.
    let ev = "/api/v1/events";
    let (status, _, _) = w.call(Method::GET, ev, ev, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, all) = w.api(Method::GET, ev, &format!("{ev}?limit=1000")).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let all = all["events"].as_array().unwrap().clone();
    assert!(all.len() >= 3, "{all:?}");
    let ids: Vec<i64> = all.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|p| p[0] < p[1]), "oldest first: {ids:?}");
    let path = format!("{ev}?subject={idle}&kind=delete");
    let (status, mine) = w.api(Method::GET, ev, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["events"].as_array().unwrap().len(), 1, "{mine}");
    assert!(
        mine["events"][0]["message"]
            .as_str()
            .unwrap()
            .contains("deleted by operator")
    );
    assert_eq!(mine["next_after"], Value::Null, "not a full page");
    let (_, page) = w.api(Method::GET, ev, &format!("{ev}?limit=2")).await;
    assert_eq!(page["next_after"], json!(ids[1]));
    let (_, next) = w
        .api(Method::GET, ev, &format!("{ev}?limit=2&after={}", ids[1]))
        .await;
    assert_eq!(next["events"][0]["id"], json!(ids[2]));
    let (_, newest) = w
        .api(Method::GET, ev, &format!("{ev}?limit=1&newest=true"))
        .await;
    assert_eq!(newest["events"][0]["id"], json!(ids[ids.len() - 1]));
    let at = all[0]["at"].as_str().unwrap().to_string();
    let (_, since) = w
        .api(
            Method::GET,
            ev,
            &format!("{ev}?since={at}&until=2999-01-01T00:00:00Z"),
        )
        .await;
    assert_eq!(
        since["events"].as_array().unwrap().len(),
        all.len().min(100)
    );
    for (query, says) in [
        ("since=yesterday", "since: expected an RFC 3339 time"),
        ("limit=0", "limit: expected 1 to 1000"),
        ("limit=5000", "limit: expected 1 to 1000"),
        ("after=x", "after"),
        ("colour=blue", "colour"),
    ] {
        let (status, body) = w.api(Method::GET, ev, &format!("{ev}?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(error_of(&body).contains(says), "{query}: {body}");
    }
    // Last: with the store gone, the events cannot be read.
    w.local.controller.store.close().await;
    let (status, body) = w.api(Method::GET, ev, ev).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(error_of(&body).contains("cannot read the events"), "{body}");
    std::mem::take(&mut w.answers)
}

/// Every documented status of every path and method was answered above, except these.
const NOT_EXERCISED: &[(&str, &str, u16, &str)] = &[
    (
        "delete",
        "/api/v1/instances/{name}",
        500,
        "only a panic in the delete's task answers it",
    ),
    (
        "delete",
        "/api/v1/instances/{name}",
        502,
        "needs a provider or GitHub failing a delete after a good read; the executor's \
         failures are covered by the reconcile tests",
    ),
];

/// Every documented status of every path and method was answered.
fn covered(answers: &[Answer]) {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let answered: BTreeSet<(String, String, u16)> = answers
        .iter()
        .map(|a| (a.method.to_lowercase(), a.template.clone(), a.status))
        .collect();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            for status in op["responses"].as_object().unwrap().keys() {
                let status: u16 = status.parse().unwrap();
                let key = (method.clone(), path.clone(), status);
                let excused = NOT_EXERCISED
                    .iter()
                    .any(|(m, p, s, _)| (*m, *p, *s) == (method.as_str(), path.as_str(), status));
                assert!(
                    answered.contains(&key) || excused,
                    "{method} {path} {status} is described but never answered in this test"
                );
            }
        }
    }
}

/// The answers against the description's schemas, with jsonschema (Python); and the check
/// can fail, and says where.
fn schemas_match(answers: &[Answer]) {
    // Unknown paths and methods are not endpoints of the description.
    let checked: Vec<&Answer> = answers.iter().filter(|a| !a.template.is_empty()).collect();
    let python = support::python();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("openapi.json");
    std::fs::write(&spec, OPENAPI).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi_check.py");
    let run = |answers: &[&Answer]| {
        let file = dir.path().join("answers.json");
        std::fs::write(&file, serde_json::to_vec(answers).unwrap()).unwrap();
        let out = std::process::Command::new(&python)
            .arg(&script)
            .arg(&spec)
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, out) = run(&checked);
    println!("{out}");
    assert!(ok, "answers that do not match the description:\n{out}");

    // The check can fail, and says where: a price that is text, a field nobody described.
    let mut wrong = checked
        .iter()
        .find(|a| a.template == "/api/v1/instances/{name}" && a.status == 200)
        .map(|a| (*a).clone())
        .expect("an instance answer");
    wrong.body["cost_so_far"] = json!("cheap");
    wrong.body["colour"] = json!("blue");
    let (ok, out) = run(&[&wrong]);
    assert!(!ok, "a wrong answer is caught:\n{out}");
    assert!(
        out.contains("GET /api/v1/instances/") && out.contains("at cost_so_far"),
        "the failure names the path and the field:\n{out}"
    );
    assert!(out.contains("colour"), "{out}");
}

/// No answer holds the API token, the webhook secret, the simulator's tokens, or anything that
/// decodes as a JIT runner config.
fn no_secret_in(answers: &[Answer]) {
    let hetzner = mayfly_sim::hetzner::HetznerConfig::default().token;
    for a in answers {
        let text = a.body.to_string();
        for secret in [TOKEN, HOOK_SECRET, "local-github-token", hetzner.as_str()] {
            assert!(!text.contains(secret), "{} {}: {text}", a.method, a.path);
        }
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || "+/=".contains(c))) {
            let jit = word.len() >= 20
                && base64::engine::general_purpose::STANDARD
                    .decode(word)
                    .is_ok_and(|b| String::from_utf8_lossy(&b).contains(".runner"));
            assert!(!jit, "a JIT config in {} {}", a.method, a.path);
        }
    }
}

/// The router serves exactly the paths and methods the description lists: each described one
/// answers (no 404 from the fallback, no 405), every other method gets 405, and the API's
/// route table has no path the description lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routes_are_the_described_ones() {
    let mut w = world(0, Duration::from_secs(600)).await;
    w.local.controller.reconciler.pass().await.unwrap();
    let w = w;
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (path, _) in api::routes() {
        assert!(
            paths.contains_key(path),
            "{path} is served but not described"
        );
    }
    let served: BTreeSet<&str> = api::routes().into_iter().map(|(p, _)| p).collect();
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    for (template, item) in paths {
        if template.starts_with("/api/v1/") {
            assert!(
                served.contains(template.as_str()),
                "{template} is described but not in the route table"
            );
        }
        let path = template.replace("{name}", "mf-absent");
        for method in &methods {
            let described = item.get(method.as_str().to_lowercase()).is_some();
            let req = Request::builder()
                .method(method.clone())
                .uri(&path)
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .unwrap();
            let response = w.router.clone().oneshot(req).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            let body = String::from_utf8_lossy(&body);
            if described {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert!(
                    !body.contains("no endpoint"),
                    "{method} {path} is described but falls through: {body}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is not described: {body}"
                );
            }
        }
    }
}

/// Ready only while passes read the world: an old read is not ready, and the last pass's error
/// is part of the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_goes_when_passes_stop_reading_the_world() {
    let mut w = world(0, Duration::from_secs(30)).await;
    w.local.controller.reconciler.pass().await.unwrap();
    let (status, _, body) = w.call(Method::GET, "/readyz", "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The cloud refuses the token: passes fail, the last read ages.
    w.local
        .sim
        .hetzner
        .set_config(|c| c.token = "changed".into());
    let err = w.local.controller.reconciler.pass().await.unwrap_err();
    assert!(err.to_string().contains("cannot list"), "{err}");
    // 30 simulated seconds at 50× speed.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (status, _, body) = w.call(Method::GET, "/readyz", "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("no reconcile pass has read the world for"),
        "{reason}"
    );
    assert!(
        reason.contains("the last pass failed: provider hetzner: cannot list"),
        "{reason}"
    );
    assert!(body["last_pass"]["error"].is_string(), "{body}");
    assert!(!body.to_string().contains("changed"), "no token in {body}");
    no_secret_in(&w.answers);
}

/// A create the store recorded but no machine stands behind (a crash before the cloud
/// answered) is forgotten by a delete, not sent to the cloud.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_with_no_machine_behind_it_is_dropped() {
    let mut w = world(0, Duration::from_secs(600)).await;
    let store = w.local.controller.store.clone();
    let now = w.local.controller.reconciler.now();
    let spec = w.local.controller.reconciler.pools().pools[0].spec.clone();
    let intent = mayfly_store::Intent {
        name: "mf-linux-cut-short".into(),
        pool: "linux".into(),
        provider: local::PROVIDER.into(),
        job: None,
        attempt: 0,
        run_id: None,
        labels: mayfly_core::Labels::new(LABELS),
        spec,
        created_at: now,
        state: mayfly_store::IntentState::Pending,
        provider_id: None,
        updated_at: now,
    };
    assert!(store.record_intent(&intent).await.unwrap());
    let path = "/api/v1/instances/mf-linux-cut-short";
    let (status, body) = w
        .api(Method::DELETE, "/api/v1/instances/{name}", path)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"], "intent_dropped");
    assert!(store.intents().await.unwrap().is_empty());
    assert!(
        w.local.sim.hetzner.billing().servers.is_empty(),
        "nothing was created"
    );
}
