//! Builders for planner tests: a small world of pools, jobs, instances and runners.
//! Each test file includes this module; not every file uses every builder.
#![allow(dead_code)]

use mayfly_core::*;
use std::time::Duration;

pub const CTRL: &str = "mayfly";
pub const T0: Time = Time::from_secs(1_700_000_000);

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn at(s: i64) -> Time {
    Time(T0.0 + s * 1000)
}

pub fn labels(l: &[&str]) -> Labels {
    Labels::new(l.iter().copied())
}

pub fn pool(name: &str, l: &[&str]) -> Pool {
    Pool {
        name: name.into(),
        provider: "hetzner".into(),
        labels: labels(l),
        spec: MachineSpec {
            types: vec!["cx23".into()],
            locations: vec!["fsn1".into()],
            image: "x86:system:ubuntu-24.04".parse().expect("image"),
        },
        max: None,
        standby: 0,
        forges: Vec::new(),
    }
}

pub fn config(pools: Vec<Pool>) -> Pools {
    Pools {
        controller: CTRL.into(),
        pools,
        limits: Limits::default(),
        deadlines: Deadlines::default(),
        labels: LabelRules::default(),
        recycling: Recycling::default(),
        runner_scope: Default::default(),
        forge_scopes: Default::default(),
    }
}

pub fn job(id: u64, l: &[&str]) -> Job {
    Job {
        key: JobKey {
            forge: ForgeKind::Github,
            scope: "acme/app".into(),
            id,
        },
        run_id: Some(id / 10),
        attempt: 1,
        labels: labels(l),
        status: JobStatus::Queued,
        queued_at: at(id as i64),
        instances_created: 0,
        runner: None,
    }
}

pub fn placement() -> Placement {
    Placement {
        machine_type: "cx23".into(),
        location: "fsn1".into(),
        image: "x86:system:ubuntu-24.04".parse().expect("image"),
    }
}

pub fn instance(name: &str, pool: &str, state: InstanceState, l: &[&str]) -> Instance {
    Instance {
        name: name.into(),
        provider_id: Some(format!("id-{name}")),
        controller: Some(CTRL.into()),
        pool: pool.into(),
        state,
        created_at: T0,
        state_since: T0,
        labels: labels(l),
        placement: Some(placement()),
        job: None,
        run_id: None,
        billing: Some(Billing::hourly(0.006)),
        address: None,
    }
}

pub fn runner(id: u64, name: &str, busy: bool, l: &[&str]) -> Runner {
    Runner {
        id,
        name: name.into(),
        status: RunnerStatus::Online,
        busy,
        labels: labels(l),
        since: T0,
    }
}

/// Running instances of one pool, each with an idle runner of the same name.
pub fn idle_fleet(pool: &str, names: &[&str], l: &[&str]) -> (Vec<Instance>, Vec<Runner>) {
    let instances = names
        .iter()
        .map(|n| instance(n, pool, InstanceState::Running, l))
        .collect();
    let runners = names
        .iter()
        .enumerate()
        .map(|(i, n)| runner(i as u64, n, false, l))
        .collect();
    (instances, runners)
}

pub fn creates(p: &Plan) -> Vec<&Action> {
    p.creates().collect()
}

pub fn deleted(p: &Plan) -> Vec<&str> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete { instance, .. } => Some(instance.as_str()),
            _ => None,
        })
        .collect()
}
