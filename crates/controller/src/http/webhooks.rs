//! `POST /webhooks/github`: verify, parse, deduplicate on the delivery id, store, wake.
//! Every answer is short and plain text; none repeats the secret or the signature.

use super::Webhooks;
use crate::metrics::record;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mayfly_forge::github::webhook::{
    self, DELIVERY_HEADER, Delivery, EVENT_HEADER, JobUpdate, SIGNATURE_HEADER,
};
use mayfly_store::Upsert;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// The forge whose deliveries this handler counts.
const FORGE: mayfly_core::ForgeKind = mayfly_core::ForgeKind::Github;

/// GitHub caps payloads at 25 MB, but a `workflow_job` delivery is a few kB: 1 MiB leaves room
/// and keeps a flood of large bodies cheap to refuse.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Half of the 10 s GitHub waits for an answer.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(5);
/// GitHub's delivery ids are 36-character GUIDs; anything much longer is not one.
const DELIVERY_ID_LIMIT: usize = 128;

pub async fn github(
    State(hooks): State<Arc<Webhooks>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(secret) = &hooks.secret else {
        record::webhook(FORGE, "disabled");
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "webhooks are off: github.webhook_secret is not configured",
        );
    };
    let signature = header(&headers, SIGNATURE_HEADER);
    if let Err(e) = webhook::verify_signature(secret, &body, signature) {
        info!(reason = %e, "webhook refused");
        record::webhook(FORGE, "invalid_signature");
        return reply(StatusCode::UNAUTHORIZED, "invalid or missing signature");
    }
    let Some(event) = header(&headers, EVENT_HEADER) else {
        record::webhook(FORGE, "bad_request");
        return reply(StatusCode::BAD_REQUEST, "missing X-GitHub-Event");
    };
    let Some(delivery) =
        header(&headers, DELIVERY_HEADER).filter(|d| !d.is_empty() && d.len() <= DELIVERY_ID_LIMIT)
    else {
        record::webhook(FORGE, "bad_request");
        return reply(
            StatusCode::BAD_REQUEST,
            "missing or invalid X-GitHub-Delivery",
        );
    };
    match webhook::parse(event, &body) {
        Ok(Delivery::Ignored { event }) => {
            debug!(delivery, event, "webhook ignored");
            record::webhook(FORGE, "ignored");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Delivery::Job(update)) if !hooks.serves.covers(&update.key.scope) => {
            debug!(
                delivery,
                repo = %crate::escape::Text(&update.key.scope),
                "webhook for a repository mayfly does not serve"
            );
            record::webhook(FORGE, "foreign");
            reply(StatusCode::ACCEPTED, "not a repository this mayfly serves")
        }
        Ok(Delivery::Job(update)) => store(&hooks, delivery, &update).await,
        Err(e) => {
            info!(delivery, reason = %e, "webhook rejected");
            record::webhook(FORGE, "bad_request");
            reply(StatusCode::BAD_REQUEST, e.to_string())
        }
    }
}

/// Records the update under its delivery id, then wakes the reconciler if anything changed.
async fn store(hooks: &Webhooks, delivery: &str, update: &JobUpdate) -> Response {
    let rec = crate::demand::record(update, hooks.clock.now());
    let started = update.started_at.unwrap_or(rec.updated_at);
    let upsert = crate::demand::store_job(&hooks.store, rec, started, Some(delivery));
    let outcome = match tokio::time::timeout(hooks.store_timeout, upsert).await {
        Ok(Ok(outcome)) => outcome,
        // A value the store refuses (an id past 2^63, say) is the delivery's fault: a retry
        // cannot help. The parser refuses the ones known; this is the backstop.
        Ok(Err(e @ mayfly_store::StoreError::Invalid { .. })) => {
            info!(delivery, job = %update.key, error = %e, "webhook rejected by the store");
            record::webhook(FORGE, "bad_request");
            return reply(StatusCode::BAD_REQUEST, e.to_string());
        }
        Ok(Err(e)) => {
            warn!(delivery, job = %update.key, error = %e, "webhook not stored");
            record::webhook(FORGE, "store_failed");
            return reply(StatusCode::SERVICE_UNAVAILABLE, "the store failed; retry");
        }
        Err(_) => {
            warn!(delivery, job = %update.key, timeout = ?hooks.store_timeout, "webhook not stored in time");
            record::webhook(FORGE, "store_failed");
            // A commit already sent may still land after the answer: wake the reconciler anyway.
            // A redelivery is safe either way, since the delivery id is recorded with the job.
            hooks.wake.job(update.status);
            return reply(StatusCode::SERVICE_UNAVAILABLE, "the store is busy; retry");
        }
    };
    debug!(delivery, job = %update.key, action = %update.action, ?outcome, "webhook stored");
    record::webhook(
        mayfly_core::ForgeKind::Github,
        match outcome {
            Upsert::DuplicateDelivery => "duplicate",
            o if o.changed() => "stored",
            _ => "unchanged",
        },
    );
    hooks
        .wake
        .delivered(FORGE, &update.key.scope, update.status, outcome);
    if outcome.changed() {
        hooks.wake.job(update.status);
    }
    StatusCode::ACCEPTED.into_response()
}

pub(super) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn reply(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, reason.into()).into_response()
}
