//! mayfly's AWS providers, through the official AWS SDK for Rust: `aws-ec2` (one EC2 instance
//! per job), `aws-ecs` (one ECS or Fargate task per job) and `aws-asg` (an Auto Scaling group).
//!
//! The SDK is large and slow to build, so it lives in this crate alone, behind the `mayfly`
//! binary's `aws` feature. Every service is reached through a small trait (`ec2::Ec2Api`, …)
//! whose real implementation is the SDK client: the providers' decisions (fallbacks, failure
//! handling) are unit-tested with injected errors that an emulator never produces.

mod api_error;
pub mod asg;
mod calls;
pub mod ec2;
pub mod ecs;
mod sdk;

pub use api_error::ApiError;
pub use sdk::{AwsSettings, ConfigError, StaticCredentials};
