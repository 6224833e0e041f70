//! The one HTTP client every AWS call goes through: the service's endpoint, a SigV4 signature
//! with fresh credentials, bounded attempts with backoff, and the metric contract. Two
//! protocols sit on top: Query (EC2, Auto Scaling) and JSON 1.1 (ECS, SSM).
//!
//! This replaces the AWS SDK for Rust, as object_store does for S3: mayfly makes about twenty
//! AWS calls, and the SDK's generated EC2 crate alone took most of a 26-minute build and 8 GB of
//! memory. Its behaviour is kept: standard retry mode (3 attempts, exponential backoff with
//! full jitter up to 20 s, a retry quota), the same timeouts, the same error codes.

mod json;
mod query;
mod retry;
pub mod sigv4;
pub mod xml;

pub use query::Params;
pub use xml::Element;

/// The code and message of a Query-protocol error answer.
pub fn query_error(status: u16, body: &[u8]) -> (String, String) {
    query::error(status, body)
}

/// The code and message of a JSON-protocol error answer.
pub fn json_error(status: u16, error_type: Option<&str>, body: &[u8]) -> (String, String) {
    json::error(status, error_type, body)
}

use crate::calls;
use crate::credentials::{self, Env};
use crate::{ApiError, AwsSettings, ConfigError};
use std::time::{Duration, Instant};

/// One AWS service as mayfly calls it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Service {
    /// The signing name, and the first label of its endpoint.
    pub name: &'static str,
    /// The `api` label of the metric contract (`mayfly_core::metrics`).
    pub api: &'static str,
    /// `AWS_ENDPOINT_URL_<id>` overrides its endpoint, as in the AWS SDKs.
    pub env_id: &'static str,
}

pub const EC2: Service = Service {
    name: "ec2",
    api: calls::EC2,
    env_id: "EC2",
};
pub const AUTOSCALING: Service = Service {
    name: "autoscaling",
    api: calls::AUTOSCALING,
    env_id: "AUTO_SCALING",
};
pub const ECS: Service = Service {
    name: "ecs",
    api: calls::ECS,
    env_id: "ECS",
};
pub const SSM: Service = Service {
    name: "ssm",
    api: calls::SSM,
    env_id: "SSM",
};

/// The Host header of a URL, as SigV4 signs it: the host, and the port unless it is the
/// scheme's default.
pub fn host_of(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// What went wrong on the wire, without the request (it may hold user data).
pub fn transport_message(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the answer was cut off"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    }
}

/// The client shared by every service of one provider: where, as whom, and how patiently.
#[derive(Debug)]
pub struct Aws {
    http: reqwest::Client,
    region: String,
    endpoint_url: Option<String>,
    env: Env,
    credentials: credentials::Provider,
    max_attempts: u32,
    operation_timeout: Duration,
    quota: retry::Quota,
}

/// The two wire protocols: how a body is sent and how an error answer names its code.
#[derive(Clone, Copy, Debug)]
enum Protocol {
    Query,
    Json,
}

impl Aws {
    /// Resolves the region (settings, `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile, the
    /// instance's metadata) and chooses the credential source; makes no AWS call.
    pub async fn connect(settings: &AwsSettings, env: Env) -> Result<Aws, ConfigError> {
        if let Some(url) = &settings.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                key: "endpoint_url",
                message: "expected an http:// or https:// URL".into(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(5)))
            .timeout(settings.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mayfly/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Invalid {
                key: "endpoint_url",
                message: format!("cannot set up HTTPS: {e}"),
            })?;
        // Credential endpoints: the metadata service and the container agent (their requests
        // are bounded to 2 s and 5 s in all, so a machine off EC2 finds out fast) and STS.
        let credentials_http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|_| http.clone());
        let region = match settings
            .region
            .clone()
            .or_else(|| credentials::region(&env))
        {
            Some(r) => r,
            None => match settings.credentials {
                // Test keys never come with a metadata service.
                Some(_) => return Err(ConfigError::NoRegion),
                None => credentials::instance_region(&env, &credentials_http)
                    .await
                    .ok_or(ConfigError::NoRegion)?,
            },
        };
        if region.trim().is_empty() {
            return Err(ConfigError::NoRegion);
        }
        let provider = match &settings.credentials {
            Some(c) => credentials::Provider::fixed(credentials::Credentials {
                access_key_id: c.access_key_id.clone(),
                secret_access_key: c.secret_access_key.clone(),
                session_token: None,
                expires: None,
                source: "configuration",
            }),
            None => credentials::Provider::from_env(&env, &credentials_http, Some(&region)),
        };
        Ok(Aws {
            http,
            region,
            endpoint_url: settings
                .endpoint_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_string()),
            env,
            credentials: provider,
            max_attempts: settings.max_attempts.max(1),
            operation_timeout: settings.operation_timeout,
            quota: retry::Quota::default(),
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The service's address: the configured `endpoint_url`, else `AWS_ENDPOINT_URL_<SERVICE>`,
    /// else `AWS_ENDPOINT_URL`, else AWS's regional endpoint.
    pub fn endpoint(&self, service: Service) -> String {
        if let Some(url) = &self.endpoint_url {
            return url.clone();
        }
        if let Some(url) = self
            .env
            .get(&format!("AWS_ENDPOINT_URL_{}", service.env_id))
            .or_else(|| self.env.get("AWS_ENDPOINT_URL"))
        {
            return url.trim_end_matches('/').to_string();
        }
        let suffix = if self.region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!("https://{}.{}.{suffix}", service.name, self.region)
    }

    /// One Query-protocol action; the answer's root element.
    pub async fn query(
        &self,
        service: Service,
        version: &str,
        action: &str,
        params: &Params,
    ) -> Result<Element, ApiError> {
        let body = params.body(action, version);
        let answer = self
            .send(
                service,
                body.as_bytes(),
                &[("content-type", query::CONTENT_TYPE)],
                Protocol::Query,
            )
            .await?;
        xml::parse(&String::from_utf8_lossy(&answer))
            .map_err(|e| ApiError::unreadable(200, &format!("{action}: {e}")))
    }

    /// One JSON 1.1 operation (`X-Amz-Target: <prefix>.<Operation>`); the answer's document.
    pub async fn json(
        &self,
        service: Service,
        target: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ApiError> {
        let body = serde_json::to_vec(body).map_err(|e| ApiError::unreadable(0, &e.to_string()))?;
        let answer = self
            .send(
                service,
                &body,
                &[
                    ("content-type", json::CONTENT_TYPE),
                    ("x-amz-target", target),
                ],
                Protocol::Json,
            )
            .await?;
        if answer.is_empty() {
            return Ok(serde_json::Value::Object(Default::default()));
        }
        serde_json::from_slice(&answer)
            .map_err(|e| ApiError::unreadable(200, &format!("{target}: {}", json::describe(&e))))
    }

    /// Sends a POST to the service's endpoint until it succeeds, fails for good, runs out of
    /// attempts or out of `operation_timeout`. Each attempt that reached the wire is counted.
    async fn send(
        &self,
        service: Service,
        body: &[u8],
        headers: &[(&str, &str)],
        protocol: Protocol,
    ) -> Result<Vec<u8>, ApiError> {
        let endpoint = self.endpoint(service);
        let url: reqwest::Url = format!("{endpoint}/")
            .parse()
            .or_else(|_| endpoint.parse())
            .map_err(|e| ApiError::construction(&format!("endpoint {endpoint:?}: {e}")))?;
        let host = host_of(&url);
        let work = async {
            let mut attempt = 1;
            loop {
                let keys = self
                    .credentials
                    .get()
                    .await
                    .map_err(|e| ApiError::credentials(&e))?;
                let unsigned = sigv4::Unsigned {
                    method: "POST",
                    host: &host,
                    path: url.path(),
                    query: url.query().unwrap_or(""),
                    headers,
                    body,
                };
                let scope = sigv4::Scope {
                    region: &self.region,
                    service: service.name,
                };
                let mut req = self.http.post(url.clone()).body(body.to_vec());
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                for (k, v) in sigv4::sign(&unsigned, &keys, scope, jiff::Timestamp::now()) {
                    req = req.header(k, v);
                }
                let sent = Instant::now();
                let answer = async {
                    let r = req.send().await?;
                    let status = r.status().as_u16();
                    let error_type = r
                        .headers()
                        .get("x-amzn-errortype")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let bytes = r.bytes().await?;
                    Ok::<_, reqwest::Error>((status, error_type, bytes.to_vec()))
                }
                .await;
                let failure = match answer {
                    Err(e) => {
                        calls::record(service.api, calls::transport(), sent.elapsed());
                        ApiError::no_answer(&format!("no answer: {}", transport_message(&e)))
                    }
                    Ok((status, _, bytes)) if (200..300).contains(&status) => {
                        calls::record(service.api, calls::outcome(status, None), sent.elapsed());
                        self.quota.succeeded(attempt > 1);
                        return Ok(bytes);
                    }
                    Ok((status, error_type, bytes)) => {
                        let (code, message) = match protocol {
                            Protocol::Query => query::error(status, &bytes),
                            Protocol::Json => json::error(status, error_type.as_deref(), &bytes),
                        };
                        calls::record(
                            service.api,
                            calls::outcome(status, Some(&code)),
                            sent.elapsed(),
                        );
                        ApiError {
                            code,
                            message,
                            status: Some(status),
                            transport: false,
                        }
                    }
                };
                if attempt >= self.max_attempts
                    || !retry::retryable(&failure)
                    || !self.quota.take(&failure)
                {
                    return Err(failure);
                }
                let wait = retry::backoff(attempt);
                tracing::debug!(api = service.api, attempt, error = %failure, ?wait, "AWS: retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        };
        tokio::time::timeout(self.operation_timeout, work)
            .await
            .unwrap_or_else(|_| Err(ApiError::no_answer("the call timed out")))
    }
}

#[cfg(test)]
mod tests;
