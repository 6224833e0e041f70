//! The fake GitLab (REST API v4 subset: groups, projects, jobs, runner records, hooks; the
//! runner API of `gitlab-runner`; Job Hook webhooks; rate limits and faults).
//! In-process hooks let virtual runners verify their token, take jobs and report them.

mod config;
mod paging;
mod ratelimit;
mod render;
mod routes;
mod runners;
pub mod single;
mod state;
mod tokens;
mod webhooks;

pub use config::{AccessToken, ApiFaults, GitlabConfig, HookTarget, WebhookFaults};
pub use state::NewJob;

use crate::clock::Clock;
use crate::stats::Stats;
use rand::SeedableRng;
use rand::rngs::StdRng;
use runners::{Request, Update, Updated};
use serde::Serialize;
use state::{HookOwner, State, Status};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

/// How often (simulated) the time-driven transitions are looked at.
const SWEEP_EVERY_MS: i64 = 500;

/// A job handed to a virtual runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssignedJob {
    pub job_id: u64,
    pub duration: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobReport {
    pub id: u64,
    pub pipeline_id: u64,
    pub project_id: u64,
    /// The project's full path.
    pub project: String,
    pub name: String,
    pub tags: Vec<String>,
    pub status: String,
    pub failure_reason: Option<String>,
    pub created_ms: i64,
    pub queued_ms: Option<i64>,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub runner_id: Option<u64>,
    /// The runner's description (mayfly: the instance name).
    pub runner_description: Option<String>,
    /// Handed to a runner that has not confirmed it yet.
    pub awaiting_ack: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunnerReport {
    pub id: u64,
    pub description: String,
    pub runner_type: String,
    /// The group's or project's full path; empty for an instance runner.
    pub owner: String,
    pub tags: Vec<String>,
    pub paused: bool,
    pub status: String,
    pub managers: usize,
    /// Jobs running (or handed over and not yet confirmed) on it.
    pub jobs: Vec<u64>,
}

/// Why user data did not yield a runner. The texts never include the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    #[error(transparent)]
    CommandLine(#[from] single::SingleError),
    #[error("the runner authentication token is unknown to this GitLab (403)")]
    Forbidden,
    #[error("virtual runners take one job per boot: run-single needs --max-builds 1, got {0}")]
    NotSingleUse(u32),
}

/// A virtual runner's session: the record it verified against and its host's system id.
#[derive(Clone, Debug)]
struct Session {
    token: String,
    system_id: String,
    wait_timeout: Option<Duration>,
    job: Option<(u64, String)>,
    /// The queue version of the last empty answer, sent back as gitlab-runner sends
    /// `X-GitLab-Last-Update`: nothing new to look at answers at once.
    last_update: Option<String>,
}

/// One fake GitLab: its state behind one lock, so every API call and runner step is atomic.
pub struct Gitlab {
    config: Arc<Mutex<GitlabConfig>>,
    state: Mutex<State>,
    clock: Clock,
    stats: Arc<Stats>,
    outbox: UnboundedSender<webhooks::Event>,
    sessions: Mutex<HashMap<u64, Session>>,
    next_session: Mutex<u64>,
    /// Draws of the API fault shares.
    fault_rng: Mutex<(u64, StdRng)>,
}

impl Gitlab {
    /// Call inside a tokio runtime: spawns the webhook delivery task, which ends with the fake.
    pub fn new(config: GitlabConfig, clock: Clock, stats: Arc<Stats>) -> Arc<Gitlab> {
        let seed = config.api_faults.seed;
        let config = Arc::new(Mutex::new(config));
        let (outbox, rx) = unbounded_channel();
        tokio::spawn(webhooks::run(rx, config.clone(), clock.clone()));
        Arc::new(Gitlab {
            config,
            state: Mutex::new(State::default()),
            clock,
            stats,
            outbox,
            sessions: Mutex::new(HashMap::new()),
            next_session: Mutex::new(0),
            fault_rng: Mutex::new((seed, StdRng::seed_from_u64(seed))),
        })
    }

    /// Serves the REST API under `/api/v4`; every call counted as service `gitlab`.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        routes::router(self.clone())
    }

    /// Serves the fake on a free loopback port; returns the instance URL (`http://127.0.0.1:PORT`,
    /// the API under `/api/v4`).
    pub async fn serve_local(self: &Arc<Self>) -> std::io::Result<String> {
        let addr = crate::serve_local(self.router()).await?;
        Ok(format!("http://{addr}"))
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The state, after the time-driven transitions due by now (and their webhooks). Never
    /// lock the state while holding the config: `flush` reads the config under the state's lock.
    fn lock(&self) -> MutexGuard<'_, State> {
        let (ack, stuck) = {
            let c = self.config();
            (c.ack_timeout, c.stuck_timeout)
        };
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Their deadlines are minutes long: looking twice a simulated second is soon enough,
        // and spares the scan to the hundreds of runners asking for jobs every second.
        let now = self.clock.now_ms();
        if now >= st.next_sweep_ms {
            st.sweep(ack, stuck, now);
            st.next_sweep_ms = now + SWEEP_EVERY_MS;
        }
        if !st.events.is_empty() {
            self.flush(&mut st);
        }
        st
    }

    /// Takes the lock once, so that pending transitions and their webhooks go out.
    fn settle(&self) {
        drop(self.lock());
    }

    pub(crate) fn config(&self) -> MutexGuard<'_, GitlabConfig> {
        self.config.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_config(&self, f: impl FnOnce(&mut GitlabConfig)) {
        f(&mut self.config());
    }

    /// Forgets every group, project, job, runner, hook and budget; keeps the config.
    pub fn reset(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let origin = st.origin.take();
        *st = State::default();
        st.origin = origin;
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The project `group[/sub…]/name` (created with its groups on first use); its id.
    pub fn project(&self, full_path: &str) -> Option<u64> {
        let now = self.clock.now_ms();
        self.lock().project(full_path, now)
    }

    /// The group (created on first use); its id.
    pub fn group(&self, full_path: &str) -> u64 {
        let now = self.clock.now_ms();
        self.lock().group(full_path, now)
    }

    /// One pipeline of `jobs` in project `full_path` (created on first use); returns the
    /// pipeline's id and the jobs' ids. `None` when the path is not `group/…/project`.
    pub fn enqueue(&self, full_path: &str, jobs: Vec<NewJob>) -> Option<(u64, Vec<u64>)> {
        let now = self.clock.now_ms();
        let timeout = self.config().job_timeout;
        let mut sha = [0u8; 20];
        rand::Rng::fill(&mut rand::rng(), &mut sha);
        let mut st = self.lock();
        let project = st.project(full_path, now)?;
        let out = st.enqueue(project, jobs, hex::encode(sha), timeout, now);
        self.flush(&mut st);
        Some(out)
    }

    /// Cancels a job as `POST /projects/:id/jobs/:job_id/cancel` does.
    pub fn cancel(&self, job_id: u64) -> bool {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let done = st.cancel(job_id, now);
        self.flush(&mut st);
        done
    }

    /// Verifies the runner of the `run-single` command in `user_data`, as gitlab-runner does
    /// when it starts (a runner manager with a fresh system id); returns a session id.
    pub fn redeem(&self, user_data: &str) -> Result<u64, RedeemError> {
        let run = single::parse(user_data)?;
        if run.max_builds != 1 {
            return Err(RedeemError::NotSingleUse(run.max_builds));
        }
        let now = self.clock.now_ms();
        let system_id = tokens::system_id();
        {
            let mut st = self.lock();
            let runner = st
                .runner_by_token(&run.token, now)
                .ok_or(RedeemError::Forbidden)?;
            st.contact(runner, Some(&system_id), now);
        }
        let mut next = self.next_session.lock().unwrap_or_else(|e| e.into_inner());
        *next += 1;
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                *next,
                Session {
                    token: run.token,
                    system_id,
                    wait_timeout: run.wait_timeout,
                    job: None,
                    last_update: None,
                },
            );
        Ok(*next)
    }

    fn session(&self, id: u64) -> Option<Session> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// `--wait-timeout` of the session's command line.
    pub fn wait_timeout(&self, session: u64) -> Option<Duration> {
        self.session(session).and_then(|s| s.wait_timeout)
    }

    /// Asks for a job as gitlab-runner does (`POST /jobs/request`, two-phase commit) and
    /// confirms it (`PUT /jobs/:id state=running`) after the configured ack delay.
    pub fn next_job(self: &Arc<Self>, session: u64) -> Option<AssignedJob> {
        let s = self.session(session)?;
        let now = self.clock.now_ms();
        let (job, token, duration) = {
            let mut st = self.lock();
            let outcome = st.request_job(
                &s.token,
                Some(&s.system_id),
                s.last_update.as_deref(),
                true,
                now,
            );
            let job = match outcome {
                Request::Job(job) => job,
                Request::Nothing(version) => {
                    drop(st);
                    if let Some(s) = self
                        .sessions
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_mut(&session)
                    {
                        s.last_update = Some(version.to_string());
                    }
                    return None;
                }
                Request::Forbidden => return None,
            };
            let j = st.jobs.get(&job)?;
            (job, j.token.clone(), j.duration)
        };
        if let Some(s) = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&session)
        {
            s.job = Some((job, token.clone()));
        }
        let delay = self.config().ack_delay;
        if delay.is_zero() {
            self.update(job, &token, Update::Running);
        } else {
            let gl = self.clone();
            tokio::spawn(async move {
                gl.clock.sleep(delay).await;
                let still_mine = gl
                    .session(session)
                    .is_some_and(|s| s.job.as_ref().map(|j| j.0) == Some(job));
                if still_mine {
                    gl.update(job, &token, Update::Running);
                }
            });
        }
        Some(AssignedJob {
            job_id: job,
            duration,
        })
    }

    fn update(&self, job: u64, token: &str, update: Update) -> Updated {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let out = st.update_job(job, token, update, now);
        self.flush(&mut st);
        out
    }

    /// The job's script ended (`success` or a failure): the runner reports it and exits.
    pub fn finish_job(&self, session: u64, job: u64, conclusion: &str) {
        let Some(s) = self.session(session) else {
            return;
        };
        let Some((_, token)) = s.job.filter(|(j, _)| *j == job) else {
            return;
        };
        let update = if conclusion == "success" {
            Update::Success
        } else {
            Update::Failed {
                reason: Some("script_failure".into()),
            }
        };
        // A runner confirms its job before running it: a confirmation still due goes first.
        self.update(job, &token, Update::Running);
        self.update(job, &token, update);
        self.end_session(session);
    }

    /// The runner's machine died: a confirmed job is stuck until GitLab drops it; an
    /// unconfirmed one goes back to the queue when its confirmation is overdue.
    pub fn runner_lost(&self, session: u64) {
        let Some(s) = self.end_session(session) else {
            return;
        };
        if let Some((job, _)) = s.job {
            let now = self.clock.now_ms();
            let mut st = self.lock();
            if let Some(j) = st.jobs.get_mut(&job)
                && matches!(j.status, Status::Running | Status::Canceling)
            {
                j.lost_ms = Some(now);
            }
        }
    }

    fn end_session(&self, session: u64) -> Option<Session> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&session)
    }

    pub fn jobs(&self) -> Vec<JobReport> {
        let st = self.lock();
        st.jobs
            .values()
            .map(|j| JobReport {
                id: j.id,
                pipeline_id: j.pipeline_id,
                project_id: j.project_id,
                project: st
                    .projects
                    .get(&j.project_id)
                    .map(|p| p.full_path.clone())
                    .unwrap_or_default(),
                name: j.name.clone(),
                tags: j.tags.clone(),
                status: j.status.as_str().to_string(),
                failure_reason: j.failure_reason.clone(),
                created_ms: j.created_ms,
                queued_ms: j.queued_ms,
                started_ms: j.started_ms,
                finished_ms: j.finished_ms,
                runner_id: j.runner_id,
                runner_description: j
                    .runner_id
                    .and_then(|r| st.runners.get(&r))
                    .map(|r| r.description.clone()),
                awaiting_ack: j.ack_since_ms.is_some(),
            })
            .collect()
    }

    pub fn runners(&self) -> Vec<RunnerReport> {
        let now = self.clock.now_ms();
        let st = self.lock();
        st.runners
            .values()
            .map(|r| RunnerReport {
                id: r.id,
                description: r.description.clone(),
                runner_type: r.owner.type_name().to_string(),
                owner: match r.owner {
                    runners::Owner::Instance => String::new(),
                    runners::Owner::Group(g) => st
                        .groups
                        .get(&g)
                        .map(|g| g.full_path.clone())
                        .unwrap_or_default(),
                    runners::Owner::Project(p) => st
                        .projects
                        .get(&p)
                        .map(|p| p.full_path.clone())
                        .unwrap_or_default(),
                },
                tags: r.tags.clone(),
                paused: r.paused,
                status: r.status(now).to_string(),
                managers: r.managers.len(),
                jobs: st
                    .active
                    .iter()
                    .filter_map(|id| st.jobs.get(id))
                    .filter(|j| j.runner_id == Some(r.id))
                    .map(|j| j.id)
                    .collect(),
            })
            .collect()
    }

    /// Queues one Job Hook per job whose status changed, payload as of now, to every target:
    /// the configured ones, the project's hooks and its groups' hooks.
    fn flush(&self, st: &mut State) {
        let events = st.drain_events();
        if events.is_empty() {
            return;
        }
        let (configured, faults) = {
            let c = self.config();
            (c.webhooks.clone(), c.webhook_faults.clone())
        };
        let origin = st
            .origin
            .clone()
            .unwrap_or_else(|| "https://gitlab.example.com".to_string());
        let now = self.clock.now_ms();
        for (job_id, status) in events {
            let Some(job) = st.jobs.get(&job_id) else {
                continue;
            };
            let groups = st
                .projects
                .get(&job.project_id)
                .map(|p| st.ancestors(p.namespace))
                .unwrap_or_default();
            let mut targets: Vec<webhooks::Target> = configured
                .iter()
                .map(|t| webhooks::Target {
                    hook_id: None,
                    url: t.url.clone(),
                    token: t.token.clone(),
                })
                .collect();
            targets.extend(
                st.hooks
                    .values()
                    .filter(|h| h.job_events)
                    .filter(|h| match h.owner {
                        HookOwner::Project(p) => p == job.project_id,
                        HookOwner::Group(g) => groups.contains(&g),
                    })
                    .map(|h| webhooks::Target {
                        hook_id: Some(h.id),
                        url: h.url.clone(),
                        token: h.token.clone(),
                    }),
            );
            if targets.is_empty() {
                continue;
            }
            let body = render::job_hook(&origin, st, job, status, now)
                .to_string()
                .into_bytes();
            // The receiver lives as long as this fake; a send error only means it is stopping.
            let _ = self.outbox.send(webhooks::Event {
                body,
                targets,
                instance: origin.clone(),
                faults: faults.clone(),
            });
        }
    }
}
