//! `cleanup_exec`: the job's machine and keys go, whatever state prepare left them in. Safe to
//! run twice, and after a prepare that never ran.

use super::job::{JobEnv, job_of};
use super::keys::JobDir;
use super::machine;
use super::record::{self, MachineFile};
use super::say;
use super::settings::Settings;
use mayfly_provider::Provider;
use mayfly_store::{IntentState, Store};

pub async fn cleanup(settings: &Settings, job: &JobEnv) -> Result<(), String> {
    let name = job.machine_name();
    let dir = JobDir::new(&settings.state_dir, &name);
    let store = record::open(&settings.state_url()).await?;
    let Some(intent) = record::find(&store, &name).await? else {
        dir.remove()?;
        say(&format!("nothing to clean up for {name}"));
        return Ok(());
    };
    // First the mark that the job is over: a cleanup killed after it leaves the reaper a
    // machine it may delete at once.
    record::set_state(&store, &name, IntentState::Deleted, None).await?;
    say(&format!("deleting {name}"));
    let pool = settings
        .pools
        .iter()
        .find(|p| p.name == intent.pool)
        .ok_or_else(|| {
            format!(
                "{name} is of pool {}, which is no longer configured",
                intent.pool
            )
        })?;
    let provider = machine::provider(pool).await?;
    delete_machine(settings, &*provider, &store, &name).await?;
    dir.remove()?;
    store.close().await;
    Ok(())
}

/// Deletes the machine of the job `name` (by the id the store or its file has, else the
/// controller's machines of that job, whichever prepare attempt named them), then forgets it.
pub async fn delete_machine(
    settings: &Settings,
    provider: &dyn Provider,
    store: &Store,
    name: &str,
) -> Result<(), String> {
    let dir = JobDir::new(&settings.state_dir, name);
    let ids = match record::find(store, name).await?.and_then(|i| i.provider_id) {
        Some(id) => vec![id],
        None => match MachineFile::read(&dir) {
            Ok(m) => vec![m.provider_id],
            Err(_) => provider
                .list(&settings.controller)
                .await
                .map_err(|e| format!("cannot list {}'s machines: {e}", provider.kind()))?
                .into_iter()
                .filter(|i| job_of(&i.name).is_some() && job_of(&i.name) == job_of(name))
                .filter(|i| !matches!(i.state, mayfly_core::InstanceState::Deleting))
                .filter_map(|i| i.provider_id)
                .collect(),
        },
    };
    for id in ids {
        provider
            .delete(&id)
            .await
            .map_err(|e| format!("cannot delete {name} ({id}): {e}"))?;
        say(&format!("deleted {name} ({id})"));
    }
    record::forget(store, name).await
}
