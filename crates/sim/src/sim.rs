//! The whole simulator: one clock, one call counter, the fakes (GitHub, GitLab, Hetzner Cloud),
//! the virtual runners, and the listeners that serve the fakes with the control API beside them.

use crate::clock::Clock;
use crate::github::{Github, GithubConfig, NewJob};
use crate::gitlab::{self, Gitlab, GitlabConfig};
use crate::hetzner::{Hetzner, HetznerConfig};
use crate::runners::{JobSource, RunnerConfig, VirtualRunners};
use crate::stats::Stats;
use crate::trace::{self, TraceForge, TraceJob};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Clone, Debug, Default)]
pub struct SimConfig {
    /// Simulated seconds per real second.
    pub speed: f64,
    pub github: GithubConfig,
    pub gitlab: GitlabConfig,
    pub hetzner: HetznerConfig,
    pub runners: RunnerConfig,
}

pub struct Sim {
    pub clock: Clock,
    pub stats: Arc<Stats>,
    pub github: Arc<Github>,
    pub gitlab: Arc<Gitlab>,
    pub hetzner: Arc<Hetzner>,
    pub runners: VirtualRunners,
    replays: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The addresses the fakes listen on once bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listening {
    pub github: SocketAddr,
    pub hetzner: SocketAddr,
    pub gitlab: SocketAddr,
}

/// Where `listen_on` binds each fake (port 0 picks a free port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    pub github: SocketAddr,
    pub hetzner: SocketAddr,
    pub gitlab: SocketAddr,
}

/// Runner ids of GitLab sessions carry this bit, so one runner population serves both forges:
/// a machine whose user data starts gitlab-runner goes to the fake GitLab, any other to GitHub.
const GITLAB_RUNNER: u64 = 1 << 62;

/// Both forges as the runners' job source.
struct Forges {
    github: Arc<Github>,
    gitlab: Arc<Gitlab>,
}

impl JobSource for Forges {
    fn redeem(&self, user_data: &str, hostname: &str) -> Result<u64, String> {
        if gitlab::single::looks_like(user_data) {
            return self
                .gitlab
                .redeem(user_data)
                .map(|s| s | GITLAB_RUNNER)
                .map_err(|e| e.to_string());
        }
        self.github
            .redeem(user_data, hostname)
            .map_err(|e| e.to_string())
    }
    fn next_job(&self, runner: u64) -> Option<(u64, Duration)> {
        if runner & GITLAB_RUNNER != 0 {
            return self
                .gitlab
                .next_job(runner & !GITLAB_RUNNER)
                .map(|a| (a.job_id, a.duration));
        }
        self.github.next_job(runner).map(|a| (a.job_id, a.duration))
    }
    fn finish_job(&self, runner: u64, job: u64, conclusion: &str) {
        if runner & GITLAB_RUNNER != 0 {
            self.gitlab
                .finish_job(runner & !GITLAB_RUNNER, job, conclusion);
        } else {
            self.github.finish_job(runner, job, conclusion);
        }
    }
    fn runner_lost(&self, runner: u64) {
        if runner & GITLAB_RUNNER != 0 {
            self.gitlab.runner_lost(runner & !GITLAB_RUNNER);
        } else {
            self.github.runner_lost(runner);
        }
    }
    fn wait_timeout(&self, runner: u64) -> Option<Duration> {
        (runner & GITLAB_RUNNER != 0)
            .then(|| self.gitlab.wait_timeout(runner & !GITLAB_RUNNER))
            .flatten()
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
        let gitlab = Gitlab::new(config.gitlab, clock.clone(), stats.clone());
        let hetzner = Hetzner::new(config.hetzner, clock.clone(), stats.clone());
        let runners = VirtualRunners::start(
            hetzner.clone(),
            Arc::new(Forges {
                github: github.clone(),
                gitlab: gitlab.clone(),
            }),
            clock.clone(),
            config.runners,
        );
        Arc::new(Sim {
            clock,
            stats,
            github,
            gitlab,
            hetzner,
            runners,
            replays: Mutex::new(Vec::new()),
        })
    }

    /// Virtual runners on another cloud's machines (moto's instances or tasks), taking the
    /// fake GitHub's and the fake GitLab's jobs on this simulator's clock. Dropping them stops
    /// them.
    pub fn runners_on(
        &self,
        machines: Arc<dyn crate::runners::MachineSource>,
        config: RunnerConfig,
    ) -> VirtualRunners {
        VirtualRunners::start(
            machines,
            Arc::new(Forges {
                github: self.github.clone(),
                gitlab: self.gitlab.clone(),
            }),
            self.clock.clone(),
            config,
        )
    }

    /// Binds the fakes (port 0 picks a free port; GitLab on a free port of GitHub's address)
    /// and serves them, each with the control API under `/_sim/`, until the runtime shuts down.
    pub async fn listen(
        self: &Arc<Self>,
        github: SocketAddr,
        hetzner: SocketAddr,
    ) -> std::io::Result<Listening> {
        let gitlab = SocketAddr::new(github.ip(), 0);
        self.listen_on(Addresses {
            github,
            hetzner,
            gitlab,
        })
        .await
    }

    /// [`Sim::listen`] with GitLab's address too.
    pub async fn listen_on(self: &Arc<Self>, at: Addresses) -> std::io::Result<Listening> {
        let gh = TcpListener::bind(at.github).await?;
        let hz = TcpListener::bind(at.hetzner).await?;
        let gl = TcpListener::bind(at.gitlab).await?;
        let addrs = Listening {
            github: gh.local_addr()?,
            hetzner: hz.local_addr()?,
            gitlab: gl.local_addr()?,
        };
        let gl_app = self
            .gitlab
            .router()
            .merge(crate::control::router(self.clone()));
        tokio::spawn(async move {
            if let Err(e) = axum::serve(gl, gl_app).await {
                tracing::error!(error = %e, "fake GitLab stopped");
            }
        });
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
            trace::replay(&jobs, &sim.clock, |s| match s.forge {
                TraceForge::Github => {
                    let jobs = s
                        .jobs
                        .iter()
                        .map(|(labels, duration)| NewJob {
                            labels: labels.clone(),
                            duration: *duration,
                        })
                        .collect();
                    sim.github.enqueue(&s.repo, jobs);
                }
                TraceForge::Gitlab => {
                    let jobs = s
                        .jobs
                        .iter()
                        .enumerate()
                        .map(|(i, (tags, duration))| gitlab::NewJob {
                            name: format!("job-{}", i + 1),
                            stage: 0,
                            tags: tags.clone(),
                            duration: *duration,
                            protected: false,
                        })
                        .collect();
                    if sim.gitlab.enqueue(&s.repo, jobs).is_none() {
                        tracing::warn!(project = %s.repo, "trace: not a GitLab project path");
                    }
                }
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

    /// Forgets every job, runner, server, bill and count of every fake; stops replays.
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
        self.gitlab.reset();
        self.hetzner.reset();
        self.stats.reset();
        self.runners.reset_stats();
    }
}
