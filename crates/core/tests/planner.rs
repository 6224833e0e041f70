//! Scenario tests for the planner: one behaviour each, with the reason a person would read.

mod common;

use common::*;
use mayfly_core::*;

const LINUX: &[&str] = &["self-hosted", "linux", "x64"];

#[test]
fn a_queued_job_gets_one_instance_named_after_it() {
    let cfg = config(vec![pool("linux", LINUX)]);
    let snap = Snapshot {
        jobs: vec![job(42, &["self-hosted", "linux"])],
        ..Default::default()
    };
    let p = plan(&snap, &cfg, at(72));
    let c = creates(&p);
    assert_eq!(c.len(), 1);
    let Action::Create {
        name,
        labels,
        spec,
        job,
        reason,
        ..
    } = c[0]
    else {
        unreachable!()
    };
    assert_eq!(name, "mayfly-linux-42-1");
    assert_eq!(labels, &common::labels(LINUX));
    assert_eq!(spec.types, ["cx23"]);
    assert_eq!(job.as_ref().map(|k| k.id), Some(42));
    assert_eq!(reason.to_string(), "job github:acme/app#42 queued for 30s");
}

#[test]
fn idle_runners_are_counted_one_for_one() {
    let cfg = config(vec![pool("linux", LINUX)]);
    let snap = Snapshot {
        jobs: vec![job(1, &["linux"]), job(2, &["linux"]), job(3, &["linux"])],
        instances: vec![instance(
            "mayfly-linux-a",
            "linux",
            InstanceState::Running,
            LINUX,
        )],
        runners: vec![runner(7, "mayfly-linux-a", false, LINUX)],
        refused: Default::default(),
    };
    let p = plan(&snap, &cfg, at(10));
    assert_eq!(creates(&p).len(), 2, "{:#?}", p.actions);
    assert_eq!(
        p.assignments
            .iter()
            .filter(|a| a.how == How::Existing)
            .count(),
        1
    );
}

#[test]
fn an_instance_made_for_a_job_serves_it_and_nothing_more_is_created() {
    let cfg = config(vec![pool("linux", LINUX)]);
    let mut booting = instance("mayfly-linux-5-1", "linux", InstanceState::Starting, LINUX);
    booting.job = Some(job(5, &[]).key);
    let snap = Snapshot {
        jobs: vec![job(5, &["linux"])],
        instances: vec![booting],
        runners: vec![],
        refused: Default::default(),
    };
    let p = plan(&snap, &cfg, at(20));
    assert!(p.actions.is_empty(), "{:#?}", p.actions);
    assert_eq!(p.assignments[0].instance, "mayfly-linux-5-1");
}

#[test]
fn a_busy_machine_made_for_a_job_the_store_still_holds_as_queued_serves_it() {
    // The runner took a job before the store heard that job 5 started: a single-use runner
    // serves one job, so job 5's demand is met and a second machine would be waste. Powered off,
    // the machine no longer counts: it may have failed, and job 5 gets capacity again.
    let cfg = config(vec![pool("linux", LINUX)]);
    let mut running = instance("mayfly-linux-5-1", "linux", InstanceState::Running, LINUX);
    running.job = Some(job(5, &[]).key);
    let snap = Snapshot {
        jobs: vec![job(5, &["linux"])],
        instances: vec![running.clone()],
        runners: vec![runner(1, "mayfly-linux-5-1", true, LINUX)],
        refused: Default::default(),
    };
    let p = plan(&snap, &cfg, at(20));
    assert!(p.actions.is_empty(), "{:#?}", p.actions);
    assert_eq!(p.assignments[0].instance, "mayfly-linux-5-1");
    assert_eq!(p.assignments[0].how, How::Assumed);

    // Once the forge says its runner runs job 6, job 5 waits for nothing: it gets a machine.
    let mut other = job(6, &["linux"]);
    other.status = JobStatus::InProgress;
    other.runner = Some("mayfly-linux-5-1".into());
    let known = Snapshot {
        jobs: vec![job(5, &["linux"]), other],
        ..snap.clone()
    };
    assert_eq!(creates(&plan(&known, &cfg, at(20))).len(), 1);

    let mut off = running;
    off.state = InstanceState::Off;
    let snap = Snapshot {
        instances: vec![off],
        runners: vec![],
        ..snap
    };
    let p = plan(&snap, &cfg, at(20));
    assert_eq!(p.assignments.len(), 1);
    assert_eq!(
        p.assignments[0].how,
        How::Reuse,
        "its paid hour serves job 5 again"
    );
}

#[test]
fn a_busy_runner_whose_job_is_unknown_counts_for_the_oldest_queued_job_it_fits() {
    // A standby runner went busy; the store has not heard which job it took: one of the queued
    // jobs it fits is running on it, so only the other gets a machine. Once the forge names its
    // job, the count is exact again.
    let cfg = config(vec![pool("linux", LINUX)]);
    let standby = instance("mayfly-linux-s1", "linux", InstanceState::Running, LINUX);
    let snap = Snapshot {
        jobs: vec![job(1, &["linux"]), job(2, &["linux"])],
        instances: vec![standby],
        runners: vec![runner(7, "mayfly-linux-s1", true, LINUX)],
        refused: Default::default(),
    };
    let p = plan(&snap, &cfg, at(10));
    assert_eq!(creates(&p).len(), 1, "{:#?}", p.actions);
    let assumed: Vec<_> = p
        .assignments
        .iter()
        .filter(|a| a.how == How::Assumed)
        .collect();
    assert_eq!(assumed.len(), 1);
    assert_eq!(assumed[0].job, job(1, &[]).key, "the oldest");

    let mut elsewhere = job(3, &["linux"]);
    elsewhere.status = JobStatus::InProgress;
    elsewhere.runner = Some("mayfly-linux-s1".into());
    let mut known = snap.clone();
    known.jobs.push(elsewhere);
    assert_eq!(creates(&plan(&known, &cfg, at(10))).len(), 2);
}

#[test]
fn a_repository_runner_takes_jobs_of_its_own_repository_only() {
    let mut cfg = config(vec![pool("linux", LINUX)]);
    cfg.runner_scope = RunnerScope::Repository {
        standby: Some("acme/other".into()),
    };
    let mut web_job = job(1, &["linux"]);
    web_job.key.scope = "acme/web".into();
    let app_job = job(2, &["linux"]);
    let mut idle = instance("mayfly-linux-1-1", "linux", InstanceState::Running, LINUX);
    idle.job = Some(JobKey {
        scope: "acme/web".into(),
        id: 99,
        ..web_job.key.clone()
    });
    let snap = Snapshot {
        jobs: vec![web_job.clone(), app_job.clone()],
        instances: vec![idle],
        runners: vec![runner(7, "mayfly-linux-1-1", false, LINUX)],
        refused: Default::default(),
    };
    let p = plan(&snap, &cfg, at(10));
    let served_by_idle: Vec<_> = p
        .assignments
        .iter()
        .filter(|a| a.how == How::Existing)
        .map(|a| a.job.clone())
        .collect();
    assert_eq!(
        served_by_idle,
        [web_job.key],
        "the acme/web runner takes the acme/web job"
    );
    assert_eq!(
        creates(&p).len(),
        1,
        "the acme/app job gets its own machine"
    );

    // Organization runners (shared) can take either.
    cfg.runner_scope = RunnerScope::Shared;
    assert_eq!(creates(&plan(&snap, &cfg, at(10))).len(), 1);
    assert_eq!(app_job.key.scope.as_ref(), job(3, &[]).key.scope.as_ref());
}

#[test]
fn a_runner_that_lacks_a_label_does_not_count_as_supply() {
    let cfg = config(vec![
        pool("linux", LINUX),
        pool("gpu", &["self-hosted", "gpu"]),
    ]);
    let snap = Snapshot {
        jobs: vec![job(1, &["self-hosted", "gpu"])],
        instances: vec![instance(
            "mayfly-linux-a",
            "linux",
            InstanceState::Running,
            LINUX,
        )],
        runners: vec![runner(7, "mayfly-linux-a", false, LINUX)],
        refused: Default::default(),
    };
    let p = plan(&snap, &cfg, at(1));
    let Action::Create { pool, .. } = creates(&p)[0] else {
        unreachable!()
    };
    assert_eq!(pool, "gpu");
}

#[test]
fn dynamic_labels_override_the_pool_spec_and_stay_on_the_runner() {
    let cfg = config(vec![pool("linux", LINUX)]);
    let l = [
        "self-hosted",
        "type-cpx32",
        "type-cx33",
        "in-hel1",
        "image-arm-snapshot-runner-v2",
    ];
    let snap = Snapshot {
        jobs: vec![job(9, &l)],
        ..Default::default()
    };
    let p = plan(&snap, &cfg, at(1));
    let Action::Create { spec, labels, .. } = creates(&p)[0] else {
        unreachable!()
    };
    assert_eq!(spec.types, ["cpx32", "cx33"]);
    assert_eq!(spec.locations, ["hel1"]);
    assert_eq!(spec.image.to_string(), "arm:snapshot:runner-v2");
    assert!(common::labels(&l).is_subset_of(labels));
}

#[test]
fn jobs_no_pool_serves_wait_with_a_reason() {
    let cfg = config(vec![pool("linux", LINUX)]);
    let snap = Snapshot {
        jobs: vec![job(1, &["windows"]), job(2, &["image-vax-system-x"])],
        ..Default::default()
    };
    let p = plan(&snap, &cfg, at(1));
    assert!(p.actions.is_empty());
    assert_eq!(
        p.waiting[0].why.to_string(),
        "no pool serves labels [windows]"
    );
    assert!(
        p.waiting[1].why.to_string().contains("image-vax-system-x"),
        "{}",
        p.waiting[1].why
    );
}

#[test]
fn the_global_limit_counts_powered_off_and_pending_instances() {
    let mut cfg = config(vec![pool("linux", LINUX)]);
    cfg.limits.max_instances = Some(3);
    let mut pending = instance("mayfly-linux-p", "linux", InstanceState::Pending, LINUX);
    pending.created_at = at(0);
    let mut off = instance("mayfly-linux-o", "linux", InstanceState::Off, LINUX);
    off.billing = None;
    off.state_since = at(0);
    let snap = Snapshot {
        jobs: (1..=5)
            .map(|i| job(i, &["gpu-less", "linux"][1..]))
            .collect(),
        instances: vec![pending, off],
        runners: vec![],
        refused: Default::default(),
    };
    let p = plan(&snap, &cfg, at(10));
    // The pending instance serves one job, one create fits under the limit, three wait.
    assert_eq!(creates(&p).len(), 1, "{:#?}", p.actions);
    assert_eq!(p.waiting.len(), 3);
    assert_eq!(
        p.waiting[0].why.to_string(),
        "global limit of 3 instances reached"
    );
}

#[test]
fn pool_label_set_and_workflow_run_limits_hold() {
    let mut cfg = config(vec![pool("linux", LINUX)]);
    cfg.pools[0].max = Some(2);
    let jobs: Vec<Job> = (1..=4).map(|i| job(i, &["linux"])).collect();
    let p = plan(
        &Snapshot {
            jobs: jobs.clone(),
            ..Default::default()
        },
        &cfg,
        at(10),
    );
    assert_eq!(creates(&p).len(), 2);
    assert_eq!(
        p.waiting[0].why.to_string(),
        "pool linux limit of 2 instances reached"
    );

    let mut cfg = config(vec![pool("linux", LINUX)]);
    cfg.limits.max_per_label_set = Some(1);
    let p = plan(
        &Snapshot {
            jobs: jobs.clone(),
            ..Default::default()
        },
        &cfg,
        at(10),
    );
    assert_eq!(creates(&p).len(), 1);
    assert!(
        p.waiting[0]
            .why
            .to_string()
            .starts_with("limit of 1 instances for labels [linux,self-hosted,x64]")
    );

    // Jobs 10..=13 are in workflow run 1, job 20 in run 2.
    let mut cfg = config(vec![pool("linux", LINUX)]);
    cfg.limits.max_per_workflow_run = Some(2);
    let jobs: Vec<Job> = [10, 11, 12, 13, 20]
        .iter()
        .map(|&i| job(i, &["linux"]))
        .collect();
    let p = plan(
        &Snapshot {
            jobs,
            ..Default::default()
        },
        &cfg,
        at(30),
    );
    assert_eq!(creates(&p).len(), 3);
    assert_eq!(p.waiting.len(), 2);
    assert_eq!(
        p.waiting[0].why.to_string(),
        "limit of 2 instances for workflow run 1 reached"
    );
}

#[test]
fn standby_keeps_idle_runners_and_deletes_only_the_excess() {
    let mut cfg = config(vec![pool("linux", LINUX)]);
    cfg.pools[0].standby = 2;
    // Nothing yet: two standby creates.
    let p = plan(&Snapshot::default(), &cfg, at(0));
    assert_eq!(creates(&p).len(), 2);
    assert_eq!(
        p.actions[0].reason().to_string(),
        "pool linux keeps 2 idle runner(s) ready and has 0"
    );

    // Three idle runners long past the idle deadline: two stay as standby, one goes.
    let names = ["mayfly-linux-a", "mayfly-linux-b", "mayfly-linux-c"];
    let (instances, runners) = idle_fleet("linux", &names, LINUX);
    let snap = Snapshot {
        jobs: vec![],
        instances,
        runners,
        refused: Default::default(),
    };
    let p = plan(&snap, &cfg, at(3600));
    assert_eq!(deleted(&p), ["mayfly-linux-c"]);
    assert!(creates(&p).is_empty());
    let Action::Delete {
        runner_id, reason, ..
    } = &p.actions[0]
    else {
        unreachable!()
    };
    assert_eq!(
        *runner_id,
        Some(2),
        "the runner is deregistered with its instance"
    );
    assert_eq!(reason.to_string(), "runner idle for 1h00m (deadline 3m00s)");
}

#[test]
fn a_job_waiting_for_a_limit_takes_a_new_standby_runner() {
    let mut cfg = config(vec![pool("linux", LINUX)]);
    cfg.pools[0].standby = 1;
    cfg.limits.max_per_workflow_run = Some(1);
    let snap = Snapshot {
        jobs: vec![job(10, &["linux"]), job(11, &["linux"])],
        ..Default::default()
    };
    let p = plan(&snap, &cfg, at(5));
    // One create for job 10; job 11 waits for the run limit but GitHub will hand it the
    // standby runner, so the standby gets one more.
    assert_eq!(creates(&p).len(), 3, "{:#?}", p.actions);
    assert!(p.waiting.is_empty());
    let again = plan(&apply::apply(&snap, &p, CTRL, at(5)), &cfg, at(5));
    assert!(again.actions.is_empty(), "{:#?}", again.actions);
}

#[test]
fn deadlines_delete_zombies_powered_off_and_old_instances() {
    let mut cfg = config(vec![pool("linux", LINUX)]);
    cfg.recycling.enabled = false;
    let zombie = instance("mayfly-linux-z", "linux", InstanceState::Running, LINUX);
    let off = instance("mayfly-linux-o", "linux", InstanceState::Off, LINUX);
    let mut old = instance("mayfly-linux-old", "linux", InstanceState::Running, LINUX);
    old.created_at = at(-7 * 3600);
    let snap = Snapshot {
        jobs: vec![],
        instances: vec![zombie, off, old],
        runners: vec![runner(3, "mayfly-linux-old", false, LINUX)],
        refused: Default::default(),
    };
    let p = plan(&snap, &cfg, at(200));
    let reasons: Vec<String> = p.actions.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        reasons,
        [
            "delete mayfly-linux-o: powered off for 3m20s (deadline 60s)",
            "delete mayfly-linux-old: 7h03m old, past the maximum lifetime of 6h00m",
            "delete mayfly-linux-z: no runner registered 3m20s after start (deadline 3m00s)",
        ]
    );
    // Before the deadlines nothing happens.
    assert!(
        plan(&snap, &cfg, at(50))
            .actions
            .iter()
            .all(|a| a.subject() == "mayfly-linux-old")
    );
}

#[test]
fn a_busy_runner_is_never_deleted_even_past_every_deadline() {
    let cfg = config(vec![pool("linux", LINUX)]);
    let mut i = instance("mayfly-linux-b", "linux", InstanceState::Running, LINUX);
    i.created_at = at(-100 * 3600);
    let snap = Snapshot {
        jobs: vec![],
        instances: vec![i],
        runners: vec![runner(1, "mayfly-linux-b", true, LINUX)],
        refused: Default::default(),
    };
    assert!(plan(&snap, &cfg, at(0)).actions.is_empty());
}

#[test]
fn powered_off_machines_with_paid_time_left_are_reused_then_deleted_at_the_margin() {
    let cfg = config(vec![pool("linux", LINUX)]);
    let off = instance("mayfly-linux-o", "linux", InstanceState::Off, LINUX);
    let snap = Snapshot {
        jobs: vec![job(1, &["linux"])],
        instances: vec![off.clone()],
        runners: vec![],
        refused: Default::default(),
    };
    // Ten minutes in: reuse instead of a create.
    let p = plan(&snap, &cfg, at(600));
    assert!(creates(&p).is_empty());
    assert!(
        matches!(&p.actions[..], [Action::Reuse { instance, job: Some(_), .. }] if instance == "mayfly-linux-o")
    );
    assert_eq!(p.assignments[0].how, How::Reuse);

    // Without a job it is kept (no action) until minute 50, then deleted.
    let idle = Snapshot {
        jobs: vec![],
        instances: vec![off],
        runners: vec![],
        refused: Default::default(),
    };
    assert!(plan(&idle, &cfg, at(600)).actions.is_empty());
    let p = plan(&idle, &cfg, at(51 * 60));
    assert_eq!(deleted(&p), ["mayfly-linux-o"]);
    assert!(
        p.actions[0]
            .reason()
            .to_string()
            .starts_with("paid time ends at")
    );
}

#[test]
fn a_kept_machine_of_another_type_is_not_reused() {
    let cfg = config(vec![pool("linux", LINUX)]);
    let off = instance("mayfly-linux-o", "linux", InstanceState::Off, LINUX);
    let snap = Snapshot {
        jobs: vec![job(1, &["linux", "type-cx53"])],
        instances: vec![off],
        runners: vec![],
        refused: Default::default(),
    };
    let p = plan(&snap, &cfg, at(600));
    assert_eq!(creates(&p).len(), 1);
    assert!(!p.actions.iter().any(|a| matches!(a, Action::Reuse { .. })));
}

#[test]
fn foreign_instances_are_neither_touched_nor_counted() {
    let mut cfg = config(vec![pool("linux", LINUX)]);
    cfg.limits.max_instances = Some(1);
    let mut foreign = instance("other-linux-z", "linux", InstanceState::Running, LINUX);
    foreign.controller = Some("other".into());
    let snap = Snapshot {
        jobs: vec![job(1, &["linux"])],
        instances: vec![foreign],
        runners: vec![],
        refused: Default::default(),
    };
    let p = plan(&snap, &cfg, at(3600 * 24));
    assert_eq!(p.actions.len(), 1);
    assert!(matches!(p.actions[0], Action::Create { .. }));
}

#[test]
fn orphan_runners_are_removed_unless_busy_or_not_ours() {
    let cfg = config(vec![pool("linux", LINUX)]);
    let snap = Snapshot {
        jobs: vec![],
        instances: vec![],
        runners: vec![
            runner(1, "mayfly-linux-gone", false, LINUX),
            runner(2, "mayfly-linux-busy", true, LINUX),
            runner(3, "laptop", false, LINUX),
        ],
        refused: Default::default(),
    };
    let p = plan(&snap, &cfg, at(0));
    assert_eq!(p.actions.len(), 1);
    assert_eq!(
        p.actions[0].to_string(),
        "remove runner mayfly-linux-gone: runner has no instance"
    );
}

#[test]
fn an_expired_intent_is_dropped_and_its_job_gets_a_new_name() {
    let cfg = config(vec![pool("linux", LINUX)]);
    let mut pending = instance("mayfly-linux-1-1", "linux", InstanceState::Pending, LINUX);
    pending.job = Some(job(1, &[]).key);
    let mut j = job(1, &["linux"]);
    j.instances_created = 1;
    let snap = Snapshot {
        jobs: vec![j],
        instances: vec![pending],
        runners: vec![],
        refused: Default::default(),
    };
    let p = plan(&snap, &cfg, at(600));
    assert!(matches!(&p.actions[0], Action::DropIntent { name, .. } if name == "mayfly-linux-1-1"));
    assert!(matches!(&p.actions[1], Action::Create { name, .. } if name == "mayfly-linux-1-1-1"));
}

#[test]
fn deletes_come_before_creates() {
    let cfg = config(vec![pool("linux", LINUX)]);
    let zombie = instance("mayfly-linux-z", "linux", InstanceState::Running, LINUX);
    let snap = Snapshot {
        jobs: vec![job(1, &["gpu"]), job(2, &["linux"])],
        instances: vec![zombie],
        runners: vec![],
        refused: Default::default(),
    };
    let p = plan(&snap, &cfg, at(1000));
    assert!(matches!(p.actions[0], Action::Delete { .. }));
    assert!(matches!(p.actions[1], Action::Create { .. }));
}

#[test]
fn meta_labels_and_prefix_route_like_the_peer() {
    let mut cfg = config(vec![pool("linux", LINUX)]);
    cfg.labels.prefix = "hz-".into();
    cfg.labels.meta.insert(
        "big".into(),
        vec!["hz-type-ccx33".into(), "hz-in-ash".into()],
    );
    let snap = Snapshot {
        jobs: vec![job(1, &["self-hosted", "big"])],
        ..Default::default()
    };
    let p = plan(&snap, &cfg, at(1));
    let Action::Create { spec, labels, .. } = creates(&p)[0] else {
        unreachable!()
    };
    assert_eq!(spec.types, ["ccx33"]);
    assert_eq!(spec.locations, ["ash"]);
    assert!(
        labels.contains("big"),
        "the runner carries the meta label so GitHub assigns the job"
    );
}

#[test]
fn planning_is_deterministic_whatever_the_input_order() {
    let mut cfg = config(vec![pool("linux", LINUX)]);
    cfg.pools[0].standby = 1;
    let names = ["mayfly-linux-a", "mayfly-linux-b", "mayfly-linux-c"];
    let (instances, runners) = idle_fleet("linux", &names, LINUX);
    let mut snap = Snapshot {
        jobs: (1..=6).map(|i| job(i, &["linux"])).collect(),
        instances,
        runners,
        refused: Default::default(),
    };
    let a = plan(&snap, &cfg, at(100));
    snap.jobs.reverse();
    snap.instances.reverse();
    snap.runners.reverse();
    assert_eq!(a, plan(&snap, &cfg, at(100)));
}

// The three cases below were found by the property tests; each pins one fix.

#[test]
fn a_kept_machine_is_reused_once_even_when_standby_also_wants_it() {
    let mut cfg = config(vec![pool("linux", LINUX)]);
    cfg.pools[0].standby = 1;
    let off = instance("mayfly-linux-o", "linux", InstanceState::Off, LINUX);
    let snap = Snapshot {
        jobs: vec![job(1, &["linux"])],
        instances: vec![off],
        runners: vec![],
        refused: Default::default(),
    };
    let p = plan(&snap, &cfg, at(600));
    let reuses = p
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Reuse { .. }))
        .count();
    assert_eq!(reuses, 1, "{:#?}", p.actions);
    assert_eq!(creates(&p).len(), 1, "the standby gets a new machine");
}

#[test]
fn powered_off_machines_do_not_count_toward_a_workflow_run() {
    let mut cfg = config(vec![pool("linux", LINUX)]);
    cfg.limits.max_per_workflow_run = Some(1);
    cfg.recycling.enabled = false;
    let mut off = instance("mayfly-linux-o", "linux", InstanceState::Off, LINUX);
    off.run_id = Some(1);
    let snap = Snapshot {
        jobs: vec![job(10, &["linux"])],
        instances: vec![off],
        runners: vec![],
        refused: Default::default(),
    };
    let p = plan(&snap, &cfg, at(20));
    assert_eq!(creates(&p).len(), 1, "{:#?}", p.waiting);
}

#[test]
fn an_idle_runner_past_its_deadline_frees_its_run_slot_in_the_same_pass() {
    let mut cfg = config(vec![pool("linux", LINUX)]);
    cfg.limits.max_per_workflow_run = Some(1);
    let mut idle = instance("mayfly-linux-i", "linux", InstanceState::Running, LINUX);
    idle.run_id = Some(1);
    // The idle runner cannot take the job: it lacks "gpu".
    cfg.pools.push(pool("gpu", &["self-hosted", "gpu"]));
    let snap = Snapshot {
        jobs: vec![job(10, &["gpu"])],
        instances: vec![idle],
        runners: vec![runner(1, "mayfly-linux-i", false, LINUX)],
        refused: Default::default(),
    };
    let p = plan(&snap, &cfg, at(3600));
    assert_eq!(deleted(&p), ["mayfly-linux-i"]);
    assert_eq!(creates(&p).len(), 1, "{:#?}", p.waiting);
    let again = plan(&apply::apply(&snap, &p, CTRL, at(3600)), &cfg, at(3600));
    assert!(creates(&again).is_empty());
}

#[test]
fn a_machine_whose_runner_finished_is_reused_at_once_without_waiting_for_the_power_off() {
    let cfg = config(vec![pool("linux", LINUX)]);
    let mut stopping = instance("mayfly-linux-s", "linux", InstanceState::Stopping, LINUX);
    stopping.state_since = at(590);
    let snap = Snapshot {
        jobs: vec![job(1, &["linux"])],
        instances: vec![stopping.clone()],
        ..Snapshot::default()
    };
    let p = plan(&snap, &cfg, at(600));
    assert!(creates(&p).is_empty(), "no new machine: {p:?}");
    assert!(
        matches!(&p.actions[..], [Action::Reuse { instance, .. }] if instance == "mayfly-linux-s")
    );

    // Without recycling it is left to stop, and deleted if it does not.
    let mut cfg = cfg;
    cfg.recycling.enabled = false;
    let idle = Snapshot {
        instances: vec![stopping],
        ..Snapshot::default()
    };
    let p = plan(&idle, &cfg, at(600));
    assert!(p.actions.is_empty(), "{p:?}");
    assert_eq!(
        p.next_check,
        Some(at(590 + 180).plus(std::time::Duration::from_millis(1)))
    );
    let p = plan(&idle, &cfg, at(590 + 181));
    assert_eq!(deleted(&p), ["mayfly-linux-s"]);
    assert_eq!(p.actions[0].reason().kind(), "stopping_deadline");
}

#[test]
fn a_refused_spec_is_not_tried_again_and_another_pool_serves_the_job() {
    let small = pool("small", LINUX);
    let mut big = pool("big", LINUX);
    big.spec.types = vec!["cx33".into()];
    let cfg = config(vec![small.clone(), big]);
    let refused = Refused {
        specs: vec![RefusedSpec {
            pool: "small".into(),
            spec: small.spec.clone(),
            reason: "server type cx22 does not exist".into(),
            probe: false,
        }],
        jobs: vec![],
    };
    let snap = Snapshot {
        jobs: vec![job(1, &["linux"])],
        refused: refused.clone(),
        ..Snapshot::default()
    };
    let p = plan(&snap, &cfg, at(0));
    assert!(
        matches!(&creates(&p)[..], [Action::Create { pool, .. }] if pool == "big"),
        "{p:?}"
    );
    // With the small pool alone, the job waits and says why.
    let cfg = config(vec![small]);
    let p = plan(&snap, &cfg, at(0));
    assert!(p.actions.is_empty());
    assert_eq!(p.waiting.len(), 1);
    assert_eq!(p.waiting[0].why.kind(), "pool_unusable");
    assert!(!p.waiting[0].why.changes_by_itself());
    assert_eq!(
        p.waiting[0].why.to_string(),
        "pool small is unusable: server type cx22 does not exist"
    );
    // A job whose labels ask for another type is not held by the refusal.
    let other = Snapshot {
        jobs: vec![job(2, &["linux", "type-cx43"])],
        refused: refused.clone(),
        ..Snapshot::default()
    };
    assert_eq!(creates(&plan(&other, &cfg, at(0))).len(), 1);
    // Its retry is due: one create probes the provider, however many jobs wait.
    let mut probing = refused;
    probing.specs[0].probe = true;
    let many = Snapshot {
        jobs: vec![job(3, &["linux"]), job(4, &["linux"]), job(5, &["linux"])],
        refused: probing,
        ..Snapshot::default()
    };
    let p = plan(&many, &cfg, at(0));
    assert_eq!(creates(&p).len(), 1, "one probe: {p:?}");
    assert_eq!(p.waiting.len(), 2);
}

#[test]
fn a_refused_job_waits_with_its_reason_and_nothing_is_made_for_it() {
    let cfg = config(vec![pool("linux", LINUX)]);
    let j = job(1, &["linux"]);
    let snap = Snapshot {
        jobs: vec![j.clone(), job(2, &["linux"])],
        refused: Refused {
            specs: vec![],
            jobs: vec![RefusedJob {
                job: j.key.clone(),
                reason: "acme/app?x=1# is not a repository".into(),
            }],
        },
        ..Snapshot::default()
    };
    let p = plan(&snap, &cfg, at(0));
    assert_eq!(creates(&p).len(), 1, "only the other job gets a machine");
    assert_eq!(p.waiting.len(), 1);
    assert_eq!(p.waiting[0].job, j.key);
    assert_eq!(p.waiting[0].why.kind(), "refused");
}

#[test]
fn a_machine_the_forge_named_as_running_a_job_is_busy_before_the_runner_list_says_so() {
    let cfg = config(vec![pool("linux", LINUX)]);
    let mut booting = instance("mayfly-linux-1-1", "linux", InstanceState::Running, LINUX);
    booting.state_since = at(0);
    let mut running = job(1, &["linux"]);
    running.status = JobStatus::InProgress;
    running.runner = Some("mayfly-linux-1-1".into());
    let snap = Snapshot {
        jobs: vec![running],
        instances: vec![booting],
        ..Snapshot::default()
    };
    // No runner listed yet (the list was read before it registered), far past the
    // registration deadline: kept, and no pass is due for its registration.
    let p = plan(&snap, &cfg, at(400));
    assert!(p.actions.is_empty(), "{p:?}");
    let registration = at(180).plus(std::time::Duration::from_millis(1));
    assert_ne!(p.next_check, Some(registration));
}

/// A pass may plan with the last runner lists only when the plan acts on nothing they say:
/// creating for a queued job, or counting a booting machine, does not rest on them; serving a
/// job with an idle runner, or deleting anything, does.
#[test]
fn only_plans_that_act_on_runners_need_them_read() {
    let cfg = config(vec![pool("linux", LINUX)]);
    let fresh = Snapshot {
        jobs: vec![job(1, &["linux"])],
        ..Default::default()
    };
    let p = plan(&fresh, &cfg, at(10));
    assert_eq!(creates(&p).len(), 1);
    assert!(!p.depends_on_runners(&fresh), "a create rests on no runner");

    let mut booting = instance("mayfly-linux-1-1", "linux", InstanceState::Starting, LINUX);
    booting.job = Some(job(1, &[]).key);
    let waiting = Snapshot {
        instances: vec![booting],
        ..fresh.clone()
    };
    let p = plan(&waiting, &cfg, at(20));
    assert!(p.actions.is_empty(), "{:#?}", p.actions);
    assert!(
        !p.depends_on_runners(&waiting),
        "a booting machine has no runner yet"
    );

    let (instances, runners) = idle_fleet("linux", &["mayfly-linux-a"], LINUX);
    let idle = Snapshot {
        jobs: vec![job(2, &["linux"])],
        instances,
        runners,
        refused: Default::default(),
    };
    let p = plan(&idle, &cfg, at(10));
    assert!(p.actions.is_empty(), "{:#?}", p.actions);
    assert!(
        p.depends_on_runners(&idle),
        "an idle runner may have taken a job since"
    );

    let (instances, runners) = idle_fleet("linux", &["mayfly-linux-a"], LINUX);
    let stale = Snapshot {
        instances,
        runners,
        ..Default::default()
    };
    let p = plan(&stale, &cfg, at(3600));
    assert_eq!(deleted(&p), ["mayfly-linux-a"], "{:#?}", p.actions);
    assert!(
        p.depends_on_runners(&stale),
        "a delete must see the runner busy or not"
    );

    // A powered-off machine runs nothing: deleting it at the end of its paid time needs no list.
    let mut off = instance("mayfly-linux-o", "linux", InstanceState::Off, LINUX);
    off.state_since = at(600);
    let done = Snapshot {
        instances: vec![off],
        ..Default::default()
    };
    let p = plan(&done, &cfg, at(3300));
    assert_eq!(deleted(&p), ["mayfly-linux-o"], "{:#?}", p.actions);
    assert!(!p.depends_on_runners(&done));
}

/// A busy runner keeps its machine. With the last runner lists, that is only safe while
/// something else says the job runs: a running job naming that runner, on a machine that is up.
/// Once the job is over (it left the store's running jobs) the lists must be read again, or a
/// finished machine would wait for the next read; once the machine is off, it runs nothing.
#[test]
fn a_busy_runner_nothing_else_vouches_for_needs_the_lists_read() {
    let cfg = config(vec![pool("linux", LINUX)]);
    let machine = instance("mayfly-linux-a", "linux", InstanceState::Running, LINUX);
    let busy = runner(7, "mayfly-linux-a", true, LINUX);
    let mut running = job(3, &["linux"]);
    running.status = JobStatus::InProgress;
    running.runner = Some("mayfly-linux-a".into());
    let vouched = Snapshot {
        jobs: vec![running],
        instances: vec![machine.clone()],
        runners: vec![busy.clone()],
        refused: Default::default(),
    };
    let p = plan(&vouched, &cfg, at(10));
    assert!(p.actions.is_empty(), "{:#?}", p.actions);
    assert!(!p.depends_on_runners(&vouched));

    let over = Snapshot {
        jobs: vec![],
        ..vouched.clone()
    };
    assert!(plan(&over, &cfg, at(10)).depends_on_runners(&over));

    // A list that still calls a powered-off machine's runner busy was read before its job
    // ended: the machine serves the next job, and that plan needs no fresh list.
    let mut off = machine;
    off.state = InstanceState::Off;
    let powered_off = Snapshot {
        jobs: vec![job(4, &["linux"])],
        instances: vec![off],
        ..vouched
    };
    let p = plan(&powered_off, &cfg, at(10));
    assert!(
        matches!(&p.actions[..], [Action::Reuse { instance, .. }] if instance == "mayfly-linux-a"),
        "{:#?}",
        p.actions
    );
    assert!(!p.depends_on_runners(&powered_off));
}

fn gitlab_job(id: u64, l: &[&str]) -> Job {
    let mut j = job(id, l);
    j.key.forge = ForgeKind::Gitlab;
    j
}

/// A runner registered with one forge never takes another forge's job: an idle GitHub runner is
/// no supply for a GitLab job, which gets an instance of its own; a GitLab job fills an idle
/// GitLab runner (a standby of a GitLab-first pool) as a GitHub job fills a GitHub one.
#[test]
fn a_runner_serves_jobs_of_its_own_forge_only() {
    let mut github_first = pool("linux", LINUX);
    github_first.forges = vec![ForgeKind::Github, ForgeKind::Gitlab];
    let cfg = config(vec![github_first]);
    let snap = Snapshot {
        jobs: vec![gitlab_job(1, &["linux"])],
        instances: vec![instance(
            "mayfly-linux-a",
            "linux",
            InstanceState::Running,
            LINUX,
        )],
        runners: vec![runner(7, "mayfly-linux-a", false, LINUX)],
        refused: Default::default(),
    };
    let p = plan(&snap, &cfg, at(10));
    assert_eq!(creates(&p).len(), 1, "{:#?}", p.actions);
    assert!(p.assignments.iter().all(|a| a.how != How::Existing));

    let mut gitlab_first = pool("linux", LINUX);
    gitlab_first.forges = vec![ForgeKind::Gitlab, ForgeKind::Github];
    let cfg = config(vec![gitlab_first]);
    let p = plan(&snap, &cfg, at(10));
    assert!(creates(&p).is_empty(), "{:#?}", p.actions);
    assert_eq!(p.assignments.len(), 1);
    assert_eq!(p.assignments[0].how, How::Existing);
}

/// A pool that names its forges serves no other forge's jobs: a GitLab job with only a
/// GitHub pool waits, saying no pool serves it.
#[test]
fn a_pool_takes_the_jobs_of_the_forges_it_names() {
    let mut github_only = pool("linux", LINUX);
    github_only.forges = vec![ForgeKind::Github];
    let cfg = config(vec![github_only]);
    let snap = Snapshot {
        jobs: vec![gitlab_job(1, &["linux"]), job(2, &["linux"])],
        ..Default::default()
    };
    let p = plan(&snap, &cfg, at(10));
    let made: Vec<_> = creates(&p)
        .into_iter()
        .filter_map(|a| match a {
            Action::Create { job, .. } => job.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(made.len(), 1, "{:#?}", p.actions);
    assert_eq!(made[0].forge, ForgeKind::Github);
    assert_eq!(p.waiting.len(), 1, "{:#?}", p.waiting);
    assert!(
        matches!(p.waiting[0].why, WaitReason::NoPool { .. }),
        "{:#?}",
        p.waiting
    );
}
