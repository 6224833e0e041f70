//! Credentials served over HTTP by the platform: the ECS (and EKS Pod Identity) container
//! endpoint, and the JSON shape it shares with the instance metadata service.

use super::{Credentials, CredentialsError, Env, Fetch};
use async_trait::async_trait;
use mayfly_core::Secret;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

const SOURCE: &str = "container";
/// The ECS agent's address for `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`.
const ECS_HOST: &str = "http://169.254.170.2";
const TIMEOUT: Duration = Duration::from_secs(5);

/// `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}`, as the container endpoint and
/// the instance metadata service answer.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Served {
    access_key_id: String,
    secret_access_key: String,
    token: Option<String>,
    expiration: Option<String>,
    /// The metadata service says `Success`; the container endpoint says nothing.
    code: Option<String>,
}

impl Served {
    pub fn into_credentials(self, source: &'static str) -> Result<Credentials, CredentialsError> {
        if let Some(code) = self.code.as_deref()
            && code != "Success"
        {
            return Err(CredentialsError::invalid(
                source,
                format!("the endpoint answered Code {code:?}"),
            ));
        }
        Ok(Credentials {
            access_key_id: self.access_key_id,
            secret_access_key: Secret::new(self.secret_access_key),
            session_token: self.token.filter(|t| !t.is_empty()).map(Secret::new),
            expires: match self.expiration.as_deref() {
                Some(e) => Some(super::expiry(source, e)?),
                None => None,
            },
            source,
        })
    }
}

/// Reads a credentials answer: its status, then its JSON (never quoted back: it holds keys).
pub async fn read(
    source: &'static str,
    answer: Result<reqwest::Response, reqwest::Error>,
) -> Result<Credentials, CredentialsError> {
    let unreachable = |e: reqwest::Error| CredentialsError::Unreachable {
        from: source,
        message: crate::wire::transport_message(&e),
    };
    let answer = answer.map_err(unreachable)?;
    let status = answer.status();
    if !status.is_success() {
        let message = format!("the endpoint answered HTTP {status}");
        return Err(if status.is_server_error() {
            CredentialsError::Unreachable {
                from: source,
                message,
            }
        } else {
            CredentialsError::invalid(source, message)
        });
    }
    let body = answer.bytes().await.map_err(unreachable)?;
    serde_json::from_slice::<Served>(&body)
        .map_err(|e| {
            CredentialsError::invalid(
                source,
                format!(
                    "unreadable answer ({:?} error at line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            )
        })?
        .into_credentials(source)
}

/// Where the token of the container endpoint comes from.
#[derive(Debug)]
enum Token {
    None,
    Value(Secret),
    /// Read at every fetch: the platform rotates it.
    File(PathBuf),
}

#[derive(Debug)]
pub struct Container {
    url: reqwest::Url,
    token: Token,
    http: reqwest::Client,
}

/// A plain-HTTP full URI may only point at the host itself or the platform's own addresses:
/// anything else would send the token to whoever answers.
fn allowed_plain_host(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        Ok(std::net::IpAddr::V4(ip)) => {
            ip.is_loopback()
                || ip.octets() == [169, 254, 170, 2]
                || ip.octets() == [169, 254, 170, 23]
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23]
        }
        Err(_) => false,
    }
}

impl Container {
    /// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (ECS) or `AWS_CONTAINER_CREDENTIALS_FULL_URI`
    /// with `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` or `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
    pub fn from_env(
        env: &Env,
        http: &reqwest::Client,
    ) -> Result<Option<Container>, CredentialsError> {
        let url = if let Some(relative) = env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            format!(
                "{ECS_HOST}{}",
                if relative.starts_with('/') {
                    relative.to_string()
                } else {
                    format!("/{relative}")
                }
            )
        } else if let Some(full) = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            full.to_string()
        } else {
            return Ok(None);
        };
        let bad = |m: String| CredentialsError::invalid(SOURCE, m);
        let url: reqwest::Url = url
            .parse()
            .map_err(|e| bad(format!("AWS_CONTAINER_CREDENTIALS_*_URI {url:?}: {e}")))?;
        match (url.scheme(), url.host_str()) {
            ("https", Some(_)) => {}
            ("http", Some(h)) if allowed_plain_host(h) => {}
            _ => {
                return Err(bad(format!(
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI {url}: plain http only to a loopback or the container agent's address"
                )));
            }
        }
        let token = if let Some(file) = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            Token::File(PathBuf::from(file))
        } else if let Some(t) = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN") {
            Token::Value(Secret::new(t))
        } else {
            Token::None
        };
        Ok(Some(Container {
            url,
            token,
            http: http.clone(),
        }))
    }
}

#[async_trait]
impl Fetch for Container {
    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let token = match &self.token {
            Token::None => None,
            Token::Value(t) => Some(t.expose().to_string()),
            Token::File(path) => Some(
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| {
                        CredentialsError::invalid(
                            SOURCE,
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?
                    .trim()
                    .to_string(),
            ),
        };
        let mut req = self.http.get(self.url.clone()).timeout(TIMEOUT);
        if let Some(t) = token {
            if t.contains(['\r', '\n']) {
                return Err(CredentialsError::invalid(
                    SOURCE,
                    "the authorization token holds a line break",
                ));
            }
            req = req.header("authorization", t);
        }
        read(SOURCE, req.send().await).await
    }
}
