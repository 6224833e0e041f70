//! SSH keys: create, list (by name, fingerprint or label), get, delete. The fingerprint is the
//! MD5 of the key blob in colon-separated hex, as the real API computes it.

use super::errors::{ApiError, parse_body};
use super::labels;
use super::query::Params;
use super::render;
use super::routes::{Answer, Hz, RawQuery, parse_id, selector};
use super::state::SshKey;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine;
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// `aa:bb:…` of an OpenSSH public key line (`type base64 [comment]`), if it is one.
pub fn fingerprint(public_key: &str) -> Option<String> {
    let mut parts = public_key.split_whitespace();
    let (kind, blob) = (parts.next()?, parts.next()?);
    if !(kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-")) {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    let digest = Md5::digest(&bytes);
    Some(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

pub async fn list(State(h): Hz, q: RawQuery) -> Answer {
    let p = Params::from(q)?;
    let selector = selector(&p)?;
    let st = h.lock();
    let keys: Vec<Value> = st
        .ssh_keys
        .values()
        .filter(|k| p.get("name").is_none_or(|n| n == k.name))
        .filter(|k| p.get("fingerprint").is_none_or(|f| f == k.fingerprint))
        .filter(|k| selector.as_ref().is_none_or(|s| s.matches(&k.labels)))
        .map(render::ssh_key)
        .collect();
    let (ssh_keys, meta) = p.page(keys)?;
    Ok(Json(json!({ "ssh_keys": ssh_keys, "meta": meta })))
}

#[derive(Deserialize)]
struct CreateKey {
    name: String,
    public_key: String,
    labels: Option<BTreeMap<String, String>>,
}

pub async fn create(State(h): Hz, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: CreateKey = parse_body(&body)?;
    if req.name.is_empty() {
        return Err(ApiError::invalid_field("name", "is required"));
    }
    let labels = req.labels.unwrap_or_default();
    labels::validate(&labels).map_err(|e| ApiError::invalid_field("labels", &e))?;
    let fingerprint = fingerprint(&req.public_key)
        .ok_or_else(|| ApiError::invalid_field("public_key", "is not an OpenSSH public key"))?;
    let now = h.clock.now_ms();
    let mut st = h.lock();
    if st.ssh_keys.values().any(|k| k.name == req.name) {
        return Err(ApiError::uniqueness("name"));
    }
    if st.ssh_keys.values().any(|k| k.fingerprint == fingerprint) {
        return Err(ApiError::uniqueness("public_key"));
    }
    let id = st.next_id();
    let key = SshKey {
        id,
        name: req.name,
        fingerprint,
        public_key: req.public_key.trim().to_string(),
        labels,
        created_ms: now,
    };
    let body = json!({ "ssh_key": render::ssh_key(&key) });
    st.ssh_keys.insert(id, key);
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn get(State(h): Hz, Path(id): Path<String>) -> Answer {
    let id = parse_id(&id)?;
    let st = h.lock();
    let key = st
        .ssh_keys
        .get(&id)
        .ok_or_else(|| ApiError::not_found("ssh key"))?;
    Ok(Json(json!({ "ssh_key": render::ssh_key(key) })))
}

pub async fn delete(State(h): Hz, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    h.lock()
        .ssh_keys
        .remove(&id)
        .map(|_| StatusCode::NO_CONTENT)
        .ok_or_else(|| ApiError::not_found("ssh key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_the_md5_of_the_key_blob() {
        // base64 of "abc"; MD5("abc") is well known.
        assert_eq!(
            fingerprint("ssh-ed25519 YWJj me@host").as_deref(),
            Some("90:01:50:98:3c:d2:4f:b0:d6:96:3f:7d:28:e1:7f:72")
        );
        assert_eq!(fingerprint("not a key"), None);
        assert_eq!(fingerprint("ssh-rsa !!!"), None);
    }
}
