//! The node directory and what lives in it: the registration (`node.json`), each slot's state
//! (`slots/<n>.json`), the job markers the runner's hooks write (`jobs/`), the hook scripts, the
//! lock prune and job starts share, and the diagnostic state. Every JSON file is written whole
//! (a temporary file renamed over it), so a reader never sees half of one.

use mayfly_provider::local::process::Proc;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `2026-05-01T12:00:00Z` for a time in ms.
pub fn iso(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

#[derive(Clone, Debug)]
pub struct NodeDir(pub PathBuf);

impl NodeDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn settings(&self) -> PathBuf {
        self.0.join("node.json")
    }
    pub fn slot_state(&self, n: u32) -> PathBuf {
        self.0.join("slots").join(format!("{n}.json"))
    }
    pub fn job_marker(&self, n: u32) -> PathBuf {
        self.0.join("jobs").join(format!("slot-{n}.json"))
    }
    pub fn last_job(&self, n: u32) -> PathBuf {
        self.0.join("jobs").join(format!("slot-{n}.last.json"))
    }
    pub fn diagnostic(&self) -> PathBuf {
        self.0.join("diagnostic.json")
    }
    /// Held exclusively by prune and, for a moment, by each job start.
    pub fn lock(&self) -> PathBuf {
        self.0.join("prune.lock")
    }
    pub fn hook(&self, event: &str) -> PathBuf {
        self.0.join("hooks").join(format!("{event}.sh"))
    }
}

/// Reads a JSON file; `None` when it does not exist.
pub fn read<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{} is not valid: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Writes a JSON file whole or not at all.
pub fn write<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_vec_pretty(value)?;
    text.push(b'\n');
    crate::service::write_file(path, &text, 0o644)
}

/// Removes a file; a missing one is fine.
pub fn remove(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot remove {}: {e}", path.display())),
    }
}

/// One runner a slot started: the forge's id and name, and what runs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerRun {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub process: Option<Proc>,
    #[serde(default)]
    pub container: Option<String>,
    pub started_ms: i64,
}

/// How a slot's last runner ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExit {
    pub at_ms: i64,
    pub runner: String,
    /// The runner's last words (run.sh's line for the listener's exit code).
    pub message: String,
    pub ran_job: bool,
}

/// What a slot is doing, written by the slot's own process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotState {
    pub slot: u32,
    /// The slot's own process (`mayfly node slot N`).
    pub process: Option<Proc>,
    /// `starting`, `registering`, `waiting` (for a job, or the forge), `stopping`, `stopped`.
    pub phase: String,
    pub runner: Option<RunnerRun>,
    /// Counts the runners this slot started; the next one's name ends in it.
    pub seq: u64,
    pub last_exit: Option<LastExit>,
    /// Runners that exited at once without a job, in a row: the slot backs off.
    #[serde(default)]
    pub quick_exits: u32,
    /// Registrations the slot could not remove from the forge (it did not answer): tried
    /// again before each runner, and by deregister.
    #[serde(default)]
    pub unremoved: Vec<(u64, String)>,
    pub updated_ms: i64,
}

/// A job the runner's job-started hook announced; moved to `last.json` when it completes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMarker {
    pub slot: u32,
    pub repository: String,
    pub run_id: String,
    pub job: String,
    pub runner: String,
    pub started_ms: i64,
    #[serde(default)]
    pub finished_ms: Option<i64>,
}
