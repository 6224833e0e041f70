//! `mayfly node` as an operator runs it, against `mayfly sim serve`: a fake `systemctl` on PATH
//! runs the slot units for real, their runners are `run.sh` stand-ins whose listener is `mayfly
//! sim runner`. register → doctor (all ok) → a slot killed → doctor names it → register repairs
//! → deregister → nothing left on the fake GitHub or the host; deregister --force with GitHub
//! gone; prune refused (or waiting) while a job runs, and removing old leftovers.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::node::fakes;
use support::sim::{GITHUB_TOKEN, SimServe, fast_faults};

const X64: &[&str] = &["self-hosted", "linux", "x64"];

struct Node {
    sim: Option<SimServe>,
    dir: tempfile::TempDir,
    config: PathBuf,
    path: String,
    /// The mayfly binary the node's commands run (and its slots, hooks and runners with them).
    bin: PathBuf,
}

impl Node {
    fn new(slots: u32, with_docker: bool) -> Node {
        let sim = SimServe::start(&[]);
        sim.faults(fast_faults());
        let dir = tempfile::tempdir().expect("temp dir");
        let runner = dir.path().join("runner");
        mayfly_sim::program::install(&runner, Path::new(support::BIN)).expect("the runner");
        let config = dir.path().join("mayfly.toml");
        std::fs::write(
            &config,
            format!(
                r#"state_dir = "state"

[github]
token = "{GITHUB_TOKEN}"
api_url = "{github}"
repositories = ["acme/app"]

[github.limits]
write_interval = "1ms"

[node]
name = "testhost"
slots = {slots}
labels = ["self-hosted", "linux", "x64"]
runner_dir = "{runner}"
stop_timeout = "1m"
# The disk of the machine running the tests is not the node's concern here.
disk_warn_gib = 0.0
disk_fail_gib = 0.0
disk_warn_percent = 0.0
disk_fail_percent = 0.0
"#,
                github = sim.github,
                runner = runner.display(),
            ),
        )
        .expect("write the config");
        let bin = fakes(dir.path(), with_docker);
        let path = format!("{}:{}", bin.display(), support::path());
        Node {
            sim: Some(sim),
            dir,
            config,
            path,
            bin: PathBuf::from(support::BIN),
        }
    }

    fn sim(&self) -> &SimServe {
        self.sim.as_ref().expect("the simulator")
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn node_dir(&self) -> PathBuf {
        self.p("state/node")
    }

    /// `mayfly -c CONFIG node ARGS…` with the fakes first on PATH.
    fn mayfly(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear()
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("PATH", &self.path)
            .env("MAYFLY_SYSTEMD_DIR", self.p("units"))
            .env("MAYFLY_ENV_DIR", self.p("etc"))
            .env("FAKE_SYSTEMD_STATE", self.p("systemd"))
            .env("FAKE_DOCKER_STATE", self.p("docker"))
            .arg("-c")
            .arg(&self.config)
            .arg("node")
            .args(args);
        support::output_without(&mut cmd, &[GITHUB_TOKEN])
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.p("systemd/calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The runners the fake GitHub has in acme/app.
    fn runners(&self) -> Vec<Value> {
        self.sim().github_get("/repos/acme/app/actions/runners")["runners"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn wait(&self, what: &str, limit: Duration, mut done: impl FnMut(&Node) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\nslot logs:\n{}",
                self.slot_logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn online(&self, n: usize) -> bool {
        let r = self.runners();
        r.len() == n && r.iter().all(|r| r["status"] == "online")
    }

    fn slot_pid(&self, n: u32) -> u32 {
        std::fs::read_to_string(self.p(&format!("systemd/mayfly-node@{n}.service.pid")))
            .expect("the slot's pid")
            .trim()
            .parse()
            .expect("a pid")
    }

    fn slot_logs(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.p("systemd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "log") {
                out.push_str(&format!(
                    "--- {}\n{}\n",
                    e.path().display(),
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                ));
            }
        }
        out
    }

    /// Processes still carrying the marker of a root under the node's work directory.
    fn runner_processes(&self) -> usize {
        let work = self.node_dir().join("slots").display().to_string();
        mayfly_provider::local::process::all_marked()
            .into_iter()
            .filter(|(root, _)| root.starts_with(&work))
            .map(|(_, p)| p.len())
            .sum()
    }
}

impl Drop for Node {
    /// Whatever happened: the slots and their runners end with the test.
    fn drop(&mut self) {
        for n in 1..=4 {
            if let Ok(pid) =
                std::fs::read_to_string(self.p(&format!("systemd/mayfly-node@{n}.service.pid")))
            {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
            }
        }
        let work = self.node_dir().join("slots").display().to_string();
        for (root, procs) in mayfly_provider::local::process::all_marked() {
            if root.starts_with(&work) {
                for p in procs {
                    let _ = Command::new("kill")
                        .args(["-KILL", &p.pid.to_string()])
                        .status();
                }
            }
        }
    }
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn register_doctor_a_killed_slot_repair_and_deregister_leave_nothing() {
    let node = Node::new(2, false);
    let (code, out, err) = node.mayfly(&["register"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("registered testhost: 2 slot(s)"), "{out}");
    assert!(node.p("units/mayfly-node@.service").exists());
    let env = node.p("etc/mayfly-node.env");
    assert!(env.exists(), "the secrets' file");
    assert!(
        node.calls()
            .contains(&"systemctl enable --now mayfly-node@1.service".to_string()),
        "{:?}",
        node.calls()
    );
    node.wait("two runners online", Duration::from_secs(30), |n| {
        n.online(2)
    });
    let names: Vec<String> = node
        .runners()
        .iter()
        .map(|r| r["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        names.contains(&"testhost-1-1".into()) && names.contains(&"testhost-2-1".into()),
        "{names:?}"
    );

    // Registering twice changes nothing: no file written, only questions asked.
    let unit_before = std::fs::metadata(node.p("units/mayfly-node@.service"))
        .unwrap()
        .modified()
        .unwrap();
    let calls_before = node.calls().len();
    let (code, out, err) = node.mayfly(&["register"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("registered already: nothing changed"), "{out}");
    let again: Vec<String> = node.calls()[calls_before..].to_vec();
    assert!(
        again.iter().all(|c| c.starts_with("systemctl is-active")),
        "{again:?}"
    );
    assert_eq!(
        std::fs::metadata(node.p("units/mayfly-node@.service"))
            .unwrap()
            .modified()
            .unwrap(),
        unit_before
    );

    // Doctor: all ok.
    let (code, out, err) = node.mayfly(&["doctor"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(lines_with(&out, "fail ").is_empty(), "{out}");
    assert!(lines_with(&out, "warn ").is_empty(), "{out}");
    for want in [
        "slot 1 service",
        "slot 2 service",
        "slot 1 runner",
        "clock",
        "credential",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with("ok") && l.contains(want)),
            "{want} not ok in\n{out}"
        );
    }
    assert!(out.contains("online, idle"), "{out}");
    assert!(
        out.contains(&format!(
            "diagnostic state: {}",
            node.node_dir().join("diagnostic.json").display()
        )),
        "{out}"
    );

    // A job runs on the node and is its slot's last job.
    let job = node.sim().enqueue("acme/app", X64, 1.0, 1, 1)[0];
    node.wait("the job done", Duration::from_secs(30), |n| {
        n.sim()
            .jobs()
            .iter()
            .any(|j| j["id"] == job && j["status"] == "completed")
    });
    node.wait("two runners online again", Duration::from_secs(30), |n| {
        n.online(2)
    });
    let (code, out, _) = node.mayfly(&["doctor", "-o", "json"]);
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(&out).expect("doctor -o json");
    assert_ne!(report["result"], "fail");
    let last_jobs = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["detail"]
                .as_str()
                .unwrap_or("")
                .contains("last job job-1 of acme/app")
        })
        .count();
    assert_eq!(last_jobs, 1, "{report:#}");

    // A slot killed: doctor names it and fails.
    let before: Vec<Value> = node.runners().iter().map(|r| r["name"].clone()).collect();
    let _ = Command::new("kill")
        .args(["-KILL", &node.slot_pid(2).to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(300));
    let (code, out, _) = node.mayfly(&["doctor"]);
    assert_eq!(code, 1, "{out}");
    let failing = lines_with(&out, "fail ");
    assert!(
        failing
            .iter()
            .any(|l| l.contains("slot 2 service") && l.contains("mayfly-node@2.service is failed")),
        "{out}"
    );
    assert!(!failing.iter().any(|l| l.contains("slot 1")), "{out}");

    // register repairs it: the slot runs again, its old runner replaced.
    let (code, out, err) = node.mayfly(&["register"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("slot 2: mayfly-node@2.service was failed; started"),
        "{out}"
    );
    // The restarted slot stops the runner its killed predecessor left, and starts a new one.
    node.wait("slot 2's runner replaced", Duration::from_secs(30), |n| {
        let now = n.runners();
        n.online(2)
            && now.iter().any(|r| {
                r["name"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("testhost-2-"))
                    && !before.contains(&r["name"])
            })
    });
    let (code, out, _) = node.mayfly(&["doctor"]);
    assert_eq!(code, 0, "{out}");

    // GitHub forgets a runner: the slot (or register, whichever notices first) replaces it.
    let forgotten = node.runners()[0].clone();
    let id = forgotten["id"].as_u64().expect("id");
    let (status, _) = support::sim::request_with(
        node.sim().github.trim_start_matches("http://"),
        "DELETE",
        &format!("/repos/acme/app/actions/runners/{id}"),
        None,
        &format!("Authorization: Bearer {GITHUB_TOKEN}\r\n"),
    );
    assert_eq!(status, 204);
    let (code, out, err) = node.mayfly(&["register"]);
    assert_eq!(code, 0, "{out}\n{err}");
    node.wait(
        "the forgotten runner replaced",
        Duration::from_secs(30),
        |n| n.online(2) && !n.runners().iter().any(|r| r["id"] == id),
    );

    // deregister: nothing left on GitHub or the host (but the diagnostic state).
    let (code, out, err) = node.mayfly(&["deregister"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("deregistered testhost"), "{out}");
    assert!(node.runners().is_empty(), "{:?}", node.runners());
    assert_eq!(node.runner_processes(), 0, "runner processes left");
    assert!(!node.p("units/mayfly-node@.service").exists() && !env.exists());
    let left: Vec<String> = std::fs::read_dir(node.node_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        ["diagnostic.json"],
        "the node directory keeps only the diagnostic state"
    );
    assert!(
        node.p("runner/run.sh").exists(),
        "a runner installed by someone else is kept"
    );
    let diag: Value =
        serde_json::from_slice(&std::fs::read(node.node_dir().join("diagnostic.json")).unwrap())
            .unwrap();
    for verb in ["register", "doctor", "deregister"] {
        assert!(
            diag["verbs"][verb]["last_run"].is_string(),
            "{verb}: {diag:#}"
        );
    }
    assert_eq!(diag["verbs"]["deregister"]["result"], "ok");
    assert_ne!(
        diag["verbs"]["doctor"]["result"], "fail",
        "(a warning is the test machine's disk)"
    );
    assert!(diag["history"].as_array().unwrap().len() >= 6);
}

#[test]
fn deregister_force_cleans_the_host_when_github_is_gone_and_names_what_is_left() {
    let mut node = Node::new(1, false);
    let (code, out, err) = node.mayfly(&["register"]);
    assert_eq!(code, 0, "{out}\n{err}");
    node.wait("the runner online", Duration::from_secs(30), |n| {
        n.online(1)
    });
    let id = node.runners()[0]["id"].as_u64().expect("id");
    node.sim = None; // GitHub is gone

    let (code, out, err) = node.mayfly(&["deregister"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("deregister --force"), "{err}");
    assert!(
        node.node_dir().join("node.json").exists(),
        "without --force, nothing local goes"
    );

    let (code, out, err) = node.mayfly(&["--debug", "deregister", "--force"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("--force: jobs running on this host are killed"),
        "{out}"
    );
    assert!(out.contains("left on GitHub"), "{out}");
    assert!(
        out.contains(&format!("({id})")),
        "the runner left is named: {out}"
    );
    assert!(!node.node_dir().join("node.json").exists());
    assert!(!node.p("units/mayfly-node@.service").exists());
    assert_eq!(node.runner_processes(), 0);
    let diag: Value =
        serde_json::from_slice(&std::fs::read(node.node_dir().join("diagnostic.json")).unwrap())
            .unwrap();
    assert_eq!(diag["verbs"]["deregister"]["result"], "forced");
    assert!(
        diag["verbs"]["deregister"]["debug"]
            .as_array()
            .is_some_and(|d| !d.is_empty()),
        "--debug kept: {diag:#}"
    );
}

#[test]
fn prune_waits_for_or_refuses_a_running_job_and_removes_old_leftovers() {
    let node = Node::new(1, true);
    let (code, out, err) = node.mayfly(&["register", "--prune-timer"]);
    assert_eq!(code, 0, "{out}\n{err}");
    node.wait("the runner online", Duration::from_secs(30), |n| {
        n.online(1)
    });
    // The daily timer, running prune with a wait for jobs.
    let service = std::fs::read_to_string(node.p("units/mayfly-node-prune.service")).unwrap();
    assert!(service.contains(" prune --wait 3600s"), "{service}");
    assert!(node.p("units/mayfly-node-prune.timer").exists());
    assert!(
        node.calls()
            .contains(&"systemctl enable --now mayfly-node-prune.timer".to_string())
    );
    let (_, out, _) = node.mayfly(&["doctor"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains("prune timer")),
        "{out}"
    );

    // A job of 8 s runs: prune refuses, or waits for it with --wait.
    let job = node.sim().enqueue("acme/app", X64, 8.0, 1, 1)[0];
    let marker = node.node_dir().join("jobs/slot-1.json");
    node.wait("the job to start", Duration::from_secs(30), |_| {
        marker.exists()
    });
    let (code, out, err) = node.mayfly(&["prune"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("not pruning while a job runs: slot 1 runs job-1 of acme/app"),
        "{err}"
    );
    assert!(
        !node.p("docker/calls.log").exists(),
        "Docker untouched while the job runs"
    );
    let started = Instant::now();
    let (code, out, err) = node.mayfly(&["prune", "--wait", "60s"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let done = node
        .sim()
        .jobs()
        .into_iter()
        .find(|j| j["id"] == job)
        .expect("the job");
    assert_eq!(
        done["status"], "completed",
        "prune ran after the job: {done}"
    );
    assert_eq!(done["conclusion"], "success");
    println!(
        "prune waited {:.1}s for the job",
        started.elapsed().as_secs_f64()
    );

    // Old leftovers (the prune after the job took the fake Docker's; they are back): a slot
    // the node no longer has, and an old work directory of slot 1.
    std::fs::remove_dir_all(node.p("docker")).unwrap();
    node.wait("the slot's next runner", Duration::from_secs(30), |n| {
        n.online(1) && n.runners()[0]["name"] == "testhost-1-2"
    });
    let work = node.node_dir().join("slots");
    std::fs::create_dir_all(work.join("slot-7/_work/app")).unwrap();
    std::fs::write(work.join("slot-7/_work/app/big"), vec![0u8; 4096]).unwrap();
    std::fs::create_dir_all(work.join("slot-1/_work/old-repo")).unwrap();
    for p in [work.join("slot-7"), work.join("slot-1/_work/old-repo")] {
        assert!(
            Command::new("touch")
                .args(["-d", "30 days ago"])
                .arg(&p)
                .status()
                .unwrap()
                .success()
        );
    }
    let (code, out, err) = node.mayfly(&["prune", "--dry-run"]);
    let dry = out.clone();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("would remove 2 containers, 1 networks, 2 work directories"),
        "{out}"
    );
    assert!(work.join("slot-7").exists(), "a dry run removes nothing");

    let (code, out, err) = node.mayfly(&["prune", "--older-than", "10d"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("removed 2 containers, 1 networks, 2 work directories"),
        "{out}\n{dry}\n{}",
        node.slot_logs()
    );
    assert!(
        out.contains("container old-runner-job") && out.contains("container old-node-job"),
        "{out}"
    );
    assert!(
        !out.contains("recent-job") && !out.contains("someone-elses"),
        "{out}"
    );
    assert!(!work.join("slot-7").exists() && !work.join("slot-1/_work/old-repo").exists());
    assert!(
        work.join("slot-1/run.sh").exists(),
        "the live slot's root stays"
    );
    let calls = std::fs::read_to_string(node.p("docker/calls.log")).unwrap();
    for want in [
        "rm --volumes c0ffee01",
        "rm --volumes c0ffee02",
        "network rm github_network_0123",
        "volume prune --force --filter label=a1b2c3",
        "volume prune --force --filter label=mayfly-node=testhost",
        "image prune --force --filter until=240h",
    ] {
        assert!(
            calls.lines().any(|l| l == want),
            "{want:?} not among\n{calls}"
        );
    }
    assert!(
        !calls.contains("system prune") && !calls.contains("volume prune --all"),
        "{calls}"
    );
    assert!(
        !calls.contains("c0ffee03") && !calls.contains("c0ffee04"),
        "{calls}"
    );
    let diag: Value =
        serde_json::from_slice(&std::fs::read(node.node_dir().join("diagnostic.json")).unwrap())
            .unwrap();
    let p = &diag["verbs"]["prune"];
    assert_eq!(p["result"], "ok");
    assert_eq!(p["reclaimed"]["containers"].as_array().unwrap().len(), 2);
    assert_eq!(p["reclaimed"]["volumes_bytes"], 20_000_000);
    assert_eq!(p["filters"]["older_than_hours"], 240);

    let (code, _, err) = node.mayfly(&["deregister"]);
    assert_eq!(code, 0, "{err}");
}

/// The slots run as root and hold the credential; the runners and their jobs run as the node's
/// user (here nobody), who cannot read the slots' environment. The job hooks, run by the
/// runner as that user, still note the job.
#[test]
fn a_node_s_runners_and_jobs_run_as_its_user() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut node = Node::new(1, false);
    std::fs::set_permissions(node.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // mayfly must be installed where nobody can run it, as an operator installs it: the
    // runner stand-in and the job hooks (which run the mayfly binary of the slot) run as
    // nobody, and the build's binary may sit under a home only root can enter (CI keeps its
    // target dir in $HOME/.cache).
    // Installed where nobody cannot run it, register refuses and names the directory.
    let locked = node.p("root-only");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    let hidden = locked.join("mayfly");
    std::fs::copy(support::BIN, &hidden).expect("copy the binary");
    std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o755)).unwrap();
    node.bin = hidden;
    let (code, _, err) = node.mayfly(&["register", "--user", "nobody"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("the slots' user nobody cannot run")
            && err.contains("root-only (mode 0700")
            && err.contains("/usr/local/bin"),
        "{err}"
    );
    let bin = node.p("mayfly-bin");
    std::fs::copy(support::BIN, &bin).expect("copy the binary");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    mayfly_sim::program::install(&node.p("runner"), &bin).expect("the runner");
    node.bin = bin.clone();
    let nobody = mayfly_provider::local::process::account("nobody").expect("a nobody account");
    let (code, out, err) = node.mayfly(&["register", "--user", "nobody"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("as nobody"), "{out}");
    node.wait("the runner online", Duration::from_secs(30), |n| {
        n.online(1)
    });
    let job = node.sim().enqueue("acme/app", X64, 1.0, 1, 1)[0];
    node.wait("the job done", Duration::from_secs(30), |n| {
        n.sim()
            .jobs()
            .iter()
            .any(|j| j["id"] == job && j["conclusion"] == "success")
    });
    let last = node.node_dir().join("jobs/slot-1.last.json");
    node.wait("the hook's note", Duration::from_secs(10), |_| {
        last.exists()
    });
    assert_eq!(
        std::fs::metadata(&last).unwrap().uid(),
        nobody.uid,
        "written by the hook as nobody"
    );
    let diag = node.node_dir().join("slots/slot-1/_diag");
    let logs: Vec<_> = std::fs::read_dir(&diag).unwrap().flatten().collect();
    assert!(!logs.is_empty());
    for l in logs {
        assert_eq!(
            l.metadata().unwrap().uid(),
            nobody.uid,
            "{:?} written by the runner as nobody",
            l.path()
        );
    }
    // doctor says so too, should the binary become root's only.
    let (_, out, _) = node.mayfly(&["doctor"]);
    assert!(out.contains("ok    binary"), "{out}");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (code, out, _) = node.mayfly(&["doctor"]);
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("fail  binary") && out.contains("mayfly-bin (mode 0700"),
        "{out}"
    );
    let (code, _, err) = node.mayfly(&["deregister"]);
    assert_eq!(code, 0, "{err}");
    assert!(node.runners().is_empty());
    assert_eq!(node.runner_processes(), 0);
}

#[test]
fn bad_input_is_named() {
    let node = Node::new(1, false);
    let (code, _, err) = node.mayfly(&["register", "--slots", "0"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--slots/node.slots 0"), "{err}");
    let (code, _, err) = node.mayfly(&["register", "--repository", "noslash"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--repository/node.repository \"noslash\""),
        "{err}"
    );
    let (code, _, err) = node.mayfly(&["deregister"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not registered"), "{err}");
    let (code, out, _) = node.mayfly(&["doctor"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("fail  registration") && out.contains("hint: mayfly node register"),
        "{out}"
    );
    let (code, _, err) = node.mayfly(&["prune", "--older-than", "soon"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--older-than"), "{err}");
}

/// Docker-backed slots against a real daemon.
#[test]
#[ignore = "needs a Docker daemon and a runner image (none can run where these tests were written)"]
fn docker_daemon_backed_slots_run_their_runners_in_containers() {
    let node = Node::new(1, false);
    let text = std::fs::read_to_string(&node.config).unwrap().replace(
        "stop_timeout = \"1m\"",
        "stop_timeout = \"1m\"\ndocker = true\ndocker_image = \"ghcr.io/actions/actions-runner:2.338.0\"",
    );
    std::fs::write(&node.config, text).unwrap();
    let (code, out, err) = node.mayfly(&["register"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, _) = node.mayfly(&["doctor"]);
    assert!(out.contains("ok    docker"), "{out}");
    assert_eq!(code, 0);
    let (code, _, _) = node.mayfly(&["deregister", "--force"]);
    assert_eq!(code, 0);
}
