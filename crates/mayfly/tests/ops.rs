//! `mayfly status`, `list`, `delete` and `ssh` as processes: first against `mayfly run` (its API,
//! with the token file it made), then with the daemon stopped (the commands read the providers
//! and GitHub themselves), all against `mayfly sim serve`. What the fakes report is the truth the
//! commands are held to. The token file's mode is enforced on both sides, and no secret appears
//! in any output.

mod support;

use base64::Engine;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::Daemon;
use support::sim::{GITHUB_TOKEN, HETZNER_TOKEN, RunConfig, SimServe, fast_faults, request_with};

const HOOK_SECRET: &str = "ops-hook-secret-DUMMY";
const X64: &[&str] = &["self-hosted", "linux", "x64"];

/// One x64 pool that keeps one idle runner ready: a machine to delete while another is busy.
const POOL: &str = r#"
[[pools]]
name = "linux"
provider = "hetzner"
labels = ["self-hosted", "linux", "x64"]
types = ["cx23"]
locations = ["fsn1"]
standby = 1
"#;

/// What a command did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

struct World {
    sim: SimServe,
    dir: tempfile::TempDir,
    config: PathBuf,
    listen: SocketAddr,
    /// Every command's output, for the secrets check.
    outputs: Vec<String>,
}

impl World {
    fn new() -> (World, Daemon) {
        let sim = SimServe::start(&[]);
        sim.faults(fast_faults());
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("mayfly.toml");
        let text = sim.mayfly_config(&RunConfig {
            controller: "ops",
            repos: &["acme/app".to_string()],
            webhook_secret: Some(HOOK_SECRET),
            // The view the daemon serves is its last pass's; after a create, the next pass
            // comes at the registration deadline unless an event wakes it sooner.
            registration: "8s",
            poll: "1s",
            poll_backstop: "5s",
            workers: 4,
            pools: POOL,
        });
        std::fs::write(&config, text).expect("write the config");
        let mut daemon = Daemon::start(dir.path(), &config, &[]);
        let listen = daemon.listen_addr().expect("mayfly run started");
        let world = World {
            sim,
            dir,
            config,
            listen,
            outputs: Vec::new(),
        };
        (world, daemon)
    }

    fn token_file(&self) -> PathBuf {
        self.dir.path().join("state/api.token")
    }

    /// `mayfly --listen ADDR -c CONFIG ARGS` with a clean environment plus `env`, stdin empty,
    /// at most 60 s.
    fn mayfly(&mut self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut child = support::mayfly(self.dir.path(), env)
            .arg("--listen")
            .arg(self.listen.to_string())
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mayfly");
        let pipe = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = r.read_to_string(&mut s);
                s
            })
        };
        let out = pipe(Box::new(child.stdout.take().unwrap()));
        let err = pipe(Box::new(child.stderr.take().unwrap()));
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("mayfly {args:?} did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let run = Run {
            code: status.code(),
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        };
        self.outputs
            .push(format!("mayfly {args:?}\n{}\n{}", run.stdout, run.stderr));
        run
    }

    /// `mayfly ARGS -o json`, which must succeed.
    fn json(&mut self, args: &[&str]) -> (Value, String) {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let run = self.mayfly(&all, &[]);
        assert_eq!(run.code, Some(0), "mayfly {args:?}: {}", run.stderr);
        let value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("mayfly {args:?}: {e}: {}", run.stdout));
        (value, run.stderr)
    }

    /// Polls `mayfly status -o json` until `done`, at most 30 s; reads the daemon's log
    /// meanwhile, for a failure's report.
    fn wait_view(
        &mut self,
        daemon: &mut Daemon,
        what: &str,
        mut done: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (view, _) = self.json(&["status"]);
            if done(&view) {
                return view;
            }
            daemon.drain();
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {view}\nmayfly's log:\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn servers(&self) -> BTreeSet<String> {
        self.sim.servers()["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    }

    fn runners(&self) -> BTreeSet<String> {
        self.sim.github_get("/repos/acme/app/actions/runners")["runners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    }
}

fn names(instances: &Value) -> BTreeSet<String> {
    instances
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn status_list_delete_and_ssh_through_the_daemon_and_without_it() {
    let (mut w, mut daemon) = World::new();
    let token_file = w.token_file();
    assert_eq!(
        mode(&token_file),
        0o600,
        "the daemon made its token owner-only"
    );
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(token.len(), 64);

    // The API refuses a request without the token.
    let addr = w.listen.to_string();
    let (status, body) = request_with(&addr, "GET", "/api/v1/status", None, "");
    assert_eq!(status, 401, "{body}");

    w.sim.enqueue("acme/app", X64, 600.0, 1, 1);
    let view = w.wait_view(&mut daemon, "a busy and an idle runner", |v| {
        let states: Vec<&str> = v["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["runner"].as_str().unwrap())
            .collect();
        states.len() == 2 && states.contains(&"busy") && states.contains(&"idle")
    });
    let instance = |state: &str| {
        view["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["runner"] == state)
            .unwrap()
            .clone()
    };
    let (busy, idle) = (instance("busy"), instance("idle"));
    let busy_name = busy["name"].as_str().unwrap().to_string();
    let idle_name = idle["name"].as_str().unwrap().to_string();
    assert_eq!(
        names(&view["instances"]),
        w.servers(),
        "the daemon's view is the cloud's"
    );
    assert_eq!(view["jobs"][0]["status"], "in_progress");
    assert_eq!(view["jobs"][0]["instance"], busy_name.as_str());

    // Tables fit the width they are given.
    let run = w.mayfly(&["status"], &[("COLUMNS", "72")]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("INSTANCES (2)"), "{}", run.stdout);
    assert!(run.stdout.contains("RUNNERS (2)"), "{}", run.stdout);
    for line in run.stdout.lines() {
        assert!(line.chars().count() <= 72, "{line:?}");
    }
    assert!(!run.stderr.contains("no daemon"), "{}", run.stderr);
    let run = w.mayfly(&["list"], &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.starts_with("NAME"), "{}", run.stdout);
    assert!(run.stdout.contains(&busy_name) && run.stdout.contains(&idle_name));
    let (listed, _) = w.json(&["list"]);
    assert_eq!(names(&listed), w.servers());

    // A busy machine is kept; without a terminal nothing is deleted unasked.
    let run = w.mayfly(&["delete", &busy_name, "--yes"], &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("never deletes a busy machine"),
        "{}",
        run.stderr
    );
    let run = w.mayfly(&["delete", &idle_name], &[]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("stdin is not a terminal"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    assert!(w.servers().contains(&busy_name) && w.servers().contains(&idle_name));
    assert!(w.runners().contains(&idle_name));

    // The idle one goes: its runner from GitHub, its machine from the cloud.
    let run = w.mayfly(&["delete", &idle_name, "--yes"], &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.trim(), format!("deleted {idle_name}"));
    assert!(!w.servers().contains(&idle_name), "{:?}", w.servers());
    assert!(!w.runners().contains(&idle_name), "{:?}", w.runners());
    let run = w.mayfly(&["delete", "ops-nothing", "--yes", "-o", "json"], &[]);
    assert_eq!(run.code, Some(1));
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(answer[0]["name"], "ops-nothing");
    assert!(
        answer[0]["error"]
            .as_str()
            .unwrap()
            .contains("no instance named")
    );
    assert!(
        run.stderr.contains("1 of 1 not deleted: ops-nothing"),
        "{}",
        run.stderr
    );
    // The loop, woken by the delete, makes a new standby machine at once.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let servers = w.servers();
        if servers.len() == 2 && !servers.contains(&idle_name) {
            break;
        }
        assert!(Instant::now() < deadline, "no new standby: {servers:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // ssh to the busy machine's address, with a fake client that records its arguments.
    let fake = w.dir.path().join("fake-ssh");
    let record = w.dir.path().join("ssh-args");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$@\" > {}\nexit 7\n", record.display()),
    )
    .unwrap();
    chmod(&fake, 0o755);
    let fake_env = [("MAYFLY_SSH", fake.to_str().unwrap())];
    let run = w.mayfly(&["ssh", &busy_name, "--", "uptime", "-p"], &fake_env);
    assert_eq!(
        run.code,
        Some(7),
        "the remote command's status: {}",
        run.stderr
    );
    let args = std::fs::read_to_string(&record).unwrap();
    let address = busy["address"].as_str().expect("an address");
    assert!(
        args.trim_end()
            .ends_with(&format!("root@{address} uptime -p")),
        "{args}"
    );
    let run = w.mayfly(&["ssh", "ops-nothing"], &fake_env);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("no instance named ops-nothing"),
        "{}",
        run.stderr
    );

    // The token file: refused when others can read it, and a wrong token is no fallback.
    chmod(&token_file, 0o644);
    let run = w.mayfly(&["status"], &[]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains("readable by group or others (mode 0644)"),
        "{}",
        run.stderr
    );
    chmod(&token_file, 0o600);
    std::fs::write(&token_file, "0000\n").unwrap();
    let run = w.mayfly(&["list"], &[]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("refused the token"), "{}", run.stderr);
    assert!(!run.stderr.contains("no daemon"), "{}", run.stderr);
    std::fs::write(&token_file, format!("{token}\n")).unwrap();

    // Without the daemon: the same instances, read from the cloud and GitHub directly.
    daemon.stop().expect("mayfly run stopped");
    let (listed, stderr) = w.json(&["list"]);
    assert!(
        stderr.contains(&format!(
            "no daemon at {}: reading the providers and GitHub directly",
            w.listen
        )),
        "{stderr}"
    );
    assert_eq!(names(&listed), w.servers());
    let (direct, _) = w.json(&["status"]);
    let standby = direct["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] != busy_name.as_str())
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(direct["jobs"][0]["instance"], busy_name.as_str());
    let run = w.mayfly(&["delete", &busy_name, "--yes"], &[]);
    assert_eq!(run.code, Some(1), "busy is busy without the daemon too");
    let run = w.mayfly(&["delete", &standby, "--yes"], &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!w.servers().contains(&standby));
    assert!(!w.runners().contains(&standby));
    let run = w.mayfly(&["ssh", &busy_name, "uptime"], &fake_env);
    assert_eq!(run.code, Some(7), "{}", run.stderr);

    // No secret in any output or in the daemon's log.
    let mut texts = w.outputs.clone();
    texts.push(daemon.log());
    for text in &texts {
        for secret in [GITHUB_TOKEN, HETZNER_TOKEN, HOOK_SECRET, token.as_str()] {
            assert!(!text.contains(secret), "a secret in:\n{text}");
        }
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || "+/=".contains(c))) {
            let jit = word.len() >= 20
                && base64::engine::general_purpose::STANDARD
                    .decode(word)
                    .is_ok_and(|b| String::from_utf8_lossy(&b).contains(".runner"));
            assert!(!jit, "a JIT runner config in:\n{text}");
        }
    }
}

#[test]
fn the_daemon_refuses_a_token_file_others_can_read() {
    let sim = SimServe::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mayfly.toml");
    std::fs::write(
        &config,
        sim.mayfly_config(&RunConfig {
            controller: "ops",
            repos: &["acme/app".to_string()],
            webhook_secret: None,
            registration: "30s",
            poll: "1s",
            poll_backstop: "5s",
            workers: 1,
            pools: POOL,
        }),
    )
    .unwrap();
    let token_file = dir.path().join("state/api.token");
    std::fs::create_dir_all(token_file.parent().unwrap()).unwrap();
    std::fs::write(&token_file, "s3cret-DUMMY-token\n").unwrap();
    chmod(&token_file, 0o640);
    let mut daemon = Daemon::start(dir.path(), &config, &[]);
    let line = daemon
        .wait_for(&["readable by group or others (mode 0640)"])
        .unwrap_or_else(|| panic!("no refusal in:\n{}", daemon.log()));
    assert!(line.contains("chmod 600"), "{line}");
    let status = daemon.stop().expect("it exits");
    assert!(!status.success());
    assert!(!daemon.log().contains("s3cret"), "{}", daemon.log());
}
