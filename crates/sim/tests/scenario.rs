//! The simulator's acceptance scenario, over plain HTTP only: enqueue 20 jobs, create 20 servers
//! carrying JIT configs, wait. It must end with 20 completed jobs, 20 servers off, a bill of one
//! hour per server, and every API call counted.

mod support;

use mayfly_sim::github::GithubConfig;
use mayfly_sim::hetzner::HetznerConfig;
use mayfly_sim::runners::{Delay, RunnerConfig};
use mayfly_sim::{Sim, SimConfig};
use serde_json::{Value, json};
use std::time::Duration;
use support::get_json;

const GH_TOKEN: &str = "test-gh-token";
const HZ_TOKEN: &str = "test-hz-token";

async fn poll(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_jobs_on_twenty_servers_over_http() {
    let sim = Sim::start(SimConfig {
        speed: 200.0,
        github: GithubConfig {
            tokens: vec![GH_TOKEN.into()],
            ..GithubConfig::default()
        },
        hetzner: HetznerConfig {
            token: HZ_TOKEN.into(),
            ..HetznerConfig::default()
        },
        runners: RunnerConfig {
            boot_delay: Delay::Uniform {
                min_secs: 20.0,
                max_secs: 40.0,
            },
            ..RunnerConfig::default()
        },
        ..SimConfig::default()
    });
    let at = support::serve(&sim).await;
    let gh = format!("http://{}", at.github);
    let hz = format!("http://{}/v1", at.hetzner);
    let http = reqwest::Client::new();
    let mut github_calls = 0u64;
    let mut hetzner_calls = 0u64;

    // 20 jobs in one workflow run, through the control API (not counted).
    let r = http
        .post(format!("{gh}/_sim/jobs"))
        .json(&json!({ "repo": "acme/app", "labels": ["self-hosted", "linux"], "duration_secs": 300, "jobs": 20 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    // The price of a cx23 in fsn1, for the bill.
    let types: Value = http
        .get(format!("{hz}/server_types?name=cx23"))
        .bearer_auth(HZ_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    hetzner_calls += 1;
    let price: f64 = types["server_types"][0]["prices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["location"] == "fsn1")
        .and_then(|p| p["price_hourly"]["gross"].as_str())
        .and_then(|g| g.parse().ok())
        .expect("a gross hourly price for fsn1");

    for i in 0..20 {
        let name = format!("sim-runner-{i}");
        let jit: Value = http
            .post(format!("{gh}/repos/acme/app/actions/runners/generate-jitconfig"))
            .bearer_auth(GH_TOKEN)
            .json(&json!({ "name": name, "runner_group_id": 1, "labels": ["self-hosted", "linux"], "work_folder": "_work" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        github_calls += 1;
        let config = jit["encoded_jit_config"].as_str().expect("a JIT config");
        let user_data = format!(
            "#cloud-config\nruncmd:\n  - [sh, -c, './run.sh --jitconfig {config} && poweroff']\n"
        );
        let r = http
            .post(format!("{hz}/servers"))
            .bearer_auth(HZ_TOKEN)
            .json(&json!({
                "name": name, "server_type": "cx23", "image": "ubuntu-24.04", "location": "fsn1",
                "labels": { "mayfly": "scenario" }, "user_data": user_data,
            }))
            .send()
            .await
            .unwrap();
        hetzner_calls += 1;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }

    let stats = async || -> Value { get_json(&http, format!("{gh}/_sim/stats")).await };
    poll("20 completed jobs", async || {
        stats().await["jobs"]["completed"] == 20
    })
    .await;
    poll("20 servers off", async || {
        let servers: Value = http
            .get(format!(
                "{hz}/servers?label_selector=mayfly%3Dscenario&per_page=50"
            ))
            .bearer_auth(HZ_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        hetzner_calls += 1;
        let s = servers["servers"].as_array().unwrap();
        s.len() == 20 && s.iter().all(|x| x["status"] == "off")
    })
    .await;

    let s = stats().await;
    assert_eq!(s["jobs"]["succeeded"], 20, "{s:#}");
    let per_job = s["jobs"]["per_job"].as_array().unwrap();
    assert_eq!(per_job.len(), 20);
    // A runner boots 20-40 s after its server is running, so no job waited less than 20 s.
    assert!(
        per_job
            .iter()
            .all(|j| j["wait_secs"].as_f64().unwrap() >= 20.0),
        "{per_job:#?}"
    );
    assert_eq!(s["virtual_runners"]["registered"], 20);
    // Each server lived well under an hour (simulated): one hour each, powered-off time included.
    let total = s["billing"]["total"].as_f64().expect("a total");
    assert!(
        (total - 20.0 * price).abs() < 1e-9,
        "billed {total}, expected {}",
        20.0 * price
    );
    // Every call this test made, and nothing else, is in the statistics.
    assert_eq!(
        s["api_calls"]["github"], github_calls,
        "{:#}",
        s["api_calls"]
    );
    assert_eq!(
        s["api_calls"]["hetzner"], hetzner_calls,
        "{:#}",
        s["api_calls"]
    );
    let jit_calls = s["api_calls"]["by_endpoint"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["route"]
                .as_str()
                .is_some_and(|p| p.ends_with("generate-jitconfig"))
        })
        .map(|r| r["calls"].clone());
    assert_eq!(jit_calls, Some(json!(20)));
}
