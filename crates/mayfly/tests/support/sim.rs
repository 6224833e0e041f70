//! `mayfly sim serve` as a child process, and its control API (`/_sim/…`) over plain HTTP/1.1:
//! enqueue jobs, set faults, read jobs, servers, bills and call counts.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub const GITHUB_TOKEN: &str = "sim-github-token";
pub const HETZNER_TOKEN: &str = "sim-hetzner-token";

/// A running `mayfly sim serve`; killed on drop.
pub struct SimServe {
    child: Child,
    /// The fake GitHub's API URL (`http://127.0.0.1:PORT`).
    pub github: String,
    /// The fake Hetzner's API URL (`http://127.0.0.1:PORT/v1`).
    pub hetzner: String,
    /// The fake GitLab's instance URL (`http://127.0.0.1:PORT`; its API under `/api/v4`).
    pub gitlab: String,
    /// `host:port` of the control API.
    control: String,
    /// The simulator's own log (stderr), for a failure's report.
    log: Arc<Mutex<Vec<String>>>,
}

impl SimServe {
    /// Starts the simulator at `--speed 1` with a clean environment, and waits (at most 20 s)
    /// for the JSON line with its addresses.
    pub fn start(extra: &[&str]) -> SimServe {
        SimServe::start_at(1.0, extra)
    }

    /// [`SimServe::start`] at `speed` simulated seconds per real second.
    pub fn start_at(speed: f64, extra: &[&str]) -> SimServe {
        let speed = speed.to_string();
        let mut child = Command::new(super::BIN)
            .env_clear()
            .env("MAYFLY_SIM_GITHUB_TOKEN", GITHUB_TOKEN)
            .env("MAYFLY_SIM_HETZNER_TOKEN", HETZNER_TOKEN)
            .env("RUST_LOG", "info")
            .args([
                "sim",
                "serve",
                "--github-addr",
                "127.0.0.1:0",
                "--hetzner-addr",
                "127.0.0.1:0",
                "--speed",
                &speed,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mayfly sim serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut first = String::new();
            let mut out = BufReader::new(stdout);
            let _ = out.read_line(&mut first);
            let _ = tx.send(first);
            // Keep reading so the child never blocks on a full pipe.
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("mayfly sim serve printed its addresses within 20 s");
        let addrs: Value = serde_json::from_str(&first).expect("the first line is JSON");
        let field = |k: &str| addrs[k].as_str().expect(k).to_string();
        let control = field("control")
            .trim_start_matches("http://")
            .trim_end_matches("/_sim")
            .to_string();
        SimServe {
            child,
            github: field("github"),
            hetzner: field("hetzner"),
            gitlab: field("gitlab"),
            control,
            log,
        }
    }

    /// `GET /_sim/{path}`, the JSON answer.
    pub fn get(&self, path: &str) -> Value {
        let (status, body) = request(&self.control, "GET", &format!("/_sim/{path}"), None);
        assert!(status / 100 == 2, "GET /_sim/{path}: {status} {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET /_sim/{path}: {e}: {body}"))
    }

    /// `POST /_sim/{path}` with a JSON body; panics unless it succeeds.
    pub fn post(&self, path: &str, body: &Value) -> Value {
        let (status, answer) = request(
            &self.control,
            "POST",
            &format!("/_sim/{path}"),
            Some(&body.to_string()),
        );
        assert!(
            status / 100 == 2,
            "POST /_sim/{path} {body}: {status} {answer}"
        );
        serde_json::from_str(&answer).unwrap_or(Value::Null)
    }

    pub fn faults(&self, faults: Value) {
        self.post("faults", &faults);
    }

    /// Enqueues `runs` workflow runs of `jobs` jobs each; the job ids.
    pub fn enqueue(
        &self,
        repo: &str,
        labels: &[&str],
        secs: f64,
        jobs: u32,
        runs: u32,
    ) -> Vec<u64> {
        let answer = self.post(
            "jobs",
            &json!({
                "repo": repo, "labels": labels, "duration_secs": secs, "jobs": jobs, "runs": runs,
            }),
        );
        answer["job_ids"]
            .as_array()
            .expect("job_ids")
            .iter()
            .map(|v| v.as_u64().expect("a job id"))
            .collect()
    }

    /// Every job the fake GitHub knows, with status, conclusion and runner name.
    pub fn jobs(&self) -> Vec<Value> {
        match self.get("jobs") {
            Value::Array(jobs) => jobs,
            other => panic!("GET /_sim/jobs: not an array: {other}"),
        }
    }

    /// `{"servers": [existing…], "billing": {"servers": [every server ever…], …}}`.
    pub fn servers(&self) -> Value {
        self.get("servers")
    }

    pub fn stats(&self) -> Value {
        self.get("stats")
    }

    /// `GET {path}` on the fake GitHub's REST API with the token mayfly uses: what GitHub
    /// itself reports, such as `/repos/acme/app/actions/runners`.
    pub fn github_get(&self, path: &str) -> Value {
        let addr = self.github.trim_start_matches("http://");
        let (status, body) = request_with(
            addr,
            "GET",
            path,
            None,
            &format!("Authorization: Bearer {GITHUB_TOKEN}\r\n"),
        );
        assert!(
            status == 200,
            "GET {path} on the fake GitHub: {status} {body}"
        );
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }
}

impl Drop for SimServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Faults for runs of seconds: servers up in a second, runners a second later, off half a
/// second after their job; GitHub's write cap out of the way.
pub fn fast_faults() -> Value {
    json!({
        "runners": { "boot_delay": { "kind": "fixed", "secs": 1 } },
        "hetzner": { "boot_delay_secs": 1, "shutdown_delay_secs": 0.5, "action_delay_secs": 1 },
        "github": { "writes_per_minute": 100000 },
    })
}

/// One HTTP/1.1 request with `Connection: close`: the status and the body (chunked or not).
pub fn request(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    request_with(addr, method, path, body, "")
}

/// [`request`] with extra header lines (each ending in `\r\n`).
pub fn request_with(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// One x64 pool on one type in one location.
pub const LINUX_POOL: &str = r#"
[[pools]]
name = "linux"
provider = "hetzner"
labels = ["self-hosted", "linux", "x64"]
types = ["cx23"]
locations = ["fsn1"]
image = "x86:system:ubuntu-24.04"
"#;

/// What `mayfly run` is configured with against a simulator (see [`SimServe::mayfly_config`]).
pub struct RunConfig<'a> {
    pub controller: &'a str,
    pub repos: &'a [String],
    /// Set: jobs also arrive by webhook, signed with this secret.
    pub webhook_secret: Option<&'a str>,
    pub registration: &'a str,
    pub poll: &'a str,
    pub poll_backstop: &'a str,
    pub workers: usize,
    /// `[[pools]]` tables.
    pub pools: &'a str,
}

impl SimServe {
    /// A `mayfly run` configuration against this simulator: SQLite in `state/`, short
    /// deadlines and intervals for runs of seconds, recycling off (one server runs one job).
    pub fn mayfly_config(&self, c: &RunConfig) -> String {
        let repos = c
            .repos
            .iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let secret = c
            .webhook_secret
            .map(|s| format!("webhook_secret = {s:?}"))
            .unwrap_or_default();
        format!(
            r#"controller = "{controller}"
state_dir = "state"
workers = {workers}

[github]
token = "{GITHUB_TOKEN}"
api_url = "{github}"
repositories = [{repos}]
poll = true
{secret}

[github.limits]
# The simulator's write cap is raised; no need to space JIT configs by GitHub's advice.
write_interval = "1ms"

[providers.hetzner]
kind = "hetzner"
token = "{HETZNER_TOKEN}"
endpoint = "{hetzner}"

[deadlines]
registration = "{registration}"
idle = "{registration}"
powered_off = "1s"

[intervals]
reconcile = "1s"
poll = "{poll}"
poll_backstop = "{poll_backstop}"

[recycling]
enabled = false
{pools}"#,
            controller = c.controller,
            workers = c.workers,
            github = self.github,
            hetzner = self.hetzner,
            registration = c.registration,
            poll = c.poll,
            poll_backstop = c.poll_backstop,
            pools = c.pools,
        )
    }
}
