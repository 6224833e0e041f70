//! `POST /webhooks/gitlab` in-process through the router, against the fake GitLab: a pending
//! job the store does not know is read once for its tags and stored; a redelivery (the same
//! `Idempotency-Key`) changes nothing and calls nothing; bad input gets a clear status, is not
//! stored, and no answer repeats the token.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use mayfly::demand::Wake;
use mayfly::http::{BODY_LIMIT, GitlabHooks, Webhooks, router};
use mayfly_core::{ForgeKind, JobKey, JobStatus, Labels, Secret};
use mayfly_forge::GitlabForge;
use mayfly_forge::gitlab::{Client, GitlabConfig};
use mayfly_sim::clock::Clock;
use mayfly_sim::gitlab::{AccessToken, Gitlab, NewJob};
use mayfly_sim::stats::Stats;
use mayfly_store::Store;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const API_TOKEN: &str = "glpat-webhook-test";
const HOOK_TOKEN: &str = "hook-token-SECRET";

struct Harness {
    _dir: tempfile::TempDir,
    store: Store,
    wake: Arc<Wake>,
    gitlab: Arc<Gitlab>,
    forge: Arc<GitlabForge>,
    stats: Arc<Stats>,
    project: u64,
    app: Router,
    answers: Vec<String>,
}

impl Harness {
    async fn new() -> Harness {
        let stats = Arc::new(Stats::default());
        let gitlab = Gitlab::new(
            mayfly_sim::gitlab::GitlabConfig {
                tokens: vec![AccessToken::full(API_TOKEN)],
                ..Default::default()
            },
            Clock::new(1.0),
            stats.clone(),
        );
        let project = gitlab.project("acme/app").expect("a project");
        gitlab.project("other/app").expect("another project");
        let url = gitlab.serve_local().await.expect("serve the fake GitLab");
        let config: GitlabConfig = serde_json::from_value(json!({
            "url": url, "token": API_TOKEN, "projects": ["acme/app"],
        }))
        .expect("config");
        let client = Client::new(&config.client()).expect("client");
        let forge = GitlabForge::resolve(client, &config)
            .await
            .expect("resolve the project");
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path().join("mayfly.db").to_str().expect("utf-8"))
            .await
            .expect("open store");
        let wake = Arc::new(Wake::default());
        let forge = Arc::new(forge);
        let hooks = Webhooks::new(store.clone(), None, wake.clone()).with_gitlab(GitlabHooks {
            secret: Some(Secret::new(HOOK_TOKEN)),
            forge: forge.clone(),
        });
        Harness {
            _dir: dir,
            store,
            wake,
            gitlab,
            forge,
            stats,
            project,
            app: router(hooks),
            answers: Vec::new(),
        }
    }

    /// A delivery as GitLab sends it; `None` leaves a header out.
    async fn deliver(
        &mut self,
        token: Option<&str>,
        event: Option<&str>,
        key: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, String) {
        let mut req = Request::post("/webhooks/gitlab").header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("x-gitlab-token", t);
        }
        if let Some(e) = event {
            req = req.header("x-gitlab-event", e);
        }
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body)).expect("request"))
            .await
            .expect("infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        self.answers.push(text.clone());
        (status, text)
    }

    async fn hook(&mut self, key: &str, body: &Value) -> (StatusCode, String) {
        let body = serde_json::to_vec(body).expect("json");
        self.deliver(Some(HOOK_TOKEN), Some("Job Hook"), Some(key), body)
            .await
    }

    /// Every job the store holds, whatever its status.
    async fn stored(&self) -> Vec<JobKey> {
        self.store
            .jobs_with_status(&[
                JobStatus::Queued,
                JobStatus::InProgress,
                JobStatus::Completed,
            ])
            .await
            .expect("read jobs")
            .into_iter()
            .map(|j| j.key)
            .collect()
    }
}

/// A Job Hook payload as GitLab's documentation shows it (trimmed to what is read).
fn payload(project: u64, path: &str, job: u64, status: &str) -> Value {
    json!({
        "object_kind": "build",
        "ref": "main",
        "build_id": job,
        "build_name": "test",
        "build_stage": "test",
        "build_status": status,
        "build_created_at": "2026-12-07 10:00:00 UTC",
        "build_started_at": null,
        "build_finished_at": null,
        "pipeline_id": 9,
        "project_id": project,
        "project_name": "Acme / App",
        "project": { "id": project, "path_with_namespace": path },
        "runner": null,
    })
}

#[tokio::test]
async fn a_pending_job_is_read_once_for_its_tags_and_a_redelivery_changes_nothing() {
    let mut h = Harness::new().await;
    let (_, ids) = h
        .gitlab
        .enqueue(
            "acme/app",
            vec![NewJob {
                name: "test".into(),
                stage: 0,
                tags: vec!["linux".into(), "x64".into()],
                duration: Duration::from_secs(60),
                protected: false,
            }],
        )
        .expect("a pipeline");
    let job = ids[0];
    let before = h.stats.total("gitlab");
    let body = payload(h.project, "acme/app", job, "pending");
    let (status, _) = h.hook("key-1", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(h.stats.total("gitlab") - before, 1, "one read of the job");
    let key = JobKey {
        forge: ForgeKind::Gitlab,
        scope: "acme/app".into(),
        id: job,
    };
    let rec = h.store.job(&key).await.expect("read").expect("stored");
    assert_eq!(rec.status, JobStatus::Queued);
    assert_eq!(rec.labels, Labels::new(["linux", "x64"]));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), h.wake.now.notified())
            .await
            .is_ok(),
        "a pending job wakes the loop"
    );
    // GitLab retried the same event: the same key, nothing new, no call.
    let (status, _) = h.hook("key-1", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Its start, without tags in the payload, keeps the tags the store has, and calls nothing.
    let (status, _) = h
        .hook("key-2", &payload(h.project, "acme/app", job, "running"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(h.stats.total("gitlab") - before, 1, "no more calls");
    let rec = h.store.job(&key).await.expect("read").expect("stored");
    assert_eq!(rec.status, JobStatus::InProgress);
    assert_eq!(rec.labels, Labels::new(["linux", "x64"]));
}

#[tokio::test]
async fn bad_input_gets_a_clear_status_and_nothing_is_stored() {
    // A current-thread runtime: the handler records on this thread, into this recorder.
    let recorder = mayfly::metrics::recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut h = Harness::new().await;
    let good = serde_json::to_vec(&payload(h.project, "acme/app", 77, "pending")).unwrap();
    // What is wrong, the token and event headers, the body, the answer wanted.
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Vec<u8>,
        StatusCode,
    );
    let cases: Vec<Case> = vec![
        (
            "no token",
            None,
            Some("Job Hook"),
            good.clone(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong token",
            Some("hook-token-WRONG"),
            Some("Job Hook"),
            good.clone(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "oversized",
            Some(HOOK_TOKEN),
            Some("Job Hook"),
            vec![b' '; BODY_LIMIT + 1],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "malformed JSON",
            Some(HOOK_TOKEN),
            Some("Job Hook"),
            b"{\"object_kind\": \"build\", ".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown object_kind",
            Some(HOOK_TOKEN),
            Some("Job Hook"),
            serde_json::to_vec(&json!({ "object_kind": "deployment", "build_id": 1 })).unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "no event",
            Some(HOOK_TOKEN),
            None,
            good.clone(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "a project not configured",
            Some(HOOK_TOKEN),
            Some("Job Hook"),
            serde_json::to_vec(&payload(h.project + 1, "other/app", 78, "pending")).unwrap(),
            StatusCode::ACCEPTED,
        ),
        (
            "another event",
            Some(HOOK_TOKEN),
            Some("Pipeline Hook"),
            good.clone(),
            StatusCode::NO_CONTENT,
        ),
    ];
    let before = h.stats.total("gitlab");
    for (what, token, event, body, want) in cases {
        let (status, text) = h.deliver(token, event, Some(what), body).await;
        assert_eq!(status, want, "{what}: {text}");
        if status.is_client_error() && status != StatusCode::PAYLOAD_TOO_LARGE {
            assert!(!text.trim().is_empty(), "{what}: the answer says why");
        }
    }
    assert!(h.stored().await.is_empty(), "nothing stored");
    assert_eq!(h.stats.total("gitlab"), before, "no call to GitLab");
    // Counted as GitLab's, each by what became of it (the oversized body never reaches the
    // handler: the body limit answers first).
    let text = recorder.handle().render();
    let counted = |forge: &str, outcome: &str| {
        mayfly_core::metrics::sum(
            &text,
            "mayfly_webhook_deliveries_total",
            &[("forge", forge), ("outcome", outcome)],
        )
    };
    assert_eq!(
        ["invalid_signature", "bad_request", "foreign", "ignored"].map(|o| counted("gitlab", o)),
        [2.0, 3.0, 1.0, 1.0],
        "{text}"
    );
    assert_eq!(
        mayfly_core::metrics::sum(
            &text,
            "mayfly_webhook_deliveries_total",
            &[("forge", "github")]
        ),
        0.0,
        "{text}"
    );
    for a in &h.answers {
        assert!(
            !a.contains("SECRET") && !a.contains("WRONG"),
            "an answer repeats a token: {a}"
        );
    }
}

/// The poll of GitLab's projects costs a request each time (no ETag), so it backs off once the
/// Job Hooks prove they arrive, as GitHub's does: each `running` hook that finds its job
/// pending in the store, each end that finds it running, and each pending job a poll finds
/// known already is a proof; thirty in a row put the project on the backstop (polled every
/// 300 s here, not every pass), and a restart keeps that. A hook that finds its predecessor
/// missing (a job first heard of when it ran) puts it back on every pass.
#[tokio::test]
async fn job_hooks_that_prove_they_arrive_put_the_project_on_the_backstop() {
    use mayfly::gitlab_demand::GitlabDemand;
    use mayfly_core::Time;
    let mut h = Harness::new().await;
    let mut demand = GitlabDemand::new(
        h.store.clone(),
        h.forge.clone(),
        true,
        h.wake.clone(),
        Duration::from_secs(600),
    )
    .backstop(Duration::from_secs(300));
    let t0 = mayfly::demand::now();
    let at = |secs: i64| Time(t0.0 + secs * 1000);
    let polls = |h: &Harness| -> u64 {
        h.stats
            .rows()
            .iter()
            .filter(|r| r.key.route == "/api/v4/projects/{id}/jobs")
            .map(|r| r.count.calls)
            .sum()
    };
    let job = || NewJob {
        name: "test".into(),
        stage: 0,
        tags: vec!["linux".into()],
        duration: Duration::from_secs(60),
        protected: false,
    };
    let mut secs = 0;
    // Ten jobs whose hooks all arrive, a pass after each: three proofs a job (its running and
    // its end hooks, and the poll that finds it pending in the store already).
    for n in 0..10 {
        assert!(!demand.trusted("acme/app"), "not after {} proofs", 3 * n);
        let before = polls(&h);
        demand.pass(at(secs)).await;
        assert_eq!(polls(&h) - before, 1, "polled every pass until trusted");
        secs += 10;
        let (_, ids) = h
            .gitlab
            .enqueue("acme/app", vec![job()])
            .expect("a pipeline");
        let id = ids[0];
        for (i, status) in ["pending", "running", "success"].into_iter().enumerate() {
            let (code, _) = h
                .hook(
                    &format!("k-{id}-{i}"),
                    &payload(h.project, "acme/app", id, status),
                )
                .await;
            assert_eq!(code, StatusCode::ACCEPTED);
        }
    }
    demand.pass(at(secs)).await;
    assert!(demand.trusted("acme/app"));
    let trusted_at = secs;
    // Trusted: no poll until the backstop (300 s), then one, although a job waits pending in
    // the store (a GitLab poll costs the same whatever it shows: nothing to wait for). Its
    // hook's record differs from the API's (the test's payload names another pipeline and
    // creation time): a poll seeing it is no news, since the store held its status already.
    let (_, ids) = h
        .gitlab
        .enqueue("acme/app", vec![job()])
        .expect("a pipeline");
    let (code, _) = h
        .hook(
            "k-waiting",
            &payload(h.project, "acme/app", ids[0], "pending"),
        )
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let before = polls(&h);
    let mut polled_at = Vec::new();
    for _ in 0..35 {
        secs += 10;
        let n = polls(&h);
        demand.pass(at(secs)).await;
        if polls(&h) > n {
            polled_at.push(secs - trusted_at);
        }
    }
    assert_eq!(polled_at, [300], "once, a backstop after trust");
    assert_eq!(polls(&h) - before, 1);
    // A restart keeps what was learned (the store holds it). Its first poll reports every
    // pending job (the ten above), which the store knew from an earlier process: no proof.
    let saved = || async {
        h.store
            .cursor("gitlab:webhook-trust")
            .await
            .expect("read")
            .expect("saved")
    };
    let before_restart = saved().await;
    // Thirty, and one: the backstop's poll found the waiting job its hook had told of.
    assert!(before_restart.contains("\"clean\":31"), "{before_restart}");
    let mut again = GitlabDemand::new(
        h.store.clone(),
        h.forge.clone(),
        true,
        Arc::new(Wake::default()),
        Duration::from_secs(600),
    );
    again.pass(at(secs)).await;
    assert!(again.trusted("acme/app"), "trusted after a restart");
    assert_eq!(saved().await, before_restart);
    // A job first heard of when it ran: its pending hook was lost.
    let (_, ids) = h
        .gitlab
        .enqueue("acme/app", vec![job()])
        .expect("a pipeline");
    let (code, _) = h
        .hook("k-gap", &payload(h.project, "acme/app", ids[0], "running"))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let before = polls(&h);
    let report = demand.pass(at(secs + 10)).await;
    assert!(!demand.trusted("acme/app"));
    assert_eq!(report.lossy, 1, "{report:?}");
    assert_eq!(polls(&h) - before, 1, "polled in the same pass");
}
