//! The local provider on this host: the conformance suite (processes, and containers through a
//! fake `docker` that records its arguments), then what is local's own — the slot cap, the
//! command line against the runner's documented flags, the minimal environment, and a crash of
//! mayfly: a new provider over the same work directory finds the runner by its recorded pid and
//! start time, never signals a reused pid, and cleans half-made and half-removed roots.

use mayfly_core::{Arch, Image, ImageKind, InstanceState, Labels, MachineSpec, Secret};
use mayfly_provider::bootstrap::Credential;
use mayfly_provider::conformance::{self, Fixture};
use mayfly_provider::local::{Local, LocalConfig, process};
use mayfly_provider::{CreateRequest, Error, Provider};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A runner that never takes a job: it records its arguments and environment, then waits.
/// The conformance suite is about the provider's mechanics, not about jobs. The environment is
/// written under another name and renamed, so that a test that sees `env` reads it whole.
const SLEEPER: &str = r#"#!/bin/sh
printf '%s\n' "$@" > "$(dirname "$0")/args"
env > "$(dirname "$0")/env.partial"
mv "$(dirname "$0")/env.partial" "$(dirname "$0")/env"
exec sleep 300
"#;

fn script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new(run_sh: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("runner/bin")).unwrap();
        script(&dir.path().join("runner/run.sh"), run_sh);
        std::fs::write(dir.path().join("runner/bin/Runner.Listener"), "binary").unwrap();
        Host { dir }
    }

    fn runner_dir(&self) -> PathBuf {
        self.dir.path().join("runner")
    }

    fn work_dir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn config(&self, slots: u32) -> LocalConfig {
        LocalConfig {
            stop_timeout_ms: 2_000,
            ..LocalConfig::new(slots, self.runner_dir(), self.work_dir())
        }
    }
}

fn spec() -> MachineSpec {
    MachineSpec {
        types: vec!["process".into()],
        locations: vec!["local".into()],
        image: Image {
            arch: Arch::X86,
            kind: ImageKind::System,
            name: "ubuntu-24.04".into(),
        },
    }
}

fn fixture() -> Fixture {
    Fixture::new(spec())
        .free()
        .with_settle(Duration::from_secs(15), Duration::from_millis(50))
}

fn request(name: &str, controller: &str) -> CreateRequest {
    CreateRequest {
        name: name.into(),
        controller: controller.into(),
        pool: "local".into(),
        spec: spec(),
        user_data: Secret::new("#!/bin/sh\n"),
        labels: Labels::new(["self-hosted"]),
        credential: Credential::Jit(Secret::new("eyJzZWNyZXQiOiJKSVQtVEVTVCJ9")),
    }
}

/// Waits (bounded) until `f` holds.
async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What is in a work directory but its lock file, which stays.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|e| {
            e.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".lock")
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test]
async fn conformance_with_processes() {
    let host = Host::new(SLEEPER);
    let p = Local::new(host.config(20)).await.unwrap();
    conformance::run(&p, &fixture()).await;
    assert!(entries(&host.work_dir()).is_empty(), "every root removed");
}

/// The command line is the documented way to start a just-in-time runner
/// (`./run.sh --jitconfig <encoded_jit_config>`, docs node.md §2): every word the runner gets is
/// one of run.sh's documented flags or the value of `--jitconfig`, and it gets the config whole.
#[tokio::test]
async fn the_runner_gets_the_documented_command_line_and_a_minimal_environment() {
    /// The flags actions/runner's listener documents for `run` (Runner.cs, PrintUsage).
    const DOCUMENTED: [&str; 4] = ["--jitconfig", "--once", "--startuptype", "--check"];
    let host = Host::new(SLEEPER);
    let p = Local::new(host.config(2)).await.unwrap();
    let req = request("mf-cmd-1", "mf");
    p.create(&req).await.unwrap();
    let root = host.work_dir().join("mf-cmd-1");
    until("the runner to write its arguments", || {
        root.join("env").exists()
    })
    .await;
    let args = std::fs::read_to_string(root.join("args")).unwrap();
    let words: Vec<&str> = args.lines().collect();
    assert_eq!(words, ["--jitconfig", "eyJzZWNyZXQiOiJKSVQtVEVTVCJ9"]);
    let mut it = words.iter();
    while let Some(w) = it.next() {
        assert!(DOCUMENTED.contains(w), "{w} is not a documented flag");
        if *w == "--jitconfig" {
            it.next();
        }
    }
    // Built by the same function the node's slots use.
    let built = Local::runner_command(&root.join("run.sh"), &Secret::new("J"));
    assert_eq!(built[1..], ["--jitconfig", "J"]);

    // mayfly's own environment (its tokens) never reaches a runner.
    let env = std::fs::read_to_string(root.join("env")).unwrap();
    assert!(env.contains(&format!("{}={}", process::MARKER, root.display())));
    for line in env.lines() {
        let name = line.split('=').next().unwrap_or("");
        assert!(
            [
                "PATH",
                "HOME",
                "USER",
                "LOGNAME",
                "LANG",
                "TZ",
                "RUNNER_ALLOW_RUNASROOT",
                process::MARKER,
                "PWD",
                "SHLVL",
                "_"
            ]
            .contains(&name),
            "{line} leaked into the runner's environment"
        );
    }
    p.delete("mf-cmd-1").await.unwrap();
}

/// As root, with `runner_user`: the runner (and so its jobs) runs as that user, in a root it
/// owns, so it cannot read mayfly's environment. As another user, `runner_user` is refused.
#[tokio::test]
async fn runners_run_as_the_runner_user() {
    use std::os::unix::fs::MetadataExt;
    let host = Host::new(SLEEPER);
    let nobody = process::account("nobody").expect("a nobody account");
    let config = LocalConfig {
        runner_user: Some("nobody".into()),
        ..host.config(1)
    };
    if !rustix::process::geteuid().is_root() {
        let e = Local::new(config).await.unwrap_err();
        assert!(e.to_string().contains("needs mayfly to run as root"), "{e}");
        return;
    }
    // The way to the roots must be open to the user.
    std::fs::set_permissions(host.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = Local::new(config).await.unwrap();
    p.create(&request("mf-user", "mf")).await.unwrap();
    let root = host.work_dir().join("mf-user");
    until("the runner", || {
        std::fs::read_to_string(root.join("env")).is_ok_and(|e| e.contains(process::MARKER))
    })
    .await;
    let meta = std::fs::metadata(root.join("args")).unwrap();
    assert_eq!(meta.uid(), nobody.uid, "written by the runner as nobody");
    let env = std::fs::read_to_string(root.join("env")).unwrap();
    assert!(env.lines().any(|l| l == "USER=nobody"), "{env}");
    assert!(!env.contains("RUNNER_ALLOW_RUNASROOT"), "{env}");
    p.delete("mf-user").await.unwrap();
    let left = entries(&host.work_dir());
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn slots_cap_the_runners_that_run_at_once() {
    let host = Host::new(SLEEPER);
    let p = Local::new(host.config(2)).await.unwrap();
    p.create(&request("mf-a", "mf")).await.unwrap();
    p.create(&request("mf-b", "mf")).await.unwrap();
    match p.create(&request("mf-c", "mf")).await {
        Err(Error::Quota { message }) => assert!(message.contains("2 slots"), "{message}"),
        other => panic!("a third runner on 2 slots: {other:?}"),
    }
    assert!(!host.work_dir().join("mf-c").exists());
    p.delete("mf-a").await.unwrap();
    p.create(&request("mf-c", "mf")).await.unwrap();
    for n in ["mf-b", "mf-c"] {
        p.delete(n).await.unwrap();
    }
}

#[tokio::test]
async fn a_runner_that_exits_is_off_and_frees_its_slot() {
    let host = Host::new("#!/bin/sh\nexit 0\n");
    let p = Local::new(host.config(1)).await.unwrap();
    p.create(&request("mf-done", "mf")).await.unwrap();
    let mut state = InstanceState::Running;
    for _ in 0..200 {
        state = p.get("mf-done").await.unwrap().state;
        if state == InstanceState::Off {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state, InstanceState::Off);
    // An exited runner holds no slot.
    p.create(&request("mf-next", "mf")).await.unwrap();
    p.delete("mf-done").await.unwrap();
    p.delete("mf-next").await.unwrap();
    assert!(entries(&host.work_dir()).is_empty());
}

#[tokio::test]
async fn a_registration_token_is_refused_with_the_setting_to_change() {
    let host = Host::new(SLEEPER);
    let p = Local::new(host.config(1)).await.unwrap();
    let mut req = request("mf-token", "mf");
    req.credential = Credential::Token {
        url: "https://github.com/acme/app".into(),
        token: Secret::new("AAAATOKEN"),
        name: "mf-token".into(),
        labels: vec![],
        group: None,
    };
    match p.create(&req).await {
        Err(Error::Invalid { message }) => {
            assert!(message.contains("github.registration"), "{message}");
            assert!(!message.contains("AAAATOKEN"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_bad_runner_dir_or_configuration_is_named() {
    let host = Host::new(SLEEPER);
    let mut c = host.config(1);
    c.runner_dir = host.dir.path().join("nowhere");
    let e = Local::new(c).await.unwrap_err();
    assert!(e.to_string().contains("runner_dir"), "{e}");
    let mut c = host.config(0);
    c.slots = 0;
    assert!(
        Local::new(c)
            .await
            .unwrap_err()
            .to_string()
            .contains("slots")
    );
}

/// mayfly killed while its runners run: a new provider over the same work directory lists
/// them by their records, deletes them (their processes stopped by recorded pid and start
/// time, their roots removed), and removes what a crash left half made or half removed.
#[tokio::test]
async fn after_a_crash_the_next_provider_finds_and_cleans_everything() {
    let host = Host::new(SLEEPER);
    let first = Local::new(host.config(4)).await.unwrap();
    first.create(&request("mf-x-1", "mf")).await.unwrap();
    let root = host.work_dir().join("mf-x-1");
    let marker = process::marker_of(&root);
    until("the runner", || !process::marked(&marker).is_empty()).await;
    drop(first); // the crash: nothing is cleaned up
    std::fs::create_dir_all(host.work_dir().join(".staging-mf-x-2-1-1/bin")).unwrap();
    std::fs::create_dir_all(host.work_dir().join(".deleting-mf-x-3-1-1/_work")).unwrap();

    let next = Local::new(host.config(4)).await.unwrap();
    assert_eq!(entries(&host.work_dir()), ["mf-x-1"], "leftovers swept");
    let listed = next.list("mf").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, InstanceState::Running);
    assert!(next.list("other").await.unwrap().is_empty());
    next.delete("mf-x-1").await.unwrap();
    assert!(process::marked(&marker).is_empty(), "no orphan process");
    assert!(entries(&host.work_dir()).is_empty(), "no orphan directory");
}

/// A record whose pid now belongs to another process (same pid, another start time) is an
/// exited runner: the other process is never signalled.
#[tokio::test]
async fn a_reused_pid_is_never_signalled() {
    let host = Host::new(SLEEPER);
    let p = Local::new(host.config(2)).await.unwrap();
    p.create(&request("mf-reuse", "mf")).await.unwrap();
    let root = host.work_dir().join("mf-reuse");
    let marker = process::marker_of(&root);
    until("the runner", || !process::marked(&marker).is_empty()).await;
    p.delete("mf-reuse").await.unwrap();

    // An innocent process, and a record that names its pid with another start time.
    let mut innocent = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = innocent.id();
    let real = process::recorded(pid).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let rec = mayfly_provider::local::Record {
        name: "mf-reuse".into(),
        controller: "mf".into(),
        pool: "local".into(),
        created_ms: 1,
        placement: mayfly_core::Placement {
            machine_type: "process".into(),
            location: "local".into(),
            image: spec().image,
        },
        process: Some(process::Proc {
            pid,
            start_time: real.start_time.saturating_sub(1),
        }),
        container: None,
    };
    std::fs::write(
        root.join(".mayfly-instance.json"),
        serde_json::to_vec(&rec).unwrap(),
    )
    .unwrap();
    assert_eq!(p.get("mf-reuse").await.unwrap().state, InstanceState::Off);
    p.delete("mf-reuse").await.unwrap();
    assert!(process::alive(&real), "the innocent process still runs");
    assert!(!root.exists());
    innocent.kill().unwrap();
    let _ = innocent.wait();
}

/// A `docker` stand-in on PATH: records every call and keeps containers as files, answering
/// as the CLI documents (`version`, `run --detach`, `ps --format '{{json .}}'`, `rm --force`).
const FAKE_DOCKER: &str = r#"#!/bin/bash
dir="$(dirname "$0")/docker-state"
mkdir -p "$dir"
printf '%s\n' "$*" >> "$(dirname "$0")/docker-calls.log"
case "$1" in
version) echo "1.47" ;;
run)
    shift
    name="" labels=""
    while [ $# -gt 0 ]; do
        case "$1" in
        --detach) shift ;;
        --name) name="$2"; shift 2 ;;
        --label) labels="${labels:+$labels,}$2"; shift 2 ;;
        --env) shift 2 ;;
        *) break ;;
        esac
    done
    if [ -e "$dir/$name" ]; then echo "docker: Error response from daemon: Conflict." >&2; exit 125; fi
    printf '{"ID":"id-%s","Names":"%s","State":"running","Labels":"%s","CreatedAt":"2026-05-01 12:00:00 +0000 UTC"}\n' "$name" "$name" "$labels" > "$dir/$name"
    echo "id-$name" ;;
ps)
    want=""
    while [ $# -gt 0 ]; do
        case "$1" in --filter) want="${2#label=}"; shift 2 ;; *) shift ;; esac
    done
    for f in "$dir"/*; do
        [ -e "$f" ] || continue
        if [ -z "$want" ] || grep -qF "$want" "$f"; then cat "$f"; fi
    done ;;
rm)
    name="${!#}"
    if [ -e "$dir/$name" ]; then rm -f "$dir/$name"; echo "$name"
    else echo "Error response from daemon: No such container: $name" >&2; exit 1; fi ;;
*) echo "fake docker: unsupported: $*" >&2; exit 1 ;;
esac
"#;

#[tokio::test]
async fn conformance_with_containers_through_the_docker_cli() {
    let host = Host::new(SLEEPER);
    let docker = host.dir.path().join("docker");
    script(&docker, FAKE_DOCKER);
    let config = LocalConfig {
        docker: true,
        docker_image: Some("ghcr.io/actions/actions-runner:2.338.0".into()),
        docker_binary: docker.display().to_string(),
        runner_dir: "/home/runner".into(),
        ..host.config(20)
    };
    let p = Local::new(config).await.unwrap();
    conformance::run(&p, &fixture()).await;
    let calls = std::fs::read_to_string(host.dir.path().join("docker-calls.log")).unwrap();
    let run = calls
        .lines()
        .find(|l| l.starts_with("run "))
        .expect("a docker run");
    assert!(
        run.starts_with("run --detach --name mf-")
            && run.contains("--label mayfly-controller=conf-")
            && run.contains(&format!("--label mayfly-local={}", host.work_dir().display()))
            && run.ends_with(
                "ghcr.io/actions/actions-runner:2.338.0 /home/runner/run.sh --jitconfig Y29uZm9ybWFuY2U="
            ),
        "{run}"
    );
    assert!(
        calls
            .lines()
            .any(|l| l.starts_with("rm --force --volumes mf-"))
    );
    assert!(entries(&host.dir.path().join("docker-state")).is_empty());
}

/// A real Docker daemon: the same suite, with containers of a real runner image.
#[tokio::test]
#[ignore = "needs a Docker daemon (none can run where these tests were written)"]
async fn conformance_with_a_real_docker_daemon() {
    let host = Host::new(SLEEPER);
    let config = LocalConfig {
        docker: true,
        docker_image: Some("ghcr.io/actions/actions-runner:2.338.0".into()),
        runner_dir: "/home/runner".into(),
        ..host.config(20)
    };
    let p = Local::new(config)
        .await
        .expect("a Docker daemon that answers");
    conformance::run(&p, &fixture()).await;
}
