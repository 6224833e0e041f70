//! What open dashboards cost the controller: the 500-job burst of `benches/burst.rs` (`mayfly
//! run` against `mayfly sim serve` at speed 1) twice, once with no dashboard open and once with
//! twenty signed-in event streams reading every pass, and the controller's peak RSS
//! (`/proc/<pid>/status` every 100 ms) and pass latency (`mayfly_reconcile_duration_seconds`
//! from `/metrics`) of each. Target: with streams, both within 10 % of without.
//! Run with `cargo bench -p mayfly --bench dashboard_streams` (`--profile dev` reuses the test
//! build). Asserts only that every job was served and that every stream got passes.

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::sim::{LINUX_POOL, RunConfig, SimServe};

const HOOK_SECRET: &str = "bench-hook-secret";
const REPOS: usize = 10;
const STREAMS: usize = 20;
const X64: &[&str] = &["self-hosted", "linux", "x64"];

fn rss_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One HTTP/1.1 request on a new connection; the whole answer (status line, headers, body).
fn request(addr: &str, text: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to mayfly run");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(text.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The pass histogram from `/metrics`: (count, sum of seconds, cumulative buckets).
fn passes(addr: &str) -> (f64, f64, Vec<(f64, f64)>) {
    let text = request(
        addr,
        &format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    let mut count = 0.0;
    let mut sum = 0.0;
    let mut buckets = Vec::new();
    for line in text.lines() {
        let value = || {
            line.rsplit_once(' ')
                .and_then(|(_, v)| v.parse::<f64>().ok())
        };
        if line.starts_with("mayfly_reconcile_duration_seconds_count") {
            count = value().unwrap_or(0.0);
        } else if line.starts_with("mayfly_reconcile_duration_seconds_sum") {
            sum = value().unwrap_or(0.0);
        } else if let Some(rest) =
            line.strip_prefix("mayfly_reconcile_duration_seconds_bucket{le=\"")
        {
            let le = rest.split('"').next().unwrap_or("+Inf");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::INFINITY)
            };
            buckets.push((le, value().unwrap_or(0.0)));
        }
    }
    (count, sum, buckets)
}

struct Figures {
    rss_peak_mb: f64,
    passes: f64,
    pass_mean_ms: f64,
    pass_p95_ms: f64,
    events: u64,
    wall: Duration,
}

fn burst(streams: usize) -> Figures {
    let sim = SimServe::start(&[]);
    sim.faults(json!({
        "runners": { "boot_delay": { "kind": "fixed", "secs": 1 } },
        "hetzner": {
            "boot_delay_secs": 1, "shutdown_delay_secs": 0.5, "action_delay_secs": 1,
            "server_quota": 2000,
        },
        "github": { "writes_per_minute": 100000 },
    }));
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("mayfly.toml");
    let repos: Vec<String> = (0..REPOS).map(|i| format!("acme/repo{i}")).collect();
    let text = sim.mayfly_config(&RunConfig {
        controller: "bench",
        repos: &repos,
        webhook_secret: Some(HOOK_SECRET),
        registration: "30s",
        poll: "60s",
        poll_backstop: "5m",
        workers: 16,
        pools: LINUX_POOL,
    });
    std::fs::write(&config, text).expect("write the config");
    let mut run = support::Daemon::start_at("info", dir.path(), &config, &[]);
    let addr = run
        .listen_addr()
        .expect("mayfly run did not start")
        .to_string();
    sim.post(
        "webhooks",
        &json!({ "url": format!("http://{addr}/webhooks/github"), "secret": HOOK_SECRET }),
    );
    let pid = run.pid();
    std::thread::sleep(Duration::from_secs(2));

    // Sign in once with the token the daemon wrote, then open the streams.
    let token = std::fs::read_to_string(dir.path().join("state/api.token"))
        .expect("the API token mayfly run wrote")
        .trim()
        .to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    if streams > 0 {
        let body = format!("token={token}");
        let answer = request(
            &addr,
            &format!(
                "POST /signin HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        );
        let cookie = answer
            .lines()
            .find_map(|l| l.strip_prefix("set-cookie: "))
            .and_then(|c| c.split(';').next())
            .expect("a session cookie")
            .to_string();
        for _ in 0..streams {
            let (addr, cookie, stop, events) =
                (addr.clone(), cookie.clone(), stop.clone(), events.clone());
            readers.push(std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).expect("connect");
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let req = format!(
                    "GET /dashboard/stream HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n"
                );
                s.write_all(req.as_bytes()).unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                let mut tail = String::new();
                while !stop.load(Ordering::Relaxed) {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            tail.push_str(&String::from_utf8_lossy(&buf[..n]));
                            let seen = tail.matches("event: pass").count() as u64;
                            events.fetch_add(seen, Ordering::Relaxed);
                            // Keep what may be the start of the next marker.
                            let keep = tail.len().saturating_sub(16);
                            let cut = (keep..=tail.len())
                                .find(|i| tail.is_char_boundary(*i))
                                .unwrap_or(tail.len());
                            tail.drain(..cut);
                        }
                        Err(_) => continue,
                    }
                }
            }));
        }
        std::thread::sleep(Duration::from_secs(1));
    }

    let before = passes(&addr);
    let t0 = Instant::now();
    let sampling = Arc::new(AtomicBool::new(false));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !sampling.load(Ordering::Relaxed) {
                peak = peak.max(rss_kb(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        })
    };
    for r in &repos {
        sim.enqueue(r, X64, 15.0, 5, 10);
    }
    let n = REPOS * 50;
    let limit = Duration::from_secs(180);
    loop {
        let live = sim.servers()["servers"].as_array().map_or(0, Vec::len);
        let jobs = sim.jobs();
        if live == 0 && jobs.len() == n && jobs.iter().all(|j| j["status"] == "completed") {
            break;
        }
        assert!(
            t0.elapsed() < limit,
            "the burst did not settle within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let wall = t0.elapsed();
    sampling.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let after = passes(&addr);
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.join();
    }
    run.stop();

    let count = after.0 - before.0;
    let p95 = {
        let target = 0.95 * count;
        after
            .2
            .iter()
            .zip(before.2.iter().map(|b| b.1).chain(std::iter::repeat(0.0)))
            .find(|((_, a), b)| a - b >= target)
            .map_or(f64::NAN, |((le, _), _)| *le)
    };
    Figures {
        rss_peak_mb: peak as f64 / 1024.0,
        passes: count,
        pass_mean_ms: 1000.0 * (after.1 - before.1) / count.max(1.0),
        pass_p95_ms: 1000.0 * p95,
        events: events.load(Ordering::Relaxed),
        wall,
    }
}

fn main() {
    let quiet = burst(0);
    let open = burst(STREAMS);
    assert!(
        open.events >= STREAMS as u64,
        "every stream got at least one pass ({} events)",
        open.events
    );
    let within = |with: f64, without: f64| with <= without * 1.10;
    let verdict = |met: bool| if met { "met" } else { "NOT MET" };
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    for (label, f) in [("no streams", &quiet), ("20 streams", &open)] {
        println!(
            "dashboard {label:<11} RSS peak {:.1} MB  passes {:.0}  pass mean {:.1} ms  p95 <= {:.0} ms  \
             ({:.1} s for the 500-job burst; {} pass events read)",
            f.rss_peak_mb,
            f.passes,
            f.pass_mean_ms,
            f.pass_p95_ms,
            f.wall.as_secs_f64(),
            f.events
        );
    }
    println!(
        "dashboard streams    RSS {:+.1} % (target within 10 %: {})  pass mean {:+.1} % (target within 10 %: {}) \
         — 20 signed-in event streams open through a 500-job burst, `mayfly run` + `mayfly sim serve`, {profile} profile; \
         p95 is a histogram bucket's bound",
        100.0 * (open.rss_peak_mb / quiet.rss_peak_mb - 1.0),
        verdict(within(open.rss_peak_mb, quiet.rss_peak_mb)),
        100.0 * (open.pass_mean_ms / quiet.pass_mean_ms - 1.0),
        verdict(within(open.pass_mean_ms, quiet.pass_mean_ms)),
    );
}
