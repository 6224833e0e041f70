//! The control API: jobs and traces in, statistics out, faults set all-or-nothing, reset; a bad
//! body is refused with a 400 that names the field.

mod support;

use mayfly_sim::{Sim, SimConfig};
use serde_json::{Value, json};
use std::time::Duration;
use support::get_json;

async fn start() -> (reqwest::Client, String) {
    let sim = Sim::start(SimConfig {
        speed: 100.0,
        ..SimConfig::default()
    });
    let at = support::serve(&sim).await;
    (reqwest::Client::new(), format!("http://{}/_sim", at.github))
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let r = http.post(url).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_requests_name_the_field_and_change_nothing() {
    let (http, ctl) = start().await;
    // Each is refused with 400, naming what is wrong (where `says` is not empty).
    for (path, body, says) in [
        (
            "jobs",
            json!({ "repo": "acme", "labels": ["x"], "duration_secs": 1 }),
            "repo must be owner/repo",
        ),
        (
            "jobs",
            json!({ "repo": "a/b", "labels": ["x"] }),
            "missing field `duration_secs`",
        ),
        (
            "faults",
            json!({ "runners": { "crash": 0.5, "never_register": 1.5 } }),
            "runners.never_register",
        ),
        ("faults", json!({ "webhooks": { "drop": 2.0 } }), ""),
        (
            "faults",
            json!({ "hetzner": { "boot_delay_secs": 1, "action_delay_secs": -1 } }),
            "hetzner.action_delay_secs",
        ),
        ("webhooks", json!({ "url": "ftp://x", "secret": "s" }), ""),
        (
            "trace",
            json!({ "text": "at,repo,labels,duration\n0,a/b,x,soon\n" }),
            "trace:2: duration",
        ),
        ("trace", json!({}), ""),
    ] {
        let (code, answer) = post(&http, format!("{ctl}/{path}"), body).await;
        assert_eq!(code, 400, "{path}: {answer}");
        assert!(
            answer["error"].as_str().unwrap_or("").contains(says),
            "{path}: {answer}"
        );
    }
    // Out of range: once a panic (duration 1e20) or a replay that never ends (at 1e15).
    for (body, says) in [
        (
            json!({ "text": "at,repo,labels,duration\n0,a/b,x,1e20\n" }),
            "trace:2: duration must be",
        ),
        (
            json!({ "jobs": [{ "at": 1e15, "repo": "a/b", "labels": ["x"], "duration": 1 }] }),
            "job 1: at must be",
        ),
    ] {
        let (code, answer) = post(&http, format!("{ctl}/trace"), body).await;
        assert_eq!(code, 400, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{answer}");
    }
    let (code, answer) = post(
        &http,
        format!("{ctl}/jobs"),
        json!({ "repo": "a/b", "labels": ["x"], "duration_secs": 1e20 }),
    )
    .await;
    assert_eq!(code, 400, "{answer}");
    let stats: Value = get_json(&http, format!("{ctl}/stats")).await;
    assert_eq!(stats["jobs"]["total"], 0);
}

#[tokio::test]
async fn jobs_traces_stats_and_reset() {
    let (http, ctl) = start().await;
    let (code, body) =
        post(&http, format!("{ctl}/jobs"), json!({ "repo": "a/b", "labels": ["self-hosted"], "duration_secs": 60, "jobs": 3, "runs": 2 })).await;
    assert_eq!(code, 201);
    assert_eq!(body["job_ids"].as_array().unwrap().len(), 6);
    let (code, body) = post(
        &http,
        format!("{ctl}/trace"),
        json!({ "text": "at,repo,labels,duration\n0,a/c,x,60\n1,a/c,x,60\n" }),
    )
    .await;
    assert_eq!((code, body), (202, json!({ "jobs": 2, "runs": 2 })));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stats: Value = get_json(&http, format!("{ctl}/stats")).await;
        if stats["jobs"]["total"] == 8 && stats["replaying"] == false {
            assert_eq!(stats["jobs"]["queued"], 8);
            assert!(stats["jobs"]["wait_secs"]["max"].as_f64().unwrap() >= 0.0);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stats:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, _) = post(
        &http,
        format!("{ctl}/faults"),
        json!({ "runners": { "crash": 0.5 }, "hetzner": { "server_quota": 3, "boot_delay_secs": 0.5, "shutdown_delay_secs": 0, "action_delay_secs": 1 } }),
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = post(&http, format!("{ctl}/reset"), json!({})).await;
    assert_eq!(code, 200);
    let stats: Value = get_json(&http, format!("{ctl}/stats")).await;
    assert_eq!(stats["jobs"]["total"], 0);
    assert_eq!(stats["servers_existing"], 0);
}

/// The catalogue faults: types missing from the catalogue, and deprecations dated from now.
#[tokio::test]
async fn catalogue_faults_hide_types_and_announce_deprecations() {
    let sim = Sim::start(SimConfig {
        speed: 100.0,
        ..SimConfig::default()
    });
    let at = support::serve(&sim).await;
    let (http, ctl) = (reqwest::Client::new(), format!("http://{}/_sim", at.github));
    let token = mayfly_sim::hetzner::HetznerConfig::default().token;
    let types = async || -> Vec<Value> {
        let v: Value = http
            .get(format!("http://{}/v1/server_types?per_page=50", at.hetzner))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["server_types"].as_array().unwrap().clone()
    };
    let (code, body) = post(
        &http,
        format!("{ctl}/faults"),
        json!({ "hetzner": { "deprecations": [{ "server_type": "cx23", "unavailable_in_secs": "soon" }] } }),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = post(
        &http,
        format!("{ctl}/faults"),
        json!({ "hetzner": {
            "missing_types": ["cx33"],
            "deprecations": [{ "server_type": "cx23", "location": "nbg1", "unavailable_in_secs": 86400 }],
        } }),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let listed = types().await;
    assert!(
        listed.iter().all(|t| t["name"] != "cx33"),
        "cx33 is missing"
    );
    let cx23 = listed.iter().find(|t| t["name"] == "cx23").unwrap();
    let nbg1 = cx23["locations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "nbg1")
        .unwrap();
    assert!(nbg1["deprecation"]["announced"].is_string(), "{nbg1}");
    assert_eq!(nbg1["available"], true, "orderable for another day");
    let fsn1 = &cx23["locations"][0];
    assert_eq!(fsn1["deprecation"], Value::Null);
    // Setting the knobs again replaces them.
    let (code, _) = post(
        &http,
        format!("{ctl}/faults"),
        json!({ "hetzner": { "missing_types": [], "deprecations": [] } }),
    )
    .await;
    assert_eq!(code, 200);
    let listed = types().await;
    assert!(listed.iter().any(|t| t["name"] == "cx33"));
}

/// The latency fault: every answer of the fake GitHub's and the fake Hetzner's REST API comes
/// that many wall-clock seconds late (whatever the speed), until it is set back to 0; a value
/// out of range is refused, naming the field.
#[tokio::test]
async fn latency_slows_every_answer_in_wall_clock_time() {
    let sim = Sim::start(SimConfig {
        speed: 100.0,
        ..SimConfig::default()
    });
    let at = support::serve(&sim).await;
    let http = reqwest::Client::new();
    let ctl = format!("http://{}/_sim", at.github);
    for bad in [json!(-1), json!(1e9)] {
        let (code, body) = post(
            &http,
            format!("{ctl}/faults"),
            json!({ "hetzner": { "latency_secs": bad } }),
        )
        .await;
        assert_eq!(code, 400, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("hetzner.latency_secs"),
            "{body}"
        );
    }
    let timed = |url: String| {
        let http = http.clone();
        async move {
            let start = std::time::Instant::now();
            let status = http.get(url).send().await.unwrap().status().as_u16();
            (status, start.elapsed())
        }
    };
    let github = format!("http://{}/rate_limit", at.github);
    let hetzner = format!("http://{}/v1/servers", at.hetzner);
    let (code, _) = post(
        &http,
        format!("{ctl}/faults"),
        json!({ "github": { "latency_secs": 0.4 }, "hetzner": { "latency_secs": 0.4 } }),
    )
    .await;
    assert_eq!(code, 200);
    for url in [&github, &hetzner] {
        let (status, took) = timed(url.clone()).await;
        assert!(
            took >= Duration::from_millis(400),
            "{url}: {status} in {took:?}"
        );
    }
    post(
        &http,
        format!("{ctl}/faults"),
        json!({ "github": { "latency_secs": 0 }, "hetzner": { "latency_secs": 0 } }),
    )
    .await;
    for url in [&github, &hetzner] {
        let (status, took) = timed(url.clone()).await;
        assert!(
            took < Duration::from_millis(400),
            "{url}: {status} in {took:?}"
        );
    }
}
