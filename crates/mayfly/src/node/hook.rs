//! The runner's job hooks (`ACTIONS_RUNNER_HOOK_JOB_STARTED` / `…_COMPLETED`), run by the
//! runner at "Set up runner" and "Complete runner": note the job in the node directory, so
//! prune knows a job runs and doctor can tell each slot's last job.
//!
//! A job start takes the prune lock for the moment it writes its note: while a prune runs, a
//! job waits at its start (a bounded while) instead of running under it.

use super::files::{self, JobMarker, NodeDir, now_ms};
use std::time::{Duration, Instant};

/// The longest a job waits at its start for a prune to finish; then it fails rather than run
/// while Docker data is being removed.
const WAIT_FOR_PRUNE: Duration = Duration::from_secs(3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Event {
    JobStarted,
    JobCompleted,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// Opens the lock file and takes it exclusively within `within`; `None` when it stayed held.
pub fn exclusive(dir: &NodeDir, within: Duration) -> anyhow::Result<Option<std::fs::File>> {
    if let Some(parent) = dir.lock().parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Read-only when it exists: a lock needs no write access, and the file belongs to the
    // node's user while prune may run as root.
    let file = match std::fs::File::open(dir.lock()) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.lock())
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.lock().display()))?,
        Err(e) => return Err(anyhow::anyhow!("cannot open {}: {e}", dir.lock().display())),
    };
    let deadline = Instant::now() + within;
    let mut said = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                if !said {
                    eprintln!(
                        "mayfly: waiting for the node's lock (a prune or a job start holds it)"
                    );
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(anyhow::anyhow!("cannot lock {}: {e}", dir.lock().display()));
            }
        }
    }
}

pub fn run(dir: &NodeDir, event: Event) -> anyhow::Result<()> {
    let slot: u32 = env("MAYFLY_NODE_SLOT").parse().map_err(|_| {
        anyhow::anyhow!("MAYFLY_NODE_SLOT is not set: the hook is run by a node slot's runner")
    })?;
    match event {
        Event::JobStarted => {
            let Some(_lock) = exclusive(dir, WAIT_FOR_PRUNE)? else {
                anyhow::bail!(
                    "a prune held the node's lock for {WAIT_FOR_PRUNE:?}: not starting the job under it"
                );
            };
            let marker = JobMarker {
                slot,
                repository: env("GITHUB_REPOSITORY"),
                run_id: env("GITHUB_RUN_ID"),
                job: env("GITHUB_JOB"),
                runner: env("RUNNER_NAME"),
                started_ms: now_ms(),
                finished_ms: None,
            };
            files::write(&dir.job_marker(slot), &marker)
        }
        Event::JobCompleted => {
            let path = dir.job_marker(slot);
            if let Some(mut m) = files::read::<JobMarker>(&path)? {
                m.finished_ms = Some(now_ms());
                files::write(&dir.last_job(slot), &m)?;
                files::remove(&path)?;
            }
            Ok(())
        }
    }
}
