//! The public port under a flood: `mayfly run` with 1,024 file descriptors and 1,100 connections
//! that send half a request and hold on. Webhooks, `/healthz` and the creates they lead to keep
//! working: the connection cap sits below the descriptor limit, and at the cap the connection
//! that waited longest without a request is closed to make room. The header deadline is set to
//! five minutes here, so that nothing but the cap can save the port.

mod support;

use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::Daemon;
use support::sim::{LINUX_POOL, RunConfig, SimServe, fast_faults, request};

const HOOK_SECRET: &str = "port-hook-secret";
const FLOOD: usize = 1_100;
const FILES: u64 = 1_024;

/// The open descriptors of process `pid`.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Raises this test process's own limit: it holds the flood's 1,100 sockets.
fn room_for_the_flood() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let want = (FLOOD as u64) * 2 + 256;
    if now.current.is_some_and(|c| c >= want) {
        return;
    }
    let raised = Rlimit {
        current: Some(now.maximum.map_or(want, |hard| hard.min(want))),
        maximum: now.maximum,
    };
    setrlimit(Resource::Nofile, raised).expect("raise this test's open files limit");
    let got = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    assert!(
        got >= want,
        "this test needs {want} open files; the hard limit allows {got}"
    );
}

#[test]
fn a_half_open_flood_leaves_webhooks_healthz_and_creates_working() {
    room_for_the_flood();
    let sim = SimServe::start(&[]);
    sim.faults(fast_faults());
    let dir = tempfile::tempdir().expect("temp dir");
    let repos = ["acme/app".to_string()];
    let run = RunConfig {
        controller: "port",
        repos: &repos,
        workers: 4,
        webhook_secret: Some(HOOK_SECRET),
        registration: "30s",
        // Jobs reach mayfly by webhook only.
        poll: "1h",
        poll_backstop: "1h",
        pools: LINUX_POOL,
    };
    let config = format!(
        "{}\n[http]\nheader_timeout = \"5m\"\n",
        sim.mayfly_config(&run)
    );
    let path = dir.path().join("mayfly.toml");
    std::fs::write(&path, config).expect("write the config");
    let mut daemon = Daemon::start_with_file_limit(dir.path(), &path, &[], FILES);
    let addr: SocketAddr = daemon
        .listen_addr()
        .unwrap_or_else(|| panic!("mayfly run did not start:\n{}", daemon.log()));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid())).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 1024 ")),
        "{limits}"
    );

    // The flood: each connection sends half a request and holds on.
    let started = Instant::now();
    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        let _ = s.write_all(b"POST /webhooks/github HTTP/1.1\r\nHost: mayfly\r\nContent-Le");
        flood.push(s);
    }
    println!("{FLOOD} half-open connections in {:?}", started.elapsed());
    std::thread::sleep(Duration::from_secs(1));
    let held = open_files(daemon.pid());
    println!("mayfly holds {held} descriptors under a limit of {FILES}");
    assert!(
        held < FILES as usize - 200,
        "{held} descriptors: the cap did not hold"
    );

    // /healthz answers, on a new connection, while the flood holds on.
    let t = Instant::now();
    let (status, body) = request(&addr.to_string(), "GET", "/healthz", None);
    assert_eq!((status, body.as_str()), (200, "ok"));
    println!("/healthz answered in {:?} during the flood", t.elapsed());

    // A job announced by webhook gets a machine (creates need descriptors too) and runs.
    sim.post(
        "webhooks",
        &json!({ "url": format!("http://{addr}/webhooks/github"), "secret": HOOK_SECRET }),
    );
    let ids = sim.enqueue("acme/app", &["self-hosted", "linux", "x64"], 2.0, 1, 3);
    assert_eq!(ids.len(), 3);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let done = sim
            .jobs()
            .iter()
            .filter(|j| j["status"] == "completed")
            .count();
        if done == ids.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "jobs not served during the flood ({done} of 3):\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    daemon.drain();
    let log = daemon.log();
    assert!(
        log.contains("webhook stored"),
        "the jobs came by webhook:\n{log}"
    );
    assert!(
        !log.contains("Too many open files"),
        "mayfly ran out of descriptors:\n{log}"
    );
    assert!(log.contains("connection closed to make room"), "{log}");

    // The oldest half-open connections were the ones closed.
    let mut closed = 0;
    for s in flood.iter_mut().take(100) {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut buf = [0u8; 16];
        if matches!(s.read(&mut buf), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert!(closed > 90, "{closed} of the first 100 were closed");
    drop(flood);
    let status = daemon.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        daemon.log()
    );
}
