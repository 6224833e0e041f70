//! Carries out a plan: deletes first (stop paying), then reuses and creates (serve jobs), at
//! most `workers` at a time. Every step is safe to repeat; an intent is written before a create.

use super::runners::Runners;
use super::snapshot::Seen;
use super::writes::{Halt, Stop, Writer};
use crate::metrics::record;
use mayfly_core::forge::ScopeId;
use mayfly_core::{
    Action, Clock, Instance, InstanceState, JobKey, JobStatus, Labels, MachineSpec, Pools, Time,
};
use mayfly_forge::ForgeError;
use mayfly_provider::bootstrap::{self, BootstrapConfig, Credential};
use mayfly_provider::{CreateRequest, Error as ProviderError, Provider};
use mayfly_store::{Intent, IntentState, NewEvent, Store};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

/// What a pass needs to act, shared by the concurrent steps.
pub struct Ctx {
    pub store: Store,
    pub providers: BTreeMap<String, Arc<dyn Provider>>,
    pub runners: Runners,
    pub bootstrap: BootstrapConfig,
    pub pools: Pools,
    pub clock: Arc<dyn Clock>,
    /// A job whose last news is older than this is confirmed with the forge before a machine
    /// is made or reused for it.
    pub confirm_stale: std::time::Duration,
    /// Whether this replica leads, when replicas share the store; `None`: it writes alone.
    pub leadership: std::sync::OnceLock<tokio::sync::watch::Receiver<crate::leader::Leadership>>,
    /// Set by a shutdown: steps not yet started are skipped.
    pub halt: Halt,
    /// See [`super::Tuning::runners_max_age`].
    pub runners_max_age: std::time::Duration,
}

impl Ctx {
    /// The intent writes of a pass starting now (see [`Writer`]).
    pub fn writer(&self) -> Writer {
        Writer::now(&self.store, self.leadership.get())
    }
}

/// What one step came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Reused,
    Deleted,
    RunnerRemoved,
    IntentDropped,
    /// Not done this pass, for a reason that is no failure (a runner took a job meanwhile).
    Skipped(String),
    Failed(String),
}

/// The counts of one execution, for logs and the pass report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Executed {
    pub created: u32,
    pub reused: u32,
    pub deleted: u32,
    pub runners_removed: u32,
    pub intents_dropped: u32,
    pub skipped: u32,
    pub failed: u32,
    /// Instances booted again by reuse: their registration deadline starts over.
    pub restarted: Vec<String>,
    /// Names whose registrations in the last runner lists this pass made outdated: a machine
    /// rebuilt (its runner will be a new one) or deleted, a runner removed.
    pub outdated: Vec<String>,
    /// Providers that answered "quota reached" this pass.
    pub quota: Vec<String>,
    /// Jobs the forge said are no longer queued when a machine was about to be made or reused
    /// for them: the store was behind, and the next plan may give that machine to another job.
    pub stale_jobs: u32,
    /// What this pass learned will be refused again (see `refusals`).
    pub refused: mayfly_core::Refused,
    /// Pool specs a create succeeded with this pass: any refusal of them is over.
    pub accepted: Vec<(String, MachineSpec)>,
    /// Why the pass stopped before all its steps ran (a shutdown, a lost lease).
    pub stopped: Option<String>,
}

impl Outcome {
    /// The `outcome` label of the step's metric.
    fn step(&self) -> record::Step {
        match self {
            Outcome::Skipped(_) => record::Step::Skipped,
            Outcome::Failed(_) => record::Step::Failed,
            _ => record::Step::Ok,
        }
    }
}

impl Executed {
    fn count(&mut self, subject: &str, outcome: &Outcome) {
        match outcome {
            Outcome::Created => self.created += 1,
            Outcome::Reused => {
                self.reused += 1;
                self.restarted.push(subject.to_string());
                self.outdated.push(subject.to_string());
            }
            Outcome::Deleted => {
                self.deleted += 1;
                self.outdated.push(subject.to_string());
            }
            Outcome::RunnerRemoved => {
                self.runners_removed += 1;
                self.outdated.push(subject.to_string());
            }
            Outcome::IntentDropped => self.intents_dropped += 1,
            Outcome::Skipped(_) => self.skipped += 1,
            Outcome::Failed(_) => self.failed += 1,
        }
    }
}

/// Per-pass state the concurrent steps share.
struct Pass {
    ctx: Arc<Ctx>,
    /// The pass's intent writes, under the fence it started with.
    writer: Writer,
    /// Whether steps may still start.
    stop: Stop,
    /// Instance name → provider name.
    provider_of: HashMap<String, String>,
    scope_of: HashMap<u64, ScopeId>,
    /// Runners the lists showed running a job.
    working: HashSet<u64>,
    /// The instances of the snapshot, by name (placement for a reuse, candidates to free).
    instances: HashMap<String, Instance>,
    /// Job attempts, for a reuse's intent.
    attempts: HashMap<JobKey, u32>,
    /// Jobs that had a machine made for them before: a second one is made (or a kept one
    /// reused) only after the forge confirms the job still waits (the store may not have heard
    /// that it started).
    retries: HashSet<JobKey>,
    /// When the store last learned something of each job.
    news: HashMap<JobKey, Time>,
    /// Jobs found not queued any more at the forge, this pass.
    stale: std::sync::atomic::AtomicU32,
    /// Refusals learned this pass.
    refused: Mutex<mayfly_core::Refused>,
    /// Pool specs a create succeeded with this pass.
    accepted: Mutex<Vec<(String, MachineSpec)>>,
    /// Providers at their quota: no more creates there this pass.
    quota: Mutex<HashSet<String>>,
    /// Instances a step has claimed this pass (reused, or freed for quota).
    claimed: Mutex<HashSet<String>>,
}

/// Whether the snapshot holds a create intent with no machine behind it (see [`stranded`]).
pub fn has_stranded(seen: &Seen) -> bool {
    seen.snapshot.instances.iter().any(is_stranded)
}

/// A pending intent the provider did not list: the join puts it in the snapshot as an instance
/// in state `Pending` without a provider id.
fn is_stranded(i: &Instance) -> bool {
    i.state == InstanceState::Pending && i.provider_id.is_none()
}

/// Creates whose intent was recorded but whose machine the provider does not list, that the
/// plan keeps (does not drop): a create cut short by a crash or a kill between the intent and
/// the cloud's answer, or one that failed without an answer. Passes run one at a time and each
/// waits for its steps, so no create of this process is in flight while a pass runs: such an
/// intent has no machine, and none is on its way.
///
/// The planner counts each as a machine on its way (it stands in for its job and takes its
/// place under the limits), so without this the job waited for the registration deadline,
/// and any job GitHub handed to another runner meanwhile was left with no machine at all until
/// then. Carrying the create out under the same name is safe: the name is the idempotency key
/// (the cloud answers "name taken" if the machine exists after all).
async fn stranded(ctx: &Ctx, seen: &Seen, actions: &[Action]) -> Vec<Intent> {
    let dropped: HashSet<&str> = actions
        .iter()
        .filter_map(|a| match a {
            Action::DropIntent { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let names: HashSet<&str> = seen
        .snapshot
        .instances
        .iter()
        .filter(|i| is_stranded(i) && !dropped.contains(i.name.as_str()))
        .map(|i| i.name.as_str())
        .collect();
    if names.is_empty() {
        return Vec::new();
    }
    match ctx.store.intents_in_state(&[IntentState::Pending]).await {
        Ok(intents) => intents
            .into_iter()
            .filter(|i| names.contains(i.name.as_str()))
            .collect(),
        Err(e) => {
            warn!(error = %e, "cannot read the pending intents: creates cut short wait a pass");
            Vec::new()
        }
    }
}

/// A spec in a few words, for a refusal's reason: `cx23 or cx33 in fsn1, image x86:system:…`.
fn describe(spec: &MachineSpec) -> String {
    let types = if spec.types.is_empty() {
        "any type".to_string()
    } else {
        spec.types.join(" or ")
    };
    let places = if spec.locations.is_empty() {
        String::new()
    } else {
        format!(" in {}", spec.locations.join(" or "))
    };
    format!("{types}{places}, image {}", spec.image)
}

/// Why a machine's start-up could not be prepared.
enum BootstrapError {
    /// The forge refuses to register a runner there (no such repository, no right to it):
    /// asking again unchanged gets the same answer.
    Refused(String),
    Failed(String),
}

/// Whether the forge's answer to a runner registration says that the scope itself is wrong (a
/// repository that does not exist or is not ours to register in), not that the call failed.
fn refuses_the_scope(e: &ForgeError) -> bool {
    match e {
        ForgeError::NotFound { .. } | ForgeError::NotServed { .. } => true,
        ForgeError::Refused { status, .. } => matches!(*status, 403 | 404 | 422),
        _ => false,
    }
}

/// One step of an execution: an action of the plan, or a create cut short to carry out.
enum Step {
    Act(Action),
    Resume(Intent),
}

pub async fn execute(
    ctx: Arc<Ctx>,
    writer: Writer,
    actions: Vec<Action>,
    seen: Seen,
    workers: usize,
) -> Executed {
    let now = ctx.clock.now();
    let resumes = stranded(&ctx, &seen, &actions).await;
    let pass = Arc::new(Pass::new(ctx, writer, seen, &actions));
    let (stop, serve): (Vec<Action>, Vec<Action>) = actions.into_iter().partition(|a| {
        matches!(
            a,
            Action::Delete { .. } | Action::RemoveRunner { .. } | Action::DropIntent { .. }
        )
    });
    let mut done = Executed::default();
    // Creates cut short were decided before anything of this plan: they go first.
    let serve: Vec<Step> = resumes
        .into_iter()
        .map(Step::Resume)
        .chain(serve.into_iter().map(Step::Act))
        .collect();
    let stop: Vec<Step> = stop.into_iter().map(Step::Act).collect();
    for batch in [stop, serve] {
        let limit = Arc::new(Semaphore::new(workers.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for step in batch {
            let pass = pass.clone();
            let limit = limit.clone();
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                // A safe point: nothing of this step has happened yet.
                if let Some(why) = pass.stop.why() {
                    let subject = match &step {
                        Step::Act(action) => action.subject().to_string(),
                        Step::Resume(intent) => intent.name.clone(),
                    };
                    return (subject, Outcome::Skipped(format!("not started: {why}")));
                }
                match step {
                    Step::Act(action) => {
                        let subject = action.subject().to_string();
                        let outcome = pass.step(&action, now).await;
                        pass.log(&action, &outcome, now).await;
                        pass.measure(&action, &outcome);
                        (subject, outcome)
                    }
                    Step::Resume(intent) => {
                        let subject = intent.name.clone();
                        let (pool, provider) = (intent.pool.clone(), intent.provider.clone());
                        let outcome = pass.resume(intent, now).await;
                        record::create(&pool, &provider, outcome.step());
                        (subject, outcome)
                    }
                }
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((subject, outcome)) => done.count(&subject, &outcome),
                Err(e) => {
                    warn!(error = %e, "an executor step panicked or was cancelled");
                    done.failed += 1;
                }
            }
        }
    }
    let quota = pass.quota.lock().unwrap_or_else(|e| e.into_inner());
    done.quota = quota.iter().cloned().collect();
    done.stale_jobs = pass.stale.load(std::sync::atomic::Ordering::Relaxed);
    done.refused = std::mem::take(&mut *pass.refused.lock().unwrap_or_else(|e| e.into_inner()));
    done.accepted = std::mem::take(&mut *pass.accepted.lock().unwrap_or_else(|e| e.into_inner()));
    done.stopped = pass.stop.why();
    done
}

/// Carries out one action outside a pass (a delete asked for by a person) with the same steps,
/// log lines and event a pass would: the caller holds the pass turn and read `seen` for it.
pub async fn one(ctx: Arc<Ctx>, writer: Writer, action: Action, seen: Seen) -> Outcome {
    let now = ctx.clock.now();
    let pass = Pass::new(ctx, writer, seen, std::slice::from_ref(&action));
    let outcome = pass.step(&action, now).await;
    pass.log(&action, &outcome, now).await;
    outcome
}

impl Pass {
    fn new(ctx: Arc<Ctx>, writer: Writer, seen: Seen, actions: &[Action]) -> Pass {
        let claimed: HashSet<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Reuse { instance, .. } | Action::Delete { instance, .. } => {
                    Some(instance.clone())
                }
                _ => None,
            })
            .collect();
        let stop = Stop::new(ctx.halt.clone(), ctx.leadership.get().cloned());
        Pass {
            ctx,
            writer,
            stop,
            provider_of: seen.provider_of,
            scope_of: seen.scope_of,
            working: seen
                .snapshot
                .runners
                .iter()
                .filter(|r| r.busy)
                .map(|r| r.id)
                .collect(),
            attempts: seen
                .snapshot
                .jobs
                .iter()
                .map(|j| (j.key.clone(), j.attempt))
                .collect(),
            retries: seen
                .snapshot
                .jobs
                .iter()
                .filter(|j| j.instances_created > 0)
                .map(|j| j.key.clone())
                .collect(),
            instances: seen
                .snapshot
                .instances
                .into_iter()
                .map(|i| (i.name.clone(), i))
                .collect(),
            news: seen.news,
            stale: std::sync::atomic::AtomicU32::new(0),
            refused: Mutex::new(mayfly_core::Refused::default()),
            accepted: Mutex::new(Vec::new()),
            quota: Mutex::new(HashSet::new()),
            claimed: Mutex::new(claimed),
        }
    }

    async fn step(&self, action: &Action, now: Time) -> Outcome {
        match action {
            Action::Delete {
                instance,
                provider_id,
                runner_id,
                ..
            } => {
                self.delete(instance, provider_id.as_deref(), *runner_id, now)
                    .await
            }
            Action::RemoveRunner { runner_id, .. } => match self.scope_of.get(runner_id) {
                Some(scope) => match self.ctx.runners.remove(scope, *runner_id).await {
                    Ok(()) => Outcome::RunnerRemoved,
                    Err(e) if e.is_busy() => Outcome::Skipped("the runner took a job".into()),
                    Err(e) => Outcome::Failed(e.to_string()),
                },
                None => Outcome::Failed("the runner's scope is unknown".into()),
            },
            Action::DropIntent { name, .. } => match self.writer.remove_intent(name).await {
                Ok(_) => Outcome::IntentDropped,
                Err(e) => {
                    self.stop.saw(&e);
                    Outcome::Failed(e.to_string())
                }
            },
            Action::Reuse {
                instance,
                provider_id,
                labels,
                job,
                run_id,
                ..
            } => {
                self.reuse(
                    instance,
                    provider_id.as_deref(),
                    labels,
                    job.as_ref(),
                    *run_id,
                    now,
                )
                .await
            }
            Action::Create {
                name,
                pool,
                provider,
                spec,
                labels,
                job,
                attempt,
                run_id,
                ..
            } => {
                let intent = Intent {
                    name: name.clone(),
                    pool: pool.clone(),
                    provider: provider.clone(),
                    job: job.clone(),
                    attempt: *attempt,
                    run_id: *run_id,
                    labels: labels.clone(),
                    spec: (**spec).clone(),
                    created_at: now,
                    state: IntentState::Pending,
                    provider_id: None,
                    updated_at: now,
                };
                self.create(intent, now).await
            }
        }
    }

    /// Counts a create, reuse or delete under its pool, provider (and reason) and outcome.
    fn measure(&self, action: &Action, outcome: &Outcome) {
        let provider_of =
            |instance: &str| self.provider_of.get(instance).map_or("", |p| p.as_str());
        match action {
            Action::Create { pool, provider, .. } => record::create(pool, provider, outcome.step()),
            Action::Reuse { instance, pool, .. } => {
                record::reuse(pool, provider_of(instance), outcome.step())
            }
            Action::Delete {
                instance, reason, ..
            } => {
                let pool = self.instances.get(instance).map_or("", |i| i.pool.as_str());
                record::delete(pool, provider_of(instance), reason.kind(), outcome.step())
            }
            Action::RemoveRunner { .. } | Action::DropIntent { .. } => {}
        }
    }

    fn provider(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.ctx.providers.get(name)
    }

    fn provider_of(&self, instance: &str) -> Option<&Arc<dyn Provider>> {
        self.provider_of
            .get(instance)
            .and_then(|p| self.provider(p))
    }

    /// Deregisters the runner (a busy one stops everything: its job runs), then deletes.
    async fn delete(
        &self,
        instance: &str,
        provider_id: Option<&str>,
        runner_id: Option<u64>,
        now: Time,
    ) -> Outcome {
        if let Err(e) = self.writer.check(&format!("delete {instance}")).await {
            self.stop.saw(&e);
            return Outcome::Skipped(format!("not deleted: {e}"));
        }
        let known = self.instances.get(instance);
        let off = known.is_some_and(|i| i.state == InstanceState::Off);
        let removed = match runner_id.and_then(|id| Some((id, self.scope_of.get(&id)?))) {
            // A single-use runner the lists showed at work, on a machine now off, has run its
            // job: a forge that removes used runners itself (GitHub: the service removes an
            // ephemeral runner's registration after its one job) has removed it already, and a
            // delete would only be told 404.
            Some((id, scope))
                if off
                    && self.working.contains(&id)
                    && !self.ctx.runners.keeps_used_runners(scope) =>
            {
                Ok(())
            }
            // A machine that is off runs nothing: its runner goes without a busy check.
            Some((id, scope)) if off => {
                self.ctx
                    .runners
                    .remove_stopped(scope, Some(id), instance)
                    .await
            }
            Some((id, scope)) => self.ctx.runners.remove(scope, id).await,
            // A machine that is up and whose runner the lists did not show (registered since,
            // or in a scope mayfly does not list): deregistered by name first, so a job running
            // there is never cut off without the forge knowing. A machine that is off runs
            // nothing, but where the forge keeps a used runner's record (GitLab) the record
            // goes with its machine.
            None => match known {
                Some(inst) => {
                    let up = matches!(inst.state, InstanceState::Starting | InstanceState::Running);
                    let standby = self.standby_forge(&inst.pool);
                    match self.ctx.runners.scope_for(inst.job.as_ref(), standby) {
                        Some(scope) if up => {
                            self.ctx.runners.remove_by_name(&scope, instance).await
                        }
                        Some(scope) if off && self.ctx.runners.keeps_used_runners(&scope) => {
                            self.ctx
                                .runners
                                .remove_stopped(&scope, None, instance)
                                .await
                        }
                        _ => Ok(()),
                    }
                }
                None => Ok(()),
            },
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.is_busy() => {
                return Outcome::Skipped("its runner took a job: kept".into());
            }
            Err(e) => return Outcome::Failed(format!("deregister the runner: {e}")),
        }
        let Some(provider) = self.provider_of(instance) else {
            return Outcome::Failed("its provider is not configured".into());
        };
        if let Some(id) = provider_id
            && let Err(e) = provider.delete(id).await
        {
            return Outcome::Failed(e.to_string());
        }
        if let Err(e) = self
            .writer
            .set_intent_state(instance, IntentState::Deleted, None, now)
            .await
        {
            self.stop.saw(&e);
            warn!(instance, error = %e, "deleted, but the intent was not updated");
        }
        Outcome::Deleted
    }

    /// Intent first, then a runner credential, then the machine. A create that may have
    /// happened (no answer) leaves the intent pending: the next pass finds the machine in the
    /// provider's list, or carries the create out again under the same name (`resume`).
    async fn create(&self, intent: Intent, now: Time) -> Outcome {
        if self.at_quota(&intent.provider) {
            return Outcome::Skipped(format!("provider {} is at its quota", intent.provider));
        }
        let Some(provider) = self.provider(&intent.provider).cloned() else {
            return Outcome::Failed(format!("provider {} is not configured", intent.provider));
        };
        if let Some(key) = &intent.job
            && let Some(skip) = self.not_queued_any_more(key, now).await
        {
            return skip;
        }
        // A safe point: the forge was asked, nothing was written.
        if let Some(why) = self.stop.why() {
            return Outcome::Skipped(format!("not started: {why}"));
        }
        match self.writer.record_intent(&intent).await {
            Ok(true) => {}
            Ok(false) => return Outcome::Skipped("its intent exists: created before".into()),
            Err(e) => {
                self.stop.saw(&e);
                return Outcome::Failed(format!("record the intent: {e}"));
            }
        }
        self.make(intent, provider, now).await
    }

    /// Carries out a create whose intent an earlier pass (or an earlier process, killed before
    /// the cloud answered) recorded, and whose machine the provider does not list: under the
    /// intent's name, with a new runner credential (the old one, if any, is replaced).
    async fn resume(&self, intent: Intent, now: Time) -> Outcome {
        let name = intent.name.clone();
        let outcome = if self.at_quota(&intent.provider) {
            Outcome::Skipped(format!("provider {} is at its quota", intent.provider))
        } else {
            match self.provider(&intent.provider).cloned() {
                Some(provider) => self.make(intent, provider, now).await,
                None => Outcome::Failed(format!("provider {} is not configured", intent.provider)),
            }
        };
        match &outcome {
            Outcome::Failed(why) => {
                warn!(instance = %name, error = %why, "resuming a create failed")
            }
            Outcome::Skipped(why) => {
                info!(instance = %name, why = %why, "resuming a create skipped")
            }
            _ => info!(instance = %name, "resumed a create cut short"),
        }
        self.event(
            now,
            "create",
            &name,
            &format!("resumed a create cut short: {outcome:?}"),
        )
        .await;
        outcome
    }

    /// Proves the lease before a create's forge and cloud calls, which come after its intent
    /// write: a leader paused since then must not register a runner or make a machine under a
    /// name another leader may be serving now. `None` when it may go on. What it registered is
    /// left alone: the name is the new leader's now.
    async fn still_leading(&self, name: &str) -> Option<Outcome> {
        let e = self.writer.check(&format!("create {name}")).await.err()?;
        self.stop.saw(&e);
        Some(Outcome::Skipped(format!("not created: {e}")))
    }

    /// The forge a runner of `pool` made for no job registers with.
    fn standby_forge(&self, pool: &str) -> mayfly_core::ForgeKind {
        self.ctx.pools.standby_forge(pool)
    }

    /// The runner credential, then the machine, for a recorded intent; settles the intent.
    async fn make(&self, intent: Intent, provider: Arc<dyn Provider>, now: Time) -> Outcome {
        let name = intent.name.clone();
        let Some(scope) = self
            .ctx
            .runners
            .scope_for(intent.job.as_ref(), self.standby_forge(&intent.pool))
        else {
            let why = match &intent.job {
                Some(job) => format!(
                    "{} is not a repository a runner can register in",
                    crate::escape::text(&job.scope)
                ),
                None => "no repository configured for standby runners".to_string(),
            };
            self.refuse_job(intent.job.as_ref(), &why);
            return self.fail(&name, &why, now).await;
        };
        if let Some(skip) = self.still_leading(&name).await {
            return skip;
        }
        let (credential, user_data) = match self
            .bootstrap(&scope, &name, &intent.labels, &intent.spec)
            .await
        {
            Ok(u) => u,
            Err(BootstrapError::Refused(e)) => {
                self.refuse_job(intent.job.as_ref(), &e);
                return self.fail(&name, &e, now).await;
            }
            Err(BootstrapError::Failed(e)) => return self.fail(&name, &e, now).await,
        };
        // A safe point: the intent is kept, pending; the next pass (of whoever leads then)
        // carries the create out under the same name (`stranded`).
        if let Some(why) = self.stop.why() {
            self.unregister(&scope, &name).await;
            return Outcome::Skipped(format!("create left to the next pass: {why}"));
        }
        if let Some(skip) = self.still_leading(&name).await {
            return skip;
        }
        let request = CreateRequest {
            name: name.clone(),
            controller: self.ctx.pools.controller.clone(),
            pool: intent.pool.clone(),
            spec: intent.spec.clone(),
            user_data,
            labels: intent.labels.clone(),
            credential,
        };
        match provider.create(&request).await {
            Ok(inst) => {
                self.accepted
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((intent.pool.clone(), intent.spec.clone()));
                self.settle(
                    &name,
                    IntentState::Created,
                    inst.provider_id.as_deref(),
                    now,
                )
                .await;
                Outcome::Created
            }
            Err(ProviderError::AlreadyExists) => {
                self.settle(&name, IntentState::Created, None, now).await;
                Outcome::Created
            }
            Err(e @ ProviderError::Quota { .. }) => {
                self.quota_reached(&intent.provider, &e, now).await;
                self.unregister(&scope, &name).await;
                self.fail(&name, &e.to_string(), now).await
            }
            Err(e @ (ProviderError::Transport(_) | ProviderError::Api { .. }))
                if e.is_transient() =>
            {
                // No answer: the machine may exist. The intent stays pending and counts.
                Outcome::Failed(format!("{e} (the next pass checks whether it exists)"))
            }
            Err(ProviderError::Invalid { message }) => {
                // The spec itself is refused (an unknown type, image or location): the same
                // create would be refused again, for this job and every other of the pool.
                self.unregister(&scope, &name).await;
                self.refused
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .specs
                    .push(mayfly_core::RefusedSpec {
                        pool: intent.pool.clone(),
                        spec: intent.spec.clone(),
                        reason: format!(
                            "provider {} refused {}: {message}",
                            intent.provider,
                            describe(&intent.spec)
                        ),
                        probe: false,
                    });
                self.fail(&name, &format!("invalid request: {message}"), now)
                    .await
            }
            Err(e) => {
                self.unregister(&scope, &name).await;
                self.fail(&name, &e.to_string(), now).await
            }
        }
    }

    /// Records that `job` cannot be served (its runner cannot be registered), so the planner
    /// leaves it alone until the slow retry.
    fn refuse_job(&self, job: Option<&JobKey>, why: &str) {
        if let Some(job) = job {
            self.refused
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .jobs
                .push(mayfly_core::RefusedJob {
                    job: job.clone(),
                    reason: why.to_string(),
                });
        }
    }

    /// Before a machine is made or reused for `key`: the forge's word on the job when the store
    /// may be behind (the job had a machine before, or its last news is old), and a skip if the
    /// job is not queued any more. A fresh job is not asked about: that would cost a call per
    /// job for nothing.
    async fn not_queued_any_more(&self, key: &JobKey, now: Time) -> Option<Outcome> {
        let stale = self
            .news
            .get(key)
            .is_some_and(|t| now.since(*t) > self.ctx.confirm_stale);
        if !(self.retries.contains(key) || stale) {
            return None;
        }
        let status = self.started_meanwhile(key, now).await?;
        self.stale
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(Outcome::Skipped(format!(
            "job {key} is {status:?} at the forge: no machine for it"
        )))
    }

    /// GitHub's status of a job the store holds as queued, when it is not queued any more.
    async fn started_meanwhile(&self, key: &JobKey, now: Time) -> Option<JobStatus> {
        let record = self.ctx.store.job(key).await.ok()??;
        let forge = self.ctx.runners.forge(key.forge)?;
        match crate::demand::confirm_job(forge.as_ref(), &self.ctx.store, &record, now).await {
            Ok(c) if c.status != JobStatus::Queued => Some(c.status),
            Ok(_) => None,
            Err(e) => {
                debug!(job = %key, error = %e, "cannot confirm the job: creating anyway");
                None
            }
        }
    }

    /// A kept machine, rebuilt with a new runner credential for its next job.
    async fn reuse(
        &self,
        instance: &str,
        provider_id: Option<&str>,
        labels: &Labels,
        job: Option<&JobKey>,
        run_id: Option<u64>,
        now: Time,
    ) -> Outcome {
        let (Some(provider), Some(id)) = (self.provider_of(instance), provider_id) else {
            return Outcome::Failed("its provider or id is unknown".into());
        };
        let Some(known) = self.instances.get(instance) else {
            return Outcome::Failed("not in the snapshot".into());
        };
        if let Some(key) = job
            && let Some(skip) = self.not_queued_any_more(key, now).await
        {
            return skip;
        }
        let spec = match &known.placement {
            Some(p) => MachineSpec {
                types: vec![p.machine_type.clone()],
                locations: vec![p.location.clone()],
                image: p.image.clone(),
            },
            None => match self.ctx.pools.pools.iter().find(|p| p.name == known.pool) {
                Some(pool) => pool.spec.clone(),
                None => return Outcome::Failed("its pool is not configured".into()),
            },
        };
        let Some(scope) = self
            .ctx
            .runners
            .scope_for(job, self.standby_forge(&known.pool))
        else {
            return Outcome::Failed("no forge scope to register its runner in".into());
        };
        let user_data = match self.bootstrap(&scope, instance, labels, &spec).await {
            Ok((_, u)) => u,
            Err(BootstrapError::Refused(e)) => {
                self.refuse_job(job, &e);
                return Outcome::Failed(e);
            }
            Err(BootstrapError::Failed(e)) => return Outcome::Failed(e),
        };
        if let Err(e) = self.writer.check(&format!("reuse {instance}")).await {
            self.stop.saw(&e);
            self.unregister(&scope, instance).await;
            return Outcome::Skipped(format!("not reused: {e}"));
        }
        if let Err(e) = provider.rebuild(id, &spec.image, &user_data).await {
            self.unregister(&scope, instance).await;
            return Outcome::Failed(format!("rebuild: {e}"));
        }
        let attempt = job.and_then(|k| self.attempts.get(k)).copied().unwrap_or(0);
        let store = &self.writer;
        let reassigned = store
            .reassign_intent(instance, job, attempt, run_id, labels, now)
            .await;
        if let Err(e) = &reassigned {
            self.stop.saw(e);
        }
        if let Ok(false) = reassigned {
            // Made before this controller kept intents (or its intent was pruned): record one.
            let intent = Intent {
                name: instance.to_string(),
                pool: known.pool.clone(),
                provider: self.provider_of.get(instance).cloned().unwrap_or_default(),
                job: job.cloned(),
                attempt,
                run_id,
                labels: labels.clone(),
                spec,
                created_at: known.created_at,
                state: IntentState::Created,
                provider_id: Some(id.to_string()),
                updated_at: now,
            };
            if let Err(e) = store.record_intent(&intent).await {
                self.stop.saw(&e);
                warn!(instance, error = %e, "reused, but no intent recorded");
            }
        } else if let Err(e) = reassigned {
            warn!(instance, error = %e, "reused, but the intent was not updated");
        }
        Outcome::Reused
    }

    /// A new runner credential and the user data that starts the runner with it.
    async fn bootstrap(
        &self,
        scope: &ScopeId,
        name: &str,
        labels: &Labels,
        spec: &MachineSpec,
    ) -> Result<(Credential, mayfly_core::Secret), BootstrapError> {
        let credential: Credential = self
            .ctx
            .runners
            .credential(scope, name, labels)
            .await
            .map_err(|e| {
                let why = format!("runner credential: {e}");
                if refuses_the_scope(&e) {
                    BootstrapError::Refused(why)
                } else {
                    BootstrapError::Failed(why)
                }
            })?;
        let user_data = bootstrap::user_data(&self.ctx.bootstrap, spec.image.arch, &credential)
            .map_err(|e| BootstrapError::Failed(format!("bootstrap: {e}")))?;
        Ok((credential, user_data))
    }

    /// Removes the runner registered for a machine that will not be.
    async fn unregister(&self, scope: &ScopeId, name: &str) {
        if let Err(e) = self.ctx.runners.remove_by_name(scope, name).await {
            warn!(name, error = %e, "could not remove the runner of a failed create");
        }
    }

    async fn fail(&self, name: &str, why: &str, now: Time) -> Outcome {
        self.settle(name, IntentState::Failed, None, now).await;
        Outcome::Failed(why.to_string())
    }

    async fn settle(&self, name: &str, state: IntentState, provider_id: Option<&str>, now: Time) {
        if let Err(e) = self
            .writer
            .set_intent_state(name, state, provider_id, now)
            .await
        {
            self.stop.saw(&e);
            warn!(name, %state, error = %e, "could not update the intent");
        }
    }

    fn at_quota(&self, provider: &str) -> bool {
        self.quota
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(provider)
    }

    /// The provider's quota is reached: no more creates there this pass, and the least
    /// valuable kept machine (the one with the least paid time left) is deleted to make room
    /// for the next pass. Busy and booting machines are never candidates.
    async fn quota_reached(&self, provider: &str, e: &ProviderError, now: Time) {
        let first = self
            .quota
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(provider.to_string());
        if !first {
            return;
        }
        warn!(provider, error = %e, "quota reached: creating nothing more there this pass");
        let victim = {
            let mut claimed = self.claimed.lock().unwrap_or_else(|p| p.into_inner());
            let victim = self
                .instances
                .values()
                .filter(|i| {
                    i.state == InstanceState::Off
                        && i.provider_id.is_some()
                        && self.provider_of.get(&i.name).map(String::as_str) == Some(provider)
                        && !claimed.contains(&i.name)
                })
                .min_by_key(|i| {
                    let paid_until = i
                        .billing
                        .as_ref()
                        .map_or(i.created_at, |b| b.paid_until(i.created_at, now));
                    (paid_until, i.name.clone())
                })
                .cloned();
            if let Some(v) = &victim {
                claimed.insert(v.name.clone());
            }
            victim
        };
        let Some(victim) = victim else {
            warn!(provider, "quota reached and no powered-off machine to free");
            return;
        };
        info!(provider, instance = %victim.name, "quota reached: freeing the least valuable powered-off machine");
        let outcome = self
            .delete(&victim.name, victim.provider_id.as_deref(), None, now)
            .await;
        record::delete(&victim.pool, provider, record::QUOTA, outcome.step());
        self.event(
            now,
            "quota",
            &victim.name,
            &format!("freed for quota: {outcome:?}"),
        )
        .await;
    }

    async fn log(&self, action: &Action, outcome: &Outcome, now: Time) {
        match outcome {
            Outcome::Failed(why) => warn!(action = %action, error = %why, "failed"),
            Outcome::Skipped(why) => info!(action = %action, why = %why, "skipped"),
            _ => info!(action = %action, "done"),
        }
        let kind = match action {
            Action::Delete { .. } => "delete",
            Action::RemoveRunner { .. } => "remove_runner",
            Action::DropIntent { .. } => "drop_intent",
            Action::Reuse { .. } => "reuse",
            Action::Create { .. } => "create",
        };
        let message = match outcome {
            Outcome::Failed(why) => format!("{action}: failed: {why}"),
            Outcome::Skipped(why) => format!("{action}: skipped: {why}"),
            _ => action.to_string(),
        };
        self.event(now, kind, action.subject(), &message).await;
    }

    async fn event(&self, now: Time, kind: &str, subject: &str, message: &str) {
        let event = NewEvent::new(now, kind, subject, message);
        if let Err(e) = self.ctx.store.record_event(&event).await {
            warn!(error = %e, "could not record an event");
        }
    }
}
