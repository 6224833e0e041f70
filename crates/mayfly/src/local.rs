//! The whole controller in-process against the simulator: the webhook receiver, the poller and
//! the reconciler on the simulator's clock. `mayfly demo` and the end-to-end tests use it.

use crate::demand::{Demand, DemandReport, Wake};
use crate::gitlab_demand::GitlabDemand;
use crate::http::{GitlabHooks, Webhooks, router};
use crate::reconcile::{PassError, PassReport, Reconciler, Runners, Tuning};
use anyhow::Context;
use mayfly_core::{Clock, Ended, Pace, Pacer, Pools, Secret};
use mayfly_forge::github::{
    AuthConfig, Client, ClientConfig, GithubConfig, LimitsConfig, Registration, Repo,
};
use mayfly_forge::gitlab::GitlabConfig;
use mayfly_forge::{Forge, GithubForge, GitlabForge};
use mayfly_provider::Provider;
use mayfly_provider::bootstrap::BootstrapConfig;
use mayfly_provider::hetzner::{Hetzner, HetznerConfig};
use mayfly_sim::{Listening, Sim, SimConfig};
use mayfly_store::Store;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How the in-process controller is set up.
pub struct Setup {
    pub pools: Pools,
    pub repos: Vec<String>,
    /// Receive webhooks (the simulator delivers them) as well as polling.
    pub webhook_secret: Option<String>,
    pub workers: usize,
    pub confirm_after: Duration,
    /// How often a repository whose webhooks are trusted is polled (`Demand::backstop`).
    pub poll_backstop: Duration,
    /// How old the runner lists a pass that only creates may plan with get
    /// (`Tuning::runners_max_age`); zero reads them every pass.
    pub runners_max_age: Duration,
    /// GitLab projects (`group/project`) served beside the repositories: made at the fake
    /// GitLab, their jobs found by its Job Hooks (with `webhook_secret`) and by polling.
    pub gitlab_projects: Vec<String>,
}

/// A controller wired to a running simulator.
pub struct Controller {
    pub store: Store,
    pub reconciler: Reconciler,
    pub demand: Demand,
    /// GitLab's demand, when GitLab projects are served.
    pub gitlab: Option<GitlabDemand>,
    pub wake: Arc<Wake>,
    pub clock: mayfly_sim::clock::Clock,
    /// The fake GitHub's runners as the controller reads them: an aws-asg pool's loop
    /// (`crate::asg::AsgPool`) run beside the reconciler takes these.
    pub runners: Arc<Runners>,
}

/// The GitHub token the simulator accepts from the in-process controller.
pub const GITHUB_TOKEN: &str = "local-github-token";
/// The GitLab token the simulator accepts from the in-process controller.
pub const GITLAB_TOKEN: &str = "local-gitlab-token";

/// The simulator and the controller in one process, the state in a temporary directory that
/// goes with it.
pub struct Local {
    pub sim: Arc<Sim>,
    /// Where the fakes listen.
    pub at: Listening,
    pub controller: Controller,
    _state: tempfile::TempDir,
}

impl Local {
    /// Starts the simulator (on free loopback ports), a SQLite store in a temporary directory,
    /// and the controller against both; call inside a tokio runtime.
    pub async fn start(sim_config: SimConfig, setup: Setup) -> anyhow::Result<Local> {
        Local::start_with(sim_config, setup, BTreeMap::new()).await
    }

    /// As `start`, with more providers beside the simulated Hetzner one (an AWS provider
    /// against moto), named as the pools name them.
    pub async fn start_with(
        mut sim_config: SimConfig,
        setup: Setup,
        more: BTreeMap<String, Arc<dyn Provider>>,
    ) -> anyhow::Result<Local> {
        sim_config.github.tokens = vec![GITHUB_TOKEN.into()];
        sim_config.gitlab.tokens = vec![mayfly_sim::gitlab::AccessToken::full(GITLAB_TOKEN)];
        let hetzner_token = sim_config.hetzner.token.clone();
        let sim = Sim::start(sim_config);
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let at = sim
            .listen(any, any)
            .await
            .context("cannot start the simulator")?;
        let state = tempfile::tempdir().context("cannot make a temporary state directory")?;
        let db = state.path().join("mayfly.db");
        let store = Store::open(db.to_str().context("temporary path is not UTF-8")?)
            .await
            .context("cannot open the state store")?;
        let controller = Controller::start(&sim, at, store, &hetzner_token, setup, more).await?;
        Ok(Local {
            sim,
            at,
            controller,
            _state: state,
        })
    }
}

impl Controller {
    /// Builds the controller against `sim` listening at `at`; with a webhook secret, serves the
    /// receiver on a free port and registers it with the fake GitHub.
    async fn start(
        sim: &Sim,
        at: Listening,
        store: Store,
        hetzner_token: &str,
        setup: Setup,
        more: BTreeMap<String, Arc<dyn Provider>>,
    ) -> anyhow::Result<Controller> {
        let clock = sim.clock.clone();
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let client = Client::with_clock(
            &ClientConfig {
                api_url: format!("http://{}", at.github),
                auth: AuthConfig::Token {
                    token: Secret::new(GITHUB_TOKEN),
                },
                limits: LimitsConfig {
                    // The fake's write limit is the real one; no need to space writes further.
                    write_interval_ms: 0,
                    ..LimitsConfig::default()
                },
            },
            shared.clone(),
        )?;
        let forge = GithubConfig {
            client: ClientConfig {
                api_url: client.api_url().to_string(),
                auth: AuthConfig::Token {
                    token: Secret::new(GITHUB_TOKEN),
                },
                limits: LimitsConfig::default(),
            },
            repositories: setup.repos.clone(),
            organization: None,
            enterprise: None,
            runner_group: None,
            registration: Registration::Jit,
        };
        let hetzner = Hetzner::new(
            &HetznerConfig {
                endpoint: format!("http://{}/v1", at.hetzner),
                ..HetznerConfig::new(Secret::new(hetzner_token))
            },
            shared.clone(),
        )?;
        let mut providers = more;
        providers.insert(PROVIDER.into(), Arc::new(hetzner));
        let wake = Arc::new(Wake::default());
        let repos = setup
            .repos
            .iter()
            .map(|r| Repo::parse(r))
            .collect::<Result<Vec<_>, _>>()?;
        let demand = Demand::new(
            store.clone(),
            client.clone(),
            repos,
            wake.clone(),
            setup.confirm_after,
        )
        .backstop(setup.poll_backstop);
        if let Some(secret) = &setup.webhook_secret {
            let hooks = Webhooks::new(
                store.clone(),
                Some(Secret::new(secret.clone())),
                wake.clone(),
            )
            .with_clock(shared.clone())
            .serving(crate::http::Served::new(&setup.repos, None));
            let addr = mayfly_sim::serve_local(router(hooks)).await?;
            sim.github.set_config(|c| {
                c.webhooks.push(mayfly_sim::github::WebhookTarget {
                    url: format!("http://{addr}/webhooks/github"),
                    secret: secret.clone(),
                });
            });
        }
        let mut forges: Vec<Arc<dyn Forge>> =
            vec![Arc::new(GithubForge::new(client.clone(), forge.clone()))];
        let gitlab = if setup.gitlab_projects.is_empty() {
            None
        } else {
            for path in &setup.gitlab_projects {
                sim.gitlab
                    .project(path)
                    .with_context(|| format!("{path} is not a GitLab project path"))?;
            }
            let config: GitlabConfig = serde_json::from_value(serde_json::json!({
                "url": format!("http://{}", at.gitlab),
                "token": GITLAB_TOKEN,
                "projects": setup.gitlab_projects,
            }))?;
            let gl_client =
                mayfly_forge::gitlab::Client::with_clock(&config.client(), shared.clone())?;
            let gl = Arc::new(GitlabForge::resolve(gl_client, &config).await?);
            if let Some(secret) = &setup.webhook_secret {
                let hooks = Webhooks::new(store.clone(), None, wake.clone())
                    .with_clock(shared.clone())
                    .with_gitlab(GitlabHooks {
                        secret: Some(Secret::new(secret.clone())),
                        forge: gl.clone(),
                    });
                let addr = mayfly_sim::serve_local(router(hooks)).await?;
                sim.gitlab.set_config(|c| {
                    c.webhooks.push(mayfly_sim::gitlab::HookTarget {
                        url: format!("http://{addr}/webhooks/gitlab"),
                        token: secret.clone(),
                    });
                });
            }
            forges.push(gl.clone());
            Some(
                GitlabDemand::new(store.clone(), gl, true, wake.clone(), setup.confirm_after)
                    .backstop(setup.poll_backstop),
            )
        };
        let runners = Arc::new(Runners::of(forges));
        let mut reconciler = Reconciler::new(
            store.clone(),
            setup.pools,
            providers,
            Runners::of(runners.forges().to_vec()),
            BootstrapConfig::default(),
            shared,
            Tuning {
                workers: setup.workers,
                runners_max_age: setup.runners_max_age,
                ..Tuning::default()
            },
        );
        reconciler.report_evidence_to(wake.clone());
        Ok(Controller {
            store,
            reconciler,
            demand,
            wake,
            clock,
            runners,
            gitlab,
        })
    }

    /// Runs the daemon's loop on the simulator's clock: a poll every `cadence.poll`, passes as
    /// the daemon's `Pacer` schedules them (webhooks and polls that find queued jobs, finished
    /// jobs, the last pass's deadlines), until `done` says so after a pass. Every pass's outcome
    /// goes to `seen`.
    pub async fn run(
        &mut self,
        cadence: Cadence,
        mut seen: impl FnMut(&Result<PassReport, PassError>, Option<&DemandReport>) -> bool,
    ) {
        let mut pace = cadence.pace;
        if !self.reconciler.settles() {
            pace.settle = None;
        }
        let mut pacer = Pacer::new(pace);
        let mut next_poll = self.clock.now();
        let mut polled = None;
        loop {
            let now = self.clock.now();
            if now >= next_poll {
                next_poll = now.plus(cadence.poll);
                let mut report = self.demand.pass(now).await;
                if let Some(gitlab) = &mut self.gitlab {
                    let gl = gitlab.pass(self.clock.now()).await;
                    report.urgent += gl.urgent;
                    report.finished += gl.finished;
                    report.started += gl.started;
                }
                if report.urgent > 0 {
                    pacer.queued(self.clock.now());
                }
                if report.finished > 0 {
                    pacer.finished(self.clock.now());
                }
                if report.started > 0
                    && let Some(ended) = self.reconciler.recheck().await
                {
                    pacer.ended(self.clock.now(), ended);
                }
                polled = Some(report);
            }
            let now = self.clock.now();
            if pacer.is_due(now) {
                pacer.started(now);
                let pass = self.reconciler.pass().await;
                if seen(&pass, polled.take().as_ref()) {
                    return;
                }
                pacer.ended(
                    self.clock.now(),
                    match &pass {
                        Ok(report) => report.ended(),
                        Err(_) => Ended {
                            unsettled: true,
                            ..Ended::default()
                        },
                    },
                );
                continue;
            }
            let until = pacer.due().min(next_poll);
            tokio::select! {
                () = self.clock.sleep(until.since(now)) => {}
                // A webhook, or a poll that found a queued job.
                () = self.wake.now.notified() => pacer.queued(self.clock.now()),
                () = self.wake.soon.notified() => pacer.finished(self.clock.now()),
                // A job started: its machine's registration deadline may be moot.
                () = self.wake.started.notified() => {
                    if let Some(ended) = self.reconciler.recheck().await {
                        pacer.ended(self.clock.now(), ended);
                    }
                }
                // A pass found the store behind GitHub: confirm those jobs now.
                () = self.wake.evidence.notified() => {
                    let report = self.demand.evidence(self.clock.now()).await;
                    if report.urgent > 0 {
                        pacer.queued(self.clock.now());
                    }
                    if report.finished > 0 {
                        pacer.finished(self.clock.now());
                    }
                }
            }
        }
    }
}

/// How often the loop looks without being woken, in simulated time.
#[derive(Clone, Copy, Debug)]
pub struct Cadence {
    /// The loop's intervals; `settle` applies only without recycling (as in the daemon).
    pub pace: Pace,
    pub poll: Duration,
}

pub use mayfly_controller::sample::{PROVIDER, pool, pools};
