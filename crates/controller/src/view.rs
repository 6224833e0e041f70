//! What the controller sees, for people and scripts: pools, jobs with their wait, instances with
//! their cost so far, runners. Built from one pass's snapshot and plan; the API serves it,
//! `mayfly status` prints it and `/metrics` renders its gauges.

use mayfly_core::{Action, InstanceState, JobStatus, Plan, Pools, RunnerStatus, Snapshot, Time};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Everything one pass saw, at `at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct View {
    pub controller: String,
    /// When the pass read the world.
    #[serde(with = "rfc3339")]
    pub at: Time,
    pub pools: Vec<PoolView>,
    /// Jobs queued or in progress, oldest first.
    pub jobs: Vec<JobView>,
    /// Instances by name.
    pub instances: Vec<InstanceView>,
    /// Runners by name.
    pub runners: Vec<RunnerView>,
    pub cost: CostView,
    /// Which replica leads, when several share the state (set by the API that serves the
    /// view; absent for a controller that acts alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<LeaderView>,
}

/// Leadership as the answering replica sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderView {
    /// The replica that answered.
    pub replica: String,
    /// Whether it leads (runs the passes).
    pub leading: bool,
    /// Who leads as last seen; `None` when nobody holds the lease (or the store cannot say).
    pub holder: Option<String>,
    /// The lease's epoch: it grows with every new leader.
    pub epoch: u64,
}

impl LeaderView {
    pub fn of(replica: &str, l: &crate::leader::Leadership) -> LeaderView {
        LeaderView {
            replica: replica.to_string(),
            leading: l.leading,
            holder: l.holder.clone(),
            epoch: l.epoch,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolView {
    pub name: String,
    pub provider: String,
    pub labels: Vec<String>,
    pub max: Option<u32>,
    pub standby: u32,
    /// Instances of the pool, whatever their state.
    pub instances: usize,
    pub busy: usize,
    pub idle: usize,
    /// Jobs of the pool's labels waiting for a machine.
    pub queued: usize,
    /// Why no machine of the pool can be made: the provider refused its spec (an unknown
    /// type, image or location); `None` when it can. Tried again after `intervals.refused_retry`.
    #[serde(default)]
    pub unusable: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// `github:owner/repo#123`: the key `mayfly` uses in logs.
    pub key: String,
    pub forge: String,
    /// `owner/repo` on GitHub.
    pub scope: String,
    pub id: u64,
    pub run_id: Option<u64>,
    pub attempt: u32,
    pub status: JobStatus,
    pub labels: Vec<String>,
    #[serde(with = "rfc3339")]
    pub queued_at: Time,
    /// Seconds since it was queued.
    pub age_seconds: u64,
    /// The instance it runs on or is meant for.
    pub instance: Option<String>,
    /// Why nothing is being made for it (no pool, a limit); `None` when served.
    pub waiting: Option<String>,
    /// The kind of `waiting`: `no_pool`, `bad_label`, `limit`, `pool_unusable` or `refused`.
    #[serde(default)]
    pub waiting_reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceView {
    pub name: String,
    pub pool: String,
    pub provider: String,
    pub provider_id: Option<String>,
    pub state: InstanceState,
    #[serde(with = "rfc3339")]
    pub created_at: Time,
    pub age_seconds: u64,
    pub machine_type: Option<String>,
    pub location: Option<String>,
    pub address: Option<String>,
    /// The job it was made or last reused for.
    pub job: Option<String>,
    /// Its runner as the forge reports it: `idle`, `busy`, `offline`, or `none` (not registered).
    pub runner: RunnerState,
    pub price_per_hour: Option<f64>,
    /// What it has cost since it was created, billing periods rounded up.
    pub cost_so_far: Option<f64>,
    /// The end of the billing period it is in: a powered-off machine is kept until about then
    /// because that time is paid anyway, and a job that comes before takes it.
    #[serde(default, with = "rfc3339_option")]
    pub paid_until: Option<Time>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerState {
    Idle,
    Busy,
    Offline,
    None,
}

impl RunnerState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerState::Idle => "idle",
            RunnerState::Busy => "busy",
            RunnerState::Offline => "offline",
            RunnerState::None => "none",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunnerView {
    pub id: u64,
    pub name: String,
    pub state: RunnerState,
    pub labels: Vec<String>,
    /// Since when it has been in this state.
    #[serde(with = "rfc3339")]
    pub since: Time,
    /// Whether one of this controller's instances carries it.
    pub managed: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CostView {
    /// What the live instances cost per hour, in the providers' currency.
    pub per_hour: f64,
    /// What the live instances have cost since they were created.
    pub so_far: f64,
}

impl View {
    /// The view of `snapshot` at `now`, with the plan's assignments and waiting reasons.
    /// `provider_of` maps instance names to provider names.
    pub fn build(
        pools: &Pools,
        snapshot: &Snapshot,
        plan: &Plan,
        provider_of: &HashMap<String, String>,
        now: Time,
    ) -> View {
        let mut runner_of: HashMap<&str, RunnerState> = snapshot
            .runners
            .iter()
            .map(|r| (r.name.as_str(), runner_state(r.status, r.busy)))
            .collect();
        // The forge's news of a job that started (a webhook naming its runner) is fresher than
        // a runner list a pass may have kept from an earlier one.
        for job in &snapshot.jobs {
            if job.status == JobStatus::InProgress
                && let Some(runner) = &job.runner
            {
                runner_of.insert(runner.as_str(), RunnerState::Busy);
            }
        }
        let mut assigned: HashMap<String, String> = plan
            .assignments
            .iter()
            .map(|a| (a.job.to_string(), a.instance.clone()))
            .collect();
        for a in &plan.actions {
            if let Action::Create {
                name,
                job: Some(job),
                ..
            } = a
            {
                assigned.insert(job.to_string(), name.clone());
            }
        }
        let waiting: HashMap<String, (String, &str)> = plan
            .waiting
            .iter()
            .map(|w| (w.job.to_string(), (w.why.to_string(), w.why.kind())))
            .collect();

        let mut instances: Vec<InstanceView> = snapshot
            .instances
            .iter()
            .map(|i| {
                let lifetime = now.since(i.created_at);
                InstanceView {
                    name: i.name.clone(),
                    pool: i.pool.clone(),
                    provider: provider_of.get(&i.name).cloned().unwrap_or_default(),
                    provider_id: i.provider_id.clone(),
                    state: i.state,
                    created_at: i.created_at,
                    age_seconds: lifetime.as_secs(),
                    machine_type: i.placement.as_ref().map(|p| p.machine_type.clone()),
                    location: i.placement.as_ref().map(|p| p.location.clone()),
                    address: i.address.clone(),
                    job: i.job.as_ref().map(ToString::to_string),
                    runner: runner_of
                        .get(i.name.as_str())
                        .copied()
                        .unwrap_or(RunnerState::None),
                    price_per_hour: i.billing.as_ref().map(|b| b.price_per_hour),
                    // A pending intent has no machine yet: nothing is billed.
                    cost_so_far: i
                        .billing
                        .as_ref()
                        .filter(|_| i.state != InstanceState::Pending)
                        .map(|b| b.cost(lifetime)),
                    paid_until: i
                        .billing
                        .as_ref()
                        .filter(|_| i.state != InstanceState::Pending)
                        .map(|b| b.paid_until(i.created_at, now)),
                }
            })
            .collect();
        instances.sort_by(|a, b| a.name.cmp(&b.name));

        let mut jobs: Vec<JobView> = snapshot
            .jobs
            .iter()
            .map(|j| {
                let key = j.key.to_string();
                JobView {
                    forge: j.key.forge.as_str().to_string(),
                    scope: j.key.scope.to_string(),
                    id: j.key.id,
                    run_id: j.run_id,
                    attempt: j.attempt,
                    status: j.status,
                    labels: j.labels.iter().map(str::to_string).collect(),
                    queued_at: j.queued_at,
                    age_seconds: now.since(j.queued_at).as_secs(),
                    instance: j.runner.clone().or_else(|| assigned.get(&key).cloned()),
                    waiting: waiting.get(&key).map(|(why, _)| why.clone()),
                    waiting_reason: waiting.get(&key).map(|(_, kind)| kind.to_string()),
                    key,
                }
            })
            .collect();
        jobs.sort_by(|a, b| (a.queued_at, &a.key).cmp(&(b.queued_at, &b.key)));

        let managed: std::collections::HashSet<&str> =
            snapshot.instances.iter().map(|i| i.name.as_str()).collect();
        let mut runners: Vec<RunnerView> = snapshot
            .runners
            .iter()
            .map(|r| RunnerView {
                id: r.id,
                name: r.name.clone(),
                state: runner_state(r.status, r.busy),
                labels: r.labels.iter().map(str::to_string).collect(),
                since: r.since,
                managed: managed.contains(r.name.as_str()),
            })
            .collect();
        runners.sort_by(|a, b| a.name.cmp(&b.name));

        let pools_view = pools
            .pools
            .iter()
            .map(|p| {
                let mine = instances.iter().filter(|i| i.pool == p.name);
                let (mut count, mut busy, mut idle) = (0, 0, 0);
                for i in mine {
                    count += 1;
                    busy += usize::from(i.runner == RunnerState::Busy);
                    idle += usize::from(i.runner == RunnerState::Idle);
                }
                let queued = snapshot
                    .jobs
                    .iter()
                    .filter(|j| j.status == JobStatus::Queued)
                    .filter(|j| {
                        pools
                            .labels
                            .requirements(&j.labels)
                            .is_ok_and(|req| p.serves(&req))
                    })
                    .count();
                let unusable = snapshot
                    .refused
                    .specs
                    .iter()
                    .find(|r| r.pool == p.name)
                    .map(|r| r.reason.clone());
                PoolView {
                    name: p.name.clone(),
                    provider: p.provider.clone(),
                    labels: p.labels.iter().map(str::to_string).collect(),
                    max: p.max,
                    standby: p.standby,
                    instances: count,
                    busy,
                    idle,
                    queued,
                    unusable,
                }
            })
            .collect();

        let cost = instances.iter().fold(CostView::default(), |mut c, i| {
            if i.state != InstanceState::Pending {
                c.per_hour += i.price_per_hour.unwrap_or(0.0);
                c.so_far += i.cost_so_far.unwrap_or(0.0);
            }
            c
        });
        View {
            controller: pools.controller.clone(),
            at: now,
            pools: pools_view,
            jobs,
            instances,
            runners,
            cost,
            leader: None,
        }
    }

    pub fn instance(&self, name: &str) -> Option<&InstanceView> {
        self.instances.iter().find(|i| i.name == name)
    }
}

fn runner_state(status: RunnerStatus, busy: bool) -> RunnerState {
    match (status, busy) {
        (_, true) => RunnerState::Busy,
        (RunnerStatus::Online, false) => RunnerState::Idle,
        (RunnerStatus::Offline, false) => RunnerState::Offline,
    }
}

/// Times as RFC 3339 in UTC (`2026-12-01T15:04:05Z`): what people and scripts read.
pub mod rfc3339 {
    use mayfly_core::Time;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Time, s: S) -> Result<S::Ok, S::Error> {
        let ts =
            jiff::Timestamp::from_millisecond(t.millis()).map_err(serde::ser::Error::custom)?;
        s.collect_str(&ts)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
        let text = String::deserialize(d)?;
        let ts: jiff::Timestamp = text.parse().map_err(serde::de::Error::custom)?;
        Ok(Time::from_millis(ts.as_millisecond()))
    }
}

/// An optional time as RFC 3339, or null.
pub mod rfc3339_option {
    use mayfly_core::Time;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<Time>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Time>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| {
                let ts: jiff::Timestamp = text.parse().map_err(serde::de::Error::custom)?;
                Ok(Time::from_millis(ts.as_millisecond()))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mayfly_core::{Arch, Billing, ForgeKind, Instance, Job, JobKey, Labels, Runner};

    const LINUX: &[&str] = &["self-hosted", "linux", "x64"];

    fn job(id: u64, at: i64) -> Job {
        Job {
            key: JobKey {
                forge: ForgeKind::Github,
                scope: "acme/app".into(),
                id,
            },
            run_id: Some(id * 10),
            attempt: 1,
            labels: Labels::new(LINUX),
            status: JobStatus::Queued,
            queued_at: Time::from_secs(at),
            instances_created: 0,
            runner: None,
        }
    }

    fn instance(name: &str, state: InstanceState) -> Instance {
        Instance {
            labels: Labels::new(LINUX),
            placement: Some(crate::sample::placement()),
            billing: Some(Billing::hourly(0.01)),
            address: Some("198.51.100.7".into()),
            ..crate::sample::instance(name, "linux", state, Time::from_secs(1000))
        }
    }

    #[test]
    fn the_view_joins_jobs_instances_runners_and_their_cost() {
        let pool = crate::sample::pool("linux", LINUX, &["cx23"], &["fsn1"], Arch::X86);
        let mut pools = crate::sample::pools("mf", vec![pool], true);
        pools.pools[0].max = Some(1);
        let snapshot = Snapshot {
            jobs: vec![job(2, 1900), job(1, 1800)],
            instances: vec![
                instance("mf-b", InstanceState::Running),
                instance("mf-a", InstanceState::Running),
            ],
            runners: vec![Runner {
                id: 5,
                name: "mf-a".into(),
                status: RunnerStatus::Online,
                busy: true,
                labels: Labels::new(LINUX),
                since: Time::from_secs(1500),
            }],
            refused: Default::default(),
        };
        let now = Time::from_secs(2000);
        let plan = mayfly_core::plan(&snapshot, &pools, now);
        let provider_of = [("mf-a", "hz"), ("mf-b", "hz")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .into();
        let view = View::build(&pools, &snapshot, &plan, &provider_of, now);

        assert_eq!(view.jobs[0].key, "github:acme/app#1", "oldest first");
        assert_eq!(view.jobs[0].age_seconds, 200);
        let names: Vec<_> = view.instances.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["mf-a", "mf-b"]);
        let a = view.instance("mf-a").unwrap();
        assert_eq!((a.runner, a.provider.as_str()), (RunnerState::Busy, "hz"));
        assert_eq!(view.instance("mf-b").unwrap().runner, RunnerState::None);
        assert_eq!(a.cost_so_far, Some(0.01), "one hour started");
        assert!((view.cost.per_hour - 0.02).abs() < 1e-9);
        assert!(view.runners[0].managed);
        assert_eq!(view.pools[0].instances, 2);
        assert_eq!((view.pools[0].busy, view.pools[0].queued), (1, 2));
        // Both jobs are covered (the busy runner's job is unnamed; mf-b is booting) or wait
        // at the pool's max: either way each says which.
        for j in &view.jobs {
            assert!(j.instance.is_some() != j.waiting.is_some(), "{j:?}");
            assert_eq!(j.waiting.is_some(), j.waiting_reason.is_some(), "{j:?}");
        }
        assert!(
            view.jobs
                .iter()
                .filter_map(|j| j.waiting_reason.as_deref())
                .all(|r| r == "limit")
        );
    }

    #[test]
    fn times_read_as_rfc3339() {
        let pools = crate::sample::pools("mf", vec![], true);
        let view = View::build(
            &pools,
            &Snapshot::default(),
            &mayfly_core::plan(&Snapshot::default(), &pools, Time::from_secs(0)),
            &HashMap::new(),
            Time::from_secs(1_764_601_445),
        );
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["at"], "2025-12-01T15:04:05Z");
        let back: View = serde_json::from_value(json).unwrap();
        assert_eq!(back, view);
    }
}
