//! The GitLab custom executor's numbers: time from `prepare` started to the first `run` stage
//! started, and provider API calls per job, on the simulator's Hetzner and on moto's ECS, whole
//! jobs driven by the gitlab-runner harness of the tests. Boot delays are fixed (the fake
//! Hetzner's; moto's tasks are there at once). Needs MAYFLY_PYTHON for moto (ECS is skipped
//! without it) and /usr/sbin/sshd. Prints; asserts nothing.
//! `cargo bench -p mayfly --bench gitlab_executor --profile dev` (about 80 s: not in scripts/test).

#![allow(dead_code)] // the tests' modules, of which the benchmark uses a part

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "../tests/gitlab_executor/http.rs"]
mod http;
#[path = "../tests/gitlab_executor/machine.rs"]
mod machine;
#[path = "../tests/gitlab_executor/proxy.rs"]
mod proxy;
#[path = "../tests/gitlab_executor/runner.rs"]
mod runner;
#[path = "../tests/gitlab_executor/world.rs"]
mod world;

use runner::Hooks;
use serde_json::json;
use std::time::Duration;
use world::{World, addr, hetzner_calls, moto_ecs};

const JOBS: usize = 5;
const BOOT_SECS: f64 = 1.0;

fn summary(name: &str, times: &mut [Duration], calls_per_job: f64, detail: &str) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<22} prepare→first run: median {:>6.0} ms, max {:>6.0} ms ({} jobs)   API calls per job: {calls_per_job:.1} ({detail})",
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        times.len()
    );
}

fn hetzner() {
    let w = World::new(&["hetzner"]);
    w.sim
        .faults(json!({"hetzner": {"boot_delay_secs": BOOT_SECS}}));
    let mut times = Vec::new();
    for _ in 0..JOBS {
        w.pipeline(&["hetzner"]);
        let o = w.job(Hooks::default());
        assert_eq!(o.state, "success", "{o:#?}");
        times.push(o.prepare_to_first_run);
    }
    let calls = hetzner_calls(&w);
    let total: u64 = calls.values().sum();
    let detail = calls
        .iter()
        .map(|(k, v)| format!("{k} ×{:.1}", *v as f64 / JOBS as f64))
        .collect::<Vec<_>>()
        .join(", ");
    summary(
        &format!("hetzner (boot {BOOT_SECS} s)"),
        &mut times,
        total as f64 / JOBS as f64,
        &detail,
    );
}

fn ecs() {
    if std::env::var("MAYFLY_PYTHON").map_or(true, |p| p.is_empty()) {
        println!("aws-ecs: skipped (MAYFLY_PYTHON is not set: scripts/py-env)");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (moto, subnet, group) = rt.block_on(moto_ecs());
    let counting = proxy::Counting::start(&addr(moto.url()));
    let w = World::ecs(&["fargate"], &counting.url, moto.url(), &subnet, &group);
    let mut times = Vec::new();
    for _ in 0..JOBS {
        w.pipeline(&["fargate"]);
        let o = w.job(Hooks::default());
        assert_eq!(o.state, "success", "{o:#?}");
        times.push(o.prepare_to_first_run);
    }
    let counts = counting.counts();
    let detail = counts
        .iter()
        .map(|(k, v)| format!("{k} ×{:.1}", *v as f64 / JOBS as f64))
        .collect::<Vec<_>>()
        .join(", ");
    summary(
        "aws-ecs (moto)",
        &mut times,
        counting.total() as f64 / JOBS as f64,
        &detail,
    );
    println!(
        "{:<22} the seed's Fargate driver: RunTask + a DescribeTasks poll until RUNNING (k ≥ 1 calls) + StopTask = 2 + k per job",
        ""
    );
    drop(moto);
}

fn main() {
    if !std::path::Path::new(machine::SSHD).exists() {
        println!(
            "gitlab-executor bench: skipped, no {} (apt-get install openssh-server)",
            machine::SSHD
        );
        return;
    }
    hetzner();
    ecs();
}
