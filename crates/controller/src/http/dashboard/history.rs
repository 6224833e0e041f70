//! The dashboard's over-time series: one sample a minute from the passes' views (queue wait,
//! machines by state, cost per hour, jobs served), the last hours, each minute also saved in
//! the store (`samples`) and read back after a restart or a failover. A store with no samples
//! yet (the first start) gets its jobs served from the store's finished jobs.

use crate::view::{InstanceView, RunnerState, View};
use mayfly_core::{InstanceState, JobStatus, Time};
use std::collections::{HashSet, VecDeque};

/// Minutes of history kept: what the plots show.
pub const MINUTES: usize = 6 * 60;
const MINUTE_MS: i64 = 60_000;

/// The machines of one sample, by what they are doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Machines {
    /// Being created or booted (no runner yet).
    pub starting: u32,
    /// Running a job.
    pub busy: u32,
    /// Up, runner waiting for a job.
    pub idle: u32,
    /// Powered off, kept while their hour is paid.
    pub off: u32,
    /// Being stopped or deleted, or in an unknown state.
    pub leaving: u32,
}

/// One minute: the last pass's figures in it, and the jobs that finished during it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// The minute, in milliseconds since the epoch (a multiple of 60,000).
    pub minute: i64,
    /// The longest wait of a queued job, in seconds.
    pub wait_max: u64,
    pub queued: u32,
    pub machines: Machines,
    /// What the machines cost per hour.
    pub cost_per_hour: f64,
    /// Jobs that left the queue and ran to the end in this minute.
    pub served: u32,
}

/// The samples, oldest first, and the jobs the last view held (to tell which have finished).
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
    running: HashSet<String>,
}

/// What a view's machines are doing.
pub fn machines(view: &View) -> Machines {
    let mut m = Machines::default();
    for i in &view.instances {
        m.count(i);
    }
    m
}

impl Machines {
    /// Counts `i` where it belongs: a running machine whose runner has not come online is
    /// still starting.
    pub fn count(&mut self, i: &InstanceView) {
        match (i.state, i.runner) {
            (InstanceState::Pending | InstanceState::Starting, _) => self.starting += 1,
            (InstanceState::Running, RunnerState::Busy) => self.busy += 1,
            (InstanceState::Running, RunnerState::Idle) => self.idle += 1,
            (InstanceState::Running, _) => self.starting += 1,
            (InstanceState::Off, _) => self.off += 1,
            _ => self.leaving += 1,
        }
    }
}

impl History {
    /// Jobs finished before the first pass, from the store: each counts in the minute it ended.
    pub fn backfill_served(&mut self, finished: impl IntoIterator<Item = Time>, now: Time) {
        let first = now.millis() - (MINUTES as i64 - 1) * MINUTE_MS;
        for at in finished {
            if at.millis() >= first && at.millis() <= now.millis() {
                self.at(at.millis()).served += 1;
            }
        }
    }

    /// Samples saved in the store, replacing what is kept.
    pub fn load(&mut self, saved: impl IntoIterator<Item = mayfly_store::Sample>) {
        self.samples.clear();
        for s in saved {
            *self.at(s.minute) = from_store(&s);
        }
    }

    /// Adds one pass's view; its minute's sample, to save.
    pub fn record(&mut self, view: &View) -> mayfly_store::Sample {
        let now: HashSet<String> = view
            .jobs
            .iter()
            .filter(|j| j.status == JobStatus::InProgress)
            .map(|j| j.key.clone())
            .collect();
        // A job seen running that is gone from the view (or completed) has finished.
        let finished = self.running.iter().filter(|k| !now.contains(*k)).count() as u32;
        self.running = now;
        let queued: Vec<u64> = view
            .jobs
            .iter()
            .filter(|j| j.status == JobStatus::Queued)
            .map(|j| j.age_seconds)
            .collect();
        let sample = self.at(view.at.millis());
        sample.served += finished;
        sample.wait_max = queued.iter().copied().max().unwrap_or(0);
        sample.queued = queued.len() as u32;
        sample.machines = machines(view);
        sample.cost_per_hour = view.cost.per_hour;
        to_store(sample)
    }

    /// The sample of the minute of `ms`, made (and the oldest dropped) as needed.
    fn at(&mut self, ms: i64) -> &mut Sample {
        let minute = ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let pos = match self.samples.binary_search_by_key(&minute, |s| s.minute) {
            Ok(pos) => pos,
            Err(pos) => {
                self.samples.insert(
                    pos,
                    Sample {
                        minute,
                        ..Sample::default()
                    },
                );
                if self.samples.len() > MINUTES {
                    self.samples.pop_front();
                    pos.saturating_sub(1)
                } else {
                    pos
                }
            }
        };
        &mut self.samples[pos]
    }

    pub fn samples(&self) -> &VecDeque<Sample> {
        &self.samples
    }
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

fn from_store(s: &mayfly_store::Sample) -> Sample {
    Sample {
        minute: s.minute,
        wait_max: u64::try_from(s.wait_max_secs.max(0)).unwrap_or(0),
        queued: count(s.queued),
        machines: Machines {
            starting: count(s.starting),
            busy: count(s.busy),
            idle: count(s.idle),
            off: count(s.powered_off),
            leaving: count(s.leaving),
        },
        cost_per_hour: s.cost_per_hour_micros as f64 / 1e6,
        served: count(s.served),
    }
}

fn to_store(s: &Sample) -> mayfly_store::Sample {
    mayfly_store::Sample {
        minute: s.minute,
        wait_max_secs: i64::try_from(s.wait_max).unwrap_or(i64::MAX),
        queued: s.queued.into(),
        starting: s.machines.starting.into(),
        busy: s.machines.busy.into(),
        idle: s.machines.idle.into(),
        powered_off: s.machines.off.into(),
        leaving: s.machines.leaving.into(),
        cost_per_hour_micros: (s.cost_per_hour * 1e6).round() as i64,
        served: s.served.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{CostView, JobView};

    fn job(key: &str, status: JobStatus, age: u64) -> JobView {
        JobView {
            key: key.into(),
            forge: "github".into(),
            scope: "acme/app".into(),
            id: 1,
            run_id: None,
            attempt: 1,
            status,
            labels: vec![],
            queued_at: Time(0),
            age_seconds: age,
            instance: None,
            waiting: None,
            waiting_reason: None,
        }
    }

    fn machine(name: &str, state: InstanceState, runner: RunnerState) -> InstanceView {
        InstanceView {
            name: name.into(),
            pool: "p".into(),
            provider: "hetzner".into(),
            provider_id: None,
            state,
            created_at: Time(0),
            age_seconds: 0,
            machine_type: None,
            location: None,
            address: None,
            job: None,
            runner,
            price_per_hour: None,
            cost_so_far: None,
            paid_until: None,
        }
    }

    fn view(at: i64, jobs: Vec<JobView>, instances: Vec<InstanceView>) -> View {
        View {
            controller: "mf".into(),
            at: Time(at),
            pools: vec![],
            jobs,
            instances,
            runners: vec![],
            cost: CostView {
                per_hour: 0.5,
                so_far: 1.0,
            },
            leader: None,
        }
    }

    #[test]
    fn a_minute_holds_its_last_pass_and_the_jobs_that_ended_in_it() {
        let mut h = History::default();
        h.record(&view(
            0,
            vec![
                job("a", JobStatus::InProgress, 5),
                job("b", JobStatus::Queued, 40),
                job("c", JobStatus::Queued, 12),
            ],
            vec![
                machine("m1", InstanceState::Running, RunnerState::Busy),
                machine("m2", InstanceState::Off, RunnerState::None),
                machine("m3", InstanceState::Pending, RunnerState::None),
            ],
        ));
        let s = &h.samples()[0];
        assert_eq!((s.wait_max, s.queued, s.served), (40, 2, 0));
        assert_eq!(
            s.machines,
            Machines {
                starting: 1,
                busy: 1,
                off: 1,
                ..Machines::default()
            }
        );
        // A minute later job a is gone: served; b runs.
        h.record(&view(
            61_000,
            vec![job("b", JobStatus::InProgress, 70)],
            vec![],
        ));
        let s = &h.samples()[1];
        assert_eq!(
            (s.minute, s.served, s.queued, s.wait_max),
            (60_000, 1, 0, 0)
        );
        assert_eq!(s.machines, Machines::default());
    }

    #[test]
    fn a_sample_reads_back_from_the_store_as_it_was_saved() {
        let mut h = History::default();
        let saved = h.record(&view(
            90_000,
            vec![job("b", JobStatus::Queued, 40)],
            vec![machine("m2", InstanceState::Off, RunnerState::None)],
        ));
        assert_eq!(
            (saved.minute, saved.wait_max_secs, saved.powered_off),
            (60_000, 40, 1)
        );
        assert_eq!(saved.cost_per_hour_micros, 500_000);
        let mut again = History::default();
        again.load([saved]);
        assert_eq!(again.samples(), h.samples());
    }

    #[test]
    fn only_the_last_hours_are_kept_and_the_backfill_lands_in_order() {
        let mut h = History::default();
        for m in 0..(MINUTES as i64 + 30) {
            h.record(&view(m * MINUTE_MS, vec![], vec![]));
        }
        assert_eq!(h.samples().len(), MINUTES);
        assert_eq!(h.samples()[0].minute, 30 * MINUTE_MS);
        let now = Time((MINUTES as i64 + 29) * MINUTE_MS);
        // One too old, two in a kept minute.
        h.backfill_served(
            [Time(0), Time(100 * MINUTE_MS), Time(100 * MINUTE_MS + 5)],
            now,
        );
        let s = h
            .samples()
            .iter()
            .find(|s| s.minute == 100 * MINUTE_MS)
            .unwrap();
        assert_eq!(s.served, 2);
        assert!(h.samples().iter().map(|s| s.served).sum::<u32>() == 2);
        let minutes: Vec<i64> = h.samples().iter().map(|s| s.minute).collect();
        assert!(minutes.windows(2).all(|w| w[0] < w[1]));
    }
}
