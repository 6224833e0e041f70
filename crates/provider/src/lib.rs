//! mayfly-provider: where machines come from. One small `Provider` trait with the operations the
//! executor needs, typed errors it acts on, the runner bootstrap, and one conformance suite that
//! every provider's tests run.

pub mod bootstrap;
pub mod conformance;
mod error;
pub mod hetzner;
pub mod local;
mod metrics;
mod spec_check;

pub use error::{Error, Result};
pub use spec_check::{ALTERNATIVES, SpecIssue, SpecItem, SpecProblem, closest, day, spec_unusable};

use async_trait::async_trait;
use mayfly_core::{Billing, Image, Instance, Labels, MachineSpec, Placement, Secret};

/// The tags (Hetzner labels, AWS tags) every instance mayfly makes carries. An instance without
/// `CONTROLLER` equal to this controller's id is never listed, touched or counted.
pub mod tags {
    pub const CONTROLLER: &str = "mayfly-controller";
    pub const POOL: &str = "mayfly-pool";
}

/// One instance to create.
#[derive(Clone, Debug)]
pub struct CreateRequest {
    /// Deterministic: the create's idempotency key and the runner's name.
    pub name: String,
    pub controller: String,
    pub pool: String,
    /// Types and locations are ordered fallbacks: the first pair the cloud accepts wins.
    pub spec: MachineSpec,
    /// The bootstrap (cloud-init); holds a runner credential, so it is a secret.
    pub user_data: Secret,
    /// The labels the runner registers with: a container provider picks its task definition by them.
    pub labels: Labels,
    /// The runner credential inside `user_data`, for providers whose instances take it another
    /// way than by running the user data (a container gets it through its environment).
    pub credential: bootstrap::Credential,
}

/// Where machines come from. Every method is safe to call again after a crash or a timeout:
/// a create of a name that exists answers `AlreadyExists`, a delete of a gone instance is `Ok`.
#[async_trait]
pub trait Provider: Send + Sync {
    /// `hetzner`, `aws-ec2`, …: for logs and metrics.
    fn kind(&self) -> &'static str;

    /// Creates the instance, trying `spec`'s types and locations in order. The returned
    /// instance has its `provider_id`, `placement` and `billing` set.
    async fn create(&self, req: &CreateRequest) -> Result<Instance>;

    /// Every instance tagged with `controller`, all pages, in as few calls as the API allows
    /// (never one call per instance). `labels`, `job` and `run_id` are left empty: the
    /// controller's store knows them.
    async fn list(&self, controller: &str) -> Result<Vec<Instance>>;

    async fn get(&self, id: &str) -> Result<Instance>;

    async fn power_off(&self, id: &str) -> Result<()>;

    async fn power_on(&self, id: &str) -> Result<()>;

    /// A fresh disk from `image`, booted with new user data: how a recyclable instance is
    /// reused for the next job (the new user data carries the new runner credential).
    /// `Unsupported` where the cloud has no such thing (EC2, ECS).
    async fn rebuild(&self, id: &str, image: &Image, user_data: &Secret) -> Result<()>;

    /// Deletes the instance; an instance that is gone already counts as deleted.
    async fn delete(&self, id: &str) -> Result<()>;

    /// What a machine of this placement costs, and how it is billed.
    async fn billing(&self, placement: &Placement) -> Result<Billing>;

    /// What `spec` names that the provider's catalogue does not offer: unknown, unavailable or
    /// deprecated types, images and locations, each with close alternatives. An empty answer
    /// means nothing is known to be wrong (the default, for providers without a catalogue to
    /// check against). An error means the catalogue could not be read; it says nothing about
    /// the spec. Cheap to call for every pool: the catalogue is read at most once an hour.
    async fn check(&self, spec: &MachineSpec) -> Result<Vec<SpecProblem>> {
        let _ = spec;
        Ok(Vec::new())
    }
}
