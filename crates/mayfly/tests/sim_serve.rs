//! `mayfly sim serve` as a script uses it: the first line of output is JSON with the addresses,
//! both fakes and the control API answer there, bad flags fail clearly, SIGTERM stops it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mayfly");

/// A minimal HTTP/1.1 GET (the test needs no client library): status line and body.
fn get(addr: &str, path: &str, token: Option<&str>) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
    let status = response.lines().next().unwrap_or("").to_string();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn host_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn serve_prints_its_addresses_first_and_stops_on_sigterm() {
    let mut child = Command::new(BIN)
        .args([
            "sim",
            "serve",
            "--github-addr",
            "127.0.0.1:0",
            "--hetzner-addr",
            "127.0.0.1:0",
            "--speed",
            "10",
        ])
        .env_clear()
        .env("MAYFLY_SIM_HETZNER_TOKEN", "hz-secret")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mayfly sim serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first);
        let _ = tx.send(first);
    });
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a first line within 20 s");
    let addrs: serde_json::Value = serde_json::from_str(&first).expect("the first line is JSON");
    let github = addrs["github"].as_str().expect("github address");
    let hetzner = addrs["hetzner"].as_str().expect("hetzner address");
    assert!(
        addrs["control"]
            .as_str()
            .is_some_and(|c| c.ends_with("/_sim")),
        "{first}"
    );
    assert!(hetzner.ends_with("/v1"), "{first}");

    let (status, body) = get(&host_of(github), "/_sim/stats", None);
    assert!(status.contains("200"), "{status} {body}");
    assert!(body.contains("api_calls"), "{body}");
    let (status, body) = get(&host_of(hetzner), "/v1/server_types", Some("hz-secret"));
    assert!(status.contains("200"), "{status} {body}");
    assert!(body.contains("cx23"), "{body}");
    let (status, _) = get(&host_of(hetzner), "/v1/servers", Some("wrong"));
    assert!(status.contains("401"), "{status}");

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "mayfly sim serve did not stop within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn bad_flags_and_traces_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let huge = dir.path().join("huge.csv");
    std::fs::write(&huge, "at,repo,labels,duration\n0,acme/app,linux,1e20\n").expect("write");
    let trace = dir.path().join("t.csv");
    std::fs::write(&trace, "at,repo,labels,duration\n0,acme/app,linux,sixty\n").expect("write");
    for (args, needle) in [
        (vec!["--speed", "0"], "--speed".to_string()),
        (vec!["--webhook", "ftp://x"], "--webhook".to_string()),
        (
            vec!["--trace", trace.to_str().expect("utf-8")],
            format!("{}:2: duration", trace.display()),
        ),
        (
            vec!["--trace", huge.to_str().expect("utf-8")],
            format!(
                "{}:2: duration must be a number of seconds from 0 to",
                huge.display()
            ),
        ),
    ] {
        let out = Command::new(BIN)
            .args(["sim", "serve"])
            .args(&args)
            .env_clear()
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&needle), "{args:?}: {err}");
    }
}
