//! `mayfly gitlab-executor` driven through whole jobs by a harness playing gitlab-runner,
//! against the fake GitLab and the simulator's Hetzner (and moto's ECS and EC2), with an sshd on
//! loopback standing in for each machine. Faults: SSH refused at first, a connection dropped
//! mid-script, a refused create, a killed cleanup, a job cancelled while it runs, a Fargate
//! task whose address comes late or never.

#[path = "../support/mod.rs"]
mod support;

mod aws;
mod http;
mod machine;
mod proxy;
mod runner;
mod world;

use runner::{Hooks, Outcome};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use world::{World, hetzner_calls};

fn stage_names(o: &Outcome) -> Vec<&str> {
    o.stages.iter().map(|(s, _)| s.as_str()).collect()
}

fn assert_nothing_left(w: &World) {
    assert!(w.servers().is_empty(), "servers left: {:?}", w.servers());
    assert!(
        w.leftovers().is_empty(),
        "job directories left: {:?}",
        w.leftovers()
    );
    let (code, out, err) = w.executor(&["reap"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("0 deleted, 0 kept, 0 errors"),
        "the store still knows a machine: {out}"
    );
}

#[test]
fn a_job_runs_whole_on_hetzner() {
    let mut w = World::new(&["hetzner"]);
    w.pipeline(&["hetzner"]);
    let count = w.marker("step-runs");
    w.runner.scripts.insert(
        "step_script".into(),
        format!(
            "echo \"hello from $(hostname)\"; echo run >> '{}'",
            count.display()
        ),
    );
    let o = w.job(Hooks::default());
    assert_eq!(o.state, "success", "{o:#?}");
    assert_eq!(
        stage_names(&o),
        [
            "prepare_script",
            "get_sources",
            "restore_cache",
            "download_artifacts",
            "step_script",
            "after_script",
            "archive_cache",
            "upload_artifacts_on_success",
            "cleanup_file_variables"
        ]
    );
    assert_eq!(o.prepare_attempts, 1);
    assert_eq!(o.cleanup_code, Some(0), "{}", o.log);
    assert!(
        o.log.contains("hello from"),
        "the script's output is streamed: {}",
        o.log
    );
    assert!(o.log.contains("with its pinned host key"), "{}", o.log);
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "run\n");
    assert_eq!(w.gitlab_job(o.job)["status"], "success");
    // The create, the delete, and the server types a fresh process reads for billing.
    let calls = hetzner_calls(&w);
    let want: BTreeMap<String, u64> = [
        "GET /v1/server_types",
        "POST /v1/servers",
        "DELETE /v1/servers/{id}",
    ]
    .into_iter()
    .map(|c| (c.to_string(), 1))
    .collect();
    assert_eq!(calls, want, "Hetzner calls of one job");
    // Secrets stay out of the job log.
    assert!(!o.log.contains("PRIVATE KEY") && !o.log.contains(support::sim::HETZNER_TOKEN));
    assert_nothing_left(&w);
}

#[test]
fn ssh_refused_at_first_is_retried_and_the_job_passes() {
    let mut w = World::new(&["hetzner"]);
    w.pipeline(&["hetzner"]);
    let count = w.marker("step-runs");
    w.runner.scripts.insert(
        "prepare_script".into(),
        format!("echo run >> '{}'", count.display()),
    );
    let net_dir = w.net.dir.clone();
    let hooks = Hooks {
        prepared: Some(Box::new(move || {
            std::fs::write(net_dir.join("refuse"), "3").unwrap()
        })),
        ..Hooks::default()
    };
    let before = w.net.connections();
    let o = w.job(hooks);
    assert_eq!(o.state, "success", "{o:#?}");
    let after = w.net.connections();
    assert!(
        after.1 - before.1 >= 3,
        "3 refused connections: {before:?} → {after:?}"
    );
    assert!(
        o.log.contains("failed before the script started"),
        "{}",
        o.log
    );
    assert_eq!(
        std::fs::read_to_string(&count).unwrap(),
        "run\n",
        "prepare_script ran once"
    );
    assert_nothing_left(&w);
}

#[test]
fn a_connection_dropped_mid_script_is_a_system_failure_and_not_run_again() {
    let mut w = World::new(&["hetzner"]);
    w.pipeline(&["hetzner"]);
    let count = w.marker("step-runs");
    // The machine's side of the connection dies while the script runs.
    w.runner.scripts.insert(
        "step_script".into(),
        format!("echo run >> '{}'; kill -9 $PPID; sleep 30", count.display()),
    );
    let o = w.job(Hooks::default());
    assert_eq!(o.state, "failed");
    assert_eq!(
        o.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{o:#?}"
    );
    assert_eq!(
        o.stages.last().unwrap(),
        &("step_script".to_string(), Some(2))
    );
    // Either the marker came before the drop, or it was lost with the connection and the
    // retry found the invocation claimed on the machine: never a second run.
    assert!(
        o.log.contains("not running it again") || o.log.contains("not running it twice"),
        "{}",
        o.log
    );
    assert_eq!(
        std::fs::read_to_string(&count).unwrap(),
        "run\n",
        "the script ran once"
    );
    assert_eq!(o.cleanup_code, Some(0));
    assert_nothing_left(&w);
}

#[test]
fn a_script_failure_is_a_build_failure_with_its_exit_code() {
    let mut w = World::new(&["hetzner"]);
    w.pipeline(&["hetzner"]);
    w.runner
        .scripts
        .insert("step_script".into(), "echo failing; exit 3".into());
    let o = w.job(Hooks::default());
    assert_eq!(
        o.failure_reason.as_deref(),
        Some("script_failure"),
        "{o:#?}"
    );
    assert!(stage_names(&o).ends_with(&[
        "step_script",
        "after_script",
        "archive_cache_on_failure",
        "upload_artifacts_on_failure",
        "cleanup_file_variables"
    ]));
    let code =
        std::fs::read_to_string(w.runner.work.join(format!("job-{}/exit_code", o.job))).unwrap();
    assert_eq!(
        code, "3",
        "BUILD_EXIT_CODE_FILE holds the script's own code"
    );
    assert_nothing_left(&w);
}

#[test]
fn a_refused_create_is_a_system_failure_and_leaves_nothing() {
    let w = World::new(&["hetzner"]);
    w.sim.faults(json!({"hetzner": {"server_quota": 0}}));
    w.pipeline(&["hetzner"]);
    let o = w.job(Hooks::default());
    assert_eq!(
        o.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{o:#?}"
    );
    assert_eq!(
        o.prepare_attempts, 3,
        "gitlab-runner tries prepare three times"
    );
    assert!(o.stages.is_empty());
    assert!(o.log.contains("did not create mayfly-gl-"), "{}", o.log);
    assert_eq!(o.cleanup_code, Some(0), "{}", o.log);
    assert_nothing_left(&w);
}

#[test]
fn a_machine_showing_another_host_key_is_never_trusted() {
    let w = World::new(&["hetzner"]);
    w.pipeline(&["hetzner"]);
    // Whatever answers at the machine's address has a key of its own, not the one made for it.
    let keys = w.dir.path().join("impostor");
    std::fs::create_dir_all(&keys).unwrap();
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(keys.join("key"))
        .status()
        .unwrap();
    assert!(status.success());
    let impostor = machine::Sshd::start(
        &keys,
        &machine::BootKeys {
            host_key: std::fs::read_to_string(keys.join("key")).unwrap(),
            authorized_key: std::fs::read_to_string(keys.join("key.pub")).unwrap(),
        },
    );
    let job = w.runner.request_job(Duration::from_secs(20));
    std::fs::write(w.net.dir.join("port"), impostor.port.to_string()).unwrap();
    let o = w.runner.run_job(&job, Hooks::default());
    assert_eq!(
        o.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{o:#?}"
    );
    assert!(o.stages.is_empty(), "no script went to it");
    assert!(o.log.contains("not the one made for it"), "{}", o.log);
    assert!(
        !o.log.contains("waiting for sshd (attempt 10)"),
        "refused at once, not retried"
    );
    assert_nothing_left(&w);
}

#[test]
fn a_killed_cleanup_leaves_a_machine_the_reaper_deletes() {
    let mut w = World::new(&["hetzner"]);
    w.pipeline(&["hetzner"]);
    // cleanup's provider API hangs (a listener that never answers): gitlab-runner kills it.
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung = w.dir.path().join("hung.toml");
    let text = std::fs::read_to_string(&w.file).unwrap().replace(
        &w.sim.hetzner,
        &format!("http://{}/v1", hang.local_addr().unwrap()),
    );
    std::fs::write(&hung, text).unwrap();
    w.runner.cleanup_env = vec![(
        "MAYFLY_GITLAB_EXECUTOR_FILE".into(),
        hung.display().to_string(),
    )];
    w.runner.cleanup_timeout = Duration::from_secs(3);
    w.runner.graceful_kill = Duration::from_secs(1);
    let o = w.job(Hooks::default());
    assert_eq!(o.state, "success", "{o:#?}");
    assert_ne!(o.cleanup_code, Some(0), "cleanup was cut off: {}", o.log);
    assert_eq!(w.servers().len(), 1, "the machine outlived its cleanup");
    let (code, out, err) = w.executor(&["reap"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("deleted mayfly-gl-{}", o.job)),
        "{out}"
    );
    drop(hang);
    assert_nothing_left(&w);
}

#[test]
fn a_job_cancelled_during_run_stops_and_cleans_up() {
    let mut w = World::new(&["hetzner"]);
    w.pipeline(&["hetzner"]);
    let started = w.marker("started");
    w.runner.scripts.insert(
        "prepare_script".into(),
        format!("echo started > '{}'; sleep 60", started.display()),
    );
    let control = w.sim_control();
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let hooks = Hooks {
        running: Some(Box::new(move || {
            let id = rx.recv().unwrap();
            let until = Instant::now() + Duration::from_secs(30);
            while !started.exists() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            let (s, b) = support::sim::request(
                &control,
                "POST",
                &format!("/_sim/gitlab/jobs/{id}/cancel"),
                Some("{}"),
            );
            assert!(s / 100 == 2, "{s} {b}");
        })),
        ..Hooks::default()
    };
    let job = w.runner.request_job(Duration::from_secs(20));
    let id = job["id"].as_u64().unwrap();
    tx.send(id).unwrap();
    w.boot_when_created(id);
    let t = Instant::now();
    let o = w.runner.run_job(&job, hooks);
    assert!(o.canceled, "{o:#?}");
    assert!(
        t.elapsed() < Duration::from_secs(50),
        "the sleep was cut short"
    );
    assert_eq!(stage_names(&o), ["prepare_script"]);
    // run_exec stops on its own SIGTERM, or on its ssh's (the whole group gets one).
    assert!(
        o.log.contains("SIGTERM: stopping")
            || o.log.contains("ended by SIGTERM")
            || o.log.contains("stopped by signal 15"),
        "run_exec was told to stop: {}",
        o.log
    );
    assert_eq!(w.gitlab_job(id)["status"], "canceled");
    assert_eq!(o.cleanup_code, Some(0), "{}", o.log);
    assert_nothing_left(&w);
}
