//! The fake GitHub over real HTTP: every endpoint in repository and organization scope, the GHES
//! prefix, paging, ETags, both rate limits, App tokens, job assignment and signed webhooks.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mayfly_sim::clock::Clock;
use mayfly_sim::github::{
    AppConfig, Github, GithubConfig, NewJob, RedeemError, WebhookFaults, WebhookTarget, signature,
};
use mayfly_sim::stats::Stats;
use reqwest::Client;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

const TOKEN: &str = "test-token";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/github");

struct Fake {
    gh: Arc<Github>,
    stats: Arc<Stats>,
    /// `http://127.0.0.1:port` plus the API prefix.
    api: String,
    http: Client,
}

async fn start(config: GithubConfig, clock: Clock) -> Fake {
    let stats = Arc::new(Stats::default());
    let gh = Github::new(config.clone(), clock, stats.clone());
    let api = gh.serve_local().await.unwrap();
    Fake {
        gh,
        stats,
        api,
        http: Client::new(),
    }
}

fn config() -> GithubConfig {
    GithubConfig {
        tokens: vec![TOKEN.into()],
        ..GithubConfig::default()
    }
}

fn job(labels: &[&str]) -> NewJob {
    NewJob {
        labels: labels.iter().map(|s| s.to_string()).collect(),
        duration: Duration::from_secs(60),
    }
}

impl Fake {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.api))
            .header("authorization", format!("token {TOKEN}"))
            .send()
            .await
            .unwrap()
    }

    /// A conditional GET: `If-None-Match` with `etag`.
    async fn get_if_none_match(&self, path: &str, etag: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.api))
            .bearer_auth(TOKEN)
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap()
    }

    async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.api))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn delete(&self, path: &str) -> reqwest::Response {
        self.http
            .delete(format!("{}{path}", self.api))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }

    /// A registration token of `scope` (`/repos/o/r` or `/orgs/o`): `{token, expires_at}`.
    async fn registration_token(&self, scope: &str) -> Value {
        let r = self
            .post(
                &format!("{scope}/actions/runners/registration-token"),
                json!({}),
            )
            .await;
        assert_eq!(r.status(), 201, "registration token of {scope}");
        r.json().await.unwrap()
    }

    async fn jit(&self, scope: &str, name: &str, labels: &[&str]) -> Value {
        let body =
            json!({ "name": name, "runner_group_id": 1, "labels": labels, "work_folder": "_work" });
        let r = self
            .post(&format!("{scope}/actions/runners/generate-jitconfig"), body)
            .await;
        assert_eq!(r.status(), 201);
        r.json().await.unwrap()
    }
}

#[tokio::test]
async fn reads_runs_and_jobs_of_a_repository() {
    let f = start(config(), Clock::new(1.0)).await;
    let ids = f.gh.enqueue(
        "acme/app",
        vec![job(&["self-hosted", "linux"]), job(&["self-hosted"])],
    );
    f.gh.enqueue("acme/other", vec![job(&["self-hosted"])]);

    let repo = f.get_json("/repos/acme/app").await;
    assert_eq!(
        (repo["full_name"].as_str(), repo["owner"]["type"].as_str()),
        (Some("acme/app"), Some("Organization"))
    );

    let runs = f
        .get_json("/repos/acme/app/actions/runs?status=queued")
        .await;
    assert_eq!(runs["total_count"], 1);
    let run = &runs["workflow_runs"][0];
    assert_eq!(run["status"], "queued");
    let run_id = run["id"].as_u64().unwrap();
    assert!(
        run["jobs_url"].as_str().unwrap().starts_with(&f.api),
        "URLs point back at the fake"
    );
    assert_eq!(
        f.get_json("/repos/acme/app/actions/runs?status=completed")
            .await["total_count"],
        0
    );
    assert_eq!(
        f.get_json(&format!("/repos/acme/app/actions/runs/{run_id}"))
            .await["id"],
        run_id
    );

    let jobs = f
        .get_json(&format!(
            "/repos/acme/app/actions/runs/{run_id}/jobs?filter=latest"
        ))
        .await;
    let got: Vec<u64> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect();
    assert_eq!(got, ids);
    let one = f
        .get_json(&format!("/repos/acme/app/actions/jobs/{}", ids[0]))
        .await;
    assert_eq!(one["labels"], json!(["self-hosted", "linux"]));
    assert_eq!(
        (one["status"].as_str(), one["runner_id"].as_u64()),
        (Some("queued"), None)
    );

    assert_eq!(
        f.get(&format!("/repos/acme/other/actions/jobs/{}", ids[0]))
            .await
            .status(),
        404,
        "another repo's job"
    );
    assert_eq!(
        f.get("/repos/acme/app/actions/jobs/nope").await.status(),
        404
    );
    let anonymous = f
        .http
        .get(format!("{}/repos/acme/app", f.api))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = f
        .http
        .get(format!("{}/repos/acme/app", f.api))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
}

#[tokio::test]
async fn runners_tokens_and_jit_configs_in_both_scopes() {
    let f = start(config(), Clock::new(1.0)).await;
    for scope in ["/repos/acme/app", "/orgs/acme"] {
        for kind in ["registration-token", "remove-token"] {
            let r = f
                .post(&format!("{scope}/actions/runners/{kind}"), json!({}))
                .await;
            assert_eq!(r.status(), 201, "{scope} {kind}");
            let t: Value = r.json().await.unwrap();
            assert!(t["token"].is_string() && t["expires_at"].is_string());
        }
        let jit = f.jit(scope, "r-1", &["linux"]).await;
        let runner = &jit["runner"];
        assert_eq!(
            (runner["status"].as_str(), runner["busy"].as_bool()),
            (Some("offline"), Some(false))
        );
        assert!(jit["encoded_jit_config"].as_str().unwrap().len() > 100);
        let id = runner["id"].as_u64().unwrap();

        let again = json!({ "name": "r-1", "runner_group_id": 1, "labels": ["linux"] });
        assert_eq!(
            f.post(
                &format!("{scope}/actions/runners/generate-jitconfig"),
                again
            )
            .await
            .status(),
            409
        );
        let no_labels = json!({ "name": "r-2", "runner_group_id": 1, "labels": [] });
        assert_eq!(
            f.post(
                &format!("{scope}/actions/runners/generate-jitconfig"),
                no_labels
            )
            .await
            .status(),
            422
        );

        let list = f.get_json(&format!("{scope}/actions/runners")).await;
        assert_eq!(
            list["total_count"], 1,
            "{scope}: runners of this scope only"
        );
        assert_eq!(
            f.get_json(&format!("{scope}/actions/runners?name=r-1"))
                .await["total_count"],
            1
        );
        assert_eq!(
            f.get_json(&format!("{scope}/actions/runners?name=zz"))
                .await["total_count"],
            0
        );
        let one = f.get_json(&format!("{scope}/actions/runners/{id}")).await;
        let labels: Vec<&str> = one["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap())
            .collect();
        assert_eq!(labels, ["self-hosted", "linux"]);

        assert_eq!(
            f.delete(&format!("{scope}/actions/runners/{id}"))
                .await
                .status(),
            204
        );
        assert_eq!(
            f.get(&format!("{scope}/actions/runners/{id}"))
                .await
                .status(),
            404
        );
        assert_eq!(
            f.delete(&format!("{scope}/actions/runners/{id}"))
                .await
                .status(),
            404
        );
    }
    // The same name may exist once per scope.
    f.jit("/repos/acme/app", "same", &["a"]).await;
    f.jit("/orgs/acme", "same", &["a"]).await;
    assert_eq!(f.gh.runners().len(), 2);
}

#[tokio::test]
async fn the_ghes_prefix_serves_everything_under_api_v3() {
    let f = start(
        GithubConfig {
            api_prefix: "/api/v3".into(),
            ..config()
        },
        Clock::new(1.0),
    )
    .await;
    f.gh.enqueue("acme/app", vec![job(&["self-hosted"])]);
    f.gh.enqueue("acme/app", vec![job(&["self-hosted"])]);
    let paged = f.get("/repos/acme/app/actions/runs?per_page=1").await;
    let link = paged.headers()["link"].to_str().unwrap().to_string();
    assert!(
        link.starts_with(&format!(
            "<{}/repos/acme/app/actions/runs?per_page=1&page=2>",
            f.api
        )),
        "{link}"
    );
    let runs = f.get_json("/repos/acme/app/actions/runs").await;
    let url = runs["workflow_runs"][0]["url"].as_str().unwrap();
    assert!(
        url.contains("/api/v3/repos/acme/app/actions/runs/"),
        "{url}"
    );
    assert_eq!(
        f.get_json("/rate_limit").await["resources"]["core"]["limit"],
        5000
    );
    let root = f.api.trim_end_matches("/api/v3");
    let r = f
        .http
        .get(format!("{root}/repos/acme/app"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let calls = f.stats.rows();
    assert!(
        calls
            .iter()
            .any(|c| c.key.route == "/api/v3/repos/{owner}/{repo}/actions/runs"),
        "{calls:?}"
    );
}

#[tokio::test]
async fn pages_carry_link_headers() {
    let f = start(config(), Clock::new(1.0)).await;
    for _ in 0..5 {
        f.gh.enqueue("acme/app", vec![job(&["self-hosted"])]);
    }
    let first = f
        .get("/repos/acme/app/actions/runs?status=queued&per_page=2")
        .await;
    let link = first.headers()["link"].to_str().unwrap().to_string();
    assert!(link.contains("per_page=2&page=2>; rel=\"next\""), "{link}");
    assert!(
        link.contains("page=3>; rel=\"last\"") && !link.contains("rel=\"prev\""),
        "{link}"
    );
    assert!(
        link.starts_with(&format!(
            "<{}/repos/acme/app/actions/runs?status=queued",
            f.api
        )),
        "{link}"
    );

    let mid = f
        .get("/repos/acme/app/actions/runs?status=queued&per_page=2&page=2")
        .await;
    let link = mid.headers()["link"].to_str().unwrap().to_string();
    for rel in ["prev", "next", "last", "first"] {
        assert!(link.contains(&format!("rel=\"{rel}\"")), "{rel} in {link}");
    }
    let last: Value = f
        .get("/repos/acme/app/actions/runs?per_page=2&page=3")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            last["total_count"].as_u64(),
            last["workflow_runs"].as_array().unwrap().len()
        ),
        (Some(5), 1)
    );
    let all = f.get("/repos/acme/app/actions/runs").await;
    assert!(
        all.headers().get("link").is_none(),
        "one page needs no links"
    );
}

#[tokio::test]
async fn runs_are_filtered_by_creation_time_and_a_filtered_list_stops_at_the_search_limit() {
    // An hour a second: the runs are minutes apart in simulated time.
    let f = start(
        GithubConfig {
            search_limit: 2,
            ..config()
        },
        Clock::new(3600.0),
    )
    .await;
    let mut created = Vec::new();
    for _ in 0..3 {
        let id = f.gh.enqueue("acme/app", vec![job(&["self-hosted"])])[0];
        let j = f
            .get_json(&format!("/repos/acme/app/actions/jobs/{id}"))
            .await;
        created.push(j["created_at"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let count = |v: &Value| {
        (
            v["total_count"].as_u64().unwrap(),
            v["workflow_runs"].as_array().unwrap().len(),
        )
    };
    let since_second = f
        .get_json(&format!(
            "/repos/acme/app/actions/runs?created=%3E%3D{}",
            created[1]
        ))
        .await;
    assert_eq!(count(&since_second), (2, 2), "{since_second}");
    let window = f
        .get_json(&format!(
            "/repos/acme/app/actions/runs?created={}..{}",
            created[0], created[1]
        ))
        .await;
    assert_eq!(count(&window), (2, 2));
    let before = f
        .get_json(&format!(
            "/repos/acme/app/actions/runs?created=<{}",
            created[1]
        ))
        .await;
    assert_eq!(count(&before), (1, 1));
    // Three match, two are listed: GitHub's 1,000-run cap, scaled down.
    let all = f
        .get_json("/repos/acme/app/actions/runs?status=queued&per_page=1&page=2")
        .await;
    assert_eq!(count(&all), (3, 1));
    let past = f
        .get_json("/repos/acme/app/actions/runs?status=queued&per_page=1&page=3")
        .await;
    assert_eq!(count(&past), (3, 0), "nothing beyond the limit");
    assert_eq!(
        count(&f.get_json("/repos/acme/app/actions/runs").await),
        (3, 3)
    );
    let bad = f.get("/repos/acme/app/actions/runs?created=soon").await;
    assert_eq!(bad.status(), 422);
    let message = bad.json::<Value>().await.unwrap()["message"].to_string();
    assert!(message.contains("\\\"soon\\\""), "{message}");
}

#[tokio::test]
async fn a_304_costs_no_budget() {
    let f = start(config(), Clock::new(1.0)).await;
    f.gh.enqueue("acme/app", vec![job(&["self-hosted"])]);
    let first = f.get("/repos/acme/app/actions/runs?status=queued").await;
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(first.headers()["x-ratelimit-remaining"], "4999");
    let again = f
        .get_if_none_match("/repos/acme/app/actions/runs?status=queued", &etag)
        .await;
    assert_eq!(again.status(), 304);
    assert_eq!(
        again.headers()["x-ratelimit-remaining"],
        "4999",
        "a 304 is free"
    );
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    // A change makes a new body and a new ETag.
    f.gh.enqueue("acme/app", vec![job(&["self-hosted"])]);
    let changed = f
        .get_if_none_match("/repos/acme/app/actions/runs?status=queued", &etag)
        .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(changed.headers()["x-ratelimit-remaining"], "4998");
    let row = f
        .stats
        .rows()
        .into_iter()
        .find(|r| r.key.route.ends_with("/actions/runs"))
        .unwrap();
    assert_eq!((row.count.calls, row.count.not_modified), (3, 1));
}

#[tokio::test]
async fn the_primary_limit_runs_out_and_comes_back_after_the_reset() {
    // An hour passes in five real seconds: short, yet long enough for a busy test machine.
    let f = start(
        GithubConfig {
            rate_limit_per_hour: 3,
            ..config()
        },
        Clock::new(720.0),
    )
    .await;
    for left in ["2", "1", "0"] {
        let r = f.get("/repos/acme/app").await;
        assert_eq!(
            (
                r.status().as_u16(),
                r.headers()["x-ratelimit-remaining"].to_str().unwrap()
            ),
            (200, left)
        );
    }
    let r = f.get("/repos/acme/app").await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    let reset: i64 = r.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("rate limit"));
    let budget = f.get_json("/rate_limit").await;
    assert_eq!(
        (
            budget["rate"]["remaining"].as_u64(),
            budget["resources"]["core"]["used"].as_u64()
        ),
        (Some(0), Some(3))
    );
    assert_eq!(
        budget["rate"]["reset"], reset,
        "GET /rate_limit itself is free"
    );

    tokio::time::sleep(Duration::from_millis(5100)).await;
    let r = f.get("/repos/acme/app").await;
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["x-ratelimit-remaining"].to_str().unwrap()
        ),
        (200, "2")
    );
}

#[tokio::test]
async fn writes_hit_the_secondary_limit() {
    let f = start(
        GithubConfig {
            writes_per_minute: 2,
            ..config()
        },
        Clock::new(1.0),
    )
    .await;
    for _ in 0..2 {
        assert_eq!(
            f.post("/orgs/acme/actions/runners/registration-token", json!({}))
                .await
                .status(),
            201
        );
    }
    let r = f
        .post("/orgs/acme/actions/runners/registration-token", json!({}))
        .await;
    assert_eq!(r.status(), 403);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("secondary rate limit")
    );
    assert_eq!(
        f.get("/orgs/acme/actions/runners").await.status(),
        200,
        "reads are not writes"
    );
}

fn app_jwt(key_file: &str, iss: u64, iat: i64, exp: i64) -> String {
    let pem = std::fs::read_to_string(format!("{FIXTURES}/{key_file}")).unwrap();
    let key = SigningKey::<sha2::Sha256>::new(rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap());
    let header = URL_SAFE_NO_PAD.encode(json!({ "alg": "RS256", "typ": "JWT" }).to_string());
    let claims = URL_SAFE_NO_PAD.encode(json!({ "iss": iss, "iat": iat, "exp": exp }).to_string());
    let input = format!("{header}.{claims}");
    let sig = URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes());
    format!("{input}.{sig}")
}

#[tokio::test]
async fn an_app_jwt_buys_an_installation_token() {
    let public_key_pem =
        std::fs::read_to_string(format!("{FIXTURES}/test-app-key.TEST-ONLY.pub.pem")).unwrap();
    let app = AppConfig {
        app_id: 42,
        installation_id: 7,
        public_key_pem,
    };
    let f = start(
        GithubConfig {
            tokens: vec![],
            app: Some(app),
            ..GithubConfig::default()
        },
        Clock::new(1.0),
    )
    .await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ask = async |jwt: &str, installation: u64| {
        f.http
            .post(format!(
                "{}/app/installations/{installation}/access_tokens",
                f.api
            ))
            .bearer_auth(jwt)
            .send()
            .await
            .unwrap()
    };
    let good = app_jwt("test-app-key.TEST-ONLY.pem", 42, now - 60, now + 540);
    let r = ask(&good, 7).await;
    assert_eq!(r.status(), 201);
    let token: Value = r.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("ghs_"));
    let r = f
        .http
        .get(format!("{}/repos/acme/app", f.api))
        .header("authorization", format!("token {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the installation token is accepted");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "4999");

    assert_eq!(ask(&good, 8).await.status(), 404, "another installation");
    let expired = app_jwt("test-app-key.TEST-ONLY.pem", 42, now - 1200, now - 600);
    assert_eq!(ask(&expired, 7).await.status(), 401);
    let other_app = app_jwt("test-app-key.TEST-ONLY.pem", 43, now - 60, now + 540);
    assert_eq!(ask(&other_app, 7).await.status(), 401);
    let too_long = app_jwt("test-app-key.TEST-ONLY.pem", 42, now - 60, now + 3600);
    assert_eq!(ask(&too_long, 7).await.status(), 401);
    let mut tampered = good.clone();
    tampered.replace_range(tampered.len() - 6.., "AAAAAA");
    assert_eq!(ask(&tampered, 7).await.status(), 401);
    assert_eq!(ask("not-a-jwt", 7).await.status(), 401);
    let body: Value = ask("not-a-jwt", 7).await.json().await.unwrap();
    assert_eq!(body["message"], "A JSON web token could not be decoded");
}

#[tokio::test]
async fn a_runner_takes_any_job_it_satisfies_and_cannot_be_deleted_while_busy() {
    let f = start(config(), Clock::new(1.0)).await;
    let first =
        f.gh.enqueue("acme/app", vec![job(&["self-hosted", "Linux"])])[0];
    let second =
        f.gh.enqueue("acme/app", vec![job(&["self-hosted", "linux"])])[0];
    let gpu = f.gh.enqueue("acme/app", vec![job(&["self-hosted", "gpu"])])[0];

    // mayfly made this runner for the second job; GitHub hands it the oldest one it satisfies.
    let jit = f.jit("/repos/acme/app", "for-second", &["linux"]).await;
    let config = jit["encoded_jit_config"].as_str().unwrap();
    let user_data = format!(
        "#cloud-config\nruncmd:\n  - [sh, -c, './run.sh --jitconfig {config} && poweroff']\n"
    );
    let id = f.gh.redeem(&user_data, "host-1").unwrap();
    assert_eq!(
        f.gh.redeem(&user_data, "host-1"),
        Err(RedeemError::AlreadyUsed)
    );
    assert_eq!(
        f.get_json(&format!("/repos/acme/app/actions/runners/{id}"))
            .await["status"],
        "online"
    );
    let assigned = f.gh.next_job(id).unwrap();
    assert_eq!(assigned.job_id, first);
    assert_eq!(f.gh.next_job(id), None, "busy");

    let j = f
        .get_json(&format!("/repos/acme/app/actions/jobs/{first}"))
        .await;
    assert_eq!(
        (
            j["status"].as_str(),
            j["runner_name"].as_str(),
            j["runner_id"].as_u64()
        ),
        (Some("in_progress"), Some("for-second"), Some(id))
    );
    let r = f
        .get_json(&format!("/repos/acme/app/actions/runners/{id}"))
        .await;
    assert_eq!(r["busy"], true);
    let del = f
        .delete(&format!("/repos/acme/app/actions/runners/{id}"))
        .await;
    assert_eq!(del.status(), 422);

    f.gh.finish_job(id, first, "success");
    assert_eq!(
        f.get(&format!("/repos/acme/app/actions/runners/{id}"))
            .await
            .status(),
        404,
        "ephemeral: gone after one job"
    );
    let j = f
        .get_json(&format!("/repos/acme/app/actions/jobs/{first}"))
        .await;
    assert_eq!(
        (j["status"].as_str(), j["conclusion"].as_str()),
        (Some("completed"), Some("success"))
    );
    let runs = f
        .get_json("/repos/acme/app/actions/runs?status=completed")
        .await;
    assert_eq!(runs["total_count"], 1);

    // An org runner registered with a token takes the next job; its machine dies.
    let t = f.registration_token("/orgs/acme").await;
    let script = format!(
        "./config.sh --url https://github.com/acme --token {} --name org-1 --labels linux --ephemeral",
        t["token"].as_str().unwrap()
    );
    let org_runner = f.gh.redeem(&script, "host-2").unwrap();
    assert_eq!(f.gh.next_job(org_runner).map(|a| a.job_id), Some(second));
    f.gh.runner_lost(org_runner);
    let report = f.gh.jobs().into_iter().find(|j| j.id == second).unwrap();
    assert_eq!(
        (report.status.as_str(), report.conclusion.as_deref()),
        ("completed", Some("failure"))
    );
    let org = f
        .get_json(&format!("/orgs/acme/actions/runners/{org_runner}"))
        .await;
    assert_eq!(
        (org["status"].as_str(), org["busy"].as_bool()),
        (Some("offline"), Some(false))
    );
    assert_eq!(
        f.gh.jobs()
            .into_iter()
            .find(|j| j.id == gpu)
            .unwrap()
            .status,
        "queued"
    );
}

#[tokio::test]
async fn credentials_are_single_use_and_expire() {
    let f = start(config(), Clock::new(720.0)).await;
    assert_eq!(
        f.gh.redeem("#cloud-config\nruncmd: [echo hi]", "h"),
        Err(RedeemError::NoCredential)
    );
    assert_eq!(
        f.gh.redeem("./config.sh --token AAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "h"),
        Err(RedeemError::Unknown)
    );
    let forged = base64::engine::general_purpose::STANDARD
        .encode(json!({ ".runner": "eyJ9", ".credentials": "" }).to_string());
    assert_eq!(
        f.gh.redeem(&format!("./run.sh --jitconfig {forged}"), "h"),
        Err(RedeemError::Unknown)
    );

    let t = f.registration_token("/repos/acme/app").await;
    let token = t["token"].as_str().unwrap();
    let id =
        f.gh.redeem(&format!("./config.sh --token {token}"), "host-9")
            .unwrap();
    let runner = f.gh.runners().into_iter().find(|r| r.id == id).unwrap();
    assert_eq!(
        (
            runner.name.as_str(),
            runner.labels.clone(),
            runner.scope.as_str()
        ),
        ("host-9", vec!["self-hosted".to_string()], "repo:acme/app")
    );
    assert_eq!(
        f.gh.redeem(&format!("./config.sh --token {token}"), "host-10"),
        Err(RedeemError::AlreadyUsed)
    );

    let t = f.registration_token("/repos/acme/app").await;
    tokio::time::sleep(Duration::from_millis(5100)).await; // over an hour, simulated
    let late = format!("./config.sh --token {}", t["token"].as_str().unwrap());
    assert_eq!(f.gh.redeem(&late, "h"), Err(RedeemError::Expired));
}

/// A webhook receiver: every delivery's headers and body, in arrival order.
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
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(tx);
    let addr = mayfly_sim::serve_local(app).await.unwrap();
    (format!("http://{addr}/hook"), rx)
}

struct Delivery {
    id: String,
    action: String,
    job_id: u64,
}

async fn next(rx: &mut mpsc::UnboundedReceiver<(HeaderMap, Vec<u8>)>, secret: &str) -> Delivery {
    let (headers, body) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a delivery")
        .unwrap();
    assert_eq!(headers["x-github-event"], "workflow_job");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        headers["x-hub-signature-256"].to_str().unwrap(),
        signature(secret, &body)
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["repository"]["full_name"], "acme/app");
    assert_eq!(v["organization"]["login"], "acme");
    assert!(v["sender"]["login"].is_string());
    Delivery {
        id: headers["x-github-delivery"].to_str().unwrap().to_string(),
        action: v["action"].as_str().unwrap().to_string(),
        job_id: v["workflow_job"]["id"].as_u64().unwrap(),
    }
}

async fn quiet(rx: &mut mpsc::UnboundedReceiver<(HeaderMap, Vec<u8>)>) {
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "no more deliveries"
    );
}

#[tokio::test]
async fn workflow_job_webhooks_are_signed_and_follow_the_job() {
    let (url, mut rx) = receiver().await;
    let secret = "It's a Secret to Everybody";
    let f = start(
        GithubConfig {
            webhooks: vec![WebhookTarget {
                url,
                secret: secret.into(),
            }],
            ..config()
        },
        Clock::new(1.0),
    )
    .await;
    let id = f.gh.enqueue("acme/app", vec![job(&["self-hosted"])])[0];
    let jit = f.jit("/orgs/acme", "r", &["x"]).await;
    let runner =
        f.gh.redeem(jit["encoded_jit_config"].as_str().unwrap(), "h")
            .unwrap();
    f.gh.next_job(runner).unwrap();
    f.gh.finish_job(runner, id, "success");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let d = next(&mut rx, secret).await;
        assert_eq!(d.job_id, id);
        assert_eq!(d.id.len(), 36, "a GUID");
        seen.push(d.action);
    }
    assert_eq!(seen, ["queued", "in_progress", "completed"]);
    quiet(&mut rx).await;
}

#[tokio::test]
async fn webhook_faults_drop_duplicate_and_reorder() {
    let (url, mut rx) = receiver().await;
    let target = WebhookTarget {
        url,
        secret: "s".into(),
    };
    let f = start(
        GithubConfig {
            webhooks: vec![target],
            ..config()
        },
        Clock::new(1.0),
    )
    .await;

    f.gh.set_config(|c| {
        c.webhook_faults = WebhookFaults {
            drop: 1.0,
            ..WebhookFaults::default()
        }
    });
    f.gh.enqueue("acme/app", vec![job(&["a"]), job(&["b"])]);
    quiet(&mut rx).await;

    f.gh.set_config(|c| {
        c.webhook_faults = WebhookFaults {
            duplicate: 1.0,
            ..WebhookFaults::default()
        }
    });
    let id = f.gh.enqueue("acme/app", vec![job(&["a"])])[0];
    let (a, b) = (next(&mut rx, "s").await, next(&mut rx, "s").await);
    assert_eq!(
        (a.id == b.id, a.job_id, b.job_id),
        (true, id, id),
        "the same delivery twice"
    );
    quiet(&mut rx).await;

    f.gh.set_config(|c| {
        c.webhook_faults = WebhookFaults {
            reorder: 1.0,
            ..WebhookFaults::default()
        }
    });
    let ids = f.gh.enqueue("acme/app", vec![job(&["a"]), job(&["b"])]);
    let got = [
        next(&mut rx, "s").await.job_id,
        next(&mut rx, "s").await.job_id,
    ];
    assert_eq!(
        got,
        [ids[1], ids[0]],
        "the first is held back behind the second"
    );

    // Half the deliveries dropped: some arrive, some do not.
    f.gh.set_config(|c| {
        c.webhook_faults = WebhookFaults {
            drop: 0.5,
            seed: 7,
            ..WebhookFaults::default()
        }
    });
    f.gh.enqueue("acme/app", (0..20).map(|_| job(&["a"])).collect());
    let mut n = 0;
    while tokio::time::timeout(Duration::from_millis(300), rx.recv())
        .await
        .is_ok()
    {
        n += 1;
    }
    assert!((3..=17).contains(&n), "{n} of 20 arrived");
}

#[tokio::test]
async fn a_runner_registered_without_ephemeral_takes_job_after_job() {
    let f = start(config(), Clock::new(720.0)).await;
    let ids = f.gh.enqueue(
        "acme/app",
        vec![job(&["self-hosted"]), job(&["self-hosted"])],
    );
    let t = f.registration_token("/repos/acme/app").await;
    let script = format!(
        "./config.sh --url https://github.com/acme/app --token {} --name i-0abc",
        t["token"].as_str().unwrap()
    );
    let runner = f.gh.redeem(&script, "host").unwrap();
    for id in &ids {
        let got = f.gh.next_job(runner).map(|a| a.job_id);
        assert_eq!(got, Some(*id));
        f.gh.finish_job(runner, *id, "success");
    }
    let r = f
        .get_json(&format!("/repos/acme/app/actions/runners/{runner}"))
        .await;
    assert_eq!(
        (
            r["name"].as_str(),
            r["ephemeral"].as_bool(),
            r["busy"].as_bool()
        ),
        (Some("i-0abc"), Some(false), Some(false)),
        "still registered, idle, after two jobs"
    );
}
