//! Credentials: a personal access token, or a GitHub App that signs an RS256 JWT to get an
//! installation token, cached and replaced before it expires. Secrets stay in `Secret`.

use super::config::ConfigError;
use super::error::{Error, Result};
use super::metrics;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mayfly_core::metrics::ApiOutcome;
use mayfly_core::{Secret, Time};
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// GitHub tolerates this much clock drift; the JWT is dated back by it.
const JWT_BACKDATE_SECS: i64 = 60;
/// GitHub refuses JWTs living longer than 10 minutes; 9 leaves room for drift the other way.
const JWT_LIFETIME_SECS: i64 = 540;

pub(crate) enum Auth {
    Token(Secret),
    App(Box<AppAuth>),
}

pub(crate) struct AppAuth {
    app_id: u64,
    installation_id: u64,
    key: SigningKey<Sha256>,
    refresh: Duration,
    /// One lock around fetch and cache, so concurrent requests fetch one token, not many.
    cached: Mutex<Option<InstallationToken>>,
}

struct InstallationToken {
    token: Secret,
    expires_at: Time,
}

#[derive(Deserialize)]
struct AccessToken {
    token: Secret,
    expires_at: String,
}

impl AppAuth {
    pub(crate) fn load(
        app_id: u64,
        installation_id: u64,
        path: &Path,
        refresh: Duration,
    ) -> Result<AppAuth, ConfigError> {
        let fail = |reason: &str| ConfigError::PrivateKey {
            path: path.display().to_string(),
            reason: reason.to_string(),
        };
        let pem = std::fs::read_to_string(path).map_err(|e| fail(&e.kind().to_string()))?;
        let key = parse_key(&pem)
            .ok_or_else(|| fail("not an RSA private key in PEM (PKCS#1 or PKCS#8)"))?;
        Ok(AppAuth {
            app_id,
            installation_id,
            key: SigningKey::new(key),
            refresh,
            cached: Mutex::new(None),
        })
    }

    /// The App's JWT. Dated by the wall clock, not the injected one: GitHub checks it against
    /// real time whatever the client's notion of now.
    fn jwt(&self) -> Secret {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "typ": "JWT"}).to_string());
        let claims = json!({
            "iat": now - JWT_BACKDATE_SECS,
            "exp": now + JWT_LIFETIME_SECS,
            "iss": self.app_id.to_string(),
        });
        let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = self.key.sign(signed.as_bytes()).to_bytes();
        Secret::new(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// The installation token, fetched when missing or within `refresh` of its expiry.
    pub(crate) async fn token(
        &self,
        http: &reqwest::Client,
        api_url: &str,
        now: Time,
    ) -> Result<Secret> {
        let mut cached = self.cached.lock().await;
        if let Some(t) = cached.as_ref()
            && now.plus(self.refresh) < t.expires_at
        {
            return Ok(t.token.clone());
        }
        let url = format!(
            "{api_url}/app/installations/{}/access_tokens",
            self.installation_id
        );
        let started = Instant::now();
        let response = super::client::with_defaults(http.post(url))
            .bearer_auth(self.jwt().expose())
            .send()
            .await
            .map_err(|e| {
                metrics::call(ApiOutcome::Transport, started);
                Error::transport(&e)
            })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| {
            metrics::call(ApiOutcome::Transport, started);
            Error::transport(&e)
        })?;
        metrics::call(ApiOutcome::of_status(status), started);
        if status != 201 && status != 200 {
            return Err(super::client::error_for(status, &body));
        }
        let answer: AccessToken = serde_json::from_slice(&body).map_err(|e| Error::decode(&e))?;
        let expires_at = answer
            .expires_at
            .parse::<jiff::Timestamp>()
            .map(|t| Time::from_millis(t.as_millisecond()))
            .map_err(|_| Error::Transport("expires_at is not a timestamp".into()))?;
        tracing::debug!(installation = self.installation_id, %expires_at, "new installation token");
        *cached = Some(InstallationToken {
            token: answer.token.clone(),
            expires_at,
        });
        Ok(answer.token)
    }

    /// Forgets the cached token (GitHub refused it): the next request fetches a new one.
    pub(crate) async fn forget(&self) {
        *self.cached.lock().await = None;
    }
}

fn parse_key(pem: &str) -> Option<RsaPrivateKey> {
    RsaPrivateKey::from_pkcs1_pem(pem)
        .ok()
        .or_else(|| RsaPrivateKey::from_pkcs8_pem(pem).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_key_file_says_why_without_its_contents() {
        let dir = std::env::temp_dir().join(format!("mayfly-forge-key-{}", std::process::id()));
        std::fs::write(&dir, "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n").unwrap();
        let err = AppAuth::load(1, 2, &dir, Duration::ZERO).err().unwrap();
        let _ = std::fs::remove_file(&dir);
        assert!(!err.to_string().contains("c2VjcmV0"));
        assert!(err.to_string().contains("not an RSA private key"));
    }
}
