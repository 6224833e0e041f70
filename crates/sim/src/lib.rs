//! mayfly-sim: a fake GitHub, a fake GitLab and a fake Hetzner Cloud that speak the real wire
//! formats over HTTP, virtual runners that take jobs on the fake servers, a control API, and
//! trace replay.
//!
//! It never imports mayfly's own clients (forge, provider): the fakes are kept honest by
//! third-party clients (the official `hcloud` Python library, PyGithub, python-gitlab) and by
//! GitHub's published OpenAPI description.

pub mod clock;
pub mod control;
mod control_gitlab;
pub mod github;
pub mod gitlab;
pub mod hetzner;
pub mod moto;
pub mod program;
pub mod runners;
pub mod sim;
pub mod stats;
pub mod trace;

pub use sim::{Addresses, Listening, Sim, SimConfig};

use std::net::SocketAddr;

/// Serves `app` on a free loopback port until the runtime shuts down; returns the address.
/// For tests and benchmarks that want one fake, or a stand-in of their own, on the network.
pub async fn serve_local(app: axum::Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, %addr, "local server stopped");
        }
    });
    Ok(addr)
}
