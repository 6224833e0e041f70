//! The fake GitHub (REST v3 subset, repository and organization scope, webhooks).
//! In-process hooks let virtual runners redeem credentials, take jobs and finish them.

pub mod actions;
mod auth;
mod config;
mod created;
mod jit;
mod paging;
mod ratelimit;
mod render;
mod routes;
mod state;
mod webhooks;

pub use config::{AppConfig, GithubConfig, WebhookFaults, WebhookTarget};
pub use webhooks::signature;

use crate::clock::Clock;
use crate::stats::Stats;
use serde::Serialize;
use serde_json::json;
use state::{Credential, JobEvent, State};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

/// One job of a workflow run to enqueue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    pub labels: Vec<String>,
    /// How long the job runs once a runner has it (simulated).
    pub duration: Duration,
}

/// A job handed to a runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssignedJob {
    pub job_id: u64,
    pub duration: Duration,
}

/// Why user data did not yield a runner. The texts never include the credential.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    #[error("no runner credential found in the user data")]
    NoCredential,
    #[error("the runner credential is unknown to this GitHub")]
    Unknown,
    #[error("the runner credential was already used")]
    AlreadyUsed,
    #[error("the registration token has expired")]
    Expired,
    #[error("the runner this JIT config was made for no longer exists")]
    RunnerGone,
    #[error("a runner named {0:?} already exists")]
    NameTaken(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobReport {
    pub id: u64,
    pub run_id: u64,
    pub repo: String,
    pub labels: Vec<String>,
    pub status: String,
    pub conclusion: Option<String>,
    pub queued_ms: i64,
    pub started_ms: Option<i64>,
    pub completed_ms: Option<i64>,
    pub runner_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunnerReport {
    pub id: u64,
    pub name: String,
    /// `repo:owner/name` or `org:name`.
    pub scope: String,
    pub status: String,
    pub busy: bool,
    pub labels: Vec<String>,
}

/// One fake GitHub: its state behind one lock, so every API call and runner step is atomic.
pub struct Github {
    config: Arc<Mutex<GithubConfig>>,
    state: Mutex<State>,
    clock: Clock,
    stats: Arc<Stats>,
    outbox: UnboundedSender<webhooks::Event>,
}

impl Github {
    /// Call inside a tokio runtime: spawns the webhook delivery task, which ends with the fake.
    pub fn new(config: GithubConfig, clock: Clock, stats: Arc<Stats>) -> Arc<Github> {
        let config = Arc::new(Mutex::new(config));
        let (outbox, rx) = unbounded_channel();
        tokio::spawn(webhooks::run(rx, config.clone(), clock.clone()));
        let gh = Arc::new(Github {
            config,
            state: Mutex::new(State::default()),
            clock,
            stats,
            outbox,
        });
        tokio::spawn(actions::sweep(Arc::downgrade(&gh)));
        gh
    }

    /// Serves the REST API under the configured prefix; every call counted as service `github`.
    /// Beside it, the Actions service that runner programs talk to (`/_sim/actions`).
    pub fn router(self: &Arc<Self>) -> axum::Router {
        routes::router(self.clone())
    }

    /// Serves the API on a free loopback port; returns its base URL, prefix included
    /// (`http://127.0.0.1:PORT/api/v3` for an Enterprise Server stand-in).
    pub async fn serve_local(self: &Arc<Self>) -> std::io::Result<String> {
        let addr = crate::serve_local(self.router()).await?;
        Ok(format!("http://{addr}{}", self.config().api_prefix))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn config(&self) -> MutexGuard<'_, GithubConfig> {
        self.config.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_config(&self, f: impl FnOnce(&mut GithubConfig)) {
        f(&mut self.config());
    }

    /// Whether a credential is a configured token or a live installation token. Locks the
    /// config and the state one after the other, never both: `notify` takes them state first.
    fn accepts(&self, token: &str, now_ms: i64) -> bool {
        let configured = self.config().tokens.iter().any(|t| t == token);
        configured
            || self
                .lock()
                .installation_tokens
                .get(token)
                .is_some_and(|exp| *exp > now_ms)
    }

    /// Forgets every repository, run, job, runner, credential and budget; keeps the config.
    pub fn reset(&self) {
        let mut st = self.lock();
        let base_url = st.base_url.take();
        *st = State::default();
        st.base_url = base_url;
    }

    /// One workflow run (queued) holding `jobs` in `repo` (`owner/name`); returns the job ids.
    pub fn enqueue(&self, repo: &str, jobs: Vec<NewJob>) -> Vec<u64> {
        let now = self.clock.now_ms();
        let (owner, name) = repo.split_once('/').unwrap_or(("sim", repo));
        let mut sha = [0u8; 20];
        rand::Rng::fill(&mut rand::rng(), &mut sha);
        let mut st = self.lock();
        let repo = st.repo(owner, name, now);
        let jobs = jobs.into_iter().map(|j| (j.labels, j.duration)).collect();
        let ids = st.enqueue(&repo, jobs, hex::encode(sha), now);
        for id in &ids {
            self.notify(&mut st, JobEvent::Queued(*id));
        }
        ids
    }

    /// Registers a runner from a single-use credential this fake issued, found in `user_data`.
    pub fn redeem(&self, user_data: &str, hostname: &str) -> Result<u64, RedeemError> {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let mut unknown = jit::flag(user_data, "--token").is_some();
        for word in jit::candidates(user_data) {
            let Some(credential) = st.credentials.get(word).cloned() else {
                unknown |= jit::looks_like_jit(word);
                continue;
            };
            let runner = match credential {
                Credential::Jit { used: true, .. }
                | Credential::Registration { used: true, .. } => {
                    return Err(RedeemError::AlreadyUsed);
                }
                Credential::Registration { expires_ms, .. } if expires_ms <= now => {
                    return Err(RedeemError::Expired);
                }
                Credential::Jit { runner_id, .. } => {
                    let runner = st
                        .runners
                        .get_mut(&runner_id)
                        .ok_or(RedeemError::RunnerGone)?;
                    runner.online = true;
                    runner_id
                }
                Credential::Registration { scope, .. } => {
                    let name =
                        jit::flag(user_data, "--name").unwrap_or_else(|| hostname.to_string());
                    if st.name_taken(&scope, &name) {
                        return Err(RedeemError::NameTaken(name));
                    }
                    let mut labels = vec!["self-hosted".to_string()];
                    if let Some(l) = jit::flag(user_data, "--labels") {
                        labels.extend(
                            l.split(',')
                                .map(str::trim)
                                .filter(|l| !l.is_empty())
                                .map(str::to_string),
                        );
                    }
                    let id = st.add_runner(&name, scope, &labels, true);
                    // `config.sh` without `--ephemeral` makes a runner that takes job after job.
                    if let Some(r) = st.runners.get_mut(&id) {
                        r.ephemeral = user_data.split_whitespace().any(|w| w == "--ephemeral");
                    }
                    id
                }
            };
            if let Some(Credential::Jit { used, .. } | Credential::Registration { used, .. }) =
                st.credentials.get_mut(word)
            {
                *used = true;
            }
            return Ok(runner);
        }
        Err(if unknown {
            RedeemError::Unknown
        } else {
            RedeemError::NoCredential
        })
    }

    /// The oldest queued job this runner satisfies, now in progress on it.
    pub fn next_job(&self, runner_id: u64) -> Option<AssignedJob> {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let (job_id, duration) = st.assign(runner_id, now)?;
        self.notify(&mut st, JobEvent::InProgress(job_id));
        Some(AssignedJob { job_id, duration })
    }

    /// The job is done; an ephemeral runner deregisters, as `run.sh` does after one job, and
    /// a long-lived one is idle again.
    pub fn finish_job(&self, runner_id: u64, job_id: u64, conclusion: &str) {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        if let Some(r) = st.runners.get_mut(&runner_id)
            && r.job == Some(job_id)
        {
            if r.ephemeral {
                st.runners.remove(&runner_id);
            } else {
                r.job = None;
            }
        }
        if st.complete(job_id, conclusion, now) {
            self.notify(&mut st, JobEvent::Completed(job_id));
        }
    }

    /// Cancels a job that is still queued, as a person would on GitHub; with `webhooks` false
    /// none is sent (the fault "a job cancelled while its webhooks were lost"). False when the
    /// job is unknown or not queued.
    pub fn cancel(&self, job_id: u64, webhooks: bool) -> bool {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        if st.jobs.get(&job_id).is_none_or(|j| j.status != "queued") {
            return false;
        }
        let done = st.complete(job_id, "cancelled", now);
        if done && webhooks {
            self.notify(&mut st, JobEvent::Completed(job_id));
        }
        done
    }

    /// The runner's machine died: the runner goes offline and its job fails.
    pub fn runner_lost(&self, runner_id: u64) {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let Some(runner) = st.runners.get_mut(&runner_id) else {
            return;
        };
        runner.online = false;
        if let Some(job_id) = runner.job.take()
            && st.complete(job_id, "failure", now)
        {
            self.notify(&mut st, JobEvent::Completed(job_id));
        }
    }

    pub fn jobs(&self) -> Vec<JobReport> {
        let st = self.lock();
        st.jobs
            .values()
            .map(|j| JobReport {
                id: j.id,
                run_id: j.run_id,
                repo: j.repo.clone(),
                labels: j.labels.clone(),
                status: j.status.to_string(),
                conclusion: j.conclusion.clone(),
                queued_ms: j.queued_ms,
                started_ms: j.started_ms,
                completed_ms: j.completed_ms,
                runner_name: j.runner_name.clone(),
            })
            .collect()
    }

    pub fn runners(&self) -> Vec<RunnerReport> {
        let st = self.lock();
        st.runners
            .values()
            .map(|r| RunnerReport {
                id: r.id,
                name: r.name.clone(),
                scope: r.scope.label(),
                status: if r.online { "online" } else { "offline" }.to_string(),
                busy: r.busy(),
                labels: r.labels.iter().map(|(l, _)| l.clone()).collect(),
            })
            .collect()
    }

    /// Queues the workflow_job webhook for a job's change, payload as of now.
    fn notify(&self, st: &mut State, event: JobEvent) {
        let (action, job_id) = match event {
            JobEvent::Queued(id) => ("queued", id),
            JobEvent::InProgress(id) => ("in_progress", id),
            JobEvent::Completed(id) => ("completed", id),
        };
        let (has_targets, prefix, installation) = {
            let c = self.config();
            (
                !c.webhooks.is_empty(),
                c.api_prefix.clone(),
                c.app.as_ref().map(|a| a.installation_id),
            )
        };
        if !has_targets {
            return;
        }
        let Some(job) = st.jobs.get(&job_id).cloned() else {
            return;
        };
        let Some(repo) = st.repo_of(&job.repo).cloned() else {
            return;
        };
        let base = st
            .base_url
            .clone()
            .unwrap_or_else(|| format!("https://api.github.com{prefix}"));
        let org_id = st.org_id(&repo.owner);
        let mut payload = json!({
            "action": action,
            "workflow_job": render::job(&base, &job, st.runs.get(&job.run_id)),
            "repository": render::webhook_repository(&base, &repo),
            "organization": render::organization(&base, &repo.owner, org_id),
            "sender": render::owner(&base, &repo.owner, org_id),
        });
        if let (Some(id), Some(m)) = (installation, payload.as_object_mut()) {
            m.insert(
                "installation".into(),
                json!({ "id": id, "node_id": format!("MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u{id}") }),
            );
        }
        let body = payload.to_string().into_bytes();
        // The receiver lives as long as this fake; a send error only means it is shutting down.
        let _ = self.outbox.send(webhooks::Event {
            body,
            job: job_id,
            queued: action == "queued",
            last: action == "completed",
        });
    }
}
