//! Jobs on AWS machines through moto (`MAYFLY_PYTHON`): an ECS Fargate task and an EC2
//! instance, each reached by its stand-in sshd, with the AWS calls of each job counted by the
//! proxy in front of moto, which also answers as ECS does while a task's address is not there.

use super::proxy;
use super::runner::Hooks;
use super::world::{World, addr, moto_ec2, moto_ecs};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[test]
#[ignore = "needs moto: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
fn a_job_runs_whole_on_an_ecs_fargate_task() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (moto, subnet, group) = rt.block_on(moto_ecs());
    let counting = proxy::Counting::start(&addr(moto.url()));
    let mut w = World::ecs(&["fargate"], &counting.url, moto.url(), &subnet, &group);
    w.pipeline(&["fargate"]);
    let count = w.marker("step-runs");
    w.runner.scripts.insert(
        "step_script".into(),
        format!("echo run >> '{}'", count.display()),
    );
    let o = w.job(Hooks::default());
    assert_eq!(o.state, "success", "{o:#?}");
    assert!(o.log.contains("from pool fargate (aws-ecs)"), "{}", o.log);
    eprintln!("AWS calls of the job: {:?}", counting.counts());
    // The Fargate driver's RunTask, DescribeTasks and StopTask, plus what a fresh process of
    // the provider reads before its RunTask (families, the name's idempotency check).
    let counts = counting.counts();
    let want: BTreeMap<String, usize> = [
        "ListTaskDefinitionFamilies",
        "DescribeTaskDefinition",
        "ListTasks",
        "DescribeTasks",
        "RunTask",
        "StopTask",
    ]
    .into_iter()
    .map(|op| (op.to_string(), 1))
    .collect();
    assert_eq!(counts, want, "AWS calls of one job");
    let before_reap = counting.total();
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "run\n");
    assert_eq!(o.cleanup_code, Some(0), "{}", o.log);
    assert!(w.leftovers().is_empty());
    // The task was stopped: nothing of the controller's is left running.
    let (code, out, err) = w.executor(&["reap"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 deleted, 0 kept, 0 errors"), "{out}");
    eprintln!(
        "job: {before_reap} AWS calls; reap: {}",
        counting.total() - before_reap
    );
    drop(moto);
}

/// Calls by operation, as `counting` counts them.
fn calls(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(op, n)| (op.to_string(), *n)).collect()
}

/// The ECS tasks of cluster `ci` in moto (at `host:port`): `(lastStatus, desiredStatus)`.
fn ecs_tasks(moto: &str) -> Vec<(String, String)> {
    use mayfly_provider_aws::wire;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let aws =
            mayfly_provider_aws::AwsSettings::emulator(&format!("http://{moto}"), "us-east-1")
                .connect()
                .await
                .unwrap();
        let ecs = |op: &str, body: serde_json::Value| {
            let (aws, target) = (
                aws.clone(),
                format!("AmazonEC2ContainerServiceV20141113.{op}"),
            );
            async move { aws.json(wire::ECS, &target, &body).await.unwrap() }
        };
        let mut arns = Vec::new();
        for status in ["RUNNING", "STOPPED"] {
            let page = ecs(
                "ListTasks",
                json!({"cluster": "ci", "desiredStatus": status}),
            )
            .await;
            arns.extend(page["taskArns"].as_array().cloned().unwrap_or_default());
        }
        if arns.is_empty() {
            return Vec::new();
        }
        let tasks = ecs("DescribeTasks", json!({"cluster": "ci", "tasks": arns})).await;
        tasks["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["lastStatus"].as_str().unwrap_or("").to_string(),
                    t["desiredStatus"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    })
}

/// The EC2 instances named `name` in moto (at `host:port`), by state.
fn ec2_states(moto: &str, name: &str) -> Vec<String> {
    use mayfly_provider_aws::wire;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let aws =
            mayfly_provider_aws::AwsSettings::emulator(&format!("http://{moto}"), "us-east-1")
                .connect()
                .await
                .unwrap();
        let mut p = wire::Params::new();
        p.set("Filter.1.Name", "tag:Name");
        p.set("Filter.1.Value.1", name);
        let out = aws
            .query(wire::EC2, "2016-11-15", "DescribeInstances", &p)
            .await
            .unwrap();
        out.items("reservationSet")
            .flat_map(|r| r.items("instancesSet"))
            .filter_map(|i| i.value("instanceState/name"))
            .collect()
    })
}

#[test]
#[ignore = "needs moto: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
fn a_job_runs_whole_on_an_ec2_instance() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (moto, net) = rt.block_on(moto_ec2());
    let counting = proxy::Counting::start(&addr(moto.url()));
    // As EC2 does, RunInstances answers before the instance has its public IP.
    counting.pending_instances();
    let mut w = World::ec2(&["ec2"], &counting.url, moto.url(), &net);
    w.pipeline(&["ec2"]);
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
    assert_eq!(o.prepare_attempts, 1);
    assert!(o.log.contains("from pool ec2 (aws-ec2)"), "{}", o.log);
    assert!(o.log.contains("with its pinned host key"), "{}", o.log);
    assert!(o.log.contains("hello from"), "{}", o.log);
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "run\n");
    assert_eq!(o.cleanup_code, Some(0), "{}", o.log);
    assert!(!o.log.contains("PRIVATE KEY"), "{}", o.log);
    eprintln!("AWS calls of the job: {:?}", counting.counts());
    // The name's idempotency check, the AMI's root device, the subnet's zone, the launch, one
    // read for the public IP, and the terminate.
    let want = calls(&[
        ("DescribeInstances", 2),
        ("DescribeImages", 1),
        ("DescribeSubnets", 1),
        ("RunInstances", 1),
        ("TerminateInstances", 1),
    ]);
    assert_eq!(counting.counts(), want, "AWS calls of one job");
    let name = format!("mayfly-gl-{}", o.job);
    let states = ec2_states(&addr(moto.url()), &name);
    assert!(
        !states.is_empty()
            && states
                .iter()
                .all(|s| s == "terminated" || s == "shutting-down"),
        "the instance was terminated: {states:?}"
    );
    assert!(w.leftovers().is_empty(), "{:?}", w.leftovers());
    let (code, out, err) = w.executor(&["reap"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 deleted, 0 kept, 0 errors"), "{out}");
    drop(moto);
}

#[test]
#[ignore = "needs moto: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
fn prepare_reads_a_fargate_task_until_its_address_appears() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (moto, subnet, group) = rt.block_on(moto_ecs());
    let counting = proxy::Counting::start(&addr(moto.url()));
    // As on real Fargate: no address in RunTask's answer, nor in the next three reads.
    counting.provision_tasks_for(3);
    let w = World::ecs(&["fargate"], &counting.url, moto.url(), &subnet, &group);
    w.pipeline(&["fargate"]);
    let o = w.job(Hooks::default());
    assert_eq!(o.state, "success", "{o:#?}");
    assert_eq!(o.prepare_attempts, 1, "{}", o.log);
    assert!(o.log.contains("address (read 1)"), "{}", o.log);
    assert_eq!(o.cleanup_code, Some(0), "{}", o.log);
    eprintln!("AWS calls of the job: {:?}", counting.counts());
    // a_job_runs_whole_on_an_ecs_fargate_task's calls, and four more DescribeTasks: three
    // without the address, the one with it.
    let want = calls(&[
        ("ListTaskDefinitionFamilies", 1),
        ("DescribeTaskDefinition", 1),
        ("ListTasks", 1),
        ("DescribeTasks", 5),
        ("RunTask", 1),
        ("StopTask", 1),
    ]);
    assert_eq!(counting.counts(), want, "AWS calls of one job");
    assert_nothing_left_on_ecs(&w, &addr(moto.url()));
    drop(moto);
}

#[test]
#[ignore = "needs moto: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
fn a_task_that_never_gets_an_address_is_a_system_failure_and_leaves_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (moto, subnet, group) = rt.block_on(moto_ecs());
    let counting = proxy::Counting::start(&addr(moto.url()));
    counting.provision_tasks_for(usize::MAX);
    let w = World::ecs(&["fargate"], &counting.url, moto.url(), &subnet, &group);
    let text = std::fs::read_to_string(&w.file).unwrap();
    assert!(text.contains("ready_timeout_secs = 30"));
    std::fs::write(
        &w.file,
        text.replace("ready_timeout_secs = 30", "ready_timeout_secs = 3"),
    )
    .unwrap();
    w.pipeline(&["fargate"]);
    let t = Instant::now();
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
    assert!(o.stages.is_empty(), "no script ran");
    assert!(
        o.log.contains("got no address within the ready timeout"),
        "{}",
        o.log
    );
    // Each attempt made its own task under a name of its own: ECS refuses a client token used
    // again with other parameters (the new attempt's keys).
    assert!(
        o.log.contains(&format!("mayfly-gl-{}-3", o.job)),
        "{}",
        o.log
    );
    assert!(!o.log.contains("ConflictException"), "{}", o.log);
    // Three attempts of 3 s each, 3 s apart, and no attempt cut short.
    let took = t.elapsed();
    assert!(took < Duration::from_secs(40), "{took:?}");
    assert_eq!(o.cleanup_code, Some(0), "{}", o.log);
    let counts = counting.counts();
    eprintln!("AWS calls of the job: {counts:?}");
    // Each attempt's task is stopped: the second and third attempts stop the one before
    // theirs, cleanup the last.
    assert_eq!(counts.get("RunTask"), Some(&3), "{counts:?}");
    assert_eq!(counts.get("StopTask"), Some(&3), "{counts:?}");
    // Each attempt reads its task at 0.2, 0.6, 1.4, 2.4 s and once more at the deadline (3 s):
    // five reads at most, fewer when a read itself is slow; plus the reads of the deletes.
    let reads = counts.get("DescribeTasks").copied().unwrap_or(0);
    assert!((3 * 3 + 3..=3 * 5 + 3).contains(&reads), "{counts:?}");
    assert_nothing_left_on_ecs(&w, &addr(moto.url()));
    drop(moto);
}

/// No task of the job meant to run in moto, no job directory, nothing the store knows.
fn assert_nothing_left_on_ecs(w: &World, moto: &str) {
    let tasks = ecs_tasks(moto);
    assert!(!tasks.is_empty());
    assert!(
        tasks.iter().all(|(_, desired)| desired == "STOPPED"),
        "every task was stopped: {tasks:?}"
    );
    assert!(w.leftovers().is_empty(), "{:?}", w.leftovers());
    let (code, out, err) = w.executor(&["reap"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 deleted, 0 kept, 0 errors"), "{out}");
}
