//! The fake Hetzner Cloud API (/v1 subset) with its billing ledger.
//! Speaks the real wire format (the official `hcloud` client is the judge) in simulated time.

mod billing;
pub mod catalog;
mod config;
mod errors;
mod labels;
mod offer;
mod query;
mod ratelimit;
mod render;
mod routes;
mod servers;
mod ssh_keys;
mod state;

pub use billing::{BillingReport, BillingRow};
pub use config::{DeprecationFault, HetznerConfig};

use crate::clock::Clock;
use crate::runners::{Machine, MachineSource};
use crate::stats::Stats;
use serde::Serialize;
use state::{State, Status};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// One project of the fake cloud. Every read computes statuses from the clock, so it needs no
/// background task and can be shared freely.
pub struct Hetzner {
    state: Mutex<State>,
    clock: Clock,
    stats: Arc<Stats>,
}

/// A server that exists now, for the control API and reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerSummary {
    pub id: u64,
    pub name: String,
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub server_type: String,
    pub location: String,
    pub created_ms: i64,
    /// What the server booted with: tests read the keys a GitLab executor job's machine got.
    pub user_data: String,
}

impl Hetzner {
    pub fn new(config: HetznerConfig, clock: Clock, stats: Arc<Stats>) -> Arc<Hetzner> {
        let state = Mutex::new(State::new(config, clock.now_ms()));
        Arc::new(Hetzner {
            state,
            clock,
            stats,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves `/v1/...`, every call counted as service `hetzner`.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        routes::router(self.clone())
    }

    /// Serves the API on a free loopback port; returns its endpoint (`http://127.0.0.1:PORT/v1`).
    pub async fn serve_local(self: &Arc<Self>) -> std::io::Result<String> {
        let addr = crate::serve_local(self.router()).await?;
        Ok(format!("http://{addr}/v1"))
    }

    pub fn billing(&self) -> BillingReport {
        billing::report(self.lock().ledger.values(), self.clock.now_ms())
    }

    pub fn servers(&self) -> Vec<ServerSummary> {
        let now = self.clock.now_ms();
        self.lock()
            .servers
            .values()
            .map(|s| ServerSummary {
                id: s.id,
                name: s.name.clone(),
                status: s.status_at(now).as_str().to_string(),
                labels: s.labels.clone(),
                server_type: s.server_type.name.to_string(),
                location: s.location.name.to_string(),
                created_ms: s.created_ms,
                user_data: s.user_data.clone(),
            })
            .collect()
    }

    /// Changes knobs at run time (quota, stock, delays, rate limit); existing servers keep the
    /// timelines they were given.
    pub fn set_config(&self, f: impl FnOnce(&mut HetznerConfig)) {
        f(&mut self.lock().config);
    }

    /// Forgets every server, action, SSH key and bill, and refills the request bucket.
    pub fn reset(&self) {
        let now = self.clock.now_ms();
        self.lock().reset(now);
    }
}

impl MachineSource for Hetzner {
    fn running(&self) -> Vec<Machine> {
        let now = self.clock.now_ms();
        self.lock()
            .servers
            .values()
            .filter(|s| s.status_at(now) == Status::Running)
            .map(|s| Machine {
                id: s.id.to_string(),
                name: s.name.clone(),
                user_data: s.user_data.clone(),
                boot: s.boot_at(now),
            })
            .collect()
    }

    fn is_up(&self, id: &str, boot: u64) -> bool {
        let now = self.clock.now_ms();
        id.parse().ok().is_some_and(|id: u64| {
            self.lock()
                .servers
                .get(&id)
                .is_some_and(|s| s.status_at(now) == Status::Running && s.boot_at(now) == boot)
        })
    }

    /// The OS shuts down: stopping, then off after the shutdown delay. No API action, no lock.
    fn power_off(&self, id: &str) {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let delay = state::millis(st.config.shutdown_delay);
        if let Some(s) = id.parse().ok().and_then(|id: u64| st.servers.get_mut(&id))
            && matches!(s.status_at(now), Status::Running | Status::Starting)
        {
            s.transition(now, Status::Stopping, Status::Off, delay);
        }
    }
}
