//! Temporary credentials from AWS STS: `AssumeRoleWithWebIdentity` for a web identity token
//! (EKS IRSA: `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`), and `AssumeRole` for a
//! profile's `role_arn`, signed with the keys of its source.

use super::{Credentials, CredentialsError, Env, Fetch, Provider};
use crate::wire::{sigv4, xml};
use async_trait::async_trait;
use mayfly_core::Secret;
use std::path::PathBuf;
use std::time::Duration;

const VERSION: &str = "2011-06-15";
/// One STS call, the whole of it.
const TIMEOUT: Duration = Duration::from_secs(10);

/// STS's address and the region its signatures name: `AWS_ENDPOINT_URL_STS` or
/// `AWS_ENDPOINT_URL` first, else the regional endpoint, else the global one (us-east-1).
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub url: String,
    pub region: String,
}

pub fn endpoint(env: &Env, region: Option<&str>) -> Endpoint {
    let region = region
        .map(str::to_string)
        .or_else(|| super::region(env))
        .unwrap_or_else(|| "us-east-1".to_string());
    let url = env
        .get("AWS_ENDPOINT_URL_STS")
        .or_else(|| env.get("AWS_ENDPOINT_URL"))
        .map(str::to_string)
        .unwrap_or_else(|| {
            let suffix = if region.starts_with("cn-") {
                "amazonaws.com.cn"
            } else {
                "amazonaws.com"
            };
            format!("https://sts.{region}.{suffix}")
        });
    Endpoint { url, region }
}

/// A role session's name when none is configured: unique per process start.
pub fn session_name() -> String {
    format!("mayfly-{}", jiff::Timestamp::now().as_millisecond())
}

/// One STS Query call; `keys` signs it (AssumeRoleWithWebIdentity is not signed).
async fn call(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    source: &'static str,
    params: &[(&str, &str)],
    keys: Option<&Credentials>,
) -> Result<Credentials, CredentialsError> {
    let mut body = format!("Version={VERSION}");
    for (k, v) in params {
        body.push_str(&format!(
            "&{}={}",
            sigv4::encode(k, false),
            sigv4::encode(v, false)
        ));
    }
    let url: reqwest::Url = format!("{}/", endpoint.url.trim_end_matches('/'))
        .parse()
        .map_err(|e| {
            CredentialsError::invalid(source, format!("STS endpoint {}: {e}", endpoint.url))
        })?;
    let content_type = "application/x-www-form-urlencoded";
    let mut req = http
        .post(url.clone())
        .timeout(TIMEOUT)
        .header("content-type", content_type);
    if let Some(keys) = keys {
        let host = crate::wire::host_of(&url);
        let headers = [("content-type", content_type)];
        let unsigned = sigv4::Unsigned {
            method: "POST",
            host: &host,
            path: url.path(),
            query: url.query().unwrap_or(""),
            headers: &headers,
            body: body.as_bytes(),
        };
        let scope = sigv4::Scope {
            region: &endpoint.region,
            service: "sts",
        };
        for (k, v) in sigv4::sign(&unsigned, keys, scope, jiff::Timestamp::now()) {
            req = req.header(k, v);
        }
    }
    let unreachable = |e: reqwest::Error| CredentialsError::Unreachable {
        from: source,
        message: crate::wire::transport_message(&e),
    };
    let answer = req.body(body).send().await.map_err(unreachable)?;
    let status = answer.status();
    let text = answer.text().await.map_err(unreachable)?;
    let doc = xml::parse(&text);
    if !status.is_success() {
        let (code, message) = doc
            .ok()
            .and_then(|d| xml::error(&d))
            .unwrap_or_else(|| ("Unknown".into(), format!("HTTP {status}")));
        let e = format!("STS {code}: {message}");
        return Err(if status.is_server_error() {
            CredentialsError::Unreachable {
                from: source,
                message: e,
            }
        } else {
            CredentialsError::invalid(source, e)
        });
    }
    let doc = doc.map_err(|e| CredentialsError::invalid(source, format!("STS answer: {e}")))?;
    let c = doc
        .find("Credentials")
        .ok_or_else(|| CredentialsError::invalid(source, "STS answer without Credentials"))?;
    let field = |name: &str| {
        c.value(name)
            .ok_or_else(|| CredentialsError::invalid(source, format!("STS answer without {name}")))
    };
    Ok(Credentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: Secret::new(field("SecretAccessKey")?),
        session_token: Some(Secret::new(field("SessionToken")?)),
        expires: Some(super::expiry(source, &field("Expiration")?)?),
        source,
    })
}

/// `AssumeRoleWithWebIdentity` with the token read from its file at every fetch (the file is
/// rotated underneath, as Kubernetes does with projected service account tokens).
#[derive(Debug)]
pub struct WebIdentity {
    token_file: PathBuf,
    role_arn: String,
    session_name: String,
    http: reqwest::Client,
    endpoint: Endpoint,
}

impl WebIdentity {
    pub fn new(
        token_file: PathBuf,
        role_arn: String,
        session_name: String,
        http: &reqwest::Client,
        env: &Env,
        region: Option<&str>,
    ) -> WebIdentity {
        WebIdentity {
            token_file,
            role_arn,
            session_name,
            http: http.clone(),
            endpoint: endpoint(env, region),
        }
    }

    /// `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN` (with `AWS_ROLE_SESSION_NAME`).
    pub fn from_env(
        env: &Env,
        http: &reqwest::Client,
        region: Option<&str>,
    ) -> Option<WebIdentity> {
        Some(WebIdentity::new(
            PathBuf::from(env.get("AWS_WEB_IDENTITY_TOKEN_FILE")?),
            env.get("AWS_ROLE_ARN")?.to_string(),
            env.get("AWS_ROLE_SESSION_NAME")
                .map(str::to_string)
                .unwrap_or_else(session_name),
            http,
            env,
            region,
        ))
    }
}

#[async_trait]
impl Fetch for WebIdentity {
    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        const SOURCE: &str = "web identity";
        let token = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|e| {
                CredentialsError::invalid(
                    SOURCE,
                    format!("cannot read {}: {e}", self.token_file.display()),
                )
            })?;
        call(
            &self.http,
            &self.endpoint,
            SOURCE,
            &[
                ("Action", "AssumeRoleWithWebIdentity"),
                ("RoleArn", &self.role_arn),
                ("RoleSessionName", &self.session_name),
                ("WebIdentityToken", token.trim()),
            ],
            None,
        )
        .await
    }
}

/// `AssumeRole`, signed with the credentials of the profile's source (kept fresh themselves).
#[derive(Debug)]
pub struct AssumeRole {
    pub base: Provider,
    pub role_arn: String,
    pub session_name: String,
    pub external_id: Option<String>,
    pub duration_seconds: Option<u32>,
    pub http: reqwest::Client,
    pub endpoint: Endpoint,
}

#[async_trait]
impl Fetch for AssumeRole {
    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let keys = self.base.get().await?;
        let duration = self.duration_seconds.map(|d| d.to_string());
        let mut params = vec![
            ("Action", "AssumeRole"),
            ("RoleArn", self.role_arn.as_str()),
            ("RoleSessionName", self.session_name.as_str()),
        ];
        if let Some(id) = &self.external_id {
            params.push(("ExternalId", id));
        }
        if let Some(d) = &duration {
            params.push(("DurationSeconds", d));
        }
        call(
            &self.http,
            &self.endpoint,
            "assume role",
            &params,
            Some(&keys),
        )
        .await
    }
}
