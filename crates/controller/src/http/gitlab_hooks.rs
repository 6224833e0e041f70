//! `POST /webhooks/gitlab`: GitLab's Job Hooks. The `X-Gitlab-Token` compared in constant time,
//! the payload parsed, a project mayfly does not serve answered and dropped, the job stored
//! (deduplicated on `Idempotency-Key`, which GitLab keeps across redeliveries), the loop woken.
//!
//! Unlike GitHub's, GitLab's payload leaves the job's tags out, and tags route a job to a pool:
//! a pending job the store does not know yet costs one read of it (within the store timeout),
//! the one place a webhook handler calls a forge. Any other delivery calls nothing.

use super::webhooks::{header, reply};
use crate::gitlab_demand::{StoreUpdateError, store_update};
use crate::metrics::record;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mayfly_core::Secret;
use mayfly_forge::Forge;
use mayfly_forge::GitlabForge;
use mayfly_forge::gitlab::webhook::{
    self, Delivery, EVENT_HEADER, IDEMPOTENCY_HEADER, TOKEN_HEADER, WEBHOOK_UUID_HEADER,
};
use mayfly_store::Upsert;
use std::sync::Arc;
use tracing::{debug, info, warn};

/// The forge whose deliveries this handler counts.
const FORGE: mayfly_core::ForgeKind = mayfly_core::ForgeKind::Gitlab;

/// Idempotency keys are UUIDs; anything much longer is not one.
const IDEMPOTENCY_LIMIT: usize = 128;

/// What the GitLab receiver needs beside the shared [`super::Webhooks`]. No `Debug`: it holds
/// the webhook secret.
#[derive(Clone)]
pub struct GitlabHooks {
    /// `gitlab.webhook_secret`; without it every delivery is refused.
    pub secret: Option<Secret>,
    /// The served projects, and the client that reads a new job's tags.
    pub forge: Arc<GitlabForge>,
}

pub async fn gitlab(
    State(hooks): State<Arc<super::Webhooks>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(gl) = &hooks.gitlab else {
        record::webhook(FORGE, "disabled");
        return reply(
            StatusCode::NOT_FOUND,
            "GitLab is not configured: no [gitlab]",
        );
    };
    let Some(secret) = &gl.secret else {
        record::webhook(FORGE, "disabled");
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "webhooks are off: gitlab.webhook_secret is not configured",
        );
    };
    if let Err(e) = webhook::verify_token(secret, header(&headers, TOKEN_HEADER)) {
        info!(reason = %e, "GitLab webhook refused");
        record::webhook(FORGE, "invalid_signature");
        return reply(
            StatusCode::UNAUTHORIZED,
            "invalid or missing X-Gitlab-Token",
        );
    }
    let Some(event) = header(&headers, EVENT_HEADER) else {
        record::webhook(FORGE, "bad_request");
        return reply(StatusCode::BAD_REQUEST, "missing X-Gitlab-Event");
    };
    let uuid = header(&headers, WEBHOOK_UUID_HEADER).unwrap_or("-");
    let update = match webhook::parse(event, &body) {
        Ok(Delivery::Job(update)) => update,
        Ok(Delivery::Ignored { event }) => {
            debug!(uuid = %crate::escape::Text(uuid), event, "GitLab webhook ignored");
            record::webhook(FORGE, "ignored");
            return StatusCode::NO_CONTENT.into_response();
        }
        Err(e) => {
            info!(uuid = %crate::escape::Text(uuid), reason = %e, "GitLab webhook rejected");
            record::webhook(FORGE, "bad_request");
            return reply(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    if !gl.forge.owns(&update.key) {
        debug!(
            project = %crate::escape::Text(&update.key.scope),
            "GitLab webhook for a project mayfly does not serve"
        );
        record::webhook(FORGE, "foreign");
        return reply(StatusCode::ACCEPTED, "not a project this mayfly serves");
    }
    // GitLab sends the same key again on a retry of one event: recorded with the job, so a
    // retry changes nothing. Without one (older GitLab), every delivery counts.
    let delivery = header(&headers, IDEMPOTENCY_HEADER)
        .filter(|k| !k.is_empty() && k.len() <= IDEMPOTENCY_LIMIT)
        .map(|k| format!("gitlab:{k}"));
    let now = hooks.clock.now();
    let stored = store_update(
        &hooks.store,
        gl.forge.client(),
        &update,
        now,
        delivery.as_deref(),
    );
    let outcome = match tokio::time::timeout(hooks.store_timeout, stored).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(StoreUpdateError::Store(e @ mayfly_store::StoreError::Invalid { .. }))) => {
            info!(job = %update.key, error = %e, "GitLab webhook rejected by the store");
            record::webhook(FORGE, "bad_request");
            return reply(StatusCode::BAD_REQUEST, e.to_string());
        }
        Ok(Err(e)) => {
            warn!(job = %update.key, error = %e, "GitLab webhook not stored");
            record::webhook(FORGE, "store_failed");
            return reply(StatusCode::SERVICE_UNAVAILABLE, "not stored; retry");
        }
        Err(_) => {
            warn!(job = %update.key, timeout = ?hooks.store_timeout, "GitLab webhook not stored in time");
            record::webhook(FORGE, "store_failed");
            hooks.wake.job(update.status);
            return reply(StatusCode::SERVICE_UNAVAILABLE, "busy; retry");
        }
    };
    debug!(job = %update.key, status = %crate::escape::Text(&update.gitlab_status), ?outcome, "GitLab webhook stored");
    hooks
        .wake
        .delivered(FORGE, &update.key.scope, update.status, outcome);
    record::webhook(
        FORGE,
        match outcome {
            Upsert::DuplicateDelivery => "duplicate",
            o if o.changed() => "stored",
            _ => "unchanged",
        },
    );
    if outcome.changed() {
        hooks.wake.job(update.status);
    }
    StatusCode::ACCEPTED.into_response()
}
