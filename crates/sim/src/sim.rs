//! The whole simulator: one clock, one call counter, the two fakes, the virtual runners, and the
//! listeners that serve the fakes with the control API beside them.

use crate::clock::Clock;
use crate::github::{Github, GithubConfig, NewJob};
use crate::hetzner::{Hetzner, HetznerConfig};
use crate::runners::{JobSource, RunnerConfig, VirtualRunners};
use crate::stats::Stats;
use crate::trace::{self, TraceJob};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Clone, Debug, Default)]
pub struct SimConfig {
    /// Simulated seconds per real second.
    pub speed: f64,
    pub github: GithubConfig,
    pub hetzner: HetznerConfig,
    pub runners: RunnerConfig,
}

pub struct Sim {
    pub clock: Clock,
    pub stats: Arc<Stats>,
    pub github: Arc<Github>,
    pub hetzner: Arc<Hetzner>,
    pub runners: VirtualRunners,
    replays: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The addresses the fakes listen on once bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listening {
    pub github: SocketAddr,
    pub hetzner: SocketAddr,
}

/// The fake GitHub as the runners' job source.
struct GithubJobs(Arc<Github>);

impl JobSource for GithubJobs {
    fn redeem(&self, user_data: &str, hostname: &str) -> Result<u64, String> {
        self.0
            .redeem(user_data, hostname)
            .map_err(|e| e.to_string())
    }
    fn next_job(&self, runner: u64) -> Option<(u64, Duration)> {
        self.0.next_job(runner).map(|a| (a.job_id, a.duration))
    }
    fn finish_job(&self, runner: u64, job: u64, conclusion: &str) {
        self.0.finish_job(runner, job, conclusion);
    }
    fn runner_lost(&self, runner: u64) {
        self.0.runner_lost(runner);
    }
}

impl Sim {
    /// Builds the fakes and starts the virtual runners; call inside a tokio runtime.
    pub fn start(config: SimConfig) -> Arc<Sim> {
        let speed = if config.speed > 0.0 {
            config.speed
        } else {
            1.0
        };
        let clock = Clock::new(speed);
        let stats = Arc::new(Stats::default());
        let github = Github::new(config.github, clock.clone(), stats.clone());
        let hetzner = Hetzner::new(config.hetzner, clock.clone(), stats.clone());
        let runners = VirtualRunners::start(
            hetzner.clone(),
            Arc::new(GithubJobs(github.clone())),
            clock.clone(),
            config.runners,
        );
        Arc::new(Sim {
            clock,
            stats,
            github,
            hetzner,
            runners,
            replays: Mutex::new(Vec::new()),
        })
    }

    /// Virtual runners on another cloud's machines (moto's instances or tasks), taking the
    /// fake GitHub's jobs on this simulator's clock. Dropping them stops them.
    pub fn runners_on(
        &self,
        machines: Arc<dyn crate::runners::MachineSource>,
        config: RunnerConfig,
    ) -> VirtualRunners {
        VirtualRunners::start(
            machines,
            Arc::new(GithubJobs(self.github.clone())),
            self.clock.clone(),
            config,
        )
    }

    /// Binds both fakes (port 0 picks a free port) and serves them, each with the control API
    /// under `/_sim/`, until the runtime shuts down.
    pub async fn listen(
        self: &Arc<Self>,
        github: SocketAddr,
        hetzner: SocketAddr,
    ) -> std::io::Result<Listening> {
        let gh = TcpListener::bind(github).await?;
        let hz = TcpListener::bind(hetzner).await?;
        let addrs = Listening {
            github: gh.local_addr()?,
            hetzner: hz.local_addr()?,
        };
        let gh_app = self
            .github
            .router()
            .merge(crate::control::router(self.clone()));
        let hz_app = self
            .hetzner
            .router()
            .merge(crate::control::router(self.clone()));
        tokio::spawn(async move {
            if let Err(e) = axum::serve(gh, gh_app).await {
                tracing::error!(error = %e, "fake GitHub stopped");
            }
        });
        tokio::spawn(async move {
            if let Err(e) = axum::serve(hz, hz_app).await {
                tracing::error!(error = %e, "fake Hetzner stopped");
            }
        });
        Ok(addrs)
    }

    /// Enqueues one workflow run of `count` identical jobs; returns their ids.
    pub fn enqueue(
        &self,
        repo: &str,
        labels: &[String],
        duration: Duration,
        count: u32,
    ) -> Vec<u64> {
        let jobs = (0..count.max(1))
            .map(|_| NewJob {
                labels: labels.to_vec(),
                duration,
            })
            .collect();
        self.github.enqueue(repo, jobs)
    }

    /// Replays a trace in the background, from now.
    pub fn replay(self: &Arc<Self>, jobs: Vec<TraceJob>) {
        let sim = self.clone();
        let task = tokio::spawn(async move {
            trace::replay(&jobs, &sim.clock, |s| {
                let jobs = s
                    .jobs
                    .iter()
                    .map(|(labels, duration)| NewJob {
                        labels: labels.clone(),
                        duration: *duration,
                    })
                    .collect();
                sim.github.enqueue(&s.repo, jobs);
            })
            .await;
        });
        let mut replays = self.replays.lock().unwrap_or_else(|e| e.into_inner());
        replays.retain(|t| !t.is_finished());
        replays.push(task);
    }

    /// Whether a replay is still submitting jobs.
    pub fn replaying(&self) -> bool {
        self.replays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|t| !t.is_finished())
    }

    /// Forgets every job, runner, server, bill and count; stops replays.
    pub fn reset(&self) {
        for t in self
            .replays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
        self.github.reset();
        self.hetzner.reset();
        self.stats.reset();
        self.runners.reset_stats();
    }
}
