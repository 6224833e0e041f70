//! The HTTP server of `mayfly run`: GitHub and GitLab webhooks and `/healthz` on `listen`; `/readyz`,
//! `/metrics` and the API there too, or on `api.listen` when set (`serve`).
//! Handlers only record what arrived and wake the reconciler; they never call a cloud, and a
//! forge only to read a new GitLab job's tags (see `gitlab_hooks`).

pub mod api;
mod auth;
pub mod dashboard;
mod gitlab_hooks;
pub mod metrics;
mod readiness;
pub mod serve;
mod webhooks;

pub use api::Api;
pub use gitlab_hooks::GitlabHooks;
pub use readiness::{LastPassView, Readiness};
pub use webhooks::{BODY_LIMIT, STORE_TIMEOUT};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use mayfly_core::Secret;
use mayfly_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// What the webhook receiver needs. No `Debug`: it holds the webhook secret.
#[derive(Clone)]
pub struct Webhooks {
    pub store: Store,
    /// Without one every delivery is refused: unsigned input is never accepted.
    pub secret: Option<Secret>,
    /// Wakes the reconcile loop early; a wake-up that finds it busy is kept for its next wait.
    pub wake: Arc<crate::demand::Wake>,
    /// Bounds the store write, so GitHub gets an answer well within its 10 s.
    pub store_timeout: Duration,
    /// When news arrives, as the rest of the controller tells time (the simulator's clock
    /// in-process): a job's news is compared with it.
    pub clock: Arc<dyn mayfly_core::Clock>,
    /// Which repositories' jobs are mayfly's: a delivery for any other (a GitHub App installed
    /// organization-wide while mayfly serves a list of repositories) is answered, counted as
    /// `foreign` and not stored, so it never gets a machine.
    pub serves: Served,
    /// GitLab's receiver, when `[gitlab]` is configured.
    pub gitlab: Option<GitlabHooks>,
}

/// The repositories whose jobs mayfly serves, as the `[github]` section names them.
#[derive(Clone, Debug, Default)]
pub enum Served {
    /// Every repository the deliveries come from (an organization or enterprise without a
    /// repository list, or tests).
    #[default]
    Any,
    /// The repositories of one organization.
    Owner(String),
    /// These repositories (`owner/name`, lowercase).
    Repositories(std::collections::HashSet<String>),
}

impl Served {
    /// From `github.repositories` and `github.organization`: the list wins where there is one.
    pub fn new(repositories: &[String], organization: Option<&str>) -> Served {
        if !repositories.is_empty() {
            Served::Repositories(repositories.iter().map(|r| r.to_lowercase()).collect())
        } else if let Some(org) = organization {
            Served::Owner(org.to_lowercase())
        } else {
            Served::Any
        }
    }

    /// Whether jobs of `repo` (`owner/name`) are mayfly's. GitHub's names are case-insensitive.
    pub fn covers(&self, repo: &str) -> bool {
        let repo = repo.to_lowercase();
        match self {
            Served::Any => true,
            Served::Owner(o) => repo.split_once('/').is_some_and(|(owner, _)| owner == o),
            Served::Repositories(set) => set.contains(&repo),
        }
    }
}

impl Webhooks {
    pub fn new(store: Store, secret: Option<Secret>, wake: Arc<crate::demand::Wake>) -> Self {
        Webhooks {
            store,
            secret,
            wake,
            store_timeout: STORE_TIMEOUT,
            clock: Arc::new(mayfly_forge::clock::SystemClock),
            serves: Served::Any,
            gitlab: None,
        }
    }

    /// Receives GitLab's Job Hooks at `/webhooks/gitlab` too.
    pub fn with_gitlab(mut self, gitlab: GitlabHooks) -> Self {
        self.gitlab = Some(gitlab);
        self
    }

    /// Stores jobs of the repositories `serves` covers only.
    pub fn serving(mut self, serves: Served) -> Self {
        self.serves = serves;
        self
    }

    /// Stamps news with `clock` instead of the wall clock.
    pub fn with_clock(mut self, clock: Arc<dyn mayfly_core::Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// `GET /healthz`: the process answers HTTP. On every listener.
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// All routes: `GET /healthz`, `POST /webhooks/github` and `POST /webhooks/gitlab` (bodies
/// capped at [`BODY_LIMIT`]).
pub fn router(webhooks: Webhooks) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/webhooks/github",
            post(webhooks::github).layer(DefaultBodyLimit::max(BODY_LIMIT)),
        )
        .route(
            "/webhooks/gitlab",
            post(gitlab_hooks::gitlab).layer(DefaultBodyLimit::max(BODY_LIMIT)),
        )
        .with_state(Arc::new(webhooks))
}
