//! `prepare_exec`: one machine for the job from the pool its tags pick, with the job's own keys,
//! ready when its sshd answers with the host key made for it.

use super::job::JobEnv;
use super::keys::JobDir;
use super::machine;
use super::record::{self, MachineFile};
use super::remote::{Probe, Remote};
use super::settings::Settings;
use super::{Failure, say};
use mayfly_provider::{CreateRequest, Error as ProviderError, Provider};
use mayfly_store::IntentState;
use std::time::{Duration, Instant};

pub async fn prepare(settings: &Settings, job: &JobEnv) -> Result<(), Failure> {
    let pool = settings
        .pool_for(job.pool.as_deref(), &job.runner_tags)
        .map_err(Failure::System)?;
    let name = job.machine_name();
    say(&format!(
        "machine {name} from pool {} ({})",
        pool.name, pool.provider
    ));
    let store = record::open(&settings.state_url())
        .await
        .map_err(Failure::System)?;
    let provider = machine::provider(pool).await.map_err(Failure::System)?;
    let mut attempt = 0;
    if !record::record(&store, job, pool, attempt)
        .await
        .map_err(Failure::System)?
    {
        // An earlier attempt of this job got this far: its machine (if any) has keys that are
        // gone now. Delete it before making the one this attempt owns, under a name of its own.
        say("an earlier attempt left a machine record: removing its machine first");
        attempt = record::find(&store, &name)
            .await
            .map_err(Failure::System)?
            .map_or(0, |i| i.attempt)
            + 1;
        super::cleanup::delete_machine(settings, &*provider, &store, &name)
            .await
            .map_err(Failure::System)?;
        record::record(&store, job, pool, attempt)
            .await
            .map_err(Failure::System)?;
    }
    let dir = JobDir::new(&settings.state_dir, &name);
    let keys = dir.make_keys(&name).map_err(Failure::System)?;
    let machine_name = job.attempt_name(attempt);
    let req = CreateRequest {
        name: machine_name.clone(),
        controller: settings.controller.clone(),
        pool: pool.name.clone(),
        spec: pool.spec(),
        user_data: machine::user_data(settings, pool, &keys),
        labels: mayfly_core::Labels::new(pool.tags.clone()),
        credential: machine::credential(&keys),
    };
    let started = Instant::now();
    let instance = match provider.create(&req).await {
        Ok(i) => i,
        Err(e) => {
            // Nothing was made (a refused create) or the answer was lost: the record stays
            // `failed` so that cleanup looks for the machine by name either way.
            let _ = record::set_state(&store, &name, IntentState::Failed, None).await;
            return Err(Failure::System(format!(
                "{} did not create {machine_name}: {e}",
                provider.kind()
            )));
        }
    };
    let id = instance
        .provider_id
        .clone()
        .ok_or_else(|| Failure::System(format!("{} gave {machine_name} no id", provider.kind())))?;
    record::set_state(&store, &name, IntentState::Created, Some(&id))
        .await
        .map_err(Failure::System)?;
    store.close().await;
    say(&format!(
        "{} created {machine_name} ({id}) in {:.1} s",
        provider.kind(),
        started.elapsed().as_secs_f64()
    ));
    let deadline = Duration::from_secs(settings.ssh.ready_timeout_secs);
    let address = match instance.address.clone() {
        Some(a) => a,
        None => {
            wait_for_address(&*provider, &id, started + deadline, settings.address_poll()).await?
        }
    };
    let reap_after = job
        .timeout_secs
        .map_or(settings.reap_after_secs, |t| t + 3600);
    MachineFile {
        name: machine_name.clone(),
        pool: pool.name.clone(),
        provider_id: id,
        address: address.clone(),
        deadline_ms: record::now().millis() + (reap_after as i64) * 1000,
    }
    .write(&dir)
    .map_err(Failure::System)?;
    let remote = Remote::new(&settings.ssh, &dir, &name, &address);
    wait_for_ssh(&remote, started + deadline).await?;
    say(&format!(
        "{name} answers on {address} with its pinned host key, {:.1} s after the create",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Reads the machine until the provider reports an address (a task's network interface
/// attaches some seconds after RunTask), pausing `first` doubling to `max`. The last read is at
/// `until` itself, not a pause earlier: a task that got its address just in time is used.
async fn wait_for_address(
    provider: &dyn Provider,
    id: &str,
    until: Instant,
    (first, max): (Duration, Duration),
) -> Result<String, Failure> {
    let mut pause = first;
    let mut reads = 0u32;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        tokio::time::sleep(pause.min(left)).await;
        reads += 1;
        match provider.get(id).await {
            Ok(i) => {
                if let Some(a) = i.address {
                    return Ok(a);
                }
            }
            Err(ProviderError::NotFound) => {
                return Err(Failure::System(format!("{id} went away while it booted")));
            }
            Err(e) => say(&format!("reading {id}: {e}")),
        }
        if left <= pause {
            return Err(Failure::System(format!(
                "{id} got no address within the ready timeout ({reads} reads)"
            )));
        }
        if reads == 1 || reads.is_multiple_of(10) {
            say(&format!("waiting for {id}'s address (read {reads})"));
        }
        pause = (pause * 2).min(max);
    }
}

/// Probes until sshd answers; a host key that is not the pinned one ends it. The pause grows
/// to a second only: a probe is one TCP connect to the machine (no API call), and each second
/// of pause can add as much to the job's wait once sshd is up.
async fn wait_for_ssh(remote: &Remote, until: Instant) -> Result<(), Failure> {
    let mut pause = Duration::from_millis(200);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match remote.probe().await {
            Ok(()) => return Ok(()),
            Err(Probe::Fatal(words)) => {
                return Err(Failure::System(format!(
                    "the machine's host key is not the one made for it; not trusting it: {words}"
                )));
            }
            Err(Probe::Retry(words)) => {
                if Instant::now() + pause > until {
                    return Err(Failure::System(format!(
                        "sshd did not answer within the ready timeout ({attempt} attempts): {words}"
                    )));
                }
                if attempt == 1 || attempt.is_multiple_of(10) {
                    say(&format!("waiting for sshd (attempt {attempt}): {words}"));
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}
