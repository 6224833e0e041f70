//! Runner records (created by `POST /user/runners`, verified, listed, deleted) and the runner's
//! side of the protocol: asking for a job, confirming it (two-phase commit), reporting its end.
//! The routes and the virtual runners both go through these functions, so the job state
//! machine the API shows is the one the runners drive.

use super::state::{Job, State, Status};
use super::tokens;
use std::collections::BTreeMap;
use std::time::Duration;

/// A runner counts as online when it contacted GitLab within two hours, stale after a week.
pub const ONLINE_MS: i64 = 2 * 3_600_000;
pub const STALE_MS: i64 = 7 * 86_400_000;

/// Who a runner serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Instance,
    Group(u64),
    Project(u64),
}

impl Owner {
    pub fn type_name(self) -> &'static str {
        match self {
            Owner::Instance => "instance_type",
            Owner::Group(_) => "group_type",
            Owner::Project(_) => "project_type",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Runner {
    pub id: u64,
    pub token: String,
    pub token_expires_ms: Option<i64>,
    pub owner: Owner,
    pub description: String,
    pub tags: Vec<String>,
    pub run_untagged: bool,
    pub locked: bool,
    /// `not_protected` or `ref_protected`.
    pub access_level: String,
    pub paused: bool,
    pub maximum_timeout: Option<u64>,
    pub maintenance_note: String,
    pub created_ms: i64,
    pub created_by: String,
    pub contacted_ms: Option<i64>,
    /// Hosts using the token, by system id.
    pub managers: BTreeMap<String, Manager>,
}

#[derive(Clone, Debug)]
pub struct Manager {
    pub id: u64,
    pub system_id: String,
    pub created_ms: i64,
    pub contacted_ms: i64,
    pub version: String,
    pub platform: String,
    pub architecture: String,
}

/// `online`, `offline`, `stale` or `never_contacted`, from when it was last heard of.
pub fn liveness(created_ms: i64, contacted_ms: Option<i64>, now_ms: i64) -> &'static str {
    match contacted_ms {
        None if now_ms - created_ms >= STALE_MS => "stale",
        None => "never_contacted",
        Some(c) if now_ms - c < ONLINE_MS => "online",
        Some(c) if now_ms - c < STALE_MS => "offline",
        Some(_) => "stale",
    }
}

impl Runner {
    pub fn status(&self, now_ms: i64) -> &'static str {
        liveness(self.created_ms, self.contacted_ms, now_ms)
    }

    /// Whether every tag in `wanted` is one of this runner's.
    pub fn has_tags(&self, wanted: &[String]) -> bool {
        wanted.iter().all(|t| self.tags.iter().any(|r| r == t))
    }
}

/// What `POST /user/runners` asks for, checked by the route.
#[derive(Clone, Debug)]
pub struct NewRunner {
    pub owner: Owner,
    pub description: String,
    pub tags: Vec<String>,
    pub run_untagged: bool,
    pub locked: bool,
    pub access_level: String,
    pub paused: bool,
    pub maximum_timeout: Option<u64>,
    pub maintenance_note: String,
    pub created_by: String,
}

/// The answer to a job request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// 201: this job is the runner's now.
    Job(u64),
    /// 204: nothing for it; the queue version to send back next time.
    Nothing(u64),
    /// 403: the token is unknown or expired.
    Forbidden,
}

/// What a runner reports with `PUT /jobs/:id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    Pending,
    Running,
    Success,
    Failed { reason: Option<String> },
}

/// The answer to a job update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Updated {
    /// 200; the job's status for `Job-Status`.
    Ok(Status),
    /// 404: no such job.
    NotFound,
    /// 403: wrong job token, or the job is no longer the runner's (`Job-Status` says why).
    Forbidden(Status),
    /// 409: confirming a job that went back to the queue.
    Conflict(Status),
}

impl State {
    pub fn create_runner(&mut self, new: NewRunner, ttl: Option<Duration>, now_ms: i64) -> u64 {
        let id = self.id();
        let token = tokens::runner_token();
        self.runner_tokens.insert(token.clone(), id);
        self.runners.insert(
            id,
            Runner {
                id,
                token,
                token_expires_ms: ttl.map(|t| now_ms + t.as_millis() as i64),
                owner: new.owner,
                description: new.description,
                tags: new.tags,
                run_untagged: new.run_untagged,
                locked: new.locked,
                access_level: new.access_level,
                paused: new.paused,
                maximum_timeout: new.maximum_timeout,
                maintenance_note: new.maintenance_note,
                created_ms: now_ms,
                created_by: new.created_by,
                contacted_ms: None,
                managers: BTreeMap::new(),
            },
        );
        id
    }

    /// The runner of a live authentication token.
    pub fn runner_by_token(&self, token: &str, now_ms: i64) -> Option<u64> {
        let id = *self.runner_tokens.get(token)?;
        let r = self.runners.get(&id)?;
        r.token_expires_ms.is_none_or(|e| e > now_ms).then_some(id)
    }

    pub fn delete_runner(&mut self, id: u64) -> bool {
        match self.runners.remove(&id) {
            Some(r) => {
                self.runner_tokens.remove(&r.token);
                true
            }
            None => false,
        }
    }

    /// The runner (and, with a system id, its manager) contacted GitLab now.
    pub fn contact(&mut self, runner_id: u64, system_id: Option<&str>, now_ms: i64) {
        let known = |st: &State| {
            system_id.is_none_or(|s| {
                st.runners
                    .get(&runner_id)
                    .is_some_and(|r| r.managers.contains_key(s))
            })
        };
        // An id only for a new manager: runners ask every few seconds.
        let new_id = (!known(self)).then(|| self.id());
        let Some(r) = self.runners.get_mut(&runner_id) else {
            return;
        };
        r.contacted_ms = Some(now_ms);
        let Some(system_id) = system_id else {
            return;
        };
        match (r.managers.get_mut(system_id), new_id) {
            (Some(m), _) => m.contacted_ms = now_ms,
            (None, Some(id)) => {
                r.managers.insert(
                    system_id.to_string(),
                    Manager {
                        id,
                        system_id: system_id.to_string(),
                        created_ms: now_ms,
                        contacted_ms: now_ms,
                        version: "18.10.1".to_string(),
                        platform: "linux".to_string(),
                        architecture: "amd64".to_string(),
                    },
                );
            }
            (None, None) => {}
        }
    }

    /// Whether `runner` may take `job`: its scope covers the job's project, it has every tag of
    /// the job (an untagged job needs `run_untagged`), and a protected runner takes jobs of
    /// protected refs only.
    pub fn can_take(&self, runner: &Runner, job: &Job) -> bool {
        let in_scope = match runner.owner {
            Owner::Instance => true,
            Owner::Project(p) => job.project_id == p,
            Owner::Group(g) => self
                .projects
                .get(&job.project_id)
                .is_some_and(|p| self.group_within(p.namespace, g)),
        };
        let tags_ok = if job.tags.is_empty() {
            runner.run_untagged
        } else {
            runner.has_tags(&job.tags)
        };
        let protection_ok = runner.access_level != "ref_protected" || job.protected;
        in_scope && tags_ok && protection_ok
    }

    /// `POST /jobs/request`: the oldest pending job this runner may take, handed to it. With
    /// two-phase commit it stays `pending` until the runner confirms it; without, it runs now.
    /// A runner whose `last_update` is the current queue version gets `Nothing` at once.
    pub fn request_job(
        &mut self,
        token: &str,
        system_id: Option<&str>,
        last_update: Option<&str>,
        two_phase: bool,
        now_ms: i64,
    ) -> Request {
        let Some(runner_id) = self.runner_by_token(token, now_ms) else {
            return Request::Forbidden;
        };
        self.contact(runner_id, system_id, now_ms);
        let version = self.queue_version;
        if last_update == Some(version.to_string().as_str()) {
            return Request::Nothing(version);
        }
        let Some(runner) = self.runners.get(&runner_id) else {
            return Request::Forbidden;
        };
        if runner.paused {
            return Request::Nothing(version);
        }
        let job = self
            .active
            .iter()
            .filter_map(|id| self.jobs.get(id))
            .filter(|j| j.status == Status::Pending && j.runner_id.is_none())
            .filter(|j| self.can_take(runner, j))
            .min_by_key(|j| (j.queued_ms, j.id))
            .map(|j| j.id);
        let Some(job_id) = job else {
            return Request::Nothing(version);
        };
        let max_timeout = runner.maximum_timeout;
        if let Some(j) = self.jobs.get_mut(&job_id) {
            j.runner_id = Some(runner_id);
            j.system_id = system_id.map(str::to_string);
            if let Some(max) = max_timeout {
                j.timeout_secs = j.timeout_secs.min(max);
            }
            if two_phase {
                j.ack_since_ms = Some(now_ms);
            } else {
                j.status = Status::Running;
                j.started_ms = Some(now_ms);
                self.events.push((job_id, Status::Running));
            }
        }
        Request::Job(job_id)
    }

    /// `PUT /jobs/:id` with the job's token.
    pub fn update_job(&mut self, job_id: u64, token: &str, update: Update, now_ms: i64) -> Updated {
        let Some(j) = self.jobs.get_mut(&job_id) else {
            return Updated::NotFound;
        };
        if j.token != token {
            return Updated::Forbidden(j.status);
        }
        match (j.status, update) {
            // Two-phase commit: the runner confirms the job it was handed, or keeps it alive.
            (Status::Pending, Update::Running) if j.ack_since_ms.is_some() => {
                j.ack_since_ms = None;
                j.status = Status::Running;
                j.started_ms = Some(now_ms);
                self.events.push((job_id, Status::Running));
                Updated::Ok(Status::Running)
            }
            (Status::Pending, Update::Pending) if j.ack_since_ms.is_some() => {
                j.ack_since_ms = Some(now_ms);
                Updated::Ok(Status::Pending)
            }
            // Back in the queue (the confirmation came too late).
            (Status::Pending, _) => Updated::Conflict(Status::Pending),
            (s @ (Status::Running | Status::Canceling), Update::Running | Update::Pending) => {
                Updated::Ok(s)
            }
            (Status::Canceling, Update::Success | Update::Failed { .. }) => {
                self.finish(job_id, Status::Canceled, None, now_ms);
                Updated::Ok(Status::Canceled)
            }
            (Status::Running, Update::Success) => {
                self.finish(job_id, Status::Success, None, now_ms);
                Updated::Ok(Status::Success)
            }
            (Status::Running, Update::Failed { reason }) => {
                self.finish(job_id, Status::Failed, reason, now_ms);
                Updated::Ok(Status::Failed)
            }
            (s, _) => Updated::Forbidden(s),
        }
    }

    /// Jobs a runner ran or runs, oldest first; `status` filters.
    pub fn runner_jobs(&self, runner_id: u64, status: Option<Status>) -> Vec<&Job> {
        self.jobs
            .values()
            .filter(|j| j.runner_id == Some(runner_id))
            .filter(|j| status.is_none_or(|s| j.status == s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::NewJob;
    use super::*;

    fn new_runner(owner: Owner, tags: &[&str]) -> NewRunner {
        NewRunner {
            owner,
            description: "r".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            run_untagged: false,
            locked: true,
            access_level: "not_protected".into(),
            paused: false,
            maximum_timeout: None,
            maintenance_note: String::new(),
            created_by: "root".into(),
        }
    }

    fn job(tags: &[&str]) -> NewJob {
        NewJob {
            name: "j".into(),
            stage: 0,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            duration: Duration::from_secs(1),
            protected: false,
        }
    }

    fn world() -> (State, u64, u64) {
        let mut s = State::default();
        let app = s.project("acme/platform/app", 0).unwrap();
        let other = s.project("else/web", 0).unwrap();
        (s, app, other)
    }

    fn token(s: &State, id: u64) -> String {
        s.runners[&id].token.clone()
    }

    #[test]
    fn scope_tags_and_protection_decide_who_takes_a_job() {
        let (mut s, app, other) = world();
        let hour = Duration::from_secs(3600);
        s.enqueue(other, vec![job(&["linux"])], "a".into(), hour, 1);
        let (_, gpu) = s.enqueue(app, vec![job(&["linux", "gpu"])], "b".into(), hour, 2);
        let (_, plain) = s.enqueue(app, vec![job(&["linux"])], "c".into(), hour, 3);
        let (_, untagged) = s.enqueue(app, vec![job(&[])], "d".into(), hour, 4);
        let acme = s.find_group("acme").unwrap().id;
        let r = s.create_runner(new_runner(Owner::Group(acme), &["linux"]), None, 0);
        let t = token(&s, r);
        assert_eq!(
            s.request_job(&t, Some("s_1"), None, true, 5),
            Request::Job(plain[0])
        );
        let Request::Nothing(v) = s.request_job(&t, Some("s_1"), None, true, 5) else {
            panic!("the gpu job needs a gpu tag, the untagged one run_untagged")
        };
        assert_eq!(
            s.request_job(&t, None, Some(&v.to_string()), true, 5),
            Request::Nothing(v)
        );
        let any = s.create_runner(
            NewRunner {
                run_untagged: true,
                ..new_runner(Owner::Project(app), &["gpu", "linux"])
            },
            None,
            0,
        );
        let t = token(&s, any);
        assert_eq!(s.request_job(&t, None, None, true, 6), Request::Job(gpu[0]));
        assert_eq!(
            s.request_job(&t, None, None, true, 6),
            Request::Job(untagged[0])
        );
        assert_eq!(
            s.request_job("glrt-nope", None, None, true, 6),
            Request::Forbidden
        );
        assert_eq!(s.runners[&r].managers.len(), 1);
        assert_eq!(s.runners[&r].status(6), "online");
    }

    #[test]
    fn two_phase_commit_confirms_keeps_alive_and_refuses_late_confirmations() {
        let (mut s, app, _) = world();
        let (_, ids) = s.enqueue(
            app,
            vec![job(&["x"])],
            "a".into(),
            Duration::from_secs(60),
            0,
        );
        let r = s.create_runner(new_runner(Owner::Instance, &["x"]), None, 0);
        let t = token(&s, r);
        assert_eq!(s.request_job(&t, None, None, true, 1), Request::Job(ids[0]));
        let jt = s.jobs[&ids[0]].token.clone();
        assert_eq!(s.jobs[&ids[0]].status, Status::Pending);
        assert_eq!(
            s.update_job(ids[0], &jt, Update::Pending, 2),
            Updated::Ok(Status::Pending)
        );
        assert_eq!(
            s.update_job(ids[0], "wrong", Update::Running, 2),
            Updated::Forbidden(Status::Pending)
        );
        s.sweep(Duration::from_secs(120), Duration::from_secs(60), 122_002);
        assert_eq!(s.jobs[&ids[0]].runner_id, None, "no ack for two minutes");
        let fresh = s.jobs[&ids[0]].token.clone();
        assert_eq!(
            s.update_job(ids[0], &fresh, Update::Running, 122_003),
            Updated::Conflict(Status::Pending)
        );
        assert_eq!(
            s.request_job(&t, None, None, true, 122_004),
            Request::Job(ids[0])
        );
        let jt = s.jobs[&ids[0]].token.clone();
        assert_eq!(
            s.update_job(ids[0], &jt, Update::Running, 122_005),
            Updated::Ok(Status::Running)
        );
        assert_eq!(
            s.update_job(ids[0], &jt, Update::Success, 130_000),
            Updated::Ok(Status::Success)
        );
        assert_eq!(
            s.update_job(ids[0], &jt, Update::Running, 130_001),
            Updated::Forbidden(Status::Success)
        );
        assert_eq!(s.runner_jobs(r, Some(Status::Success)).len(), 1);
    }

    #[test]
    fn liveness_follows_the_last_contact() {
        assert_eq!(liveness(0, None, 10), "never_contacted");
        assert_eq!(liveness(0, None, STALE_MS), "stale");
        assert_eq!(liveness(0, Some(0), ONLINE_MS - 1), "online");
        assert_eq!(liveness(0, Some(0), ONLINE_MS), "offline");
        assert_eq!(liveness(0, Some(0), STALE_MS), "stale");
    }

    #[test]
    fn expired_and_deleted_tokens_are_refused() {
        let (mut s, _, _) = world();
        let r = s.create_runner(
            new_runner(Owner::Instance, &[]),
            Some(Duration::from_secs(1)),
            0,
        );
        let t = token(&s, r);
        assert_eq!(s.runner_by_token(&t, 999), Some(r));
        assert_eq!(s.runner_by_token(&t, 1000), None);
        assert!(s.delete_runner(r));
        assert!(!s.delete_runner(r));
        assert_eq!(s.runner_by_token(&t, 0), None);
    }
}
