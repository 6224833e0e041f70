//! What the fake remembers: servers, actions, SSH keys, the billing ledger, the request bucket.
//! Status is computed from recorded transition times on each read, so no task has to tick.

use super::billing::LedgerRow;
use super::catalog::{Image, Location, ServerType};
use super::config::HetznerConfig;
use super::ratelimit::Bucket;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Initializing,
    Starting,
    Running,
    Stopping,
    Off,
    Rebuilding,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Initializing => "initializing",
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Stopping => "stopping",
            Status::Off => "off",
            Status::Rebuilding => "rebuilding",
        }
    }
}

/// Every status the API may report; a list filter naming anything else is invalid input.
pub const STATUSES: &[&str] = &[
    "initializing",
    "starting",
    "running",
    "stopping",
    "off",
    "deleting",
    "migrating",
    "rebuilding",
    "unknown",
];

pub struct Server {
    pub id: u64,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub server_type: &'static ServerType,
    pub location: &'static Location,
    pub image: &'static Image,
    pub user_data: String,
    pub ipv4: bool,
    pub ipv6: bool,
    pub created_ms: i64,
    /// The power timeline: `during` until `until_ms`, then `then`.
    during: Status,
    then: Status,
    until_ms: i64,
    /// Transitions into running before the current timeline.
    boots: u64,
    /// The end of the last action started on it: until then it is `locked`.
    pub busy_until_ms: i64,
}

impl Server {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        name: String,
        labels: BTreeMap<String, String>,
        (server_type, location, image): (&'static ServerType, &'static Location, &'static Image),
        user_data: String,
        (ipv4, ipv6): (bool, bool),
        now_ms: i64,
        (start, boot_ms): (bool, i64),
    ) -> Server {
        let then = if start { Status::Running } else { Status::Off };
        Server {
            id,
            name,
            labels,
            server_type,
            location,
            image,
            user_data,
            ipv4,
            ipv6,
            created_ms: now_ms,
            during: Status::Initializing,
            then,
            until_ms: now_ms + boot_ms,
            boots: 0,
            busy_until_ms: now_ms,
        }
    }

    pub fn status_at(&self, now_ms: i64) -> Status {
        if now_ms >= self.until_ms {
            self.then
        } else {
            self.during
        }
    }

    /// Counts every transition into running: a virtual runner starts afresh on each boot.
    pub fn boot_at(&self, now_ms: i64) -> u64 {
        let entered = self.then == Status::Running
            && self.during != Status::Running
            && now_ms >= self.until_ms;
        self.boots + u64::from(entered)
    }

    /// Starts a new timeline from now: `during` for `delay_ms`, then `then`.
    pub fn transition(&mut self, now_ms: i64, during: Status, then: Status, delay_ms: i64) {
        self.boots = self.boot_at(now_ms);
        self.during = during;
        self.then = then;
        self.until_ms = now_ms + delay_ms.max(0);
    }
}

pub struct Action {
    pub id: u64,
    pub command: &'static str,
    pub server: u64,
    pub started_ms: i64,
    pub finished_ms: i64,
}

impl Action {
    pub fn running_at(&self, now_ms: i64) -> bool {
        now_ms < self.finished_ms
    }
}

pub struct SshKey {
    pub id: u64,
    pub name: String,
    pub fingerprint: String,
    pub public_key: String,
    pub labels: BTreeMap<String, String>,
    pub created_ms: i64,
}

pub struct State {
    pub config: HetznerConfig,
    pub servers: BTreeMap<u64, Server>,
    pub actions: BTreeMap<u64, Action>,
    pub ssh_keys: BTreeMap<u64, SshKey>,
    pub ledger: BTreeMap<u64, LedgerRow>,
    pub bucket: Bucket,
    /// Ids keep growing across resets, so a stale id never reaches a new resource.
    next_id: u64,
}

impl State {
    pub fn new(config: HetznerConfig, now_ms: i64) -> State {
        let bucket = Bucket::full(config.rate_limit_per_hour, now_ms);
        State {
            config,
            servers: BTreeMap::new(),
            actions: BTreeMap::new(),
            ssh_keys: BTreeMap::new(),
            ledger: BTreeMap::new(),
            bucket,
            next_id: 1_000_000,
        }
    }

    /// Forgets every resource and refills the bucket; keeps the config and the id counter.
    pub fn reset(&mut self, now_ms: i64) {
        self.servers.clear();
        self.actions.clear();
        self.ssh_keys.clear();
        self.ledger.clear();
        self.bucket = Bucket::full(self.config.rate_limit_per_hour, now_ms);
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Records an action on a server that runs for `duration_ms`; returns its id.
    pub fn action(
        &mut self,
        command: &'static str,
        server: u64,
        now_ms: i64,
        duration_ms: i64,
    ) -> u64 {
        let id = self.next_id();
        if let Some(s) = self.servers.get_mut(&server) {
            s.busy_until_ms = s.busy_until_ms.max(now_ms + duration_ms);
        }
        self.actions.insert(
            id,
            Action {
                id,
                command,
                server,
                started_ms: now_ms,
                finished_ms: now_ms + duration_ms.max(0),
            },
        );
        id
    }

    /// A server with a running action refuses new actions (`locked`).
    pub fn locked(&self, server: u64, now_ms: i64) -> bool {
        self.servers
            .get(&server)
            .is_some_and(|s| s.busy_until_ms > now_ms)
    }
}

pub fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
