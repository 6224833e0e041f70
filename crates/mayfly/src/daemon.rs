//! `mayfly run`: opens the store, serves HTTP (webhooks, health, the API, metrics) on `listen` (and `api.listen`), and runs the
//! reconcile loop on its timer or when a webhook wakes it, until Ctrl-C or SIGTERM.

use crate::config::Config;
use anyhow::Context;
use mayfly::demand::Demand;
use mayfly::http;
use mayfly_forge::github::{Client, Repo, SystemClock};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

/// How long requests in flight get to finish once a shutdown signal arrived.
const HTTP_DRAIN: Duration = Duration::from_secs(10);

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
    // One client for the credential: its limiter then sees every request the daemon makes.
    let client = Client::new(&config.github().client).context("cannot set up the GitHub client")?;
    let mut reconciler = build_reconciler(&config, client.clone(), store.clone()).await?;
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
    if secret.is_none() {
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
    );
    api.dashboard = config.dashboard.settings();
    let gh = config.github();
    let hooks = http::router(
        http::Webhooks::new(store.clone(), secret, wake.clone()).serving(http::Served::new(
            &gh.repositories,
            gh.organization.as_deref(),
        )),
    );
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
    let demand = match demand_task(
        &config,
        client.clone(),
        store.clone(),
        wake.clone(),
        demand_stopped,
    ) {
        Ok(task) => task,
        Err(e) => {
            let _ = stop_http.send(());
            return Err(e);
        }
    };

    let asg = match asg_tasks(&config, &client, &store).await {
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
    let stopped = reconcile_loop(
        &wake,
        mayfly_core::Pacer::new(pace),
        clock.as_ref(),
        shutdown,
        async |step| match step {
            Step::Pass(trigger) => Some(match reconciler.pass().await {
                Ok(report) => {
                    debug!(trigger, ?report, "reconcile pass done");
                    report.ended()
                }
                Err(e) => {
                    warn!(trigger, error = %e, "reconcile pass failed; trying again soon");
                    mayfly_core::Ended {
                        unsettled: true,
                        ..mayfly_core::Ended::default()
                    }
                }
            }),
            Step::Recheck => reconciler.recheck().await,
        },
    )
    .await;
    let _ = stop_http.send(());
    let _ = stop_demand.send(true);
    for task in asg {
        task.abort();
    }
    retention.abort();
    if let Some(task) = demand {
        // A pass in flight is cut short: everything it did is in the store already.
        task.abort();
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
    store.close().await;
    stopped?;
    info!("stopped");
    Ok(())
}

/// Polls GitHub and confirms long-queued jobs every `intervals.poll`, when a GitHub credential
/// (token or App) is configured. With polling off, only the confirmation runs.
fn demand_task(
    config: &Config,
    client: Client,
    store: mayfly_store::Store,
    wake: Arc<mayfly::demand::Wake>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
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
                _ = tick.tick() => {
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

/// The reconciler of this configuration: its providers, the forge's runners, the bootstrap.
/// `mayfly status` and friends build the same one when no daemon runs.
pub(crate) async fn build_reconciler(
    config: &Config,
    client: Client,
    store: mayfly_store::Store,
) -> anyhow::Result<mayfly::reconcile::Reconciler> {
    let clock: Arc<dyn mayfly_core::Clock> = Arc::new(SystemClock);
    let runners = mayfly::reconcile::Runners::new(client, config.github());
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
    client: &Client,
    store: &mayfly_store::Store,
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
                runners: Arc::new(mayfly::reconcile::Runners::new(
                    client.clone(),
                    config.github(),
                )),
                clock: Arc::new(SystemClock),
            };
            info!(provider = %name, pool = %pool.name, "aws-asg: scaling the group on queue depth");
            tasks.push(tokio::spawn(looped.run()));
        }
        Ok(tasks)
    }
    #[cfg(not(feature = "aws"))]
    {
        let _ = (config, client, store);
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

/// A pass at once, then passes as `pacer` schedules them (queued jobs, finished jobs, the
/// last pass's deadlines), until `shutdown` resolves. Events during a pass are served by the
/// next one, which `coalesce` keeps apart from the last. A pass in flight finishes before the
/// loop looks at the shutdown signal again: every step it takes is bounded by a timeout.
async fn reconcile_loop(
    wake: &mayfly::demand::Wake,
    mut pacer: mayfly_core::Pacer,
    clock: &dyn mayfly_core::Clock,
    shutdown: impl Future<Output = anyhow::Result<&'static str>>,
    mut step: impl AsyncFnMut(Step) -> Option<mayfly_core::Ended>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let mut trigger = "start";
    loop {
        let now = clock.now();
        if pacer.is_due(now) {
            debug!(trigger, "reconcile pass");
            pacer.started(now);
            if let Some(ended) = step(Step::Pass(trigger)).await {
                pacer.ended(clock.now(), ended);
            }
            trigger = "timer";
            continue;
        }
        tokio::select! {
            () = clock.sleep(pacer.wait(now)) => {}
            () = wake.now.notified() => {
                pacer.queued(clock.now());
                trigger = "demand";
            }
            () = wake.soon.notified() => {
                pacer.finished(clock.now());
                trigger = "finished";
            }
            () = wake.started.notified() => {
                if let Some(ended) = step(Step::Recheck).await {
                    pacer.ended(clock.now(), ended);
                }
            }
            signal = &mut shutdown => {
                // Evaluated outside the macro: a disabled log level would skip the `?`.
                let signal = signal?;
                info!(signal, "stopping");
                return Ok(());
            }
        }
    }
}

/// What the loop asks of the reconciler: a pass, or a check of the last plan on newer news.
enum Step {
    Pass(&'static str),
    Recheck,
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

#[cfg(test)]
mod tests {
    use super::*;

    const PACE: mayfly_core::Pace = mayfly_core::Pace {
        unsettled: Duration::from_millis(5),
        resync: Duration::from_millis(5),
        settle: None,
        coalesce: Duration::ZERO,
    };

    #[tokio::test]
    async fn loop_ends_when_shutdown_resolves() {
        let wake = mayfly::demand::Wake::default();
        let done = reconcile_loop(
            &wake,
            mayfly_core::Pacer::new(PACE),
            &SystemClock,
            async { Ok("test") },
            async |_| Some(mayfly_core::Ended::default()),
        );
        tokio::time::timeout(Duration::from_secs(5), done)
            .await
            .expect("loop stopped")
            .expect("clean stop");
    }

    #[tokio::test]
    async fn a_failing_signal_handler_is_an_error() {
        let r = reconcile_loop(
            &mayfly::demand::Wake::default(),
            mayfly_core::Pacer::new(PACE),
            &SystemClock,
            async { Err(anyhow::anyhow!("no signals")) },
            async |_| Some(mayfly_core::Ended::default()),
        )
        .await;
        assert!(r.is_err());
    }
}
