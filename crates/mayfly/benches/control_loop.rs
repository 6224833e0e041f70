//! The whole control loop in-process against the simulator (`mayfly::local`): decision latency,
//! API calls per job and billed cost against the cost of the job-seconds. Prints one line per
//! number, with its unit, how it was measured and its target (docs/ARCHITECTURE.md), marked
//! met or NOT MET; asserts only
//! correctness (every job served, every job its own server where that is the point).
//! Run with `cargo bench -p mayfly --bench control_loop` (add `--profile dev` to reuse the
//! test build; the latency depends on the profile, the counts and the cost do not).
//!
//! Knobs (environment): `MAYFLY_BENCH_LATENCY_JOBS` (default 40), `MAYFLY_BENCH_HOURS` (length
//! of the synthetic steady trace, default 3), `MAYFLY_BENCH_SPEED` (simulated seconds per real
//! second for the cost runs, default 400), `MAYFLY_BENCH_ROUTES=1` (print calls by route).

use mayfly::local::{self, Cadence, Local, Setup};
use mayfly_core::Pace;
use mayfly_core::{Arch, Deadlines, Pools};
use mayfly_sim::SimConfig;
use mayfly_sim::github::NewJob;
use mayfly_sim::runners::{Delay, RunnerConfig};
use mayfly_sim::trace::TraceJob;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tracing_subscriber::layer::{Context, SubscriberExt};

const STEADY_HOUR: &str = include_str!("../../../examples/traces/steady-hour.csv");
const LABELS: [&str; 3] = ["self-hosted", "linux", "x64"];

/// The daemon's default intervals (`[intervals]` in the configuration), except the poll: every
/// 60 s here (the daemon's is 10 s), so the cost runs at speed 400 are not made of polls.
const DEFAULTS: Cadence = Cadence {
    pace: Pace {
        unsettled: Duration::from_secs(15),
        resync: Duration::from_secs(300),
        settle: Some(Duration::from_secs(20)),
        coalesce: Duration::from_millis(500),
    },
    poll: Duration::from_secs(60),
};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pools(recycling: bool, deadlines: Deadlines) -> Pools {
    let pool = local::pool("linux", &LABELS, &["cx23"], &["fsn1"], Arch::X86);
    Pools {
        deadlines,
        ..local::pools("bench", vec![pool], recycling)
    }
}

/// The simulator and the controller in one process, webhooks on, the daemon's default poll
/// backstop (a poll every 60 s, every 5 min while webhooks arrive).
async fn world(config: SimConfig, pools: Pools, repos: Vec<String>) -> Local {
    Local::start(
        config,
        Setup {
            pools,
            repos,
            webhook_secret: Some("bench-webhook-secret".into()),
            workers: 10,
            confirm_after: Duration::from_secs(600),
            poll_backstop: Duration::from_secs(300),
            runners_max_age: mayfly::reconcile::RUNNERS_MAX_AGE,
            gitlab_projects: Vec::new(),
        },
    )
    .await
    .expect("start the simulator and the controller")
}

/// How a printed figure stands against its target.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT MET" }
}

/// The value at rank `p` (0..=1) of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Two moments of the controller's own log, on the latency run's simulated clock: a `queued`
/// webhook stored (after signature check and the store's upsert) and a plan with actions (after
/// the snapshot's reads: jobs and intents from the store, the Hetzner list, the runner list).
/// Together with the queue time and the create's arrival at the fake Hetzner they split the
/// decision latency into its three legs.
#[derive(Default)]
struct Marks {
    on: AtomicBool,
    clock: OnceLock<mayfly_sim::clock::Clock>,
    /// (simulated ms, job id) of each `queued` webhook stored.
    stored: Mutex<Vec<(i64, u64)>>,
    /// Simulated ms of each plan with actions.
    plans: Mutex<Vec<i64>>,
}

static MARKS: OnceLock<Arc<Marks>> = OnceLock::new();

#[derive(Default)]
struct Fields {
    message: String,
    job: String,
    action: String,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "job" => self.job = format!("{value:?}"),
            "action" => self.action = format!("{value:?}"),
            _ => {}
        }
    }
}

struct MarkLayer(Arc<Marks>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for MarkLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if !self.0.on.load(Ordering::Relaxed) {
            return;
        }
        let Some(clock) = self.0.clock.get() else {
            return;
        };
        let mut f = Fields::default();
        event.record(&mut f);
        let now = clock.now_ms();
        match f.message.as_str() {
            "webhook stored" if f.action == "queued" => {
                // `github:acme/app#123`
                if let Some(id) = f.job.rsplit('#').next().and_then(|id| id.parse().ok()) {
                    self.0
                        .stored
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((now, id));
                }
            }
            "plan" => self
                .0
                .plans
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(now),
            _ => {}
        }
    }
}

/// Installs the marks layer (mayfly's debug events only) as the global subscriber.
fn install_marks() -> Arc<Marks> {
    MARKS
        .get_or_init(|| {
            let marks = Arc::new(Marks::default());
            let filter = tracing_subscriber::filter::Targets::new()
                .with_target("mayfly", tracing::Level::DEBUG);
            let layer = tracing_subscriber::Layer::with_filter(MarkLayer(marks.clone()), filter);
            // A subscriber set already (none is, in this binary) only costs the breakdown.
            let _ =
                tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
            marks
        })
        .clone()
}

/// SplitMix64: the same arrivals every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Job queued at the fake GitHub (which sends its webhook at once) → create request received by
/// the fake Hetzner, both on the simulator's clock at speed 1 (wall time), millisecond
/// resolution. Single jobs, 0.3–1.0 s apart; each runs 5 s on a server that boots in 2 s plus
/// 3 s for its runner, so the passes for other jobs' starts, ends and deletes go on meanwhile,
/// as in a real steady flow.
async fn latency(n: usize) {
    let mut config = SimConfig {
        speed: 1.0,
        ..SimConfig::default()
    };
    config.runners = RunnerConfig {
        boot_delay: Delay::Fixed { secs: 3.0 },
        ..RunnerConfig::default()
    };
    config.hetzner.boot_delay = Duration::from_secs(2);
    let deadlines = Deadlines {
        powered_off: Duration::from_secs(1),
        ..Deadlines::default()
    };
    // Held to the end of the run: it owns the temporary state directory.
    let local = world(config, pools(false, deadlines), vec!["acme/app".into()]).await;
    let sim = local.sim.clone();
    let mut controller = local.controller;
    let marks = install_marks();
    let _ = marks.clock.set(sim.clock.clone());
    marks.on.store(true, Ordering::Relaxed);
    let feeder = {
        let sim = sim.clone();
        tokio::spawn(async move {
            let mut rng = Rng(0x006c_6174_656e_6379);
            let mut ids = Vec::new();
            for _ in 0..n {
                let pause = 300 + rng.next() % 700;
                tokio::time::sleep(Duration::from_millis(pause)).await;
                ids.extend(sim.github.enqueue(
                    "acme/app",
                    vec![NewJob {
                        labels: LABELS.iter().map(|l| l.to_string()).collect(),
                        duration: Duration::from_secs(5),
                    }],
                ));
            }
            ids
        })
    };
    let started = Instant::now();
    let mut passes = 0u32;
    // (start, end) of every pass, simulated ms.
    let mut spans: Vec<(i64, i64)> = Vec::new();
    let watch = sim.clone();
    let run = controller.run(DEFAULTS, |pass, _| {
        passes += 1;
        let end = watch.clock.now_ms();
        match pass {
            Ok(r) => spans.push((end - r.took.as_millis() as i64, end)),
            Err(e) => eprintln!("latency: reconcile pass failed: {e}"),
        }
        watch.github.jobs().len() == n && watch.hetzner.billing().servers.len() >= n
    });
    tokio::time::timeout(Duration::from_secs(60 + n as u64), run)
        .await
        .expect("every job got its create within the time limit");
    let ids = feeder.await.expect("the feeder");
    let wall = started.elapsed();
    marks.on.store(false, Ordering::Relaxed);

    let jobs: HashMap<u64, i64> = sim
        .github
        .jobs()
        .into_iter()
        .map(|j| (j.id, j.queued_ms))
        .collect();
    let bill = sim.hetzner.billing();
    let mut created: HashMap<u64, i64> = HashMap::new();
    for s in &bill.servers {
        // `bench-linux-{job id}-{attempt}`: recycling is off, so each server is its job's.
        let job: u64 = s
            .name
            .strip_prefix("bench-linux-")
            .and_then(|r| r.split('-').next())
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("a server for no job: {}", s.name));
        assert!(
            created.insert(job, s.created_ms).is_none(),
            "job {job} got two servers"
        );
    }
    let mut ms: Vec<f64> = ids
        .iter()
        .map(|id| {
            let created = created
                .get(id)
                .unwrap_or_else(|| panic!("job {id} got no server"));
            (created - jobs[id]) as f64
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!(
        "decision latency     p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms  mean {:.1} ms  (target p99 < 50 ms: {}) \
         — job queued at the fake GitHub → create received by the fake Hetzner, {} single jobs \
         0.3-1.0 s apart, webhook mode, sim speed 1, in-process, {} profile; {} passes in {:.1} s",
        percentile(&ms, 0.50),
        percentile(&ms, 0.99),
        ms[ms.len() - 1],
        mean,
        verdict(percentile(&ms, 0.99) < 50.0),
        ms.len(),
        if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        },
        passes,
        wall.as_secs_f64(),
    );
    // The legs, per job: queued → webhook stored → plan → create received.
    let stored: HashMap<u64, i64> = {
        let v = marks.stored.lock().unwrap_or_else(|e| e.into_inner());
        let mut m = HashMap::new();
        for &(t, id) in v.iter() {
            m.entry(id).or_insert(t);
        }
        m
    };
    let mut plans = marks
        .plans
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    plans.sort_unstable();
    let mut legs: [Vec<f64>; 3] = Default::default();
    for id in &ids {
        let (Some(&s), Some(&c)) = (stored.get(id), created.get(id)) else {
            continue;
        };
        let Some(&p) = plans.iter().find(|&&p| p >= s && p <= c) else {
            continue;
        };
        legs[0].push((s - jobs[id]) as f64);
        legs[1].push((p - s) as f64);
        legs[2].push((c - p) as f64);
    }
    let names = [
        "queued → webhook stored (delivery, HMAC check, SQLite upsert)",
        "stored → plan (wake; jobs + intents from SQLite, Hetzner list, GitHub runner list, plan())",
        "plan → create received (intent written to SQLite, GitHub JIT config POST, Hetzner POST)",
    ];
    // A webhook stored while a pass runs waits for that pass to end: passes run one at a time.
    let mut waited: Vec<f64> = ids
        .iter()
        .filter_map(|id| {
            let s = *stored.get(id)?;
            spans
                .iter()
                .find(|&&(a, b)| a <= s && s < b)
                .map(|&(_, b)| (b - s) as f64)
        })
        .collect();
    waited.sort_by(f64::total_cmp);
    let mut took: Vec<f64> = spans.iter().map(|&(a, b)| (b - a) as f64).collect();
    took.sort_by(f64::total_cmp);
    let slow: Vec<String> = ids
        .iter()
        .filter_map(|id| {
            let total = created.get(id)? - jobs[id];
            (total as f64 >= percentile(&ms, 0.9)).then(|| {
                let s = stored.get(id).copied().unwrap_or(0);
                let busy = spans.iter().any(|&(a, b)| a <= s && s < b)
                    || spans.iter().any(|&(a, b)| a < s && b > jobs[id]);
                format!(
                    "job {id} {total} ms (stored after {} ms{})",
                    s - jobs[id],
                    if busy { ", a pass was running" } else { "" }
                )
            })
        })
        .collect();
    if !took.is_empty() {
        println!(
            "  passes             {} in {:.1} s, each p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms; {} of {} \
             webhooks were stored while a pass ran and waited {:.0} ms median, {:.0} ms max for it",
            took.len(),
            wall.as_secs_f64(),
            percentile(&took, 0.50),
            percentile(&took, 0.99),
            took[took.len() - 1],
            waited.len(),
            ids.len(),
            if waited.is_empty() {
                0.0
            } else {
                percentile(&waited, 0.5)
            },
            waited.last().copied().unwrap_or(0.0),
        );
    }
    println!("  slowest 10 %       {}", slow.join("; "));
    for (leg, name) in legs.iter_mut().zip(names) {
        if leg.is_empty() {
            continue;
        }
        leg.sort_by(f64::total_cmp);
        println!(
            "  leg                p50 {:>3.0} ms  p99 {:>3.0} ms  max {:>3.0} ms  {name} ({} jobs)",
            percentile(leg, 0.50),
            percentile(leg, 0.99),
            leg[leg.len() - 1],
            leg.len(),
        );
    }
}

/// What one cost run measured.
struct CostRun {
    jobs: usize,
    github: u64,
    github_budget: u64,
    hetzner: u64,
    servers: usize,
    hours: u64,
    billed: f64,
    job_cost: f64,
    job_hours: f64,
    /// Server lifetimes, created → deleted.
    alive_hours: f64,
    wall: Duration,
    simulated_h: f64,
    routes: Vec<String>,
}

/// One cost run: a trace, recycling on or off, and whether the loop also polls GitHub.
#[derive(Clone)]
struct Case {
    name: String,
    trace: Vec<TraceJob>,
    recycling: bool,
    /// Webhooks and a poll every 60 s (the daemon's defaults), or webhooks only.
    poll: bool,
}

/// Replays the case's trace at `speed` with the daemon's default intervals and deadlines,
/// webhooks on, until every job is done and no server is left.
async fn cost_run(case: Case, speed: f64) -> CostRun {
    let Case {
        trace,
        recycling,
        poll,
        ..
    } = case;
    let cadence = Cadence {
        // Webhooks only: one poll at the start, none after (the daemon with `github.poll = false`
        // still confirms jobs held queued for 10 minutes; none is, here).
        poll: if poll {
            DEFAULTS.poll
        } else {
            Duration::from_secs(1_000_000)
        },
        ..DEFAULTS
    };
    let n = trace.len();
    let mut repos: Vec<String> = trace.iter().map(|j| j.repo.clone()).collect();
    repos.sort();
    repos.dedup();
    let end_s = trace.iter().map(|j| j.at + j.duration).fold(0.0, f64::max);
    let config = SimConfig {
        speed,
        ..SimConfig::default()
    };
    // Held to the end of the run: it owns the temporary state directory.
    let local = world(config, pools(recycling, Deadlines::default()), repos).await;
    let sim = local.sim.clone();
    let mut controller = local.controller;
    let started = Instant::now();
    let start_ms = sim.clock.now_ms();
    sim.replay(trace);
    let watch = sim.clone();
    // Bounded: the last job plus three simulated hours (a recycled server lives up to one).
    let limit_ms = start_ms + ((end_s + 3.0 * 3600.0) * 1000.0) as i64;
    let run = controller.run(cadence, |pass, _| {
        if let Err(e) = pass {
            eprintln!("cost run: reconcile pass failed: {e}");
        }
        let jobs = watch.github.jobs();
        let settled = !watch.replaying()
            && jobs.len() == n
            && jobs.iter().all(|j| j.status == "completed")
            && watch.hetzner.servers().is_empty();
        settled || watch.clock.now_ms() > limit_ms
    });
    run.await;
    let wall = started.elapsed();
    let jobs = sim.github.jobs();
    let served = jobs
        .iter()
        .filter(|j| j.conclusion.as_deref() == Some("success"))
        .count();
    assert_eq!(served, n, "every job served (recycling {recycling})");
    let left = sim.hetzner.servers();
    assert!(left.is_empty(), "servers left: {left:?}");
    let bill = sim.hetzner.billing();
    let price: HashMap<&str, f64> = bill
        .servers
        .iter()
        .map(|s| (s.name.as_str(), s.price_hourly_gross))
        .collect();
    let mut job_cost = 0.0;
    let mut job_hours = 0.0;
    for j in &jobs {
        let (Some(s), Some(c), Some(r)) = (j.started_ms, j.completed_ms, &j.runner_name) else {
            continue;
        };
        let hours = (c - s) as f64 / 3_600_000.0;
        job_hours += hours;
        job_cost += hours * price.get(r.as_str()).copied().unwrap_or(0.0);
    }
    let rows = sim.stats.rows();
    let sum = |service: &str, f: &dyn Fn(&mayfly_sim::stats::CallCount) -> u64| -> u64 {
        rows.iter()
            .filter(|r| r.key.service == service)
            .map(|r| f(&r.count))
            .sum()
    };
    CostRun {
        jobs: n,
        github: sum("github", &|c| c.calls),
        github_budget: sum("github", &|c| c.calls - c.not_modified),
        hetzner: sum("hetzner", &|c| c.calls),
        servers: bill.servers.len(),
        hours: bill.hours_billed,
        billed: bill.total,
        job_cost,
        job_hours,
        alive_hours: bill
            .servers
            .iter()
            .map(|s| (s.deleted_ms.unwrap_or(s.created_ms) - s.created_ms) as f64 / 3_600_000.0)
            .sum(),
        wall,
        simulated_h: (sim.clock.now_ms() - start_ms) as f64 / 3_600_000.0,
        routes: rows
            .iter()
            .map(|r| {
                format!(
                    "    {:7} {:6} {:55} {:5} (304: {}, errors: {})",
                    r.key.service,
                    r.key.method,
                    r.key.route,
                    r.count.calls,
                    r.count.not_modified,
                    r.count.errors
                )
            })
            .collect(),
    }
}

fn print_cost(case: &Case, r: &CostRun, speed: f64) {
    let per = |x: u64| x as f64 / r.jobs as f64;
    let name = &case.name;
    let on = if case.recycling { "on " } else { "off" };
    let mode = if case.poll {
        "webhooks + a poll every 60 s"
    } else {
        "webhooks only"
    };
    if case.poll {
        // The bill does not depend on the poll: printed once per trace and recycling setting.
        println!(
            "cost ratio {name:<17} recycling {on}  {:.2}  (billed {:.4} EUR for {} server-hours, \
             {} servers; the job-seconds, {:.2} h, at their servers' price: {:.4} EUR){}",
            r.billed / r.job_cost,
            r.billed,
            r.hours,
            r.servers,
            r.job_hours,
            r.job_cost,
            if case.recycling {
                format!(
                    " (target <= 1.5 for a day of steady jobs: {})",
                    verdict(r.billed / r.job_cost <= 1.5)
                )
            } else {
                String::new()
            },
        );
        println!(
            "  server time      {:.2} h billed = {:.2} h alive ({:.2} h running jobs, {:.2} h booting, \
             rebuilding, idle or off between jobs) + {:.2} h paid after deletion",
            r.hours as f64,
            r.alive_hours,
            r.job_hours,
            r.alive_hours - r.job_hours,
            r.hours as f64 - r.alive_hours,
        );
    }
    println!(
        "calls/job  {name:<17} recycling {on}  GitHub {:.2} (target <= 2 calls, 304s included: {}), budget (non-304) {:.2}  \
         Hetzner {:.2} (target <= 3: {})  — {} jobs, {mode}, in-process; \
         {:.1} simulated h in {:.1} s at speed {speed}",
        per(r.github),
        verdict(per(r.github) <= 2.0),
        per(r.github_budget),
        per(r.hetzner),
        verdict(per(r.hetzner) <= 3.0),
        r.jobs,
        r.simulated_h,
        r.wall.as_secs_f64(),
    );
    if std::env::var_os("MAYFLY_BENCH_ROUTES").is_some() {
        for line in &r.routes {
            println!("{line}");
        }
    }
}

/// `hours` of 5-minute jobs, one every 90 s, in one repository.
fn synthetic(hours: f64) -> Vec<TraceJob> {
    let mut csv = String::from("at,repo,labels,duration\n");
    let n = (hours * 3600.0 / 90.0) as usize;
    for i in 0..n {
        csv.push_str(&format!("{},acme/app,{},300\n", i * 90, LABELS.join(";")));
    }
    mayfly_sim::trace::parse("synthetic", &csv).expect("the synthetic trace parses")
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let latency_jobs = env_or("MAYFLY_BENCH_LATENCY_JOBS", 40usize);
    let hours = env_or("MAYFLY_BENCH_HOURS", 3.0f64);
    let speed = env_or("MAYFLY_BENCH_SPEED", 400.0f64);
    runtime.block_on(async {
        // Alone: nothing else runs while latency is measured.
        latency(latency_jobs).await;
        // The cost runs spend most of their time asleep on the simulated clock: all at once.
        let steady =
            mayfly_sim::trace::parse("steady-hour.csv", STEADY_HOUR).expect("steady-hour.csv");
        let mut cases = Vec::new();
        for (name, trace) in [
            ("steady-hour.csv".to_string(), steady),
            (format!("synthetic {hours}h"), synthetic(hours)),
        ] {
            for (recycling, poll) in [(true, true), (false, true), (true, false), (false, false)] {
                cases.push(Case {
                    name: name.clone(),
                    trace: trace.clone(),
                    recycling,
                    poll,
                });
            }
        }
        let runs: Vec<_> = cases
            .iter()
            .map(|c| tokio::spawn(cost_run(c.clone(), speed)))
            .collect();
        for (case, run) in cases.iter().zip(runs) {
            let r = run.await.expect("a cost run");
            print_cost(case, &r, speed);
        }
    });
}
