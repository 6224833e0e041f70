//! `mayfly run`: opens the store, serves HTTP (webhooks, health, the API, metrics) on `listen` (and `api.listen`), and runs the
//! reconcile loop on its timer or when a webhook wakes it, until Ctrl-C or SIGTERM.
//!
//! On PostgreSQL any number of replicas share the state: each serves webhooks and the API, and
//! only the one holding the leader lease (`mayfly::leader`) polls and runs passes, every intent
//! write fenced by its epoch. On SQLite the file lock makes this process the only writer.

use crate::config::Config;
use anyhow::Context;
use mayfly::demand::Demand;
use mayfly::http;
use mayfly::leader::{Leader, Leadership};
use mayfly_forge::github::{Client, Repo, SystemClock};
use mayfly_forge::{Forge, GithubForge, GitlabForge};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

/// How long requests in flight get to finish once a shutdown signal arrived: webhooks are
/// small, and a job whose delivery was cut short is found by the leader's poll and its check of
/// long-queued jobs (GitHub does not redeliver by itself).
const HTTP_DRAIN: Duration = Duration::from_secs(2);
/// How long closing the store's connections may take at the end.
const STORE_CLOSE: Duration = Duration::from_secs(1);

/// Whether this replica may act: always without an election, while it leads with one.
fn leads(leadership: Option<&watch::Receiver<Leadership>>) -> bool {
    leadership.is_none_or(|l| l.borrow().leads_now())
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    // First: everything after it records through the recorder.
    let exporter = mayfly::metrics::install()?;
    // Then: a SIGTERM from here on stops the daemon cleanly rather than killing it.
    let shutdown = shutdown_signal()?;
    let token_file = config
        .api
        .token_file
        .as_ref()
        .context("no api.token_file")?;
    let token = crate::ops::token::load_or_create(token_file)?;
    let state = config.state.as_ref().context("no state URL configured")?;
    let store = mayfly_store::Store::open(state.expose())
        .await
        .context("cannot open the state store")?;
    // SQLite: this process alone writes the file while it runs (PostgreSQL: a no-op).
    let _writer = store
        .lock_single_writer()
        .await
        .context("cannot run on this state")?;
    let retention = mayfly::retention::spawn(
        store.clone(),
        config.retention(),
        config.retention.every.0,
        Arc::new(SystemClock),
    );
    let forges = Forges::build(&config).await?;
    let client = forges.client.clone();
    let mut reconciler = build_reconciler(&config, &forges, store.clone()).await?;
    // Several replicas may share a PostgreSQL state: the lease decides which one acts.
    let replica = mayfly::leader::replica_id();
    let election = (store.backend() == mayfly_store::Backend::Postgres).then(|| {
        info!(%replica, "replicas may share this state: passes run while this one leads");
        Leader::spawn(
            Arc::new(store.clone()),
            config.leader(replica.clone()),
            Arc::new(SystemClock),
        )
    });
    let leadership = election.as_ref().map(Leader::watch);
    if election.is_none() {
        // Alone on its state: this process is the one that acts.
        mayfly::leader::record(true, 0);
    }
    if let Some(l) = &leadership {
        reconciler.lead_under(l.clone());
    }
    let halt = reconciler.halt();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let listen = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let private = match config.api.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (api.listen)"))?,
        ),
        None => None,
    };
    let secret = config.github.webhook_secret.clone();
    if secret.is_none() && forges.github.is_some() {
        warn!(
            "github.webhook_secret is not set: POST /webhooks/github refuses every delivery \
             (503); set it to the secret of the GitHub webhook to receive jobs by webhook"
        );
    }
    let wake = Arc::new(mayfly::demand::Wake::default());
    reconciler.report_evidence_to(wake.clone());
    reconciler.check_pools().await;
    // A pass reads the world at least every `resync`: two missed in a row is not ready.
    let ready_within = config.intervals.resync.0 * 2;
    let mut api = http::Api::new(
        &reconciler,
        store.clone(),
        wake.clone(),
        token,
        ready_within,
    )
    .under(&replica, leadership.clone());
    api.dashboard = config.dashboard.settings();
    let sharing = leadership
        .clone()
        .map(|l| share_views(store.clone(), reconciler.views(), l));
    let gh = config.github();
    let mut webhooks = http::Webhooks::new(store.clone(), secret, wake.clone()).serving(
        http::Served::new(&gh.repositories, gh.organization.as_deref()),
    );
    if let Some(forge) = &forges.gitlab {
        let secret = config
            .gitlab
            .as_ref()
            .and_then(|g| g.webhook_secret.clone());
        if secret.is_none() {
            warn!(
                "gitlab.webhook_secret is not set: POST /webhooks/gitlab refuses every delivery \
                 (503); jobs are found by polling only"
            );
        }
        webhooks = webhooks.with_gitlab(http::GitlabHooks {
            secret,
            forge: forge.clone(),
        });
    }
    let hooks = http::router(webhooks);
    let inside = http::api::router(Arc::new(api)).merge(http::metrics::router(exporter));
    let serve_options = config.serve_options(http::serve::raise_fd_limit());
    let listeners = http::serve::Listeners {
        public: listener,
        private,
    };
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(http::serve::serve(
        listeners,
        hooks,
        inside,
        serve_options,
        async {
            // A dropped sender means the daemon is gone: stop as well.
            let _ = http_stopped.await;
        },
    ));

    let (stop_demand, demand_stopped) = tokio::sync::watch::channel(false);
    let news = leadership
        .clone()
        .map(|l| news_task(store.clone(), wake.clone(), l, config.leader.news.0));
    let gitlab_demand = forges.gitlab.clone().map(|forge| {
        gitlab_demand_task(
            &config,
            forge,
            store.clone(),
            wake.clone(),
            leadership.clone(),
            demand_stopped.clone(),
        )
    });
    let demand = match demand_task(
        &config,
        forges.github.is_some().then(|| client.clone()),
        store.clone(),
        wake.clone(),
        leadership.clone(),
        demand_stopped,
    ) {
        Ok(task) => task,
        Err(e) => {
            let _ = stop_http.send(());
            return Err(e);
        }
    };

    let asg = match asg_tasks(&config, &forges, &store, leadership.clone()).await {
        Ok(tasks) => tasks,
        Err(e) => {
            let _ = stop_http.send(());
            let _ = stop_demand.send(true);
            return Err(e);
        }
    };
    let pools = reconciler.pools();
    info!(
        controller = %pools.controller,
        %listen,
        state = %state,
        pools = pools.pools.len(),
        "started"
    );
    let pace = mayfly_core::Pace {
        unsettled: config.intervals.reconcile.0,
        resync: config.intervals.resync.0,
        settle: reconciler.settles().then_some(config.intervals.settle.0),
        coalesce: config.intervals.coalesce.0,
    };
    let clock = reconciler.clock();
    let stopped = mayfly::control_loop::run(
        &wake,
        mayfly_core::Pacer::new(pace),
        clock.as_ref(),
        mayfly::control_loop::Lead {
            leadership: leadership.clone(),
            halt,
            grace: config.deadlines.shutdown.0,
        },
        shutdown,
        async |step| match step {
            mayfly::control_loop::Step::Pass(trigger) => Some(match reconciler.pass().await {
                Ok(report) => {
                    debug!(trigger, ?report, "reconcile pass done");
                    report.ended()
                }
                Err(e @ mayfly::reconcile::PassError::NotLeading(_)) => {
                    info!(trigger, why = %e, "no pass: this replica does not lead");
                    mayfly_core::Ended::default()
                }
                Err(e) => {
                    warn!(trigger, error = %e, "reconcile pass failed; trying again soon");
                    mayfly_core::Ended {
                        unsettled: true,
                        ..mayfly_core::Ended::default()
                    }
                }
            }),
            mayfly::control_loop::Step::Recheck => reconciler.recheck().await,
        },
    )
    .await;
    let stopping = std::time::Instant::now();
    let _ = stop_http.send(());
    let _ = stop_demand.send(true);
    for task in asg {
        task.abort();
    }
    retention.abort();
    for task in [news, sharing, gitlab_demand].into_iter().flatten() {
        task.abort();
    }
    if let Some(task) = demand {
        // A poll in flight is cut short: everything it did is in the store already.
        task.abort();
    }
    // Released at once, so another replica leads at its next try rather than a lease later.
    // Bounded by the election's call timeout.
    if let Some(election) = election {
        election.stop().await;
    }
    match tokio::time::timeout(HTTP_DRAIN, &mut server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => warn!(error = %e, "the HTTP server failed"),
        Ok(Err(e)) => warn!(error = %e, "the HTTP server task failed"),
        Err(_) => {
            server.abort();
            warn!(timeout = ?HTTP_DRAIN, "HTTP requests still open at shutdown were dropped");
        }
    }
    if tokio::time::timeout(STORE_CLOSE, store.close())
        .await
        .is_err()
    {
        warn!("the store's connections did not close in time; they are dropped");
    }
    stopped?;
    info!(took = ?stopping.elapsed(), "stopped");
    Ok(())
}

/// Polls GitHub and confirms long-queued jobs every `intervals.poll`, when a GitHub credential
/// (token or App) is configured. With polling off, only the confirmation runs.
fn demand_task(
    config: &Config,
    client: Option<Client>,
    store: mayfly_store::Store,
    wake: Arc<mayfly::demand::Wake>,
    leadership: Option<watch::Receiver<Leadership>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(client) = client else {
        return Ok(None);
    };
    let gh = &config.github;
    if gh.app.is_none() && gh.token.as_ref().is_none_or(|t| t.is_empty()) {
        return Ok(None);
    }
    let repos = if gh.poll {
        if gh.organization.is_some() || gh.enterprise.is_some() {
            info!(
                "github.poll covers github.repositories only: jobs of the organization or \
                 enterprise arrive by webhook"
            );
        }
        gh.repositories
            .iter()
            .map(|r| Repo::parse(r))
            .collect::<Result<Vec<_>, _>>()
            .context("github.repositories")?
    } else {
        info!("github.poll is off: jobs arrive by webhook only");
        Vec::new()
    };
    let every = config.intervals.poll.0;
    let mut demand = Demand::new(
        store,
        client,
        repos,
        wake.clone(),
        config.intervals.confirm_queued.0,
    )
    .backstop(config.intervals.poll_backstop.0)
    .timing(
        config.intervals.confirm_running.0,
        config.intervals.confirm_stale.0,
    );
    Ok(Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Polls cost the forge's budget: only the replica that acts on them polls.
                _ = tick.tick() => {
                    if !leads(leadership.as_ref()) {
                        continue;
                    }
                    let report = demand.pass(mayfly::demand::now()).await;
                    debug!(?report, "demand pass");
                }
                () = wake.evidence.notified() => {
                    let report = demand.evidence(mayfly::demand::now()).await;
                    debug!(?report, "evidence confirmed");
                }
                _ = stop.changed() => return,
            }
        }
    })))
}

/// Polls GitLab's projects (when `gitlab.poll` is on) and confirms long-pending jobs every
/// `intervals.poll`, while this replica leads.
fn gitlab_demand_task(
    config: &Config,
    forge: Arc<GitlabForge>,
    store: mayfly_store::Store,
    wake: Arc<mayfly::demand::Wake>,
    leadership: Option<watch::Receiver<Leadership>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let poll = config.gitlab.as_ref().is_some_and(|g| g.poll);
    if !poll {
        info!("gitlab.poll is off: GitLab jobs arrive by webhook only");
    }
    let every = config.intervals.poll.0;
    let mut demand = mayfly::gitlab_demand::GitlabDemand::new(
        store,
        forge,
        poll,
        wake,
        config.intervals.confirm_queued.0,
    )
    .backstop(config.intervals.poll_backstop.0);
    demand.confirmer.confirm_running = config.intervals.confirm_running.0;
    demand.confirmer.grace = config.intervals.confirm_stale.0;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if !leads(leadership.as_ref()) {
                        continue;
                    }
                    let report = demand.pass(mayfly::demand::now()).await;
                    debug!(?report, "GitLab demand pass");
                }
                _ = stop.changed() => return,
            }
        }
    })
}

/// While this replica leads: reads the store's tally of open jobs every `every` and wakes the
/// loop when it changed, so a job whose webhook another replica received is served at once
/// rather than at the next timer. (Its own webhooks wake it directly.)
fn news_task(
    store: mayfly_store::Store,
    wake: Arc<mayfly::demand::Wake>,
    leadership: watch::Receiver<Leadership>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: Option<mayfly_store::JobTally> = None;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !leadership.borrow().leads_now() {
                last = None;
                continue;
            }
            let tally =
                match tokio::time::timeout(every.max(Duration::from_secs(1)), store.job_tally())
                    .await
                {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        debug!(error = %e, "cannot read the open jobs");
                        continue;
                    }
                    Err(_) => continue,
                };
            if let Some(before) = last.replace(tally) {
                if tally.queued.0 > before.queued.0
                    || (tally.queued != before.queued && tally.queued.0 == before.queued.0)
                {
                    wake.now.notify_one();
                }
                if tally.running.0 < before.running.0 {
                    wake.soon.notify_one();
                } else if tally.running != before.running {
                    wake.started.notify_one();
                }
            }
        }
    })
}

/// While this replica leads: saves each view its passes publish in the store (at most every
/// two seconds), where followers' APIs read it (`http::api::SHARED_VIEW`), so that `mayfly
/// status` and the API answer the same from every replica.
fn share_views(
    store: mayfly_store::Store,
    mut views: watch::Receiver<Option<Arc<mayfly::view::View>>>,
    leadership: watch::Receiver<Leadership>,
) -> tokio::task::JoinHandle<()> {
    const EVERY: Duration = Duration::from_secs(2);
    tokio::spawn(async move {
        while views.changed().await.is_ok() {
            let view = views.borrow_and_update().clone();
            if let Some(view) = view
                && leadership.borrow().leads_now()
            {
                match serde_json::to_string(&*view) {
                    Ok(json) => {
                        let save =
                            store.save_cursor(http::api::SHARED_VIEW, &json, mayfly::demand::now());
                        if let Ok(Err(e)) = tokio::time::timeout(EVERY, save).await {
                            debug!(error = %e, "cannot share the view with the followers");
                        }
                    }
                    Err(e) => debug!(error = %e, "cannot serialize the view"),
                }
            }
            tokio::time::sleep(EVERY).await;
        }
    })
}

/// The forges of this configuration: GitHub's client always (`mayfly` has been GitHub's first),
/// its forge when GitHub is served, and GitLab's when `[gitlab]` is set.
pub(crate) struct Forges {
    /// One client for the credential: its limiter then sees every request the daemon makes.
    pub client: Client,
    pub github: Option<Arc<GithubForge>>,
    pub gitlab: Option<Arc<GitlabForge>>,
}

impl Forges {
    /// Builds the clients; GitLab's projects and groups are resolved (a call per project, one
    /// per group and page of its projects), so a project that does not exist stops the start.
    pub async fn build(config: &Config) -> anyhow::Result<Forges> {
        let client =
            Client::new(&config.github().client).context("cannot set up the GitHub client")?;
        let github = config
            .serves_github()
            .then(|| Arc::new(GithubForge::new(client.clone(), config.github())));
        let gitlab = match &config.gitlab {
            Some(gl) => {
                let gl_client = mayfly_forge::gitlab::Client::new(&gl.client())
                    .context("cannot set up the GitLab client")?;
                let forge = GitlabForge::resolve(gl_client, gl)
                    .await
                    .context("gitlab: cannot read the configured projects and groups")?;
                info!(
                    projects = forge.served().served.len(),
                    "gitlab: serving the projects' jobs"
                );
                Some(Arc::new(forge))
            }
            None => None,
        };
        Ok(Forges {
            client,
            github,
            gitlab,
        })
    }

    /// Every configured forge, GitHub first.
    pub fn list(&self) -> Vec<Arc<dyn Forge>> {
        let mut all: Vec<Arc<dyn Forge>> = Vec::new();
        if let Some(g) = &self.github {
            all.push(g.clone());
        }
        if let Some(g) = &self.gitlab {
            all.push(g.clone());
        }
        all
    }
}

/// The reconciler of this configuration: its providers, the forges' runners, the bootstrap.
/// `mayfly status` and friends build the same one when no daemon runs.
pub(crate) async fn build_reconciler(
    config: &Config,
    forges: &Forges,
    store: mayfly_store::Store,
) -> anyhow::Result<mayfly::reconcile::Reconciler> {
    let clock: Arc<dyn mayfly_core::Clock> = Arc::new(SystemClock);
    let runners = mayfly::reconcile::Runners::of(forges.list());
    let mut providers: BTreeMap<String, Arc<dyn mayfly_provider::Provider>> = BTreeMap::new();
    for (name, p) in &config.providers {
        if p.kind == crate::config::ProviderKind::AwsAsg {
            // Not a provider of the planner's: `asg_tasks` scales its group.
            continue;
        }
        let provider = build_provider(config, name, p, &clock)
            .await
            .with_context(|| format!("providers.{name}"))?;
        providers.insert(name.clone(), provider);
    }
    Ok(mayfly::reconcile::Reconciler::new(
        store,
        config.pools(),
        providers,
        runners,
        config.bootstrap.clone(),
        clock,
        mayfly::reconcile::Tuning {
            workers: config.workers,
            confirm_stale: config.intervals.confirm_stale.0,
            refused_retry: config.intervals.refused_retry.0,
            finishing: config.intervals.finishing.0,
            runners_max_age: config.intervals.runners.0,
        },
    ))
}

/// One scaling loop per aws-asg provider, for the one pool it backs.
async fn asg_tasks(
    config: &Config,
    forges: &Forges,
    store: &mayfly_store::Store,
    leadership: Option<watch::Receiver<Leadership>>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    #[cfg(feature = "aws")]
    {
        let mut tasks = Vec::new();
        for (name, p) in &config.providers {
            if p.kind != crate::config::ProviderKind::AwsAsg {
                continue;
            }
            let pool = config
                .pools
                .iter()
                .find(|pool| &pool.provider == name)
                .with_context(|| format!("providers.{name}: no pool uses it"))?;
            let scaler = mayfly_provider_aws::asg::Scaler::new(config.aws_asg(p))
                .await
                .with_context(|| format!("providers.{name}"))?;
            let looped = mayfly::asg::AsgPool {
                scaler,
                pool: pool.to_pool(),
                rules: config.pools().labels,
                store: store.clone(),
                runners: Arc::new(mayfly::reconcile::Runners::of(forges.list())),
                clock: Arc::new(SystemClock),
            };
            info!(provider = %name, pool = %pool.name, "aws-asg: scaling the group on queue depth");
            let leadership = leadership.clone();
            tasks.push(tokio::spawn(
                looped.run_while(move || leads(leadership.as_ref())),
            ));
        }
        Ok(tasks)
    }
    #[cfg(not(feature = "aws"))]
    {
        let _ = (config, forges, store, leadership);
        Ok(Vec::new())
    }
}

/// The provider of `[providers.<name>]`, by its kind.
async fn build_provider(
    config: &Config,
    name: &str,
    p: &crate::config::ProviderConfig,
    clock: &Arc<dyn mayfly_core::Clock>,
) -> anyhow::Result<Arc<dyn mayfly_provider::Provider>> {
    match p.kind {
        #[cfg(feature = "aws")]
        crate::config::ProviderKind::AwsEc2 => {
            let ec2 = mayfly_provider_aws::ec2::Ec2::new(config.aws_ec2(p)).await?;
            Ok(Arc::new(ec2))
        }
        #[cfg(feature = "aws")]
        crate::config::ProviderKind::AwsEcs => {
            let ecs = mayfly_provider_aws::ecs::Ecs::new(config.aws_ecs(p)).await?;
            Ok(Arc::new(ecs))
        }
        crate::config::ProviderKind::Local => {
            let local = mayfly_provider::local::Local::new(config.local(name, p)?)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(Arc::new(local))
        }
        _ => {
            let c = config.hetzner(name, p)?;
            let hetzner = mayfly_provider::hetzner::Hetzner::new(&c, clock.clone())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(Arc::new(hetzner))
        }
    }
}

/// The name of the first shutdown signal received. The handlers are installed when this is
/// called, not when the future is first polled: a signal that comes while the first pass runs
/// is caught, never the default action (which would kill the process mid-step).
pub(crate) fn shutdown_signal()
-> anyhow::Result<impl Future<Output = anyhow::Result<&'static str>> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => Ok("SIGINT"),
                _ = term.recv() => Ok("SIGTERM"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            tokio::signal::ctrl_c()
                .await
                .context("cannot listen for Ctrl-C")?;
            Ok("Ctrl-C")
        })
    }
}
