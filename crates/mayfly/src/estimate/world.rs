//! The estimate's world: the snapshot the planner reads (jobs, instances, runners) kept up to
//! date in place, GitHub's rule for handing a queued job to an idle runner, and what each job and
//! machine cost.

use mayfly_core::{
    Billing, Instance, InstanceState, Job, JobKey, JobStatus, Labels, Pools, Runner, RunnerScope,
    RunnerStatus, Snapshot, Time,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// One job of the trace and what became of it.
#[derive(Clone, Debug)]
pub struct TraceRecord {
    pub key: JobKey,
    pub run_id: u64,
    pub labels: Labels,
    pub arrives: Time,
    pub duration: Duration,
    pub started: Option<Time>,
    pub finished: Option<Time>,
    /// Hourly price of the machine that ran it, for the job-seconds' own cost.
    pub price: f64,
    pub instances_created: u32,
}

/// Where a runner is registered, which decides the jobs GitHub may hand it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scope {
    /// An organization runner: any repository.
    Any,
    Repo(Arc<str>),
    /// A repository runner of a standby machine when no repository is configured for standby.
    Nowhere,
}

impl Scope {
    fn covers(&self, repo: &str) -> bool {
        match self {
            Scope::Any => true,
            Scope::Repo(r) => r.eq_ignore_ascii_case(repo),
            Scope::Nowhere => false,
        }
    }
}

/// What the planner does not see about a machine.
#[derive(Clone, Debug)]
pub struct Machine {
    /// Counts boots: events of an earlier boot find a different number and are dropped.
    pub boot: u32,
    pub created: Time,
    pub billing: Billing,
    scope: Scope,
}

/// A machine that no longer exists, or still existed when the estimate ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Billed {
    pub lifetime: Duration,
    pub cost: f64,
}

/// The world at one moment. `snap` is what the planner gets, changed in place as events happen.
pub struct World {
    pub snap: Snapshot,
    pub jobs: Vec<TraceRecord>,
    pub machines: HashMap<String, Machine>,
    pub billed: Vec<Billed>,
    next_runner: u64,
    scope: RunnerScope,
    /// One shared allocation per distinct label set: the planner numbers label sets by their
    /// allocation first, so machines from different passes with equal labels cost one hash.
    labels: HashSet<Labels>,
}

/// A job that a runner took: the engine schedules its end.
pub struct Started {
    pub job: usize,
    pub runner: String,
    pub ends: Time,
}

impl World {
    pub fn new(jobs: Vec<TraceRecord>, pools: &Pools) -> World {
        World {
            snap: Snapshot::default(),
            jobs,
            machines: HashMap::new(),
            billed: Vec::new(),
            next_runner: 1,
            scope: pools.runner_scope.clone(),
            labels: HashSet::new(),
        }
    }

    /// Job `n` of the trace is queued now; GitHub hands it at once to an idle runner that fits,
    /// the one idle longest.
    pub fn arrive(&mut self, n: usize, now: Time) -> Option<Started> {
        let t = &self.jobs[n];
        self.snap.jobs.push(Job {
            key: t.key.clone(),
            run_id: Some(t.run_id),
            attempt: 1,
            labels: t.labels.clone(),
            status: JobStatus::Queued,
            queued_at: now,
            instances_created: 0,
            runner: None,
        });
        let runner = self
            .snap
            .runners
            .iter()
            .filter(|r| r.is_idle() && self.can_take(r, &t.labels, &t.key))
            .min_by(|a, b| (a.since, &a.name).cmp(&(b.since, &b.name)))?
            .name
            .clone();
        self.start(n, &runner, now)
    }

    /// The runner of machine `name` (in boot `boot`) registers and asks for a job: GitHub hands
    /// it the oldest queued job it can take.
    pub fn register(&mut self, name: &str, boot: u32, now: Time) -> Option<Started> {
        let machine = self.machines.get(name).filter(|m| m.boot == boot)?;
        let inst = self
            .snap
            .instances
            .iter_mut()
            .find(|i| i.name == name && i.state == InstanceState::Starting)?;
        // Registering changes no deadline: the machine has been up since its boot began.
        inst.state = InstanceState::Running;
        let runner = Runner {
            id: self.next_runner,
            name: name.to_string(),
            status: RunnerStatus::Online,
            busy: false,
            labels: inst.labels.clone(),
            since: now,
        };
        self.next_runner += 1;
        let scope = machine.scope.clone();
        let job = self
            .snap
            .jobs
            .iter()
            .filter(|j| {
                j.status == JobStatus::Queued
                    && scope.covers(&j.key.scope)
                    && j.labels.is_subset_of(&runner.labels)
            })
            .min_by_key(|j| (j.queued_at, j.key.id))
            .map(|j| j.key.id);
        self.snap.runners.push(runner);
        self.start(trace_index(job?), name, now)
    }

    fn can_take(&self, runner: &Runner, labels: &Labels, key: &JobKey) -> bool {
        labels.is_subset_of(&runner.labels)
            && self
                .machines
                .get(&runner.name)
                .is_some_and(|m| m.scope.covers(&key.scope))
    }

    fn start(&mut self, n: usize, runner: &str, now: Time) -> Option<Started> {
        let key = self.jobs[n].key.clone();
        let job = self.snap.jobs.iter_mut().find(|j| j.key == key)?;
        job.status = JobStatus::InProgress;
        job.runner = Some(runner.to_string());
        let r = self.snap.runners.iter_mut().find(|r| r.name == runner)?;
        r.busy = true;
        r.since = now;
        let t = &mut self.jobs[n];
        t.started = Some(now);
        t.price = self
            .machines
            .get(runner)
            .map_or(0.0, |m| m.billing.price_per_hour);
        Some(Started {
            job: n,
            runner: runner.to_string(),
            ends: now.plus(t.duration),
        })
    }

    /// Job `n` is done on the machine `name`: the single-use runner leaves and the machine's OS
    /// shuts it down, `stopping` until it is off, as the simulator's servers do. Returns whether
    /// it happened (not a stale event).
    pub fn finish(&mut self, n: usize, name: &str, boot: u32, now: Time) -> bool {
        if self.machines.get(name).is_none_or(|m| m.boot != boot) {
            return false;
        }
        let key = &self.jobs[n].key;
        self.snap.jobs.retain(|j| &j.key != key);
        self.jobs[n].finished = Some(now);
        self.snap.runners.retain(|r| r.name != name);
        if let Some(inst) = self.snap.instances.iter_mut().find(|i| i.name == name) {
            inst.state = InstanceState::Stopping;
            inst.state_since = now;
        }
        true
    }

    /// The machine's OS has powered it off.
    pub fn power_off(&mut self, name: &str, boot: u32, now: Time) -> bool {
        if self.machines.get(name).is_none_or(|m| m.boot != boot) {
            return false;
        }
        match self.snap.instances.iter_mut().find(|i| i.name == name) {
            Some(inst) => {
                inst.state = InstanceState::Off;
                inst.state_since = now;
                true
            }
            None => false,
        }
    }

    fn shared(&mut self, labels: &Labels) -> Labels {
        if let Some(l) = self.labels.get(labels) {
            return l.clone();
        }
        self.labels.insert(labels.clone());
        labels.clone()
    }

    /// A new machine, already placed and priced, starts booting.
    pub fn create(&mut self, mut inst: Instance, billing: Billing, now: Time) {
        inst.billing = Some(billing.clone());
        inst.labels = self.shared(&inst.labels);
        let scope = self.scope_for(&inst);
        self.machines.insert(
            inst.name.clone(),
            Machine {
                boot: 0,
                created: now,
                billing,
                scope,
            },
        );
        if let Some(key) = &inst.job
            && let Some(t) = self.jobs.get_mut(trace_index(key.id))
            && &t.key == key
        {
            t.instances_created += 1;
            let count = t.instances_created;
            if let Some(j) = self.snap.jobs.iter_mut().find(|j| &j.key == key) {
                j.instances_created = count;
            }
        }
        self.snap.instances.push(inst);
    }

    /// A kept machine is rebuilt for its next runner; returns its new boot number.
    pub fn reuse(
        &mut self,
        name: &str,
        pool: &str,
        labels: &Labels,
        job: Option<&JobKey>,
        run_id: Option<u64>,
        now: Time,
    ) -> Option<u32> {
        let labels = self.shared(labels);
        let inst = self.snap.instances.iter_mut().find(|i| i.name == name)?;
        inst.state = InstanceState::Starting;
        inst.state_since = now;
        inst.pool = pool.to_string();
        inst.labels = labels;
        inst.job = job.cloned();
        inst.run_id = run_id;
        let scope = scope_of(&self.scope, job);
        self.snap.runners.retain(|r| r.name != name);
        let m = self.machines.get_mut(name)?;
        m.boot += 1;
        m.scope = scope;
        Some(m.boot)
    }

    /// Deletes the machine and bills its whole life. `Err` names a busy one: the planner must
    /// never ask for that.
    pub fn delete(&mut self, name: &str, now: Time) -> Result<(), String> {
        if self.snap.runners.iter().any(|r| r.name == name && r.busy) {
            return Err(name.to_string());
        }
        self.snap.instances.retain(|i| i.name != name);
        self.snap.runners.retain(|r| r.name != name);
        if let Some(m) = self.machines.remove(name) {
            self.billed.push(bill(&m, now));
        }
        Ok(())
    }

    pub fn remove_runner(&mut self, id: u64) {
        self.snap.runners.retain(|r| r.id != id || r.busy);
    }

    /// Bills every machine still there as if deleted now (the estimate ends).
    pub fn close(&mut self, now: Time) {
        let mut left: Vec<_> = self.machines.drain().collect();
        left.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, m) in left {
            self.billed.push(bill(&m, now));
        }
    }

    fn scope_for(&self, inst: &Instance) -> Scope {
        scope_of(&self.scope, inst.job.as_ref())
    }
}

/// A job's position in the trace: job ids are positions plus one.
pub fn trace_index(id: u64) -> usize {
    id.saturating_sub(1) as usize
}

/// Where a machine's runner registers: the job's repository for repository runners (a standby
/// machine's in the configured standby repository), anywhere for organization runners.
fn scope_of(scope: &RunnerScope, job: Option<&JobKey>) -> Scope {
    match scope {
        RunnerScope::Shared => Scope::Any,
        RunnerScope::Repository { standby } => match (job, standby) {
            (Some(k), _) => Scope::Repo(k.scope.clone()),
            (None, Some(repo)) => Scope::Repo(Arc::from(repo.as_str())),
            (None, None) => Scope::Nowhere,
        },
    }
}

fn bill(m: &Machine, now: Time) -> Billed {
    let lifetime = now.since(m.created);
    Billed {
        lifetime,
        cost: m.billing.cost(lifetime),
    }
}
