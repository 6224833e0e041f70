//! `mayfly estimate` as a user runs it: a shipped trace as a table and as JSON, a config file
//! without tokens, a repository's history read from the fake GitHub (made by the real
//! controller in-process), and bad input named in the error.

mod support;

use mayfly::local::{self, Cadence};
use mayfly_core::Arch;
use mayfly_sim::github::NewJob;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const STEADY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/traces/steady-hour.csv"
);
const TOKEN: &str = "ghp_ESTIMATE_TEST_secret_0123456789";

/// `mayfly estimate ARGS` in `dir` with only `HOME=dir` and `env`: exit code, stdout, stderr.
fn estimate(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    support::output(support::mayfly(dir, env).arg("estimate").args(args))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

const POOLS: &str = r#"
[[pools]]
name = "x64"
provider = "hetzner"
labels = ["self-hosted", "linux", "x64"]
types = ["cx23"]
locations = ["fsn1"]
max = 20
"#;

#[test]
fn a_shipped_trace_prints_a_table_of_the_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = estimate(dir.path(), &["--trace", STEADY], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("mayfly estimate: 40 jobs from ") && out.contains("steady-hour.csv"),
        "{out}"
    );
    assert!(
        out.contains("pools (built in: no config file):\n  default [self-hosted, linux, x64]: cx23 in fsn1, 0.0048 EUR/h\n"),
        "{out}"
    );
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("* o") || l.starts_with("  o"))
        .collect();
    assert_eq!(rows.len(), 4, "recycling on/off x standby 0/1:\n{out}");
    assert!(rows[0].starts_with("* on      0 "), "{out}");
    // Beyond the first line (it names the trace file), the report fits 100 columns.
    assert!(
        out.lines().skip(1).all(|l| l.chars().count() <= 100),
        "{out}"
    );
}

#[test]
fn json_output_has_every_scenario_and_recycling_pays() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = estimate(
        dir.path(),
        &["--trace", STEADY, "--output", "json", "--standby", "2"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["trace"]["jobs"], 40);
    assert_eq!(v["currency"], "EUR");
    assert_eq!(v["model"]["boot_secs"], 40.0);
    let s = v["scenarios"].as_array().unwrap();
    assert_eq!(s.len(), 4);
    assert_eq!(s.iter().filter(|s| s["configured"] == true).count(), 1);
    for row in s {
        assert_eq!(row["served"], 40, "{row}");
        assert!(row["wait"]["p95"].as_f64().unwrap() <= 40.0, "{row}");
    }
    let cost = |recycling: bool, standby: u64| {
        s.iter()
            .find(|r| r["recycling"] == recycling && r["standby"][0] == standby)
            .map(|r| r["cost"].as_f64().unwrap())
            .unwrap()
    };
    assert!(cost(true, 0) < cost(false, 0) / 2.0, "{out}");
    assert!(cost(true, 2) > cost(true, 0), "standby costs");
}

#[test]
fn a_config_file_needs_no_tokens_and_sets_pools_and_recycling() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "m.toml",
        &format!("[recycling]\nenabled = false\n{POOLS}"),
    );
    let (code, out, err) = estimate(
        dir.path(),
        &[
            "-c",
            config.to_str().unwrap(),
            "--trace",
            STEADY,
            "--price",
            "cx23=1",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("  x64 [self-hosted, linux, x64]: cx23 in fsn1, 1.0000 EUR/h, max 20\n"),
        "{out}"
    );
    assert!(
        out.contains("* off     0 "),
        "the configured row is recycling off:\n{out}"
    );
    // Recycling off at 1 EUR/h: one hour billed per job.
    let off = out.lines().find(|l| l.starts_with("* off")).unwrap();
    assert!(off.contains(" 40.0000 "), "{off}");
}

#[test]
fn the_shipped_example_config_needs_none_of_its_variables() {
    // It takes its tokens from ${GITHUB_TOKEN} and ${HETZNER_TOKEN}: unset here.
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/mayfly.toml");
    let (code, out, err) = estimate(dir.path(), &["-c", example, "--trace", STEADY], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("  linux-x64 [self-hosted, linux, x64]: cx23 in fsn1"),
        "{out}"
    );
    assert!(
        out.contains("  linux-arm64 [self-hosted, linux, arm64]: cax21 in fsn1"),
        "{out}"
    );
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, _, err) = estimate(d, &["--trace", "nope.csv"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read the trace nope.csv"), "{err}");

    write(
        d,
        "bad.csv",
        "at,repo,labels,duration\n0,acme/app,x,60\nsoon,acme/app,x,60\n",
    );
    let (code, _, err) = estimate(d, &["--trace", "bad.csv"], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("bad.csv:3: at: expected seconds, found \"soon\""),
        "{err}"
    );

    // Values that once panicked (duration 1e20) or kept estimate busy for ever (at 1e15).
    for (row, says) in [
        (
            "0,acme/app,x,1e20",
            "bad.csv:2: duration must be a number of seconds from 0 to 604800",
        ),
        (
            "1e15,acme/app,x,60",
            "bad.csv:2: at must be a number of seconds from 0 to 34560000",
        ),
    ] {
        write(d, "bad.csv", &format!("at,repo,labels,duration\n{row}\n"));
        let (code, _, err) = estimate(d, &["--trace", "bad.csv"], &[]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(says), "{err}");
        let (code, _, err) =
            support::output(support::mayfly(d, &[]).args(["demo", "--trace", "bad.csv"]));
        assert_eq!(code, 1, "demo: {err}");
        assert!(err.contains(says), "demo: {err}");
    }

    let (code, _, err) = estimate(
        d,
        &["--from-github", "acme/app", "--since", "yesterday"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("'--since <DATE>'") && err.contains("2026-01-31"),
        "{err}"
    );

    let (code, _, err) = estimate(d, &["--trace", STEADY, "--price", "cx23"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("'--price <TYPE=EUR_PER_HOUR>'"), "{err}");

    let (code, _, err) = estimate(d, &["--trace", STEADY, "--boot", "soon"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--boot"), "{err}");

    let (code, _, err) = estimate(d, &["--trace", STEADY, "--since", "2026-01-31"], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("'--trace <FILE>' cannot be used with '--since <DATE>'"),
        "{err}"
    );

    let (code, _, err) = estimate(d, &[], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--trace") && err.contains("--from-github"),
        "{err}"
    );

    let config = write(d, "m.toml", &POOLS.replace("max = 20", "mx = 20"));
    let (code, _, err) = estimate(d, &["-c", config.to_str().unwrap(), "--trace", STEADY], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("pools[0].mx: unknown key; did you mean `max`?"),
        "{err}"
    );

    // A type without a list price.
    let config = write(d, "gpu.toml", &POOLS.replace("cx23", "gpu1"));
    let (code, _, err) = estimate(d, &["-c", config.to_str().unwrap(), "--trace", STEADY], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("pool x64") && err.contains("--price gpu1=EUR_PER_HOUR"),
        "{err}"
    );

    let (code, _, err) = estimate(
        d,
        &["--from-github", "acme/app", "--since", "2026-01-31"],
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("needs a GitHub token"), "{err}");
}

#[test]
fn the_token_stays_out_of_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: the request fails, and the error must not show the token.
    let config = write(
        dir.path(),
        "m.toml",
        &format!("[github]\napi_url = \"http://127.0.0.1:1\"\ntoken = \"{TOKEN}\"\n{POOLS}"),
    );
    let (code, out, err) = estimate(
        dir.path(),
        &[
            "-c",
            config.to_str().unwrap(),
            "--from-github",
            "acme/app",
            "--since",
            "2026-01-31",
            "--until",
            "2026-02-01",
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("cannot read the history of acme/app"), "{err}");
    assert!(!err.contains(TOKEN) && !out.contains(TOKEN), "{err}{out}");
}

fn iso(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).unwrap().to_string()
}

/// The real controller serves three jobs against the simulator; then `mayfly estimate` reads
/// them back from the fake GitHub's REST API and replays them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_github_replays_a_repositorys_history_from_the_fake() {
    let x64 = ["self-hosted", "linux", "x64"];
    let pools = local::pools(
        "mf",
        vec![local::pool("x64", &x64, &["cx23"], &["fsn1"], Arch::X86)],
        true,
    );
    let local = support::local::start(
        support::local::sim_config(100.0),
        pools,
        &["acme/app"],
        None,
    )
    .await;
    let sim = local.sim.clone();
    sim.github.set_config(|c| c.tokens.push(TOKEN.into()));
    let since = sim.clock.now_ms() - 1000;
    let job = |secs| NewJob {
        labels: x64.iter().map(|l| l.to_string()).collect(),
        duration: Duration::from_secs(secs),
    };
    sim.github.enqueue("acme/app", vec![job(60), job(60)]);
    sim.github.enqueue("acme/app", vec![job(30)]);
    let mut controller = local.controller;
    let cadence = Cadence {
        poll: Duration::from_secs(10),
        ..support::local::CADENCE
    };
    let done = || {
        let jobs = sim.github.jobs();
        jobs.len() == 3 && jobs.iter().all(|j| j.status == "completed")
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        controller.run(cadence, |_, _| done()),
    )
    .await
    .expect("the controller served the jobs within a minute");
    let until = sim.clock.now_ms() + 60_000;

    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "m.toml",
        &format!(
            "[github]\napi_url = \"http://{}\"\nrepositories = [\"acme/app\"]\n{POOLS}",
            local.at.github
        ),
    );
    let args: Vec<String> = [
        "-c",
        config.to_str().unwrap(),
        "--from-github",
        "acme/app",
        "--since",
        &iso(since),
        "--until",
        &iso(until),
        "--save-trace",
        "history.csv",
        "--output",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let path = dir.path().to_path_buf();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        estimate(&path, &args, &[("GITHUB_TOKEN", TOKEN)])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("acme/app: 2 completed runs") && err.contains("3 jobs"),
        "{err}"
    );
    assert!(!err.contains(TOKEN) && !out.contains(TOKEN));
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["trace"]["jobs"], 3);
    assert_eq!(v["trace"]["left_out_never_ran"], 0);
    for row in v["scenarios"].as_array().unwrap() {
        assert_eq!(row["served"], 3, "{row}");
    }

    // The saved trace replays the same jobs: 60, 60 and 30 s, as the fake ran them.
    let text = std::fs::read_to_string(dir.path().join("history.csv")).unwrap();
    let trace = mayfly_sim::trace::parse("history.csv", &text).unwrap();
    let mut durations: Vec<f64> = trace.iter().map(|j| j.duration).collect();
    durations.sort_by(f64::total_cmp);
    assert_eq!(durations.len(), 3);
    // Whole seconds on the wire, so within a second of the simulated durations.
    for (got, want) in durations.iter().zip([30.0, 60.0, 60.0]) {
        assert!((got - want).abs() <= 1.0, "{durations:?}");
    }
    assert!(
        trace
            .iter()
            .all(|j| j.labels == x64 && j.repo == "acme/app")
    );
}
