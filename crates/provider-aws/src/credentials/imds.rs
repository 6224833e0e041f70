//! The EC2 instance metadata service, IMDSv2 only: a session token from a PUT, then the role's
//! credentials (and the instance's region) with that token. Every request is bounded to two
//! seconds, so a machine that is not on EC2 finds out quickly.

use super::{Credentials, CredentialsError, Env, Fetch};
use async_trait::async_trait;
use std::time::Duration;

const SOURCE: &str = "instance metadata";
const TIMEOUT: Duration = Duration::from_secs(2);
const TOKEN_TTL_SECONDS: &str = "21600";
const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials/";

#[derive(Debug)]
pub struct Imds {
    endpoint: String,
    http: reqwest::Client,
}

impl Imds {
    /// `None` when `AWS_EC2_METADATA_DISABLED` is set. The address is
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT`, or the IPv4 or IPv6 link-local one
    /// (`AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE`).
    pub fn from_env(env: &Env, http: &reqwest::Client) -> Option<Imds> {
        if env.flag("AWS_EC2_METADATA_DISABLED") {
            return None;
        }
        let endpoint = env
            .get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .map(str::to_string)
            .unwrap_or_else(|| {
                match env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE") {
                    Some(m) if m.eq_ignore_ascii_case("ipv6") => "http://[fd00:ec2::254]",
                    _ => "http://169.254.169.254",
                }
                .to_string()
            });
        Some(Imds {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            http: http.clone(),
        })
    }

    fn unreachable(e: reqwest::Error) -> CredentialsError {
        CredentialsError::Unreachable {
            from: SOURCE,
            message: crate::wire::transport_message(&e),
        }
    }

    async fn token(&self) -> Result<String, CredentialsError> {
        let answer = self
            .http
            .put(format!("{}/latest/api/token", self.endpoint))
            .header("x-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL_SECONDS)
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(Imds::unreachable)?;
        if !answer.status().is_success() {
            return Err(CredentialsError::Unreachable {
                from: SOURCE,
                message: format!(
                    "the session token request answered HTTP {}",
                    answer.status()
                ),
            });
        }
        answer.text().await.map_err(Imds::unreachable)
    }

    async fn get(&self, path: &str, token: &str) -> Result<reqwest::Response, reqwest::Error> {
        self.http
            .get(format!("{}{path}", self.endpoint))
            .header("x-aws-ec2-metadata-token", token)
            .timeout(TIMEOUT)
            .send()
            .await
    }

    /// The instance's region; `None` off EC2.
    pub async fn region(&self) -> Option<String> {
        let token = self.token().await.ok()?;
        let answer = self
            .get("/latest/meta-data/placement/region", &token)
            .await
            .ok()?;
        if !answer.status().is_success() {
            return None;
        }
        let region = answer.text().await.ok()?.trim().to_string();
        (!region.is_empty()).then_some(region)
    }
}

#[async_trait]
impl Fetch for Imds {
    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let token = self.token().await?;
        let roles = self
            .get(CREDENTIALS_PATH, &token)
            .await
            .map_err(Imds::unreachable)?;
        if roles.status().as_u16() == 404 {
            return Err(CredentialsError::invalid(
                SOURCE,
                "the instance has no IAM role (instance profile)",
            ));
        }
        if !roles.status().is_success() {
            return Err(CredentialsError::Unreachable {
                from: SOURCE,
                message: format!("the role list answered HTTP {}", roles.status()),
            });
        }
        let roles = roles.text().await.map_err(Imds::unreachable)?;
        let role = roles
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .ok_or_else(|| {
                CredentialsError::invalid(SOURCE, "the instance has no IAM role (instance profile)")
            })?;
        let answer = self.get(&format!("{CREDENTIALS_PATH}{role}"), &token).await;
        super::remote::read(SOURCE, answer).await
    }
}
