//! The job table: upserts from webhooks and polls (deduplicated by delivery id, never moving a
//! status backwards), and the reads the reconciler builds its snapshot from (retention is in `retention.rs`).

use crate::Store;
use crate::columns;
use crate::error::{During, Result};
use mayfly_core::{ForgeKind, Job, JobKey, JobStatus, Labels, Time};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe};
use std::collections::HashMap;

/// A job as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub key: JobKey,
    pub run_id: Option<u64>,
    pub attempt: u32,
    pub labels: Labels,
    pub status: JobStatus,
    pub queued_at: Time,
    /// When the store last learned something new about the job. An upsert's value is also the
    /// delivery's received-at time, and is kept only if the upsert changes something.
    pub updated_at: Time,
    pub runner_name: Option<String>,
    pub workflow: Option<String>,
}

/// See [`Store::job_tally`]: per status, the count and the sum of update times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobTally {
    pub queued: (u64, i64),
    pub running: (u64, i64),
}

impl Upsert {
    /// Whether the store learned something new.
    pub fn changed(self) -> bool {
        matches!(self, Upsert::Inserted | Upsert::Updated | Upsert::Started)
    }
}

impl JobRecord {
    /// Whether this record, applied to a queued job, says the job started on a runner.
    fn starts(&self) -> bool {
        match self.status {
            JobStatus::InProgress => true,
            JobStatus::Completed => self.runner_name.as_deref().is_some_and(|n| !n.is_empty()),
            JobStatus::Queued => false,
        }
    }

    /// The planner's view; `instances_created` comes from [`Store::instances_created_for`].
    pub fn to_job(&self, instances_created: u32) -> Job {
        Job {
            key: self.key.clone(),
            run_id: self.run_id,
            attempt: self.attempt,
            labels: self.labels.clone(),
            status: self.status,
            queued_at: self.queued_at,
            instances_created,
            runner: self.runner_name.clone(),
        }
    }
}

/// What the store knows of one workflow run (see [`Store::run_news`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunNews {
    /// When the store last learned something of any of its jobs.
    pub latest: Time,
    /// Its jobs the store does not hold as completed.
    pub open: u32,
}

/// What an upsert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upsert {
    Inserted,
    Updated,
    /// Updated, and this update is the one that took the job out of the queue onto a runner:
    /// the store held it as queued, and it is now in progress (or completed, naming the runner
    /// that ran it). Exactly one upsert per job says so, whatever the interleaving, which is
    /// what makes it the place to measure how long the job waited.
    Started,
    /// Same status and nothing new.
    Unchanged,
    /// The store already has a later status: this event was overtaken by another.
    Stale,
    /// This delivery id was seen before; nothing changed.
    DuplicateDelivery,
}

const COLUMNS: &str = "forge, scope, job_id, run_id, attempt, labels, status, queued_at, updated_at, runner_name, workflow";

struct JobRow {
    forge: String,
    scope: String,
    job_id: i64,
    run_id: Option<i64>,
    attempt: i64,
    labels: String,
    status: String,
    queued_at: i64,
    updated_at: i64,
    runner_name: Option<String>,
    workflow: Option<String>,
}

from_any_row!(JobRow {
    forge,
    scope,
    job_id,
    run_id,
    attempt,
    labels,
    status,
    queued_at,
    updated_at,
    runner_name,
    workflow
});

impl TryFrom<JobRow> for JobRecord {
    type Error = crate::StoreError;

    fn try_from(r: JobRow) -> Result<JobRecord> {
        Ok(JobRecord {
            key: JobKey {
                forge: columns::forge(&r.forge)?,
                scope: r.scope.into(),
                id: columns::stored_u64(r.job_id, "job id")?,
            },
            run_id: r
                .run_id
                .map(|id| columns::stored_u64(id, "run id"))
                .transpose()?,
            attempt: columns::stored_u32(r.attempt, "attempt")?,
            labels: columns::stored_json(&r.labels, "job labels")?,
            status: columns::status(&r.status)?,
            queued_at: Time(r.queued_at),
            updated_at: Time(r.updated_at),
            runner_name: r.runner_name,
            workflow: r.workflow,
        })
    }
}

/// A record as the values of [`COLUMNS`], in order: `$1` to `$11` of [`INSERT_JOB`] and
/// [`UPDATE_JOB`].
struct JobValues<'a> {
    rec: &'a JobRecord,
    forge: &'static str,
    job_id: i64,
    run_id: Option<i64>,
    labels: String,
    updated_at: i64,
}

impl<'a> JobValues<'a> {
    fn new(rec: &'a JobRecord) -> Result<Self> {
        Ok(JobValues {
            rec,
            forge: rec.key.forge.as_str(),
            job_id: columns::id(rec.key.id, "job id")?,
            run_id: rec.run_id.map(|id| columns::id(id, "run id")).transpose()?,
            labels: columns::json(&rec.labels, "job labels")?,
            updated_at: rec.updated_at.millis(),
        })
    }

    fn bind<'q>(&self, query: Query<'q, Any, AnyArguments>) -> Query<'q, Any, AnyArguments> {
        query
            .bind(self.forge)
            .bind(&*self.rec.key.scope)
            .bind(self.job_id)
            .bind(self.run_id)
            .bind(i64::from(self.rec.attempt))
            .bind(&self.labels)
            .bind(columns::status_str(self.rec.status))
            .bind(self.rec.queued_at.millis())
            .bind(self.updated_at)
            .bind(self.rec.runner_name.as_deref())
            .bind(self.rec.workflow.as_deref())
    }
}

/// `$1`–`$11` as bound by [`JobValues::bind`].
const INSERT_JOB: &str =
    "INSERT INTO jobs (forge, scope, job_id, run_id, attempt, labels, status, queued_at,
        updated_at, runner_name, workflow)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     ON CONFLICT (forge, scope, job_id) DO NOTHING";

/// Applies only when the stored status ranks no higher than `$12` (the ranks of
/// `columns::status_rank`) and something differs. PostgreSQL re-checks the condition against the
/// latest row version after a lock wait and SQLite runs it under the write lock, so under any
/// interleaving a status never moves back.
macro_rules! update_job {
    () => {
        "UPDATE jobs SET run_id = COALESCE($4, run_id), attempt = $5, labels = $6,
        status = $7, queued_at = $8, updated_at = $9,
        runner_name = COALESCE($10, runner_name), workflow = COALESCE($11, workflow)
     WHERE forge = $1 AND scope = $2 AND job_id = $3
       AND CASE status WHEN 'completed' THEN 2 WHEN 'in_progress' THEN 1 ELSE 0 END <= $12
       AND (status <> $7 OR attempt <> $5 OR labels <> $6 OR queued_at <> $8
            OR COALESCE($4, run_id) IS DISTINCT FROM run_id
            OR COALESCE($10, runner_name) IS DISTINCT FROM runner_name
            OR COALESCE($11, workflow) IS DISTINCT FROM workflow)"
    };
}
const UPDATE_JOB: &str = update_job!();
/// [`UPDATE_JOB`] for a job the store still holds as queued: tried first by an update that
/// starts the job, so that the one statement that moves the row out of the queue is known.
const START_JOB: &str = concat!(update_job!(), " AND status = 'queued'");

impl Store {
    /// Records `rec` in one transaction with its delivery. Safe under concurrent callers: each
    /// write is one conditional statement; the only read, which tells `Stale` from `Unchanged`,
    /// comes after them and decides nothing.
    ///
    /// Null `run_id`, `runner_name` and `workflow` keep what is stored: an event that lacks
    /// them does not make the store forget them.
    pub async fn upsert_job(&self, rec: &JobRecord, delivery_id: Option<&str>) -> Result<Upsert> {
        let what = || format!("upsert job {}", rec.key);
        let values = JobValues::new(rec)?;
        let mut tx = self.begin_write().await.during(what)?;
        if let Some(delivery) = delivery_id {
            let fresh = sqlx::query(
                "INSERT INTO deliveries (delivery_id, forge, scope, job_id, received_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (delivery_id) DO NOTHING",
            )
            .bind(delivery)
            .bind(values.forge)
            .bind(&*rec.key.scope)
            .bind(values.job_id)
            .bind(values.updated_at)
            .execute(&mut *tx)
            .await
            .during(|| format!("record delivery {delivery} of job {}", rec.key))?;
            if fresh.rows_affected() == 0 {
                tx.rollback().await.during(what)?;
                return Ok(Upsert::DuplicateDelivery);
            }
        }

        let insert = values.bind(sqlx::query(INSERT_JOB));
        let update = |sql| {
            values
                .bind(sqlx::query(sql))
                .bind(columns::status_rank(rec.status))
        };
        let outcome = if insert.execute(&mut *tx).await.during(what)?.rows_affected() == 1 {
            Upsert::Inserted
        } else if rec.starts()
            && update(START_JOB)
                .execute(&mut *tx)
                .await
                .during(what)?
                .rows_affected()
                == 1
        {
            Upsert::Started
        } else if update(UPDATE_JOB)
            .execute(&mut *tx)
            .await
            .during(what)?
            .rows_affected()
            == 1
        {
            Upsert::Updated
        } else {
            let stored: Option<String> = sqlx::query_scalar(
                "SELECT status FROM jobs WHERE forge = $1 AND scope = $2 AND job_id = $3",
            )
            .bind(values.forge)
            .bind(&*rec.key.scope)
            .bind(values.job_id)
            .fetch_optional(&mut *tx)
            .await
            .during(what)?;
            match stored.as_deref().map(columns::status).transpose()? {
                Some(s) if columns::status_rank(s) <= columns::status_rank(rec.status) => {
                    Upsert::Unchanged
                }
                // A later status, or a finished job that retention forgot meanwhile.
                _ => Upsert::Stale,
            }
        };
        tx.commit().await.during(what)?;
        Ok(outcome)
    }

    pub async fn job(&self, key: &JobKey) -> Result<Option<JobRecord>> {
        let what = || format!("read job {key}");
        let row: Option<JobRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM jobs WHERE forge = $1 AND scope = $2 AND job_id = $3"
        )))
        .bind(key.forge.as_str())
        .bind(&*key.scope)
        .bind(columns::id(key.id, "job id")?)
        .fetch_optional(&self.pool)
        .await
        .during(what)?;
        row.map(JobRecord::try_from).transpose()
    }

    /// Jobs in any of `statuses`, oldest queued first (then by key, so the order is total).
    pub async fn jobs_with_status(&self, statuses: &[JobStatus]) -> Result<Vec<JobRecord>> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE status IN ({})
             ORDER BY queued_at, forge, scope, job_id",
            columns::placeholders(1, statuses.len())
        );
        let mut query = sqlx::query_as(AssertSqlSafe(sql));
        for s in statuses {
            query = query.bind(columns::status_str(*s));
        }
        let rows: Vec<JobRow> = query
            .fetch_all(&self.pool)
            .await
            .during(|| "list jobs by status".into())?;
        rows.into_iter().map(JobRecord::try_from).collect()
    }

    /// How many jobs are queued and in progress, and the sum of their update times: a cheap
    /// fingerprint the leader of several replicas compares from one read to the next, to learn
    /// of jobs that webhooks brought to another replica (a new queued job changes the queued
    /// tally; a start or an end changes the running one). No clocks are compared.
    pub async fn job_tally(&self) -> Result<JobTally> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*), CAST(COALESCE(SUM(updated_at), 0) AS BIGINT) FROM jobs
             WHERE status <> 'completed' GROUP BY status",
        )
        .fetch_all(&self.pool)
        .await
        .during(|| "count the open jobs".into())?;
        let mut tally = JobTally::default();
        for (status, count, sum) in rows {
            let count = columns::stored_u64(count, "job count")?;
            match columns::status(&status)? {
                JobStatus::Queued => tally.queued = (count, sum),
                JobStatus::InProgress => tally.running = (count, sum),
                JobStatus::Completed => {}
            }
        }
        Ok(tally)
    }

    /// What the store knows of workflow runs `runs` of `scope`: per run with jobs here, when it
    /// last learned something of any of them and how many are not completed. A poll skips a
    /// run it has news of already (its webhooks brought it) and reads only the others.
    pub async fn run_news(
        &self,
        forge: ForgeKind,
        scope: &str,
        runs: &[u64],
    ) -> Result<HashMap<u64, RunNews>> {
        let mut out = HashMap::with_capacity(runs.len());
        // In chunks: a poll can return many runs, and databases cap the parameters of a query.
        for chunk in runs.chunks(500) {
            let sql = format!(
                "SELECT run_id, MAX(updated_at), SUM(CASE WHEN status = 'completed' THEN 0 ELSE 1 END)
                 FROM jobs WHERE forge = $1 AND scope = $2 AND run_id IN ({})
                 GROUP BY run_id",
                columns::placeholders(3, chunk.len())
            );
            let mut query = sqlx::query_as::<_, (i64, i64, i64)>(AssertSqlSafe(sql))
                .bind(forge.as_str())
                .bind(scope);
            for run in chunk {
                query = query.bind(columns::id(*run, "run id")?);
            }
            let rows = query
                .fetch_all(&self.pool)
                .await
                .during(|| format!("read the news of {} runs of {scope}", chunk.len()))?;
            for (run, latest, open) in rows {
                out.insert(
                    columns::stored_u64(run, "run id")?,
                    RunNews {
                        latest: Time(latest),
                        open: u32::try_from(open).unwrap_or(u32::MAX),
                    },
                );
            }
        }
        Ok(out)
    }
}
