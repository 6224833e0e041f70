//! The GitLab REST client against the fake GitLab over real HTTP: resolving projects and groups,
//! runner records (create, list, busy, deregister), pending jobs across pages, a job's tags read
//! once, Job Hooks parsed, the poller's cost, rate limits (budget, reserve, 429), retries, the
//! metric contract, and secrets kept out of errors and Debug output.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use mayfly_core::{JobStatus, Labels, Secret, metrics};
use mayfly_forge::gitlab::webhook::{self, Delivery};
use mayfly_forge::gitlab::{
    Client, ClientSettings, Error, GitlabConfig, JobScope, LimitsConfig, Poller, RunnerScope,
    RunnerType,
};
use mayfly_sim::clock::Clock as SimClock;
use mayfly_sim::gitlab::{
    AccessToken, ApiFaults, Gitlab, GitlabConfig as FakeConfig, HookTarget, NewJob,
};
use mayfly_sim::stats::Stats;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const TOKEN: &str = "glpat-TESTONLY-secret-0123";

struct Fake {
    gl: Arc<Gitlab>,
    stats: Arc<Stats>,
    url: String,
    clock: SimClock,
}

async fn start(config: FakeConfig, speed: f64) -> Fake {
    let clock = SimClock::new(speed);
    let stats = Arc::new(Stats::default());
    let gl = Gitlab::new(config, clock.clone(), stats.clone());
    let url = gl.serve_local().await.unwrap();
    Fake {
        gl,
        stats,
        url,
        clock,
    }
}

fn fake_config() -> FakeConfig {
    FakeConfig {
        tokens: vec![AccessToken::full(TOKEN)],
        ..FakeConfig::default()
    }
}

fn job(tags: &[&str]) -> NewJob {
    NewJob {
        name: "build".into(),
        stage: 0,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        duration: Duration::from_secs(600),
        protected: false,
    }
}

fn labels(l: &[&str]) -> Labels {
    Labels::new(l)
}

impl Fake {
    fn client_with(&self, token: &str, limits: LimitsConfig) -> Client {
        let settings = ClientSettings {
            url: self.url.clone(),
            token: Secret::new(token),
            limits,
        };
        Client::with_clock(&settings, Arc::new(self.clock.clone())).unwrap()
    }

    fn client(&self) -> Client {
        self.client_with(TOKEN, LimitsConfig::default())
    }

    /// Calls the fake counted for `method` on routes ending in `suffix`.
    fn calls(&self, method: &str, suffix: &str) -> u64 {
        self.stats
            .rows()
            .iter()
            .filter(|r| r.key.method == method && r.key.route.ends_with(suffix))
            .map(|r| r.count.calls)
            .sum()
    }

    fn total(&self) -> u64 {
        self.stats.total("gitlab")
    }

    /// A virtual runner's steps, in-process: it verifies the record's token and takes a job.
    fn take_job(&self, token: &Secret) -> (u64, u64) {
        let session = self
            .gl
            .redeem(&format!(
                "gitlab-runner run-single --url {} --token {} --executor shell --max-builds 1",
                self.url,
                token.expose()
            ))
            .unwrap();
        let job = self.gl.next_job(session).expect("a job for the runner");
        (session, job.job_id)
    }
}

fn config(projects: &[&str], groups: &[&str]) -> GitlabConfig {
    serde_json::from_value(serde_json::json!({
        "token": TOKEN, "projects": projects, "groups": groups,
    }))
    .unwrap()
}

#[tokio::test]
async fn projects_and_groups_resolve_into_runner_scopes() {
    let f = start(fake_config(), 1.0).await;
    let app = f.gl.project("acme/app").unwrap();
    f.gl.project("platform/api").unwrap();
    f.gl.project("platform/deep/web").unwrap();
    let c = f.client();

    let scopes = c
        .resolve(&config(&["acme/app"], &["platform"]))
        .await
        .unwrap();
    let paths: Vec<&str> = scopes
        .projects()
        .map(|p| p.path_with_namespace.as_str())
        .collect();
    assert_eq!(paths.len(), 3);
    assert!(paths.contains(&"platform/deep/web"), "subgroups count");
    assert_eq!(
        scopes.scope_for("acme/app"),
        Some(&RunnerScope::Project {
            id: app,
            path: "acme/app".into()
        })
    );
    assert!(matches!(
        scopes.scope_for("Platform/Deep/Web"),
        Some(RunnerScope::Group { path, .. }) if path == "platform"
    ));
    assert!(scopes.owns(&app.to_string()) && !scopes.owns("else/where"));
    assert_eq!(scopes.runner_scopes().len(), 2);
    assert_eq!(f.total(), 3, "a project, a group, a page of its projects");

    let mut as_projects = config(&[], &["platform"]);
    as_projects.runner_type = Some(RunnerType::Project);
    let scopes = c.resolve(&as_projects).await.unwrap();
    assert_eq!(
        scopes.runner_scopes().len(),
        2,
        "one project runner scope each"
    );
    assert_eq!(
        c.resolve(&config(&["nobody/here"], &[])).await.unwrap_err(),
        Error::NotFound
    );
}

#[tokio::test]
async fn runner_records_are_created_listed_checked_and_deregistered() {
    let f = start(
        FakeConfig {
            // The runner takes its time to confirm its job: two-phase commit's window.
            ack_delay: Duration::from_secs(3600),
            ..fake_config()
        },
        1.0,
    )
    .await;
    let app = f.gl.project("acme/app").unwrap();
    let group = f.gl.group("acme");
    let c = f.client();
    let project = RunnerScope::Project {
        id: app,
        path: "acme/app".into(),
    };

    let created = c
        .create_runner(
            &project,
            "mayfly-linux-1",
            &labels(&["linux", "docker"]),
            Some(3600),
        )
        .await
        .unwrap();
    assert!(created.token.expose().starts_with("glrt-"));
    assert!(!format!("{created:?}").contains(created.token.expose()));
    assert_eq!(f.calls("POST", "/user/runners"), 1);
    let detail = c.runner(created.id).await.unwrap();
    assert_eq!(detail.description, "mayfly-linux-1");
    assert_eq!(detail.runner_type, "project_type");
    assert!(detail.tags.contains("linux") && detail.tags.contains("docker"));
    assert_eq!(detail.status, "never_contacted");
    let record = &f.gl.runners()[0];
    assert_eq!(record.owner, "acme/app");
    let group_scope = RunnerScope::Group {
        id: group,
        path: "acme".into(),
    };
    let in_group = c
        .create_runner(&group_scope, "mayfly-gpu-1", &labels(&["gpu"]), None)
        .await
        .unwrap();

    // Lists: each scope's own runners, every page.
    for i in 0..120 {
        c.create_runner(&project, &format!("bulk-{i}"), &labels(&["linux"]), None)
            .await
            .unwrap();
    }
    let before = f.calls("GET", "/projects/{id}/runners");
    let listed = c.list_runners(&project).await.unwrap();
    assert_eq!(listed.len(), 121);
    assert_eq!(
        f.calls("GET", "/projects/{id}/runners") - before,
        2,
        "two pages of 100"
    );
    let in_groups = c.list_runners(&group_scope).await.unwrap();
    assert_eq!(
        in_groups.iter().map(|r| r.id).collect::<Vec<_>>(),
        [in_group.id]
    );

    // Busy: one call each; a job handed over but not yet confirmed counts.
    f.gl.enqueue("acme/app", vec![job(&["linux", "docker"])])
        .unwrap();
    assert!(!c.runner_busy(created.id).await.unwrap());
    let (session, job_id) = f.take_job(&created.token);
    let before = f.total();
    assert!(
        c.runner_busy(created.id).await.unwrap(),
        "pending, unconfirmed"
    );
    assert_eq!(c.deregister(created.id).await, Err(Error::Busy));
    assert_eq!(f.total() - before, 2, "a busy check each, no delete");
    f.gl.finish_job(session, job_id, "success");
    let before = f.total();
    assert_eq!(c.deregister(created.id).await, Ok(()));
    assert_eq!(f.total() - before, 2, "the check and the delete");
    assert_eq!(c.deregister(created.id).await, Ok(()), "gone already");
    assert_eq!(c.delete_runner(created.id).await, Ok(()));
    assert_eq!(c.runner(created.id).await.unwrap_err(), Error::NotFound);
}

#[tokio::test]
async fn pending_jobs_are_read_across_pages_and_tags_once() {
    let f = start(fake_config(), 1.0).await;
    let app = f.gl.project("acme/app").unwrap();
    for i in 0..130 {
        let tag = if i % 2 == 0 { "linux" } else { "arm64" };
        f.gl.enqueue("acme/app", vec![job(&[tag])]).unwrap();
    }
    let c = f.client();
    let jobs = c.project_jobs(app, &[JobScope::Pending]).await.unwrap();
    assert_eq!(jobs.len(), 130);
    assert_eq!(f.calls("GET", "/projects/{id}/jobs"), 2, "two pages of 100");
    assert!(
        jobs.iter()
            .all(|j| j.job_status() == Some(JobStatus::Queued))
    );
    assert!(jobs[0].id > jobs[1].id, "newest first");

    // Tags of a listed job are known already; another client reads them once.
    let id = jobs[7].id;
    assert_eq!(c.job_tags(app, id).await.unwrap(), jobs[7].labels());
    assert_eq!(f.calls("GET", "/projects/{id}/jobs/{job_id}"), 0);
    let fresh = f.client();
    let tags = fresh.job_tags(app, id).await.unwrap();
    assert_eq!(tags, jobs[7].labels());
    fresh.job_tags(app, id).await.unwrap();
    assert_eq!(f.calls("GET", "/projects/{id}/jobs/{job_id}"), 1, "once");
    let one = fresh.job(app, id).await.unwrap();
    assert_eq!(one.status, "pending");
    assert_eq!(fresh.job(app, 1).await.unwrap_err(), Error::NotFound);
}

/// A receiver that keeps every delivery.
async fn receiver() -> (String, mpsc::UnboundedReceiver<(HeaderMap, Vec<u8>)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route(
            "/hook",
            post(
                |State(tx): State<mpsc::UnboundedSender<(HeaderMap, Vec<u8>)>>,
                 headers: HeaderMap,
                 body: axum::body::Bytes| async move {
                    let _ = tx.send((headers, body.to_vec()));
                    StatusCode::OK
                },
            ),
        )
        .with_state(tx);
    let addr = mayfly_sim::serve_local(app).await.unwrap();
    (format!("http://{addr}/hook"), rx)
}

#[tokio::test]
async fn job_hooks_of_the_fake_parse_into_job_updates() {
    let f = start(fake_config(), 1.0).await;
    let (url, mut rx) = receiver().await;
    f.gl.set_config(|c| {
        c.webhooks.push(HookTarget {
            url,
            token: "hook-secret".into(),
        })
    });
    let app = f.gl.project("acme/platform/app").unwrap();
    let c = f.client();
    let scope = RunnerScope::Project {
        id: app,
        path: "acme/platform/app".into(),
    };
    let created = c
        .create_runner(&scope, "mayfly-linux-9", &labels(&["linux"]), None)
        .await
        .unwrap();
    let (_, ids) =
        f.gl.enqueue("acme/platform/app", vec![job(&["linux"])])
            .unwrap();
    let (session, job_id) = f.take_job(&created.token);
    f.gl.finish_job(session, job_id, "success");

    let secret = Secret::new("hook-secret");
    let mut updates = Vec::new();
    for _ in 0..4 {
        let (headers, body) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a delivery")
            .unwrap();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        webhook::verify_token(&secret, header(webhook::TOKEN_HEADER)).unwrap();
        assert!(header(webhook::IDEMPOTENCY_HEADER).is_some());
        match webhook::parse(header(webhook::EVENT_HEADER).unwrap(), &body).unwrap() {
            Delivery::Job(u) => updates.push(u),
            // A job of a stage not yet started is no demand: it is told of, and left alone.
            Delivery::Ignored { event } => assert_eq!(event, "Job Hook (created)"),
        }
    }
    let statuses: Vec<(JobStatus, &str)> = updates
        .iter()
        .map(|u| (u.status, u.gitlab_status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            (JobStatus::Queued, "pending"),
            (JobStatus::InProgress, "running"),
            (JobStatus::Completed, "success"),
        ]
    );
    let done = &updates[2];
    assert_eq!(
        done.key.to_string(),
        format!("gitlab:acme/platform/app#{}", ids[0])
    );
    assert_eq!((done.project_id, done.labels.as_ref()), (app, None));
    assert_eq!(done.conclusion.as_deref(), Some("success"));
    assert_eq!(done.runner_name.as_deref(), Some("mayfly-linux-9"));
    assert!(done.finished_at >= done.started_at && done.started_at.is_some());
    assert!(updates[0].runner_name.is_none(), "no runner while pending");
}

#[test]
fn bad_job_hooks_get_clear_errors() {
    use webhook::ParseError;
    let ok = serde_json::json!({
        "object_kind": "build", "build_id": 7, "build_status": "pending", "project_id": 3,
        "pipeline_id": 5, "build_created_at": "2021-02-23 02:41:37 UTC",
        "project": { "path_with_namespace": "g/p" }, "runner": null,
    });
    let parse = |v: &Value| webhook::parse(webhook::JOB_HOOK, v.to_string().as_bytes());
    let Ok(Delivery::Job(u)) = parse(&ok) else {
        panic!("the old time format reads")
    };
    assert!(u.created_at.is_some());
    let with = |k: &str, v: Value| {
        let mut x = ok.clone();
        x[k] = v;
        parse(&x)
    };
    assert_eq!(
        with("object_kind", "pipeline".into()),
        Err(ParseError::UnknownObjectKind("pipeline".into()))
    );
    assert_eq!(
        with("build_status", "exploded".into()),
        Err(ParseError::UnknownStatus("exploded".into()))
    );
    assert!(matches!(
        with("build_status", "manual".into()),
        Ok(Delivery::Ignored { .. })
    ));
    assert_eq!(
        with("project", Value::Null),
        Err(ParseError::MissingProjectPath)
    );
    assert!(matches!(
        with("build_created_at", "soon".into()),
        Err(ParseError::Time { .. })
    ));
    assert!(matches!(
        with("build_id", "seven".into()),
        Err(ParseError::Json(_))
    ));
    let garbage: Vec<u8> = (0..=255u8).collect();
    assert!(webhook::parse(webhook::JOB_HOOK, &garbage).is_err());
}

#[tokio::test]
async fn the_poller_costs_one_call_per_idle_project_and_reports_each_change_once() {
    // 50x: the client's backoffs after the injected 502s take a fiftieth.
    let f = start(fake_config(), 50.0).await;
    f.gl.project("acme/web").unwrap();
    let c = f.client();
    let scopes = c
        .resolve(&config(&["acme/app", "acme/web"], &[]))
        .await
        .unwrap_or_default();
    assert!(scopes.projects().count() < 2, "acme/app does not exist yet");
    f.gl.enqueue("acme/app", vec![job(&["linux"]), job(&["linux"])])
        .unwrap();
    let scopes = c
        .resolve(&config(&["acme/app", "acme/web"], &[]))
        .await
        .unwrap();
    let app = scopes.project("acme/app").unwrap().project.clone();
    let mut poller = Poller::new(c.clone(), scopes.projects().cloned().collect());

    let before = f.total();
    let first = poller.poll().await;
    assert_eq!(
        (first.jobs.len(), first.calls, f.total() - before),
        (2, 2, 2)
    );
    assert!(
        first
            .jobs
            .iter()
            .all(|u| u.labels == Some(labels(&["linux"])))
    );
    for _ in 0..3 {
        let before = f.total();
        let idle = poller.poll().await;
        assert_eq!(
            (idle.jobs.len(), f.total() - before),
            (0, 2),
            "one call per project"
        );
    }

    let created = c
        .create_runner(
            &RunnerScope::Project {
                id: app.id,
                path: app.path_with_namespace.clone(),
            },
            "m-1",
            &labels(&["linux"]),
            None,
        )
        .await
        .unwrap();
    let (session, job_id) = f.take_job(&created.token);
    let running = poller.poll().await;
    assert_eq!(running.jobs.len(), 1);
    assert_eq!(running.jobs[0].status, JobStatus::InProgress);
    f.gl.finish_job(session, job_id, "failed");
    let before = f.total();
    let ended = poller.poll().await;
    assert_eq!(
        f.total() - before,
        3,
        "two lists and one read of the job that left"
    );
    assert_eq!(ended.jobs.len(), 1);
    let u = &ended.jobs[0];
    assert_eq!(
        (u.key.id, u.status, u.conclusion.as_deref()),
        (job_id, JobStatus::Completed, Some("failed"))
    );
    assert_eq!(u.failure_reason.as_deref(), Some("script_failure"));
    assert_eq!(poller.poll().await.jobs.len(), 0);

    // A failing project does not stop the others.
    f.gl.set_config(|c| {
        c.api_faults = ApiFaults {
            next_server_errors: 4,
            ..ApiFaults::default()
        }
    });
    let report = poller.poll().await;
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
}

#[tokio::test]
async fn the_budget_comes_from_ratelimit_headers_and_the_reserve_keeps_the_last_of_it() {
    // 20x: a minute's window passes in three seconds, time enough for its eleven calls.
    let f = start(
        FakeConfig {
            rate_limit_per_minute: 10,
            ..fake_config()
        },
        20.0,
    )
    .await;
    let app = f.gl.project("acme/app").unwrap();
    let c = f.client_with(
        TOKEN,
        LimitsConfig {
            reserve: 0.5,
            ..LimitsConfig::default()
        },
    );
    let scope = RunnerScope::Project {
        id: app,
        path: "acme/app".into(),
    };
    // Align to the start of a window, so all six calls fall in one.
    let ms = f.clock.now_ms();
    tokio::time::sleep(
        f.clock
            .real(Duration::from_millis((60_000 - ms % 60_000) as u64 + 50)),
    )
    .await;
    for _ in 0..6 {
        c.project_jobs(app, &[JobScope::Pending]).await.unwrap();
    }
    let b = c.budget();
    assert_eq!((b.limit, b.remaining), (10, 4));
    let before = f.total();
    assert_eq!(c.list_runners(&scope).await.unwrap_err(), Error::Postponed);
    assert_eq!(f.total(), before, "postponed without a call");
    for _ in 0..4 {
        c.project_jobs(app, &[JobScope::Pending]).await.unwrap();
    }
    assert_eq!(c.budget().remaining, 0);
    // Spent: the next call waits for the window's end instead of drawing a 429.
    c.project_jobs(app, &[JobScope::Pending]).await.unwrap();
    let errors: u64 = f.stats.rows().iter().map(|r| r.count.errors).sum();
    assert_eq!(errors, 0, "no 429 was drawn");
    assert!(
        c.list_runners(&scope).await.is_ok(),
        "a new window, a new budget"
    );
}

#[tokio::test]
async fn a_429_is_waited_out_within_bounds_and_transient_failures_retried_only_when_safe() {
    let f = start(fake_config(), 60.0).await;
    let app = f.gl.project("acme/app").unwrap();
    let c = f.client();
    let scope = RunnerScope::Project {
        id: app,
        path: "acme/app".into(),
    };
    let fault = |f: &Fake, faults: ApiFaults| f.gl.set_config(|c| c.api_faults = faults);

    // Two 429s asking for 30 (simulated) seconds each: waited out, then the answer.
    fault(
        &f,
        ApiFaults {
            next_rate_limited: 2,
            retry_after_secs: 30,
            ..ApiFaults::default()
        },
    );
    let before = f.total();
    c.project_jobs(app, &[JobScope::Pending]).await.unwrap();
    assert_eq!(f.total() - before, 3);

    // A wait longer than max_wait_secs is the caller's: RateLimited, and the pause holds every
    // call until it ends without sending any.
    fault(
        &f,
        ApiFaults {
            next_rate_limited: 1,
            retry_after_secs: 600,
            ..ApiFaults::default()
        },
    );
    let before = f.total();
    assert_eq!(
        c.project_jobs(app, &[JobScope::Pending]).await.unwrap_err(),
        Error::RateLimited {
            retry_after: Some(Duration::from_secs(600))
        }
    );
    assert!(matches!(
        c.without_waiting()
            .create_runner(&scope, "m", &labels(&["x"]), None)
            .await,
        Err(Error::RateLimited { .. })
    ));
    assert_eq!(f.total() - before, 1);

    // After the pause (10 simulated minutes, 10 s real is too long for a test): a new client.
    let c = f.client();
    fault(
        &f,
        ApiFaults {
            next_server_errors: 2,
            ..ApiFaults::default()
        },
    );
    let before = f.total();
    c.project_jobs(app, &[JobScope::Pending]).await.unwrap();
    assert_eq!(f.total() - before, 3, "a read is tried again after a 502");
    fault(
        &f,
        ApiFaults {
            next_server_errors: 1,
            ..ApiFaults::default()
        },
    );
    let before = f.total();
    assert!(matches!(
        c.create_runner(&scope, "m", &labels(&["x"]), None).await,
        Err(Error::Http { status: 502, .. })
    ));
    assert_eq!(f.total() - before, 1, "a create is never sent twice");
    assert!(f.gl.runners().is_empty());
}

#[tokio::test]
async fn secrets_stay_out_of_errors_and_debug_and_calls_follow_the_metric_contract() {
    let mut builder = PrometheusBuilder::new();
    for m in metrics::CONTRACT.iter().filter(|m| !m.buckets.is_empty()) {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(m.name.into()), m.buckets)
            .unwrap();
    }
    let recorder = builder.build_recorder();
    // A current-thread runtime: every call is recorded on this thread, into this recorder.
    let _local = ::metrics::set_default_local_recorder(&recorder);

    let f = start(
        FakeConfig {
            tokens: vec![
                AccessToken::full(TOKEN),
                AccessToken {
                    token: "glpat-reader-secret".into(),
                    username: "reader".into(),
                    scopes: vec!["read_api".into()],
                    admin: false,
                },
            ],
            ..FakeConfig::default()
        },
        1.0,
    )
    .await;
    let app = f.gl.project("acme/app").unwrap();
    let scope = RunnerScope::Project {
        id: app,
        path: "acme/app".into(),
    };

    let wrong = f.client_with("glpat-wrong-secret", LimitsConfig::default());
    let e = wrong
        .project_jobs(app, &[JobScope::Pending])
        .await
        .unwrap_err();
    assert_eq!(e, Error::Unauthorized);
    let reader = f.client_with("glpat-reader-secret", LimitsConfig::default());
    let e = reader
        .create_runner(&scope, "m", &labels(&["x"]), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Forbidden { message } if message.contains("create_runner")),
        "{e}"
    );
    let c = f.client();
    let created = c
        .create_runner(&scope, "m", &labels(&["x"]), None)
        .await
        .unwrap();
    let e = c
        .create_runner(&scope, "m", &Labels::new(Vec::<String>::new()), Some(60))
        .await
        .unwrap_err();
    assert!(matches!(&e, Error::Invalid { .. }), "{e}");

    let config: GitlabConfig = serde_json::from_value(serde_json::json!({
        "token": TOKEN, "projects": ["acme/app"], "webhook_secret": "hook-secret-value",
    }))
    .unwrap();
    let shown = format!(
        "{e} {e:?} {created:?} {config:?} {:?}",
        serde_json::to_string(&config).unwrap()
    );
    for secret in [
        TOKEN,
        "glpat-wrong-secret",
        "glpat-reader-secret",
        "hook-secret-value",
        created.token.expose(),
    ] {
        assert!(!shown.contains(secret), "{secret} shown");
    }

    let text = recorder.handle().render();
    if let Err(problems) = metrics::check(&text, metrics::API_FAMILIES) {
        panic!("{}\n{text}", problems.join("\n"));
    }
    let count = |outcome: &str| {
        metrics::sum(
            &text,
            metrics::API_CALLS,
            &[("api", "gitlab"), ("outcome", outcome)],
        )
    };
    assert_eq!((count("ok"), count("client_error")), (1.0, 3.0), "{text}");
    let total = metrics::sum(&text, metrics::API_CALLS, &[]);
    assert_eq!(total, f.total() as f64);
    assert_eq!(
        metrics::sum(&text, "mayfly_api_request_duration_seconds_count", &[]),
        total
    );
    assert_eq!(
        metrics::sum(&text, metrics::API_RATE_LIMIT_REMAINING, &[]),
        f64::from(c.budget().remaining)
    );
    assert!(!text.contains(TOKEN));
}
