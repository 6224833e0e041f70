//! `POST /webhooks/github` in-process through the router (signatures, limits, errors, dedup,
//! ordering, wake-ups), and once through `mayfly run` as a process (wake-up, logs, the store file).

mod support;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use mayfly::demand::Wake;
use mayfly::http::{BODY_LIMIT, STORE_TIMEOUT, Served, Webhooks, router};
use mayfly_core::{ForgeKind, JobKey, JobStatus, Secret};
use mayfly_forge::github::webhook::sign;
use mayfly_store::Store;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::Daemon;
use tower::ServiceExt;

const SECRET: &str = "whsec_DUMMY_hook";

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../forge/tests/fixtures/webhooks")
        .join(name);
    std::fs::read(path).expect("read fixture")
}

fn queued() -> Vec<u8> {
    fixture("workflow_job.6.queued.json")
}

/// The same job as [`queued`], completed.
fn completed() -> Vec<u8> {
    fixture("workflow_job.3.completed.json")
}

fn key() -> JobKey {
    JobKey {
        forge: ForgeKind::Github,
        scope: "Codertocat/Hello-World".into(),
        id: 289782451,
    }
}

fn signature(body: &[u8]) -> String {
    sign(&Secret::new(SECRET), body)
}

struct Harness {
    _dir: tempfile::TempDir,
    db: PathBuf,
    store: Store,
    wake: Arc<Wake>,
    app: Router,
    /// Every response body, to check that none repeats the secret or a signature.
    answers: Vec<String>,
}

impl Harness {
    async fn new(secret: Option<&str>) -> Harness {
        Harness::with_timeout(secret, STORE_TIMEOUT).await
    }

    async fn with_timeout(secret: Option<&str>, store_timeout: Duration) -> Harness {
        Harness::build(secret, store_timeout, Served::Any).await
    }

    async fn build(secret: Option<&str>, store_timeout: Duration, serves: Served) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("mayfly.db");
        let store = Store::open(db.to_str().expect("utf-8 path"))
            .await
            .expect("open store");
        let wake = Arc::new(Wake::default());
        let hooks = Webhooks {
            store_timeout,
            ..Webhooks::new(store.clone(), secret.map(Secret::new), wake.clone()).serving(serves)
        };
        Harness {
            _dir: dir,
            db,
            store,
            wake,
            app: router(hooks),
            answers: Vec::new(),
        }
    }

    async fn send(&mut self, req: Request<Body>) -> (StatusCode, String) {
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("read response");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        self.answers.push(text.clone());
        (status, text)
    }

    /// A delivery as GitHub sends it; `signature` `None` leaves the header out.
    async fn deliver(
        &mut self,
        event: &str,
        delivery: &str,
        body: Vec<u8>,
        signature: Option<String>,
    ) -> (StatusCode, String) {
        let mut req = Request::post("/webhooks/github")
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery);
        if let Some(sig) = signature {
            req = req.header("x-hub-signature-256", sig);
        }
        self.send(req.body(Body::from(body)).expect("request"))
            .await
    }

    async fn signed(&mut self, event: &str, delivery: &str, body: Vec<u8>) -> (StatusCode, String) {
        let sig = signature(&body);
        self.deliver(event, delivery, body, Some(sig)).await
    }

    async fn job_status(&self) -> Option<JobStatus> {
        let job = self.store.job(&key()).await.expect("read job");
        job.map(|j| j.status)
    }

    async fn woken(&self) -> bool {
        tokio::time::timeout(Duration::from_millis(200), self.wake.now.notified())
            .await
            .is_ok()
    }

    fn assert_no_secret_in_answers(&self) {
        for a in &self.answers {
            assert!(
                !a.contains(SECRET) && !a.contains("sha256="),
                "an answer repeats the secret or a signature: {a}"
            );
        }
    }
}

#[tokio::test]
async fn unsigned_or_wrongly_signed_deliveries_are_401_and_change_nothing() {
    let mut h = Harness::new(Some(SECRET)).await;
    let (status, _) = h.deliver("workflow_job", "d-1", queued(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let wrong = sign(&Secret::new("not the secret"), &queued());
    let (status, _) = h
        .deliver("workflow_job", "d-2", queued(), Some(wrong))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = h
        .deliver(
            "workflow_job",
            "d-3",
            queued(),
            Some("sha256=nothex".into()),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.job_status().await, None);
    assert!(!h.woken().await);

    // The rejected delivery ids were not recorded: the genuine delivery still counts.
    let (status, _) = h.signed("workflow_job", "d-1", queued()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(h.job_status().await, Some(JobStatus::Queued));
    h.assert_no_secret_in_answers();
}

#[tokio::test]
async fn without_a_secret_every_delivery_is_refused() {
    let mut h = Harness::new(None).await;
    let (status, text) = h.signed("workflow_job", "d-1", queued()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(text.contains("webhook_secret"), "{text}");
    let (status, _) = h.deliver("workflow_job", "d-2", queued(), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.job_status().await, None);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let mut h = Harness::new(Some(SECRET)).await;
    let mut body = queued();
    body.resize(BODY_LIMIT + 1, b' ');
    let (status, _) = h.signed("workflow_job", "d-1", body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(h.job_status().await, None);
}

#[tokio::test]
async fn malformed_payloads_and_unknown_actions_are_400_with_a_reason() {
    let mut h = Harness::new(Some(SECRET)).await;
    let (status, text) = h
        .signed("workflow_job", "d-1", b"{\"action\": \"queued\", ".to_vec())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("invalid workflow_job payload"), "{text}");

    let mut value: serde_json::Value = serde_json::from_slice(&queued()).expect("json");
    value["action"] = "requested".into();
    let (status, text) = h
        .signed("workflow_job", "d-2", value.to_string().into_bytes())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("unknown workflow_job action"), "{text}");

    let (status, _) = h.signed("workflow_job", "", queued()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an empty delivery id");
    assert_eq!(h.job_status().await, None);
    h.assert_no_secret_in_answers();
}

/// A job id at or past 2^63 is the delivery's fault, not the store's: 400 (GitHub shows it as
/// failed and does not retry), never 503 (which asks for a redelivery that fails the same way).
#[tokio::test]
async fn a_job_id_past_2_63_is_400() {
    let mut h = Harness::new(Some(SECRET)).await;
    let mut value: serde_json::Value = serde_json::from_slice(&queued()).expect("json");
    for (n, id) in [1u64 << 63, u64::MAX].into_iter().enumerate() {
        value["workflow_job"]["id"] = id.into();
        let (status, text) = h
            .signed(
                "workflow_job",
                &format!("d-big-{n}"),
                value.to_string().into_bytes(),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(
            text.contains(&format!("workflow_job.id {id} is out of range")),
            "{text}"
        );
    }
    assert!(
        h.store
            .jobs_with_status(&[JobStatus::Queued])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn ping_and_other_events_are_204() {
    let mut h = Harness::new(Some(SECRET)).await;
    let ping = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#.to_vec();
    let (status, _) = h.signed("ping", "d-1", ping).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h.signed("push", "d-2", b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!h.woken().await);
}

#[tokio::test]
async fn a_queued_job_is_stored_wakes_the_reconciler_and_survives_a_reopen() {
    let mut h = Harness::new(Some(SECRET)).await;
    let (status, _) = h.signed("workflow_job", "d-1", queued()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(h.woken().await, "the reconciler was not woken");
    h.store.close().await;

    let reopened = Store::open(h.db.to_str().expect("utf-8 path"))
        .await
        .expect("reopen the SQLite file");
    let job = reopened
        .job(&key())
        .await
        .expect("read job")
        .expect("job stored");
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.run_id, Some(2202229078));
    assert_eq!(job.attempt, 1);
    assert_eq!(job.labels, mayfly_core::Labels::new(["ubuntu-latest"]));
    assert_eq!(job.workflow.as_deref(), Some("CodeQL"));
    reopened.close().await;
}

/// A GitHub App installed organization-wide sends the jobs of every repository; mayfly serving a
/// list of them answers the others 2xx (GitHub needs no redelivery), stores nothing and wakes
/// nothing, so a foreign `self-hosted` job never gets a machine. Names compare as GitHub's do,
/// case-insensitively.
#[tokio::test]
async fn a_job_of_a_repository_mayfly_does_not_serve_is_answered_and_not_stored() {
    let serves = Served::new(&["acme/app".to_string()], Some("acme"));
    let mut h = Harness::build(Some(SECRET), STORE_TIMEOUT, serves).await;
    let (status, text) = h.signed("workflow_job", "d-1", queued()).await;
    assert!(status.is_success(), "{status}: {text}");
    assert!(
        text.contains("not a repository this mayfly serves"),
        "{text}"
    );
    assert_eq!(h.job_status().await, None, "stored a foreign job");
    assert!(!h.woken().await, "woke the reconciler for a foreign job");

    // The same delivery for a served repository (named in another case) is stored.
    let ours = Served::new(&["codertocat/hello-world".to_string()], None);
    let mut h = Harness::build(Some(SECRET), STORE_TIMEOUT, ours).await;
    assert_eq!(
        h.signed("workflow_job", "d-1", queued()).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(h.job_status().await, Some(JobStatus::Queued));
    // An organization without a list serves its own repositories only.
    assert!(Served::new(&[], Some("Codertocat")).covers("codertocat/other"));
    assert!(!Served::new(&[], Some("Codertocat")).covers("someone/else"));
}

#[tokio::test]
async fn a_delivery_id_counts_once() {
    let mut h = Harness::new(Some(SECRET)).await;
    assert_eq!(
        h.signed("workflow_job", "d-1", queued()).await.0,
        StatusCode::ACCEPTED
    );
    assert!(h.woken().await);
    // A redelivery answers 2xx (GitHub must not see a failure) and changes nothing, even if its
    // body differed.
    assert_eq!(
        h.signed("workflow_job", "d-1", completed()).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(h.job_status().await, Some(JobStatus::Queued));
    assert!(!h.woken().await, "a duplicate woke the reconciler");
}

/// Every delivery is counted by what became of it, and the one that takes the queued job onto
/// a runner records how long it waited: GitHub's `created_at` to its `started_at`.
#[tokio::test]
async fn deliveries_are_counted_by_outcome_and_a_start_measures_the_wait() {
    // A current-thread runtime: the handler records on this thread, into this recorder.
    let recorder = mayfly::metrics::recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut h = Harness::new(Some(SECRET)).await;
    let mut started: serde_json::Value =
        serde_json::from_slice(&fixture("workflow_job.4.in_progress.json")).expect("JSON");
    assert_eq!(
        started["workflow_job"]["created_at"],
        "2021-09-13T02:21:13Z"
    );
    started["workflow_job"]["started_at"] = "2021-09-13T02:21:55Z".into();
    let started = serde_json::to_vec(&started).expect("JSON");

    let accepted = StatusCode::ACCEPTED;
    assert_eq!(h.signed("workflow_job", "d-1", queued()).await.0, accepted);
    assert_eq!(h.signed("workflow_job", "d-1", queued()).await.0, accepted);
    let (status, _) = h.deliver("workflow_job", "d-2", queued(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = h.signed("ping", "d-3", b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h.signed("workflow_job", "d-4", b"{".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        h.signed("workflow_job", "d-5", started.clone()).await.0,
        accepted
    );
    assert_eq!(h.signed("workflow_job", "d-6", started).await.0, accepted);
    assert_eq!(h.job_status().await, Some(JobStatus::InProgress));

    let text = recorder.handle().render();
    let delivered = |outcome: &str| {
        mayfly_core::metrics::sum(
            &text,
            "mayfly_webhook_deliveries_total",
            &[("outcome", outcome)],
        )
    };
    let counts = [
        "stored",
        "duplicate",
        "invalid_signature",
        "ignored",
        "bad_request",
        "unchanged",
    ]
    .map(delivered);
    assert_eq!(counts, [2.0, 1.0, 1.0, 1.0, 1.0, 1.0], "{text}");
    let wait = |part: &str| {
        mayfly_core::metrics::sum(&text, &format!("mayfly_job_queue_wait_seconds_{part}"), &[])
    };
    assert_eq!((wait("count"), wait("sum")), (1.0, 42.0), "{text}");
    let checked = mayfly_core::metrics::check(
        &text,
        &[
            "mayfly_webhook_deliveries_total",
            "mayfly_job_queue_wait_seconds",
        ],
    );
    assert_eq!(checked, Ok(()));
    assert!(!text.contains(SECRET));
}

#[tokio::test]
async fn a_late_queued_never_reopens_a_completed_job() {
    let mut h = Harness::new(Some(SECRET)).await;
    assert_eq!(
        h.signed("workflow_job", "d-2", completed()).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        h.signed("workflow_job", "d-1", queued()).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(h.job_status().await, Some(JobStatus::Completed));
}

#[tokio::test]
async fn a_store_slower_than_the_bound_is_503_and_a_redelivery_is_safe() {
    use sqlx::Connection;
    let mut slow = Harness::with_timeout(Some(SECRET), Duration::from_millis(300)).await;
    // Another writer holds the database: the upsert waits for it, past the bound, whatever the
    // machine's speed.
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", slow.db.display()))
        .await
        .expect("second connection");
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("take the write lock");
    let (status, text) = slow.signed("workflow_job", "d-1", queued()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    // The write may still have landed after the answer, so the reconciler looks anyway.
    assert!(slow.woken().await);
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("release the write lock");
    other.close().await.expect("close");

    // GitHub's redelivery (same id) through an unhurried receiver on the same store.
    let hooks = Webhooks::new(
        slow.store.clone(),
        Some(Secret::new(SECRET)),
        slow.wake.clone(),
    );
    slow.app = router(hooks);
    let (status, _) = slow.signed("workflow_job", "d-1", queued()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(slow.job_status().await, Some(JobStatus::Queued));
}

#[tokio::test]
async fn healthz_answers_ok() {
    let mut h = Harness::new(None).await;
    let req = Request::get("/healthz")
        .body(Body::empty())
        .expect("request");
    assert_eq!(h.send(req).await, (StatusCode::OK, "ok".to_string()));
}

// ---- `mayfly run` as a process ----

/// One raw HTTP/1.1 exchange: the status code and the body.
fn http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    conn.write_all(request).expect("send request");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("read answer");
    let code = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (code, body)
}

fn post_delivery(addr: SocketAddr, delivery: &str, body: &[u8], sig: &str) -> (u16, String) {
    let mut req = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nX-GitHub-Event: workflow_job\r\n\
         X-GitHub-Delivery: {delivery}\r\nX-Hub-Signature-256: {sig}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    http(addr, &req)
}

#[test]
fn mayfly_run_receives_a_delivery_wakes_and_never_logs_the_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A timer pass every hour: a second pass soon after start can only be the webhook's.
    let config = format!(
        "state_dir = {:?}\n[intervals]\nreconcile = \"1h\"\n[github]\nwebhook_secret = {SECRET:?}\napi_url = \"http://127.0.0.1:9\"\n",
        dir.path().join("state").to_str().expect("utf-8 temp path")
    );
    let config_path = dir.path().join("mayfly.toml");
    std::fs::write(&config_path, config).expect("write config");
    let mut daemon = Daemon::start(
        dir.path(),
        &config_path,
        &[
            ("GITHUB_TOKEN", "ghp_DUMMY_gh"),
            ("HETZNER_TOKEN", "hz_DUMMY_hz"),
            // The repository of GitHub's example payload: mayfly serves it.
            ("GITHUB_REPOSITORY", "Codertocat/Hello-World"),
        ],
    );
    let Some(addr) = daemon.listen_addr() else {
        panic!("no listening address logged:\n{}", daemon.log());
    };
    if daemon
        .wait_for(&["reconcile pass", "trigger=\"start\""])
        .is_none()
    {
        panic!("no first pass:\n{}", daemon.log());
    }

    let health = http(
        addr,
        format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let body = queued();
    let sig = signature(&body);
    let unsigned = post_delivery(addr, "d-0", &body, "sha256=00");
    let accepted = post_delivery(addr, "3f1c8a50-0000-4000-8000-000000000001", &body, &sig);
    let woken = daemon.wait_for(&["reconcile pass", "trigger=\"demand\""]);
    let logged = daemon
        .seen
        .iter()
        .any(|l| l.contains("3f1c8a50-0000-4000-8000-000000000001") && l.contains("289782451"));
    let status = daemon.stop();
    let log = daemon.log();

    assert_eq!(health, (200, "ok".to_string()), "{log}");
    assert_eq!(unsigned.0, 401, "{log}");
    assert_eq!(accepted.0, 202, "{log}");
    assert!(woken.is_some(), "no pass after the delivery:\n{log}");
    assert!(logged, "the delivery id and job are not logged:\n{log}");
    assert!(
        status.is_some_and(|s| s.success()),
        "did not stop cleanly ({status:?}):\n{log}"
    );
    for leak in [SECRET, sig.as_str(), &sig["sha256=".len()..]] {
        assert!(!log.contains(leak), "the log shows {leak:?}:\n{log}");
        assert!(
            !unsigned.1.contains(leak) && !accepted.1.contains(leak),
            "an answer shows {leak:?}"
        );
    }

    let db = dir.path().join("state/mayfly.db");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let job = runtime.block_on(async {
        let store = Store::open(db.to_str().expect("utf-8 path"))
            .await
            .expect("open the store file");
        let job = store.job(&key()).await.expect("read job");
        store.close().await;
        job
    });
    assert_eq!(job.map(|j| j.status), Some(JobStatus::Queued), "{log}");
}
