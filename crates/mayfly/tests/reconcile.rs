//! The reconcile loop in-process against the simulator (fake GitHub, fake Hetzner, virtual
//! runners) on a sped-up clock: jobs get one server each, finished servers go, paid-for servers
//! are reused, webhooks and polls both bring demand in.

mod support;

use mayfly::local::{self, Local};
use mayfly_core::{Arch, Clock as _, Pools};
use mayfly_sim::Sim;
use mayfly_sim::github::NewJob;
use std::time::Duration;
use support::local::{CADENCE, run_until, setup, sim_config, start};

const SPEED: f64 = 50.0;
const REPO: &str = "acme/app";

fn pools(recycling: bool) -> Pools {
    local::pools(
        "mf",
        vec![local::pool(
            "linux",
            &["self-hosted", "linux"],
            &["cx23"],
            &["fsn1"],
            Arch::X86,
        )],
        recycling,
    )
}

/// The simulator and the controller in one process (`mayfly::local`).
type World = Local;

async fn world(recycling: bool, webhooks: bool) -> World {
    world_with(pools(recycling), webhooks).await
}

async fn world_with(pools: Pools, webhooks: bool) -> World {
    let secret = webhooks.then_some("hook-secret");
    start(sim_config(SPEED), pools, &[REPO], secret).await
}

fn jobs(n: usize) -> Vec<NewJob> {
    (0..n)
        .map(|_| NewJob {
            labels: vec!["self-hosted".into(), "linux".into()],
            duration: Duration::from_secs(60),
        })
        .collect()
}

fn all_completed(sim: &Sim) -> bool {
    let jobs = sim.github.jobs();
    !jobs.is_empty() && jobs.iter().all(|j| j.status == "completed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_job_gets_one_server_and_none_is_left() {
    let mut w = world(false, false).await;
    w.sim.github.enqueue(REPO, jobs(6));
    run_until(&mut w, |sim| {
        all_completed(sim) && sim.hetzner.servers().is_empty()
    })
    .await;

    let jobs = w.sim.github.jobs();
    assert!(
        jobs.iter()
            .all(|j| j.conclusion.as_deref() == Some("success")),
        "{jobs:?}"
    );
    let bill = w.sim.hetzner.billing();
    assert_eq!(bill.servers.len(), 6, "one server per job, none twice");
    let mut names: Vec<_> = bill.servers.iter().map(|s| s.name.clone()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 6);
    assert!(
        names.iter().all(|n| n.starts_with("mf-linux-")),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_for_servers_take_the_next_jobs() {
    let mut w = world(true, true).await;
    w.sim.github.enqueue(REPO, jobs(3));
    run_until(&mut w, all_completed).await;
    // The servers powered off with most of their hour paid: the next jobs get them back.
    run_until(&mut w, |sim| {
        sim.hetzner.servers().iter().all(|s| s.status == "off")
    })
    .await;
    w.sim.github.enqueue(REPO, jobs(3));
    run_until(&mut w, all_completed).await;

    let bill = w.sim.hetzner.billing();
    assert_eq!(bill.servers.len(), 3, "six jobs, three servers: {bill:?}");
    assert_eq!(bill.hours_billed, 3);
    let served_by: std::collections::HashSet<_> = w
        .sim
        .github
        .jobs()
        .into_iter()
        .filter_map(|j| j.runner_name)
        .collect();
    assert_eq!(
        served_by.len(),
        3,
        "each server ran two jobs: {served_by:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_runners_wait_ready_and_are_replaced_when_they_take_a_job() {
    let mut p = pools(false);
    p.pools[0].standby = 2;
    let mut w = world_with(p, true).await;
    let idle_runners = |sim: &Sim| {
        sim.github
            .runners()
            .iter()
            .filter(|r| r.status == "online" && !r.busy)
            .count()
    };
    run_until(&mut w, |sim| idle_runners(sim) == 2).await;
    assert_eq!(w.sim.hetzner.servers().len(), 2, "standby only, no job yet");

    w.sim.github.enqueue(REPO, jobs(1));
    run_until(&mut w, |sim| all_completed(sim) && idle_runners(sim) == 2).await;
    let job = &w.sim.github.jobs()[0];
    assert!(
        job.runner_name
            .as_deref()
            .is_some_and(|n| n.starts_with("mf-linux-s")),
        "a standby runner took the job: {job:?}"
    );
    assert_eq!(
        w.sim.hetzner.billing().servers.len(),
        3,
        "two standby, one made to replace the one that took the job"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_server_quota_a_kept_server_is_freed_for_a_job_it_cannot_serve() {
    let mut w = world(true, true).await;
    w.sim.hetzner.set_config(|c| c.server_quota = 1);
    w.sim.github.enqueue(REPO, jobs(1));
    run_until(&mut w, |sim| {
        all_completed(sim) && sim.hetzner.servers().iter().all(|s| s.status == "off")
    })
    .await;
    // A job for another server type: the kept cx23 cannot serve it, and the project is full.
    w.sim.github.enqueue(
        REPO,
        vec![NewJob {
            labels: vec!["self-hosted".into(), "linux".into(), "type-cpx22".into()],
            duration: Duration::from_secs(60),
        }],
    );
    run_until(&mut w, all_completed).await;
    let bill = w.sim.hetzner.billing();
    let types: Vec<&str> = bill
        .servers
        .iter()
        .map(|s| s.server_type.as_str())
        .collect();
    assert_eq!(types, ["cx23", "cpx22"], "{bill:?}");
    assert!(
        bill.servers[0].deleted_ms.is_some(),
        "the kept server was freed"
    );
    let events = w.controller.store.events(None, 100).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "quota"),
        "the quota is on the record: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_that_creates_shows_its_machines_in_the_view_at_once() {
    let mut w = world(false, false).await;
    let views = w.controller.reconciler.views();
    w.sim.github.enqueue(REPO, jobs(2));
    // The poll brings the jobs into the store; the pass after it creates.
    let mut created = 0;
    w.controller
        .run(CADENCE, |pass, _| {
            created = pass.as_ref().map_or(0, |r| r.executed.created);
            created > 0
        })
        .await;
    assert_eq!(created, 2);
    let view = views.borrow().clone().expect("a view");
    assert_eq!(view.instances.len(), 2, "{:?}", view.instances);
    for i in &view.instances {
        assert_eq!(i.state, mayfly_core::InstanceState::Pending, "{i:?}");
        assert_eq!(i.provider, local::PROVIDER);
        assert!(i.job.is_some(), "made for a job: {i:?}");
    }
    assert!(
        view.jobs.iter().all(|j| j.instance.is_some()),
        "{:?}",
        view.jobs
    );
}

/// A look (what `mayfly status` does when no daemon answers) writes nothing: it may run beside
/// a leader it cannot reach, whose writes are fenced. A machine whose create was recorded but
/// which the provider no longer lists stays recorded as created until a pass says it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_look_writes_nothing_and_a_pass_does() {
    use mayfly_store::{Intent, IntentState};
    let mut w = world(false, false).await;
    let store = w.controller.store.clone();
    let spec = pools(false).pools[0].spec.clone();
    let now = mayfly::demand::now();
    store
        .record_intent(&Intent {
            name: "mf-linux-gone-1".into(),
            pool: "linux".into(),
            provider: local::PROVIDER.into(),
            job: None,
            attempt: 0,
            run_id: None,
            labels: mayfly_core::Labels::new(["self-hosted", "linux"]),
            spec,
            created_at: now,
            state: IntentState::Created,
            provider_id: Some("999999".into()),
            updated_at: now,
        })
        .await
        .unwrap();
    let created = async || {
        store
            .intents_in_state(&[IntentState::Created])
            .await
            .unwrap()
            .len()
    };
    assert_eq!(created().await, 1);
    w.controller.reconciler.look().await.expect("a look");
    assert_eq!(created().await, 1, "a look writes nothing");
    w.controller.run(CADENCE, |_, _| true).await;
    assert_eq!(created().await, 0, "a pass records it gone");
}

/// Between runner lists (read at most every `intervals.runners` when no plan rests on them),
/// a pass plans with the last ones; what happened since must not make it act on registrations
/// that are over. A machine deleted once its job is done costs no runner delete although the
/// last list showed its runner at work (GitHub removed the ephemeral runner with its job), and
/// the deleted machine's runner in that list is not taken for a leftover to remove (which would
/// read the lists again). Passes are driven one by one, so the lists are read exactly when said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_done_with_its_job_goes_without_a_runner_delete_or_a_list() {
    let w = Local::start(
        sim_config(SPEED),
        mayfly::local::Setup {
            runners_max_age: mayfly::reconcile::RUNNERS_MAX_AGE,
            ..setup(pools(false), &[REPO], None)
        },
    )
    .await
    .expect("simulator and controller");
    let Local {
        sim, controller, ..
    } = w;
    let mut c = controller;
    let calls = |method: &str, suffix: &str| -> (u64, u64) {
        sim.stats
            .rows()
            .into_iter()
            .filter(|r| {
                r.key.service == "github" && r.key.method == method && r.key.route.ends_with(suffix)
            })
            .fold((0, 0), |(n, e), r| (n + r.count.calls, e + r.count.errors))
    };
    let until = async |what: &str, done: &dyn Fn() -> bool| {
        let limit = std::time::Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < limit, "{what} within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    sim.github.enqueue(
        REPO,
        vec![NewJob {
            labels: vec!["self-hosted".into(), "linux".into()],
            duration: Duration::from_secs(120),
        }],
    );
    c.demand.pass(c.clock.now()).await;
    c.reconciler.pass().await.expect("the create's pass");
    assert_eq!(sim.hetzner.servers().len(), 1);
    until("the job starts", &|| {
        sim.github.jobs().iter().all(|j| j.status == "in_progress")
    })
    .await;
    // The lists are read while the runner works (as a pass that rests on them would).
    c.reconciler.look().await.expect("a look reads the lists");
    assert!(sim.github.runners().iter().all(|r| r.busy));
    until("the job ends and its server powers off", &|| {
        all_completed(&sim) && sim.hetzner.servers().iter().all(|s| s.status == "off")
    })
    .await;
    c.demand.pass(c.clock.now()).await;
    let lists = calls("GET", "/actions/runners");
    // Passes until the off server goes (`powered_off` after it stopped), and two more.
    let limit = std::time::Instant::now() + Duration::from_secs(30);
    let mut after = 0;
    while after < 2 {
        assert!(std::time::Instant::now() < limit, "deleted within 30 s");
        c.reconciler.pass().await.expect("a pass");
        if sim.hetzner.servers().is_empty() {
            after += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        calls("DELETE", "/actions/runners/{runner_id}"),
        (0, 0),
        "no delete of a runner GitHub removed with its job"
    );
    assert_eq!(
        calls("GET", "/actions/runners"),
        lists,
        "the last lists served every pass since"
    );
    assert!(sim.github.runners().is_empty(), "no runner left");
}
