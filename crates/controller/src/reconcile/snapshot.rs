//! Reads the truth for one pass: jobs and intents from the store, instances from each provider
//! (one list each), runners from the forge; joins them by the instance's name.

use super::memory::Memory;
use mayfly_core::forge::{RegisteredRunner, ScopeId};
use mayfly_core::{
    Instance, InstanceState, Job, JobKey, JobStatus, Pools, Runner, RunnerStatus, Snapshot, Time,
};
use mayfly_store::{Intent, IntentState, Store};
use std::collections::{HashMap, HashSet};

/// A snapshot and what the executor needs to act on it.
pub struct Seen {
    pub snapshot: Snapshot,
    /// Instance name → provider name.
    pub provider_of: HashMap<String, String>,
    /// Runner id → the scope it is registered in.
    pub scope_of: HashMap<u64, ScopeId>,
    /// Why the runners could not be read, if they could not: without them busy machines
    /// cannot be told apart, so the pass only creates.
    pub runners_error: Option<String>,
    /// When the store last learned something of each job it holds as queued or running.
    pub news: HashMap<JobKey, Time>,
    /// What the join learned of intents, written to the store once the plan is made.
    pub updates: Vec<IntentUpdate>,
}

/// Jobs waiting or running, each with the count of instances ever created for its attempt, and
/// when the store last heard of each.
pub async fn jobs(
    store: &Store,
) -> Result<(Vec<Job>, HashMap<JobKey, Time>), mayfly_store::StoreError> {
    let records = store
        .jobs_with_status(&[JobStatus::Queued, JobStatus::InProgress])
        .await?;
    let attempts: Vec<_> = records.iter().map(|r| (r.key.clone(), r.attempt)).collect();
    let counts = store.instances_created_for(&attempts).await?;
    let news = records
        .iter()
        .map(|r| (r.key.clone(), r.updated_at))
        .collect();
    let jobs = records
        .iter()
        .map(|r| {
            let n = counts
                .get(&(r.key.clone(), r.attempt))
                .copied()
                .unwrap_or(0);
            r.to_job(n)
        })
        .collect();
    Ok((jobs, news))
}

/// Joins listed instances with their intents: the intent knows the job, the run and the
/// runner labels; an intent still pending that the provider does not list is an instance on
/// its way (or a create that never happened, which the planner drops after the deadline).
/// Returns the instances and the intent updates the join implies.
pub fn join(
    pools: &Pools,
    listed: Vec<(String, Instance)>,
    intents: Vec<Intent>,
    registered: Option<&HashSet<&str>>,
    memory: &mut Memory,
    now: Time,
) -> (Vec<Instance>, HashMap<String, String>, Vec<IntentUpdate>) {
    let mut by_name: HashMap<String, Intent> =
        intents.into_iter().map(|i| (i.name.clone(), i)).collect();
    let mut instances = Vec::with_capacity(listed.len() + by_name.len());
    let mut provider_of = HashMap::with_capacity(listed.len());
    let mut updates = Vec::new();
    for (provider, mut inst) in listed {
        match by_name.remove(&inst.name) {
            Some(intent) => {
                if intent.state == IntentState::Pending {
                    updates.push(IntentUpdate::Created {
                        name: inst.name.clone(),
                        provider_id: inst.provider_id.clone(),
                    });
                }
                inst.labels = intent.labels;
                inst.job = intent.job;
                inst.run_id = intent.run_id;
            }
            None => {
                inst.labels = pools
                    .pools
                    .iter()
                    .find(|p| p.name == inst.pool)
                    .map(|p| p.labels.clone())
                    .unwrap_or_default();
            }
        }
        // Runners unread this pass: each machine keeps what was last known of its runner.
        let runner = match registered {
            Some(names) => names.contains(inst.name.as_str()),
            None => memory.had_runner(&inst.name),
        };
        inst.state_since = memory.instance(&inst.name, inst.state, runner, inst.created_at, now);
        provider_of.insert(inst.name.clone(), provider);
        instances.push(inst);
    }
    for (name, intent) in by_name {
        match intent.state {
            IntentState::Pending => {
                provider_of.insert(name.clone(), intent.provider.clone());
                instances.push(Instance {
                    name,
                    provider_id: None,
                    controller: Some(pools.controller.clone()),
                    pool: intent.pool,
                    state: InstanceState::Pending,
                    created_at: intent.created_at,
                    state_since: intent.created_at,
                    labels: intent.labels,
                    placement: None,
                    job: intent.job,
                    run_id: intent.run_id,
                    billing: None,
                    address: None,
                })
            }
            // Gone at the provider: deleted by us, by hand, or never there.
            IntentState::Created => updates.push(IntentUpdate::Gone { name }),
            IntentState::Failed | IntentState::Deleted => {}
        }
    }
    (instances, provider_of, updates)
}

/// What the join learned about intents, written back after the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntentUpdate {
    /// The provider lists it: the create happened.
    Created {
        name: String,
        provider_id: Option<String>,
    },
    /// The provider no longer lists it.
    Gone { name: String },
}

/// The forge's runners as the planner sees them, with since-when from memory.
pub fn runners(
    listed: &[RegisteredRunner],
    memory: &mut Memory,
    now: Time,
) -> (Vec<Runner>, HashMap<u64, ScopeId>) {
    let mut out = Vec::with_capacity(listed.len());
    let mut scope_of = HashMap::with_capacity(listed.len());
    for r in listed {
        let status = if r.online {
            RunnerStatus::Online
        } else {
            RunnerStatus::Offline
        };
        let idle = status == RunnerStatus::Online && !r.busy;
        out.push(Runner {
            id: r.id,
            name: r.name.clone(),
            status,
            busy: r.busy,
            labels: r.labels.clone(),
            since: memory.runner(&r.name, idle, now),
        });
        scope_of.insert(r.id, r.scope.clone());
    }
    (out, scope_of)
}

/// Forgets instances and runners no longer seen.
pub fn forget_unseen(memory: &mut Memory, snapshot: &Snapshot) {
    let instances: HashSet<&str> = snapshot.instances.iter().map(|i| i.name.as_str()).collect();
    let runners: HashSet<&str> = snapshot.runners.iter().map(|r| r.name.as_str()).collect();
    memory.retain(&instances, &runners);
}

#[cfg(test)]
mod tests {
    use super::*;
    use mayfly_core::{ForgeKind, Labels};

    fn pools() -> Pools {
        let pool = crate::sample::pool(
            "p",
            &["self-hosted", "linux"],
            &["cx23"],
            &["fsn1"],
            mayfly_core::Arch::X86,
        );
        crate::sample::pools("mf", vec![pool], true)
    }

    fn listed(name: &str) -> Instance {
        crate::sample::instance(name, "p", InstanceState::Running, Time::from_secs(100))
    }

    fn intent(name: &str, state: IntentState) -> Intent {
        let p = pools();
        Intent {
            name: name.into(),
            pool: "p".into(),
            provider: "hz".into(),
            job: Some(JobKey {
                forge: ForgeKind::Github,
                scope: "o/r".into(),
                id: 7,
            }),
            attempt: 1,
            run_id: Some(70),
            labels: Labels::new(["self-hosted", "linux", "x64"]),
            spec: p.pools[0].spec.clone(),
            created_at: Time::from_secs(90),
            state,
            provider_id: None,
            updated_at: Time::from_secs(90),
        }
    }

    #[test]
    fn intents_give_listed_instances_their_job_and_stand_in_for_creates_in_flight() {
        let mut memory = Memory::default();
        let now = Time::from_secs(200);
        let (instances, provider_of, updates) = join(
            &pools(),
            vec![("hz".into(), listed("a")), ("hz".into(), listed("stray"))],
            vec![
                intent("a", IntentState::Pending),
                intent("b", IntentState::Pending),
                intent("c", IntentState::Created),
                intent("d", IntentState::Failed),
            ],
            Some(&HashSet::new()),
            &mut memory,
            now,
        );
        let by: HashMap<&str, &Instance> = instances.iter().map(|i| (i.name.as_str(), i)).collect();
        assert_eq!(by.len(), 3, "a, stray and the pending b");
        assert_eq!(by["a"].job.as_ref().map(|k| k.id), Some(7));
        assert!(by["a"].labels.contains("x64"));
        assert_eq!(
            by["a"].state_since,
            Time::from_secs(100),
            "up since created"
        );
        assert!(by["stray"].labels.contains("linux"), "pool labels");
        assert_eq!(by["b"].state, InstanceState::Pending);
        assert_eq!(provider_of["b"], "hz");
        assert_eq!(
            updates,
            [
                IntentUpdate::Created {
                    name: "a".into(),
                    provider_id: Some("id-a".into())
                },
                IntentUpdate::Gone { name: "c".into() },
            ]
        );
    }
}
