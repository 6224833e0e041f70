//! Deletes a person asks for (`mayfly delete`, `DELETE /api/v1/instances/{name}`), between
//! passes: wait for the pass in flight, read the world afresh, delete through the executor.

use super::execute::{self, Ctx, Outcome};
use super::memory::Memory;
use super::{PassError, read_all};
use mayfly_core::{Action, InstanceState, Reason};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// How long a delete waits for the pass in flight to finish before it gives up. A pass is
/// bounded by its steps' timeouts; a burst of creates can still take this long.
pub const TURN_WAIT: Duration = Duration::from_secs(60);

/// A handle on the reconciler for deletes; cheap to clone, shared by the API's requests.
#[derive(Clone)]
pub struct Operator {
    ctx: Arc<Ctx>,
    turn: Arc<Mutex<()>>,
    pub turn_wait: Duration,
}

/// What a delete did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Removed {
    /// The runner (if one was registered) was deregistered, then the machine deleted.
    Deleted,
    /// A create the store recorded but no machine stands behind was forgotten.
    IntentDropped,
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("no instance named {name}")]
    NotFound { name: String },
    #[error(
        "{name} is running a job ({why}): mayfly never deletes a busy machine; wait for the \
         job to finish, or cancel it on GitHub"
    )]
    Busy { name: String, why: String },
    #[error(
        "cannot read the runners from GitHub ({0}): without them a busy machine cannot be told \
         apart, so nothing was deleted"
    )]
    RunnersUnknown(String),
    #[error("a reconcile pass held its turn for more than {0:?}; try again")]
    Waited(Duration),
    #[error("cannot read the world: {0}")]
    Read(#[from] PassError),
    /// Replicas share the store and this one does not lead: only the leader acts.
    #[error("{0}: send the delete to the leader's API")]
    NotLeader(String),
    #[error("deleting {name} failed: {why}")]
    Failed { name: String, why: String },
}

impl Operator {
    pub(super) fn new(ctx: Arc<Ctx>, turn: Arc<Mutex<()>>) -> Operator {
        Operator {
            ctx,
            turn,
            turn_wait: TURN_WAIT,
        }
    }

    /// Deregisters the runner of instance `name`, then deletes the machine, as a pass does
    /// (a runner GitHub reports busy keeps its machine), and records "deleted by operator".
    /// Reads the world first, in the pass turn, so no pass is about to reuse the machine and a
    /// runner that has just taken a job is seen.
    pub async fn delete(&self, name: &str) -> Result<Removed, DeleteError> {
        let _turn = tokio::time::timeout(self.turn_wait, self.turn.lock())
            .await
            .map_err(|_| DeleteError::Waited(self.turn_wait))?;
        let now = self.ctx.clock.now();
        let writer = self.ctx.writer();
        if let Some(why) = writer.refusal() {
            return Err(DeleteError::NotLeader(why));
        }
        // Since-when does not matter to a delete: a memory of its own leaves the loop's alone.
        let seen = read_all(&self.ctx, &writer, &mut Memory::default(), now).await?;
        if let Some(e) = &seen.runners_error {
            return Err(DeleteError::RunnersUnknown(e.clone()));
        }
        let Some(instance) = seen.snapshot.instances.iter().find(|i| i.name == name) else {
            return Err(DeleteError::NotFound {
                name: name.to_string(),
            });
        };
        let runner = seen.snapshot.runners.iter().find(|r| r.name == name);
        if runner.is_some_and(|r| r.busy) {
            return Err(DeleteError::Busy {
                name: name.to_string(),
                why: "its runner is busy".into(),
            });
        }
        let action = if instance.state == InstanceState::Pending && instance.provider_id.is_none() {
            Action::DropIntent {
                name: name.to_string(),
                reason: Reason::Operator,
            }
        } else {
            Action::Delete {
                instance: name.to_string(),
                provider_id: instance.provider_id.clone(),
                runner_id: runner.map(|r| r.id),
                reason: Reason::Operator,
            }
        };
        match execute::one(self.ctx.clone(), writer, action, seen).await {
            Outcome::Deleted => Ok(Removed::Deleted),
            Outcome::IntentDropped => Ok(Removed::IntentDropped),
            // The one reason a delete is skipped: GitHub refused, the runner took a job.
            Outcome::Skipped(why) => Err(DeleteError::Busy {
                name: name.to_string(),
                why,
            }),
            Outcome::Failed(why) => Err(DeleteError::Failed {
                name: name.to_string(),
                why,
            }),
            other => Err(DeleteError::Failed {
                name: name.to_string(),
                why: format!("the executor answered {other:?} to a delete"),
            }),
        }
    }
}
