//! `mayfly estimate`'s engine on a day-long trace of 10,000 jobs (seeded: busier working
//! hours, durations from one minute to an hour, runs of one to four jobs, two pools): wall time
//! per scenario, events and plans per second, and the scenarios' table. Target: seconds.
//! Run with `cargo bench -p mayfly --bench estimate` (`--profile dev` reuses the test build).
//!
//! Knobs (environment): `MAYFLY_BENCH_JOBS` (default 10000), `MAYFLY_BENCH_SEED` (default 1),
//! `MAYFLY_BENCH_TRACE_OUT=FILE` (also write the trace, CSV, for `mayfly estimate --trace FILE`).

use mayfly::estimate::{self, Model, Prices, Trace, scenarios};
use mayfly::local;
use mayfly_core::{Arch, Limits, Pools};
use mayfly_sim::trace::TraceJob;
use std::time::Instant;

/// splitmix64: enough randomness for a reproducible trace, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// `jobs` jobs over 24 hours: three times as many per hour from 08:00 to 18:00 as at night.
fn day(jobs: usize, seed: u64) -> Vec<TraceJob> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(jobs);
    let mut run = 0;
    while out.len() < jobs {
        let at = loop {
            let t = rng.range(0.0, 86_400.0);
            let busy = (8.0 * 3600.0..18.0 * 3600.0).contains(&t);
            if busy || rng.unit() < 1.0 / 3.0 {
                break t.floor();
            }
        };
        run += 1;
        let repo = format!("acme/repo{}", rng.next() % 8);
        let arm = rng.unit() < 0.2;
        let size = 1 + (rng.next() % 4) as usize;
        for _ in 0..size.min(jobs - out.len()) {
            let d = rng.unit();
            let duration = if d < 0.6 {
                rng.range(60.0, 300.0)
            } else if d < 0.9 {
                rng.range(300.0, 900.0)
            } else {
                rng.range(900.0, 3600.0)
            };
            let arch = if arm { "arm64" } else { "x64" };
            out.push(TraceJob {
                at,
                repo: repo.clone(),
                labels: vec!["self-hosted".into(), "linux".into(), arch.into()],
                duration: duration.round(),
                run: Some(format!("r{run}")),
                forge: Default::default(),
            });
        }
    }
    out.sort_by(|a, b| a.at.total_cmp(&b.at));
    out
}

fn pools() -> Pools {
    let mut x64 = local::pool(
        "x64",
        &["self-hosted", "linux", "x64"],
        &["cx23", "cpx22"],
        &["fsn1", "nbg1"],
        Arch::X86,
    );
    x64.max = Some(150);
    let mut arm = local::pool(
        "arm64",
        &["self-hosted", "linux", "arm64"],
        &["cax11"],
        &["fsn1"],
        Arch::Arm,
    );
    arm.max = Some(50);
    Pools {
        limits: Limits {
            max_instances: Some(180),
            ..Limits::default()
        },
        ..local::pools("bench", vec![x64, arm], true)
    }
}

fn main() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let jobs = env("MAYFLY_BENCH_JOBS", 10_000) as usize;
    let seed = env("MAYFLY_BENCH_SEED", 1);
    let started = Instant::now();
    let raw = day(jobs, seed);
    if let Ok(path) = std::env::var("MAYFLY_BENCH_TRACE_OUT") {
        let csv = mayfly_sim::trace::to_csv(&raw).expect("plain labels");
        std::fs::write(&path, csv).expect("write the trace");
        println!("trace written to {path}");
    }
    let trace = Trace::new(&raw);
    println!(
        "estimate: {} jobs over 24 h (seed {seed}), 2 pools; trace built in {:.1} ms",
        trace.len(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    let pools = pools();
    let prices = Prices::hetzner();
    let model = Model::default();
    let list = scenarios(&pools, None);
    println!(
        "{:<22} {:>8} {:>9} {:>7} {:>11} {:>10}",
        "scenario", "wall ms", "events", "plans", "events/s", "plans/s"
    );
    let mut rows = Vec::new();
    let mut total = 0.0;
    for s in &list {
        let t = Instant::now();
        let o =
            estimate::run(&trace, &s.apply(&pools), &prices, &model).expect("the estimate runs");
        let wall = t.elapsed().as_secs_f64();
        total += wall;
        println!(
            "{:<22} {:>8.0} {:>9} {:>7} {:>11.0} {:>10.0}",
            format!(
                "recycling {}, standby {}",
                if s.recycling { "on" } else { "off" },
                s.standby_label()
            ),
            wall * 1000.0,
            o.events,
            o.plans,
            o.events as f64 / wall,
            o.plans as f64 / wall
        );
        assert_eq!(o.served + o.unserved_jobs() + o.no_pool_jobs(), o.jobs);
        assert_eq!(o.unserved_jobs(), 0, "{:?}", o.unserved);
        rows.push((s.clone(), o));
    }
    let t = Instant::now();
    let parallel = estimate::run_all(&trace, &pools, &prices, &model, &list).expect("runs");
    let wall_all = t.elapsed().as_secs_f64();
    assert_eq!(parallel, rows, "the same numbers on threads");
    println!(
        "all {} scenarios: {:.2} s one after another, {:.2} s side by side (what `mayfly estimate` does; \
         target: seconds, under 10 s: {})\n",
        list.len(),
        total,
        wall_all,
        if wall_all < 10.0 { "met" } else { "NOT MET" }
    );
    print!("{}", estimate::table(&rows));
}
