//! mayfly's engine, built from typed configuration: the reconciler (`reconcile`), demand from
//! the forges (`demand` for GitHub, `gitlab_demand`), what a pass saw (`view`), the metrics,
//! the HTTP router (webhooks, the API, the dashboard), the leader lease and retention. It knows
//! forges only through `mayfly_forge::Forge` and clouds only through `mayfly_provider::Provider`;
//! the binary (`mayfly`) keeps the front-end: the CLI, TOML parsing, the operator commands,
//! the service, the cloud set-up and the demo.

pub mod control_loop;
pub mod demand;
pub mod escape;
pub mod gitlab_demand;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod retention;
pub mod sample;
pub mod trust;
pub mod view;
