//! The audit trail: what mayfly did and why, one row per event, read by the API and dashboard
//! in pages by id.

use crate::Store;
use crate::columns;
use crate::error::{During, Result};
use mayfly_core::Time;
use sqlx::FromRow;

/// An event to record.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub at: Time,
    /// A short word to filter by: `create`, `delete`, `job`, …
    pub kind: String,
    /// What it is about: an instance name or a job key.
    pub subject: String,
    /// For humans.
    pub message: String,
    /// For machines.
    pub details: Option<serde_json::Value>,
}

impl NewEvent {
    pub fn new(
        at: Time,
        kind: impl Into<String>,
        subject: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        NewEvent {
            at,
            kind: kind.into(),
            subject: subject.into(),
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
}

/// A recorded event. Ids grow with each insert and are never reused.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: i64,
    pub at: Time,
    pub kind: String,
    pub subject: String,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

#[derive(FromRow)]
struct EventRow {
    id: i64,
    at: i64,
    kind: String,
    subject: String,
    message: String,
    details: Option<String>,
}

impl TryFrom<EventRow> for Event {
    type Error = crate::StoreError;

    fn try_from(r: EventRow) -> Result<Event> {
        Ok(Event {
            id: r.id,
            at: Time(r.at),
            kind: r.kind,
            subject: r.subject,
            message: r.message,
            details: r
                .details
                .as_deref()
                .map(|d| columns::stored_json(d, "event details"))
                .transpose()?,
        })
    }
}

impl Store {
    /// Records `event` and returns its id.
    pub async fn record_event(&self, event: &NewEvent) -> Result<i64> {
        let details = event
            .details
            .as_ref()
            .map(|d| columns::json(d, "event details"))
            .transpose()?;
        sqlx::query_scalar(
            "INSERT INTO events (at, kind, subject, message, details) VALUES ($1, $2, $3, $4, $5)
             RETURNING id",
        )
        .bind(event.at.millis())
        .bind(&event.kind)
        .bind(&event.subject)
        .bind(&event.message)
        .bind(details)
        .fetch_one(&self.pool)
        .await
        .during(|| format!("record {} event about {}", event.kind, event.subject))
    }

    /// Up to `limit` events with ids above `after_id` (from the first when `None`), in id order:
    /// pass the last id of one page to get the next.
    ///
    /// On PostgreSQL ids are drawn before commit, so an event committed late can land behind a
    /// page already read; the trail is for people, and that rare gap is accepted.
    pub async fn events(&self, after_id: Option<i64>, limit: u32) -> Result<Vec<Event>> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT id, at, kind, subject, message, details FROM events WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id.unwrap_or(0))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .during(|| "list events".into())?;
        rows.into_iter().map(Event::try_from).collect()
    }

    /// Retention: deletes events from before `before`; returns how many.
    pub async fn prune_events(&self, before: Time) -> Result<u64> {
        let done = sqlx::query("DELETE FROM events WHERE at < $1")
            .bind(before.millis())
            .execute(&self.pool)
            .await
            .during(|| format!("prune events before {before}"))?;
        Ok(done.rows_affected())
    }
}
