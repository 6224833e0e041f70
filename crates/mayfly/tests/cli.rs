//! The binary as a user runs it: help, `config check` on files, environment and flags, the
//! shipped example, and `mayfly run` stopping cleanly on SIGTERM.

mod support;

use std::path::{Path, PathBuf};
use support::{Daemon, mayfly, output};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

const TOKENS: [(&str, &str); 3] = [
    ("GITHUB_TOKEN", "ghp_DUMMY_gh"),
    ("HETZNER_TOKEN", "hz_DUMMY_hz"),
    ("GITHUB_REPOSITORY", "acme/app"),
];

#[test]
fn help_reads_well_and_names_the_variables() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, out, _) = output(mayfly(dir.path(), &[]).arg("--help"));
    assert_eq!(code, 0);
    for needle in [
        "Autoscales single-use",
        "MAYFLY_CONFIG",
        "MAYFLY_STATE",
        "MAYFLY_LISTEN",
        "MAYFLY_LOG_LEVEL",
        "run",
        "config",
    ] {
        assert!(out.contains(needle), "--help lacks {needle:?}:\n{out}");
    }
    let (code, out, _) = output(mayfly(dir.path(), &[]).args(["config", "check", "--help"]));
    assert_eq!(code, 0);
    assert!(out.contains("secrets redacted"), "{out}");
    let (code, out, _) = output(mayfly(dir.path(), &[]).arg("--version"));
    assert_eq!(
        (code, out.trim()),
        (0, concat!("mayfly ", env!("CARGO_PKG_VERSION")))
    );
}

#[test]
fn the_example_checks_and_is_redacted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mayfly.toml");
    let (code, out, err) = output(
        mayfly(dir.path(), &TOKENS)
            .arg("config")
            .arg("check")
            .arg("-c")
            .arg(&example),
    );
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("name = \"linux-arm64\""), "{out}");
    assert!(out.contains("token = \"<redacted>\""), "{out}");
    assert!(!format!("{out}{err}").contains("DUMMY"), "{out}{err}");
}

#[test]
fn without_a_file_the_environment_is_enough() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, out, err) = output(mayfly(dir.path(), &TOKENS).args(["config", "check"]));
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("no file"), "{out}");
    assert!(
        out.contains("name = \"default\"") && out.contains("types = [\"cx23\"]"),
        "{out}"
    );
    assert!(out.contains("repositories = [\"acme/app\"]"), "{out}");
    assert!(!out.contains("DUMMY"), "{out}");
}

#[test]
fn invalid_files_exit_2_with_position_key_and_hint() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "mayfly.toml",
        "[[pools]]\nname = \"a\"\nprovider = \"hetzner\"\nlabels = [\"x\"]\nmx = 3\n",
    );
    let (code, out, err) = output(mayfly(dir.path(), &TOKENS).args(["config", "check"]));
    assert_eq!(code, 2);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("mayfly.toml:5:1: pools[0].mx: unknown key; did you mean `max`?"),
        "{err}"
    );

    let (code, _, err) =
        output(mayfly(dir.path(), &TOKENS).args(["config", "check", "-c", "missing.toml"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("missing.toml: cannot read the config file"),
        "{err}"
    );
}

#[test]
fn flags_beat_mayfly_variables_beat_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "m.toml",
        "listen = \"127.0.0.1:1111\"\nlog_level = \"warn\"\n",
    );
    let env = [TOKENS.as_slice(), &[("MAYFLY_CONFIG", "m.toml")]].concat();
    let (_, out, err) = output(mayfly(dir.path(), &env).args(["config", "check"]));
    assert!(
        out.contains("listen = \"127.0.0.1:1111\"") && out.contains("log_level = \"warn\""),
        "{out}{err}"
    );

    let env = [
        env.as_slice(),
        &[("MAYFLY_LISTEN", "127.0.0.1:2222"), ("RUST_LOG", "debug")],
    ]
    .concat();
    let (_, out, _) = output(mayfly(dir.path(), &env).args(["config", "check"]));
    assert!(
        out.contains("listen = \"127.0.0.1:2222\"") && out.contains("log_level = \"debug\""),
        "{out}"
    );

    let (_, out, _) = output(mayfly(dir.path(), &env).args([
        "--listen",
        "127.0.0.1:3333",
        "config",
        "check",
        "--log-level",
        "trace",
    ]));
    assert!(
        out.contains("listen = \"127.0.0.1:3333\"") && out.contains("log_level = \"trace\""),
        "{out}"
    );
}

#[test]
fn secrets_stay_out_of_output_and_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [
        TOKENS.as_slice(),
        &[
            ("HOOK", "hook_DUMMY_hook"),
            ("MAYFLY_STATE", "postgres://m:pg_DUMMY_pg@db/m"),
        ],
    ]
    .concat();
    write(
        dir.path(),
        "mayfly.toml",
        "[github]\nwebhook_secret = \"${HOOK}\"\ntoken = \"file_DUMMY_file\"\n",
    );
    let (code, out, err) = output(mayfly(dir.path(), &env).args(["config", "check"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("state = \"postgres://m:<redacted>@db/m\""),
        "{out}"
    );
    assert!(!format!("{out}{err}").contains("DUMMY"), "{out}{err}");

    let (code, out, err) = output(mayfly(dir.path(), &env).args([
        "config",
        "check",
        "--state",
        "mysql://r:pw_DUMMY@x/y",
    ]));
    assert_eq!(code, 2);
    assert!(
        err.contains("--state/MAYFLY_STATE: state: unsupported scheme"),
        "{err}"
    );
    assert!(!format!("{out}{err}").contains("DUMMY"), "{out}{err}");

    write(
        dir.path(),
        "mayfly.toml",
        "[limits]\nmax_instances = \"${HOOK}\"\n",
    );
    let (code, out, err) = output(mayfly(dir.path(), &env).args(["config", "check"]));
    assert_eq!(code, 2);
    assert!(err.contains("mayfly.toml:2:17: limits.max_instances: expected an integer from 0 to 4294967295, found a string"), "{err}");
    assert!(!format!("{out}{err}").contains("DUMMY"), "{out}{err}");

    // The help text must not show the value of MAYFLY_STATE either.
    let (_, out, _) = output(mayfly(dir.path(), &env).arg("--help"));
    assert!(!out.contains("DUMMY"), "{out}");
}

#[test]
fn run_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        // The poller asks a local port nobody listens on: a test never calls the real GitHub.
        "state_dir = {:?}\n[intervals]\nreconcile = \"1s\"\n[github]\napi_url = \"http://127.0.0.1:9\"\n",
        dir.path().join("state").to_str().expect("utf-8 temp path")
    );
    let config = write(dir.path(), "mayfly.toml", &config);
    let mut daemon = Daemon::start(dir.path(), &config, &TOKENS);

    let passed = daemon.wait_for(&["reconcile pass"]).is_some();
    assert!(passed, "no reconcile pass logged:\n{}", daemon.log());
    assert!(
        daemon.seen.iter().any(|l| l.contains("started")),
        "{}",
        daemon.log()
    );
    let status = daemon.stop();
    let log = daemon.log();
    assert!(
        status.is_some_and(|s| s.success()),
        "did not stop cleanly within 20 s of SIGTERM ({status:?}):\n{log}"
    );
    assert!(log.contains("stopped"), "no \"stopped\" line:\n{log}");
    assert!(
        dir.path().join("state/mayfly.db").exists(),
        "the SQLite store was not created"
    );
}

#[test]
fn run_never_logs_the_database_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [
        TOKENS.as_slice(),
        &[("MAYFLY_STATE", "postgres://m:pg_DUMMY_pg@127.0.0.1:1/m")],
    ]
    .concat();
    let (code, out, err) = output(mayfly(dir.path(), &env).args(["--log-level", "debug", "run"]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("127.0.0.1:1"),
        "the error names the server: {err}"
    );
    assert!(!format!("{out}{err}").contains("DUMMY"), "{out}{err}");
}

#[test]
fn demo_help_lists_only_what_the_demo_reads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, out, _) = output(mayfly(dir.path(), &[]).args(["demo", "--help"]));
    assert_eq!(code, 0);
    for absent in ["--config", "-c,", "--state", "--listen", "MAYFLY_STATE"] {
        assert!(!out.contains(absent), "demo --help lists {absent}:\n{out}");
    }
    for present in ["--speed", "--trace", "--recycling", "--log-level"] {
        assert!(out.contains(present), "demo --help lacks {present}:\n{out}");
    }
    let (code, _, err) = output(mayfly(dir.path(), &[]).args(["demo", "--state", "x.db"]));
    assert_eq!(code, 1);
    assert!(err.contains("--state does not apply to the demo"), "{err}");
}

#[test]
fn demo_says_why_powered_off_servers_stay_and_skips_their_wait() {
    let dir = tempfile::tempdir().expect("temp dir");
    let trace = write(
        dir.path(),
        "small.csv",
        "at,repo,labels,duration\n0,acme/app,self-hosted;linux;x64,60\n",
    );
    let (code, out, err) = output(
        mayfly(dir.path(), &[])
            .args(["demo", "--speed", "100", "--compare", "false", "--trace"])
            .arg(&trace),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("paid until") && out.contains("reused if a job comes"),
        "{out}"
    );
    // The quiet stretch is jumped over, and the report's simulated time still counts it.
    assert!(out.contains("fast-forward to"), "{out}");
    assert!(
        out.contains("report (5"),
        "the paid hour's end is near 60:00:\n{out}"
    );
    assert!(
        !out.contains("neither"),
        "--compare false runs no comparison:\n{out}"
    );
}

/// `--forge both`: the trace's repositories go to GitHub and GitLab in turn, and one controller
/// serves both, each job on a server of its own, nothing left.
#[test]
fn demo_serves_github_and_gitlab_jobs_in_one_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let trace = write(
        dir.path(),
        "two.csv",
        "at,repo,labels,duration\n\
         0,acme/app,self-hosted;linux;x64,60\n\
         5,acme/web,self-hosted;linux;x64,45\n",
    );
    let (code, out, err) = output(
        mayfly(dir.path(), &[])
            .args([
                "demo",
                "--speed",
                "200",
                "--recycling",
                "false",
                "--compare",
                "false",
            ])
            .args(["--forge", "both", "--trace"])
            .arg(&trace),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    for line in [
        "(1 GitHub, 1 GitLab)",
        "jobs served          2/2",
        "GitLab API calls",
        "servers created      2",
        "servers left         0",
        "ok: every job was served",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

#[test]
fn demo_serves_every_job_leaves_no_server_and_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let trace = write(
        dir.path(),
        "small.csv",
        "at,repo,labels,duration\n\
         0,acme/app,self-hosted;linux;x64,60\n\
         5,acme/app,self-hosted;linux;arm64,45\n\
         10,acme/web,self-hosted;linux;x64;type-cpx22,30\n",
    );
    let (code, out, err) = output(
        mayfly(dir.path(), &[])
            .args(["demo", "--speed", "200", "--recycling", "false", "--trace"])
            .arg(&trace),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    for line in [
        "jobs served          3/3",
        "servers left         0",
        "ok: every job was served",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(
        out.contains("GitHub API calls") && out.contains("per job"),
        "{out}"
    );
    // What the run did, in its own words: the file it read, and no reuse with recycling off.
    assert!(
        out.contains(&format!("3 jobs from {}", trace.display())),
        "{out}"
    );
    assert!(
        out.contains("recycling is off, so none was reused") && !out.contains("reused paid-for"),
        "{out}"
    );
    // Free 304s apart from the calls that cost budget; the two other runs side by side.
    assert!(
        out.contains("that count against the rate limit") && out.contains("answered 304"),
        "{out}"
    );
    let table = out
        .lines()
        .find(|l| l.contains("no recycling") && l.contains("neither"))
        .unwrap_or_else(|| panic!("no side-by-side header in:\n{out}"));
    assert!(
        table.contains("recycling, webhooks") || table.contains("no webhooks"),
        "{table}"
    );
    let served = out
        .lines()
        .find(|l| l.trim_start().starts_with("jobs served") && l.matches("3/3").count() == 3)
        .is_some();
    assert!(served, "every run served the three jobs:\n{out}");

    let bad = write(
        dir.path(),
        "bad.csv",
        "at,repo,labels,duration\nsoon,acme/app,x,1\n",
    );
    let (code, _, err) = output(mayfly(dir.path(), &[]).args(["demo", "--trace"]).arg(&bad));
    assert_eq!(code, 1);
    assert!(err.contains("bad.csv:2: at: expected seconds"), "{err}");
}
