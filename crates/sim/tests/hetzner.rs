//! The fake Hetzner Cloud over real HTTP: CRUD, pagination, label selectors, status
//! transitions, every error code, rate limiting, quota, stock, locks, billing, boot counting.

use mayfly_sim::clock::Clock;
use mayfly_sim::hetzner::{Hetzner, HetznerConfig};
use mayfly_sim::runners::MachineSource;
use mayfly_sim::stats::Stats;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "test-token";

struct Fake {
    hz: Arc<Hetzner>,
    clock: Clock,
    stats: Arc<Stats>,
    base: String,
    http: reqwest::Client,
}

async fn start(speed: f64, config: HetznerConfig) -> Fake {
    let clock = Clock::new(speed);
    let stats = Arc::new(Stats::default());
    let hz = Hetzner::new(
        HetznerConfig {
            token: TOKEN.into(),
            ..config
        },
        clock.clone(),
        stats.clone(),
    );
    let base = hz.serve_local().await.unwrap();
    Fake {
        hz,
        clock,
        stats,
        base,
        http: reqwest::Client::new(),
    }
}

impl Fake {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap()
            },
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn create(&self, name: &str, labels: Value) -> Value {
        let body = json!({ "name": name, "server_type": "cx23", "image": "ubuntu-24.04", "location": "fsn1", "labels": labels, "user_data": format!("#cloud-config {name}") });
        let (status, v) = self.post("/servers", body).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v
    }

    async fn status(&self, id: &Value) -> String {
        let (_, v) = self.get(&format!("/servers/{id}")).await;
        v["server"]["status"].as_str().unwrap_or("gone").to_string()
    }

    /// Waits (bounded, real time) until the server reaches `want`.
    async fn until_status(&self, id: &Value, want: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.status(id).await;
            if now == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server {id} stuck in {now}, wanted {want}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn servers_are_created_read_updated_and_deleted() {
    let f = start(1000.0, HetznerConfig::default()).await;
    let v = f
        .create("runner-1", json!({ "mayfly": "c1", "pool": "x64" }))
        .await;
    let s = &v["server"];
    assert_eq!(
        (s["name"].as_str(), s["status"].as_str()),
        (Some("runner-1"), Some("initializing"))
    );
    assert_eq!(s["server_type"]["name"], "cx23");
    assert_eq!(s["location"]["name"], "fsn1");
    assert_eq!(s["datacenter"]["location"]["name"], "fsn1");
    assert_eq!(s["image"]["name"], "ubuntu-24.04");
    assert!(
        s["public_net"]["ipv4"]["ip"].is_string() && s["public_net"]["floating_ips"].is_array()
    );
    assert!(s["created"].as_str().is_some_and(|c| c.ends_with("+00:00")));
    assert_eq!(v["action"]["command"], "create_server");
    assert_eq!(v["next_actions"][0]["command"], "start_server");
    assert!(v["root_password"].is_string());
    let id = s["id"].clone();

    let (status, v) = f
        .post(
            "/servers",
            json!({ "name": "runner-1", "server_type": "cx23", "image": "ubuntu-24.04" }),
        )
        .await;
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::CONFLICT, "uniqueness_error"),
        "{v}"
    );
    assert_eq!(v["error"]["details"]["fields"][0]["name"], "name");

    let (status, v) = f
        .call(
            Method::PUT,
            &format!("/servers/{id}"),
            Some(json!({ "name": "renamed", "labels": { "a": "b" } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["server"]["name"].as_str(), &v["server"]["labels"]),
        (Some("renamed"), &json!({ "a": "b" }))
    );

    let (status, v) = f
        .call(Method::DELETE, &format!("/servers/{id}"), None)
        .await;
    assert_eq!(
        (status, v["action"]["command"].as_str()),
        (StatusCode::OK, Some("delete_server"))
    );
    let (status, v) = f.get(&format!("/servers/{id}")).await;
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, v) = f
        .call(Method::DELETE, &format!("/servers/{id}"), None)
        .await;
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    assert!(f.hz.servers().is_empty());
}

#[tokio::test]
async fn bad_input_gets_the_real_errors() {
    let f = start(1000.0, HetznerConfig::default()).await;
    for (body, field) in [
        (
            json!({ "server_type": "cx23", "image": "ubuntu-24.04" }),
            "name",
        ),
        (
            json!({ "name": "a_b", "server_type": "cx23", "image": "ubuntu-24.04" }),
            "name",
        ),
        (
            json!({ "name": "ok", "server_type": "cx999", "image": "ubuntu-24.04" }),
            "server_type",
        ),
        (
            json!({ "name": "ok", "server_type": "cx23", "image": 161547270 }),
            "image",
        ),
        (
            json!({ "name": "ok", "server_type": "cx23", "image": "windows" }),
            "image",
        ),
        (
            json!({ "name": "ok", "server_type": "cx23", "image": "ubuntu-24.04", "location": "mars" }),
            "location",
        ),
        (
            json!({ "name": "ok", "server_type": "cx23", "image": "ubuntu-24.04", "labels": { "-x": "y" } }),
            "labels",
        ),
        (
            json!({ "name": "ok", "server_type": "cx23", "image": "ubuntu-24.04", "ssh_keys": ["nope"] }),
            "ssh_keys",
        ),
        (
            json!({ "name": 5, "server_type": "cx23", "image": "ubuntu-24.04" }),
            "name",
        ),
        (
            json!({ "name": "ok", "server_type": "cx23", "image": "ubuntu-24.04", "user_data": "x".repeat(40_000) }),
            "user_data",
        ),
    ] {
        let (status, v) = f.post("/servers", body.clone()).await;
        assert_eq!(
            (status, error_code(&v)),
            (StatusCode::BAD_REQUEST, "invalid_input"),
            "{body}: {v}"
        );
        assert_eq!(v["error"]["details"]["fields"][0]["name"], field, "{v}");
        assert!(v["error"]["message"].is_string());
    }
    let r = f
        .http
        .post(format!("{}/servers", f.base))
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&r.json().await.unwrap()), "json_error");
    for path in [
        "/servers?label_selector=k%20in%20(a",
        "/servers?page=0",
        "/servers?status=dancing",
        "/servers/abc",
    ] {
        let (status, v) = f.get(path).await;
        assert_eq!(
            (status, error_code(&v)),
            (StatusCode::BAD_REQUEST, "invalid_input"),
            "{path}: {v}"
        );
    }
    let (status, v) = f.get("/floating_ips").await;
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, v) = f.post("/servers/12345/actions/poweroff", json!({})).await;
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::NOT_FOUND, "not_found")
    );

    let r = f
        .http
        .get(format!("{}/servers", f.base))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers().contains_key("ratelimit-remaining"),
        "rate limit headers on errors too"
    );
    assert_eq!(error_code(&r.json().await.unwrap()), "unauthorized");
    let r = f
        .http
        .get(format!("{}/servers", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn lists_paginate_and_filter_by_label_selector_name_and_status() {
    let f = start(1000.0, HetznerConfig::default()).await;
    for i in 0..7 {
        let pool = ["x64", "arm", "gpu"][i % 3];
        let mut labels = json!({ "mayfly": "c1", "pool": pool });
        if i == 6 {
            labels = json!({ "other": "yes" });
        }
        f.create(&format!("r{i}"), labels).await;
    }
    let (_, v) = f.get("/servers?per_page=3&page=2").await;
    assert_eq!(v["servers"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        v["meta"]["pagination"],
        json!({ "page": 2, "per_page": 3, "previous_page": 1, "next_page": 3, "last_page": 3, "total_entries": 7 })
    );
    let (_, v) = f.get("/servers?per_page=3&page=3").await;
    assert_eq!(
        (
            v["servers"].as_array().map(Vec::len),
            &v["meta"]["pagination"]["next_page"]
        ),
        (Some(1), &Value::Null)
    );
    let (_, v) = f.get("/servers?per_page=500").await;
    assert_eq!(
        v["meta"]["pagination"]["per_page"], 50,
        "per_page is capped at 50"
    );

    let names = async |query: &str| -> Vec<String> {
        let (status, v) = f.get(&format!("/servers?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {v}");
        v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("label_selector=pool%3Dx64").await, ["r0", "r3"]);
    assert_eq!(names("label_selector=pool%3D%3Dx64").await, ["r0", "r3"]);
    assert_eq!(
        names("label_selector=mayfly%3Dc1,pool!%3Dx64").await,
        ["r1", "r2", "r4", "r5"]
    );
    assert_eq!(names("label_selector=other").await, ["r6"]);
    assert_eq!(names("label_selector=!mayfly").await, ["r6"]);
    assert_eq!(
        names("label_selector=pool%20in%20(arm,gpu)").await,
        ["r1", "r2", "r4", "r5"]
    );
    assert_eq!(
        names("label_selector=pool%20notin%20(arm,gpu)").await,
        ["r0", "r3", "r6"]
    );
    assert_eq!(names("name=r4").await, ["r4"]);
    assert_eq!(names("status=initializing&status=running").await.len(), 7);
    assert!(names("status=off").await.is_empty());
}

#[tokio::test]
async fn statuses_follow_power_actions_in_simulated_time() {
    let config = HetznerConfig {
        boot_delay: Duration::from_secs(30),
        shutdown_delay: Duration::from_secs(30),
        action_delay: Duration::from_secs(30),
        ..HetznerConfig::default()
    };
    // 300 ms real per step at 100x: room for a loaded machine to observe each status.
    let f = start(100.0, config).await;
    let v = f.create("t", json!({})).await;
    let (id, action) = (v["server"]["id"].clone(), v["action"]["id"].clone());
    let (_, a) = f.get(&format!("/actions/{action}")).await;
    assert_eq!(a["action"]["status"], "running");
    assert!(a["action"]["finished"].is_null());
    f.until_status(&id, "running").await;
    let (_, a) = f.get(&format!("/actions/{action}")).await;
    assert_eq!(
        (
            a["action"]["status"].as_str(),
            a["action"]["progress"].as_u64()
        ),
        (Some("success"), Some(100))
    );
    let (_, list) = f.get(&format!("/actions?id={action}")).await;
    assert_eq!(list["actions"][0]["id"], action);

    let (status, v) = f
        .post(&format!("/servers/{id}/actions/poweroff"), json!({}))
        .await;
    assert_eq!(
        (status, v["action"]["command"].as_str()),
        (StatusCode::OK, Some("stop_server"))
    );
    assert_eq!(f.status(&id).await, "off", "poweroff cuts power at once");

    let (_, v) = f
        .post(&format!("/servers/{id}/actions/poweron"), json!({}))
        .await;
    assert_eq!(v["action"]["command"], "start_server");
    assert_eq!(f.status(&id).await, "starting");
    f.until_status(&id, "running").await;

    f.post(&format!("/servers/{id}/actions/shutdown"), json!({}))
        .await;
    assert_eq!(f.status(&id).await, "stopping");
    f.until_status(&id, "off").await;

    let (status, v) = f
        .post(
            &format!("/servers/{id}/actions/rebuild"),
            json!({ "image": "debian-12" }),
        )
        .await;
    assert_eq!(
        (status, v["action"]["command"].as_str()),
        (StatusCode::OK, Some("rebuild_server")),
        "{v}"
    );
    assert_eq!(f.status(&id).await, "rebuilding");
    f.until_status(&id, "running").await;
    let (_, v) = f.get(&format!("/servers/{id}")).await;
    assert_eq!(v["server"]["image"]["name"], "debian-12");
}

#[tokio::test]
async fn a_server_with_a_running_action_is_locked() {
    let config = HetznerConfig {
        boot_delay: Duration::from_secs(3600),
        ..HetznerConfig::default()
    };
    let f = start(100.0, config).await;
    let id = f.create("busy", json!({})).await["server"]["id"].clone();
    let (_, v) = f.get(&format!("/servers/{id}")).await;
    assert_eq!(v["server"]["locked"], true);
    for action in ["poweroff", "poweron", "shutdown", "reboot"] {
        let (status, v) = f
            .post(&format!("/servers/{id}/actions/{action}"), json!({}))
            .await;
        assert_eq!(
            (status, error_code(&v)),
            (StatusCode::LOCKED, "locked"),
            "{action}"
        );
    }
    let (status, v) = f
        .post(
            &format!("/servers/{id}/actions/rebuild"),
            json!({ "image": "ubuntu-24.04" }),
        )
        .await;
    assert_eq!((status, error_code(&v)), (StatusCode::LOCKED, "locked"));
    let (status, _) = f
        .call(Method::DELETE, &format!("/servers/{id}"), None)
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a booting server can still be deleted"
    );
}

#[tokio::test]
async fn the_rate_limit_runs_out_then_refills() {
    // 36 requests an hour: one back every 100 simulated seconds, 100 ms real at 1000x.
    let f = start(
        1000.0,
        HetznerConfig {
            rate_limit_per_hour: 36,
            ..HetznerConfig::default()
        },
    )
    .await;
    let r = f
        .http
        .get(format!("{}/locations", f.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["ratelimit-limit"], "36");
    assert_eq!(r.headers()["ratelimit-remaining"], "35");
    let mut refused = None;
    for _ in 0..200 {
        let r = f
            .http
            .get(format!("{}/locations", f.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("the bucket runs dry");
    assert_eq!(r.headers()["ratelimit-remaining"], "0");
    let reset: i64 = r.headers()["ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        reset > f.clock.now_secs() + 3000,
        "full again in about an hour: {reset}"
    );
    assert_eq!(error_code(&r.json().await.unwrap()), "rate_limit_exceeded");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (status, _) = f.get("/locations").await;
    assert_eq!(status, StatusCode::OK, "a request came back");
    let rows = f.stats.rows();
    let locations = rows
        .iter()
        .find(|r| r.key.route == "/v1/locations")
        .expect("counted");
    assert!(locations.count.errors >= 1, "429s are counted as errors");
}

#[tokio::test]
async fn the_server_quota_answers_resource_limit_exceeded() {
    let f = start(
        1000.0,
        HetznerConfig {
            server_quota: 2,
            ..HetznerConfig::default()
        },
    )
    .await;
    let a = f.create("a", json!({})).await["server"]["id"].clone();
    f.create("b", json!({})).await;
    let (status, v) = f
        .post(
            "/servers",
            json!({ "name": "c", "server_type": "cx23", "image": "ubuntu-24.04" }),
        )
        .await;
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::FORBIDDEN, "resource_limit_exceeded"),
        "{v}"
    );
    f.call(Method::DELETE, &format!("/servers/{a}"), None).await;
    f.create("c", json!({})).await;
    f.hz.set_config(|c| c.server_quota = 3);
    f.create("d", json!({})).await;
}

#[tokio::test]
async fn types_out_of_stock_answer_resource_unavailable() {
    let f = start(
        1000.0,
        HetznerConfig {
            unavailable: vec![("cx23".into(), "nbg1".into())],
            ..HetznerConfig::default()
        },
    )
    .await;
    let create = async |t: &str, l: &str| {
        f.post("/servers", json!({ "name": format!("{t}-{l}"), "server_type": t, "image": "ubuntu-24.04", "location": l })).await
    };
    let (status, v) = create("cx23", "nbg1").await;
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::PRECONDITION_FAILED, "resource_unavailable"),
        "{v}"
    );
    // Never sold there: the real API's 422 `invalid_input`, not a stock problem.
    let (status, v) = create("cx23", "ash").await;
    assert_eq!(
        (status, error_code(&v), v["error"]["message"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            Some("unsupported location for server type")
        ),
        "not offered there: {v}"
    );
    assert_eq!(create("ccx13", "ash").await.0, StatusCode::CREATED);
    f.hz.set_config(|c| c.unavailable.push(("cpx32".into(), "hel1".into())));
    assert_eq!(
        create("cpx32", "hel1").await.0,
        StatusCode::PRECONDITION_FAILED
    );
    let (_, v) = f.get("/server_types?name=cx23").await;
    let nbg1 = v["server_types"][0]["locations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "nbg1")
        .cloned();
    assert_eq!(nbg1.map(|l| l["available"].clone()), Some(json!(false)));
    // Without a location the fake picks one with stock.
    let (status, v) = f
        .post(
            "/servers",
            json!({ "name": "anywhere", "server_type": "cx23", "image": "ubuntu-24.04" }),
        )
        .await;
    assert_eq!(
        (status, v["server"]["location"]["name"].as_str()),
        (StatusCode::CREATED, Some("fsn1"))
    );
}

#[tokio::test]
async fn the_catalogue_has_types_prices_images_and_locations() {
    let f = start(1000.0, HetznerConfig::default()).await;
    let (_, v) = f.get("/server_types?per_page=50").await;
    let types = v["server_types"].as_array().unwrap();
    for name in [
        "cx23", "cx33", "cx43", "cx53", "cpx12", "cpx22", "cpx32", "cpx42", "cpx52", "cpx62",
        "cax11", "cax21", "cax31", "cax41", "ccx13", "ccx23",
    ] {
        let t = types
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        let fsn1 = t["prices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["location"] == "fsn1")
            .expect("priced in fsn1");
        let net: f64 = fsn1["price_hourly"]["net"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let gross: f64 = fsn1["price_hourly"]["gross"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            net > 0.0 && (gross - net * 1.19).abs() < 1e-9,
            "{name}: {net} {gross}"
        );
    }
    let cax41 = types.iter().find(|t| t["name"] == "cax41").unwrap();
    assert_eq!(cax41["architecture"], "arm");
    assert!(
        !cax41["prices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["location"] == "ash"),
        "arm is not sold in ash"
    );
    let (_, v) = f
        .get("/images?name=ubuntu-24.04&architecture=arm&type=system")
        .await;
    assert_eq!(v["images"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["images"][0]["architecture"], "arm");
    let (_, v) = f.get("/locations").await;
    let names: Vec<&str> = v["locations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["name"].as_str())
        .collect();
    assert_eq!(names, ["fsn1", "nbg1", "hel1", "ash", "hil", "sin"]);
    // Older clients place by datacenter.
    let (status, v) = f
        .post(
            "/servers",
            json!({ "name": "dc", "server_type": "cx23", "image": "ubuntu-24.04", "datacenter": "hel1-dc2" }),
        )
        .await;
    assert_eq!(
        (status, v["server"]["location"]["name"].as_str()),
        (StatusCode::CREATED, Some("hel1"))
    );
    // An arm type gets the arm build of the image named.
    let (status, v) = f
        .post(
            "/servers",
            json!({ "name": "arm", "server_type": "cax11", "image": "ubuntu-24.04" }),
        )
        .await;
    assert_eq!(
        (status, v["server"]["image"]["architecture"].as_str()),
        (StatusCode::CREATED, Some("arm"))
    );
}

#[tokio::test]
async fn ssh_keys_are_found_by_fingerprint() {
    let f = start(1000.0, HetznerConfig::default()).await;
    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGf8kVZ6mF7QqH0cH4cXh0b9Hq6h1M3cK5n3b4kq9x1Y mayfly";
    let (status, v) = f
        .post("/ssh_keys", json!({ "name": "mayfly", "public_key": key }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let fp = v["ssh_key"]["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(fp.split(':').count(), 16);
    let (_, v) = f.get(&format!("/ssh_keys?fingerprint={fp}")).await;
    assert_eq!(v["ssh_keys"][0]["name"], "mayfly");
    let (status, v) = f
        .post("/ssh_keys", json!({ "name": "again", "public_key": key }))
        .await;
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::CONFLICT, "uniqueness_error")
    );
    let (status, v) = f
        .post("/ssh_keys", json!({ "name": "bad", "public_key": "hello" }))
        .await;
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_input")
    );
    let (status, v) = f.post("/servers", json!({ "name": "k", "server_type": "cx23", "image": "ubuntu-24.04", "ssh_keys": ["mayfly"] })).await;
    assert_eq!(
        (status, &v["root_password"]),
        (StatusCode::CREATED, &Value::Null)
    );
}

#[tokio::test]
async fn billing_charges_started_hours_powered_off_or_not() {
    // 5,000x: an hour is 720 ms real, so 90 minutes leave 360 ms of slack before a third hour.
    let f = start(5_000.0, HetznerConfig::default()).await;
    let a = f.create("long", json!({})).await["server"]["id"].clone();
    let b = f.create("short", json!({})).await["server"]["id"].clone();
    f.call(Method::DELETE, &format!("/servers/{b}"), None).await;
    f.until_status(&a, "running").await;
    f.post(&format!("/servers/{a}/actions/poweroff"), json!({}))
        .await;
    f.clock.sleep(Duration::from_secs(90 * 60)).await;
    f.call(Method::DELETE, &format!("/servers/{a}"), None).await;
    let bill = f.hz.billing();
    let (_, v) = f.get("/server_types?name=cx23").await;
    let gross: f64 = v["server_types"][0]["prices"][0]["price_hourly"]["gross"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let hours: Vec<(String, u64)> = bill
        .servers
        .iter()
        .map(|r| (r.name.clone(), r.hours_billed))
        .collect();
    assert_eq!(
        hours,
        [("long".to_string(), 2), ("short".to_string(), 1)],
        "{bill:?}"
    );
    assert_eq!(bill.total, 3.0 * gross);
    assert!(bill.servers.iter().all(|r| r.deleted_ms.is_some()));
    let json = serde_json::to_value(&bill).unwrap();
    assert_eq!(json["servers"][0]["type"], "cx23");
}

#[tokio::test]
async fn machines_count_boots_across_power_cycles_and_rebuilds() {
    let f = start(1000.0, HetznerConfig::default()).await;
    let id = f.create("m", json!({})).await["server"]["id"].clone();
    f.until_status(&id, "running").await;
    let machine = |boot| {
        let m = f.hz.running();
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].name.as_str(), m[0].boot), ("m", boot));
        assert_eq!(m[0].user_data, "#cloud-config m");
        m[0].id.clone()
    };
    let mid = machine(1);
    f.hz.power_off(&mid);
    f.until_status(&id, "off").await;
    assert!(f.hz.running().is_empty());
    f.post(&format!("/servers/{id}/actions/poweron"), json!({}))
        .await;
    f.until_status(&id, "running").await;
    machine(2);
    let (status, v) = f
        .post(
            &format!("/servers/{id}/actions/rebuild"),
            json!({ "image": "ubuntu-24.04", "user_data": "#cloud-config m" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    f.until_status(&id, "running").await;
    machine(3);
    assert_eq!(f.hz.servers()[0].status, "running");
    f.hz.reset();
    assert!(f.hz.servers().is_empty() && f.hz.billing().servers.is_empty());
}

#[tokio::test]
async fn every_call_is_counted_by_route() {
    let f = start(1000.0, HetznerConfig::default()).await;
    let id = f.create("c", json!({})).await["server"]["id"].clone();
    f.get(&format!("/servers/{id}")).await;
    f.get(&format!("/servers/{id}")).await;
    f.get("/servers?label_selector=x").await;
    assert_eq!(f.stats.total("hetzner"), 4);
    let rows = f.stats.rows();
    let get = rows
        .iter()
        .find(|r| r.key.route == "/v1/servers/{id}" && r.key.method == "GET")
        .expect("counted by template");
    assert_eq!(get.count.calls, 2);
}

/// The retired lines stay listed with their per-location deprecation (and the older top-level
/// fields), and a create answers as the real API did after 2025-12-31: 422 `invalid_input`,
/// "server type 104 is deprecated" where the type is gone everywhere, "unsupported location"
/// where it is gone only here.
#[tokio::test]
async fn retired_types_are_listed_as_deprecated_and_refused() {
    let f = start(1000.0, HetznerConfig::default()).await;
    let (_, v) = f.get("/server_types?name=cx22").await;
    let cx22 = &v["server_types"][0];
    assert_eq!(cx22["id"], 104);
    assert_eq!(cx22["deprecated"], true);
    assert_eq!(
        cx22["deprecation"],
        json!({ "announced": "2025-10-16T06:00:00+00:00", "unavailable_after": "2025-12-31T23:59:59+00:00" })
    );
    for l in cx22["locations"].as_array().unwrap() {
        assert_eq!(l["deprecation"], cx22["deprecation"], "{l}");
        assert_eq!(
            (l["available"].clone(), l["recommended"].clone()),
            (json!(false), json!(false))
        );
    }
    let (status, v) = f
        .post("/servers", json!({ "name": "old", "server_type": "cx22", "image": "ubuntu-24.04", "location": "fsn1" }))
        .await;
    assert_eq!(
        (status, error_code(&v), v["error"]["message"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            Some("server type 104 is deprecated")
        ),
        "{v}"
    );
    assert_eq!(v["error"]["details"]["fields"][0]["name"], "server_type");
    let (status, v) = f
        .post(
            "/servers",
            json!({ "name": "old", "server_type": "cx22", "image": "ubuntu-24.04" }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no location sells it: {v}"
    );

    // CPX Gen 1 is retired in the EU and Singapore, still sold in the US.
    let (_, v) = f.get("/server_types?name=cpx21").await;
    let cpx21 = &v["server_types"][0];
    assert_eq!(
        (cpx21["deprecated"].clone(), cpx21["deprecation"].clone()),
        (json!(false), Value::Null)
    );
    let ash = cpx21["locations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "ash")
        .unwrap();
    assert_eq!(
        (ash["deprecation"].clone(), ash["available"].clone()),
        (Value::Null, json!(true))
    );
    let (status, v) = f
        .post("/servers", json!({ "name": "eu", "server_type": "cpx21", "image": "ubuntu-24.04", "location": "nbg1" }))
        .await;
    assert_eq!(
        (status, v["error"]["message"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("unsupported location for server type")
        ),
        "{v}"
    );
    let (status, v) = f
        .post(
            "/servers",
            json!({ "name": "us", "server_type": "cpx21", "image": "ubuntu-24.04" }),
        )
        .await;
    assert_eq!(
        (status, v["server"]["location"]["name"].as_str()),
        (StatusCode::CREATED, Some("ash")),
        "without a location the API picks one that sells it: {v}"
    );
    // A datacenter lists what it supports and what it has available now.
    let dc = &v["server"]["datacenter"]["server_types"];
    assert!(dc["available"].as_array().unwrap().contains(&json!(23)));
    let (_, v) = f
        .post("/servers", json!({ "name": "new", "server_type": "cx23", "image": "ubuntu-24.04", "location": "fsn1" }))
        .await;
    let dc = &v["server"]["datacenter"]["server_types"];
    assert!(dc["supported"].as_array().unwrap().contains(&json!(104)));
    assert!(!dc["available"].as_array().unwrap().contains(&json!(104)));
}

/// A type dropped from the catalogue is not listed, not found by id, and refused as unknown;
/// an injected deprecation shows per location and takes effect at its date.
#[tokio::test]
async fn missing_types_and_injected_deprecations() {
    let f = start(1000.0, HetznerConfig::default()).await;
    f.hz.set_config(|c| c.missing_types = vec!["cx23".into()]);
    let (_, v) = f.get("/server_types?per_page=50").await;
    let names: Vec<&str> = v["server_types"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        !names.contains(&"cx23") && names.contains(&"cx33"),
        "{names:?}"
    );
    assert_eq!(f.get("/server_types/114").await.0, StatusCode::NOT_FOUND);
    let (status, v) = f
        .post("/servers", json!({ "name": "gone", "server_type": "cx23", "image": "ubuntu-24.04", "location": "fsn1" }))
        .await;
    assert_eq!(
        (
            status,
            error_code(&v),
            v["error"]["details"]["fields"][0]["name"].as_str()
        ),
        (
            StatusCode::BAD_REQUEST,
            "invalid_input",
            Some("server_type")
        ),
        "{v}"
    );
    f.hz.set_config(|c| c.missing_types.clear());

    let now = f.clock.now_ms();
    f.hz.set_config(|c| {
        c.deprecations = vec![mayfly_sim::hetzner::DeprecationFault {
            server_type: "cx33".into(),
            location: Some("fsn1".into()),
            deprecation: mayfly_sim::hetzner::catalog::Deprecation {
                announced_ms: now,
                unavailable_after_ms: now + 3_600_000,
            },
        }]
    });
    let (_, v) = f.get("/server_types?name=cx33").await;
    let fsn1 = &v["server_types"][0]["locations"][0];
    assert_eq!(fsn1["name"], "fsn1");
    assert!(
        fsn1["deprecation"]["unavailable_after"].is_string(),
        "{fsn1}"
    );
    assert_eq!(
        (fsn1["available"].clone(), fsn1["recommended"].clone()),
        (json!(true), json!(false))
    );
    let create = async |name: &str| {
        f.post("/servers", json!({ "name": name, "server_type": "cx33", "image": "ubuntu-24.04", "location": "fsn1" })).await
    };
    assert_eq!(
        create("still").await.0,
        StatusCode::CREATED,
        "orderable until its date"
    );
    f.hz.set_config(|c| c.deprecations[0].deprecation.unavailable_after_ms = now - 1);
    let (status, v) = create("late").await;
    assert_eq!(
        (status, v["error"]["message"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("unsupported location for server type")
        ),
        "still sold in nbg1 and hel1: {v}"
    );
}
