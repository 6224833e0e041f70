//! The planner: `plan(&Snapshot, &Pools, now) -> Plan`. Pure and deterministic: it only reads
//! its arguments, so every decision can be property-tested, simulated and benchmarked offline.
//!
//! One pass, in this order:
//! 1. classify every instance of this controller (busy, supply, recyclable, doomed, other);
//! 2. match queued jobs to supply one for one: first the instance made for the job, then idle
//!    runners and booting instances that can take it, then powered-off machines with paid time
//!    left (reuse), and only then new instances, within every limit;
//! 3. keep each pool's standby runners and delete idle ones past their deadline (before any
//!    create, so counts only grow from here on), serve the remaining jobs, top standby up;
//!    remove orphan runners.

use crate::billing::Recycle;
use crate::labels::Labels;
use crate::model::ForgeKind;
use crate::model::{
    Instance, InstanceState, Job, JobKey, JobStatus, MachineSpec, Placement, Pool, Pools, Runner,
    RunnerScope, Snapshot,
};
use crate::naming;
use crate::time::{Time, human};
use serde::Serialize;
// foldhash: the planner hashes ~100,000 short strings a pass; SipHash was a third of its time.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// One thing to do, with the reason a person can read in the logs and the audit trail.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Deregister the runner (if any), then delete the instance.
    Delete {
        instance: String,
        provider_id: Option<String>,
        runner_id: Option<u64>,
        reason: Reason,
    },
    /// Deregister a runner that has no instance.
    RemoveRunner {
        runner_id: u64,
        name: String,
        reason: Reason,
    },
    /// Forget an intent whose create never showed up at the provider.
    DropIntent { name: String, reason: Reason },
    /// Power a kept machine back on (or rebuild it) with a new runner registration.
    Reuse {
        instance: String,
        provider_id: Option<String>,
        pool: String,
        labels: Labels,
        job: Option<JobKey>,
        run_id: Option<u64>,
        reason: Reason,
    },
    /// Record the intent, then create the instance under this deterministic name.
    Create {
        name: String,
        pool: String,
        provider: String,
        spec: Arc<MachineSpec>,
        labels: Labels,
        job: Option<JobKey>,
        attempt: u32,
        run_id: Option<u64>,
        reason: Reason,
    },
}

impl Action {
    pub fn reason(&self) -> &Reason {
        match self {
            Action::Delete { reason, .. }
            | Action::RemoveRunner { reason, .. }
            | Action::DropIntent { reason, .. }
            | Action::Reuse { reason, .. }
            | Action::Create { reason, .. } => reason,
        }
    }

    /// The instance (or runner) the action is about.
    pub fn subject(&self) -> &str {
        match self {
            Action::Delete { instance, .. } | Action::Reuse { instance, .. } => instance,
            Action::RemoveRunner { name, .. }
            | Action::DropIntent { name, .. }
            | Action::Create { name, .. } => name,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self {
            Action::Delete { .. } => "delete",
            Action::RemoveRunner { .. } => "remove runner",
            Action::DropIntent { .. } => "drop intent",
            Action::Reuse { .. } => "reuse",
            Action::Create { .. } => "create",
        };
        write!(f, "{verb} {}: {}", self.subject(), self.reason())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    QueuedJob {
        job: JobKey,
        waited: Duration,
    },
    Standby {
        pool: String,
        have: u32,
        want: u32,
    },
    RegistrationDeadline {
        since: Duration,
        deadline: Duration,
    },
    IdleDeadline {
        idle: Duration,
        deadline: Duration,
    },
    PoweredOffDeadline {
        off: Duration,
        deadline: Duration,
    },
    PaidTimeUsedUp {
        paid_until: Time,
    },
    MaxLifetime {
        age: Duration,
        limit: Duration,
    },
    /// Its runner finished (or it was powered off) and it is still not off.
    StoppingDeadline {
        since: Duration,
        deadline: Duration,
    },
    OrphanRunner,
    IntentExpired {
        age: Duration,
    },
    /// Asked for by a person (`mayfly delete`, `DELETE /api/v1/instances/{name}`).
    Operator,
}

impl Reason {
    /// The reason's name without its details (the tag it serializes with): a bounded set, for
    /// metric labels and filters.
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::QueuedJob { .. } => "queued_job",
            Reason::Standby { .. } => "standby",
            Reason::RegistrationDeadline { .. } => "registration_deadline",
            Reason::IdleDeadline { .. } => "idle_deadline",
            Reason::PoweredOffDeadline { .. } => "powered_off_deadline",
            Reason::PaidTimeUsedUp { .. } => "paid_time_used_up",
            Reason::MaxLifetime { .. } => "max_lifetime",
            Reason::StoppingDeadline { .. } => "stopping_deadline",
            Reason::OrphanRunner => "orphan_runner",
            Reason::IntentExpired { .. } => "intent_expired",
            Reason::Operator => "operator",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::QueuedJob { job, waited } => {
                write!(f, "job {job} queued for {}", human(*waited))
            }
            Reason::Standby { pool, have, want } => {
                write!(
                    f,
                    "pool {pool} keeps {want} idle runner(s) ready and has {have}"
                )
            }
            Reason::RegistrationDeadline { since, deadline } => write!(
                f,
                "no runner registered {} after start (deadline {})",
                human(*since),
                human(*deadline)
            ),
            Reason::IdleDeadline { idle, deadline } => {
                write!(
                    f,
                    "runner idle for {} (deadline {})",
                    human(*idle),
                    human(*deadline)
                )
            }
            Reason::PoweredOffDeadline { off, deadline } => {
                write!(
                    f,
                    "powered off for {} (deadline {})",
                    human(*off),
                    human(*deadline)
                )
            }
            Reason::PaidTimeUsedUp { paid_until } => {
                write!(
                    f,
                    "paid time ends at {paid_until}: deleted before the next billing period"
                )
            }
            Reason::MaxLifetime { age, limit } => {
                write!(
                    f,
                    "{} old, past the maximum lifetime of {}",
                    human(*age),
                    human(*limit)
                )
            }
            Reason::StoppingDeadline { since, deadline } => write!(
                f,
                "still not off {} after its runner left (deadline {})",
                human(*since),
                human(*deadline)
            ),
            Reason::OrphanRunner => write!(f, "runner has no instance"),
            Reason::Operator => write!(f, "deleted by operator"),
            Reason::IntentExpired { age } => {
                write!(
                    f,
                    "create intent {} old never appeared at the provider",
                    human(*age)
                )
            }
        }
    }
}

/// How a queued job is served by this plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Assignment {
    pub job: JobKey,
    pub instance: String,
    pub how: How,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    /// An instance that exists (idle runner, booting, or create in flight).
    Existing,
    /// Its own machine's runner is busy while the job still looks queued: assumed to be
    /// running it until the forge says otherwise. The loop looks again soon.
    Assumed,
    Reuse,
    Create,
}

/// A queued job this plan does not serve, and why: the operator sees this.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Waiting {
    pub job: JobKey,
    pub why: WaitReason,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum WaitReason {
    NoPool {
        labels: Labels,
    },
    BadLabel {
        error: String,
    },
    Limit {
        limit: LimitKind,
        max: u32,
    },
    /// Every pool that serves the job has a machine spec the provider refused (an unknown type,
    /// image or location): nothing is tried until the configuration changes or the slow retry.
    PoolUnusable {
        pool: String,
        reason: String,
    },
    /// The job itself cannot be served (its runner cannot be registered where it belongs), for
    /// a reason that will not change by itself: left alone until the slow retry.
    Refused {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    Global,
    Pool(String),
    LabelSet(String),
    WorkflowRun(u64),
}

impl WaitReason {
    /// `no_pool`, `bad_label`, `limit`, `pool_unusable` or `refused` (the tag it serializes
    /// with), for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            WaitReason::NoPool { .. } => "no_pool",
            WaitReason::BadLabel { .. } => "bad_label",
            WaitReason::Limit { .. } => "limit",
            WaitReason::PoolUnusable { .. } => "pool_unusable",
            WaitReason::Refused { .. } => "refused",
        }
    }

    /// Whether the wait can end without anything but time and other jobs: a limit frees up as
    /// machines go. The other reasons need a new configuration (or the slow retry), so a job
    /// waiting for them does not keep the loop looking.
    pub fn changes_by_itself(&self) -> bool {
        matches!(self, WaitReason::Limit { .. })
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::NoPool { labels } => write!(f, "no pool serves labels {labels}"),
            WaitReason::BadLabel { error } => write!(f, "{error}"),
            WaitReason::PoolUnusable { pool, reason } => {
                write!(f, "pool {pool} is unusable: {reason}")
            }
            WaitReason::Refused { reason } => write!(f, "{reason}"),
            WaitReason::Limit { limit, max } => match limit {
                LimitKind::Global => write!(f, "global limit of {max} instances reached"),
                LimitKind::Pool(p) => write!(f, "pool {p} limit of {max} instances reached"),
                LimitKind::LabelSet(s) => {
                    write!(f, "limit of {max} instances for labels [{s}] reached")
                }
                LimitKind::WorkflowRun(r) => {
                    write!(f, "limit of {max} instances for workflow run {r} reached")
                }
            },
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Plan {
    /// In execution priority: stop paying first (deletes), then serve jobs, then standby.
    pub actions: Vec<Action>,
    pub assignments: Vec<Assignment>,
    pub waiting: Vec<Waiting>,
    /// The earliest moment after `now` at which a deadline of an instance that exists now
    /// passes (registration, idle, powered off, paid time, lifetime): planning again on an
    /// unchanged world before then decides nothing new. The loop sleeps until then, unless an
    /// event wakes it first. `None`: nothing is due.
    pub next_check: Option<Time>,
}

impl Plan {
    pub fn creates(&self) -> impl Iterator<Item = &Action> {
        self.actions
            .iter()
            .filter(|a| matches!(a, Action::Create { .. }))
    }

    /// Whether this plan, made on `snapshot`, rests on what the runners were doing: it deletes
    /// or reuses a machine that is not powered off, deregisters, serves a job with a registered
    /// runner, or leaves a machine alone because its runner is busy while nothing else says so
    /// (no running job names that runner, or its machine is starting or stopping: the job may
    /// be over; a powered-off machine's runner is not busy whatever the list says). A
    /// plan that only creates, reuses or deletes powered-off machines (their runner cannot be
    /// working; a delete still deregisters the runner the last list showed, and the forge
    /// refuses a busy one) and counts booting machines and machines whose running job the
    /// forge named does not: the
    /// runner lists a pass reads change with every job, so a pass that acts on nothing they say
    /// need not read them.
    pub fn depends_on_runners(&self, snapshot: &Snapshot) -> bool {
        let up = |name: &str| {
            snapshot.instances.iter().any(|i| {
                i.name == name
                    && matches!(i.state, InstanceState::Starting | InstanceState::Running)
            })
        };
        let named = |name: &str| {
            snapshot
                .jobs
                .iter()
                .any(|j| j.status == JobStatus::InProgress && j.runner.as_deref() == Some(name))
        };
        let off = |name: &str| {
            snapshot
                .instances
                .iter()
                .any(|i| i.name == name && i.state == InstanceState::Off)
        };
        if snapshot
            .runners
            .iter()
            .any(|r| r.busy && !off(&r.name) && !(up(&r.name) && named(&r.name)))
        {
            return true;
        }
        let registered = |name: &str| snapshot.runners.iter().any(|r| r.name == name);
        let acts = self.actions.iter().any(|a| match a {
            Action::Create { .. } => false,
            Action::Reuse { instance, .. } | Action::Delete { instance, .. } => !off(instance),
            Action::RemoveRunner { .. } | Action::DropIntent { .. } => true,
        });
        acts || self.assignments.iter().any(|a| match a.how {
            How::Create => false,
            How::Reuse => !off(&a.instance),
            How::Assumed => true,
            How::Existing => registered(&a.instance),
        })
    }
}

/// What the planner makes of one instance.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Class {
    /// Its runner is running a job: never touched.
    Busy,
    /// Can take a job: an idle runner (`idle_since`), or booting / create in flight.
    Supply { idle_since: Option<Time> },
    /// Powered off with paid time left.
    Recyclable,
    /// To be deleted (or, for a pending intent, forgotten).
    Doomed,
    /// Stopping, deleting, off within its deadline, unknown: counted, left alone.
    Other,
}

/// Instances counted per limit key; creates and reuses update it as the plan goes. Global and
/// pool limits count every instance that exists (each costs money and quota). Label-set and
/// workflow-run limits count the machines that can run a job: not those powered off or on their
/// way out. So counts only grow during a pass and no decision depends on the order of jobs.
#[derive(Default)]
struct Counts<'a> {
    total: u32,
    pool: HashMap<&'a str, u32>,
    /// By label-set id (see `SetKeys`).
    label_set: Vec<u32>,
    run: HashMap<u64, u32>,
}

impl<'a> Counts<'a> {
    fn add(&mut self, pool: &'a str) {
        self.total += 1;
        *self.pool.entry(pool).or_default() += 1;
    }

    fn add_active(&mut self, set: SetId, run: Option<u64>) {
        if self.label_set.len() <= set.0 {
            self.label_set.resize(set.0 + 1, 0);
        }
        self.label_set[set.0] += 1;
        if let Some(r) = run {
            *self.run.entry(r).or_default() += 1;
        }
    }

    fn remove_active(&mut self, set: SetId, run: Option<u64>) {
        if let Some(c) = self.label_set.get_mut(set.0) {
            *c = c.saturating_sub(1);
        }
        if let Some(c) = run.and_then(|r| self.run.get_mut(&r)) {
            *c = c.saturating_sub(1);
        }
    }

    /// The first limit a new instance with these keys would break, if any. `reusing` is true when
    /// a powered-off machine comes back: it exists already, so only its new keys are checked.
    fn blocked(
        &self,
        cfg: &Pools,
        pool: &Pool,
        set: (SetId, &str),
        run: Option<u64>,
        reusing: bool,
    ) -> Option<WaitReason> {
        let l = &cfg.limits;
        let over = |count: u32, max: Option<u32>| max.filter(|m| count >= *m);
        if !reusing {
            if let Some(max) = over(self.total, l.max_instances) {
                return Some(WaitReason::Limit {
                    limit: LimitKind::Global,
                    max,
                });
            }
            if let Some(max) = over(
                self.pool.get(pool.name.as_str()).copied().unwrap_or(0),
                pool.max,
            ) {
                return Some(WaitReason::Limit {
                    limit: LimitKind::Pool(pool.name.clone()),
                    max,
                });
            }
        }
        if let Some(max) = over(
            self.label_set.get(set.0.0).copied().unwrap_or(0),
            l.max_per_label_set,
        ) {
            return Some(WaitReason::Limit {
                limit: LimitKind::LabelSet(set.1.to_string()),
                max,
            });
        }
        if let Some(r) = run
            && let Some(max) = over(
                self.run.get(&r).copied().unwrap_or(0),
                l.max_per_workflow_run,
            )
        {
            return Some(WaitReason::Limit {
                limit: LimitKind::WorkflowRun(r),
                max,
            });
        }
        None
    }
}

struct Planner<'a> {
    snap: &'a Snapshot,
    cfg: &'a Pools,
    now: Time,
    /// Our instances (by index into `snap.instances`) and what each is.
    ours: Vec<(usize, Class)>,
    runners: HashMap<&'a str, &'a Runner>,
    /// Every instance name in the snapshot, ours or not: a new name must not collide.
    names: HashSet<&'a str>,
    /// Instances (by index into `snap.instances`) already spoken for in this pass.
    claimed: Vec<bool>,
    /// Set keys of instance label sets, computed once per distinct set.
    set_keys: SetKeys<'a>,
    /// Each instance's registered runner, looked up once (by index into `snap.instances`).
    runner_at: Vec<Option<&'a Runner>>,
    /// Standby runners kept per pool (claimed, exempt from the idle deadline).
    standby_kept: HashMap<&'a str, u32>,
    /// Powered-off instances with paid time left, per pool, not yet reused in this pass.
    recyclable: HashMap<&'a str, Vec<usize>>,
    /// The jobs behind `plan.waiting`, in the same order; `None` once a standby instance serves it.
    waiting_jobs: Vec<Option<&'a Job>>,
    /// Specs a provider refused, by pool and spec, with why and whether one probe may go.
    refused_specs: HashMap<(&'a str, &'a MachineSpec), (&'a str, bool)>,
    /// Refused specs probed by a create in this pass: one is enough. Few: a list.
    probed: Vec<(&'a str, Arc<MachineSpec>)>,
    /// Jobs that cannot be served, with why.
    refused_jobs: HashMap<&'a JobKey, &'a str>,
    counts: Counts<'a>,
    plan: Plan,
    deletes: Vec<Action>,
    reuses: Vec<Action>,
    creates: Vec<Action>,
}

/// Decides what to do now. See the module documentation for the order of decisions.
pub fn plan(snap: &Snapshot, cfg: &Pools, now: Time) -> Plan {
    let mut p = Planner::new(snap, cfg, now);
    p.classify();
    let queued = p.queued_jobs();
    let open = p.match_existing(&queued);
    p.keep_standby_and_expire_idle();
    p.serve_new_jobs(&queued, &open);
    p.top_up_standby();
    p.orphan_runners();
    p.finish()
}

impl<'a> Planner<'a> {
    fn new(snap: &'a Snapshot, cfg: &'a Pools, now: Time) -> Self {
        let mut runners = HashMap::with_capacity(snap.runners.len());
        for r in &snap.runners {
            runners.entry(r.name.as_str()).or_insert(r);
        }
        Planner {
            snap,
            cfg,
            now,
            ours: Vec::new(),
            runners,
            names: {
                let mut names = HashSet::with_capacity(snap.instances.len());
                names.extend(snap.instances.iter().map(|i| i.name.as_str()));
                names
            },
            claimed: vec![false; snap.instances.len()],
            set_keys: SetKeys::default(),
            runner_at: vec![None; snap.instances.len()],
            standby_kept: HashMap::new(),
            recyclable: HashMap::new(),
            waiting_jobs: Vec::new(),
            refused_specs: snap
                .refused
                .specs
                .iter()
                .map(|r| ((r.pool.as_str(), &r.spec), (r.reason.as_str(), r.probe)))
                .collect(),
            probed: Vec::new(),
            refused_jobs: snap
                .refused
                .jobs
                .iter()
                .map(|r| (&r.job, r.reason.as_str()))
                .collect(),
            counts: Counts::default(),
            plan: Plan::default(),
            deletes: Vec::new(),
            reuses: Vec::new(),
            creates: Vec::new(),
        }
    }

    fn inst(&self, i: usize) -> &'a Instance {
        &self.snap.instances[i]
    }

    fn runner_of(&self, i: usize) -> Option<&'a Runner> {
        self.runner_at[i]
    }

    /// The labels a job is matched against: the registered runner's when there is one.
    fn supply_labels(&self, i: usize) -> &'a Labels {
        match self.runner_of(i) {
            Some(r) if !r.labels.is_empty() => &r.labels,
            _ => &self.inst(i).labels,
        }
    }

    /// Notes a deadline: the next pass must not come later than it. Deadlines pass once the
    /// time in a state is longer than the limit, so the moment that matters is just after.
    fn due(&mut self, boundary: Time) {
        let at = boundary.plus(Duration::from_millis(1));
        if at > self.now && self.plan.next_check.is_none_or(|t| at < t) {
            self.plan.next_check = Some(at);
        }
    }

    /// When each deadline of an instance that is not yet doomed would pass.
    fn note_deadlines(&mut self, inst: &Instance, class: Class) {
        let d = &self.cfg.deadlines;
        match class {
            Class::Doomed => return,
            // Never deleted while busy; but once its job ends and it powers off, it must be
            // looked at before its paid time runs out, or the next hour is billed.
            Class::Busy | Class::Recyclable => {
                if let Some(b) = &inst.billing
                    && let Recycle::Keep { until, .. } =
                        b.recycle(inst.created_at, self.now, self.cfg.recycling.margin)
                {
                    self.due(until);
                }
                if class == Class::Busy {
                    return;
                }
            }
            Class::Supply { idle_since: None } if inst.state == InstanceState::Pending => {
                self.due(inst.created_at.plus(d.registration));
            }
            Class::Supply { idle_since: None } => self.due(inst.state_since.plus(d.registration)),
            Class::Supply {
                idle_since: Some(since),
            } => self.due(since.plus(d.idle)),
            Class::Other if inst.state == InstanceState::Off => {
                self.due(inst.state_since.plus(d.powered_off));
            }
            Class::Other if inst.state == InstanceState::Stopping => {
                self.due(inst.state_since.plus(d.registration));
            }
            Class::Other => {}
        }
        if inst.state != InstanceState::Pending {
            self.due(inst.created_at.plus(d.max_lifetime));
        }
    }

    fn classify(&mut self) {
        let d = &self.cfg.deadlines;
        // Input order: decisions that depend on order pick by name instead (see `by_name`),
        // so the plan is the same whatever order the provider listed instances in.
        let ours: Vec<usize> = (0..self.snap.instances.len())
            .filter(|&i| self.inst(i).controller.as_deref() == Some(self.cfg.controller.as_str()))
            .collect();
        // Machines the forge named as running a job (its news may be newer than the runner list
        // this pass read): busy, whatever the list says.
        let named: HashSet<&str> = self
            .snap
            .jobs
            .iter()
            .filter(|j| j.status == JobStatus::InProgress)
            .filter_map(|j| j.runner.as_deref())
            .collect();
        for i in ours {
            let inst = self.inst(i);
            let runner = self.runners.get(inst.name.as_str()).copied();
            self.runner_at[i] = runner;
            let age = self.now.since(inst.created_at);
            let in_state = self.now.since(inst.state_since);
            let up = matches!(inst.state, InstanceState::Starting | InstanceState::Running);
            // A powered-off machine runs nothing: a runner list that still calls its runner
            // busy was read before the job ended (the forge's own answer to a deregistration
            // still guards the runner; see `Executor`).
            let busy = runner.is_some_and(|r| r.busy) && inst.state != InstanceState::Off;
            let class = if busy || (up && named.contains(inst.name.as_str())) {
                Class::Busy
            } else {
                match inst.state {
                    InstanceState::Pending if age > d.registration => {
                        self.plan_drop_intent(inst, age);
                        continue;
                    }
                    InstanceState::Pending => Class::Supply { idle_since: None },
                    InstanceState::Deleting | InstanceState::Unknown => Class::Other,
                    _ if age > d.max_lifetime => {
                        self.doom(
                            inst,
                            runner,
                            Reason::MaxLifetime {
                                age,
                                limit: d.max_lifetime,
                            },
                        );
                        Class::Doomed
                    }
                    InstanceState::Starting | InstanceState::Running => match runner {
                        Some(r) if r.is_idle() => Class::Supply {
                            idle_since: Some(r.since),
                        },
                        _ if in_state > d.registration => {
                            let reason = Reason::RegistrationDeadline {
                                since: in_state,
                                deadline: d.registration,
                            };
                            self.doom(inst, runner, reason);
                            Class::Doomed
                        }
                        _ => Class::Supply { idle_since: None },
                    },
                    InstanceState::Off => self.classify_off(inst, runner, in_state),
                    InstanceState::Stopping => self.classify_stopping(inst, runner, in_state),
                }
            };
            self.note_deadlines(inst, class);
            self.counts.add(&inst.pool);
            let active = !matches!(
                inst.state,
                InstanceState::Off | InstanceState::Stopping | InstanceState::Deleting
            );
            if active && class != Class::Doomed {
                let set = self.set_keys.of(&inst.labels);
                self.counts.add_active(set, inst.run_id);
            }
            if class == Class::Recyclable {
                self.recyclable
                    .entry(inst.pool.as_str())
                    .or_default()
                    .push(i);
            }
            self.ours.push((i, class));
        }
        let mut lists = std::mem::take(&mut self.recyclable);
        for list in lists.values_mut() {
            self.by_name(list);
        }
        self.recyclable = lists;
    }

    /// Which forge an instance's runner is registered with and, when that limits the jobs it
    /// can take, where: a runner takes jobs of its own forge only.
    fn runner_scope_of(&self, inst: &'a Instance) -> (ForgeKind, Option<&'a str>) {
        let forge = self.cfg.forge_of(inst);
        let scope = match self.cfg.runner_scope_of(forge) {
            RunnerScope::Shared => None,
            RunnerScope::Repository { standby } => {
                inst.job.as_ref().map(|k| &*k.scope).or(standby.as_deref())
            }
        };
        (forge, scope)
    }

    fn job_scope(&self, job: &'a Job) -> (ForgeKind, Option<&'a str>) {
        let forge = job.key.forge;
        let scope = match self.cfg.runner_scope_of(forge) {
            RunnerScope::Shared => None,
            RunnerScope::Repository { .. } => Some(&*job.key.scope),
        };
        (forge, scope)
    }

    /// Sorts instance indices by name: wherever a choice between instances matters.
    fn by_name(&self, list: &mut [usize]) {
        list.sort_unstable_by(|&a, &b| self.inst(a).name.cmp(&self.inst(b).name).then(a.cmp(&b)));
    }

    fn classify_off(
        &mut self,
        inst: &'a Instance,
        runner: Option<&'a Runner>,
        off: Duration,
    ) -> Class {
        let rec = &self.cfg.recycling;
        if rec.enabled
            && let Some(b) = &inst.billing
            && b.billed_while_stopped
        {
            return match b.recycle(inst.created_at, self.now, rec.margin) {
                Recycle::Keep { .. } if inst.placement.is_some() => Class::Recyclable,
                Recycle::Keep { .. } => self.off_deadline(inst, runner, off),
                Recycle::Delete { paid_until } => {
                    self.doom(inst, runner, Reason::PaidTimeUsedUp { paid_until });
                    Class::Doomed
                }
            };
        }
        self.off_deadline(inst, runner, off)
    }

    /// A machine on its way off: its runner has finished its job (or it is being powered off).
    /// With paid time left it can serve the next job at once (a rebuild does not wait for the
    /// power-off); otherwise it is left to stop, and deleted if it has not within the
    /// registration deadline.
    fn classify_stopping(
        &mut self,
        inst: &'a Instance,
        runner: Option<&'a Runner>,
        since: Duration,
    ) -> Class {
        let rec = &self.cfg.recycling;
        if rec.enabled
            && let Some(b) = &inst.billing
            && b.billed_while_stopped
            && inst.placement.is_some()
            && let Recycle::Keep { .. } = b.recycle(inst.created_at, self.now, rec.margin)
        {
            return Class::Recyclable;
        }
        let deadline = self.cfg.deadlines.registration;
        if since > deadline {
            self.doom(inst, runner, Reason::StoppingDeadline { since, deadline });
            Class::Doomed
        } else {
            Class::Other
        }
    }

    fn off_deadline(
        &mut self,
        inst: &'a Instance,
        runner: Option<&'a Runner>,
        off: Duration,
    ) -> Class {
        let deadline = self.cfg.deadlines.powered_off;
        if off > deadline {
            self.doom(inst, runner, Reason::PoweredOffDeadline { off, deadline });
            Class::Doomed
        } else {
            Class::Other
        }
    }

    fn doom(&mut self, inst: &Instance, runner: Option<&Runner>, reason: Reason) {
        self.deletes.push(Action::Delete {
            instance: inst.name.clone(),
            provider_id: inst.provider_id.clone(),
            runner_id: runner.map(|r| r.id),
            reason,
        });
    }

    fn plan_drop_intent(&mut self, inst: &Instance, age: Duration) {
        self.deletes.push(Action::DropIntent {
            name: inst.name.clone(),
            reason: Reason::IntentExpired { age },
        });
    }

    fn queued_jobs(&self) -> Vec<&'a Job> {
        let mut q: Vec<&Job> = self
            .snap
            .jobs
            .iter()
            .filter(|j| j.status == JobStatus::Queued)
            .collect();
        // Oldest first. Ids are compared before the whole key: cheaper, and the same order.
        q.sort_unstable_by(|a, b| {
            (a.queued_at, a.key.id)
                .cmp(&(b.queued_at, b.key.id))
                .then_with(|| a.key.cmp(&b.key))
        });
        q.dedup_by(|a, b| a.key == b.key);
        q
    }

    fn assign(&mut self, job: &Job, instance: &str, how: How) {
        self.plan.assignments.push(Assignment {
            job: job.key.clone(),
            instance: instance.to_string(),
            how,
        });
    }

    fn wait(&mut self, job: &'a Job, why: WaitReason) {
        self.plan.waiting.push(Waiting {
            job: job.key.clone(),
            why,
        });
        self.waiting_jobs.push(Some(job));
    }

    /// Matches queued jobs to existing supply one for one; returns which jobs are still open.
    fn match_existing(&mut self, queued: &[&'a Job]) -> Vec<bool> {
        let mut open: Vec<bool> = vec![true; queued.len()];

        // A: the instance made for a job serves that job. A busy one does too: its runner took
        // a job the store still holds as queued (news of a start can lag), and a single-use
        // runner serves exactly one job, so one queued job of its kind is served already.
        let by_key: HashMap<&JobKey, usize> = queued
            .iter()
            .enumerate()
            .map(|(n, j)| (&j.key, n))
            .collect();
        // Unless the forge said which job that runner runs: then it is not this one.
        let running_known: HashSet<&str> = self
            .snap
            .jobs
            .iter()
            .filter(|j| j.status == JobStatus::InProgress)
            .filter_map(|j| j.runner.as_deref())
            .collect();
        // Busy instances, and those of them (up) whose runner runs a job the forge has not named.
        let mut busy = vec![false; self.snap.instances.len()];
        let mut unnamed = vec![false; self.snap.instances.len()];
        for &(i, class) in &self.ours {
            let inst = self.inst(i);
            busy[i] = class == Class::Busy;
            unnamed[i] = busy[i]
                && matches!(inst.state, InstanceState::Starting | InstanceState::Running)
                && !running_known.contains(inst.name.as_str());
        }
        // Should two instances be made for one job (a broken store), the first by name serves it.
        let mut made_for: Vec<Option<usize>> = vec![None; queued.len()];
        for &(i, class) in &self.ours {
            let inst = self.inst(i);
            if (matches!(class, Class::Supply { .. }) || unnamed[i])
                && let Some(key) = &inst.job
                && let Some(&n) = by_key.get(key)
                && queued[n].labels.is_subset_of(self.supply_labels(i))
                && made_for[n].is_none_or(|j| inst.name < self.inst(j).name)
            {
                made_for[n] = Some(i);
            }
        }
        for (n, i) in made_for.into_iter().enumerate() {
            if let Some(i) = i {
                open[n] = false;
                self.claimed[i] = true;
                let how = if busy[i] { How::Assumed } else { How::Existing };
                self.assign(queued[n], &self.inst(i).name, how);
            }
        }

        // B: any idle runner or booting instance that can take the job, idle runners first;
        // with repository runners, only one registered in the job's repository. Before them
        // all, a busy runner running a job the forge has not named, and not its own: it runs
        // one the store still holds as queued, and the oldest that fits is counted as served.
        let mut by_scope: HashMap<(ForgeKind, Option<&'a str>), SupplyGroups<'a>> = HashMap::new();
        for &(i, class) in &self.ours {
            if self.claimed[i] {
                continue;
            }
            let inst = self.inst(i);
            let rank = match class {
                // Idle runners first, then whatever started earliest (it is ready soonest).
                Class::Supply { idle_since } => (
                    idle_since.is_none(),
                    idle_since.unwrap_or(inst.state_since),
                    inst.name.as_str(),
                ),
                Class::Busy if unnamed[i] => (false, Time(i64::MIN), inst.name.as_str()),
                _ => continue,
            };
            by_scope
                .entry(self.runner_scope_of(inst))
                .or_default()
                .push(self.supply_labels(i), rank, i);
        }
        for groups in by_scope.values_mut() {
            groups.sort();
        }
        for (n, job) in queued.iter().enumerate() {
            if open[n]
                && let Some(groups) = by_scope.get_mut(&self.job_scope(job))
                && let Some(i) = groups.take(&job.labels)
            {
                open[n] = false;
                self.claimed[i] = true;
                let how = if busy[i] { How::Assumed } else { How::Existing };
                self.assign(job, &self.inst(i).name, how);
            }
        }

        open
    }

    /// Serves the jobs no existing supply took: reuse a kept machine, or create one.
    fn serve_new_jobs(&mut self, queued: &[&'a Job], open: &[bool]) {
        // Everything that depends only on a job's labels is worked out once per label set.
        let mut routes: HashMap<(ForgeKind, &'a Labels), Result<Vec<Route>, WaitReason>> =
            HashMap::new();
        for (n, &job) in queued.iter().enumerate() {
            if !open[n] {
                continue;
            }
            if let Some(reason) = self.refused_jobs.get(&job.key) {
                let why = WaitReason::Refused {
                    reason: reason.to_string(),
                };
                self.wait(job, why);
                continue;
            }
            let route = routes
                .entry((job.key.forge, &job.labels))
                .or_insert_with(|| {
                    let mut r = route(self.cfg, job.key.forge, &job.labels, &mut self.set_keys);
                    if let Ok(list) = &mut r {
                        for route in list.iter_mut() {
                            let pool = self.cfg.pools[route.pool].name.as_str();
                            if let Some((why, probe)) =
                                self.refused_specs.get(&(pool, &*route.spec))
                            {
                                route.refused = Some(why.to_string());
                                route.probe = *probe;
                            }
                        }
                    }
                    r
                });
            match route {
                Ok(pools) => {
                    if let Some(why) = self.serve_new(job, pools) {
                        self.wait(job, why);
                    }
                }
                Err(why) => {
                    let why = why.clone();
                    self.wait(job, why);
                }
            }
        }
    }

    /// Serves a job through the first of its pools with room: reuse, else create. Returns why
    /// it must wait otherwise (the first pool's limit).
    fn serve_new(&mut self, job: &'a Job, routes: &mut [Route]) -> Option<WaitReason> {
        let cfg = self.cfg;
        let mut first_block = None;
        for r in routes.iter_mut() {
            let pool = &cfg.pools[r.pool];
            if let Some(reason) = &r.refused {
                // Its retry is due: one create in this pass may ask the provider again.
                let probe = r.probe
                    && !self
                        .probed
                        .iter()
                        .any(|(p, s)| *p == pool.name && **s == *r.spec);
                if probe {
                    self.probed.push((pool.name.as_str(), r.spec.clone()));
                }
                if !probe {
                    first_block.get_or_insert_with(|| WaitReason::PoolUnusable {
                        pool: pool.name.clone(),
                        reason: reason.clone(),
                    });
                    continue;
                }
            }
            // C: a powered-off machine of this pool, already paid for, that fits the spec.
            // The list only shrinks, so once nothing fits, nothing will.
            if !r.nothing_to_reuse {
                match self.recyclable_fitting(pool, &r.spec) {
                    Some((pos, i))
                        if self
                            .counts
                            .blocked(cfg, pool, (r.set, &r.set_key), job.run_id, true)
                            .is_none() =>
                    {
                        self.take_recyclable(pool, pos);
                        let reason = self.job_reason(job);
                        let t = Target {
                            labels: r.labels.clone(),
                            set: r.set,
                            job: Some(&job.key),
                            run_id: job.run_id,
                        };
                        let name = self.reuse(i, pool, t, reason);
                        self.assign(job, &name, How::Reuse);
                        return None;
                    }
                    Some(_) => {}
                    None => r.nothing_to_reuse = true,
                }
            }
            // D: a new instance.
            match self
                .counts
                .blocked(cfg, pool, (r.set, &r.set_key), job.run_id, false)
            {
                None => {
                    let name = self.job_instance_name(pool, job);
                    let reason = self.job_reason(job);
                    self.counts.add(&pool.name);
                    self.counts.add_active(r.set, job.run_id);
                    self.assign(job, &name, How::Create);
                    self.creates.push(Action::Create {
                        name,
                        pool: pool.name.clone(),
                        provider: pool.provider.clone(),
                        spec: r.spec.clone(),
                        labels: r.labels.clone(),
                        job: Some(job.key.clone()),
                        attempt: job.attempt,
                        run_id: job.run_id,
                        reason,
                    });
                    return None;
                }
                Some(why) => {
                    first_block.get_or_insert(why);
                }
            }
        }
        first_block
    }

    fn job_reason(&self, job: &Job) -> Reason {
        Reason::QueuedJob {
            job: job.key.clone(),
            waited: self.now.since(job.queued_at),
        }
    }

    /// A kept machine of the pool that fits `spec`: its position in the pool's list and its index.
    fn recyclable_fitting(&self, pool: &Pool, spec: &MachineSpec) -> Option<(usize, usize)> {
        let list = self.recyclable.get(pool.name.as_str())?;
        let pos = list
            .iter()
            .position(|&i| fits(spec, self.inst(i).placement.as_ref()))?;
        Some((pos, list[pos]))
    }

    fn take_recyclable(&mut self, pool: &Pool, pos: usize) {
        if let Some(list) = self.recyclable.get_mut(pool.name.as_str()) {
            list.remove(pos);
        }
    }

    fn reuse(&mut self, i: usize, pool: &'a Pool, t: Target<'_>, reason: Reason) -> String {
        let Target {
            labels,
            set,
            job,
            run_id,
        } = t;
        let inst = self.inst(i);
        self.counts.add_active(set, run_id);
        self.claimed[i] = true;
        self.reuses.push(Action::Reuse {
            instance: inst.name.clone(),
            provider_id: inst.provider_id.clone(),
            pool: pool.name.clone(),
            labels,
            job: job.cloned(),
            run_id,
            reason,
        });
        inst.name.clone()
    }

    fn job_instance_name(&mut self, pool: &Pool, job: &Job) -> String {
        let mut n = job.instances_created;
        loop {
            let name =
                naming::job_instance(&self.cfg.controller, &pool.name, &job.key, job.attempt, n);
            if !self.names.contains(name.as_str()) {
                return name;
            }
            n += 1;
        }
    }

    /// Tops up each pool's idle runners. A queued job still waiting (for a limit, say) that a
    /// standby runner can take will take it, as GitHub hands any job to a runner that fits; so
    /// new standby instances go to such jobs first (tagged with the job, so the next pass sees
    /// them as that job's) and the standby count is kept on top. A per-run limit therefore does
    /// not hold against a pool with standby runners; a pool that needs a hard cap has none.
    fn top_up_standby(&mut self) {
        let cfg = self.cfg;
        let usable: Vec<&Pool> = cfg
            .pools
            .iter()
            .filter(|p| {
                p.standby > 0 && !self.refused_specs.contains_key(&(p.name.as_str(), &p.spec))
            })
            .collect();
        // (A refused pool's standby waits for a job's probe to show the spec works again.)
        for pool in usable {
            let mut count = self
                .standby_kept
                .get(pool.name.as_str())
                .copied()
                .unwrap_or(0);
            let pool_set = self.set_keys.of(&pool.labels);
            let pool_key = self.set_keys.key(pool_set).to_string();
            let mut takers: Vec<usize> = Vec::new();
            if count < pool.standby {
                takers = (0..self.waiting_jobs.len())
                    .filter(|&w| {
                        self.waiting_jobs[w].is_some_and(|j| {
                            pool.takes(j.key.forge) && j.labels.is_subset_of(&pool.labels)
                        })
                    })
                    .collect();
                takers.reverse();
            }
            let mut index = 0;
            while count < pool.standby || !takers.is_empty() {
                let reason = Reason::Standby {
                    pool: pool.name.clone(),
                    have: count,
                    want: pool.standby,
                };
                let taker = takers.last().and_then(|&w| self.waiting_jobs[w]);
                let (name, how) = if let Some((pos, i)) = self.recyclable_fitting(pool, &pool.spec)
                    && self
                        .counts
                        .blocked(cfg, pool, (pool_set, &pool_key), None, true)
                        .is_none()
                {
                    self.take_recyclable(pool, pos);
                    let t = Target {
                        labels: pool.labels.clone(),
                        set: pool_set,
                        job: taker.map(|j| &j.key),
                        run_id: None,
                    };
                    let name = self.reuse(i, pool, t, reason);
                    (name, How::Reuse)
                } else if self
                    .counts
                    .blocked(cfg, pool, (pool_set, &pool_key), None, false)
                    .is_none()
                {
                    let name = loop {
                        let n =
                            naming::standby_instance(&cfg.controller, &pool.name, self.now, index);
                        index += 1;
                        if !self.names.contains(n.as_str()) {
                            break n;
                        }
                    };
                    self.counts.add(&pool.name);
                    self.counts.add_active(pool_set, None);
                    self.creates.push(Action::Create {
                        name: name.clone(),
                        pool: pool.name.clone(),
                        provider: pool.provider.clone(),
                        spec: Arc::new(pool.spec.clone()),
                        labels: pool.labels.clone(),
                        job: taker.map(|j| j.key.clone()),
                        attempt: taker.map_or(0, |j| j.attempt),
                        run_id: None,
                        reason,
                    });
                    (name, How::Create)
                } else {
                    break;
                };
                match takers.pop() {
                    Some(w) => {
                        if let Some(job) = self.waiting_jobs[w].take() {
                            self.assign(job, &name, how);
                        }
                    }
                    None => count += 1,
                }
            }
        }
    }

    /// Claims up to `standby` unclaimed runners per pool (exempt from the idle deadline), then
    /// deletes the unclaimed idle runners past the idle deadline.
    fn keep_standby_and_expire_idle(&mut self) {
        // Unclaimed supply that looks exactly like its pool (no job-specific labels) is standby.
        let cfg = self.cfg;
        let mut candidates: HashMap<&str, (&Pool, Vec<usize>)> = cfg
            .pools
            .iter()
            .filter(|p| p.standby > 0)
            .map(|p| (p.name.as_str(), (p, Vec::new())))
            .collect();
        for &(i, class) in &self.ours {
            let inst = self.inst(i);
            if matches!(class, Class::Supply { .. })
                && !self.claimed[i]
                && let Some((pool, list)) = candidates.get_mut(inst.pool.as_str())
                && inst.labels.same_set(&pool.labels)
            {
                list.push(i);
            }
        }
        for (name, (pool, mut list)) in candidates {
            self.by_name(&mut list);
            let kept = list.len().min(pool.standby as usize);
            for &i in &list[..kept] {
                self.claimed[i] = true;
            }
            self.standby_kept.insert(name, kept as u32);
        }
        let deadline = self.cfg.deadlines.idle;
        for k in 0..self.ours.len() {
            let (i, class) = self.ours[k];
            if let Class::Supply {
                idle_since: Some(since),
            } = class
                && !self.claimed[i]
            {
                let idle = self.now.since(since);
                if idle > deadline {
                    let inst = self.inst(i);
                    self.ours[k].1 = Class::Doomed;
                    let set = self.set_keys.of(&inst.labels);
                    self.counts.remove_active(set, inst.run_id);
                    self.doom(
                        inst,
                        self.runner_of(i),
                        Reason::IdleDeadline { idle, deadline },
                    );
                }
            }
        }
    }

    fn orphan_runners(&mut self) {
        let mut orphans: Vec<&Runner> = self
            .snap
            .runners
            .iter()
            .filter(|r| {
                !r.busy
                    && naming::is_ours(&self.cfg.controller, &r.name)
                    && !self.names.contains(r.name.as_str())
            })
            .collect();
        orphans.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        for r in orphans {
            self.deletes.push(Action::RemoveRunner {
                runner_id: r.id,
                name: r.name.clone(),
                reason: Reason::OrphanRunner,
            });
        }
    }

    fn finish(mut self) -> Plan {
        let served = std::mem::take(&mut self.waiting_jobs);
        let mut served = served.iter();
        self.plan
            .waiting
            .retain(|_| served.next().is_some_and(Option::is_some));
        // Stop paying first; in name order, whatever order the instances were listed in. The
        // order is found on indices: actions are large, and moving them was most of the cost.
        let deletes = std::mem::take(&mut self.deletes);
        let mut order: Vec<usize> = (0..deletes.len()).collect();
        order.sort_unstable_by(|&a, &b| {
            deletes[a]
                .subject()
                .cmp(deletes[b].subject())
                .then(a.cmp(&b))
        });
        let mut slots: Vec<Option<Action>> = deletes.into_iter().map(Some).collect();
        self.plan
            .actions
            .extend(order.into_iter().filter_map(|i| slots[i].take()));
        self.plan.actions.append(&mut self.reuses);
        self.plan.actions.append(&mut self.creates);
        self.plan
    }
}

/// A label set's number within one pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SetId(usize);

/// Numbers label sets, so the per-label-set limit counts into a vector. Labels borrowed from the
/// snapshot or configuration live for the whole pass, so their shared allocation identifies
/// them cheaply; a snapshot whose equal label sets share one allocation hashes each set once.
#[derive(Default)]
struct SetKeys<'a> {
    by_alloc: HashMap<usize, SetId>,
    by_key: HashMap<String, SetId>,
    keys: Vec<String>,
    _borrowed: std::marker::PhantomData<&'a Labels>,
}

impl<'a> SetKeys<'a> {
    /// For labels that outlive the pass (their allocation cannot be reused meanwhile).
    fn of(&mut self, labels: &'a Labels) -> SetId {
        if let Some(&id) = self.by_alloc.get(&labels.shared_id()) {
            return id;
        }
        let id = self.of_key(&labels.set_key());
        self.by_alloc.insert(labels.shared_id(), id);
        id
    }

    fn of_key(&mut self, key: &str) -> SetId {
        if let Some(&id) = self.by_key.get(key) {
            return id;
        }
        let id = SetId(self.keys.len());
        self.keys.push(key.to_string());
        self.by_key.insert(key.to_string(), id);
        id
    }

    fn key(&self, id: SetId) -> &str {
        &self.keys[id.0]
    }
}

/// What a reused machine becomes.
struct Target<'b> {
    labels: Labels,
    set: SetId,
    job: Option<&'b JobKey>,
    run_id: Option<u64>,
}

/// How a job with given labels can be served by one pool: the machine spec after its dynamic
/// labels, the labels its runner gets, and their set key for the label-set limit.
struct Route {
    pool: usize,
    spec: Arc<MachineSpec>,
    labels: Labels,
    set: SetId,
    set_key: String,
    /// No kept machine of the pool fits the spec (the list only shrinks during a pass).
    nothing_to_reuse: bool,
    /// The provider refused this spec: why.
    refused: Option<String>,
    /// The refusal's retry is due: one create may probe the provider again.
    probe: bool,
}

/// The pools that serve `forge`'s jobs with these labels, in configuration order, or why none
/// does.
fn route(
    cfg: &Pools,
    forge: ForgeKind,
    labels: &Labels,
    sets: &mut SetKeys<'_>,
) -> Result<Vec<Route>, WaitReason> {
    let req = cfg
        .labels
        .requirements(labels)
        .map_err(|e| WaitReason::BadLabel {
            error: e.to_string(),
        })?;
    let routes: Vec<Route> = cfg
        .pools
        .iter()
        .enumerate()
        .filter(|(_, p)| p.takes(forge) && p.serves(&req))
        .map(|(n, p)| {
            let labels = p.labels.union(labels);
            let set_key = labels.set_key();
            Route {
                pool: n,
                spec: Arc::new(p.spec.overridden_by(&req)),
                set: sets.of_key(&set_key),
                set_key,
                labels,
                nothing_to_reuse: false,
                refused: None,
                probe: false,
            }
        })
        .collect();
    if routes.is_empty() {
        return Err(WaitReason::NoPool {
            labels: req.routing,
        });
    }
    Ok(routes)
}

fn fits(spec: &MachineSpec, placement: Option<&Placement>) -> bool {
    placement.is_some_and(|p| spec.admits(p))
}

/// Supply grouped by label set, so matching 10,000 jobs does not scan 10,000 instances each.
#[derive(Default)]
struct SupplyGroups<'a> {
    index: HashMap<&'a Labels, usize>,
    groups: Vec<Group<'a>>,
    /// For each job label set seen, the groups whose labels include it.
    compatible: HashMap<&'a Labels, Vec<usize>>,
}

type Rank<'a> = (bool, Time, &'a str);

struct Group<'a> {
    labels: &'a Labels,
    /// Sorted best first; `next` is the first not yet taken.
    members: Vec<(Rank<'a>, usize)>,
    next: usize,
}

impl<'a> SupplyGroups<'a> {
    fn push(&mut self, labels: &'a Labels, rank: Rank<'a>, instance: usize) {
        let g = *self.index.entry(labels).or_insert_with(|| {
            self.groups.push(Group {
                labels,
                members: Vec::new(),
                next: 0,
            });
            self.groups.len() - 1
        });
        self.groups[g].members.push((rank, instance));
    }

    fn sort(&mut self) {
        for g in &mut self.groups {
            g.members.sort_unstable();
        }
        self.groups.sort_by(|a, b| a.labels.cmp(b.labels));
        self.index = self
            .groups
            .iter()
            .enumerate()
            .map(|(n, g)| (g.labels, n))
            .collect();
    }

    /// Takes the best supply that can serve a job with these labels.
    fn take(&mut self, job: &'a Labels) -> Option<usize> {
        let groups = &self.groups;
        let candidates = self.compatible.entry(job).or_insert_with(|| {
            (0..groups.len())
                .filter(|&g| job.is_subset_of(groups[g].labels))
                .collect()
        });
        let best = candidates
            .iter()
            .copied()
            .filter(|&g| self.groups[g].next < self.groups[g].members.len())
            .min_by_key(|&g| self.groups[g].members[self.groups[g].next].0)?;
        let group = &mut self.groups[best];
        let (_, instance) = group.members[group.next];
        group.next += 1;
        Some(instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `kind()` is the tag a reason serializes with: the API, the events and the metrics name
    /// a reason the same way.
    #[test]
    fn a_reasons_kind_is_its_serialized_tag() {
        let d = Duration::from_secs(1);
        let job = JobKey {
            forge: crate::ForgeKind::Github,
            scope: "acme/app".into(),
            id: 1,
        };
        let reasons = [
            Reason::QueuedJob { job, waited: d },
            Reason::Standby {
                pool: "p".into(),
                have: 0,
                want: 1,
            },
            Reason::RegistrationDeadline {
                since: d,
                deadline: d,
            },
            Reason::IdleDeadline {
                idle: d,
                deadline: d,
            },
            Reason::PoweredOffDeadline {
                off: d,
                deadline: d,
            },
            Reason::PaidTimeUsedUp {
                paid_until: Time::from_secs(1),
            },
            Reason::MaxLifetime { age: d, limit: d },
            Reason::StoppingDeadline {
                since: d,
                deadline: d,
            },
            Reason::OrphanRunner,
            Reason::IntentExpired { age: d },
        ];
        for r in &reasons {
            let json = serde_json::to_value(r).unwrap();
            assert_eq!(json["reason"], r.kind(), "{r:?}");
        }
        let waits = [
            WaitReason::NoPool {
                labels: Labels::new(["x"]),
            },
            WaitReason::BadLabel { error: "e".into() },
            WaitReason::Limit {
                limit: LimitKind::Global,
                max: 1,
            },
            WaitReason::PoolUnusable {
                pool: "p".into(),
                reason: "r".into(),
            },
            WaitReason::Refused { reason: "r".into() },
        ];
        for w in &waits {
            let json = serde_json::to_value(w).unwrap();
            assert_eq!(json["why"], w.kind(), "{w:?}");
        }
    }
}
