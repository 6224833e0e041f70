//! The fake GitHub's world: repositories, workflow runs, jobs, runners and the credentials it
//! issued. Plain data plus the transitions GitHub makes; no I/O and no clock reads.

use super::ratelimit::Budgets;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Where a runner is registered: a repository (`owner/repo`) or an organization.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Repo(String),
    Org(String),
}

impl Scope {
    /// Whether a runner of this scope may take a job of `repo` (`owner/repo`).
    pub fn covers(&self, repo: &str) -> bool {
        match self {
            Scope::Repo(r) => r.eq_ignore_ascii_case(repo),
            Scope::Org(o) => repo
                .split_once('/')
                .is_some_and(|(owner, _)| owner.eq_ignore_ascii_case(o)),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Scope::Repo(r) => format!("repo:{r}"),
            Scope::Org(o) => format!("org:{o}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Repo {
    pub id: u64,
    pub owner: String,
    pub owner_id: u64,
    pub name: String,
    pub created_ms: i64,
}

impl Repo {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

#[derive(Clone, Debug)]
pub struct Run {
    pub id: u64,
    pub repo: String,
    pub run_number: u64,
    pub status: &'static str,
    pub conclusion: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub head_sha: String,
    pub jobs: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct Job {
    pub id: u64,
    pub run_id: u64,
    pub repo: String,
    pub name: String,
    pub labels: Vec<String>,
    pub duration: Duration,
    pub status: &'static str,
    pub conclusion: Option<String>,
    pub queued_ms: i64,
    pub started_ms: Option<i64>,
    pub completed_ms: Option<i64>,
    pub runner_id: Option<u64>,
    pub runner_name: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Runner {
    pub id: u64,
    pub name: String,
    pub scope: Scope,
    /// Labels with GitHub's kind: `read-only` for the defaults, `custom` for the rest.
    pub labels: Vec<(String, &'static str)>,
    pub online: bool,
    pub job: Option<u64>,
    pub ephemeral: bool,
}

impl Runner {
    pub fn busy(&self) -> bool {
        self.job.is_some()
    }

    /// GitHub's rule: the runner satisfies a job when every job label is one of its labels,
    /// ignoring case.
    pub fn satisfies(&self, job_labels: &[String]) -> bool {
        job_labels
            .iter()
            .all(|l| self.labels.iter().any(|(r, _)| r.eq_ignore_ascii_case(l)))
    }
}

/// A single-use credential the fake handed out, keyed by its text.
#[derive(Clone, Debug)]
pub enum Credential {
    /// An encoded JIT config for a runner already created (offline) by generate-jitconfig.
    Jit { runner_id: u64, used: bool },
    /// A registration token for any runner of the scope, until it expires.
    Registration {
        scope: Scope,
        expires_ms: i64,
        used: bool,
    },
}

/// A runner program's session with the Actions service (`/_sim/actions`): the listener's
/// long-poll connection. The runner is online while its session is fresh.
#[derive(Clone, Debug)]
pub struct Session {
    pub runner_id: u64,
    /// The last request of the session (simulated ms): a session silent for longer than the
    /// timeout is dropped, its runner offline and its job failed, as GitHub does with a runner
    /// that stopped polling.
    pub last_seen_ms: i64,
}

/// What happened to a job that webhooks report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobEvent {
    Queued(u64),
    InProgress(u64),
    Completed(u64),
}

#[derive(Debug, Default)]
pub struct State {
    next_id: u64,
    pub repos: BTreeMap<String, Repo>,
    pub owners: BTreeMap<String, u64>,
    pub runs: BTreeMap<u64, Run>,
    pub jobs: BTreeMap<u64, Job>,
    pub runners: BTreeMap<u64, Runner>,
    pub credentials: HashMap<String, Credential>,
    /// Open sessions of runner programs, by session id.
    pub sessions: HashMap<String, Session>,
    /// The OAuth client id of each JIT config, by runner id: what a runner program proves.
    pub jit_clients: HashMap<u64, String>,
    /// Installation tokens and when they expire (ms).
    pub installation_tokens: HashMap<String, i64>,
    pub budgets: Budgets,
    /// `scheme://host{prefix}` of the last API request, for the URLs in webhook payloads.
    pub base_url: Option<String>,
}

impl State {
    /// Ids share one counter so a job id is never mistaken for a runner id in a test.
    pub fn id(&mut self) -> u64 {
        self.next_id += 1;
        1000 + self.next_id
    }

    fn owner_id(&mut self, owner: &str) -> u64 {
        let key = owner.to_ascii_lowercase();
        if let Some(id) = self.owners.get(&key) {
            return *id;
        }
        let id = self.id();
        self.owners.insert(key, id);
        id
    }

    /// The repository `owner/name`, created on first use.
    pub fn repo(&mut self, owner: &str, name: &str, now_ms: i64) -> Repo {
        let key = format!("{owner}/{name}").to_ascii_lowercase();
        if let Some(r) = self.repos.get(&key) {
            return r.clone();
        }
        let owner_id = self.owner_id(owner);
        let repo = Repo {
            id: self.id(),
            owner: owner.to_string(),
            owner_id,
            name: name.to_string(),
            created_ms: now_ms,
        };
        self.repos.insert(key, repo.clone());
        repo
    }

    pub fn repo_of(&self, full_name: &str) -> Option<&Repo> {
        self.repos.get(&full_name.to_ascii_lowercase())
    }

    /// The id GitHub shows for an organization (the owner account).
    pub fn org_id(&mut self, org: &str) -> u64 {
        self.owner_id(org)
    }

    /// One workflow run of `jobs` (labels, duration), all queued.
    pub fn enqueue(
        &mut self,
        repo: &Repo,
        jobs: Vec<(Vec<String>, Duration)>,
        head_sha: String,
        now_ms: i64,
    ) -> Vec<u64> {
        let run_id = self.id();
        let full = repo.full_name();
        let run_number = self.runs.values().filter(|r| r.repo == full).count() as u64 + 1;
        let mut ids = Vec::with_capacity(jobs.len());
        for (i, (labels, duration)) in jobs.into_iter().enumerate() {
            let id = self.id();
            ids.push(id);
            self.jobs.insert(
                id,
                Job {
                    id,
                    run_id,
                    repo: full.clone(),
                    name: format!("job-{}", i + 1),
                    labels,
                    duration,
                    status: "queued",
                    conclusion: None,
                    queued_ms: now_ms,
                    started_ms: None,
                    completed_ms: None,
                    runner_id: None,
                    runner_name: None,
                },
            );
        }
        let run = Run {
            id: run_id,
            repo: full,
            run_number,
            status: "queued",
            conclusion: None,
            created_ms: now_ms,
            updated_ms: now_ms,
            head_sha,
            jobs: ids.clone(),
        };
        self.runs.insert(run_id, run);
        ids
    }

    pub fn name_taken(&self, scope: &Scope, name: &str) -> bool {
        self.runners
            .values()
            .any(|r| &r.scope == scope && r.name.eq_ignore_ascii_case(name))
    }

    /// Adds a runner; `labels` are the custom ones, GitHub's defaults come first.
    pub fn add_runner(&mut self, name: &str, scope: Scope, labels: &[String], online: bool) -> u64 {
        let id = self.id();
        let mut all: Vec<(String, &'static str)> = Vec::new();
        for l in labels {
            if !all.iter().any(|(a, _)| a.eq_ignore_ascii_case(l)) {
                let kind = if is_default_label(l) {
                    "read-only"
                } else {
                    "custom"
                };
                all.push((l.clone(), kind));
            }
        }
        let runner = Runner {
            id,
            name: name.to_string(),
            scope,
            labels: all,
            online,
            job: None,
            ephemeral: true,
        };
        self.runners.insert(id, runner);
        id
    }

    /// Hands the oldest queued job this runner satisfies to it.
    pub fn assign(&mut self, runner_id: u64, now_ms: i64) -> Option<(u64, Duration)> {
        let runner = self.runners.get(&runner_id)?;
        if !runner.online || runner.busy() {
            return None;
        }
        let job = self
            .jobs
            .values()
            .filter(|j| {
                j.status == "queued" && runner.scope.covers(&j.repo) && runner.satisfies(&j.labels)
            })
            .min_by_key(|j| (j.queued_ms, j.id))?;
        let (job_id, run_id, duration) = (job.id, job.run_id, job.duration);
        let name = runner.name.clone();
        if let Some(r) = self.runners.get_mut(&runner_id) {
            r.job = Some(job_id);
        }
        if let Some(j) = self.jobs.get_mut(&job_id) {
            j.status = "in_progress";
            j.started_ms = Some(now_ms);
            j.runner_id = Some(runner_id);
            j.runner_name = Some(name);
        }
        if let Some(run) = self.runs.get_mut(&run_id) {
            run.status = "in_progress";
            run.updated_ms = now_ms;
        }
        Some((job_id, duration))
    }

    /// Completes a job, and its run once every job of the run is done.
    pub fn complete(&mut self, job_id: u64, conclusion: &str, now_ms: i64) -> bool {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return false;
        };
        if job.status == "completed" {
            return false;
        }
        job.status = "completed";
        job.conclusion = Some(conclusion.to_string());
        job.completed_ms = Some(now_ms);
        job.started_ms.get_or_insert(now_ms);
        let run_id = job.run_id;
        let Some(run) = self.runs.get(&run_id) else {
            return true;
        };
        let jobs: Vec<&Job> = run.jobs.iter().filter_map(|id| self.jobs.get(id)).collect();
        let done = jobs.iter().all(|j| j.status == "completed");
        let failed = jobs
            .iter()
            .find(|j| j.conclusion.as_deref().is_some_and(|c| c != "success"));
        let run_conclusion = failed
            .and_then(|j| j.conclusion.clone())
            .unwrap_or_else(|| "success".into());
        if let Some(run) = self.runs.get_mut(&run_id) {
            run.updated_ms = now_ms;
            if done {
                run.status = "completed";
                run.conclusion = Some(run_conclusion);
            }
        }
        true
    }

    /// Resolves a runner path segment: a runner of exactly this scope.
    pub fn runner_in(&self, scope: &Scope, id: u64) -> Option<&Runner> {
        self.runners.get(&id).filter(|r| &r.scope == scope)
    }
}

/// Labels `config.sh` adds by itself; GitHub marks them read-only.
fn is_default_label(l: &str) -> bool {
    ["self-hosted", "linux", "x64", "arm64", "windows", "macos"]
        .iter()
        .any(|d| d.eq_ignore_ascii_case(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> (State, Repo) {
        let mut s = State::default();
        let repo = s.repo("acme", "app", 0);
        (s, repo)
    }

    #[test]
    fn a_runner_takes_the_oldest_job_it_satisfies_ignoring_case() {
        let (mut s, repo) = world();
        let gpu = s.enqueue(
            &repo,
            vec![(
                vec!["self-hosted".into(), "gpu".into()],
                Duration::from_secs(1),
            )],
            "a".into(),
            1,
        );
        let small = s.enqueue(
            &repo,
            vec![(vec!["Self-Hosted".into()], Duration::from_secs(2))],
            "b".into(),
            2,
        );
        let r = s.add_runner(
            "r1",
            Scope::Repo("acme/app".into()),
            &["self-hosted".into(), "linux".into()],
            true,
        );
        assert_eq!(s.assign(r, 3), Some((small[0], Duration::from_secs(2))));
        assert_eq!(s.assign(r, 3), None, "a busy runner takes nothing more");
        assert_eq!(s.jobs[&gpu[0]].status, "queued");
    }

    #[test]
    fn org_runners_serve_every_repo_of_the_org_and_no_other() {
        let (mut s, _) = world();
        let other = s.repo("else", "app", 0);
        s.enqueue(
            &other,
            vec![(vec!["self-hosted".into()], Duration::ZERO)],
            "a".into(),
            1,
        );
        let mine = s.repo("Acme", "web", 0);
        let ids = s.enqueue(
            &mine,
            vec![(vec!["self-hosted".into()], Duration::ZERO)],
            "a".into(),
            2,
        );
        let r = s.add_runner(
            "r",
            Scope::Org("acme".into()),
            &["self-hosted".into()],
            true,
        );
        assert_eq!(s.assign(r, 3).map(|a| a.0), Some(ids[0]));
    }

    #[test]
    fn a_run_completes_with_its_last_job_and_keeps_a_failure() {
        let (mut s, repo) = world();
        let ids = s.enqueue(
            &repo,
            vec![(vec![], Duration::ZERO), (vec![], Duration::ZERO)],
            "a".into(),
            0,
        );
        assert!(s.complete(ids[0], "failure", 1));
        let run = s.jobs[&ids[0]].run_id;
        assert_eq!(s.runs[&run].status, "queued");
        assert!(s.complete(ids[1], "success", 2));
        assert!(
            !s.complete(ids[1], "success", 3),
            "completing twice changes nothing"
        );
        assert_eq!(
            (s.runs[&run].status, s.runs[&run].conclusion.as_deref()),
            ("completed", Some("failure"))
        );
    }
}
