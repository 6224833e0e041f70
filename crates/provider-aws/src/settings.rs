//! Where and how the AWS APIs are called, shared by the three providers: the region, an
//! `endpoint_url` override (moto, LocalStack, a VPC endpoint), bounded waits on every call, and
//! keys given in code for emulators (otherwise the standard credential chain, `credentials`).

use crate::credentials::Env;
use crate::wire::Aws;
use mayfly_core::Secret;
use std::sync::Arc;
use std::time::Duration;

/// Where and how the AWS APIs are called; shared by the three providers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsSettings {
    /// `None`: the standard environment decides (`AWS_REGION`, the profile, the instance).
    pub region: Option<String>,
    /// Every service's endpoint instead of AWS's own.
    pub endpoint_url: Option<String>,
    /// Each attempt of a call gives up after this long.
    pub request_timeout: Duration,
    /// A call with its retries gives up after this long: a pass is never held longer.
    pub operation_timeout: Duration,
    /// Attempts per call, the first included (standard retry with backoff).
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
    #[error(
        "no AWS region: set `region`, or AWS_REGION in the environment, or `region` in the AWS profile"
    )]
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

    /// The client for these settings in this process's environment. Resolves the region and
    /// chooses the credential source; the credentials themselves are fetched on the first call.
    pub async fn connect(&self) -> Result<Arc<Aws>, ConfigError> {
        self.connect_in(Env::from_process()).await
    }

    /// As `connect`, in the environment given.
    pub async fn connect_in(&self, env: Env) -> Result<Arc<Aws>, ConfigError> {
        Aws::connect(self, env).await.map(Arc::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::EC2;

    #[tokio::test]
    async fn an_emulator_configuration_connects_with_its_region_and_endpoint() {
        let c = AwsSettings::emulator("http://127.0.0.1:5000/", "eu-west-1")
            .connect_in(Env::default())
            .await
            .unwrap();
        assert_eq!(c.region(), "eu-west-1");
        assert_eq!(c.endpoint(EC2), "http://127.0.0.1:5000");
    }

    #[tokio::test]
    async fn a_bad_endpoint_is_refused_by_name() {
        let e = AwsSettings::emulator("127.0.0.1:5000", "eu-west-1")
            .connect_in(Env::default())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("endpoint_url"), "{e}");
    }

    #[tokio::test]
    async fn the_region_comes_from_the_environment_or_is_missing_by_name() {
        let settings = AwsSettings::default();
        let env = Env::of([
            ("AWS_DEFAULT_REGION", "ap-southeast-2"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]);
        let c = settings.connect_in(env).await.unwrap();
        assert_eq!(c.region(), "ap-southeast-2");
        assert_eq!(c.endpoint(EC2), "https://ec2.ap-southeast-2.amazonaws.com");
        let env = Env::of([
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]);
        assert_eq!(
            settings.connect_in(env).await.unwrap_err(),
            ConfigError::NoRegion
        );
    }

    #[tokio::test]
    async fn endpoints_follow_the_sdks_environment_overrides() {
        let env = Env::of([
            ("AWS_REGION", "cn-north-1"),
            ("AWS_ENDPOINT_URL_ECS", "http://localhost:4566/"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]);
        let c = AwsSettings::default().connect_in(env).await.unwrap();
        assert_eq!(c.endpoint(crate::wire::ECS), "http://localhost:4566");
        assert_eq!(c.endpoint(EC2), "https://ec2.cn-north-1.amazonaws.com.cn");
    }

    #[test]
    fn the_secret_key_is_never_printed() {
        let s = AwsSettings::emulator("http://x", "r");
        assert!(!format!("{s:?}").contains("\"testing\")"));
        assert!(format!("{s:?}").contains("redacted"));
    }
}
