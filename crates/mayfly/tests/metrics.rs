//! `GET /metrics` of `mayfly run` as a process against `mayfly sim serve`: the whole metric
//! contract after a burst of jobs, and the values against what the simulator saw (servers
//! created and existing, jobs started and how long they waited, API calls answered); no secret
//! in it. Then the files that answer to the contract: docs/metrics.md and the Grafana dashboard.

mod support;

use mayfly_core::metrics::{self, CONTRACT, Kind, check_contract, sum};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::Daemon;
use support::sim::{
    GITHUB_TOKEN, HETZNER_TOKEN, LINUX_POOL, RunConfig, SimServe, fast_faults, request,
};

const HOOK_SECRET: &str = "metrics-hook-secret";
const X64: &[&str] = &["self-hosted", "linux", "x64"];
const JOBS: usize = 6;

fn scrape(addr: SocketAddr) -> String {
    let (status, body) = request(&addr.to_string(), "GET", "/metrics", None);
    assert_eq!(status, 200, "GET /metrics: {body}");
    body
}

/// Scrapes until `done` holds for the text, at most `limit`; the last text.
fn scrape_until(addr: SocketAddr, what: &str, limit: Duration, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        let text = scrape(addr);
        if done(&text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_for(sim: &SimServe, what: &str, limit: Duration, done: impl Fn(&SimServe) -> bool) {
    let deadline = Instant::now() + limit;
    while !done(sim) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn existing_servers(sim: &SimServe) -> usize {
    sim.servers()["servers"].as_array().map_or(0, Vec::len)
}

#[test]
fn a_burst_is_exported_under_the_contract_with_the_simulators_numbers() {
    let sim = SimServe::start(&[]);
    // Servers up in a second, runners a second later, off half a second after their job.
    sim.faults(fast_faults());
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("mayfly.toml");
    let text = sim.mayfly_config(&RunConfig {
        controller: "metrics",
        repos: &["acme/app".to_string()],
        webhook_secret: Some(HOOK_SECRET),
        registration: "20s",
        poll: "2s",
        poll_backstop: "6s",
        workers: 8,
        pools: LINUX_POOL,
    });
    // A pass at least every 2 s, so the world's gauges follow the simulator closely.
    let text = text.replacen(
        "reconcile = \"1s\"",
        "reconcile = \"1s\"\nresync = \"2s\"\nrunners = \"1s\"",
        1,
    );
    assert!(text.contains("resync"));
    std::fs::write(&config, text).expect("write the config");
    let mut daemon = Daemon::start(dir.path(), &config, &[]);
    let addr = daemon.listen_addr().expect("mayfly run started");
    sim.post(
        "webhooks",
        &json!({ "url": format!("http://{addr}/webhooks/github"), "secret": HOOK_SECRET }),
    );

    sim.enqueue("acme/app", X64, 15.0, JOBS as u32, 1);
    wait_for(&sim, "every job running", Duration::from_secs(30), |sim| {
        let jobs = sim.jobs();
        jobs.len() == JOBS && jobs.iter().all(|j| j["status"] == "in_progress")
    });
    // While they run, a pass sees every server: the gauge counts what the cloud has.
    let servers = existing_servers(&sim);
    assert_eq!(servers, JOBS);
    scrape_until(
        addr,
        "6 running instances and jobs",
        Duration::from_secs(10),
        |t| {
            sum(t, "mayfly_instances", &[("state", "running")]) == servers as f64
                && sum(t, "mayfly_jobs", &[("state", "in_progress")]) == JOBS as f64
                && sum(
                    t,
                    "mayfly_runners",
                    &[("state", "busy"), ("managed", "true")],
                ) == JOBS as f64
                && sum(t, "mayfly_cost_per_hour", &[]) > 0.0
        },
    );

    wait_for(&sim, "every job done", Duration::from_secs(60), |sim| {
        sim.jobs().iter().all(|j| j["status"] == "completed")
    });
    wait_for(&sim, "no server left", Duration::from_secs(30), |sim| {
        existing_servers(sim) == 0
    });
    scrape_until(
        addr,
        "the instances gauge at 0",
        Duration::from_secs(20),
        |t| sum(t, "mayfly_instances", &[]) == 0.0 && sum(t, "mayfly_jobs", &[]) == 0.0,
    );

    let before = sim.stats();
    let text = scrape(addr);
    let after = sim.stats();
    daemon.drain();
    if let Err(problems) = check_contract(&text) {
        panic!(
            "the metric contract:\n{}\n\n{text}\n\n{}",
            problems.join("\n"),
            daemon.log()
        );
    }

    let bill = before["billing"]["servers"].as_array().map_or(0, Vec::len);
    assert_eq!(bill, JOBS, "one server per job");
    let at = |name: &str, labels: &[(&str, &str)]| sum(&text, name, labels);
    let ok = [("outcome", "ok")];
    assert_eq!(at("mayfly_instance_creates_total", &ok), bill as f64);
    assert_eq!(at("mayfly_instance_deletes_total", &ok), bill as f64);
    assert_eq!(
        at("mayfly_instance_creates_total", &[("pool", "linux")]),
        bill as f64
    );
    assert_eq!(at("mayfly_cost_per_hour", &[]), 0.0, "nothing lives");

    // Every job started once; GitHub's timestamps have whole seconds.
    let waits = &before["jobs"]["per_job"];
    let waited: f64 = waits
        .as_array()
        .expect("per-job waits")
        .iter()
        .map(|j| j["wait_secs"].as_f64().expect("seconds"))
        .sum();
    assert_eq!(at("mayfly_job_queue_wait_seconds_count", &[]), JOBS as f64);
    let measured = at("mayfly_job_queue_wait_seconds_sum", &[]);
    assert!(
        (measured - waited).abs() <= JOBS as f64,
        "queue waits: mayfly {measured} s, the simulator {waited} s"
    );

    // Every call the simulator answered, mayfly counted; a poll may fall between the reads.
    for api in ["github", "hetzner"] {
        let counted = at(metrics::API_CALLS, &[("api", api)]);
        let (low, high) = (
            before["api_calls"][api].as_f64().expect("calls"),
            after["api_calls"][api].as_f64().expect("calls"),
        );
        assert!(
            low <= counted && counted <= high,
            "{api}: mayfly counted {counted} calls, the simulator answered {low}..{high}"
        );
        let budget = at(metrics::API_RATE_LIMIT_REMAINING, &[("api", api)]);
        assert!(budget > 0.0, "{api}: the rate-limit budget is reported");
    }
    assert!(at("mayfly_webhook_deliveries_total", &[("outcome", "stored")]) >= JOBS as f64);
    assert_eq!(
        at("mayfly_reconcile_passes_total", &[("outcome", "failed")]),
        0.0
    );
    assert!(at("mayfly_reconcile_passes_total", &ok) > 0.0);
    assert_eq!(
        at(
            "mayfly_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    for secret in [GITHUB_TOKEN, HETZNER_TOKEN, HOOK_SECRET] {
        assert!(!text.contains(secret), "a secret in /metrics");
    }
    assert_eq!(daemon.stop().map(|s| s.success()), Some(true));
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// docs/metrics.md holds the contract's table as generated from it: a renamed or added
/// metric fails here until the doc says so too.
#[test]
fn the_doc_lists_the_contract() {
    let doc = std::fs::read_to_string(repo_file("docs/metrics.md")).expect("docs/metrics.md");
    let (begin, end) = ("<!-- contract:begin -->\n", "<!-- contract:end -->");
    let start = doc.find(begin).expect("the contract's begin marker") + begin.len();
    let stop = doc[start..].find(end).expect("the contract's end marker") + start;
    let table = metrics::markdown();
    assert!(
        doc[start..stop] == table,
        "docs/metrics.md's table differs from the contract; put this between the markers:\n{table}"
    );
}

/// The metric names a PromQL expression uses: `mayfly_` identifiers, a histogram's
/// `_bucket`, `_sum` and `_count` read as the histogram.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("mayfly_") {
        let word: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + word.len()..];
        let histogram = ["_bucket", "_sum", "_count"].iter().find_map(|s| {
            let base = word.strip_suffix(s)?;
            metrics::metric(base).filter(|m| m.kind == Kind::Histogram)?;
            Some(base.to_string())
        });
        names.insert(histogram.unwrap_or(word));
    }
    names
}

/// Every expression of the dashboard.
fn expressions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query", Value::String(e)) => out.push(e.clone()),
                    _ => expressions(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

/// The dashboard imports into Grafana (a Prometheus data source input, a schema version), and
/// every expression reads metrics of the contract only: a rename breaks this test, not the
/// operator's dashboard.
#[test]
fn the_grafana_dashboard_reads_the_contract() {
    let path = repo_file("examples/grafana/mayfly.json");
    let text = std::fs::read_to_string(&path).expect("examples/grafana/mayfly.json");
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    assert_eq!(dash["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(dash["__inputs"][0]["pluginId"], "prometheus");
    let panels = dash["panels"].as_array().expect("panels");
    let mut used = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "{title}: the data source is the import's input"
        );
        let mut exprs = Vec::new();
        expressions(&panel["targets"], &mut exprs);
        assert!(!exprs.is_empty(), "{title}: no query");
        for e in exprs {
            let names = metrics_in(&e);
            assert!(!names.is_empty(), "{title}: {e} reads no mayfly metric");
            for n in names {
                assert!(
                    metrics::metric(&n).is_some(),
                    "{title}: {n} is not in the contract ({e})"
                );
                used.insert(n);
            }
        }
    }
    // Every metric an operator watches has a panel (build info is a label, not a graph).
    let unused: Vec<&str> = CONTRACT
        .iter()
        .map(|m| m.name)
        .filter(|n| !used.contains(*n) && *n != "mayfly_build_info")
        .collect();
    assert!(unused.is_empty(), "no panel shows {unused:?}");
}

#[test]
fn expressions_are_read_for_metric_names() {
    let names = metrics_in(
        "histogram_quantile(0.95, sum by (le) (rate(mayfly_job_queue_wait_seconds_bucket[5m]))) \
         / on() mayfly_jobs{state=\"queued\"} + mayfly_not_a_metric_count",
    );
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "mayfly_job_queue_wait_seconds",
            "mayfly_jobs",
            "mayfly_not_a_metric_count"
        ]
    );
}
