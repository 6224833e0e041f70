//! The discrete-event loop: events in virtual time from a binary heap, and the real planner
//! whenever the controller's loop would pass, its plan carried out at once.

use super::prices::Prices;
use super::report::Outcome;
use super::world::{Started, World};
use super::{EstimateError, Model, Trace};
use mayfly_core::{
    Action, Ended, Instance, InstanceState, JobStatus, Pacer, Pools, Time, WaitReason, plan,
};
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

/// Something that happens at a moment of virtual time.
#[derive(Clone, Debug, PartialEq, Eq)]
enum What {
    /// Job (by trace position) is queued.
    Arrive(usize),
    /// The runner of machine `name` in boot `boot` registers.
    Registered { name: String, boot: u32 },
    /// The job ends on the machine.
    Done { job: usize, name: String, boot: u32 },
    /// The machine is off after its job.
    Off { name: String, boot: u32 },
    /// The loop's next pass, as its `Pacer` schedules it.
    Check,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Event {
    at: Time,
    /// Ties in time go in the order the events were made.
    seq: u64,
    what: What,
}

impl Ord for Event {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

struct Engine<'a> {
    pools: &'a Pools,
    prices: &'a Prices,
    model: &'a Model,
    world: World,
    queue: BinaryHeap<Reverse<Event>>,
    seq: u64,
    now: Time,
    /// When the controller's loop passes: the daemon's rule.
    pacer: Pacer,
    /// The pending `Check` that counts; any other in the queue is stale.
    check_at: Option<Time>,
    arrivals_left: usize,
    last_arrival: Time,
    /// Why each queued job waited in the last plan.
    waiting: HashMap<u64, WaitReason>,
    /// Jobs no pool serves, taken out of the world, and why.
    no_pool: HashMap<u64, String>,
    outcome: Outcome,
}

/// Replays `trace` against `pools` in virtual time; see the module documentation of `estimate`.
pub fn run(
    trace: &Trace,
    pools: &Pools,
    prices: &Prices,
    model: &Model,
) -> Result<Outcome, EstimateError> {
    let mut e = Engine {
        pools,
        prices,
        model,
        world: World::new(trace.records(), pools),
        queue: BinaryHeap::with_capacity(trace.len() * 2),
        seq: 0,
        now: Time::from_millis(0),
        pacer: Pacer::new(model.pace(pools.recycling.enabled)),
        check_at: None,
        arrivals_left: trace.len(),
        last_arrival: Time::from_millis(0),
        waiting: HashMap::new(),
        no_pool: HashMap::new(),
        outcome: Outcome::default(),
    };
    // The controller's first pass, before any job: standby runners start booting.
    e.schedule();
    for (n, at) in trace.arrivals() {
        e.last_arrival = e.last_arrival.max(at);
        e.push(at, What::Arrive(n));
    }
    e.run()?;
    Ok(e.finish())
}

impl Engine<'_> {
    fn push(&mut self, at: Time, what: What) {
        self.seq += 1;
        self.queue.push(Reverse(Event {
            at,
            seq: self.seq,
            what,
        }));
    }

    fn run(&mut self) -> Result<(), EstimateError> {
        while let Some(Reverse(first)) = self.queue.pop() {
            self.now = first.at;
            self.handle(first.what);
            while let Some(Reverse(next)) = self.queue.peek()
                && next.at == self.now
            {
                let Some(Reverse(next)) = self.queue.pop() else {
                    break;
                };
                self.handle(next.what);
            }
            if self.pacer.is_due(self.now) {
                self.pacer.started(self.now);
                self.plan()?;
            }
            self.schedule();
            if self.over() {
                break;
            }
        }
        Ok(())
    }

    /// Carries out one event and tells the pacer what the controller's loop would hear of it:
    /// a queued job wakes it, a finished one brings a pass at once while jobs wait (or a settle
    /// pass without recycling), a deadline (an idle runner's, a powered-off machine's) brings it
    /// back. Stale events (their machine was deleted or rebuilt since) change nothing.
    fn handle(&mut self, what: What) {
        self.outcome.events += 1;
        let now = self.now;
        match what {
            What::Arrive(n) => {
                self.arrivals_left -= 1;
                let started = self.world.arrive(n, now);
                self.started(started);
                self.pacer.queued(now);
            }
            What::Registered { name, boot } => {
                if self
                    .world
                    .machines
                    .get(&name)
                    .is_none_or(|m| m.boot != boot)
                {
                    return;
                }
                // An idle runner is standby, or has an idle deadline; a busy one changes nothing.
                let started = self.world.register(&name, boot, now);
                if started.is_none() {
                    self.pacer.want(now);
                }
                self.started(started);
            }
            What::Done { job, name, boot } => {
                if self.world.finish(job, &name, boot, now) {
                    let at = now.plus(self.model.shutdown);
                    self.push(at, What::Off { name, boot });
                    self.pacer.finished(now);
                }
            }
            What::Off { name, boot } => {
                self.world.power_off(&name, boot, now);
            }
            What::Check => {
                if self.check_at == Some(now) {
                    self.check_at = None;
                }
            }
        }
    }

    fn started(&mut self, started: Option<Started>) {
        if let Some(s) = started {
            let boot = self.world.machines.get(&s.runner).map_or(0, |m| m.boot);
            self.push(
                s.ends,
                What::Done {
                    job: s.job,
                    name: s.runner,
                    boot,
                },
            );
        }
    }

    /// A `Check` event at the pacer's next pass. Only the latest pending `Check` counts; an
    /// earlier one still in the heap finds `check_at` changed and passes for nothing.
    fn schedule(&mut self) {
        let at = self.pacer.due().max(self.now);
        if self.check_at != Some(at) {
            self.check_at = Some(at);
            self.push(at, What::Check);
        }
    }

    /// One reconcile pass: the real planner on the world as it is, its plan carried out at once.
    fn plan(&mut self) -> Result<(), EstimateError> {
        let now = self.now;
        let plan = plan(&self.world.snap, self.pools, now);
        self.outcome.plans += 1;
        for action in plan.actions {
            match action {
                Action::Delete { instance, .. } => self
                    .world
                    .delete(&instance, now)
                    .map_err(|instance| EstimateError::DeletedBusy { instance })?,
                Action::RemoveRunner { runner_id, .. } => self.world.remove_runner(runner_id),
                Action::DropIntent { name, .. } => {
                    // Never made here (creates take effect at once); carried out all the same.
                    self.world.delete(&name, now).ok();
                }
                Action::Reuse {
                    instance,
                    pool,
                    labels,
                    job,
                    run_id,
                    ..
                } => {
                    if let Some(boot) =
                        self.world
                            .reuse(&instance, &pool, &labels, job.as_ref(), run_id, now)
                    {
                        self.outcome.reuses += 1;
                        let at = now.plus(self.model.rebuild);
                        self.push(
                            at,
                            What::Registered {
                                name: instance,
                                boot,
                            },
                        );
                    }
                }
                Action::Create {
                    name,
                    pool,
                    spec,
                    labels,
                    job,
                    run_id,
                    ..
                } => {
                    let (placement, billing) =
                        self.prices
                            .place(&spec)
                            .map_err(|problem| EstimateError::Price {
                                pool: pool.clone(),
                                labels: labels.to_string(),
                                problem,
                            })?;
                    let inst = Instance {
                        name: name.clone(),
                        provider_id: Some(name.clone()),
                        controller: Some(self.pools.controller.clone()),
                        pool,
                        state: InstanceState::Starting,
                        created_at: now,
                        state_since: now,
                        labels,
                        placement: Some(placement),
                        job,
                        run_id,
                        billing: None,
                        address: None,
                    };
                    self.world.create(inst, billing, now);
                    self.outcome.machines_created += 1;
                    let at = now.plus(self.model.boot);
                    self.push(at, What::Registered { name, boot: 0 });
                }
            }
        }
        self.outcome.peak_machines = self
            .outcome
            .peak_machines
            .max(self.world.snap.instances.len());
        // A job no pool serves never will under this configuration (the reason depends on its
        // labels only): it is left to other runners (GitHub's own, say) and out of the world.
        let mut waiting = HashMap::with_capacity(plan.waiting.len());
        for w in plan.waiting {
            if matches!(
                w.why,
                WaitReason::NoPool { .. } | WaitReason::BadLabel { .. }
            ) {
                self.world.snap.jobs.retain(|j| j.key != w.job);
                self.no_pool.insert(w.job.id, w.why.to_string());
            } else {
                waiting.insert(w.job.id, w.why);
            }
        }
        // The loop's timer, as the daemon's pacer sets it: the next deadline, but no later than
        // `reconcile` while a job waits (for a limit, say), `resync` otherwise.
        self.pacer.ended(
            now,
            Ended {
                unsettled: !waiting.is_empty(),
                waiting: !waiting.is_empty(),
                next_check: plan.next_check,
                again: false,
            },
        );
        self.waiting = waiting;
        Ok(())
    }

    /// Every job arrived and none runs; any still queued has waited past the patience.
    fn over(&self) -> bool {
        self.arrivals_left == 0
            && self
                .world
                .snap
                .jobs
                .iter()
                .all(|j| j.status == JobStatus::Queued)
            && (self.world.snap.jobs.is_empty()
                || self.now > self.last_arrival.plus(self.model.patience))
    }

    fn finish(mut self) -> Outcome {
        let end = self.now;
        self.world.close(end);
        let mut o = self.outcome;
        o.simulated_secs = end.millis() as f64 / 1000.0;
        o.cost = self.world.billed.iter().map(|b| b.cost).sum();
        o.machine_hours = self
            .world
            .billed
            .iter()
            .map(|b| b.lifetime.as_secs_f64() / 3600.0)
            .sum();
        let mut waits = Vec::with_capacity(self.world.jobs.len());
        for t in &self.world.jobs {
            match (t.started, t.finished) {
                (Some(s), finished) => {
                    waits.push(s.since(t.arrives).as_secs_f64());
                    if finished.is_some() {
                        let secs = t.duration.as_secs_f64();
                        o.job_seconds += secs;
                        o.job_cost += secs / 3600.0 * t.price;
                    }
                }
                (None, _) => match self.no_pool.get(&t.key.id) {
                    Some(why) => *o.no_pool.entry(why.clone()).or_default() += 1,
                    None => {
                        let why = self.waiting.get(&t.key.id).map_or_else(
                            || "still queued at the end".to_string(),
                            |w| format!("still waiting at the end: {w}"),
                        );
                        *o.unserved.entry(why).or_default() += 1;
                    }
                },
            }
        }
        o.jobs = self.world.jobs.len();
        o.served = waits.len();
        o.set_waits(waits);
        o
    }
}
