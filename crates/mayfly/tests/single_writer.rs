//! One writer per SQLite state, as processes: a second `mayfly run` on the same file exits at
//! once with a message naming the first; `mayfly delete` that finds no daemon at its address
//! refuses to act on its own while the daemon holds the state; `mayfly events` reads the trail
//! with the daemon down. Against `mayfly sim serve`.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::Daemon;
use support::sim::{LINUX_POOL, RunConfig, SimServe, fast_faults};

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `mayfly ARGS` to its end, at most 60 s: exit code, stdout, stderr.
fn run(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let child = support::mayfly(dir, &[])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mayfly");
    let start = Instant::now();
    let out = child.wait_with_output().expect("wait for mayfly");
    assert!(start.elapsed() < Duration::from_secs(60));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_sqlite_state_has_one_writer() {
    let sim = SimServe::start(&[]);
    sim.faults(fast_faults());
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("mayfly.toml");
    let text = sim.mayfly_config(&RunConfig {
        controller: "solo",
        repos: &["acme/app".to_string()],
        webhook_secret: None,
        registration: "20s",
        poll: "1s",
        poll_backstop: "5s",
        workers: 2,
        pools: LINUX_POOL,
    });
    std::fs::write(&config, text).expect("write the config");
    let config = config.to_str().unwrap().to_string();
    let mut first = Daemon::start(dir.path(), config.as_ref(), &[]);
    first
        .listen_addr()
        .unwrap_or_else(|| panic!("the first mayfly run did not start:\n{}", first.log()));
    // A job, so that the trail has something in it.
    sim.enqueue("acme/app", &["self-hosted", "linux", "x64"], 1.0, 1, 1);

    // The second one: refused at start, whatever address it listens on.
    let second = dir.path().join("second.log");
    let started = Instant::now();
    let (code, _, err) = run(
        dir.path(),
        &["--listen", "127.0.0.1:0", "run", "-c", &config],
    );
    std::fs::write(&second, &err).unwrap();
    assert_ne!(code, 0, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "refused at once"
    );
    assert!(
        err.contains("is in use by another mayfly")
            && err.contains(&format!("(pid {})", first.pid())),
        "{err}"
    );
    assert!(
        err.contains("use PostgreSQL to run several replicas"),
        "{err}"
    );

    // `mayfly delete` pointed at an address where no daemon answers reads the world itself,
    // then finds the state held: it deletes nothing on its own.
    let nowhere = free_port().to_string();
    let (code, out, err) = run(
        dir.path(),
        &[
            "--listen", &nowhere, "-c", &config, "delete", "--all", "--yes",
        ],
    );
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "a running mayfly (pid {}) holds this state",
            first.pid()
        )),
        "{err}"
    );
    assert!(err.contains("deletes go through its API"), "{err}");
    assert!(!out.contains("deleted"), "{out}");

    // With the daemon stopped: the trail is read from the state itself.
    let wait = Instant::now() + Duration::from_secs(60);
    while !first.seen.iter().any(|l| l.contains("done action=create")) && Instant::now() < wait {
        let _ = first.wait_for(&["done action=create"]);
    }
    assert!(first.stop().is_some_and(|s| s.success()), "{}", first.log());
    let (code, out, err) = run(
        dir.path(),
        &[
            "--listen", &nowhere, "-c", &config, "events", "--kind", "create", "-o", "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let events: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let events = events.as_array().unwrap();
    assert!(!events.is_empty(), "{out}\n{}", first.log());
    assert!(events.iter().all(|e| e["kind"] == "create"), "{out}");
    // The table, and a bad flag named.
    let (code, out, _) = run(dir.path(), &["--listen", &nowhere, "-c", &config, "events"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("AT"), "{out}");
    let (code, _, err) = run(
        dir.path(),
        &[
            "--listen", &nowhere, "-c", &config, "events", "--since", "soon",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("--since soon: expected a duration"), "{err}");
}
