//! The shared SDK configuration: the standard credential chain, the region, an `endpoint_url`
//! override (moto, LocalStack, a VPC endpoint) and bounded waits on every call.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use mayfly_core::Secret;
use std::time::Duration;

/// Where and how the AWS APIs are called; shared by the three providers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsSettings {
    /// `None`: the standard environment decides (`AWS_REGION`, the profile).
    pub region: Option<String>,
    /// Every service's endpoint instead of AWS's own.
    pub endpoint_url: Option<String>,
    /// Each attempt of a call gives up after this long.
    pub request_timeout: Duration,
    /// A call with its retries gives up after this long: a pass is never held longer.
    pub operation_timeout: Duration,
    /// Attempts per call, the first included (the SDK's standard retry with backoff).
    pub max_attempts: u32,
    /// Keys given in code instead of the credential chain: for tests against an emulator only.
    pub credentials: Option<StaticCredentials>,
}

/// An access key pair; the secret half is never printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            region: None,
            endpoint_url: None,
            request_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(30),
            max_attempts: 3,
            credentials: None,
        }
    }
}

/// A configuration that cannot work, found before any call is made. Never carries a credential.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("no AWS region: set `region`, or AWS_REGION in the environment")]
    NoRegion,
    #[error("`{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

impl AwsSettings {
    /// The settings for one region behind one endpoint, with static test keys: for emulators.
    pub fn emulator(endpoint_url: &str, region: &str) -> AwsSettings {
        AwsSettings {
            region: Some(region.to_string()),
            endpoint_url: Some(endpoint_url.to_string()),
            credentials: Some(StaticCredentials {
                access_key_id: "testing".into(),
                secret_access_key: Secret::new("testing"),
            }),
            ..AwsSettings::default()
        }
    }

    /// Resolves the region and builds the SDK configuration. Credentials are resolved lazily,
    /// on the first call, by the SDK's standard chain (environment, profile, SSO, web identity,
    /// container and instance roles).
    pub async fn load(&self) -> Result<SdkConfig, ConfigError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(self.request_timeout.min(Duration::from_secs(5)))
                    .operation_attempt_timeout(self.request_timeout)
                    .operation_timeout(self.operation_timeout)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(self.max_attempts.max(1)));
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &self.endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    key: "endpoint_url",
                    message: "expected an http:// or https:// URL".into(),
                });
            }
            loader = loader.endpoint_url(url.trim_end_matches('/'));
        }
        if let Some(c) = &self.credentials {
            loader = loader.credentials_provider(aws_sdk_ec2::config::Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.expose().to_string(),
                None,
                None,
                "mayfly-static",
            ));
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(ConfigError::NoRegion);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_emulator_configuration_loads_with_its_region_and_endpoint() {
        let c = AwsSettings::emulator("http://127.0.0.1:5000/", "eu-west-1")
            .load()
            .await
            .unwrap();
        assert_eq!(c.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(c.endpoint_url(), Some("http://127.0.0.1:5000"));
    }

    #[tokio::test]
    async fn a_bad_endpoint_is_refused_by_name() {
        let e = AwsSettings::emulator("127.0.0.1:5000", "eu-west-1")
            .load()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("endpoint_url"), "{e}");
    }

    #[test]
    fn the_secret_key_is_never_printed() {
        let s = AwsSettings::emulator("http://x", "r");
        assert!(!format!("{s:?}").contains("\"testing\")"));
        assert!(format!("{s:?}").contains("redacted"));
    }
}
