//! How domain values sit in columns both databases read alike: enums as short text, ids and
//! times as signed 64-bit integers, labels and machine specs as JSON text.

use crate::error::{Result, invalid};
use mayfly_core::{ForgeKind, JobStatus};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) fn forge(s: &str) -> Result<ForgeKind> {
    [ForgeKind::Github, ForgeKind::Gitlab]
        .into_iter()
        .find(|f| f.as_str() == s)
        .ok_or_else(|| invalid("stored forge", format!("unknown forge {s:?}")))
}

pub(crate) fn status_str(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Queued => "queued",
        JobStatus::InProgress => "in_progress",
        JobStatus::Completed => "completed",
    }
}

pub(crate) fn status(s: &str) -> Result<JobStatus> {
    [
        JobStatus::Queued,
        JobStatus::InProgress,
        JobStatus::Completed,
    ]
    .into_iter()
    .find(|st| status_str(*st) == s)
    .ok_or_else(|| invalid("stored job status", format!("unknown status {s:?}")))
}

/// Webhooks arrive reordered; a status may only move up this ladder. `jobs::UPDATE_JOB` spells
/// the same ranks in SQL.
pub(crate) fn status_rank(status: JobStatus) -> i64 {
    match status {
        JobStatus::Queued => 0,
        JobStatus::InProgress => 1,
        JobStatus::Completed => 2,
    }
}

/// Forge ids are unsigned, columns are signed: ids past `i64::MAX` are refused, not wrapped.
pub(crate) fn id(value: u64, field: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| {
        invalid(
            field,
            format!("{value} does not fit a signed 64-bit column"),
        )
    })
}

pub(crate) fn stored_u64(value: i64, field: &str) -> Result<u64> {
    u64::try_from(value)
        .map_err(|_| invalid(format!("stored {field}"), format!("negative value {value}")))
}

pub(crate) fn stored_u32(value: i64, field: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| {
        invalid(
            format!("stored {field}"),
            format!("{value} is out of range"),
        )
    })
}

pub(crate) fn json<T: Serialize>(value: &T, field: &str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| invalid(field, e))
}

pub(crate) fn stored_json<T: DeserializeOwned>(text: &str, field: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| invalid(format!("stored {field}"), e))
}

/// `$from, $from+1, …` for `n` values: sqlx's `Any` query builder writes `?`, which PostgreSQL
/// rejects, so lists are numbered here.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_text() {
        for f in [ForgeKind::Github, ForgeKind::Gitlab] {
            assert_eq!(forge(f.as_str()).unwrap(), f);
        }
        for s in [
            JobStatus::Queued,
            JobStatus::InProgress,
            JobStatus::Completed,
        ] {
            assert_eq!(status(status_str(s)).unwrap(), s);
        }
        assert!(status("done").unwrap_err().to_string().contains("\"done\""));
    }

    #[test]
    fn ids_past_i64_are_refused() {
        assert_eq!(id(42, "job id").unwrap(), 42);
        assert!(
            id(u64::MAX, "job id")
                .unwrap_err()
                .to_string()
                .starts_with("job id: ")
        );
        assert!(stored_u64(-1, "job id").is_err());
    }

    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
    }
}
