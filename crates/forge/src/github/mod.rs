//! GitHub Actions (github.com and GitHub Enterprise Server): repository, organization and
//! enterprise scopes; single-use runners through JIT configs.

mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod history;
pub mod jobs;
pub mod metrics;
pub mod poll;
pub mod poller;
pub mod probe;
pub mod ratelimit;
pub mod runners;
pub mod sync;
pub mod time;
pub mod webhook;

pub use client::{Client, Clock, SystemClock};
pub use config::{AuthConfig, ClientConfig, ConfigError, GithubConfig, LimitsConfig, Registration};
pub use error::Error;
pub use history::History;
pub use jobs::{WorkflowJob, WorkflowRun};
pub use poll::{Polled, RunStatus};
pub use poller::{PollReport, Poller, RunToRead};
pub use probe::Probe;
pub use ratelimit::{Budget, Priority};
pub use runners::{JitConfig, RegisteredRunner, RegistrationToken, Repo, RunnerGroup, Scope};
