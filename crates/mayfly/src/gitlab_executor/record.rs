//! What the executor remembers of a job between its executables: the job → machine mapping as
//! an intent in the store (written before the create, so a crash never loses a machine), and
//! the machine's address and deadline in the job's directory for `run`, which needs no store.

use super::job::JobEnv;
use super::keys::JobDir;
use super::settings::PoolSettings;
use mayfly_core::{ForgeKind, JobKey, Labels, Time};
use mayfly_store::{Intent, IntentState, Store};
use serde::{Deserialize, Serialize};

/// The machine of a prepared job, as `run` and `cleanup` read it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MachineFile {
    pub name: String,
    pub pool: String,
    pub provider_id: String,
    pub address: String,
    /// After this (ms since the epoch) the reaper deletes the machine whatever the store says.
    pub deadline_ms: i64,
}

impl MachineFile {
    pub fn read(dir: &JobDir) -> Result<MachineFile, String> {
        let path = dir.machine_file();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "cannot read {} ({e}): was prepare run for this job?",
                path.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn write(&self, dir: &JobDir) -> Result<(), String> {
        let path = dir.machine_file();
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

pub fn now() -> Time {
    Time::from_millis(jiff::Timestamp::now().as_millisecond())
}

pub async fn open(url: &str) -> Result<Store, String> {
    Store::open(url)
        .await
        .map_err(|e| format!("cannot open the executor's store: {e}"))
}

/// Records the intent for the job's machine of prepare's `attempt`; `false` when one exists
/// (an earlier attempt's).
pub async fn record(
    store: &Store,
    job: &JobEnv,
    pool: &PoolSettings,
    attempt: u32,
) -> Result<bool, String> {
    let at = now();
    let intent = Intent {
        name: job.machine_name(),
        pool: pool.name.clone(),
        provider: pool.provider.clone(),
        job: Some(JobKey {
            forge: ForgeKind::Gitlab,
            scope: job.project_path.as_str().into(),
            id: job.job_id,
        }),
        attempt,
        run_id: None,
        labels: Labels::new(pool.tags.clone()),
        spec: pool.spec(),
        created_at: at,
        state: IntentState::Pending,
        provider_id: None,
        updated_at: at,
    };
    store
        .record_intent(&intent)
        .await
        .map_err(|e| format!("cannot record the machine of job {}: {e}", job.job_id))
}

pub async fn find(store: &Store, name: &str) -> Result<Option<Intent>, String> {
    Ok(store
        .intents()
        .await
        .map_err(|e| format!("cannot read the executor's store: {e}"))?
        .into_iter()
        .find(|i| i.name == name))
}

pub async fn set_state(
    store: &Store,
    name: &str,
    state: IntentState,
    provider_id: Option<&str>,
) -> Result<(), String> {
    store
        .set_intent_state(name, state, provider_id, now())
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot update the machine of {name}: {e}"))
}

pub async fn forget(store: &Store, name: &str) -> Result<(), String> {
    store
        .remove_intent(name)
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot forget {name}: {e}"))
}
