//! `reap`: deletes what a crashed or killed `cleanup` left — machines whose job is over (the
//! store says cleanup began) or past their deadline, and machines with this controller's tag
//! that the store does not know at all. Only machines with the controller tag are touched.

use super::job::job_of;
use super::keys::JobDir;
use super::machine;
use super::record::{self, MachineFile};
use super::settings::Settings;
use mayfly_store::IntentState;
use std::collections::BTreeSet;

#[derive(Debug, Default)]
pub struct Reaped {
    pub deleted: Vec<String>,
    pub kept: usize,
    pub errors: Vec<String>,
}

pub async fn reap(settings: &Settings) -> Result<Reaped, String> {
    let store = record::open(&settings.state_url()).await?;
    let mut out = Reaped::default();
    let now = record::now().millis();
    let intents = store
        .intents()
        .await
        .map_err(|e| format!("cannot read the executor's store: {e}"))?;
    let known: BTreeSet<String> = intents.iter().map(|i| i.name.clone()).collect();
    for intent in &intents {
        let dir = JobDir::new(&settings.state_dir, &intent.name);
        let deadline = MachineFile::read(&dir).map_or(
            intent.created_at.millis() + settings.reap_after_secs as i64 * 1000,
            |m| m.deadline_ms,
        );
        let over = intent.state == IntentState::Deleted || now > deadline;
        if !over {
            out.kept += 1;
            continue;
        }
        let Some(pool) = settings.pools.iter().find(|p| p.name == intent.pool) else {
            out.errors.push(format!(
                "{}: pool {} is not configured",
                intent.name, intent.pool
            ));
            continue;
        };
        let provider = match machine::provider(pool).await {
            Ok(p) => p,
            Err(e) => {
                out.errors.push(e);
                continue;
            }
        };
        match super::cleanup::delete_machine(settings, &*provider, &store, &intent.name).await {
            Ok(()) => {
                let _ = dir.remove();
                out.deleted.push(intent.name.clone());
            }
            Err(e) => out.errors.push(e),
        }
    }
    // Machines nobody recorded: an intent is written before every create, so these are left
    // over from a store that was lost or reset. One list per provider kind and settings.
    let mut listed = BTreeSet::new();
    for pool in &settings.pools {
        let key = format!(
            "{}:{:?}:{:?}",
            pool.provider,
            pool.aws
                .as_ref()
                .map(|a| (&a.region, &a.endpoint, &a.cluster)),
            pool.hetzner.as_ref().map(|h| &h.endpoint)
        );
        if !listed.insert(key) {
            continue;
        }
        let provider = match machine::provider(pool).await {
            Ok(p) => p,
            Err(e) => {
                out.errors.push(e);
                continue;
            }
        };
        let instances = match provider.list(&settings.controller).await {
            Ok(i) => i,
            Err(e) => {
                out.errors
                    .push(format!("cannot list {} machines: {e}", provider.kind()));
                continue;
            }
        };
        // Read after the list: a machine a prepare made meanwhile has its intent by now.
        let known: BTreeSet<String> = match store.intents().await {
            Ok(now) => known
                .iter()
                .cloned()
                .chain(now.into_iter().map(|i| i.name))
                .collect(),
            Err(e) => {
                out.errors
                    .push(format!("cannot read the executor's store: {e}"));
                continue;
            }
        };
        for i in instances {
            // A job's machines carry its name, or its name and prepare's attempt.
            let Some(job) = job_of(&i.name) else { continue };
            if known.iter().any(|k| job_of(k) == Some(job)) {
                continue;
            }
            if matches!(i.state, mayfly_core::InstanceState::Deleting) {
                continue;
            }
            let Some(id) = &i.provider_id else { continue };
            match provider.delete(id).await {
                Ok(()) => out.deleted.push(i.name.clone()),
                Err(e) => out
                    .errors
                    .push(format!("cannot delete {} ({id}): {e}", i.name)),
            }
        }
    }
    store.close().await;
    Ok(out)
}
