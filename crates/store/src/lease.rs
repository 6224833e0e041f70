//! The leader lease: one row that names the replica allowed to act, until when, and under which
//! epoch; and the fence that makes every intent write prove it still holds that epoch.
//!
//! Why a lease row and not a PostgreSQL advisory lock: an advisory lock lives as long as the
//! session that took it. A leader that is paused (SIGSTOP, a stalled VM, a long GC-like stop)
//! keeps its TCP connection and so its lock, for as long as the kernel keeps the socket (minutes
//! to hours with default keepalives): nobody else could lead, and when it woke up it would still
//! hold the lock and act at once. A row with an expiry hands leadership on after a bounded time
//! whatever the old leader's connection does, and its epoch, raised by every new holder, is what
//! fences the old one out: every intent write checks, in its own transaction, that the epoch it
//! carries is the current one and has not expired. The same SQL runs on SQLite, where the file
//! lock (`Store::lock_single_writer`) already makes one process the only contender.
//!
//! Times are the database's clock, not the replicas': replicas on different machines never
//! compare their clocks, and a lease's expiry means the same thing to all of them.
//!
//! On PostgreSQL the fence check reads the lease row `FOR SHARE`: a takeover (an `UPDATE` of
//! that row) waits for intent writes in flight, and a write that waited for a takeover reads
//! the new epoch and is refused. Every write is thus either ordered before the takeover, and
//! seen by the new leader's first read, or not done at all.

use crate::error::{During, Result, StoreError};
use crate::{Backend, Store};
use mayfly_core::Time;
use sqlx::{Any, AssertSqlSafe, Transaction};
use std::time::Duration;

/// The lease the reconcile loop runs under.
const LEADER: &str = "leader";

/// Proof of leadership, carried by every fenced write: who holds the lease, and under which
/// epoch. Epochs only grow: a new holder always gets a higher one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fence {
    pub holder: String,
    pub epoch: u64,
}

/// A lease this replica holds, as the database granted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub fence: Fence,
    /// When this holder took it (the database's clock).
    pub acquired_at: Time,
    /// Until when, unless renewed (the database's clock).
    pub expires_at: Time,
}

/// The lease as stored, with the database's clock at the time of reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseState {
    /// `None` when nobody ever held it or the last holder released it.
    pub holder: Option<String>,
    pub epoch: u64,
    pub acquired_at: Time,
    pub expires_at: Time,
    /// The database's clock when this was read.
    pub now: Time,
}

impl LeaseState {
    /// The holder, if its lease has not run out.
    pub fn live_holder(&self) -> Option<&str> {
        self.holder
            .as_deref()
            .filter(|_| self.expires_at > self.now)
    }
}

/// What an attempt to take the lease found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// Ours, under a new epoch.
    Leading(Lease),
    /// Another replica holds it and its lease has not run out.
    Held(LeaseState),
}

/// The database's clock, in milliseconds since the Unix epoch, as SQL. SQLite's `'now'` has
/// millisecond resolution and is the same throughout one statement.
fn now_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

fn epoch(value: i64) -> Result<u64> {
    crate::columns::stored_u64(value, "lease epoch")
}

impl Store {
    /// Takes the leader lease for `holder` for `duration`, if nobody holds it, its holder's
    /// lease ran out, or `holder` is the holder already. Taking it always raises the epoch, so
    /// writes fenced with an earlier epoch (this holder's included) are refused from now on.
    /// Of any number of concurrent callers, at most one leads.
    pub async fn acquire_lease(&self, holder: &str, duration: Duration) -> Result<Acquired> {
        let now = now_sql(self.backend);
        let row: Option<(i64, i64, i64)> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE leases SET holder = $2, epoch = epoch + 1, acquired_at = {now},
                 expires_at = {now} + $3
             WHERE name = $1 AND (holder IS NULL OR holder = $2 OR expires_at <= {now})
             RETURNING epoch, acquired_at, expires_at"
        )))
        .bind(LEADER)
        .bind(holder)
        .bind(millis(duration))
        .fetch_optional(&self.pool)
        .await
        .during(|| format!("take the leader lease for {holder}"))?;
        match row {
            Some((e, acquired_at, expires_at)) => Ok(Acquired::Leading(Lease {
                fence: Fence {
                    holder: holder.to_string(),
                    epoch: epoch(e)?,
                },
                acquired_at: Time(acquired_at),
                expires_at: Time(expires_at),
            })),
            None => Ok(Acquired::Held(self.lease().await?)),
        }
    }

    /// Extends a lease still held to `duration` from now. `None` when it is lost: another
    /// holder took it, or it ran out (a lapsed lease is never revived: take it again, under a
    /// new epoch).
    pub async fn renew_lease(&self, fence: &Fence, duration: Duration) -> Result<Option<Lease>> {
        let now = now_sql(self.backend);
        let row: Option<(i64, i64)> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE leases SET expires_at = {now} + $4
             WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > {now}
             RETURNING acquired_at, expires_at"
        )))
        .bind(LEADER)
        .bind(&fence.holder)
        .bind(crate::columns::id(fence.epoch, "lease epoch")?)
        .bind(millis(duration))
        .fetch_optional(&self.pool)
        .await
        .during(|| format!("renew the leader lease of epoch {}", fence.epoch))?;
        Ok(row.map(|(acquired_at, expires_at)| Lease {
            fence: fence.clone(),
            acquired_at: Time(acquired_at),
            expires_at: Time(expires_at),
        }))
    }

    /// Gives the lease up at once, so that another replica leads without waiting for it to run
    /// out (a planned stop). Returns false when `fence` no longer held it.
    pub async fn release_lease(&self, fence: &Fence) -> Result<bool> {
        let now = now_sql(self.backend);
        let done = sqlx::query(AssertSqlSafe(format!(
            "UPDATE leases SET holder = NULL, expires_at = {now}
             WHERE name = $1 AND holder = $2 AND epoch = $3"
        )))
        .bind(LEADER)
        .bind(&fence.holder)
        .bind(crate::columns::id(fence.epoch, "lease epoch")?)
        .execute(&self.pool)
        .await
        .during(|| format!("release the leader lease of epoch {}", fence.epoch))?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets the holder, whoever it is; the epoch stays, so its fences stay refused. Only for
    /// a store this process provably writes alone (see `Store::lock_single_writer`).
    pub(crate) async fn clear_lease(&self) -> Result<()> {
        sqlx::query("UPDATE leases SET holder = NULL, expires_at = 0 WHERE name = $1")
            .bind(LEADER)
            .execute(&self.pool)
            .await
            .during(|| "clear the leader lease".into())
            .map(drop)
    }

    /// Who holds the leader lease, for `mayfly status`, metrics and error messages.
    pub async fn lease(&self) -> Result<LeaseState> {
        let now = now_sql(self.backend);
        let (holder, e, acquired_at, expires_at, now): (Option<String>, i64, i64, i64, i64) =
            sqlx::query_as(AssertSqlSafe(format!(
                "SELECT holder, epoch, acquired_at, expires_at, {now} FROM leases WHERE name = $1"
            )))
            .bind(LEADER)
            .fetch_one(&self.pool)
            .await
            .during(|| "read the leader lease".into())?;
        Ok(LeaseState {
            holder,
            epoch: epoch(e)?,
            acquired_at: Time(acquired_at),
            expires_at: Time(expires_at),
            now: Time(now),
        })
    }

    /// The intent writes of the holder of `fence`: each is refused, with nothing written, once
    /// `fence` no longer holds the lease.
    pub fn fenced(&self, fence: Fence) -> Fenced {
        Fenced {
            store: self.clone(),
            fence,
        }
    }

    /// A write transaction; with a fence, one that has checked it (see the module docs).
    pub(crate) async fn begin_fenced(
        &self,
        fence: Option<&Fence>,
        what: &(dyn Fn() -> String + Sync),
    ) -> Result<Transaction<'static, Any>> {
        let mut tx = self.begin_write().await.during(what)?;
        if let Some(fence) = fence {
            self.check_fence(&mut tx, fence, what).await?;
        }
        Ok(tx)
    }

    async fn check_fence(
        &self,
        tx: &mut Transaction<'static, Any>,
        fence: &Fence,
        what: &(dyn Fn() -> String + Sync),
    ) -> Result<()> {
        let now = now_sql(self.backend);
        // SQLite needs no row lock: `BEGIN IMMEDIATE` has made this the only writer.
        let lock = match self.backend {
            Backend::Postgres => " FOR SHARE",
            Backend::Sqlite => "",
        };
        let held: Option<(i64,)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT epoch FROM leases
             WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > {now}{lock}"
        )))
        .bind(LEADER)
        .bind(&fence.holder)
        .bind(crate::columns::id(fence.epoch, "lease epoch")?)
        .fetch_optional(&mut **tx)
        .await
        .during(what)?;
        if held.is_some() {
            return Ok(());
        }
        let (holder, current): (Option<String>, i64) =
            sqlx::query_as("SELECT holder, epoch FROM leases WHERE name = $1")
                .bind(LEADER)
                .fetch_one(&mut **tx)
                .await
                .during(what)?;
        let current = epoch(current)?;
        let reason = if current != fence.epoch {
            match holder {
                Some(h) => format!("{h} leads now, under epoch {current}"),
                None => format!("the lease moved on to epoch {current} and was released"),
            }
        } else if holder.as_deref() == Some(fence.holder.as_str()) {
            "its lease ran out".to_string()
        } else {
            "its lease was released".to_string()
        };
        Err(StoreError::Fenced {
            what: what(),
            holder: fence.holder.clone(),
            epoch: fence.epoch,
            reason,
        })
    }
}

/// The intent writes of one lease holder; see [`Store::fenced`]. Each write checks the fence
/// in its own transaction, so a holder that lost the lease between two writes is stopped at
/// the second. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Fenced {
    pub(crate) store: Store,
    pub(crate) fence: Fence,
}

impl Fenced {
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether the fence holds now, proved in a transaction of its own: what a step checks
    /// right before an act that is not preceded by a fenced write (a rebuild, a delete). The
    /// lease may be lost right after; it narrows the window, the store cannot close it.
    pub async fn check(&self) -> Result<()> {
        let what = || format!("check the lease of epoch {}", self.fence.epoch);
        let tx = self.store.begin_fenced(Some(&self.fence), &what).await?;
        tx.commit().await.during(what)
    }
}
