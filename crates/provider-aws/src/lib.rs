//! mayfly's AWS providers: `aws-ec2` (one EC2 instance per job), `aws-ecs` (one ECS or
//! Fargate task per job) and `aws-asg` (an Auto Scaling group).
//!
//! They speak to AWS through `wire`, a small SigV4-signed HTTP client over reqwest, with the
//! credential chain users rely on (`credentials`), instead of the AWS SDK for Rust, whose
//! build took most of mayfly's time and memory. Every service is reached through a small trait
//! (`ec2::Ec2Api`, …) whose real implementation is that client: the providers' decisions
//! (fallbacks, failure handling) are unit-tested with injected errors that an emulator never
//! produces.

mod api_error;
pub mod asg;
mod calls;
pub mod credentials;
pub mod ec2;
pub mod ecs;
mod settings;
pub mod wire;

pub use api_error::ApiError;
pub use settings::{AwsSettings, ConfigError, StaticCredentials};
