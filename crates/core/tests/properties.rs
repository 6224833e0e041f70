//! Property tests for the planner's invariants (docs/ARCHITECTURE.md), 1,000 generated worlds each:
//! limits hold, busy runners and foreign instances are untouched, servable jobs get capacity,
//! planning again on the plan's own result creates nothing, and input order does not matter.

mod common;

use common::*;
use mayfly_core::apply::apply;
use mayfly_core::*;
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};

const NOW: Time = Time::from_secs(1_700_100_000);
const ORDINARY: &[&str] = &["self-hosted", "linux", "x64", "arm64", "gpu"];
const DYNAMIC: &[&str] = &[
    "type-cx23",
    "type-cpx32",
    "in-fsn1",
    "in-hel1",
    "image-x86-system-ubuntu-24.04",
];

/// 1,000 cases, or more with `PROPTEST_CASES` for a longer hunt.
fn cases() -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    ProptestConfig {
        cases: n.max(1000),
        ..ProptestConfig::default()
    }
}

fn pick(vocab: &'static [&'static str]) -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(vocab, 0..=vocab.len())
}

fn arb_pools() -> impl Strategy<Value = Pools> {
    let seed = (pick(&ORDINARY[1..]), proptest::option::of(0u32..5), 0u32..3);
    (
        proptest::collection::vec(seed, 1..=3),
        proptest::option::of(0u32..10),
        proptest::option::of(0u32..5),
        proptest::option::of(0u32..4),
        (30u64..400, 30u64..400, 10u64..200, 600u64..8000),
        (any::<bool>(), 0u64..1500),
    )
        .prop_map(
            |(pools, global, set, run, (reg, idle, off, life), (recycle, margin))| {
                let pools = pools
                    .into_iter()
                    .enumerate()
                    .map(|(n, (extra, max, standby))| {
                        let mut l = vec!["self-hosted"];
                        l.extend(extra);
                        let mut p = pool(&format!("p{n}"), &l);
                        p.max = max;
                        p.standby = standby;
                        p
                    })
                    .collect();
                let mut cfg = config(pools);
                cfg.limits = Limits {
                    max_instances: global,
                    max_per_label_set: set,
                    max_per_workflow_run: run,
                };
                cfg.deadlines = Deadlines {
                    registration: secs(reg),
                    idle: secs(idle),
                    powered_off: secs(off),
                    max_lifetime: secs(life),
                };
                cfg.recycling = Recycling {
                    enabled: recycle,
                    margin: secs(margin),
                };
                cfg
            },
        )
}

fn arb_state() -> impl Strategy<Value = InstanceState> {
    prop_oneof![
        Just(InstanceState::Pending),
        Just(InstanceState::Starting),
        Just(InstanceState::Running),
        Just(InstanceState::Running),
        Just(InstanceState::Stopping),
        Just(InstanceState::Off),
        Just(InstanceState::Off),
        Just(InstanceState::Deleting),
        Just(InstanceState::Unknown),
    ]
}

#[derive(Clone, Debug)]
struct InstanceSeed {
    pool: usize,
    state: InstanceState,
    age: i64,
    in_state: i64,
    for_job: Option<usize>,
    owner: u8,
    runner: Option<(bool, bool, i64)>,
    billed: bool,
    placed: bool,
}

fn arb_instance() -> impl Strategy<Value = InstanceSeed> {
    (
        0usize..3,
        arb_state(),
        1i64..10_000,
        1i64..2_000,
        proptest::option::of(0usize..30),
        prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        proptest::option::of((any::<bool>(), any::<bool>(), 0i64..2_000)),
        any::<bool>(),
        prop_oneof![4 => Just(true), 1 => Just(false)],
    )
        .prop_map(
            |(pool, state, age, in_state, for_job, owner, runner, billed, placed)| InstanceSeed {
                pool,
                state,
                age,
                in_state,
                for_job,
                owner,
                runner,
                billed,
                placed,
            },
        )
}

fn arb_job() -> impl Strategy<Value = (Vec<&'static str>, Vec<&'static str>, u64, u8, i64, u32)> {
    (
        pick(ORDINARY),
        pick(DYNAMIC),
        1u64..4,
        0u8..10,
        0i64..3_000,
        0u32..2,
    )
}

/// A world: pools and a snapshot whose instances and runners refer to them.
fn arb_world() -> impl Strategy<Value = (Pools, Snapshot)> {
    (
        arb_pools(),
        proptest::collection::vec(arb_job(), 0..30),
        proptest::collection::vec(arb_instance(), 0..30),
        0usize..4,
    )
        .prop_map(|(cfg, jobs, seeds, orphans)| {
            let jobs: Vec<Job> = jobs
                .into_iter()
                .enumerate()
                .map(|(n, (ord, dynamic, run, status, waited, made))| {
                    let mut l = ord.clone();
                    l.extend(dynamic);
                    let mut j = job(1000 + n as u64, &l);
                    j.run_id = Some(run);
                    j.status = match status {
                        0 => JobStatus::InProgress,
                        1 => JobStatus::Completed,
                        _ => JobStatus::Queued,
                    };
                    j.queued_at = Time(NOW.0 - waited * 1000);
                    j.instances_created = made;
                    j
                })
                .collect();
            let mut instances = Vec::new();
            let mut runners = Vec::new();
            for (n, s) in seeds.into_iter().enumerate() {
                let pool = &cfg.pools[s.pool % cfg.pools.len()];
                let controller = match s.owner {
                    0 => Some(CTRL.to_string()),
                    1 => Some("other".to_string()),
                    _ => None,
                };
                let prefix = if s.owner == 0 { CTRL } else { "other" };
                let made_for = s.for_job.and_then(|k| jobs.get(k));
                let mut labels = pool.labels.clone();
                if let Some(j) = made_for {
                    labels = labels.union(&j.labels);
                }
                let name = format!("{prefix}-{}-i{n}", pool.name);
                let created = Time(NOW.0 - s.age * 1000);
                let state_since = Time(NOW.0 - s.in_state.min(s.age) * 1000);
                if let Some((online, busy, since)) = s.runner {
                    let status = if online {
                        RunnerStatus::Online
                    } else {
                        RunnerStatus::Offline
                    };
                    runners.push(Runner {
                        id: n as u64,
                        name: name.clone(),
                        status,
                        busy,
                        labels: labels.clone(),
                        since: Time(NOW.0 - since.min(s.age) * 1000 - 1),
                    });
                }
                instances.push(Instance {
                    name,
                    provider_id: Some(format!("{n}")),
                    controller,
                    pool: pool.name.clone(),
                    state: s.state,
                    created_at: created,
                    state_since,
                    labels,
                    placement: s.placed.then(placement),
                    job: made_for.map(|j| j.key.clone()),
                    run_id: made_for.and_then(|j| j.run_id),
                    billing: s.billed.then(|| Billing::hourly(0.006)),
                    address: None,
                });
            }
            for o in 0..orphans {
                runners.push(runner(
                    500 + o as u64,
                    &format!("{CTRL}-p0-orphan{o}"),
                    o % 2 == 0,
                    &["self-hosted"],
                ));
            }
            runners.push(runner(900, "someone-elses-runner", false, &["self-hosted"]));
            (
                cfg,
                Snapshot {
                    jobs,
                    instances,
                    runners,
                    refused: Default::default(),
                },
            )
        })
}

fn ours<'a>(snap: &'a Snapshot, cfg: &Pools) -> impl Iterator<Item = &'a Instance> {
    let ctrl = cfg.controller.clone();
    snap.instances
        .iter()
        .filter(move |i| i.controller.as_deref() == Some(ctrl.as_str()))
}

/// Instance counts per limit key as docs/ARCHITECTURE.md defines them: global and pool count every
/// instance; label set and workflow run count those that can run a job.
fn counts(snap: &Snapshot, cfg: &Pools) -> HashMap<String, u32> {
    let mut c = HashMap::new();
    for i in ours(snap, cfg) {
        *c.entry("global".to_string()).or_default() += 1;
        *c.entry(format!("pool:{}", i.pool)).or_default() += 1;
        if matches!(
            i.state,
            InstanceState::Off | InstanceState::Stopping | InstanceState::Deleting
        ) {
            continue;
        }
        *c.entry(format!("set:{}", i.labels.set_key())).or_default() += 1;
        if let Some(r) = i.run_id {
            *c.entry(format!("run:{r}")).or_default() += 1;
        }
    }
    c
}

fn limit(cfg: &Pools, key: &str) -> Option<u32> {
    match key.split_once(':') {
        None => cfg.limits.max_instances,
        Some(("pool", p)) => cfg.pools.iter().find(|x| x.name == p).and_then(|x| x.max),
        Some(("set", _)) => cfg.limits.max_per_label_set,
        Some(("run", _)) => cfg.limits.max_per_workflow_run,
        _ => None,
    }
}

fn touched(p: &Plan) -> Vec<&str> {
    p.actions.iter().map(Action::subject).collect()
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn no_limit_is_ever_exceeded((cfg, snap) in arb_world()) {
        let p = plan(&snap, &cfg, NOW);
        let before = counts(&snap, &cfg);
        let after = counts(&apply(&snap, &p, CTRL, NOW), &cfg);
        for (key, &n) in &after {
            if let Some(max) = limit(&cfg, key) {
                let was = before.get(key).copied().unwrap_or(0);
                prop_assert!(n <= max.max(was), "{key}: {was} -> {n}, limit {max}\n{:#?}", p.actions);
            }
        }
    }

    #[test]
    fn a_busy_runners_instance_is_never_deleted((cfg, snap) in arb_world()) {
        // Unless it is powered off: nothing runs there, and a list calling its runner busy was
        // read before its job ended (a deregistration still asks the forge, which refuses a
        // runner it counts as busy).
        let off: HashSet<&str> = snap.instances.iter().filter(|i| i.state == InstanceState::Off).map(|i| i.name.as_str()).collect();
        let busy: HashSet<&str> = snap.runners.iter().filter(|r| r.busy && !off.contains(r.name.as_str())).map(|r| r.name.as_str()).collect();
        let p = plan(&snap, &cfg, NOW);
        for a in &p.actions {
            let hits_busy = match a {
                Action::Delete { instance, .. } | Action::Reuse { instance, .. } => busy.contains(instance.as_str()),
                Action::RemoveRunner { runner_id, .. } => snap.runners.iter().any(|r| r.id == *runner_id && busy.contains(r.name.as_str())),
                _ => false,
            };
            prop_assert!(!hits_busy, "{a}");
        }
    }

    #[test]
    fn an_instance_without_our_tag_is_never_touched((cfg, snap) in arb_world()) {
        let foreign: HashSet<&str> = snap
            .instances
            .iter()
            .filter(|i| i.controller.as_deref() != Some(CTRL))
            .map(|i| i.name.as_str())
            .collect();
        let p = plan(&snap, &cfg, NOW);
        for name in touched(&p) {
            prop_assert!(!foreign.contains(name), "{name} is not ours");
        }
        prop_assert!(!touched(&p).contains(&"someone-elses-runner"));
    }

    #[test]
    fn a_servable_job_within_limits_gets_capacity((mut cfg, snap) in arb_world()) {
        cfg.limits = Limits::default();
        for p in &mut cfg.pools {
            p.max = None;
        }
        let p = plan(&snap, &cfg, NOW);
        let after = apply(&snap, &p, CTRL, NOW);
        let assigned: HashMap<&JobKey, &Assignment> = p.assignments.iter().map(|a| (&a.job, a)).collect();
        // Every servable queued job has an assignment.
        for j in snap.jobs.iter().filter(|j| j.status == JobStatus::Queued) {
            let servable = cfg.labels.requirements(&j.labels).is_ok_and(|r| cfg.pools.iter().any(|p| p.serves(&r)));
            if servable {
                prop_assert!(assigned.contains_key(&j.key), "job {} not served: {:#?}", j.key, p.waiting);
            }
        }
        // Each assignment is one live instance of ours, used once, that can take the job.
        let mut used = HashSet::new();
        for a in &p.assignments {
            prop_assert!(used.insert(a.instance.as_str()), "{} assigned twice", a.instance);
            let inst = after.instances.iter().find(|i| i.name == a.instance && i.controller.as_deref() == Some(CTRL));
            prop_assert!(inst.is_some(), "{} does not exist", a.instance);
            let inst = inst.unwrap();
            prop_assert!(!matches!(inst.state, InstanceState::Deleting | InstanceState::Off), "{} is {:?}", inst.name, inst.state);
            let runner_labels = after.runners.iter().find(|r| r.name == inst.name).map(|r| &r.labels);
            let job = snap.jobs.iter().find(|j| j.key == a.job).unwrap();
            prop_assert!(job.labels.is_subset_of(runner_labels.unwrap_or(&inst.labels)), "{} cannot take {}", inst.name, job.key);
        }
    }

    #[test]
    fn planning_again_on_the_result_creates_nothing_new((cfg, snap) in arb_world()) {
        let first = plan(&snap, &cfg, NOW);
        let next = apply(&snap, &first, CTRL, NOW);
        let second = plan(&next, &cfg, NOW);
        let new: Vec<String> = second
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Create { .. } | Action::Reuse { .. }))
            .map(|a| a.to_string())
            .collect();
        prop_assert!(new.is_empty(), "second pass: {new:#?}\nfirst pass: {:#?}", first.actions);
        prop_assert_eq!(first.assignments.len(), second.assignments.len());
    }

    #[test]
    fn the_plan_does_not_depend_on_input_order((cfg, snap) in arb_world()) {
        let mut reversed = snap.clone();
        reversed.jobs.reverse();
        reversed.instances.reverse();
        reversed.runners.reverse();
        prop_assert_eq!(plan(&snap, &cfg, NOW), plan(&reversed, &cfg, NOW));
    }

    #[test]
    fn no_deadline_passes_before_the_next_check((cfg, snap) in arb_world(), share in 0.0f64..1.0) {
        let first = plan(&snap, &cfg, NOW);
        let removed = |p: &Plan| -> Vec<String> {
            let mut v: Vec<String> = p
                .actions
                .iter()
                .filter(|a| matches!(a, Action::Delete { .. } | Action::DropIntent { .. }))
                .map(|a| a.subject().to_string())
                .collect();
            v.sort();
            v
        };
        // Any moment up to the next check (that moment included) removes nothing that now
        // keeps: whatever is due is due now already.
        let horizon = first.next_check.unwrap_or(NOW.plus(std::time::Duration::from_secs(30 * 86_400)));
        prop_assert!(horizon > NOW);
        let span = horizon.millis() - NOW.millis();
        let later = Time::from_millis(NOW.millis() + (span as f64 * share) as i64);
        let again = plan(&snap, &cfg, later);
        let now_removed = removed(&first);
        for r in removed(&again) {
            prop_assert!(now_removed.contains(&r), "{} is removed at {:?} but not at {:?}, next check {:?}", r, later, NOW, first.next_check);
        }
        // And just after it, something is due (when there is a next check at all).
        if let Some(t) = first.next_check {
            let after = plan(&snap, &cfg, t.plus(std::time::Duration::from_millis(1)));
            prop_assert!(after.actions.len() + after.waiting.len() != first.actions.len() + first.waiting.len()
                || removed(&after) != removed(&first)
                || after.next_check != first.next_check,
                "nothing changes at the next check {:?}", t);
        }
    }
}
