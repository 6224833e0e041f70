//! The engine against small traces whose outcome can be worked out by hand.

use super::*;
use crate::local;
use mayfly_core::{Arch, Limits, RunnerScope};

const X64: &[&str] = &["self-hosted", "linux", "x64"];

fn pools(recycling: bool) -> Pools {
    local::pools(
        "mf",
        vec![local::pool("x64", X64, &["cx23"], &["fsn1"], Arch::X86)],
        recycling,
    )
}

fn trace(csv: &str) -> Trace {
    Trace::new(&mayfly_sim::trace::parse("test.csv", csv).unwrap())
}

/// `n` jobs of `duration` seconds, one every `every` seconds, alternating two repositories.
fn steady(n: usize, every: f64, duration: f64) -> Trace {
    let mut csv = String::from("at,repo,labels,duration\n");
    for i in 0..n {
        let repo = if i % 2 == 0 { "acme/app" } else { "acme/web" };
        csv.push_str(&format!(
            "{},{repo},self-hosted;linux;x64,{duration}\n",
            i as f64 * every
        ));
    }
    trace(&csv)
}

fn estimate(t: &Trace, p: &Pools) -> Outcome {
    run(t, p, &Prices::hetzner(), &Model::default()).unwrap()
}

#[test]
fn the_model_takes_the_simulators_delays() {
    let m = Model::default();
    // Hetzner's 10 s to running plus the runner's 20-40 s start; a rebuild takes 5 s.
    assert_eq!(m.boot, Duration::from_secs(40));
    assert_eq!(m.rebuild, Duration::from_secs(35));
    assert_eq!(m.shutdown, Duration::from_secs(2));
}

#[test]
fn a_job_on_a_fresh_machine_waits_the_boot_time_and_pays_an_hour() {
    let o = estimate(
        &trace("at,repo,labels,duration\n0,acme/app,self-hosted;linux;x64,300\n"),
        &pools(true),
    );
    assert_eq!((o.jobs, o.served, o.unserved_jobs()), (1, 1, 0));
    assert_eq!(o.wait.max, Some(40.0));
    assert_eq!(o.machines_created, 1);
    assert_eq!(o.peak_machines, 1);
    // cx23 at 0.0048 EUR an hour: one hour billed for five minutes of work.
    assert!((o.cost - 0.0048).abs() < 1e-12, "{}", o.cost);
    assert!((o.job_cost - 0.0004).abs() < 1e-12, "{}", o.job_cost);
    assert_eq!(o.cost_ratio, Some(12.0));
    // Job done at 340 s, off at 342 s; recycling keeps it, so the estimate ends when the job does.
    assert_eq!(o.simulated_secs, 340.0);
}

#[test]
fn a_queued_job_takes_an_idle_runner_at_once() {
    // The second job arrives while the first machine boots; the planner makes a second machine.
    // A third arrives after both jobs ended: recycling rebuilds a kept machine for it.
    let t = trace(
        "at,repo,labels,duration\n0,acme/app,self-hosted;linux;x64,60\n10,acme/app,self-hosted;linux;x64,60\n600,acme/app,self-hosted;linux;x64,60\n",
    );
    let o = estimate(&t, &pools(true));
    assert_eq!(o.machines_created, 2);
    assert_eq!(o.reuses, 1);
    assert_eq!(o.wait.max, Some(40.0));
    assert_eq!(o.wait.mean, Some(38.333), "40, 40, and 35 s for the reuse");
}

#[test]
fn recycling_reuses_powered_off_machines_and_costs_less_on_a_steady_trace() {
    // Four hours of 5-minute jobs, one every 90 s: the target trace of docs/ARCHITECTURE.md, shortened.
    let t = steady(160, 90.0, 300.0);
    let on = estimate(&t, &pools(true));
    let off = estimate(&t, &pools(false));
    assert_eq!((on.served, off.served), (160, 160));
    assert!(on.reuses > 100, "{on:?}");
    assert_eq!(off.reuses, 0);
    assert_eq!(off.machines_created, 160, "one machine per job");
    assert!(on.machines_created < 40, "{}", on.machines_created);
    assert!(
        on.cost < off.cost / 3.0,
        "recycling {} vs {}",
        on.cost,
        off.cost
    );
    let ratio = on.cost_ratio.unwrap();
    assert!(
        ratio <= 1.5,
        "the cost target (docs/ARCHITECTURE.md): {ratio}"
    );
}

#[test]
fn standby_runners_take_jobs_without_waiting_for_a_boot() {
    let t = steady(40, 600.0, 120.0);
    let none = estimate(&t, &pools(true));
    let mut standby = pools(true);
    standby.pools[0].standby = 1;
    let one = estimate(&t, &standby);
    assert_eq!(none.wait.p50, Some(35.0), "a rebuild each time");
    assert_eq!(one.wait.p50, Some(0.0), "{:?}", one.wait);
    assert!(one.wait.mean < none.wait.mean);
    assert_eq!(one.served, 40);
}

#[test]
fn limits_hold_and_every_job_is_served_in_the_end() {
    // A burst of 50 jobs against a pool of at most 5 machines, 8 in all.
    let mut csv = String::from("at,repo,labels,duration\n");
    for i in 0..50 {
        csv.push_str(&format!("{},acme/app,self-hosted;linux;x64,120\n", i % 3));
    }
    let t = trace(&csv);
    for recycling in [true, false] {
        let mut p = pools(recycling);
        p.pools[0].max = Some(5);
        p.limits = Limits {
            max_instances: Some(8),
            ..Limits::default()
        };
        let o = estimate(&t, &p);
        assert_eq!((o.served, o.unserved_jobs()), (50, 0), "{o:?}");
        assert!(o.peak_machines <= 5, "peak {}", o.peak_machines);
        // Ten rounds of five: the last jobs wait for nine jobs and machines before them.
        assert!(o.wait.max.unwrap() > 9.0 * 120.0, "{:?}", o.wait);
    }
}

#[test]
fn jobs_no_pool_serves_are_counted_apart_and_the_estimate_ends() {
    let t = trace(
        "at,repo,labels,duration\n0,acme/app,ubuntu-latest,60\n0,acme/app,self-hosted;gpu,60\n5,acme/app,self-hosted;linux;x64,60\n",
    );
    let o = estimate(&t, &pools(true));
    assert_eq!((o.served, o.unserved_jobs(), o.no_pool_jobs()), (1, 0, 2));
    assert_eq!(
        o.no_pool.keys().collect::<Vec<_>>(),
        [
            "no pool serves labels [self-hosted, gpu]",
            "no pool serves labels [ubuntu-latest]"
        ]
    );
    assert_eq!(
        o.simulated_secs, 105.0,
        "ends when the last servable job does"
    );
}

#[test]
fn a_job_behind_a_limit_that_never_frees_is_unserved_after_the_patience() {
    let mut p = pools(true);
    p.pools[0].max = Some(0);
    let model = Model {
        patience: Duration::from_secs(3600),
        ..Model::default()
    };
    let t = trace("at,repo,labels,duration\n10,acme/app,self-hosted;linux;x64,60\n");
    let o = run(&t, &p, &Prices::hetzner(), &model).unwrap();
    assert_eq!((o.served, o.unserved_jobs(), o.machines_created), (0, 1, 0));
    assert_eq!(
        o.unserved.keys().next().unwrap(),
        "still waiting at the end: pool x64 limit of 0 instances reached"
    );
    // Passes every 15 s while it waits, for an hour after it arrived.
    assert!(
        o.simulated_secs > 3610.0 && o.simulated_secs <= 3625.0,
        "{}",
        o.simulated_secs
    );
    assert!(o.plans >= 240, "{}", o.plans);
}

#[test]
fn repository_runners_take_only_their_repositorys_jobs() {
    // A standby runner registered in acme/app cannot take acme/web's job: that one waits for a
    // machine of its own, while acme/app's job takes the standby runner at once.
    let mut p = pools(true);
    p.pools[0].standby = 1;
    p.runner_scope = RunnerScope::Repository {
        standby: Some("acme/app".into()),
    };
    let t = trace(
        "at,repo,labels,duration\n300,acme/web,self-hosted;linux;x64,60\n900,acme/app,self-hosted;linux;x64,60\n",
    );
    let o = estimate(&t, &p);
    assert_eq!(o.served, 2);
    assert_eq!(o.wait.max, Some(40.0), "acme/web waits for a boot");
    assert_eq!(o.wait.mean, Some(20.0), "acme/app takes the standby runner");
    p.runner_scope = RunnerScope::Shared;
    assert_eq!(
        estimate(&t, &p).wait.max,
        Some(0.0),
        "an organization runner takes either"
    );
}

#[test]
fn a_type_without_a_price_is_refused_before_the_replay() {
    let mut p = pools(true);
    p.pools[0].spec.types = vec!["gpu1".into()];
    let e = run(
        &steady(1, 1.0, 1.0),
        &p,
        &Prices::hetzner(),
        &Model::default(),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("pool x64, runner labels [self-hosted, linux, x64]: no list price for server type \"gpu1\""), "{e}");
    // A job label asking for an unpriced type fails when the planner asks for it.
    let t = trace("at,repo,labels,duration\n0,acme/app,self-hosted;type-gpu2,60\n");
    let e = run(&t, &pools(true), &Prices::hetzner(), &Model::default()).unwrap_err();
    assert!(e.to_string().contains("\"gpu2\""), "{e}");
}

#[test]
fn scenarios_run_side_by_side_and_the_same_trace_gives_the_same_numbers() {
    let t = steady(60, 60.0, 200.0);
    let p = pools(true);
    let s = scenarios(&p, None);
    let rows = run_all(&t, &p, &Prices::hetzner(), &Model::default(), &s).unwrap();
    assert_eq!(rows.len(), 4);
    let again = run_all(&t, &p, &Prices::hetzner(), &Model::default(), &s).unwrap();
    assert_eq!(rows, again);
    assert!(rows.iter().all(|(_, o)| o.served == 60));
    let by = |rec: bool, sb: &str| {
        rows.iter()
            .find(|(s, _)| s.recycling == rec && s.standby_label() == sb)
            .map(|(_, o)| o.clone())
            .unwrap()
    };
    assert!(by(true, "0").cost < by(false, "0").cost);
    assert!(by(true, "1").wait.mean < by(true, "0").wait.mean);
}
