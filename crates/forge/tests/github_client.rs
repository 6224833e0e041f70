//! The GitHub REST client against the fake GitHub over real HTTP: runners, JIT configs, jobs,
//! App auth, paging, ETags, rate limits and priorities, GHES paths, and secrets kept out of errors.

use axum::Json;
use axum::http::StatusCode;
use axum::routing::{get, post};
use mayfly_core::metrics;
use mayfly_core::{JobStatus, Labels, Secret, Time};
use mayfly_forge::github::{
    AuthConfig, Client, ClientConfig, Error, LimitsConfig, Polled, Repo, RunStatus, RunnerGroup,
    Scope,
};
use mayfly_sim::clock::Clock as SimClock;
use mayfly_sim::github::{AppConfig, Github, GithubConfig as FakeConfig, NewJob};
use mayfly_sim::stats::Stats;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const TOKEN: &str = "ghp_TESTONLYsecret0123456789";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sim/tests/fixtures/github");

struct Fake {
    gh: Arc<Github>,
    stats: Arc<Stats>,
    api: String,
    clock: SimClock,
}

async fn start(config: FakeConfig, speed: f64) -> Fake {
    let clock = SimClock::new(speed);
    let stats = Arc::new(Stats::default());
    let gh = Github::new(config.clone(), clock.clone(), stats.clone());
    let api = gh.serve_local().await.unwrap();
    Fake {
        gh,
        stats,
        api,
        clock,
    }
}

fn fake_config() -> FakeConfig {
    FakeConfig {
        tokens: vec![TOKEN.into()],
        writes_per_minute: 10_000,
        ..FakeConfig::default()
    }
}

/// No write spacing: the fake's own limits are what these tests exercise.
fn limits() -> LimitsConfig {
    LimitsConfig {
        write_interval_ms: 0,
        ..LimitsConfig::default()
    }
}

fn token() -> AuthConfig {
    AuthConfig::Token {
        token: Secret::new(TOKEN),
    }
}

impl Fake {
    fn client(&self, auth: AuthConfig, limits: LimitsConfig) -> Client {
        let config = ClientConfig {
            api_url: self.api.clone(),
            auth,
            limits,
        };
        Client::with_clock(&config, Arc::new(self.clock.clone())).unwrap()
    }

    /// Calls and 304s the fake counted for routes ending in `suffix`.
    fn calls(&self, method: &str, suffix: &str) -> (u64, u64) {
        self.stats
            .rows()
            .iter()
            .filter(|r| r.key.method == method && r.key.route.ends_with(suffix))
            .fold((0, 0), |(c, n), r| {
                (c + r.count.calls, n + r.count.not_modified)
            })
    }
}

fn repo() -> Repo {
    Repo::parse("acme/app").unwrap()
}

fn labels(l: &[&str]) -> Labels {
    Labels::new(l)
}

fn job(l: &[&str]) -> NewJob {
    NewJob {
        labels: l.iter().map(|s| s.to_string()).collect(),
        duration: Duration::from_secs(600),
    }
}

#[tokio::test]
async fn runners_register_list_page_and_delete_idempotently() {
    let f = start(fake_config(), 1.0).await;
    let c = f.client(token(), limits());
    let scope = Scope::Repo(repo());

    let jit = c
        .jit_config(&scope, "mayfly-a-1", &labels(&["linux", "x64"]), None)
        .await
        .unwrap();
    assert_eq!(jit.runner.name, "mayfly-a-1");
    assert!(jit.runner.labels.contains("linux") && jit.runner.labels.contains("self-hosted"));
    assert!(!jit.config.is_empty());
    assert!(!format!("{jit:?}").contains(jit.config.expose()));
    assert!(matches!(
        c.jit_config(&scope, "mayfly-a-1", &labels(&["linux"]), None)
            .await,
        Err(Error::Conflict { .. })
    ));

    for i in 0..120 {
        c.jit_config(&scope, &format!("bulk-{i}"), &labels(&["linux"]), None)
            .await
            .unwrap();
    }
    let all = c.list_runners(&scope).await.unwrap();
    assert_eq!(all.len(), 121, "every page is followed");
    assert_eq!(
        f.calls("GET", "/actions/runners"),
        (2, 0),
        "two pages of 100"
    );

    let found = c.find_runner(&scope, "bulk-7").await.unwrap();
    assert_eq!(found.map(|r| r.name), Some("bulk-7".to_string()));
    assert_eq!(c.find_runner(&scope, "nobody & co").await, Ok(None));
    let one = c.runner(&scope, jit.runner.id).await.unwrap();
    assert_eq!((one.name.as_str(), one.busy), ("mayfly-a-1", false));
    assert_eq!(
        c.runner(&scope, 999_999).await.unwrap_err(),
        Error::NotFound
    );

    // A runner running a job cannot go; deleting twice is fine.
    f.gh.enqueue("acme/app", vec![job(&["self-hosted", "linux"])]);
    let id =
        f.gh.redeem(
            &format!("./run.sh --jitconfig {}", jit.config.expose()),
            "h",
        )
        .unwrap();
    assert!(f.gh.next_job(id).is_some());
    assert!(c.runner(&scope, id).await.unwrap().busy);
    assert_eq!(c.delete_runner(&scope, id).await, Err(Error::Busy));
    let idle = all.iter().find(|r| r.name == "bulk-0").unwrap().id;
    assert_eq!(c.delete_runner(&scope, idle).await, Ok(()));
    assert_eq!(c.delete_runner(&scope, idle).await, Ok(()));
    assert_eq!(c.list_runners(&scope).await.unwrap().len(), 120);
}

/// Every call the client sends is reported under the metric contract, by outcome, and the
/// budget GitHub's headers state: the fake's own counts are the truth.
#[tokio::test]
async fn calls_are_reported_under_the_metric_contract() {
    let mut builder = PrometheusBuilder::new();
    for m in metrics::CONTRACT.iter().filter(|m| !m.buckets.is_empty()) {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(m.name.into()), m.buckets)
            .unwrap();
    }
    let recorder = builder.build_recorder();
    // A current-thread runtime: every call is recorded on this thread, into this recorder.
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let f = start(fake_config(), 1.0).await;
    let c = f.client(token(), limits());
    let scope = Scope::Repo(repo());

    c.jit_config(&scope, "m-1", &labels(&["linux"]), None)
        .await
        .unwrap();
    assert!(matches!(
        c.jit_config(&scope, "m-1", &labels(&["linux"]), None).await,
        Err(Error::Conflict { .. })
    ));
    assert!(matches!(c.runners(&scope).await, Ok(Polled::Changed(_))));
    assert!(matches!(c.runners(&scope).await, Ok(Polled::Unchanged)));
    assert_eq!(
        c.runner(&scope, 999_999).await.unwrap_err(),
        Error::NotFound
    );

    let text = recorder.handle().render();
    if let Err(problems) = metrics::check(&text, metrics::API_FAMILIES) {
        panic!("{}\n{text}", problems.join("\n"));
    }
    let count = |outcome: &str| {
        metrics::sum(
            &text,
            metrics::API_CALLS,
            &[("api", "github"), ("outcome", outcome)],
        )
    };
    assert_eq!(
        (count("ok"), count("not_modified"), count("client_error")),
        (2.0, 1.0, 2.0),
        "{text}"
    );
    let total = metrics::sum(&text, metrics::API_CALLS, &[]);
    assert_eq!(total, f.stats.total("github") as f64);
    assert_eq!(
        metrics::sum(&text, "mayfly_api_request_duration_seconds_count", &[]),
        total
    );
    assert_eq!(
        metrics::sum(&text, metrics::API_RATE_LIMIT_REMAINING, &[]),
        f64::from(c.budget().remaining)
    );
    assert!(!text.contains(TOKEN), "no token in the metrics");
}

#[tokio::test]
async fn organization_scope_on_an_enterprise_server_prefix() {
    let f = start(
        FakeConfig {
            api_prefix: "/api/v3".into(),
            ..fake_config()
        },
        1.0,
    )
    .await;
    assert!(f.api.ends_with("/api/v3"));
    let c = f.client(token(), limits());
    let org = Scope::Org("acme".into());

    let jit = c
        .jit_config(&org, "org-1", &labels(&["gpu"]), Some(&RunnerGroup::Id(1)))
        .await
        .unwrap();
    let t = c.registration_token(&org).await.unwrap();
    assert!(!t.token.is_empty() && t.expires_at > Time::from_millis(f.clock.now_ms()));
    let listed = c.list_runners(&org).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].labels.contains("gpu"));
    assert_eq!(c.delete_runner(&org, jit.runner.id).await, Ok(()));
    assert!(c.list_runners(&org).await.unwrap().is_empty());
    assert!(
        f.stats
            .rows()
            .iter()
            .all(|r| r.key.route.starts_with("/api/v3")),
        "every call went under the prefix"
    );
}

#[tokio::test]
async fn runs_are_polled_with_etags_and_jobs_read_across_pages() {
    let f = start(fake_config(), 1.0).await;
    let c = f.client(token(), limits());
    let r = repo();

    let many: Vec<NewJob> = (0..130).map(|_| job(&["self-hosted", "linux"])).collect();
    let ids = f.gh.enqueue("acme/app", many);
    let Polled::Changed(runs) = c.runs(&r, RunStatus::Queued).await.unwrap() else {
        panic!("the first poll sees the runs");
    };
    assert_eq!(runs.len(), 1);
    let run_id = runs[0].id;

    let before = c.budget().remaining;
    assert_eq!(
        c.runs(&r, RunStatus::Queued).await.unwrap(),
        Polled::Unchanged
    );
    assert_eq!(c.budget().remaining, before, "a 304 costs no budget");
    assert_eq!(f.calls("GET", "/actions/runs"), (2, 1));

    f.gh.enqueue("acme/app", vec![job(&["self-hosted"])]);
    let Polled::Changed(runs) = c.runs(&r, RunStatus::Queued).await.unwrap() else {
        panic!("a new run changes the answer");
    };
    assert_eq!(runs.len(), 2);
    assert!(matches!(
        c.runs(&r, RunStatus::InProgress).await.unwrap(),
        Polled::Changed(v) if v.is_empty()
    ));

    let jobs = c.run_jobs(&r, run_id).await.unwrap();
    assert_eq!(jobs.len(), 130, "both pages of jobs");
    let one = c.job(&r, ids[0]).await.unwrap();
    assert_eq!(one.job_status(), Some(JobStatus::Queued));
    assert!(one.labels.contains("linux"));
    assert_eq!(one.key(&r).id, ids[0]);
    assert_eq!(c.job(&r, 424_242).await.unwrap_err(), Error::NotFound);
}

fn app_fake() -> FakeConfig {
    let public_key_pem =
        std::fs::read_to_string(format!("{FIXTURES}/test-app-key.TEST-ONLY.pub.pem")).unwrap();
    FakeConfig {
        tokens: vec![],
        app: Some(AppConfig {
            app_id: 42,
            installation_id: 7,
            public_key_pem,
        }),
        ..fake_config()
    }
}

fn app_auth(installation_id: u64) -> AuthConfig {
    AuthConfig::App {
        app_id: 42,
        installation_id,
        private_key_path: format!("{FIXTURES}/test-app-key.TEST-ONLY.pem").into(),
    }
}

#[tokio::test]
async fn an_app_token_is_fetched_once_and_refreshed_before_it_expires() {
    // 60 simulated seconds a second; the token (an hour) counts as near expiry 30 s (half a real
    // second) after issue.
    let f = start(app_fake(), 60.0).await;
    let c = f.client(
        app_auth(7),
        LimitsConfig {
            token_refresh_secs: 3570,
            ..limits()
        },
    );
    let scope = Scope::Repo(repo());
    c.list_runners(&scope).await.unwrap();
    c.list_runners(&scope).await.unwrap();
    assert_eq!(f.calls("POST", "/access_tokens"), (1, 0), "reused");
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.list_runners(&scope).await.unwrap();
    assert_eq!(f.calls("POST", "/access_tokens"), (2, 0), "refreshed");

    let wrong = f.client(app_auth(8), limits());
    assert_eq!(
        wrong.list_runners(&scope).await.unwrap_err(),
        Error::NotFound
    );
}

#[tokio::test]
async fn an_exhausted_budget_is_a_typed_error_or_a_wait_until_reset() {
    // An hour passes in four real seconds.
    let f = start(
        FakeConfig {
            rate_limit_per_hour: 3,
            ..fake_config()
        },
        900.0,
    )
    .await;
    let r = repo();
    let c = f.client(
        token(),
        LimitsConfig {
            reserve: 0.0,
            max_wait_secs: 7200,
            ..limits()
        },
    );
    let ids = f.gh.enqueue("acme/app", vec![job(&["self-hosted"])]);
    let impatient = c.without_waiting();
    let mut limited = None;
    for _ in 0..4 {
        if let Err(e) = impatient.job(&r, ids[0]).await {
            limited = Some(e);
            break;
        }
    }
    let Some(Error::RateLimited {
        retry_after: Some(wait),
    }) = limited
    else {
        panic!("expected RateLimited, got {limited:?}");
    };
    assert!(wait <= Duration::from_secs(3601));
    assert_eq!(c.budget().remaining, 0);

    let started = Instant::now();
    let polled = c.runs(&r, RunStatus::Queued).await.unwrap();
    assert!(matches!(polled, Polled::Changed(v) if v.len() == 1));
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(c.budget().remaining, 2, "a fresh hour");
}

#[tokio::test]
async fn a_wait_longer_than_allowed_is_handed_to_the_caller() {
    let f = start(
        FakeConfig {
            rate_limit_per_hour: 1,
            ..fake_config()
        },
        1.0,
    )
    .await;
    let c = f.client(
        token(),
        LimitsConfig {
            reserve: 0.0,
            max_wait_secs: 5,
            ..limits()
        },
    );
    let scope = Scope::Repo(repo());
    c.list_runners(&scope).await.unwrap();
    let started = Instant::now();
    assert!(matches!(
        c.list_runners(&scope).await,
        Err(Error::RateLimited {
            retry_after: Some(_)
        })
    ));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "did not wait for the reset (max_wait is 5 s, the reset an hour away)"
    );
    assert_eq!(
        f.calls("GET", "/actions/runners"),
        (1, 0),
        "nothing sent into a spent budget"
    );
}

#[tokio::test]
async fn secondary_write_limits_are_waited_out() {
    let f = start(
        FakeConfig {
            writes_per_minute: 2,
            ..fake_config()
        },
        20.0,
    )
    .await;
    let c = f.client(token(), limits());
    let scope = Scope::Repo(repo());
    for i in 0..3 {
        c.jit_config(&scope, &format!("w-{i}"), &labels(&["linux"]), None)
            .await
            .unwrap();
    }
    let (calls, _) = f.calls("POST", "/generate-jitconfig");
    assert!(
        calls >= 4,
        "one 403 with retry-after, then a retry: {calls}"
    );
}

#[tokio::test]
async fn a_low_budget_postpones_housekeeping_but_serves_jobs() {
    let f = start(
        FakeConfig {
            rate_limit_per_hour: 10,
            ..fake_config()
        },
        1.0,
    )
    .await;
    let c = f.client(
        token(),
        LimitsConfig {
            reserve: 0.5,
            ..limits()
        },
    );
    let scope = Scope::Repo(repo());
    let mut postponed = false;
    for _ in 0..10 {
        match c.list_runners(&scope).await {
            Ok(_) => {}
            Err(Error::Postponed) => {
                postponed = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(postponed);
    assert_eq!(c.budget().remaining, 4);
    assert_eq!(
        f.calls("GET", "/actions/runners"),
        (6, 0),
        "the refused call was not sent"
    );
    c.jit_config(&scope, "urgent", &labels(&["linux"]), None)
        .await
        .unwrap();
    assert_eq!(c.budget().remaining, 3);
}

#[tokio::test]
async fn writes_are_spaced() {
    let f = start(fake_config(), 1.0).await;
    let c = f.client(
        token(),
        LimitsConfig {
            write_interval_ms: 150,
            write_burst: 1,
            ..limits()
        },
    );
    let scope = Scope::Repo(repo());
    let started = Instant::now();
    for id in 1..=3 {
        assert_eq!(c.delete_runner(&scope, id).await, Ok(()), "gone already");
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_runner_group_name_is_resolved_once_for_orgs_and_enterprises() {
    // The fake GitHub has one runner group and no enterprise: a stub stands in for both.
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let groups = get(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            Json(json!({ "total_count": 2, "runner_groups": [
                { "id": 1, "name": "Default" }, { "id": 7, "name": "Linux" } ] }))
        }
    });
    let jit = post(|Json(body): Json<serde_json::Value>| async move {
        let runner = json!({ "id": 5, "name": body["name"], "status": "offline", "busy": false,
            "labels": [], "runner_group_id": body["runner_group_id"] });
        (
            StatusCode::CREATED,
            Json(json!({ "runner": runner, "encoded_jit_config": "c2VjcmV0" })),
        )
    });
    let app = axum::Router::new()
        .route("/orgs/{org}/actions/runner-groups", groups.clone())
        .route("/enterprises/{e}/actions/runner-groups", groups)
        .route("/enterprises/{e}/actions/runners/generate-jitconfig", jit);
    let addr = mayfly_sim::serve_local(app).await.unwrap();
    let config = ClientConfig {
        api_url: format!("http://{addr}"),
        auth: token(),
        limits: limits(),
    };
    let c = Client::new(&config).unwrap();
    let org = Scope::Org("acme".into());
    let linux = RunnerGroup::Name("linux".into());
    assert_eq!(c.runner_group_id(&org, Some(&linux)).await, Ok(7));
    assert_eq!(c.runner_group_id(&org, Some(&linux)).await, Ok(7));
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    let missing = RunnerGroup::Name("gpu".into());
    assert_eq!(
        c.runner_group_id(&org, Some(&missing)).await,
        Err(Error::NotFound)
    );
    assert_eq!(
        c.runner_group_id(&org, Some(&RunnerGroup::Id(3))).await,
        Ok(3)
    );
    let repo_scope = Scope::Repo(repo());
    assert_eq!(c.runner_group_id(&repo_scope, Some(&linux)).await, Ok(1));

    let enterprise = Scope::Enterprise("big".into());
    let made = c
        .jit_config(&enterprise, "e-1", &labels(&["linux"]), Some(&linux))
        .await
        .unwrap();
    assert_eq!(
        made.runner.runner_group_id,
        Some(7),
        "the resolved id was sent"
    );
    assert_eq!(made.config.expose(), "c2VjcmV0");
}

#[tokio::test]
async fn no_error_shows_a_credential() {
    let f = start(
        FakeConfig {
            rate_limit_per_hour: 3,
            ..fake_config()
        },
        1.0,
    )
    .await;
    let scope = Scope::Repo(repo());
    let mut errors = Vec::new();

    let wrong = f.client(
        AuthConfig::Token {
            token: Secret::new("ghp_WRONGsecret"),
        },
        limits(),
    );
    errors.push(wrong.list_runners(&scope).await.unwrap_err());

    let c = f.client(token(), limits()).without_waiting();
    let jit = c
        .jit_config(&scope, "dup", &labels(&["linux"]), None)
        .await
        .unwrap();
    errors.push(
        c.jit_config(&scope, "dup", &labels(&["linux"]), None)
            .await
            .unwrap_err(),
    );
    errors.push(c.runner(&scope, 12345).await.unwrap_err());
    errors.push(c.runner(&scope, 12345).await.unwrap_err());

    let closed = ClientConfig {
        api_url: "http://127.0.0.1:9".into(),
        auth: token(),
        limits: limits(),
    };
    errors.push(
        Client::new(&closed)
            .unwrap()
            .job(&repo(), 1)
            .await
            .unwrap_err(),
    );

    let app = start(app_fake(), 1.0).await;
    errors.push(
        app.client(app_auth(99), limits())
            .list_runners(&scope)
            .await
            .unwrap_err(),
    );

    assert!(errors.contains(&Error::Unauthorized));
    assert!(errors.contains(&Error::NotFound));
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, Error::RateLimited { .. }))
    );
    assert!(errors.iter().any(|e| matches!(e, Error::Transport(_))));
    for e in &errors {
        let shown = format!("{e} {e:?}");
        for secret in [TOKEN, "ghp_WRONGsecret", jit.config.expose(), "PRIVATE KEY"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}

/// The poller finds every queued job, then costs nothing while nothing changes (304s only), and
/// after a change asks only for the run that changed; a finished run is read once, as gone.
#[tokio::test]
async fn the_poller_reads_only_what_changed_and_idles_for_free() {
    use mayfly_forge::github::Poller;
    let fake = start(fake_config(), 1.0).await;
    let app = repo();
    let web = Repo::parse("acme/web").unwrap();
    fake.gh.enqueue(
        "acme/app",
        vec![job(&["linux"]), job(&["linux"]), job(&["gpu"])],
    );
    fake.gh
        .enqueue("acme/app", vec![job(&["linux"]), job(&["linux"])]);
    fake.gh.enqueue("acme/web", vec![job(&["linux", "x64"])]);
    let client = fake.client(token(), limits());
    let mut poller = Poller::new(client.clone(), vec![app.clone(), web.clone()]);

    let report = poller.poll().await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.jobs.len(), 6);
    assert!(
        report
            .jobs
            .iter()
            .all(|j| j.status == JobStatus::Queued && j.created_at.is_some())
    );
    assert_eq!(
        fake.calls("GET", "/jobs"),
        (3, 0),
        "one request per run, none per job"
    );

    // Idle: four run lists answered 304, no job requests, no budget spent.
    let before = client.budget().remaining;
    let report = poller.poll().await;
    assert!(report.jobs.is_empty());
    assert_eq!(fake.calls("GET", "/actions/runs").1, 4, "four 304s");
    assert_eq!(fake.calls("GET", "/jobs").0, 3);
    assert_eq!(client.budget().remaining, before, "304s are free");

    // A new run in acme/app: only that run's jobs are read.
    fake.gh.enqueue("acme/app", vec![job(&["linux"])]);
    let report = poller.poll().await;
    assert_eq!(report.jobs.len(), 1);
    assert_eq!(fake.calls("GET", "/jobs").0, 4);

    // The acme/web job runs and completes: its run leaves the lists and is read once more.
    let jit = client
        .jit_config(
            &Scope::Repo(web.clone()),
            "runner-web",
            &labels(&["linux", "x64"]),
            None,
        )
        .await
        .unwrap();
    let runner = fake.gh.redeem(jit.config.expose(), "runner-web").unwrap();
    let assigned = fake.gh.next_job(runner).expect("a job for the runner");
    fake.gh.finish_job(runner, assigned.job_id, "success");
    let report = poller.poll().await;
    let done: Vec<_> = report
        .jobs
        .iter()
        .filter(|j| j.key.scope.as_ref() == "acme/web")
        .collect();
    assert_eq!(done.len(), 1, "{:?}", report.jobs);
    assert_eq!(done[0].status, JobStatus::Completed);
    assert_eq!(done[0].conclusion.as_deref(), Some("success"));
}

#[tokio::test]
async fn history_lists_completed_runs_of_a_window_in_halves_past_the_search_limit() {
    // An hour a second; a search limit of 3 instead of 1,000, so 7 runs need split windows.
    let fake = start(
        FakeConfig {
            search_limit: 3,
            ..fake_config()
        },
        3600.0,
    )
    .await;
    let client = fake.client(token(), limits());
    let since = Time::from_millis(fake.clock.now_ms() - 1000);
    let mut done = 0;
    for i in 0..7 {
        let jobs = if i % 2 == 0 {
            vec![job(&["linux"])]
        } else {
            vec![job(&["linux"]), job(&["linux", "x64"])]
        };
        for _ in fake.gh.enqueue("acme/app", jobs) {
            let name = format!("history-{done}");
            let jit = client
                .jit_config(
                    &Scope::Repo(repo()),
                    &name,
                    &labels(&["linux", "x64"]),
                    None,
                )
                .await
                .unwrap();
            let runner = fake.gh.redeem(jit.config.expose(), &name).unwrap();
            let assigned = fake.gh.next_job(runner).expect("a job");
            tokio::time::sleep(Duration::from_millis(20)).await;
            fake.gh.finish_job(runner, assigned.job_id, "success");
            done += 1;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // Still queued: not part of the history.
    fake.gh.enqueue("acme/app", vec![job(&["gpu"])]);
    let until = Time::from_millis(fake.clock.now_ms() + 1000);

    let seen = std::sync::Mutex::new(Vec::new());
    let history = client
        .history(&repo(), since, until, &|d, t| {
            seen.lock().unwrap().push((d, t))
        })
        .await
        .unwrap();
    assert_eq!(
        (history.runs, history.jobs.len(), history.unlisted),
        (7, 10, 0)
    );
    assert!(history.jobs.iter().all(|j| {
        j.status == "completed"
            && j.runner_name.is_some()
            && j.started_at.is_some()
            && j.completed_at.is_some()
            && j.created_at.is_some()
    }));
    let listed = fake.calls("GET", "/actions/runs").0;
    assert!(listed > 3, "full windows were split: {listed} run lists");
    assert_eq!(seen.lock().unwrap().last(), Some(&(7, 7)));

    // A window before everything is empty.
    let empty = client
        .history(&repo(), Time::from_secs(0), since, &|_, _| {})
        .await
        .unwrap();
    assert_eq!((empty.runs, empty.jobs.len()), (0, 0));
}
