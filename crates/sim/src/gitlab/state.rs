//! The fake GitLab's world: groups, projects, pipelines and jobs with the transitions GitLab
//! makes (created → pending → running → success|failed|canceled, stages, skipped). Plain data; no
//! I/O and no clock reads: `now_ms` comes in. Runner records and the runner protocol are in
//! `runners.rs`, on the same `State`.

use super::ratelimit::Buckets;
use super::runners::Runner;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Created,
    WaitingForResource,
    Pending,
    Running,
    Success,
    Failed,
    Canceling,
    Canceled,
    Skipped,
    Manual,
}

impl Status {
    pub const ALL: [Status; 10] = [
        Status::Created,
        Status::WaitingForResource,
        Status::Pending,
        Status::Running,
        Status::Success,
        Status::Failed,
        Status::Canceling,
        Status::Canceled,
        Status::Skipped,
        Status::Manual,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::WaitingForResource => "waiting_for_resource",
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Success => "success",
            Status::Failed => "failed",
            Status::Canceling => "canceling",
            Status::Canceled => "canceled",
            Status::Skipped => "skipped",
            Status::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Done for good: nothing moves it again.
    pub fn finished(self) -> bool {
        matches!(
            self,
            Status::Success | Status::Failed | Status::Canceled | Status::Skipped
        )
    }
}

#[derive(Clone, Debug)]
pub struct Group {
    pub id: u64,
    pub path: String,
    pub full_path: String,
    pub parent: Option<u64>,
    pub created_ms: i64,
}

#[derive(Clone, Debug)]
pub struct Project {
    pub id: u64,
    pub path: String,
    /// `path_with_namespace`: `group/sub/project`.
    pub full_path: String,
    pub namespace: u64,
    pub created_ms: i64,
}

#[derive(Clone, Debug)]
pub struct Pipeline {
    pub id: u64,
    pub iid: u64,
    pub project_id: u64,
    pub sha: String,
    pub ref_name: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub jobs: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct Job {
    pub id: u64,
    pub project_id: u64,
    pub pipeline_id: u64,
    pub name: String,
    /// Stages run in order; a stage's jobs wait (`created`) until the earlier ones succeeded.
    pub stage: u32,
    pub tags: Vec<String>,
    /// How long the job's script runs once a runner has it (simulated).
    pub duration: Duration,
    pub status: Status,
    /// Runs on a protected ref: only such jobs may go to `ref_protected` runners.
    pub protected: bool,
    pub created_ms: i64,
    /// When it became pending (queued).
    pub queued_ms: Option<i64>,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub runner_id: Option<u64>,
    /// The runner manager (host) that took it.
    pub system_id: Option<String>,
    /// The job token (`JOB-TOKEN`); a new one whenever the job is queued again.
    pub token: String,
    pub failure_reason: Option<String>,
    /// Handed to a runner that has not confirmed it yet (two-phase commit), since.
    pub ack_since_ms: Option<i64>,
    /// Its runner died mid-job (virtual runners only), since.
    pub lost_ms: Option<i64>,
    pub trace: Vec<u8>,
    /// The job's timeout (seconds), the runner's `maximum_timeout` applied at assignment.
    pub timeout_secs: u64,
}

impl Job {
    pub fn stage_name(&self) -> String {
        match self.stage {
            0 => "build".to_string(),
            1 => "test".to_string(),
            2 => "deploy".to_string(),
            n => format!("stage-{n}"),
        }
    }
}

/// A project or group hook made through the API.
#[derive(Clone, Debug)]
pub struct Hook {
    pub id: u64,
    pub owner: HookOwner,
    pub url: String,
    pub token: String,
    pub job_events: bool,
    pub pipeline_events: bool,
    pub created_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookOwner {
    Project(u64),
    Group(u64),
}

/// One job of a pipeline to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    pub name: String,
    pub stage: u32,
    pub tags: Vec<String>,
    pub duration: Duration,
    pub protected: bool,
}

#[derive(Debug, Default)]
pub struct State {
    next_id: u64,
    pub groups: BTreeMap<u64, Group>,
    pub projects: BTreeMap<u64, Project>,
    /// Full paths (lower case) of groups and projects to their ids.
    pub paths: HashMap<String, PathRef>,
    pub pipelines: BTreeMap<u64, Pipeline>,
    pub jobs: BTreeMap<u64, Job>,
    /// Jobs not finished yet: what sweeps and queue scans look at.
    pub active: BTreeSet<u64>,
    pub runners: BTreeMap<u64, Runner>,
    /// glrt- tokens to runner ids.
    pub runner_tokens: HashMap<String, u64>,
    pub hooks: BTreeMap<u64, Hook>,
    pub buckets: Buckets,
    /// Bumped whenever a job becomes available to runners: a runner whose `last_update` equals
    /// it has nothing new to look at (GitLab keeps such a value per runner in Redis).
    pub queue_version: u64,
    /// Jobs whose status changed since the last drain, in order, with the status they changed
    /// to: each is one Job Hook.
    pub events: Vec<(u64, Status)>,
    /// `scheme://host` of the last API request, for URLs in webhook payloads.
    pub origin: Option<String>,
    /// When the time-driven transitions are next looked at (see `Gitlab::lock`).
    pub next_sweep_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathRef {
    Group(u64),
    Project(u64),
}

impl State {
    /// Ids share one counter, so a job id is never mistaken for a runner id in a test.
    pub fn id(&mut self) -> u64 {
        self.next_id += 1;
        100 + self.next_id
    }

    /// The group `full_path`, and its parents, created on first use.
    pub fn group(&mut self, full_path: &str, now_ms: i64) -> u64 {
        let key = full_path.to_ascii_lowercase();
        if let Some(PathRef::Group(id)) = self.paths.get(&key) {
            return *id;
        }
        let (parent, path) = match full_path.rsplit_once('/') {
            Some((parent, path)) => (Some(self.group(parent, now_ms)), path),
            None => (None, full_path),
        };
        let id = self.id();
        self.groups.insert(
            id,
            Group {
                id,
                path: path.to_string(),
                full_path: full_path.to_string(),
                parent,
                created_ms: now_ms,
            },
        );
        self.paths.insert(key, PathRef::Group(id));
        id
    }

    /// The project `group[/sub…]/name`, created (with its groups) on first use. `None` when the
    /// path has no group or names a group.
    pub fn project(&mut self, full_path: &str, now_ms: i64) -> Option<u64> {
        let key = full_path.to_ascii_lowercase();
        match self.paths.get(&key) {
            Some(PathRef::Project(id)) => return Some(*id),
            Some(PathRef::Group(_)) => return None,
            None => {}
        }
        let (namespace, path) = full_path.rsplit_once('/')?;
        if namespace.is_empty() || path.is_empty() {
            return None;
        }
        let namespace = self.group(namespace, now_ms);
        let id = self.id();
        self.projects.insert(
            id,
            Project {
                id,
                path: path.to_string(),
                full_path: full_path.to_string(),
                namespace,
                created_ms: now_ms,
            },
        );
        self.paths.insert(key, PathRef::Project(id));
        Some(id)
    }

    /// A project by the `:id` of a route: its number or its URL-decoded full path.
    pub fn find_project(&self, id: &str) -> Option<&Project> {
        match id.parse::<u64>() {
            Ok(n) => self.projects.get(&n),
            Err(_) => match self.paths.get(&id.to_ascii_lowercase()) {
                Some(PathRef::Project(n)) => self.projects.get(n),
                _ => None,
            },
        }
    }

    pub fn find_group(&self, id: &str) -> Option<&Group> {
        match id.parse::<u64>() {
            Ok(n) => self.groups.get(&n),
            Err(_) => match self.paths.get(&id.to_ascii_lowercase()) {
                Some(PathRef::Group(n)) => self.groups.get(n),
                _ => None,
            },
        }
    }

    /// Whether group `inner` is `outer` or lies below it.
    pub fn group_within(&self, mut inner: u64, outer: u64) -> bool {
        loop {
            if inner == outer {
                return true;
            }
            match self.groups.get(&inner).and_then(|g| g.parent) {
                Some(p) => inner = p,
                None => return false,
            }
        }
    }

    /// The group and its ancestors, nearest first.
    pub fn ancestors(&self, group: u64) -> Vec<u64> {
        let mut out = vec![group];
        let mut at = group;
        while let Some(p) = self.groups.get(&at).and_then(|g| g.parent) {
            out.push(p);
            at = p;
        }
        out
    }

    /// A pipeline of `jobs` in the project; the first stage's jobs go pending at once.
    pub fn enqueue(
        &mut self,
        project_id: u64,
        jobs: Vec<NewJob>,
        sha: String,
        job_timeout: Duration,
        now_ms: i64,
    ) -> (u64, Vec<u64>) {
        let pipeline_id = self.id();
        let iid = self
            .pipelines
            .values()
            .filter(|p| p.project_id == project_id)
            .count() as u64
            + 1;
        let mut ids = Vec::with_capacity(jobs.len());
        for j in jobs {
            let id = self.id();
            ids.push(id);
            self.jobs.insert(
                id,
                Job {
                    id,
                    project_id,
                    pipeline_id,
                    name: j.name,
                    stage: j.stage,
                    tags: j.tags,
                    duration: j.duration,
                    status: Status::Created,
                    protected: j.protected,
                    created_ms: now_ms,
                    queued_ms: None,
                    started_ms: None,
                    finished_ms: None,
                    runner_id: None,
                    system_id: None,
                    token: super::tokens::job_token(),
                    failure_reason: None,
                    ack_since_ms: None,
                    lost_ms: None,
                    trace: Vec::new(),
                    timeout_secs: job_timeout.as_secs(),
                },
            );
            self.active.insert(id);
            self.events.push((id, Status::Created));
        }
        self.pipelines.insert(
            pipeline_id,
            Pipeline {
                id: pipeline_id,
                iid,
                project_id,
                sha,
                ref_name: "main".to_string(),
                created_ms: now_ms,
                updated_ms: now_ms,
                jobs: ids.clone(),
            },
        );
        self.advance(pipeline_id, now_ms);
        (pipeline_id, ids)
    }

    /// Moves a pipeline on: the first stage with unfinished jobs goes pending once every earlier
    /// stage succeeded; after a failure, the waiting jobs are skipped.
    pub fn advance(&mut self, pipeline_id: u64, now_ms: i64) {
        let Some(p) = self.pipelines.get(&pipeline_id) else {
            return;
        };
        let jobs: Vec<(u64, u32, Status)> = p
            .jobs
            .iter()
            .filter_map(|id| self.jobs.get(id).map(|j| (j.id, j.stage, j.status)))
            .collect();
        let failed = |stage: u32| {
            jobs.iter()
                .any(|(_, s, st)| *s < stage && matches!(st, Status::Failed | Status::Canceled))
        };
        let Some(stage) = jobs
            .iter()
            .filter(|(_, _, st)| !st.finished())
            .map(|(_, s, _)| *s)
            .min()
        else {
            return;
        };
        let earlier_done = jobs
            .iter()
            .filter(|(_, s, _)| *s < stage)
            .all(|(_, _, st)| st.finished());
        if !earlier_done {
            return;
        }
        let skip = failed(stage);
        let waiting: Vec<u64> = jobs
            .iter()
            .filter(|(_, s, st)| *s == stage && *st == Status::Created)
            .map(|(id, _, _)| *id)
            .collect();
        for id in waiting {
            if skip {
                self.finish(id, Status::Skipped, None, now_ms);
            } else if let Some(j) = self.jobs.get_mut(&id) {
                j.status = Status::Pending;
                j.queued_ms = Some(now_ms);
                self.events.push((id, Status::Pending));
                self.queue_version += 1;
            }
        }
        if skip {
            // Skipping finished this stage: the next one is skipped too.
            self.advance(pipeline_id, now_ms);
        }
        if let Some(p) = self.pipelines.get_mut(&pipeline_id) {
            p.updated_ms = now_ms;
        }
    }

    /// Ends a job with `status` (success, failed, canceled, skipped) and moves its pipeline on.
    /// False when it had ended already.
    pub fn finish(
        &mut self,
        job_id: u64,
        status: Status,
        failure_reason: Option<String>,
        now_ms: i64,
    ) -> bool {
        let Some(j) = self.jobs.get_mut(&job_id) else {
            return false;
        };
        if j.status.finished() {
            return false;
        }
        j.status = status;
        j.finished_ms = Some(now_ms);
        j.ack_since_ms = None;
        j.lost_ms = None;
        if status == Status::Failed {
            j.failure_reason = failure_reason.or_else(|| Some("script_failure".into()));
        }
        let pipeline = j.pipeline_id;
        self.active.remove(&job_id);
        self.events.push((job_id, status));
        self.advance(pipeline, now_ms);
        true
    }

    /// Cancels a job: a job no runner has yet ends at once, a running one becomes `canceling`
    /// until its runner reports (GitLab's runner sees `Job-Status: canceling`).
    pub fn cancel(&mut self, job_id: u64, now_ms: i64) -> bool {
        let Some(j) = self.jobs.get_mut(&job_id) else {
            return false;
        };
        match j.status {
            Status::Running => {
                j.status = Status::Canceling;
                self.events.push((job_id, Status::Canceling));
                true
            }
            s if s.finished() || s == Status::Canceling => false,
            _ => self.finish(job_id, Status::Canceled, None, now_ms),
        }
    }

    /// The pipeline's status as GitLab derives it from its jobs.
    pub fn pipeline_status(&self, pipeline_id: u64) -> Status {
        let Some(p) = self.pipelines.get(&pipeline_id) else {
            return Status::Created;
        };
        let st: Vec<Status> = p
            .jobs
            .iter()
            .filter_map(|id| self.jobs.get(id).map(|j| j.status))
            .collect();
        let any = |s: Status| st.contains(&s);
        if any(Status::Running) || any(Status::Canceling) {
            Status::Running
        } else if any(Status::Pending) {
            Status::Pending
        } else if st.iter().all(|s| s.finished()) {
            if any(Status::Failed) {
                Status::Failed
            } else if any(Status::Canceled) {
                Status::Canceled
            } else if st.iter().all(|s| *s == Status::Skipped) {
                Status::Skipped
            } else {
                Status::Success
            }
        } else if st.iter().any(|s| s.finished()) {
            Status::Running
        } else {
            Status::Created
        }
    }

    /// Time-driven transitions, done lazily by whoever touches the state next: unconfirmed
    /// jobs go back to the queue after `ack_timeout`; jobs of dead runners fail after
    /// `stuck_timeout`; running jobs fail at their timeout.
    pub fn sweep(&mut self, ack_timeout: Duration, stuck_timeout: Duration, now_ms: i64) {
        let ack_ms = ack_timeout.as_millis() as i64;
        let stuck_ms = stuck_timeout.as_millis() as i64;
        let mut requeue = Vec::new();
        let mut fail = Vec::new();
        for id in &self.active {
            let Some(j) = self.jobs.get(id) else { continue };
            if let Some(since) = j.ack_since_ms
                && j.status == Status::Pending
                && since + ack_ms <= now_ms
            {
                requeue.push(*id);
            }
            if matches!(j.status, Status::Running | Status::Canceling) {
                if j.lost_ms.is_some_and(|l| l + stuck_ms <= now_ms) {
                    fail.push((*id, "stuck_or_timeout_failure"));
                } else if j
                    .started_ms
                    .is_some_and(|s| s + (j.timeout_secs as i64) * 1000 <= now_ms)
                {
                    fail.push((*id, "job_execution_timeout"));
                }
            }
        }
        for id in requeue {
            if let Some(j) = self.jobs.get_mut(&id) {
                j.ack_since_ms = None;
                j.runner_id = None;
                j.system_id = None;
                j.token = super::tokens::job_token();
                self.queue_version += 1;
            }
        }
        for (id, reason) in fail {
            self.finish(id, Status::Failed, Some(reason.to_string()), now_ms);
        }
    }

    /// The events recorded since the last drain.
    pub fn drain_events(&mut self) -> Vec<(u64, Status)> {
        std::mem::take(&mut self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(stage: u32) -> NewJob {
        NewJob {
            name: format!("j{stage}"),
            stage,
            tags: vec!["linux".into()],
            duration: Duration::from_secs(1),
            protected: false,
        }
    }

    fn world() -> (State, u64) {
        let mut s = State::default();
        let p = s.project("acme/platform/app", 0).unwrap();
        (s, p)
    }

    #[test]
    fn projects_and_their_groups_are_found_by_id_and_path() {
        let (mut s, p) = world();
        assert_eq!(s.find_project("ACME/platform/app").map(|x| x.id), Some(p));
        assert_eq!(s.find_project(&p.to_string()).map(|x| x.id), Some(p));
        let sub = s.find_group("acme/platform").unwrap().id;
        let top = s.find_group("acme").unwrap().id;
        assert!(s.group_within(sub, top) && !s.group_within(top, sub));
        assert_eq!(s.ancestors(sub), [sub, top]);
        assert_eq!(s.project("acme/platform", 0), None, "a group is no project");
        assert_eq!(s.project("lonely", 0), None, "a project needs a group");
    }

    #[test]
    fn stages_run_in_order_and_a_failure_skips_the_rest() {
        let (mut s, p) = world();
        let (pipeline, ids) = s.enqueue(
            p,
            vec![job(0), job(1), job(2)],
            "a".into(),
            Duration::from_secs(60),
            1,
        );
        let status = |s: &State, i: usize| s.jobs[&ids[i]].status;
        assert_eq!(
            (status(&s, 0), status(&s, 1)),
            (Status::Pending, Status::Created)
        );
        assert_eq!(s.pipeline_status(pipeline), Status::Pending);
        assert!(s.finish(ids[0], Status::Success, None, 2));
        assert_eq!(status(&s, 1), Status::Pending);
        assert!(s.finish(ids[1], Status::Failed, None, 3));
        assert_eq!(status(&s, 2), Status::Skipped);
        assert_eq!(s.pipeline_status(pipeline), Status::Failed);
        assert!(!s.finish(ids[1], Status::Success, None, 4), "finished once");
        assert!(s.active.is_empty());
        let events = s.drain_events();
        let of_second: Vec<Status> = events
            .iter()
            .filter(|e| e.0 == ids[1])
            .map(|e| e.1)
            .collect();
        assert_eq!(
            of_second,
            [Status::Created, Status::Pending, Status::Failed]
        );
    }

    #[test]
    fn cancelling_a_running_job_waits_for_its_runner() {
        let (mut s, p) = world();
        let (_, ids) = s.enqueue(p, vec![job(0)], "a".into(), Duration::from_secs(60), 0);
        s.jobs.get_mut(&ids[0]).unwrap().status = Status::Running;
        assert!(s.cancel(ids[0], 1));
        assert_eq!(s.jobs[&ids[0]].status, Status::Canceling);
        let (_, more) = s.enqueue(p, vec![job(0)], "b".into(), Duration::from_secs(60), 0);
        assert!(s.cancel(more[0], 1));
        assert_eq!(s.jobs[&more[0]].status, Status::Canceled);
    }

    #[test]
    fn sweeps_requeue_unconfirmed_jobs_and_fail_stuck_ones() {
        let (mut s, p) = world();
        let (_, ids) = s.enqueue(
            p,
            vec![job(0), job(0)],
            "a".into(),
            Duration::from_secs(60),
            0,
        );
        let token = s.jobs[&ids[0]].token.clone();
        {
            let j = s.jobs.get_mut(&ids[0]).unwrap();
            j.runner_id = Some(7);
            j.ack_since_ms = Some(1000);
            let j = s.jobs.get_mut(&ids[1]).unwrap();
            j.status = Status::Running;
            j.started_ms = Some(0);
            j.lost_ms = Some(500);
        }
        let version = s.queue_version;
        let (ack, stuck) = (Duration::from_secs(120), Duration::from_secs(10));
        s.sweep(ack, stuck, 120_999);
        assert_eq!(s.jobs[&ids[0]].runner_id, Some(7), "not yet");
        s.sweep(ack, stuck, 121_000);
        let j = &s.jobs[&ids[0]];
        assert_eq!((j.runner_id, j.status), (None, Status::Pending));
        assert_ne!(j.token, token, "the old runner's job token is void");
        assert!(s.queue_version > version);
        let j = &s.jobs[&ids[1]];
        assert_eq!(
            (j.status, j.failure_reason.as_deref()),
            (Status::Failed, Some("stuck_or_timeout_failure"))
        );
    }
}
