//! One suite of assertions every provider must pass, so the executor can treat them all alike:
//! idempotent creates, controller-scoped lists, power, rebuild, delete, billing.
//!
//! A provider's tests call [`run`] against its emulator (the fake Hetzner, moto, local), or the
//! cases one by one. Each case makes its own uniquely named instances and deletes them before it
//! asserts, so a failing case leaves nothing behind that keeps billing on a real cloud.

use crate::bootstrap::Credential;
use crate::{CreateRequest, Error, Provider};
use mayfly_core::{Billing, Instance, InstanceState, Labels, MachineSpec, Placement, Secret};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the suite needs from a provider's test: a spec the provider can create, and how long
/// state changes may take.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// This run's controller id; every instance the suite makes carries it.
    pub controller: String,
    /// Another controller's id, whose instances this controller's list must never show.
    pub other_controller: String,
    pub pool: String,
    /// At least one type and one location, all of which the provider can create.
    pub spec: MachineSpec,
    pub user_data: Secret,
    /// Handed to the rebuild, so it differs from the create's.
    pub rebuild_user_data: Secret,
    /// The labels of every create: a container provider must find a task definition for them.
    pub labels: Labels,
    /// The runner credential of every create (a well-formed JIT config that registers nowhere).
    pub credential: Credential,
    /// The longest a state change (boot, power off, delete) may take, in real time.
    pub settle: Duration,
    /// How often `get` is polled while waiting for a state.
    pub poll: Duration,
    /// The provider costs nothing (the local host): its price is 0 and a stopped instance is
    /// never billed, so the planner never keeps one. Otherwise every price must be positive.
    pub free: bool,
    /// Unique per fixture: names and controller ids of two runs never collide.
    run: String,
}

impl Fixture {
    /// A fixture with unique controller ids and names, waiting up to 30 s for each state change.
    pub fn new(spec: MachineSpec) -> Fixture {
        let run = run_id();
        Fixture {
            controller: format!("conf-{run}"),
            other_controller: format!("conf-{run}-other"),
            pool: "conformance".to_string(),
            spec,
            user_data: Secret::new(format!("#cloud-config\n# conformance {run}\n")),
            rebuild_user_data: Secret::new(format!("#cloud-config\n# conformance {run} rebuilt\n")),
            labels: Labels::new(["self-hosted", "linux"]),
            credential: Credential::Jit(Secret::new("Y29uZm9ybWFuY2U=")),
            settle: Duration::from_secs(30),
            poll: Duration::from_millis(250),
            free: false,
            run,
        }
    }

    pub fn with_labels(mut self, labels: Labels) -> Fixture {
        self.labels = labels;
        self
    }

    pub fn with_settle(mut self, settle: Duration, poll: Duration) -> Fixture {
        self.settle = settle;
        self.poll = poll;
        self
    }

    /// For a provider that bills nothing: prices must be 0, never billed while stopped.
    pub fn free(mut self) -> Fixture {
        self.free = true;
        self
    }

    /// Whether a billing is what the provider must report: positive, or nothing at all for a
    /// free provider.
    pub fn price_ok(&self, b: &Billing) -> bool {
        if self.free {
            b.price_per_hour == 0.0 && !b.billed_while_stopped
        } else {
            b.price_per_hour > 0.0 && b.price_per_hour.is_finite()
        }
    }

    /// A valid hostname, unique to this run and case.
    pub fn name(&self, case: &str) -> String {
        format!("mf-{}-{case}", self.run)
    }

    /// A create request for `case` under `controller`.
    pub fn request(&self, case: &str, controller: &str) -> CreateRequest {
        CreateRequest {
            name: self.name(case),
            controller: controller.to_string(),
            pool: self.pool.clone(),
            spec: self.spec.clone(),
            user_data: self.user_data.clone(),
            labels: self.labels.clone(),
            credential: self.credential.clone(),
        }
    }

    /// The placement of the spec's first choices, for billing.
    pub fn first_placement(&self) -> Option<Placement> {
        Some(Placement {
            machine_type: self.spec.types.first()?.clone(),
            location: self.spec.locations.first()?.clone(),
            image: self.spec.image.clone(),
        })
    }
}

/// Eight hex digits from the time, the process and a counter: unique enough across parallel
/// test processes, with no random-number dependency.
fn run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mixed = nanos
        ^ u64::from(std::process::id()).rotate_left(32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // A 64-bit finaliser (splitmix64) spreads nearby inputs apart.
    let mut z = mixed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("{:08x}", (z ^ (z >> 31)) as u32)
}

/// Runs every case in turn; panics with the case's name and what it saw on the first failure.
pub async fn run(provider: &dyn Provider, fixture: &Fixture) {
    billing_is_positive(provider, fixture).await;
    create_returns_a_placed_instance(provider, fixture).await;
    create_of_a_taken_name_is_already_exists(provider, fixture).await;
    list_shows_only_this_controller(provider, fixture).await;
    list_carries_the_pool(provider, fixture).await;
    power_off_reaches_off(provider, fixture).await;
    rebuild_brings_it_back(provider, fixture).await;
    delete_is_idempotent(provider, fixture).await;
}

type Check = Result<(), String>;

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Check {
    if ok { Ok(()) } else { Err(what()) }
}

/// Deletes what a case made, then fails the case if its checks failed: cleaning up first keeps
/// a failed run from leaking billed machines.
async fn finish(provider: &dyn Provider, case: &str, made: &[String], outcome: Check) {
    let mut leaks = Vec::new();
    for id in made {
        if let Err(e) = provider.delete(id).await {
            leaks.push(format!("{id}: {e}"));
        }
    }
    if let Err(m) = outcome {
        panic!("conformance {case} ({}): {m}", provider.kind());
    }
    assert!(
        leaks.is_empty(),
        "conformance {case} ({}): cleanup failed: {leaks:?}",
        provider.kind()
    );
}

fn provider_id(i: &Instance) -> Result<String, String> {
    i.provider_id
        .clone()
        .ok_or_else(|| format!("instance {} has no provider id", i.name))
}

/// Polls `get` until `want` holds, within the fixture's `settle`.
async fn wait_for(
    provider: &dyn Provider,
    f: &Fixture,
    id: &str,
    what: &str,
    want: impl Fn(&Result<Instance, Error>) -> bool,
) -> Result<Result<Instance, Error>, String> {
    let deadline = Instant::now() + f.settle;
    loop {
        let seen = provider.get(id).await;
        if want(&seen) {
            return Ok(seen);
        }
        if Instant::now() >= deadline {
            let now = seen.map(|i| format!("{:?}", i.state));
            return Err(format!(
                "{id} did not reach {what} within {:?}: {now:?}",
                f.settle
            ));
        }
        tokio::time::sleep(f.poll).await;
    }
}

async fn wait_state(provider: &dyn Provider, f: &Fixture, id: &str, want: InstanceState) -> Check {
    wait_for(provider, f, id, &format!("{want:?}"), |s| {
        s.as_ref().is_ok_and(|i| i.state == want)
    })
    .await
    .map(|_| ())
}

/// Repeats an action while the instance is locked by another one (a boot still finishing),
/// within `settle`.
async fn unlocked<F, Fut>(f: &Fixture, what: &str, mut action: F) -> Check
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let deadline = Instant::now() + f.settle;
    loop {
        match action().await {
            Ok(()) => return Ok(()),
            Err(Error::Locked) if Instant::now() < deadline => tokio::time::sleep(f.poll).await,
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
}

/// The price the provider reports for the spec's first placement is a positive number (zero,
/// never billed while stopped, for a free provider).
pub async fn billing_is_positive(provider: &dyn Provider, f: &Fixture) {
    let placement = f
        .first_placement()
        .expect("the fixture's spec needs a type and a location");
    let b = provider
        .billing(&placement)
        .await
        .unwrap_or_else(|e| panic!("conformance billing ({}): {e}", provider.kind()));
    assert!(
        f.price_ok(&b),
        "conformance billing ({}): price {} (billed while stopped: {}) for {placement:?}",
        provider.kind(),
        b.price_per_hour,
        b.billed_while_stopped
    );
}

/// A create answers with the instance as made: provider id, the controller and pool tags, a
/// placement out of the spec's choices with the spec's image, and a positive price.
pub async fn create_returns_a_placed_instance(provider: &dyn Provider, f: &Fixture) {
    let req = f.request("create", &f.controller);
    let mut made = Vec::new();
    let outcome = async {
        let (i, _) = created(provider, &req, &mut made).await?;
        ensure(i.name == req.name, || format!("name {:?}", i.name))?;
        ensure(
            i.controller.as_deref() == Some(f.controller.as_str()),
            || format!("controller {:?}", i.controller),
        )?;
        ensure(i.pool == f.pool, || format!("pool {:?}", i.pool))?;
        ensure(
            matches!(i.state, InstanceState::Starting | InstanceState::Running),
            || format!("state {:?} right after create", i.state),
        )?;
        let p = i.placement.as_ref().ok_or("no placement")?;
        ensure(f.spec.types.contains(&p.machine_type), || {
            format!("type {:?} is not in the spec", p.machine_type)
        })?;
        ensure(
            f.spec.locations.is_empty() || f.spec.locations.contains(&p.location),
            || format!("location {:?} is not in the spec", p.location),
        )?;
        ensure(p.image == f.spec.image, || format!("image {:?}", p.image))?;
        let b = i.billing.as_ref().ok_or("no billing")?;
        ensure(f.price_ok(b), || format!("price {}", b.price_per_hour))
    }
    .await;
    finish(provider, "create", &made, outcome).await;
}

/// A second create of the same name answers `AlreadyExists`, and only one instance exists.
pub async fn create_of_a_taken_name_is_already_exists(provider: &dyn Provider, f: &Fixture) {
    let req = f.request("twice", &f.controller);
    let mut made = Vec::new();
    let outcome = async {
        created(provider, &req, &mut made).await?;
        match provider.create(&req).await {
            Err(Error::AlreadyExists) => {}
            Ok(i) => {
                made.extend(i.provider_id.clone());
                return Err("the second create made another instance".into());
            }
            Err(e) => return Err(format!("second create: {e}, wanted AlreadyExists")),
        }
        let listed = provider
            .list(&f.controller)
            .await
            .map_err(|e| format!("list: {e}"))?;
        let n = listed.iter().filter(|i| i.name == req.name).count();
        ensure(n == 1, || {
            format!("{n} instances named {} listed", req.name)
        })
    }
    .await;
    finish(provider, "create-twice", &made, outcome).await;
}

/// The list of a controller shows its instances and never another controller's.
pub async fn list_shows_only_this_controller(provider: &dyn Provider, f: &Fixture) {
    let mut made = Vec::new();
    let outcome = async {
        let (mine, _) = created(provider, &f.request("mine", &f.controller), &mut made).await?;
        let theirs = provider
            .create(&f.request("theirs", &f.other_controller))
            .await
            .map_err(|e| format!("create for the other controller: {e}"))?;
        made.push(provider_id(&theirs)?);
        for (controller, want, not) in [
            (&f.controller, &mine, &theirs),
            (&f.other_controller, &theirs, &mine),
        ] {
            let listed = provider
                .list(controller)
                .await
                .map_err(|e| format!("list: {e}"))?;
            ensure(listed.iter().any(|i| i.name == want.name), || {
                format!("{} missing from the list of {controller}", want.name)
            })?;
            ensure(!listed.iter().any(|i| i.name == not.name), || {
                format!("{} listed for {controller}", not.name)
            })?;
            ensure(
                listed
                    .iter()
                    .all(|i| i.controller.as_deref() == Some(controller.as_str())),
                || format!("an instance without the tag of {controller} was listed"),
            )?;
        }
        Ok(())
    }
    .await;
    finish(provider, "list-scoped", &made, outcome).await;
}

/// Creates, and notes the instance for the clean-up whatever the case's outcome.
async fn created(
    provider: &dyn Provider,
    req: &CreateRequest,
    made: &mut Vec<String>,
) -> Result<(Instance, String), String> {
    let i = provider
        .create(req)
        .await
        .map_err(|e| format!("create: {e}"))?;
    let id = provider_id(&i)?;
    made.push(id.clone());
    Ok((i, id))
}

/// A listed instance carries its pool, provider id, placement and price, and leaves the
/// store's fields (labels, job, run) empty.
pub async fn list_carries_the_pool(provider: &dyn Provider, f: &Fixture) {
    let req = f.request("pool", &f.controller);
    let mut made = Vec::new();
    let outcome = async {
        let (i, id) = created(provider, &req, &mut made).await?;
        let listed = provider
            .list(&f.controller)
            .await
            .map_err(|e| format!("list: {e}"))?;
        let l = listed
            .iter()
            .find(|l| l.name == req.name)
            .ok_or("the instance is not listed")?;
        ensure(l.pool == f.pool, || format!("pool {:?}", l.pool))?;
        ensure(l.provider_id.as_deref() == Some(id.as_str()), || {
            format!("provider id {:?}", l.provider_id)
        })?;
        ensure(l.placement == i.placement, || {
            format!(
                "placement {:?} listed, {:?} created",
                l.placement, i.placement
            )
        })?;
        ensure(l.billing.as_ref().is_some_and(|b| f.price_ok(b)), || {
            format!("billing {:?}", l.billing)
        })?;
        ensure(l.job.is_none() && l.run_id.is_none(), || {
            "job or run set".into()
        })
    }
    .await;
    finish(provider, "list-pool", &made, outcome).await;
}

/// Power off reaches `Off` once the instance has booted. A provider whose instances cannot be
/// stopped (a container) answers `Unsupported` and leaves it running.
pub async fn power_off_reaches_off(provider: &dyn Provider, f: &Fixture) {
    let mut made = Vec::new();
    let outcome = async {
        let (_, id) = created(provider, &f.request("off", &f.controller), &mut made).await?;
        wait_state(provider, f, &id, InstanceState::Running).await?;
        match provider.power_off(&id).await {
            Err(Error::Unsupported { .. }) => {
                return wait_state(provider, f, &id, InstanceState::Running).await;
            }
            Err(Error::Locked) => unlocked(f, "power off", || provider.power_off(&id)).await?,
            Err(e) => return Err(format!("power off: {e}")),
            Ok(()) => {}
        }
        wait_state(provider, f, &id, InstanceState::Off).await
    }
    .await;
    finish(provider, "power-off", &made, outcome).await;
}

/// A powered-off instance rebuilt with new user data boots again: how a paid-for machine is
/// reused for the next job. A provider without rebuild says so with `Unsupported` (and leaves
/// the instance as it was), never with a failure the executor would retry.
pub async fn rebuild_brings_it_back(provider: &dyn Provider, f: &Fixture) {
    let mut made = Vec::new();
    let outcome = async {
        let (_, id) = created(provider, &f.request("rebuild", &f.controller), &mut made).await?;
        wait_state(provider, f, &id, InstanceState::Running).await?;
        if let Err(Error::Unsupported { .. }) = provider.power_off(&id).await {
            // Nothing to power off is nothing to rebuild either (a container).
            return match provider
                .rebuild(&id, &f.spec.image, &f.rebuild_user_data)
                .await
            {
                Err(Error::Unsupported { .. }) => Ok(()),
                other => Err(format!("rebuild without power off: {other:?}")),
            };
        }
        unlocked(f, "power off", || provider.power_off(&id)).await?;
        wait_state(provider, f, &id, InstanceState::Off).await?;
        match provider
            .rebuild(&id, &f.spec.image, &f.rebuild_user_data)
            .await
        {
            Err(Error::Unsupported { .. }) => {
                return wait_state(provider, f, &id, InstanceState::Off).await;
            }
            Err(Error::Locked) => {
                unlocked(f, "rebuild", || {
                    provider.rebuild(&id, &f.spec.image, &f.rebuild_user_data)
                })
                .await?
            }
            Err(e) => return Err(format!("rebuild: {e}")),
            Ok(()) => {}
        }
        wait_state(provider, f, &id, InstanceState::Running).await?;
        let after = provider.get(&id).await.map_err(|e| format!("get: {e}"))?;
        ensure(
            after
                .placement
                .as_ref()
                .is_some_and(|p| p.image == f.spec.image),
            || format!("image after the rebuild: {:?}", after.placement),
        )
    }
    .await;
    finish(provider, "rebuild", &made, outcome).await;
}

/// Delete works, a second delete is `Ok`, and the instance is then gone from `get` and `list`.
pub async fn delete_is_idempotent(provider: &dyn Provider, f: &Fixture) {
    let req = f.request("delete", &f.controller);
    let mut made = Vec::new();
    let outcome = async {
        let (_, id) = created(provider, &req, &mut made).await?;
        provider
            .delete(&id)
            .await
            .map_err(|e| format!("delete: {e}"))?;
        provider
            .delete(&id)
            .await
            .map_err(|e| format!("second delete: {e}"))?;
        let _gone = wait_for(provider, f, &id, "NotFound", |s| {
            matches!(s, Err(Error::NotFound))
        })
        .await?;
        let listed = provider
            .list(&f.controller)
            .await
            .map_err(|e| format!("list: {e}"))?;
        ensure(!listed.iter().any(|l| l.name == req.name), || {
            "a deleted instance is still listed".into()
        })
    }
    .await;
    finish(provider, "delete", &made, outcome).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_hostnames() {
        let spec: MachineSpec = MachineSpec {
            types: vec!["t".into()],
            locations: vec!["l".into()],
            image: "x86:system:ubuntu-24.04".parse().unwrap(),
        };
        let (a, b) = (Fixture::new(spec.clone()), Fixture::new(spec));
        assert_ne!(a.name("x"), b.name("x"));
        assert_ne!(a.controller, b.controller);
        let n = a.name("create-twice");
        assert!(
            n.len() <= 63
                && n.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        );
    }
}
