//! GitLab Job Hook deliveries: the `X-Gitlab-Token` check (constant time) and `build` payloads
//! parsed into typed job updates. No I/O here: the receiver hands in headers and the raw body,
//! and deduplicates on `Idempotency-Key`, which stays the same when GitLab delivers again.
//!
//! A job's key: forge GitLab, scope = the project's full path (`path_with_namespace`, as GitLab
//! spells it: readable in logs and the API, the same string the configuration and the poller
//! use, and what a group runner's scope is a prefix of), id = the job's id. A job's tags are not
//! in the payload: `labels` is `None`, and `Client::job_tags` reads them once.

use super::jobs::job_status;
use crate::webhook::echo;
use mayfly_core::{ForgeKind, JobKey, JobStatus, Labels, Secret, Time};
use serde::Deserialize;
use subtle::ConstantTimeEq;

pub const TOKEN_HEADER: &str = "x-gitlab-token";
pub const EVENT_HEADER: &str = "x-gitlab-event";
/// The same on every delivery of one event to one hook: the deduplication key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// A new one for each delivery attempt: for logs.
pub const WEBHOOK_UUID_HEADER: &str = "x-gitlab-webhook-uuid";

/// The one event mayfly acts on; every other is answered and dropped.
pub const JOB_HOOK: &str = "Job Hook";

/// Why a delivery's token does not prove it came from the configured hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing X-Gitlab-Token header")]
    Missing,
    #[error("X-Gitlab-Token does not match gitlab.webhook_secret")]
    Mismatch,
}

/// Compares the header with the secret in constant time (for equal lengths; the length of the
/// secret is not what an attacker lacks), so timing tells nothing about the right token.
pub fn verify_token(secret: &Secret, header: Option<&str>) -> Result<(), TokenError> {
    let header = header.ok_or(TokenError::Missing)?;
    let equal: bool = header.as_bytes().ct_eq(secret.expose().as_bytes()).into();
    if equal {
        Ok(())
    } else {
        Err(TokenError::Mismatch)
    }
}

/// What one Job Hook (or one poll) says about a job; the GitLab counterpart of GitHub's
/// `webhook::JobUpdate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobUpdate {
    /// Forge GitLab, scope the project's full path, id the job's.
    pub key: JobKey,
    pub status: JobStatus,
    /// GitLab's own word (`pending`, `running`, `failed`, …).
    pub gitlab_status: String,
    pub project_id: u64,
    pub pipeline_id: u64,
    /// The job's tags; `None` when the source did not say (Job Hooks never do).
    pub labels: Option<Labels>,
    /// For a completed job: `success`, `failed`, `canceled` or `skipped`.
    pub conclusion: Option<String>,
    pub failure_reason: Option<String>,
    pub runner_id: Option<u64>,
    /// The runner's description: mayfly's instance name.
    pub runner_name: Option<String>,
    pub job_name: Option<String>,
    pub created_at: Option<Time>,
    pub started_at: Option<Time>,
    pub finished_at: Option<Time>,
}

/// A delivery the receiver understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Job(Box<JobUpdate>),
    /// An event or job state mayfly does not act on (`Push Hook`, a `manual` job), named for
    /// the log.
    Ignored {
        event: String,
    },
}

/// Why a delivery could not be read. Messages are short and repeat at most a few dozen
/// characters of the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid Job Hook payload: {0}")]
    Json(String),
    #[error("Job Hook payload without object_kind")]
    MissingObjectKind,
    #[error("Job Hook with object_kind {0:?}, expected \"build\"")]
    UnknownObjectKind(String),
    #[error("unknown build_status {0:?}")]
    UnknownStatus(String),
    #[error("Job Hook payload without project.path_with_namespace")]
    MissingProjectPath,
    #[error("{field} is not a time: {value:?}")]
    Time { field: &'static str, value: String },
}

/// Reads a delivery of `event` (the `X-Gitlab-Event` header). Never panics, whatever the bytes.
pub fn parse(event: &str, body: &[u8]) -> Result<Delivery, ParseError> {
    if event != JOB_HOOK {
        return Ok(Delivery::Ignored { event: echo(event) });
    }
    // The kind first, so another kind of payload is reported as such, not as missing fields.
    let envelope: Envelope = serde_json::from_slice(body).map_err(json_error)?;
    match envelope.object_kind.as_deref() {
        None => return Err(ParseError::MissingObjectKind),
        Some("build") => {}
        Some(other) => return Err(ParseError::UnknownObjectKind(echo(other))),
    }
    let p: Payload = serde_json::from_slice(body).map_err(json_error)?;
    let status = match job_status(&p.build_status) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Ok(Delivery::Ignored {
                event: format!("Job Hook ({})", echo(&p.build_status)),
            });
        }
        Err(_) => return Err(ParseError::UnknownStatus(echo(&p.build_status))),
    };
    let path = p
        .project
        .and_then(|pr| pr.path_with_namespace)
        .filter(|s| !s.is_empty())
        .ok_or(ParseError::MissingProjectPath)?;
    let runner = p.runner;
    Ok(Delivery::Job(Box::new(JobUpdate {
        key: JobKey {
            forge: ForgeKind::Gitlab,
            scope: path.into(),
            id: p.build_id,
        },
        status,
        conclusion: (status == JobStatus::Completed).then(|| p.build_status.clone()),
        gitlab_status: p.build_status,
        project_id: p.project_id,
        pipeline_id: p.pipeline_id,
        labels: None,
        failure_reason: p
            .build_failure_reason
            .filter(|_| status == JobStatus::Completed),
        runner_id: runner.as_ref().map(|r| r.id),
        runner_name: runner.and_then(|r| r.description),
        job_name: p.build_name,
        created_at: time(
            "build_created_at",
            p.build_created_at_iso.or(p.build_created_at),
        )?,
        started_at: time(
            "build_started_at",
            p.build_started_at_iso.or(p.build_started_at),
        )?,
        finished_at: time(
            "build_finished_at",
            p.build_finished_at_iso.or(p.build_finished_at),
        )?,
    })))
}

#[derive(Deserialize)]
struct Envelope {
    object_kind: Option<String>,
}

#[derive(Deserialize)]
struct Payload {
    build_id: u64,
    build_status: String,
    #[serde(default)]
    build_name: Option<String>,
    #[serde(default)]
    build_failure_reason: Option<String>,
    #[serde(default)]
    build_created_at: Option<String>,
    #[serde(default)]
    build_started_at: Option<String>,
    #[serde(default)]
    build_finished_at: Option<String>,
    #[serde(default)]
    build_created_at_iso: Option<String>,
    #[serde(default)]
    build_started_at_iso: Option<String>,
    #[serde(default)]
    build_finished_at_iso: Option<String>,
    #[serde(default)]
    pipeline_id: u64,
    project_id: u64,
    #[serde(default)]
    project: Option<ProjectPart>,
    #[serde(default)]
    runner: Option<RunnerPart>,
}

#[derive(Deserialize)]
struct ProjectPart {
    path_with_namespace: Option<String>,
}

#[derive(Deserialize)]
struct RunnerPart {
    id: u64,
    description: Option<String>,
}

fn json_error(e: serde_json::Error) -> ParseError {
    ParseError::Json(echo(&e.to_string()))
}

fn time(field: &'static str, value: Option<String>) -> Result<Option<Time>, ParseError> {
    value
        .map(|v| {
            super::time::parse(&v).ok_or_else(|| ParseError::Time {
                field,
                value: echo(&v),
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_compared_whole() {
        let s = Secret::new("hook-secret");
        assert_eq!(verify_token(&s, Some("hook-secret")), Ok(()));
        assert_eq!(
            verify_token(&s, Some("hook-secre")),
            Err(TokenError::Mismatch)
        );
        assert_eq!(
            verify_token(&s, Some("hook-secret ")),
            Err(TokenError::Mismatch)
        );
        assert_eq!(verify_token(&s, Some("")), Err(TokenError::Mismatch));
        assert_eq!(verify_token(&s, None), Err(TokenError::Missing));
    }

    #[test]
    fn other_events_and_kinds() {
        assert_eq!(
            parse("Push Hook", b"not even json"),
            Ok(Delivery::Ignored {
                event: "Push Hook".into()
            })
        );
        assert!(matches!(parse(JOB_HOOK, b"{"), Err(ParseError::Json(_))));
        assert_eq!(parse(JOB_HOOK, b"{}"), Err(ParseError::MissingObjectKind));
        assert_eq!(
            parse(JOB_HOOK, br#"{"object_kind":"pipeline"}"#),
            Err(ParseError::UnknownObjectKind("pipeline".into()))
        );
        assert!(matches!(
            parse(JOB_HOOK, br#"{"object_kind":"build"}"#),
            Err(ParseError::Json(_))
        ));
    }
}
