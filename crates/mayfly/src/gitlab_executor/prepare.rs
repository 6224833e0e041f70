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
use std::time::Duration;
// tokio's clock, so a test can pause it.
use tokio::time::Instant;

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

#[cfg(test)]
mod tests {
    use super::*;
    use mayfly_core::{Billing, Image, Instance, Placement, Secret};
    use mayfly_provider::Result;
    use std::sync::Mutex;

    /// A provider whose machine gets its address on the `reveal_at`th read (`None`: never),
    /// noting when each read came.
    struct Booting {
        reveal_at: Option<usize>,
        reads: Mutex<Vec<Duration>>,
        start: Instant,
    }

    #[async_trait::async_trait]
    impl Provider for Booting {
        fn kind(&self) -> &'static str {
            "booting"
        }
        async fn create(&self, _: &CreateRequest) -> Result<Instance> {
            unreachable!()
        }
        async fn list(&self, _: &str) -> Result<Vec<Instance>> {
            Ok(Vec::new())
        }
        async fn get(&self, _: &str) -> Result<Instance> {
            let mut reads = self.reads.lock().unwrap();
            reads.push(self.start.elapsed());
            let address = self
                .reveal_at
                .is_some_and(|n| reads.len() >= n)
                .then(|| "10.0.0.7".to_string());
            Ok(Instance {
                name: "mayfly-gl-1".into(),
                provider_id: Some("t".into()),
                controller: None,
                pool: "p".into(),
                state: mayfly_core::InstanceState::Starting,
                created_at: mayfly_core::Time(0),
                state_since: mayfly_core::Time(0),
                labels: mayfly_core::Labels::default(),
                placement: None,
                job: None,
                run_id: None,
                billing: None,
                address,
            })
        }
        async fn power_off(&self, _: &str) -> Result<()> {
            Ok(())
        }
        async fn power_on(&self, _: &str) -> Result<()> {
            Ok(())
        }
        async fn rebuild(&self, _: &str, _: &Image, _: &Secret) -> Result<()> {
            Ok(())
        }
        async fn delete(&self, _: &str) -> Result<()> {
            Ok(())
        }
        async fn billing(&self, _: &Placement) -> Result<Billing> {
            Ok(Billing::per_second(0.0))
        }
    }

    fn booting(reveal_at: Option<usize>) -> Booting {
        Booting {
            reveal_at,
            reads: Mutex::new(Vec::new()),
            start: Instant::now(),
        }
    }

    const DEFAULTS: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(5));

    #[tokio::test(start_paused = true)]
    async fn the_address_is_read_with_backoff_until_it_comes() {
        // The address is there from 20 s on: the seventh read sees it.
        let p = booting(Some(7));
        let until = Instant::now() + Duration::from_secs(300);
        let a = wait_for_address(&p, "t", until, DEFAULTS).await.unwrap();
        assert_eq!(a, "10.0.0.7");
        let at: Vec<f64> = p
            .reads
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_secs_f64())
            .collect();
        assert_eq!(at, [0.5, 1.5, 3.5, 7.5, 12.5, 17.5, 22.5]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_read_is_at_the_deadline_not_a_pause_before() {
        let p = booting(None);
        let until = Instant::now() + Duration::from_secs(10);
        let e = match wait_for_address(&p, "t", until, DEFAULTS).await {
            Err(Failure::System(e)) => e,
            other => panic!("{other:?}"),
        };
        assert!(
            e.contains("no address within the ready timeout (5 reads)"),
            "{e}"
        );
        let at: Vec<f64> = p
            .reads
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_secs_f64())
            .collect();
        assert_eq!(at, [0.5, 1.5, 3.5, 7.5, 10.0]);
        // Just in time counts.
        let p = booting(Some(5));
        let until = Instant::now() + Duration::from_secs(10);
        assert!(wait_for_address(&p, "t", until, DEFAULTS).await.is_ok());
    }
}
