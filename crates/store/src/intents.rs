//! Instance intents: written before any create, keyed by the instance's deterministic name, so
//! a crash between intent and create can never yield two instances for one job attempt.

use crate::Store;
use crate::columns;
use crate::error::{During, Result, invalid};
use crate::lease::{Fence, Fenced};
use mayfly_core::{JobKey, Labels, MachineSpec, Time};
use sqlx::AssertSqlSafe;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntentState {
    /// Recorded; the create may be in flight or may never have been sent.
    Pending,
    Created,
    Failed,
    Deleted,
}

impl IntentState {
    pub const ALL: [IntentState; 4] = [
        IntentState::Pending,
        IntentState::Created,
        IntentState::Failed,
        IntentState::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IntentState::Pending => "pending",
            IntentState::Created => "created",
            IntentState::Failed => "failed",
            IntentState::Deleted => "deleted",
        }
    }
}

impl fmt::Display for IntentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IntentState {
    type Err = crate::StoreError;

    fn from_str(s: &str) -> Result<Self> {
        IntentState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| invalid("intent state", format!("unknown state {s:?}")))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    /// The instance's deterministic name: also its runner's name and the create's idempotency key.
    pub name: String,
    pub pool: String,
    pub provider: String,
    /// The job it is created for; `None` for standby.
    pub job: Option<JobKey>,
    pub attempt: u32,
    pub run_id: Option<u64>,
    pub labels: Labels,
    pub spec: MachineSpec,
    pub created_at: Time,
    pub state: IntentState,
    pub provider_id: Option<String>,
    pub updated_at: Time,
}

const COLUMNS: &str = "name, pool, provider, job_forge, job_scope, job_id, attempt, run_id, labels, spec, \
                       created_at, state, provider_id, updated_at";

struct IntentRow {
    name: String,
    pool: String,
    provider: String,
    job_forge: Option<String>,
    job_scope: Option<String>,
    job_id: Option<i64>,
    attempt: i64,
    run_id: Option<i64>,
    labels: String,
    spec: String,
    created_at: i64,
    state: String,
    provider_id: Option<String>,
    updated_at: i64,
}

from_any_row!(IntentRow {
    name,
    pool,
    provider,
    job_forge,
    job_scope,
    job_id,
    attempt,
    run_id,
    labels,
    spec,
    created_at,
    state,
    provider_id,
    updated_at
});

impl TryFrom<IntentRow> for Intent {
    type Error = crate::StoreError;

    fn try_from(r: IntentRow) -> Result<Intent> {
        let job = match (r.job_forge, r.job_scope, r.job_id) {
            (Some(forge), Some(scope), Some(id)) => Some(JobKey {
                forge: columns::forge(&forge)?,
                scope: scope.into(),
                id: columns::stored_u64(id, "intent job id")?,
            }),
            _ => None,
        };
        Ok(Intent {
            name: r.name,
            pool: r.pool,
            provider: r.provider,
            job,
            attempt: columns::stored_u32(r.attempt, "intent attempt")?,
            run_id: r
                .run_id
                .map(|id| columns::stored_u64(id, "intent run id"))
                .transpose()?,
            labels: columns::stored_json(&r.labels, "intent labels")?,
            spec: columns::stored_json(&r.spec, "intent spec")?,
            created_at: Time(r.created_at),
            state: r.state.parse()?,
            provider_id: r.provider_id,
            updated_at: Time(r.updated_at),
        })
    }
}

impl Store {
    /// Inserts `intent` unless its name exists; returns whether it did. Of any number of
    /// concurrent callers with one name, exactly one gets `true`.
    ///
    /// Unfenced: for a store with one writer. Replicas write through [`Store::fenced`].
    pub async fn record_intent(&self, intent: &Intent) -> Result<bool> {
        self.record_intent_with(None, intent).await
    }

    pub(crate) async fn record_intent_with(
        &self,
        fence: Option<&Fence>,
        intent: &Intent,
    ) -> Result<bool> {
        let what = || format!("record intent {}", intent.name);
        let job_id = intent
            .job
            .as_ref()
            .map(|k| columns::id(k.id, "intent job id"))
            .transpose()?;
        let run_id = intent
            .run_id
            .map(|id| columns::id(id, "intent run id"))
            .transpose()?;
        let mut tx = self.begin_fenced(fence, &what).await?;
        let insert = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO intents ({COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (name) DO NOTHING"
        )))
        .bind(&intent.name)
        .bind(&intent.pool)
        .bind(&intent.provider)
        .bind(intent.job.as_ref().map(|k| k.forge.as_str()))
        .bind(intent.job.as_ref().map(|k| &*k.scope))
        .bind(job_id)
        .bind(i64::from(intent.attempt))
        .bind(run_id)
        .bind(columns::json(&intent.labels, "intent labels")?)
        .bind(columns::json(&intent.spec, "intent spec")?)
        .bind(intent.created_at.millis())
        .bind(intent.state.as_str())
        .bind(intent.provider_id.as_deref())
        .bind(intent.updated_at.millis())
        .execute(&mut *tx)
        .await
        .during(what)?;
        let inserted = insert.rows_affected() == 1;
        if let (true, Some(key), Some(job_id)) = (inserted, &intent.job, job_id) {
            sqlx::query(
                "INSERT INTO intent_counts (forge, scope, job_id, attempt, recorded)
                 VALUES ($1, $2, $3, $4, 1)
                 ON CONFLICT (job_id, forge, scope, attempt)
                 DO UPDATE SET recorded = intent_counts.recorded + 1",
            )
            .bind(key.forge.as_str())
            .bind(&*key.scope)
            .bind(job_id)
            .bind(i64::from(intent.attempt))
            .execute(&mut *tx)
            .await
            .during(what)?;
        }
        tx.commit().await.during(what)?;
        Ok(inserted)
    }

    /// All intents, oldest first.
    pub async fn intents(&self) -> Result<Vec<Intent>> {
        self.intents_in_state(&IntentState::ALL).await
    }

    pub async fn intents_in_state(&self, states: &[IntentState]) -> Result<Vec<Intent>> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM intents WHERE state IN ({}) ORDER BY created_at, name",
            columns::placeholders(1, states.len())
        );
        let mut query = sqlx::query_as(AssertSqlSafe(sql));
        for s in states {
            query = query.bind(s.as_str());
        }
        let rows: Vec<IntentRow> = query
            .fetch_all(&self.pool)
            .await
            .during(|| "list intents".into())?;
        rows.into_iter().map(Intent::try_from).collect()
    }

    /// Moves intent `name` to `state` at `at`; a `None` provider id keeps the stored one.
    /// Returns false when there is no such intent. Unfenced, as [`Store::record_intent`].
    pub async fn set_intent_state(
        &self,
        name: &str,
        state: IntentState,
        provider_id: Option<&str>,
        at: Time,
    ) -> Result<bool> {
        self.set_intent_state_with(None, name, state, provider_id, at)
            .await
    }

    pub(crate) async fn set_intent_state_with(
        &self,
        fence: Option<&Fence>,
        name: &str,
        state: IntentState,
        provider_id: Option<&str>,
        at: Time,
    ) -> Result<bool> {
        let what = || format!("set intent {name} to {state}");
        let mut tx = self.begin_fenced(fence, &what).await?;
        let done = sqlx::query(
            "UPDATE intents SET state = $2, provider_id = COALESCE($3, provider_id), updated_at = $4
             WHERE name = $1",
        )
        .bind(name)
        .bind(state.as_str())
        .bind(provider_id)
        .bind(at.millis())
        .execute(&mut *tx)
        .await
        .during(what)?;
        tx.commit().await.during(what)?;
        Ok(done.rows_affected() == 1)
    }

    /// Points an existing instance at its next job (recycling): the job, run and runner labels
    /// change, the state is `Created`. Returns false when there is no such intent. The job's
    /// count of instances created is left alone: no instance was created. Unfenced, as
    /// [`Store::record_intent`].
    pub async fn reassign_intent(
        &self,
        name: &str,
        job: Option<&JobKey>,
        attempt: u32,
        run_id: Option<u64>,
        labels: &Labels,
        at: Time,
    ) -> Result<bool> {
        let next = Reassign {
            job,
            attempt,
            run_id,
            labels,
            at,
        };
        self.reassign_intent_with(None, name, next).await
    }

    pub(crate) async fn reassign_intent_with(
        &self,
        fence: Option<&Fence>,
        name: &str,
        Reassign {
            job,
            attempt,
            run_id,
            labels,
            at,
        }: Reassign<'_>,
    ) -> Result<bool> {
        let what = || format!("reassign intent {name}");
        let job_id = job
            .map(|k| columns::id(k.id, "intent job id"))
            .transpose()?;
        let run_id = run_id
            .map(|id| columns::id(id, "intent run id"))
            .transpose()?;
        let labels = columns::json(labels, "intent labels")?;
        let mut tx = self.begin_fenced(fence, &what).await?;
        let done = sqlx::query(
            "UPDATE intents SET job_forge = $2, job_scope = $3, job_id = $4, attempt = $5,
                 run_id = $6, labels = $7, state = $8, updated_at = $9
             WHERE name = $1",
        )
        .bind(name)
        .bind(job.map(|k| k.forge.as_str()))
        .bind(job.map(|k| &*k.scope))
        .bind(job_id)
        .bind(i64::from(attempt))
        .bind(run_id)
        .bind(&labels)
        .bind(IntentState::Created.as_str())
        .bind(at.millis())
        .execute(&mut *tx)
        .await
        .during(what)?;
        tx.commit().await.during(what)?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes intent `name`; its job attempt's count of instances created stays.
    /// Returns false when there is no such intent. Unfenced, as [`Store::record_intent`].
    pub async fn remove_intent(&self, name: &str) -> Result<bool> {
        self.remove_intent_with(None, name).await
    }

    pub(crate) async fn remove_intent_with(
        &self,
        fence: Option<&Fence>,
        name: &str,
    ) -> Result<bool> {
        let what = || format!("remove intent {name}");
        let mut tx = self.begin_fenced(fence, &what).await?;
        let done = sqlx::query("DELETE FROM intents WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .during(what)?;
        tx.commit().await.during(what)?;
        Ok(done.rows_affected() == 1)
    }

    /// How many intents were ever recorded for this job attempt, in any state, removed ones
    /// included: it names the next instance, so it must never go down.
    pub async fn instances_created(&self, job: &JobKey, attempt: u32) -> Result<u32> {
        let key = (job.clone(), attempt);
        let counts = self
            .instances_created_for(std::slice::from_ref(&key))
            .await?;
        Ok(counts.get(&key).copied().unwrap_or(0))
    }

    /// [`Store::instances_created`] for many job attempts in a few queries; every attempt asked
    /// for is in the answer, with 0 when it has no intent.
    pub async fn instances_created_for(
        &self,
        attempts: &[(JobKey, u32)],
    ) -> Result<HashMap<(JobKey, u32), u32>> {
        /// Job ids per query: far below SQLite's and PostgreSQL's limits on bound values.
        const CHUNK: usize = 500;
        let mut counts: HashMap<(JobKey, u32), u32> =
            attempts.iter().map(|a| (a.clone(), 0)).collect();
        let mut ids: Vec<i64> = attempts
            .iter()
            .map(|(k, _)| columns::id(k.id, "job id"))
            .collect::<Result<_>>()?;
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(CHUNK) {
            // Select by job id alone and match the whole key here: a short, index-friendly query.
            let sql = format!(
                "SELECT forge, scope, job_id, attempt, recorded FROM intent_counts WHERE job_id IN ({})",
                columns::placeholders(1, chunk.len())
            );
            let mut query = sqlx::query_as(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            let rows: Vec<(String, String, i64, i64, i64)> = query
                .fetch_all(&self.pool)
                .await
                .during(|| "count instances created per job attempt".into())?;
            for (forge, scope, job_id, attempt, recorded) in rows {
                let key = JobKey {
                    forge: columns::forge(&forge)?,
                    scope: scope.into(),
                    id: columns::stored_u64(job_id, "job id")?,
                };
                let attempt = columns::stored_u32(attempt, "attempt")?;
                if let Some(n) = counts.get_mut(&(key, attempt)) {
                    *n = columns::stored_u32(recorded, "instances created")?;
                }
            }
        }
        Ok(counts)
    }
}

/// The next job of a reused instance, for [`Store::reassign_intent`].
pub(crate) struct Reassign<'a> {
    job: Option<&'a JobKey>,
    attempt: u32,
    run_id: Option<u64>,
    labels: &'a Labels,
    at: Time,
}

/// The intent writes of [`Store`], each refused with [`crate::StoreError::Fenced`] (nothing
/// written) once this holder has lost the lease. Same arguments and answers as the store's.
impl Fenced {
    pub async fn record_intent(&self, intent: &Intent) -> Result<bool> {
        self.store
            .record_intent_with(Some(&self.fence), intent)
            .await
    }

    pub async fn set_intent_state(
        &self,
        name: &str,
        state: IntentState,
        provider_id: Option<&str>,
        at: Time,
    ) -> Result<bool> {
        self.store
            .set_intent_state_with(Some(&self.fence), name, state, provider_id, at)
            .await
    }

    pub async fn reassign_intent(
        &self,
        name: &str,
        job: Option<&JobKey>,
        attempt: u32,
        run_id: Option<u64>,
        labels: &Labels,
        at: Time,
    ) -> Result<bool> {
        let next = Reassign {
            job,
            attempt,
            run_id,
            labels,
            at,
        };
        self.store
            .reassign_intent_with(Some(&self.fence), name, next)
            .await
    }

    pub async fn remove_intent(&self, name: &str) -> Result<bool> {
        self.store.remove_intent_with(Some(&self.fence), name).await
    }
}
