//! mayfly-sim: a fake GitHub and a fake Hetzner Cloud that speak the real wire formats over HTTP,
//! virtual runners that take jobs on the fake servers, a control API, and trace replay.
//!
//! It never imports mayfly's own clients (forge, provider): the fakes are kept honest by
//! third-party clients (the official `hcloud` Python library, PyGithub) and by GitHub's
//! published OpenAPI description.

pub mod clock;
pub mod control;
pub mod github;
pub mod hetzner;
pub mod runners;
pub mod sim;
pub mod stats;
pub mod trace;

pub use sim::{Listening, Sim, SimConfig};
