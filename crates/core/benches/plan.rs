//! Times one `plan()` on a snapshot of 10,000 instances and 10,000 jobs over 20 pools and
//! prints the figures against the target (docs/ARCHITECTURE.md: under 10 ms). Run with `cargo bench -p mayfly-core`.
//! A plain timing loop rather than criterion: one number is wanted, not plots.

use mayfly_core::*;
use std::hint::black_box;
use std::time::{Duration, Instant};

const POOLS: usize = 20;
const JOBS: usize = 10_000;
const INSTANCES: usize = 10_000;

/// A small deterministic generator, so every run plans the same world.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// `shared`: instances of a pool share one `Labels` allocation, as a snapshot builder that
/// interns label sets makes them; otherwise each instance has its own copy.
fn world(shared: bool) -> (Pools, Snapshot, Time) {
    let now = Time::from_secs(1_800_000_000);
    let image: Image = "x86:system:ubuntu-24.04".parse().expect("image");
    let pools: Vec<Pool> = (0..POOLS)
        .map(|k| Pool {
            name: format!("pool{k}"),
            provider: "hetzner".into(),
            labels: Labels::new(["self-hosted", "linux", "x64", &format!("team{k}")]),
            spec: MachineSpec {
                types: vec!["cx23".into()],
                locations: vec!["fsn1".into()],
                image: image.clone(),
            },
            max: Some(2_000),
            standby: 2,
            forges: Vec::new(),
        })
        .collect();
    let cfg = Pools {
        controller: "mayfly".into(),
        pools,
        limits: Limits {
            max_instances: Some(30_000),
            max_per_label_set: Some(5_000),
            max_per_workflow_run: Some(50),
        },
        deadlines: Deadlines::default(),
        labels: LabelRules::default(),
        recycling: Recycling::default(),
        runner_scope: Default::default(),
        forge_scopes: Default::default(),
    };
    let mut rng = Lcg(42);
    let jobs: Vec<Job> = (0..JOBS)
        .map(|n| {
            let k = rng.next(POOLS as u64);
            let mut labels = vec!["self-hosted".to_string(), format!("team{k}")];
            if rng.next(4) == 0 {
                labels.push("type-cpx32".into());
            }
            Job {
                key: JobKey {
                    forge: ForgeKind::Github,
                    scope: format!("acme/repo{}", n % 50).into(),
                    id: 10_000_000 + n as u64,
                },
                run_id: Some(n as u64 / 8),
                attempt: 1,
                labels: Labels::new(labels),
                status: if rng.next(3) == 0 {
                    JobStatus::InProgress
                } else {
                    JobStatus::Queued
                },
                queued_at: now.minus(Duration::from_secs(rng.next(600))),
                instances_created: 0,
                runner: None,
            }
        })
        .collect();
    let mut instances = Vec::with_capacity(INSTANCES);
    let mut runners = Vec::new();
    for n in 0..INSTANCES {
        let k = rng.next(POOLS as u64) as usize;
        let pool = &cfg.pools[k];
        let name = format!("mayfly-{}-x{n}", pool.name);
        let created = now.minus(Duration::from_secs(rng.next(3000)));
        let roll = rng.next(20);
        let state = match roll {
            0..=11 => InstanceState::Running,
            12..=13 => InstanceState::Starting,
            14..=16 => InstanceState::Off,
            17 => InstanceState::Pending,
            _ => InstanceState::Deleting,
        };
        if state == InstanceState::Running {
            runners.push(Runner {
                id: n as u64,
                name: name.clone(),
                status: RunnerStatus::Online,
                busy: roll < 8,
                labels: pool.labels.clone(),
                since: now.minus(Duration::from_secs(rng.next(400))),
            });
        }
        instances.push(Instance {
            name,
            provider_id: Some(n.to_string()),
            controller: Some("mayfly".into()),
            pool: pool.name.clone(),
            state,
            created_at: created,
            state_since: created,
            labels: if shared {
                pool.labels.clone()
            } else {
                Labels::new(pool.labels.iter())
            },
            placement: Some(Placement {
                machine_type: "cx23".into(),
                location: "fsn1".into(),
                image: image.clone(),
            }),
            job: None,
            run_id: None,
            billing: Some(Billing::hourly(0.006)),
            address: None,
        });
    }
    (
        cfg,
        Snapshot {
            jobs,
            instances,
            runners,
            refused: Default::default(),
        },
        now,
    )
}

fn time(snap: &Snapshot, cfg: &Pools, now: Time) -> Vec<Duration> {
    // MAYFLY_BENCH_ITERS=1 for a run under callgrind, whose instruction counts ignore load.
    let iters = std::env::var("MAYFLY_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60usize);
    let mut times: Vec<Duration> = (0..iters.max(1))
        .map(|_| {
            let t = Instant::now();
            let p = black_box(plan(black_box(snap), cfg, now));
            let took = t.elapsed();
            // Freeing the plan is the caller's business, after it has acted on it.
            drop(p);
            took
        })
        .collect();
    times.sort();
    times
}

/// How a printed figure stands against its target.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT MET" }
}

fn main() {
    let (cfg, snap, now) = world(true);
    let first = plan(&snap, &cfg, now);
    let count = |f: fn(&Action) -> bool| first.actions.iter().filter(|a| f(a)).count();
    println!(
        "world: {} pools, {} instances, {} jobs ({} queued), {} runners",
        cfg.pools.len(),
        snap.instances.len(),
        snap.jobs.len(),
        snap.jobs
            .iter()
            .filter(|j| j.status == JobStatus::Queued)
            .count(),
        snap.runners.len()
    );
    println!(
        "plan: {} creates, {} reuses, {} deletes, {} assignments, {} waiting",
        count(|a| matches!(a, Action::Create { .. })),
        count(|a| matches!(a, Action::Reuse { .. })),
        count(|a| matches!(a, Action::Delete { .. })),
        first.assignments.len(),
        first.waiting.len()
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for shared in [true, false] {
        let (cfg, snap, now) = world(shared);
        let times = time(&snap, &cfg, now);
        println!(
            "plan() on 10,000 instances x 10,000 jobs x 20 pools, label sets {}: min {:.2} ms, median {:.2} ms, p95 {:.2} ms (target < 10 ms: {})",
            if shared { "shared" } else { "copied" },
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() * 95 / 100]),
            verdict(ms(times[times.len() * 95 / 100]) < 10.0)
        );
    }
}
