//! What the world looks like right after a plan is carried out, computed without any I/O.
//! Property tests use it to check a plan against its own result; simulations step time with it.

use crate::model::{Instance, InstanceState, Snapshot};
use crate::plan::{Action, Plan};
use crate::time::Time;

/// The snapshot after every action of `plan` succeeded at `now`: creates are pending intents,
/// reused machines are starting, deleted machines are deleting (they still exist, and count).
pub fn apply(snap: &Snapshot, plan: &Plan, controller: &str, now: Time) -> Snapshot {
    let mut out = snap.clone();
    for action in &plan.actions {
        match action {
            Action::Delete {
                instance,
                runner_id,
                ..
            } => {
                if let Some(inst) = out.instances.iter_mut().find(|i| &i.name == instance) {
                    inst.state = InstanceState::Deleting;
                    inst.state_since = now;
                }
                if let Some(id) = runner_id {
                    out.runners.retain(|r| r.id != *id);
                }
            }
            Action::RemoveRunner { runner_id, .. } => out.runners.retain(|r| r.id != *runner_id),
            Action::DropIntent { name, .. } => out.instances.retain(|i| &i.name != name),
            Action::Reuse {
                instance,
                pool,
                labels,
                job,
                run_id,
                ..
            } => {
                if let Some(inst) = out.instances.iter_mut().find(|i| &i.name == instance) {
                    inst.state = InstanceState::Starting;
                    inst.state_since = now;
                    inst.pool = pool.clone();
                    inst.labels = labels.clone();
                    inst.job = job.clone();
                    inst.run_id = *run_id;
                }
                out.runners.retain(|r| &r.name != instance);
            }
            Action::Create {
                name,
                pool,
                labels,
                job,
                run_id,
                ..
            } => out.instances.push(Instance {
                name: name.clone(),
                provider_id: None,
                controller: Some(controller.to_string()),
                pool: pool.clone(),
                state: InstanceState::Pending,
                created_at: now,
                state_since: now,
                labels: labels.clone(),
                placement: None,
                job: job.clone(),
                run_id: *run_id,
                billing: None,
                address: None,
            }),
        }
    }
    out
}
