//! The nouns of docs/ARCHITECTURE.md ("Words"): job, pool, machine spec, instance, runner, snapshot, and the
//! planning configuration (`Pools`: pools plus limits, deadlines, label rules and recycling).

use crate::billing::Billing;
use crate::labels::{Image, LabelRules, Labels, Requirements};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    Github,
    Gitlab,
}

impl ForgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeKind::Github => "github",
            ForgeKind::Gitlab => "gitlab",
        }
    }
}

/// A job's identity: forge, scope (`owner/repo` on GitHub) and the forge's job id. The scope
/// is shared on clone: a plan copies each job's key into an assignment, an action and a reason.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobKey {
    pub forge: ForgeKind,
    pub scope: Arc<str>,
    pub id: u64,
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}#{}", self.forge.as_str(), self.scope, self.id)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    InProgress,
    Completed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub key: JobKey,
    /// The workflow run the job belongs to (for the per-run limit).
    pub run_id: Option<u64>,
    pub attempt: u32,
    pub labels: Labels,
    pub status: JobStatus,
    pub queued_at: Time,
    /// Instances already created for this attempt (from the store); names the next one.
    pub instances_created: u32,
    /// The runner running it, once the forge has said (an in-progress job).
    pub runner: Option<String>,
}

/// Where a machine comes from and what it looks like, with ordered fallbacks for type and
/// location. The provider takes the first combination it can create.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MachineSpec {
    pub types: Vec<String>,
    pub locations: Vec<String>,
    pub image: Image,
}

impl MachineSpec {
    /// This spec with a job's dynamic labels laid over it.
    pub fn overridden_by(&self, req: &Requirements) -> MachineSpec {
        MachineSpec {
            types: if req.types.is_empty() {
                self.types.clone()
            } else {
                req.types.clone()
            },
            locations: if req.locations.is_empty() {
                self.locations.clone()
            } else {
                req.locations.clone()
            },
            image: req.image.clone().unwrap_or_else(|| self.image.clone()),
        }
    }

    /// Whether an existing machine fits this spec (for reusing it).
    pub fn admits(&self, p: &Placement) -> bool {
        let type_ok = self.types.is_empty()
            || self
                .types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&p.machine_type));
        let loc_ok = self.locations.is_empty()
            || self
                .locations
                .iter()
                .any(|l| l.eq_ignore_ascii_case(&p.location));
        type_ok && loc_ok && self.image == p.image
    }
}

/// Where an instance actually landed: one type, one location, one image.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Placement {
    pub machine_type: String,
    pub location: String,
    pub image: Image,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub name: String,
    /// The configured provider this pool's machines come from.
    pub provider: String,
    /// The labels its runners carry; a pool serves a job whose ordinary labels are all here.
    pub labels: Labels,
    pub spec: MachineSpec,
    /// Most instances this pool may have at once, powered off or not.
    pub max: Option<u32>,
    /// Idle runners to keep ready.
    pub standby: u32,
    /// The forges whose jobs it takes, in order: its standby runners register with the first.
    /// Empty: every forge's, standby runners on GitHub.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forges: Vec<ForgeKind>,
}

impl Pool {
    pub fn serves(&self, req: &Requirements) -> bool {
        req.routing.is_subset_of(&self.labels)
    }

    /// Whether it takes jobs of `forge` at all.
    pub fn takes(&self, forge: ForgeKind) -> bool {
        self.forges.is_empty() || self.forges.contains(&forge)
    }

    /// The forge its standby runners (made for no job) register with.
    pub fn standby_forge(&self) -> ForgeKind {
        self.forges.first().copied().unwrap_or(ForgeKind::Github)
    }
}

/// Caps on instances. A kept machine is only reused within its pool, so reuse never changes
/// the global or pool count.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// All instances of this controller that exist: being created, running, off or deleting.
    pub max_instances: Option<u32>,
    /// Instances that can run a job (not powered off, not being deleted) whose runners carry
    /// the same set of labels.
    pub max_per_label_set: Option<u32>,
    /// Instances that can run a job, created or reused for jobs of one workflow run.
    pub max_per_workflow_run: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    /// From create (or power-on) until the runner must be registered.
    pub registration: Duration,
    /// How long a runner may sit idle beyond the standby count.
    pub idle: Duration,
    /// How long a powered-off instance that is not worth recycling is kept.
    pub powered_off: Duration,
    /// Oldest an instance may get (it is still never deleted while busy).
    pub max_lifetime: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            registration: Duration::from_secs(180),
            idle: Duration::from_secs(180),
            powered_off: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(6 * 3600),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recycling {
    pub enabled: bool,
    /// Delete a kept machine this long before its next billing period starts.
    pub margin: Duration,
}

impl Default for Recycling {
    fn default() -> Self {
        Recycling {
            enabled: true,
            margin: Duration::from_secs(600),
        }
    }
}

/// Everything the planner needs from configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pools {
    /// This controller's id: tagged on every instance, prefix of every instance name.
    pub controller: String,
    pub pools: Vec<Pool>,
    pub limits: Limits,
    pub deadlines: Deadlines,
    pub labels: LabelRules,
    pub recycling: Recycling,
    /// Which runners can take which jobs beyond their labels: GitHub's, and any forge's not
    /// in `forge_scopes`.
    pub runner_scope: RunnerScope,
    /// The same for other forges (GitLab), where it differs.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub forge_scopes: std::collections::BTreeMap<ForgeKind, RunnerScope>,
}

impl Pools {
    /// Which runners of `forge` can take which of its jobs beyond their labels.
    pub fn runner_scope_of(&self, forge: ForgeKind) -> &RunnerScope {
        self.forge_scopes.get(&forge).unwrap_or(&self.runner_scope)
    }

    /// The forge a runner of pool `pool` made for no job (standby) registers with.
    pub fn standby_forge(&self, pool: &str) -> ForgeKind {
        self.pools
            .iter()
            .find(|p| p.name == pool)
            .map_or(ForgeKind::Github, Pool::standby_forge)
    }

    /// The forge of an instance's runner: its job's, else its pool's standby forge.
    pub fn forge_of(&self, inst: &Instance) -> ForgeKind {
        match &inst.job {
            Some(job) => job.forge,
            None => self.standby_forge(&inst.pool),
        }
    }
}

/// Where runners are registered, which decides which jobs a runner can take at all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerScope {
    /// Organization or enterprise runners: any runner can take any job its labels fit.
    #[default]
    Shared,
    /// Repository runners: a runner takes jobs of the repository it is registered in only,
    /// that of the job its machine was made (or reused) for; standby runners register in
    /// `standby`.
    Repository { standby: Option<String> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Only an intent in the store: the create may be in flight.
    Pending,
    /// Being created, booted, started or rebuilt.
    Starting,
    Running,
    Stopping,
    Off,
    Deleting,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// The deterministic name: also the runner's name and the create's idempotency key.
    pub name: String,
    /// The provider's id; `None` while only an intent exists.
    pub provider_id: Option<String>,
    /// The controller tag; the planner never acts on an instance whose tag is not its own.
    pub controller: Option<String>,
    pub pool: String,
    pub state: InstanceState,
    pub created_at: Time,
    /// When the instance was first seen in its current state.
    pub state_since: Time,
    /// The labels its runner registers (or registered) with.
    pub labels: Labels,
    pub placement: Option<Placement>,
    /// The job it was created or last reused for.
    pub job: Option<JobKey>,
    pub run_id: Option<u64>,
    pub billing: Option<Billing>,
    /// Where an operator reaches it (`mayfly ssh`): the public IPv4 address, else the first
    /// address of its IPv6 network. Not the planner's concern.
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunnerStatus {
    Online,
    Offline,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runner {
    pub id: u64,
    pub name: String,
    pub status: RunnerStatus,
    pub busy: bool,
    pub labels: Labels,
    /// When the runner was first seen in its current status and busy flag.
    pub since: Time,
}

impl Runner {
    pub fn is_idle(&self) -> bool {
        self.status == RunnerStatus::Online && !self.busy
    }
}

/// What one reconcile pass sees. `now` is passed to the planner separately.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub jobs: Vec<Job>,
    pub instances: Vec<Instance>,
    pub runners: Vec<Runner>,
    /// What earlier passes learned will not work until something changes.
    #[serde(default)]
    pub refused: Refused,
}

/// What the executor learned will be refused again if tried again unchanged: machine specs a
/// provider refused (an unknown type, image or location) and jobs whose runner cannot be
/// registered. The planner tries none of them; the loop clears an entry when the configuration
/// changes or its slow retry is due.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub specs: Vec<RefusedSpec>,
    pub jobs: Vec<RefusedJob>,
}

impl Refused {
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty() && self.jobs.is_empty()
    }
}

/// A pool's machine spec (after a job's dynamic labels) that its provider refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedSpec {
    pub pool: String,
    pub spec: MachineSpec,
    pub reason: String,
    /// Its slow retry is due: the plan may make one machine of it (the probe), no more, until
    /// the provider's answer is known.
    #[serde(default)]
    pub probe: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedJob {
    pub job: JobKey,
    pub reason: String,
}
