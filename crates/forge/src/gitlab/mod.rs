//! GitLab CI (GitLab.com and self-managed): project, group and instance runners, one runner
//! record per machine whose glrt- token starts `gitlab-runner run-single`; Job Hooks; polling.

pub mod client;
pub mod config;
pub mod error;
pub mod jobs;
pub mod metrics;
pub mod poll;
pub mod projects;
pub mod ratelimit;
pub mod runners;
pub mod time;
pub mod webhook;

pub use client::{Client, Clock, SystemClock};
pub use config::{ClientSettings, ConfigError, GitlabConfig, LimitsConfig, RunnerType};
pub use error::Error;
pub use jobs::{Job, JobScope, UnknownStatus, job_status};
pub use poll::{PollReport, Poller};
pub use projects::{Group, Project, Scopes, Served};
pub use ratelimit::{Budget, Priority};
pub use runners::{CreatedRunner, RegisteredRunner, RunnerScope, VerifiedRunner};
