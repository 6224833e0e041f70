//! mayfly-forge: the CI services that have jobs needing runners. GitHub Actions (REST client,
//! tokens and GitHub App auth, rate limits, webhooks, polling) and GitLab CI (REST client, runner
//! records, Job Hooks, polling).

pub mod budget;
pub mod clock;
pub mod forge;
pub mod github;
pub mod gitlab;
mod http;
mod link;
mod webhook;

pub use forge::{Forge, ForgeError, GithubForge, GitlabForge};
