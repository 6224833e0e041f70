//! One reconcile pass: read the truth (store, providers, forge) into a snapshot, plan, execute.
//! Passes run one at a time and each reads everything again, so a lost event or a crash converges.

mod evidence;
mod execute;
mod memory;
mod operator;
mod refusals;
mod runners;
mod snapshot;
mod writes;

pub use execute::{Ctx, Executed};
pub use operator::{DeleteError, Operator, Removed};
pub use runners::Runners;
pub use writes::{Halt, Writer};

use crate::view::View;
use mayfly_core::{Action, Clock, Ended, Plan, Pools, Time};
use mayfly_provider::Provider;
use mayfly_provider::bootstrap::BootstrapConfig;
use mayfly_store::{IntentState, Store};
use memory::Memory;
use snapshot::{IntentUpdate, Seen};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

pub struct Reconciler {
    ctx: Arc<Ctx>,
    memory: Memory,
    workers: usize,
    /// See [`Tuning::finishing`].
    finishing: Duration,
    /// Specs and jobs refused until their slow retry.
    refusals: refusals::Refusals,
    /// Where evidence that the store is behind goes (the demand task confirms those jobs).
    wake: Option<Arc<crate::demand::Wake>>,
    /// Since when each runner a running job names has been missing (see `evidence`).
    gone: std::collections::HashMap<String, Time>,
    /// The world as the last pass's plan left it (without jobs), and whether that pass left
    /// anything unsettled: what [`Reconciler::recheck`] plans on.
    left: Option<(mayfly_core::Snapshot, bool)>,
    /// The last pass's view of the world, for the API, `mayfly status` and `/metrics`.
    view: tokio::sync::watch::Sender<Option<Arc<View>>>,
    /// The gauges each view sets.
    world: crate::metrics::World,
    /// How the last pass ended, for `/readyz`.
    last: tokio::sync::watch::Sender<Option<LastPass>>,
    /// Held by a pass from its read to its last step, and by an operator's delete: the two
    /// never act on the same world at once (a pass may be about to reuse that machine).
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// What a plan says of when to look again.
struct Outlook {
    waiting_for_capacity: usize,
    assumed: usize,
    finishing: usize,
    next_check: Option<Time>,
}

/// How the last pass ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastPass {
    pub finished: Time,
    pub took: Duration,
    /// Why it failed; `None` when it read the world and carried out its plan.
    pub error: Option<String>,
}

/// What one pass saw and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub jobs_queued: usize,
    pub instances: usize,
    pub runners: usize,
    /// Jobs the plan could not serve this pass (no pool, a limit, an unusable pool).
    pub waiting: usize,
    /// Of those, the jobs whose wait ends as machines go (a limit): the loop looks again soon
    /// for them, and a finished job may free a machine for them. The others wait for a new
    /// configuration or their slow retry.
    pub waiting_for_capacity: usize,
    /// Jobs assumed to run on their own busy machine while the store still holds them as
    /// queued: the truth is expected soon, and the loop looks again soon.
    pub assumed: usize,
    /// Machines up whose runner has gone (their job is over): they power off in seconds.
    pub finishing: usize,
    pub executed: Executed,
    /// Runners could not be read: the pass only created.
    pub runners_unknown: bool,
    /// When the next deadline passes (see `Plan::next_check`).
    pub next_check: Option<Time>,
    pub took: Duration,
}

impl PassReport {
    /// Whether the world may change without an event telling the loop.
    pub fn unsettled(&self) -> bool {
        let e = &self.executed;
        self.runners_unknown
            || e.stopped.is_some()
            || self.waiting_for_capacity > 0
            || self.assumed > 0
            || e.failed > 0
            || e.skipped > 0
    }

    /// What the loop's pacing needs of this pass (see `mayfly_core::Pacer`).
    pub fn ended(&self) -> Ended {
        Ended {
            unsettled: self.unsettled(),
            waiting: self.waiting_for_capacity > 0,
            next_check: self.next_check,
            again: self.executed.stale_jobs > 0,
        }
    }
}

/// How the reconciler acts beyond what it plans (`workers` and `[intervals]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Creates, reuses and deletes at once.
    pub workers: usize,
    /// A job whose last news is older than this is confirmed with the forge before a machine
    /// is made or reused for it; evidence against the store counts once this old.
    pub confirm_stale: Duration,
    /// How long a refused pool spec or job is left alone before the planner tries it again.
    pub refused_retry: Duration,
    /// While jobs wait for capacity and a machine's runner has finished its job, the next pass
    /// comes this soon: the machine powers itself off within seconds, and is then reused for a
    /// waiting job or deleted to make room.
    pub finishing: Duration,
    /// The runner lists are read at least this often ([`RUNNERS_MAX_AGE`] by default). In
    /// between, a pass whose plan acts on nothing they say (it only creates, or reuses or
    /// deletes powered-off machines) plans with the last lists; any other pass reads them first.
    pub runners_max_age: Duration,
}

/// The default of `intervals.runners`: passes that act on the runners read them whatever their
/// age, so this bounds only how stale idle and offline runners show and how late a runner left
/// without a machine is removed. Every read costs a request per scope (the lists change with
/// every job, so few are 304s).
pub const RUNNERS_MAX_AGE: Duration = Duration::from_secs(900);

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            workers: 10,
            confirm_stale: Duration::from_secs(10),
            refused_retry: Duration::from_secs(600),
            finishing: Duration::from_secs(2),
            runners_max_age: RUNNERS_MAX_AGE,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("the store: {0}")]
    Store(#[from] mayfly_store::StoreError),
    /// Under an election, this replica does not lead (or no longer does): the pass did nothing.
    #[error("{0}")]
    NotLeading(String),
    #[error("provider {provider}: cannot list instances: {error}")]
    List {
        provider: String,
        error: mayfly_provider::Error,
    },
}

impl Reconciler {
    /// `pools.runner_scope` and `pools.forge_scopes` are set from `runners`: they must agree.
    pub fn new(
        store: Store,
        mut pools: Pools,
        providers: BTreeMap<String, Arc<dyn Provider>>,
        runners: Runners,
        bootstrap: BootstrapConfig,
        clock: Arc<dyn Clock>,
        tuning: Tuning,
    ) -> Reconciler {
        (pools.runner_scope, pools.forge_scopes) = runners.runner_scopes();
        let apis: Vec<&'static str> = providers.values().map(|p| p.kind()).collect();
        let forges: Vec<_> = runners.forges().iter().map(|f| f.kind()).collect();
        crate::metrics::record::announce(&pools, &forges, &apis);
        Reconciler {
            ctx: Arc::new(Ctx {
                store,
                providers,
                runners,
                bootstrap,
                pools,
                clock,
                confirm_stale: tuning.confirm_stale,
                leadership: std::sync::OnceLock::new(),
                halt: Halt::default(),
                runners_max_age: tuning.runners_max_age,
            }),
            memory: Memory::default(),
            workers: tuning.workers,
            finishing: tuning.finishing,
            refusals: refusals::Refusals::new(tuning.refused_retry),
            wake: None,
            gone: std::collections::HashMap::new(),
            left: None,
            view: tokio::sync::watch::Sender::new(None),
            world: crate::metrics::World::default(),
            last: tokio::sync::watch::Sender::new(None),
            turn: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Runs under an election: passes act only while `leadership` says this replica leads,
    /// and every intent write carries its fence. Without it the reconciler writes as the
    /// store's only writer. Set once, before the first pass.
    pub fn lead_under(
        &mut self,
        leadership: tokio::sync::watch::Receiver<crate::leader::Leadership>,
    ) {
        let _ = self.ctx.leadership.set(leadership);
    }

    /// What a shutdown sets: steps of the pass in flight that have not started are skipped.
    pub fn halt(&self) -> Halt {
        self.ctx.halt.clone()
    }

    /// Checks every pool's machine spec against its provider's catalogue (types, images,
    /// locations) before the first pass. A problem is logged once with the pool's name; a spec
    /// nothing of which can be ordered is marked refused at once, so no create is spent on it
    /// and `mayfly status`, the API and `mayfly_pool_unusable` name it. A catalogue that cannot
    /// be read is no reason not to start: the first refused create marks the pool instead.
    pub async fn check_pools(&mut self) {
        let now = self.ctx.clock.now();
        let mut refused = mayfly_core::Refused::default();
        for pool in &self.ctx.pools.pools {
            let Some(provider) = self.ctx.providers.get(&pool.provider) else {
                continue;
            };
            let problems = match provider.check(&pool.spec).await {
                Ok(p) => p,
                Err(e) => {
                    warn!(pool = %pool.name, error = %e, "cannot read the catalogue to check the pool");
                    continue;
                }
            };
            for p in &problems {
                if p.is_error() {
                    warn!(pool = %pool.name, problem = %p, "pool spec");
                } else {
                    info!(pool = %pool.name, problem = %p, "pool spec");
                }
            }
            if mayfly_provider::spec_unusable(&pool.spec, &problems) {
                let reason = problems
                    .iter()
                    .filter(|p| p.is_error())
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                refused.specs.push(mayfly_core::RefusedSpec {
                    pool: pool.name.clone(),
                    spec: pool.spec.clone(),
                    reason,
                    probe: false,
                });
            }
        }
        self.refusals.learn(refused, now);
    }

    /// Sends the jobs a pass finds the store behind on to `wake`'s evidence (the demand task
    /// confirms them with the forge and polls their repository closely).
    pub fn report_evidence_to(&mut self, wake: Arc<crate::demand::Wake>) {
        self.wake = Some(wake);
    }

    /// Follows how each pass ends (`None` before the first has).
    pub fn last_pass(&self) -> tokio::sync::watch::Receiver<Option<LastPass>> {
        self.last.subscribe()
    }

    /// A handle for deletes asked for by a person, taking turns with the passes.
    pub fn operator(&self) -> Operator {
        Operator::new(self.ctx.clone(), self.turn.clone())
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.ctx.clock.clone()
    }

    /// Follows the view each pass publishes once it has read the world (`None` before the
    /// first).
    pub fn views(&self) -> tokio::sync::watch::Receiver<Option<Arc<View>>> {
        self.view.subscribe()
    }

    pub fn pools(&self) -> &Pools {
        &self.ctx.pools
    }

    /// Whether a finished job calls for a pass shortly after (`intervals.settle`). Without
    /// recycling, that pass sees the machine powered off and starts its powered-off deadline.
    /// With recycling, nothing is to be done for it until the next job (a queued job wakes the
    /// loop at once) or the end of its paid time (the plan's next check), so the pass is saved.
    pub fn settles(&self) -> bool {
        !self.ctx.pools.recycling.enabled
    }

    pub fn now(&self) -> Time {
        self.ctx.clock.now()
    }

    /// Reads, plans, executes. A provider that cannot be listed stops the pass (acting on a
    /// partial view could create twice); runners that cannot be read make it a create-only pass.
    pub async fn pass(&mut self) -> Result<PassReport, PassError> {
        let turn = self.turn.clone();
        let _turn = turn.lock().await;
        let started = std::time::Instant::now();
        let result = self.pass_in_turn(started).await;
        let outcome = match &result {
            Ok(report) if report.runners_unknown => "partial",
            Ok(_) => "ok",
            Err(_) => "failed",
        };
        crate::metrics::record::pass(outcome, started.elapsed());
        self.last.send_replace(Some(LastPass {
            finished: self.ctx.clock.now(),
            took: started.elapsed(),
            error: result.as_ref().err().map(ToString::to_string),
        }));
        result
    }

    /// What a plan says of when to look again: the parts of a pass report the pacer reads.
    fn outlook(&self, snapshot: &mayfly_core::Snapshot, plan: &Plan) -> Outlook {
        let finishing = snapshot
            .instances
            .iter()
            .filter(|i| self.memory.finishing(&i.name))
            .count();
        let waiting_for_capacity = plan
            .waiting
            .iter()
            .filter(|w| w.why.changes_by_itself())
            .count();
        let mut next_check = plan.next_check;
        if finishing > 0 && waiting_for_capacity > 0 {
            // A finishing machine can serve a waiting job (reused once it stops) or make room
            // (deleted once off): look again as soon as it has stopped.
            let soon = self.ctx.clock.now().plus(self.finishing);
            next_check = Some(next_check.map_or(soon, |t| t.min(soon)));
        }
        Outlook {
            waiting_for_capacity,
            assumed: plan
                .assignments
                .iter()
                .filter(|a| a.how == mayfly_core::How::Assumed)
                .count(),
            finishing,
            next_check,
        }
    }

    /// Plans again on the world as the last pass left it, with the store's newer news of jobs,
    /// calling no provider and no forge: when the next pass is due now. A job that started on a
    /// booting machine (a webhook said so) takes that machine's registration deadline away, so
    /// the pass it called for is not needed. `None` before the first pass, or when the store
    /// cannot be read (the pass's own schedule stands).
    pub async fn recheck(&mut self) -> Option<Ended> {
        let (world, unsettled) = self.left.as_ref()?;
        let now = self.ctx.clock.now();
        let (jobs, _) = snapshot::jobs(&self.ctx.store).await.ok()?;
        let snapshot = mayfly_core::Snapshot {
            jobs,
            refused: self.refusals.current(now),
            ..world.clone()
        };
        let plan = mayfly_core::plan(&snapshot, &self.ctx.pools, now);
        let o = self.outlook(&snapshot, &plan);
        Some(Ended {
            unsettled: *unsettled || o.waiting_for_capacity > 0 || o.assumed > 0,
            waiting: o.waiting_for_capacity > 0,
            next_check: o.next_check,
            again: false,
        })
    }

    /// Reads the world and plans, acting on nothing: what `mayfly status` sees when no daemon
    /// runs. Intent updates the read implies are still written (they are facts, and idempotent).
    pub async fn look(&mut self) -> Result<Arc<View>, PassError> {
        let turn = self.turn.clone();
        let _turn = turn.lock().await;
        // A look writes nothing: `mayfly status` without a daemon may run beside a leader it
        // cannot reach, and what the join learned of intents is that leader's to write.
        let (_, _, view) = self.plan(true, None).await?;
        Ok(view)
    }

    async fn pass_in_turn(&mut self, started: std::time::Instant) -> Result<PassReport, PassError> {
        // Every write of this pass carries the fence it starts under.
        let writer = self.ctx.writer();
        if let Some(why) = writer.refusal() {
            return Err(PassError::NotLeading(why));
        }
        let (seen, plan, _) = self.plan(false, Some(&writer)).await?;
        let outlook = self.outlook(&seen.snapshot, &plan);
        let mut report = PassReport {
            jobs_queued: seen
                .snapshot
                .jobs
                .iter()
                .filter(|j| j.status == mayfly_core::JobStatus::Queued)
                .count(),
            instances: seen.snapshot.instances.len(),
            runners: seen.snapshot.runners.len(),
            waiting: plan.waiting.len(),
            waiting_for_capacity: outlook.waiting_for_capacity,
            assumed: outlook.assumed,
            finishing: outlook.finishing,
            runners_unknown: seen.runners_error.is_some(),
            next_check: outlook.next_check,
            ..PassReport::default()
        };
        for w in &plan.waiting {
            debug!(
                job = %crate::escape::Text(&w.job.to_string()),
                why = %crate::escape::Text(&w.why.to_string()),
                "job waits"
            );
        }
        if let Some(wake) = &self.wake {
            let ctx = &self.ctx;
            // The runner lists this pass planned with, and when they were read (none: they
            // could not be read, and say nothing).
            let listed = seen
                .runners_error
                .is_none()
                .then(|| ctx.runners.listed_at())
                .flatten();
            wake.suspect(evidence::suspects(
                &seen.snapshot,
                &plan,
                &seen.news,
                listed,
                &mut self.gone,
                &ctx.pools.controller,
                ctx.clock.now(),
                ctx.confirm_stale,
            ));
        }
        let seen_for_recheck = mayfly_core::Snapshot {
            jobs: Vec::new(),
            ..seen.snapshot.clone()
        };
        let plan_for_recheck = plan.clone();
        let mut plan = plan;
        if seen.runners_error.is_some() {
            plan.actions.retain(|a| matches!(a, Action::Create { .. }));
        }
        // A create intent with no machine behind it is carried out even when the plan is
        // empty (see `execute::stranded`).
        if !plan.actions.is_empty() || execute::has_stranded(&seen) {
            let intended = (!plan.actions.is_empty()).then(|| self.intended(&seen, &plan));
            let actions = std::mem::take(&mut plan.actions);
            report.executed =
                execute::execute(self.ctx.clone(), writer, actions, seen, self.workers).await;
            let now = self.ctx.clock.now();
            for name in &report.executed.restarted {
                self.memory.restarted(name, now);
            }
            // The next pass that plans with the last lists must not see a rebuilt machine's
            // old runner as its own, nor a deleted machine's or a removed runner as left over.
            self.ctx.runners.forget(&report.executed.outdated);
            for (pool, spec) in std::mem::take(&mut report.executed.accepted) {
                self.refusals.accepted(&pool, &spec);
            }
            let refused = std::mem::take(&mut report.executed.refused);
            self.refusals.learn(refused, now);
            if let Some(view) = intended {
                self.publish(Arc::new(view));
            }
        }
        let mut world = mayfly_core::apply::apply(
            &seen_for_recheck,
            &plan_for_recheck,
            &self.ctx.pools.controller,
            self.ctx.clock.now(),
        );
        world.jobs.clear();
        let e = &report.executed;
        self.left = Some((
            world,
            report.runners_unknown || e.failed > 0 || e.skipped > 0,
        ));
        report.took = started.elapsed();
        Ok(report)
    }

    /// The view of the world as this plan leaves it: new machines as pending creates, deleted
    /// ones as deleting. Published once the plan is carried out, so `mayfly status` shows a
    /// pass's work at once rather than a pass later. A step that failed leaves the pass
    /// unsettled, and the next pass (within `intervals.reconcile`) shows the truth again.
    fn intended(&self, seen: &Seen, plan: &Plan) -> View {
        let pools = &self.ctx.pools;
        let now = self.ctx.clock.now();
        let after = mayfly_core::apply::apply(&seen.snapshot, plan, &pools.controller, now);
        let mut provider_of = seen.provider_of.clone();
        for action in &plan.actions {
            if let Action::Create { name, pool, .. } = action
                && let Some(p) = pools.pools.iter().find(|p| &p.name == pool)
            {
                provider_of.insert(name.clone(), p.provider.clone());
            }
        }
        View::build(pools, &after, plan, &provider_of, now)
    }

    /// Makes `view` the one the API, `mayfly status` and the gauges read.
    fn publish(&mut self, view: Arc<View>) {
        self.world.record(&view);
        self.view.send_replace(Some(view));
    }

    /// The snapshot of now and the plan for it; publishes the view; with a `writer`, writes
    /// back what the join learned of intents. Unless `fresh`, plans
    /// first with the last runner lists (when young enough), and reads them again only if that
    /// plan rests on them (see [`Plan::depends_on_runners`]).
    async fn plan(
        &mut self,
        fresh: bool,
        writer: Option<&Writer>,
    ) -> Result<(Seen, Plan, Arc<View>), PassError> {
        let ctx = &self.ctx;
        let now = ctx.clock.now();
        let world = read(ctx).await?;
        let last = (!fresh)
            .then(|| ctx.runners.last_list(now, ctx.runners_max_age))
            .flatten();
        let planned = match last {
            Some(list) => {
                let before = self.memory.clone();
                let mut seen = assemble(ctx, world.clone(), Ok(list), &mut self.memory, now);
                seen.snapshot.refused = self.refusals.current(now);
                let plan = mayfly_core::plan(&seen.snapshot, &ctx.pools, now);
                if plan.depends_on_runners(&seen.snapshot) {
                    self.memory = before;
                    None
                } else {
                    Some((seen, plan))
                }
            }
            None => None,
        };
        let (seen, plan) = match planned {
            Some(p) => p,
            None => {
                let list = ctx.runners.list(now).await;
                let mut seen = assemble(ctx, world, list, &mut self.memory, now);
                seen.snapshot.refused = self.refusals.current(now);
                let plan = mayfly_core::plan(&seen.snapshot, &ctx.pools, now);
                (seen, plan)
            }
        };
        // Fenced: a replica that lost the lease writes nothing, and its pass stops here.
        if let Some(writer) = writer {
            write_updates(writer, &seen.updates, now).await?;
        }
        let view = Arc::new(View::build(
            &ctx.pools,
            &seen.snapshot,
            &plan,
            &seen.provider_of,
            now,
        ));
        self.publish(view.clone());
        if !plan.actions.is_empty() {
            info!(
                actions = plan.actions.len(),
                waiting = plan.waiting.len(),
                "plan"
            );
        }
        Ok((seen, plan, view))
    }
}

/// Reads the truth at `now`, the runner lists included, and writes back what the join learned
/// of intents.
pub(super) async fn read_all(
    ctx: &Ctx,
    writer: &Writer,
    memory: &mut Memory,
    now: Time,
) -> Result<Seen, PassError> {
    let world = read(ctx).await?;
    let list = ctx.runners.list(now).await;
    let seen = assemble(ctx, world, list, memory, now);
    write_updates(writer, &seen.updates, now).await?;
    Ok(seen)
}

/// Writes what a join learned of intents (idempotent facts).
async fn write_updates(
    writer: &Writer,
    updates: &[IntentUpdate],
    now: Time,
) -> Result<(), PassError> {
    for update in updates {
        let (name, state, id) = match update {
            IntentUpdate::Created { name, provider_id } => {
                (name, IntentState::Created, provider_id.as_deref())
            }
            IntentUpdate::Gone { name } => (name, IntentState::Deleted, None),
        };
        writer.set_intent_state(name, state, id, now).await?;
    }
    Ok(())
}

/// What a pass reads before the runners: jobs and intents from the store, one list per
/// provider.
#[derive(Clone)]
struct World {
    jobs: Vec<mayfly_core::Job>,
    news: std::collections::HashMap<mayfly_core::JobKey, Time>,
    intents: Vec<mayfly_store::Intent>,
    listed: Vec<(String, mayfly_core::Instance)>,
}

/// Reads jobs and intents from the store and lists every provider once. A provider that cannot
/// be listed fails the read.
async fn read(ctx: &Ctx) -> Result<World, PassError> {
    let (jobs, news) = snapshot::jobs(&ctx.store).await?;
    let intents = ctx
        .store
        .intents_in_state(&[IntentState::Pending, IntentState::Created])
        .await?;
    let mut listed = Vec::new();
    for name in used_providers(&ctx.pools) {
        let Some(provider) = ctx.providers.get(&name) else {
            continue;
        };
        let instances = provider
            .list(&ctx.pools.controller)
            .await
            .map_err(|error| PassError::List {
                provider: name.clone(),
                error,
            })?;
        listed.extend(instances.into_iter().map(|i| (name.clone(), i)));
    }
    Ok(World {
        jobs,
        news,
        intents,
        listed,
    })
}

/// Joins the world with the runners (runners that cannot be read are reported in the result,
/// and make the pass create-only). The intent updates the join implies are for the caller to
/// write, once.
fn assemble(
    ctx: &Ctx,
    world: World,
    runner_list: Result<Vec<mayfly_core::forge::RegisteredRunner>, mayfly_forge::ForgeError>,
    memory: &mut Memory,
    now: Time,
) -> Seen {
    let World {
        jobs,
        news,
        intents,
        listed,
    } = world;
    let (runner_list, runners_error) = match runner_list {
        Ok(list) => (list, None),
        Err(e) => {
            warn!(error = %e, "cannot read the runners: this pass only creates");
            (Vec::new(), Some(e.to_string()))
        }
    };
    let registered: std::collections::HashSet<&str> =
        runner_list.iter().map(|r| r.name.as_str()).collect();
    let registered = runners_error.is_none().then_some(&registered);
    let (instances, provider_of, updates) =
        snapshot::join(&ctx.pools, listed, intents, registered, memory, now);
    let (runners, scope_of) = snapshot::runners(&runner_list, memory, now);
    let snapshot = mayfly_core::Snapshot {
        jobs,
        instances,
        runners,
        refused: Default::default(),
    };
    snapshot::forget_unseen(memory, &snapshot);
    Seen {
        snapshot,
        provider_of,
        scope_of,
        runners_error,
        news,
        updates,
    }
}

/// The providers some pool uses, each once, in name order.
fn used_providers(pools: &Pools) -> Vec<String> {
    let mut names: Vec<String> = pools.pools.iter().map(|p| p.provider.clone()).collect();
    names.sort();
    names.dedup();
    names
}
