//! The audit trail: what mayfly did and why, one row per event, read by `mayfly events`, the
//! API and the dashboard, filtered by time, subject and kind, in pages by id.

use crate::Store;
use crate::columns;
use crate::error::{During, Result};
use mayfly_core::Time;
use sqlx::AssertSqlSafe;

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

/// Which events to read. Every filter is optional; results always come oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventQuery {
    /// Only ids above this one: the last id of one page gives the next.
    pub after_id: Option<i64>,
    /// At or after this time.
    pub since: Option<Time>,
    /// Before this time.
    pub until: Option<Time>,
    /// Exactly this subject: an instance name or a job key.
    pub subject: Option<String>,
    /// Exactly this kind: `create`, `delete`, …
    pub kind: Option<String>,
    /// At most this many (capped at [`EventQuery::MAX_LIMIT`]).
    pub limit: u32,
    /// The newest `limit` of the matching events rather than the oldest (still returned
    /// oldest first): what `mayfly events` shows by default.
    pub newest: bool,
}

impl EventQuery {
    /// Most events one read returns.
    pub const MAX_LIMIT: u32 = 10_000;

    /// The oldest `limit` events, no filter.
    pub fn first(limit: u32) -> EventQuery {
        EventQuery {
            after_id: None,
            since: None,
            until: None,
            subject: None,
            kind: None,
            limit,
            newest: false,
        }
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

struct EventRow {
    id: i64,
    at: i64,
    kind: String,
    subject: String,
    message: String,
    details: Option<String>,
}

from_any_row!(EventRow {
    id,
    at,
    kind,
    subject,
    message,
    details
});

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

    /// The events `query` asks for, oldest first.
    pub async fn query_events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        let mut conditions = Vec::new();
        let mut n = 0;
        let mut next = |cond: &str| {
            n += 1;
            conditions.push(cond.replace('?', &format!("${n}")));
        };
        if query.after_id.is_some() {
            next("id > ?");
        }
        if query.since.is_some() {
            next("at >= ?");
        }
        if query.until.is_some() {
            next("at < ?");
        }
        if query.subject.is_some() {
            next("subject = ?");
        }
        if query.kind.is_some() {
            next("kind = ?");
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let order = if query.newest { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT id, at, kind, subject, message, details FROM events {filter}
             ORDER BY id {order} LIMIT ${}",
            n + 1
        );
        let mut q = sqlx::query_as(AssertSqlSafe(sql));
        if let Some(id) = query.after_id {
            q = q.bind(id);
        }
        if let Some(t) = query.since {
            q = q.bind(t.millis());
        }
        if let Some(t) = query.until {
            q = q.bind(t.millis());
        }
        if let Some(s) = &query.subject {
            q = q.bind(s.as_str());
        }
        if let Some(k) = &query.kind {
            q = q.bind(k.as_str());
        }
        let limit = query.limit.min(EventQuery::MAX_LIMIT);
        let rows: Vec<EventRow> = q
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .during(|| "read events".into())?;
        let mut events = rows
            .into_iter()
            .map(Event::try_from)
            .collect::<Result<Vec<_>>>()?;
        if query.newest {
            events.reverse();
        }
        Ok(events)
    }
}
