//! What one scenario of the estimate came to (cost, queue waits, machines), and the table that
//! sets the scenarios side by side on a terminal.

use super::scenarios::Scenario;
use mayfly_core::time::human;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Outcome {
    /// Jobs in the trace.
    pub jobs: usize,
    /// Jobs a runner took.
    pub served: usize,
    /// Jobs a pool serves that no runner took, counted by why they still waited at the end.
    pub unserved: BTreeMap<String, usize>,
    /// Jobs no pool serves (no pool has their labels, or a dynamic label is malformed), by the
    /// planner's reason: left to other runners, such as GitHub's own (`ubuntu-latest`).
    pub no_pool: BTreeMap<String, usize>,
    /// What every machine was billed, in the prices' currency (EUR).
    pub cost: f64,
    /// The job-seconds alone, each at the hourly price of the machine that ran it.
    pub job_cost: f64,
    /// `cost / job_cost`: the cost target of docs/ARCHITECTURE.md (≤ 1.5 for steady 5-minute jobs, hourly
    /// billing, recycling on). `None` when no job ran.
    pub cost_ratio: Option<f64>,
    pub job_seconds: f64,
    /// Queue wait of the served jobs, in seconds: from queued until a runner took the job.
    pub wait: Waits,
    /// Most machines that existed at once (booting, busy, idle, powered off).
    pub peak_machines: usize,
    pub machines_created: u64,
    /// Powered-off machines rebuilt for another job or standby (recycling).
    pub reuses: u64,
    /// Machine lifetimes added up (billing rounds each up to whole hours).
    pub machine_hours: f64,
    /// Virtual time from the trace's start to the end of the estimate.
    pub simulated_secs: f64,
    /// Events handled and plans made: the work of the simulation.
    pub events: u64,
    pub plans: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Waits {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
}

impl Waits {
    /// The summary of queue waits in seconds: nearest-rank p50 and p95, the longest, and the
    /// mean to the millisecond; each `None` without any wait. The demo reports its run with it.
    pub fn of(mut waits: Vec<f64>) -> Waits {
        waits.sort_by(f64::total_cmp);
        let mean = (!waits.is_empty()).then(|| waits.iter().sum::<f64>() / waits.len() as f64);
        Waits {
            p50: percentile(&waits, 0.50),
            p95: percentile(&waits, 0.95),
            max: waits.last().copied(),
            mean: mean.map(|m| round(m, 3)),
        }
    }
}

impl Outcome {
    pub fn unserved_jobs(&self) -> usize {
        self.unserved.values().sum()
    }

    pub fn no_pool_jobs(&self) -> usize {
        self.no_pool.values().sum()
    }

    /// Fills the wait statistics and the cost ratio from the collected numbers, and rounds
    /// what float sums left ragged (a millionth of a euro, a millisecond).
    pub(super) fn set_waits(&mut self, waits: Vec<f64>) {
        self.wait = Waits::of(waits);
        self.cost_ratio = (self.job_cost > 0.0).then(|| round(self.cost / self.job_cost, 4));
        self.cost = round(self.cost, 6);
        self.job_cost = round(self.job_cost, 6);
        self.job_seconds = round(self.job_seconds, 3);
        self.machine_hours = round(self.machine_hours, 4);
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// Nearest rank on sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(rank).copied()
}

fn secs(s: Option<f64>) -> String {
    s.map_or_else(
        || "-".to_string(),
        |s| human(Duration::from_secs_f64(s.max(0.0).round())),
    )
}

/// The scenarios side by side, one line each, the configured one marked `*`; fits 80 columns.
pub fn table(rows: &[(Scenario, Outcome)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<7} {:<7} {:>9} {:>6} {:>6} {:>6} {:>6} {:>5} {:>7} {:>8}",
        "recycle",
        "standby",
        "cost EUR",
        "ratio",
        "wait50",
        "p95",
        "max",
        "peak",
        "created",
        "unserved"
    );
    for (s, o) in rows {
        let ratio = o
            .cost_ratio
            .map_or_else(|| "-".to_string(), |r| format!("{r:.2}"));
        let _ = writeln!(
            out,
            "{} {:<7} {:<7} {:>9.4} {:>6} {:>6} {:>6} {:>6} {:>5} {:>7} {:>8}",
            if s.configured { '*' } else { ' ' },
            if s.recycling { "on" } else { "off" },
            s.standby_label(),
            o.cost,
            ratio,
            secs(o.wait.p50),
            secs(o.wait.p95),
            secs(o.wait.max),
            o.peak_machines,
            o.machines_created,
            o.unserved_jobs()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_and_ratio_are_summarised() {
        let mut o = Outcome {
            cost: 3.0,
            job_cost: 2.0,
            ..Outcome::default()
        };
        o.set_waits(vec![30.0, 10.0, 20.0, 40.0, 1000.0]);
        assert_eq!(o.wait.p50, Some(30.0));
        assert_eq!(o.wait.p95, Some(1000.0));
        assert_eq!(o.wait.max, Some(1000.0));
        assert_eq!(o.cost_ratio, Some(1.5));
        let mut none = Outcome::default();
        none.set_waits(Vec::new());
        assert_eq!((none.wait.p50, none.cost_ratio), (None, None));
    }

    #[test]
    fn the_table_fits_a_terminal() {
        let mut o = Outcome {
            cost: 123.4567,
            job_cost: 100.0,
            peak_machines: 12_345,
            machines_created: 1_234_567,
            ..Outcome::default()
        };
        o.unserved.insert("no pool".into(), 12_345);
        o.set_waits(vec![40.0, 95.0, 7800.0]);
        let s = Scenario {
            recycling: true,
            standby: vec![10, 20],
            configured: true,
        };
        let t = table(&[(s, o)]);
        assert!(t.lines().all(|l| l.chars().count() <= 80), "{t}");
        let line = t.lines().nth(1).unwrap();
        assert!(line.starts_with("* on"), "{line}");
        assert!(line.contains("123.4567") && line.contains("1.23") && line.contains("2h10m"));
    }
}
