//! GitHub webhook deliveries: the `X-Hub-Signature-256` check and `workflow_job` payloads parsed
//! into typed job updates. No I/O here: the receiver hands in headers and the raw body.

use crate::webhook::echo;
use hmac::{Hmac, Mac};
use mayfly_core::{ForgeKind, JobKey, JobStatus, Labels, Secret, Time};
use serde::Deserialize;
use sha2::Sha256;
use std::fmt;

pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
pub const EVENT_HEADER: &str = "x-github-event";
pub const DELIVERY_HEADER: &str = "x-github-delivery";

/// The one event mayfly acts on; every other event is answered and dropped.
pub const WORKFLOW_JOB: &str = "workflow_job";

/// Why a delivery's signature does not prove it came from GitHub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not `sha256=` and 64 hex digits")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body")]
    Mismatch,
}

/// Checks `header` against the HMAC-SHA256 of the raw `body`. The comparison is constant-time
/// (`verify_slice`), so response timing tells an attacker nothing about the right signature.
pub fn verify_signature(
    secret: &Secret,
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    if expected.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    mac(secret, body)
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// The header GitHub would send with `body`: for tests, the simulator and redelivery tools.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, body).finalize().into_bytes())
    )
}

fn mac(secret: &Secret, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length (long ones are hashed), so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    mac
}

/// The `action` of a `workflow_job` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Queued,
    /// Queued behind an environment's protection rules; it still needs a runner later.
    Waiting,
    InProgress,
    Completed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Queued => "queued",
            Action::Waiting => "waiting",
            Action::InProgress => "in_progress",
            Action::Completed => "completed",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "queued" => Action::Queued,
            "waiting" => Action::Waiting,
            "in_progress" => Action::InProgress,
            "completed" => Action::Completed,
            _ => return None,
        })
    }

    /// The action that brings a job to `status` (for jobs found by polling, which have no action).
    pub fn for_status(status: JobStatus) -> Action {
        match status {
            JobStatus::Queued => Action::Queued,
            JobStatus::InProgress => Action::InProgress,
            JobStatus::Completed => Action::Completed,
        }
    }

    /// The job's status follows the action, not the payload's `status` field: an `in_progress`
    /// delivery can still say `queued`, and a `queued` one can say `waiting`.
    pub fn status(self) -> JobStatus {
        match self {
            Action::Queued | Action::Waiting => JobStatus::Queued,
            Action::InProgress => JobStatus::InProgress,
            Action::Completed => JobStatus::Completed,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one `workflow_job` delivery (or one poll) says about a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobUpdate {
    pub action: Action,
    /// Scope is the repository's `owner/name`.
    pub key: JobKey,
    pub status: JobStatus,
    pub run_id: u64,
    /// Absent from some older payloads.
    pub run_attempt: Option<u32>,
    pub labels: Labels,
    /// An open string: GitHub adds conclusions without notice.
    pub conclusion: Option<String>,
    pub runner_name: Option<String>,
    pub workflow_name: Option<String>,
    pub created_at: Option<Time>,
    pub started_at: Option<Time>,
}

/// A delivery the receiver understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Job(JobUpdate),
    /// An event mayfly does not act on (`ping`, `push`, …), named for the log.
    Ignored {
        event: String,
    },
}

/// Why a delivery could not be read. Messages are short and repeat at most a few dozen
/// characters of the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid workflow_job payload: {0}")]
    Json(String),
    #[error("workflow_job payload without an action")]
    MissingAction,
    #[error("unknown workflow_job action {0:?}")]
    UnknownAction(String),
    #[error("workflow_job.{field} is not an RFC 3339 time: {value:?}")]
    Time { field: &'static str, value: String },
    /// Not a name GitHub gives a repository: no runner could ever be registered for it.
    #[error("repository.full_name {0:?} is not `owner/name`")]
    Repository(String),
    /// GitHub's ids are 64-bit signed integers (its OpenAPI description says `int64`): a larger
    /// one is no GitHub id, and the store could not hold it.
    #[error("workflow_job.{field} {value} is out of range: GitHub ids are below 2^63")]
    IdRange { field: &'static str, value: u64 },
}

/// Reads a delivery of `event` (the `X-GitHub-Event` header). Never panics, whatever the bytes.
pub fn parse(event: &str, body: &[u8]) -> Result<Delivery, ParseError> {
    if event != WORKFLOW_JOB {
        return Ok(Delivery::Ignored { event: echo(event) });
    }
    // The action first, so a future action is reported as such even if its payload differs.
    let envelope: Envelope = serde_json::from_slice(body).map_err(json_error)?;
    let action = envelope.action.ok_or(ParseError::MissingAction)?;
    let action = Action::parse(&action).ok_or_else(|| ParseError::UnknownAction(echo(&action)))?;
    let payload: Payload = serde_json::from_slice(body).map_err(json_error)?;
    let full_name = payload.repository.full_name;
    let repo =
        super::Repo::parse(&full_name).map_err(|_| ParseError::Repository(echo(&full_name)))?;
    let job = payload.workflow_job;
    for (field, value) in [("id", job.id), ("run_id", job.run_id)] {
        if i64::try_from(value).is_err() {
            return Err(ParseError::IdRange { field, value });
        }
    }
    Ok(Delivery::Job(JobUpdate {
        action,
        key: JobKey {
            forge: ForgeKind::Github,
            scope: repo.to_string().into(),
            id: job.id,
        },
        status: action.status(),
        run_id: job.run_id,
        run_attempt: job.run_attempt,
        labels: Labels::new(&job.labels),
        conclusion: job.conclusion,
        runner_name: job.runner_name,
        workflow_name: job.workflow_name,
        created_at: time("created_at", job.created_at.as_deref())?,
        started_at: time("started_at", job.started_at.as_deref())?,
    }))
}

#[derive(Deserialize)]
struct Envelope {
    action: Option<String>,
}

#[derive(Deserialize)]
struct Payload {
    workflow_job: WorkflowJob,
    repository: Repository,
}

#[derive(Deserialize)]
struct WorkflowJob {
    id: u64,
    run_id: u64,
    run_attempt: Option<u32>,
    labels: Vec<String>,
    conclusion: Option<String>,
    runner_name: Option<String>,
    workflow_name: Option<String>,
    created_at: Option<String>,
    started_at: Option<String>,
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
}

fn json_error(e: serde_json::Error) -> ParseError {
    ParseError::Json(echo(&e.to_string()))
}

fn time(field: &'static str, value: Option<&str>) -> Result<Option<Time>, ParseError> {
    value
        .map(|v| {
            crate::github::time::parse(v).ok_or_else(|| ParseError::Time {
                field,
                value: echo(v),
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_read_as_github_writes_them() {
        assert_eq!(
            crate::github::time::parse_millis("1970-01-01T00:00:00Z"),
            Some(0)
        );
        assert_eq!(
            crate::github::time::parse_millis("2021-08-05T10:33:58Z"),
            Some(1_628_159_638_000)
        );
        assert_eq!(
            crate::github::time::parse_millis("2021-06-15T19:22:27.000Z"),
            crate::github::time::parse_millis("2021-06-15T19:22:27Z")
        );
        assert_eq!(
            crate::github::time::parse_millis("2021-06-15T21:22:27.5+02:00"),
            Some(
                crate::github::time::parse_millis("2021-06-15T19:22:27Z").unwrap_or_default() + 500
            )
        );
        assert_eq!(
            crate::github::time::parse_millis("2024-02-29T00:00:00Z").map(|m| m > 0),
            Some(true)
        );
        for bad in [
            "",
            "2023-02-29T00:00:00Z",
            "2021-13-01T00:00:00Z",
            "2021-06-15 19:22:27",
            "2021-06-15T19:22:27.Z",
            "２０２１-06-15T19:22:27Z",
        ] {
            assert_eq!(crate::github::time::parse_millis(bad), None, "{bad}");
        }
    }
}
