//! `mayfly estimate`'s model: a trace of jobs replayed in virtual time against the real planner
//! and cost model, to see what a configuration would cost and how long jobs would wait.
//!
//! Pure: no clock, no I/O, no async. Jobs arrive from the trace; `mayfly_core::plan` decides
//! when the controller's loop would pass (a queued job, an idle runner, the plan's `next_check`,
//! the loop's timers), and its plan takes effect at once: a create boots for `Model::boot`, then its runner registers and GitHub hands
//! it the oldest queued job it can take (labels and runner scope), which runs for its duration;
//! the runner leaves, the machine powers off, and the planner keeps it for another job (a reuse
//! rebuilds it in `Model::rebuild`) or deletes it. Each machine is billed with
//! `Billing::cost` over its life. What the model leaves out is in docs/estimate.md.

mod engine;
pub mod history;
mod prices;
mod report;
mod scenarios;
mod world;

pub use prices::{PriceError, Prices};
pub use report::{Outcome, Waits, table};
pub use scenarios::{Scenario, scenarios};

use mayfly_core::{JobKey, Labels, Pools, Time};
use mayfly_sim::trace::TraceJob;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use world::TraceRecord;

/// How long the things the planner does not decide take, in virtual time.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Model {
    /// From a create until its runner registers: the server boots, cloud-init starts the runner.
    pub boot: Duration,
    /// From a reuse until the runner registers: a rebuild, then the same start.
    pub rebuild: Duration,
    /// From a job's end until its machine is off.
    pub shutdown: Duration,
    /// The controller's loop (`[intervals]`): a pass this soon while a job waits (for a limit),
    pub reconcile: Duration,
    /// at the latest this long after the last otherwise,
    pub resync: Duration,
    /// and this long after a job finished when recycling is off (the pass that sees its
    /// machine off). Queued jobs and deadlines bring passes at once,
    pub settle: Duration,
    /// but never within this of the last pass (`mayfly_core::Pace`).
    pub coalesce: Duration,
    /// How long after the last arrival jobs still queued (waiting for a limit) are waited for
    /// before they count as unserved.
    pub patience: Duration,
}

impl Default for Model {
    /// The simulator's delays (`mayfly sim serve`, `mayfly demo`), its random ones at their mean.
    fn default() -> Model {
        let cloud = mayfly_sim::hetzner::HetznerConfig::default();
        let runner = mayfly_sim::runners::RunnerConfig::default()
            .boot_delay
            .mean();
        Model {
            boot: cloud.boot_delay + runner,
            rebuild: cloud.action_delay + runner,
            shutdown: cloud.shutdown_delay,
            reconcile: Duration::from_secs(15),
            resync: Duration::from_secs(300),
            settle: Duration::from_secs(20),
            coalesce: Duration::from_millis(500),
            patience: Duration::from_secs(24 * 3600),
        }
    }
}

impl Model {
    /// The controller loop's pacing under this model, as the daemon would pace it.
    pub fn pace(&self, recycling: bool) -> mayfly_core::Pace {
        mayfly_core::Pace {
            unsettled: self.reconcile,
            resync: self.resync,
            settle: (!recycling).then_some(self.settle),
            coalesce: self.coalesce,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EstimateError {
    #[error("pool {pool}, runner labels {labels}: {problem}")]
    Price {
        pool: String,
        labels: String,
        problem: PriceError,
    },
    #[error(
        "the planner deleted {instance} while its runner was busy: a planner bug, please report it"
    )]
    DeletedBusy { instance: String },
}

/// A trace ready to replay: jobs with keys, workflow runs and shared label sets.
#[derive(Clone, Debug)]
pub struct Trace {
    jobs: Vec<TraceRecord>,
}

impl Trace {
    /// Job ids are trace positions plus one. Jobs sharing a `run` (with the same repository
    /// and submit time) share a workflow run id; a job without one is a run of its own.
    pub fn new(trace: &[TraceJob]) -> Trace {
        let mut labels: HashMap<Vec<String>, Labels> = HashMap::new();
        let mut repos: HashMap<&str, Arc<str>> = HashMap::new();
        let mut runs: HashMap<(i64, &str, &str), u64> = HashMap::new();
        let mut next_run = 0;
        let mut jobs = Vec::with_capacity(trace.len());
        for (n, j) in trace.iter().enumerate() {
            let arrives = Time::from_millis((j.at * 1000.0).round() as i64);
            let id = n as u64 + 1;
            let run_id = match &j.run {
                Some(run) => *runs
                    .entry((arrives.millis(), j.repo.as_str(), run.as_str()))
                    .or_insert_with(|| {
                        next_run += 1;
                        next_run
                    }),
                None => {
                    next_run += 1;
                    next_run
                }
            };
            jobs.push(TraceRecord {
                key: JobKey {
                    forge: mayfly_core::ForgeKind::Github,
                    scope: repos
                        .entry(j.repo.as_str())
                        .or_insert_with(|| Arc::from(j.repo.as_str()))
                        .clone(),
                    id,
                },
                run_id,
                labels: labels
                    .entry(j.labels.clone())
                    .or_insert_with(|| Labels::new(&j.labels))
                    .clone(),
                arrives,
                duration: Duration::from_secs_f64(j.duration),
                started: None,
                finished: None,
                price: 0.0,
                instances_created: 0,
            });
        }
        Trace { jobs }
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// From the first arrival to the last.
    pub fn span(&self) -> Duration {
        let at = self.jobs.iter().map(|j| j.arrives);
        match (at.clone().min(), at.max()) {
            (Some(a), Some(b)) => b.since(a),
            _ => Duration::ZERO,
        }
    }

    fn records(&self) -> Vec<TraceRecord> {
        self.jobs.clone()
    }

    fn arrivals(&self) -> impl Iterator<Item = (usize, Time)> + '_ {
        self.jobs.iter().enumerate().map(|(n, j)| (n, j.arrives))
    }
}

/// Replays `trace` once against `pools`.
pub fn run(
    trace: &Trace,
    pools: &Pools,
    prices: &Prices,
    model: &Model,
) -> Result<Outcome, EstimateError> {
    check_prices(pools, prices)?;
    engine::run(trace, pools, prices, model)
}

/// Replays `trace` under each scenario, on as many threads as there are scenarios.
pub fn run_all(
    trace: &Trace,
    pools: &Pools,
    prices: &Prices,
    model: &Model,
    scenarios: &[Scenario],
) -> Result<Vec<(Scenario, Outcome)>, EstimateError> {
    check_prices(pools, prices)?;
    let results: Vec<Result<Outcome, EstimateError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = scenarios
            .iter()
            .map(|s| {
                let pools = s.apply(pools);
                scope.spawn(move || engine::run(trace, &pools, prices, model))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    scenarios
        .iter()
        .cloned()
        .zip(results)
        .map(|(s, r)| r.map(|o| (s, o)))
        .collect()
}

/// Every pool's own machine has a price, before any replay starts.
fn check_prices(pools: &Pools, prices: &Prices) -> Result<(), EstimateError> {
    for p in &pools.pools {
        prices
            .place(&p.spec)
            .map_err(|problem| EstimateError::Price {
                pool: p.name.clone(),
                labels: p.labels.to_string(),
                problem,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
