//! Demand from GitHub without webhooks, and the check that keeps a lost webhook from holding a
//! machine: polling, then confirming jobs held as queued for long. Both end in the store.
//!
//! Webhooks and polls take one path: a `JobUpdate` becomes a `JobRecord` upsert, and a change
//! wakes the reconciler. Nothing here calls GitHub on behalf of a webhook.

use crate::trust::{Activity, Trust};
use mayfly_core::forge::Confirmation;
use mayfly_core::{JobKey, JobStatus, Time};
use mayfly_forge::github::webhook::JobUpdate;
use mayfly_forge::github::{Client, Error, Poller, Repo};
use mayfly_forge::{Forge, ForgeError, GithubForge};
use mayfly_store::{JobRecord, Store, Upsert};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

/// The wall clock as mayfly's `Time`.
pub fn now() -> Time {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Time::from_millis(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
}

/// The store's record of an update received at `received`. A job's queue time is when GitHub
/// created it; older payloads without `created_at` fall back to its start, then to receipt.
pub fn record(update: &JobUpdate, received: Time) -> JobRecord {
    JobRecord {
        key: update.key.clone(),
        run_id: Some(update.run_id),
        attempt: update.run_attempt.unwrap_or(1),
        labels: update.labels.clone(),
        status: update.status,
        queued_at: update.created_at.or(update.started_at).unwrap_or(received),
        updated_at: received,
        runner_name: update.runner_name.clone(),
        workflow: update.workflow_name.clone(),
    }
}

/// Stores a job's record: the one way webhooks, polls and confirmations reach the store. The
/// upsert that takes the job out of the queue records how long it waited, from its queueing to
/// `started` (GitHub's start time where the update has one, else when the news arrived).
pub async fn store_job(
    store: &Store,
    rec: JobRecord,
    started: Time,
    delivery: Option<&str>,
) -> mayfly_store::Result<Upsert> {
    let outcome = store.upsert_job(&rec, delivery).await?;
    if outcome == Upsert::Started {
        crate::metrics::job_started(rec.queued_at, started);
    }
    Ok(outcome)
}

/// What one pass did, for the log and the tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DemandReport {
    /// Jobs the poll found in runs that changed.
    pub polled: usize,
    /// Jobs looked up one by one: held as queued or running for long, or contradicted by what
    /// a reconcile pass saw.
    pub confirmed: usize,
    /// Store records that changed.
    pub changed: usize,
    /// Changes the reconciler acts on at once (see [`wakes`]): any wakes it, once per pass.
    pub urgent: usize,
    /// Jobs that finished: they wake the loop a little later (see [`Wake`]).
    pub finished: usize,
    /// Jobs that started: the loop checks its plan again (see [`Wake`]).
    pub started: usize,
    pub failed: usize,
    /// Repositories found losing webhooks in this pass (polled closely from now on).
    pub lossy: usize,
}

/// Whether a job's new status calls for a reconcile pass now: a queued job needs a runner.
pub fn wakes(status: JobStatus) -> bool {
    status == JobStatus::Queued
}

/// How news of jobs reaches the reconcile loop. Every pass costs a provider list call, so
/// passes go where they serve jobs: a queued job wakes the loop `now`; a finished one `soon`
/// (its machine powers itself off within seconds, and one pass a little later, for all the
/// jobs that finished meanwhile, sees it off and keeps or deletes it); a started job changes
/// no decision and wakes nothing.
#[derive(Debug, Default)]
pub struct Wake {
    pub now: Notify,
    pub soon: Notify,
    /// A pass found jobs whose state in the store the forge's runners contradict.
    pub evidence: Notify,
    /// A job started: a machine's registration deadline may be moot (see
    /// `Reconciler::recheck`).
    pub started: Notify,
    /// The jobs behind `evidence`, to confirm with the forge.
    suspects: std::sync::Mutex<Vec<JobKey>>,
    /// What the webhooks stored since the last demand pass say of the deliveries before them,
    /// per forge (each forge's hooks reach mayfly by a way of their own).
    deliveries: std::sync::Mutex<HashMap<mayfly_core::ForgeKind, Deliveries>>,
}

/// What a stored webhook says of the deliveries before it. GitHub sends a job's `queued`,
/// `in_progress` and `completed` in turn: one that finds its predecessor in the store proves
/// both arrived; one that finds the job unknown, or still queued when it names the runner
/// that ran it, shows a delivery was lost (or came late, which is treated the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sequence {
    Proof,
    Gap,
    Nothing,
}

/// See [`Sequence`]. A `queued` delivery says nothing of earlier ones: the poll proves those.
pub fn sequence(status: JobStatus, outcome: Upsert) -> Sequence {
    match (status, outcome) {
        (JobStatus::InProgress, Upsert::Started) | (JobStatus::Completed, Upsert::Updated) => {
            Sequence::Proof
        }
        (JobStatus::InProgress | JobStatus::Completed, Upsert::Inserted)
        | (JobStatus::Completed, Upsert::Started) => Sequence::Gap,
        _ => Sequence::Nothing,
    }
}

/// Webhook evidence waiting for the next demand pass, per repository.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    /// Proofs per scope.
    pub proofs: HashMap<String, u32>,
    /// The first scope a gap was found in.
    pub gap: Option<String>,
}

impl Wake {
    /// A pass found the store behind the forge on these jobs (see `reconcile::evidence`).
    pub fn suspect(&self, jobs: Vec<JobKey>) {
        if jobs.is_empty() {
            return;
        }
        let mut suspects = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
        for job in jobs {
            if !suspects.contains(&job) {
                suspects.push(job);
            }
        }
        drop(suspects);
        self.evidence.notify_one();
    }

    /// The suspects of one forge's jobs: that forge's demand confirms them.
    pub fn take_suspects(&self, forge: mayfly_core::ForgeKind) -> Vec<JobKey> {
        let mut suspects = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
        let (mine, others) = std::mem::take(&mut *suspects)
            .into_iter()
            .partition(|k| k.forge == forge);
        *suspects = others;
        mine
    }

    /// A webhook of `forge`'s `scope` was stored with `outcome`: its evidence for the trust in
    /// that forge's webhooks, taken by its next demand pass. Each replica counts the deliveries
    /// it received.
    pub fn delivered(
        &self,
        forge: mayfly_core::ForgeKind,
        scope: &str,
        status: JobStatus,
        outcome: Upsert,
    ) {
        let kind = sequence(status, outcome);
        if kind == Sequence::Nothing {
            return;
        }
        let mut all = self.deliveries.lock().unwrap_or_else(|e| e.into_inner());
        let d = all.entry(forge).or_default();
        match kind {
            Sequence::Proof => *d.proofs.entry(scope.to_string()).or_default() += 1,
            Sequence::Gap if d.gap.is_none() => d.gap = Some(scope.to_string()),
            _ => {}
        }
    }

    /// The deliveries' evidence for `forge` since the last call.
    pub(crate) fn take_deliveries(&self, forge: mayfly_core::ForgeKind) -> Deliveries {
        self.deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&forge)
            .unwrap_or_default()
    }

    /// Wakes the loop as a job that moved to `status` calls for.
    pub fn job(&self, status: JobStatus) {
        match status {
            JobStatus::Queued => self.now.notify_one(),
            JobStatus::Completed => self.soon.notify_one(),
            JobStatus::InProgress => self.started.notify_one(),
        }
    }
}

pub struct Demand {
    store: Store,
    poller: Poller,
    wake: Arc<Wake>,
    /// The truth check of the jobs the store holds as queued or running.
    pub confirmer: Confirmer,
    /// What is known of each polled repository's webhooks (see [`crate::trust`]).
    trust: Trust,
    /// The poll cursors were read from the store (once, at the first pass).
    restored: bool,
}

impl Demand {
    pub fn new(
        store: Store,
        client: Client,
        repos: Vec<Repo>,
        wake: Arc<Wake>,
        confirm_queued: Duration,
    ) -> Demand {
        let trust = Trust::new(repos.iter().map(|r| r.to_string()), Duration::ZERO);
        let forge: Arc<dyn Forge> = Arc::new(GithubForge::confirming(client.clone()));
        Demand {
            confirmer: Confirmer::new(store.clone(), forge, confirm_queued),
            store,
            poller: Poller::new(client, repos),
            wake,
            trust,
            restored: false,
        }
    }

    /// A repository whose webhooks are trusted is polled only every `every`: the poll is the
    /// fallback for lost webhooks, and while webhooks flow it would mostly find what they said
    /// already. Every other repository is polled every pass: that costs nothing when it is quiet
    /// (304s), and finds its jobs when its webhooks are lost or not configured. Zero (the
    /// default) polls every repository every pass.
    pub fn backstop(mut self, every: Duration) -> Demand {
        self.trust.set_backstop(every);
        self
    }

    /// How old news of a running job may get before it is confirmed, and how old a
    /// contradiction must be to count (see the fields). Defaults: 10 minutes and 10 s.
    pub fn timing(mut self, confirm_running: Duration, grace: Duration) -> Demand {
        self.confirmer.confirm_running = confirm_running;
        self.confirmer.grace = grace;
        self
    }

    /// The repositories the store holds a queued job of, when a trusted one is due for its
    /// backstop (see [`Trust::due`]); none otherwise, and none when the store cannot say.
    async fn queued_repos(&self, now: Time) -> HashSet<String> {
        if !self.trust.backstop_due(now) {
            return HashSet::new();
        }
        queued_scopes(&self.store, mayfly_core::ForgeKind::Github).await
    }

    /// Whether `repo`'s webhooks are trusted (polled at the backstop only).
    pub fn trusted(&self, repo: &str) -> bool {
        self.trust.trusted(repo)
    }

    /// Evidence that `repo` loses webhooks: every repository is polled every pass again.
    fn lost(&mut self, repo: &str, report: &mut DemandReport) {
        if self.trust.lost(repo) {
            report.lossy += 1;
        }
    }

    /// One poll of every repository that is due, then the confirmations that are due.
    pub async fn pass(&mut self, now: Time) -> DemandReport {
        let mut report = DemandReport::default();
        self.restore().await;
        self.trust.restore(&self.store, TRUST_CURSOR).await;
        // The webhooks' own evidence first: a gap found since the last pass puts every
        // repository on the poll again in this very pass.
        let deliveries = self.wake.take_deliveries(mayfly_core::ForgeKind::Github);
        for (repo, n) in deliveries.proofs {
            self.learn(&repo, Activity::Heard(n), now, &mut report);
        }
        if let Some(repo) = deliveries.gap {
            self.lost(&repo, &mut report);
        }
        let queued = self.queued_repos(now).await;
        let repos: Vec<String> = self.poller.repos().iter().map(|r| r.to_string()).collect();
        let due = self
            .trust
            .due(now, repos.iter().map(String::as_str), &queued);
        for repo in self.poller.repos().to_vec() {
            if !due.contains(&repo.to_string()) {
                continue;
            }
            match self.poll(&repo, now, &mut report).await {
                Ok(activity) => self.learn(&repo.to_string(), activity, now, &mut report),
                Err(e) => {
                    debug!(repo = %repo, error = %e, "poll failed");
                    report.failed += 1;
                }
            }
        }
        self.persist(now).await;
        let suspects = self.wake.take_suspects(mayfly_core::ForgeKind::Github);
        self.confirm(now, suspects, &mut report).await;
        self.trust.persist(&self.store, TRUST_CURSOR, now).await;
        self.finish(&report);
        report
    }

    /// Polls one repository: its changed runs, of which only those the store has no news of
    /// are read (a run a webhook told of since it changed costs nothing more), their jobs
    /// stored. What the poll saw of the repository's webhooks.
    async fn poll(
        &mut self,
        repo: &Repo,
        now: Time,
        report: &mut DemandReport,
    ) -> Result<Activity, Error> {
        // A repository whose webhooks arrive (some at least) is asked for its queued runs only:
        // a lost `queued` webhook is what keeps a job waiting, and the queue is what finds it.
        // Starts and ends whose webhooks were lost are found by the reconcile pass's evidence
        // and the truth check. A repository no webhook came from yet gets both lists: polling
        // may be all it has.
        let heard = self.trust.heard(&repo.to_string());
        let runs = if heard {
            self.poller.queued_runs(repo).await?
        } else {
            self.poller.changed_runs(repo).await?
        };
        if runs.is_empty() {
            return Ok(Activity::Quiet);
        }
        let scope = repo.to_string();
        let ids: Vec<u64> = runs.iter().map(|r| r.id).collect();
        let known = match self
            .store
            .run_news(mayfly_core::ForgeKind::Github, &scope, &ids)
            .await
        {
            Ok(news) => news,
            Err(e) => {
                debug!(error = %e, "cannot read what the store knows of the runs: reading them all");
                HashMap::new()
            }
        };
        // A listed run the store heard of since it last changed, or a run gone from the lists
        // whose jobs the store holds all finished: nothing to read.
        let unknown: Vec<u64> = runs
            .iter()
            .filter(|r| {
                known.get(&r.id).is_none_or(|n| match r.updated_at {
                    Some(changed) => n.latest < changed,
                    None => n.open > 0,
                })
            })
            .map(|r| r.id)
            .collect();
        // Proof of delivery is new runs whose jobs had all reached the store before the poll
        // saw them: their `queued` webhooks arrived. (A changed run the store knows of proves
        // less: a later webhook may have brought what an earlier lost one should have.)
        let heard_new = runs
            .iter()
            .filter(|r| r.new && !unknown.contains(&r.id))
            .count() as u32;
        if unknown.is_empty() {
            return Ok(if heard_new > 0 {
                Activity::Heard(heard_new)
            } else {
                Activity::Quiet
            });
        }
        let found = self.poller.read(repo, &unknown).await?;
        report.polled += found.len();
        let changed_before = report.changed;
        let mut missed = false;
        for update in found {
            let before = report.changed;
            let started = update.started_at.unwrap_or(now);
            let overdue = self.overdue(&update, now);
            let run = update.run_id;
            if !self
                .store_record(record(&update, now), started, report)
                .await
            {
                // Not kept: read that run again next poll, whatever the lists say.
                self.poller.refetch(&scope, run);
            }
            missed |= report.changed > before && overdue;
        }
        // News the poll brought first, but fresh: the webhooks may have been about to. No
        // loss proven, but no proof of delivery either.
        Ok(if missed {
            Activity::Missed
        } else if report.changed > changed_before {
            Activity::Unproven
        } else {
            Activity::Heard(heard_new)
        })
    }

    /// What a poll says of a repository's webhooks (see [`Trust::learn`]).
    fn learn(&mut self, repo: &str, activity: Activity, now: Time, report: &mut DemandReport) {
        let learned = self.trust.learn(repo, activity, now);
        report.urgent += usize::from(learned.urgent);
        report.lossy += usize::from(learned.lossy);
    }

    /// Confirms the jobs a reconcile pass found contradicted, at once (between polls).
    pub async fn evidence(&mut self, now: Time) -> DemandReport {
        let mut report = DemandReport::default();
        let suspects = self.wake.take_suspects(mayfly_core::ForgeKind::Github);
        if !suspects.is_empty() {
            self.confirm(now, suspects, &mut report).await;
            self.finish(&report);
        }
        report
    }

    fn finish(&self, report: &DemandReport) {
        if report.urgent > 0 {
            self.wake.now.notify_one();
        }
        if report.finished > 0 {
            self.wake.soon.notify_one();
        }
        if report.started > 0 {
            self.wake.started.notify_one();
        }
        if report.changed > 0 || report.failed > 0 || report.lossy > 0 {
            info!(
                polled = report.polled,
                confirmed = report.confirmed,
                changed = report.changed,
                failed = report.failed,
                lossy = report.lossy,
                "demand pass"
            );
        }
    }

    /// Whether a poll's news of `update` should have reached mayfly by webhook already: its
    /// change happened longer than the grace ago (by GitHub's own times, where it gives them).
    fn overdue(&self, update: &JobUpdate, now: Time) -> bool {
        let since = match update.status {
            JobStatus::Queued => update.created_at,
            JobStatus::InProgress => update.started_at,
            JobStatus::Completed => None,
        };
        since.is_none_or(|t| now.since(t) > self.confirmer.grace)
    }

    /// Reads the poll cursors a previous process saved, once.
    async fn restore(&mut self) {
        if std::mem::replace(&mut self.restored, true) {
            return;
        }
        for repo in self.poller.repos().to_vec() {
            let name = cursor_name(&repo.to_string());
            match self.store.cursor(&name).await {
                Ok(Some(text)) => match serde_json::from_str(&text) {
                    Ok(cursor) => self.poller.restore(&repo.to_string(), cursor),
                    Err(e) => {
                        warn!(cursor = %name, error = %e, "unreadable poll cursor: starting afresh")
                    }
                },
                Ok(None) => {}
                Err(e) => {
                    warn!(error = %e, "cannot read the poll cursors: reading every run afresh")
                }
            }
        }
    }

    /// Saves the cursors that moved, so a restart reads only what changed since.
    async fn persist(&mut self, now: Time) {
        for repo in self.poller.repos().to_vec() {
            let repo = repo.to_string();
            let Some(cursor) = self.poller.take_cursor(&repo) else {
                continue;
            };
            let Ok(text) = serde_json::to_string(&cursor) else {
                continue;
            };
            if let Err(e) = self
                .store
                .save_cursor(&cursor_name(&repo), &text, now)
                .await
            {
                debug!(error = %e, "poll cursor not saved: a restart reads those runs again");
            }
        }
    }

    /// Stores a record; false when the store failed (the news must be fetched again). Takes
    /// the record by value: a borrowed update held across the store's await trips the
    /// compiler's check that the spawned pass is `Send`.
    async fn store_record(&self, rec: JobRecord, started: Time, report: &mut DemandReport) -> bool {
        let status = rec.status;
        let key = rec.key.clone();
        match store_job(&self.store, rec, started, None).await {
            Ok(outcome) => {
                if outcome.changed() {
                    report.changed += 1;
                    report.urgent += usize::from(wakes(status));
                    report.finished += usize::from(status == JobStatus::Completed);
                    report.started += usize::from(status == JobStatus::InProgress);
                }
                true
            }
            Err(e) => {
                warn!(job = %key, error = %e, "job not stored; it is read again next poll");
                report.failed += 1;
                false
            }
        }
    }

    /// The truth check: confirms with GitHub the `suspects` a reconcile pass found contradicted
    /// (once per grace each), then the jobs the store holds as queued or running whose news is
    /// older than their interval, oldest first, at most `confirm_per_pass` in all. A job GitHub
    /// no longer knows is recorded as completed, so it never keeps a machine alive. A
    /// confirmation that changes the store is evidence of lost webhooks.
    async fn confirm(&mut self, now: Time, suspects: Vec<JobKey>, report: &mut DemandReport) {
        for scope in self.confirmer.run(now, &suspects, report).await {
            self.lost(&scope, report);
        }
    }
}

/// The scopes (repositories, projects) of `forge` the store holds a queued job of; none when
/// the store cannot say (a backstop poll then goes out as due).
async fn queued_scopes(store: &Store, forge: mayfly_core::ForgeKind) -> HashSet<String> {
    match store.jobs_with_status(&[JobStatus::Queued]).await {
        Ok(jobs) => jobs
            .into_iter()
            .filter(|j| j.key.forge == forge)
            .map(|j| j.key.scope.to_string())
            .collect(),
        Err(e) => {
            debug!(error = %e, "cannot read the queued jobs: polling at the backstop as due");
            HashSet::new()
        }
    }
}

/// The store name of what is known of GitHub's webhooks (see [`Trust::restore`]).
const TRUST_CURSOR: &str = "github:webhook-trust";

/// The store name of a repository's poll cursor.
fn cursor_name(repo: &str) -> String {
    format!("github:runs:{repo}")
}

/// What the forge said of a job the store holds as queued or running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Confirmed {
    /// The forge's status; `Completed` for a job the forge no longer knows.
    pub status: JobStatus,
    /// The store learned something new.
    pub changed: bool,
}

/// Asks the job's forge about one job (one request; GitHub's is conditional, a free 304 when
/// nothing changed since the last answer) and records what it says: a status past the
/// store's, or completed when the forge no longer knows the job. A store that cannot be
/// written is logged, not an error: the forge's answer is still the truth.
pub async fn confirm_job(
    forge: &dyn Forge,
    store: &Store,
    job: &JobRecord,
    now: Time,
) -> Result<Confirmed, ForgeError> {
    let unchanged = Confirmed {
        status: job.status,
        changed: false,
    };
    let (status, runner) = match forge.confirm(&job.key).await? {
        // The same answer as last time: what the store holds came from it.
        Confirmation::Unchanged | Confirmation::Other => return Ok(unchanged),
        Confirmation::Status { status, runner } => (status, runner),
        Confirmation::Gone => (JobStatus::Completed, None),
    };
    if status == job.status {
        return Ok(unchanged);
    }
    let rec = JobRecord {
        status,
        updated_at: now,
        runner_name: runner.or_else(|| job.runner_name.clone()),
        ..job.clone()
    };
    let changed = match store_job(store, rec, now, None).await {
        Ok(outcome) => outcome.changed(),
        Err(e) => {
            warn!(job = %job.key, error = %e, "job confirmed but not stored");
            false
        }
    };
    Ok(Confirmed { status, changed })
}

/// The truth check, the same for every forge: each job of one forge that the store holds as
/// queued or running is confirmed once its news is old (queued and running jobs on their own
/// intervals), and a job suspected of a lost webhook once its news is older than `grace`.
pub struct Confirmer {
    store: Store,
    forge: Arc<dyn Forge>,
    /// A job the store holds as queued is confirmed once its news is this old,
    pub confirm_queued: Duration,
    /// and one it holds as running once its news is this old: polled repositories and
    /// projects included (a poll can miss a job that came and went).
    pub confirm_running: Duration,
    /// How old a contradiction must be before it counts as a lost webhook (news takes a moment
    /// to arrive), and how long a suspect once confirmed is left alone.
    pub grace: Duration,
    /// When each job was last confirmed, so a job stuck in the queue costs one request per
    /// interval (a 304, free, when nothing changed), not one per pass.
    confirmed_at: HashMap<JobKey, Time>,
    /// Most jobs confirmed in one pass: a bound on the budget one pass can spend.
    pub per_pass: usize,
}

impl Confirmer {
    pub fn new(store: Store, forge: Arc<dyn Forge>, confirm_queued: Duration) -> Confirmer {
        Confirmer {
            store,
            forge,
            confirm_queued,
            confirm_running: confirm_queued.max(Duration::from_secs(600)),
            grace: Duration::from_secs(10),
            confirmed_at: HashMap::new(),
            per_pass: 50,
        }
    }

    /// Confirms the suspects among this forge's held jobs whose news is older than `grace`,
    /// then the jobs due, oldest news first, at most `per_pass` in all. Returns the scopes
    /// (repository, project) of the jobs whose records this changed: evidence of lost news.
    pub async fn run(
        &mut self,
        now: Time,
        suspects: &[JobKey],
        report: &mut DemandReport,
    ) -> Vec<String> {
        let kind = self.forge.kind();
        let held = match self
            .store
            .jobs_with_status(&[JobStatus::Queued, JobStatus::InProgress])
            .await
        {
            Ok(jobs) => jobs
                .into_iter()
                .filter(|j| j.key.forge == kind)
                .collect::<Vec<_>>(),
            Err(e) => {
                warn!(error = %e, "cannot read the jobs to confirm");
                report.failed += 1;
                return Vec::new();
            }
        };
        let grace = self.grace;
        let confirmed_at = &self.confirmed_at;
        let quiet_for = |j: &JobRecord, every: Duration| {
            now.since(j.updated_at) > every
                && confirmed_at
                    .get(&j.key)
                    .is_none_or(|t| now.since(*t) > every)
        };
        let mut due: Vec<&JobRecord> = held
            .iter()
            .filter(|j| suspects.contains(&j.key) && quiet_for(j, grace))
            .collect();
        let mut scheduled: Vec<&JobRecord> = held
            .iter()
            .filter(|j| !suspects.contains(&j.key))
            .filter(|j| match j.status {
                JobStatus::Queued => quiet_for(j, self.confirm_queued),
                _ => quiet_for(j, self.confirm_running),
            })
            .collect();
        scheduled.sort_by_key(|j| j.updated_at);
        due.extend(scheduled);
        due.truncate(self.per_pass);
        let due: Vec<JobRecord> = due.into_iter().cloned().collect();
        let mut behind = Vec::new();
        for job in due {
            self.confirmed_at.insert(job.key.clone(), now);
            report.confirmed += 1;
            match confirm_job(self.forge.as_ref(), &self.store, &job, now).await {
                Ok(Confirmed {
                    changed: true,
                    status,
                }) => {
                    report.changed += 1;
                    // The last plan rested on what the store said of this job (a machine kept
                    // busy for a job long over, say): plan again at once, whatever the job's
                    // new status. With recycling, a finished job alone wakes no pass.
                    report.urgent += 1;
                    report.finished += usize::from(status == JobStatus::Completed);
                    report.started += usize::from(status == JobStatus::InProgress);
                    behind.push(job.key.scope.to_string());
                }
                Ok(_) => {}
                Err(ForgeError::Postponed { .. }) => {
                    debug!(forge = kind.as_str(), "budget low: confirmations postponed");
                    break;
                }
                Err(e) => {
                    debug!(job = %job.key, error = %e, "cannot confirm job");
                    report.failed += 1;
                }
            }
        }
        // Forget what is no longer held or due (and the forge's memory of it with it).
        let keep = self.confirm_queued.max(self.confirm_running) * 2;
        let held: HashSet<&JobKey> = held.iter().map(|j| &j.key).collect();
        let forge = &self.forge;
        self.confirmed_at.retain(|key, t| {
            let keep = held.contains(key) && now.since(*t) <= keep;
            if !keep {
                forge.forget_job(key);
            }
            keep
        });
        behind
    }
}
