//! This host as a provider: an instance is one runner process (or Docker container) started with
//! its single-use credential in a runner root of its own under `work_dir`, and removed with that
//! root once its job is done. `slots` caps how many run at once. Free: never worth keeping.
//!
//! Everything a restarted mayfly needs is on disk: each root holds a record (controller, pool,
//! the process by pid and start time, or the container by name), so instances are listed by
//! reading `work_dir`, their processes recognised without ever signalling a reused pid, and
//! what a crash cut short (a root half made, half removed, a container without a root) is
//! cleaned when the provider starts.

mod config;
pub mod docker;
pub mod layout;
pub mod process;
mod record;

pub use config::{ConfigError, LocalConfig};
pub use record::Record;

use crate::bootstrap::Credential;
use crate::{CreateRequest, Error, Provider, Result, tags};
use async_trait::async_trait;
use docker::{Container, Docker, DockerError};
use mayfly_core::{Billing, Image, Instance, InstanceState, Labels, Placement, Secret, Time};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

pub const KIND: &str = "local";
/// The machine type of a process instance and of a container instance, when the pool's spec
/// names none.
pub const PROCESS: &str = "process";
pub const CONTAINER: &str = "container";
/// The location of every local instance when the spec names none.
pub const LOCATION: &str = "local";
/// The label (and tag) naming the work directory a container belongs to.
pub const WORK_DIR_LABEL: &str = "mayfly-local";
/// Where a container's console goes: the root's `runner.log` for a process.
const CONSOLE_LOG: &str = "runner.log";
const STAGING: &str = ".staging-";
const DELETING: &str = ".deleting-";
/// Creates and deletes hold it shared while a root is half made or half removed; the sweep of
/// leftovers runs only when it gets it exclusively, so it never takes a root in the making of
/// another process on the same work directory (a second controller, `mayfly status`).
const LOCK: &str = ".lock";

/// Local runners cost nothing by the hour, and a stopped one is worth nothing: the planner
/// never keeps one for recycling.
pub fn billing() -> Billing {
    Billing {
        price_per_hour: 0.0,
        granularity: Duration::from_secs(1),
        minimum: Duration::ZERO,
        billed_while_stopped: false,
    }
}

pub struct Local {
    config: LocalConfig,
    docker: Option<Docker>,
    /// The user runners run as, when not mayfly's own.
    run_as: Option<process::RunAs>,
    /// Creates one at a time: the slot count and the name check must not race.
    creating: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("work_dir", &self.config.work_dir)
            .field("slots", &self.config.slots)
            .field("docker", &self.docker.is_some())
            .finish()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A suffix that keeps two temporary names apart.
fn unique() -> String {
    format!("{}-{}", std::process::id(), now_ms())
}

fn docker_error(e: DockerError) -> Error {
    match e {
        DockerError::Timeout { .. } | DockerError::Missing { .. } => {
            Error::Transport(e.to_string())
        }
        DockerError::Failed { command, stderr } => Error::Api {
            status: 500,
            code: "docker".into(),
            message: format!("docker {command}: {stderr}"),
        },
    }
}

fn io_error(what: &str, e: std::io::Error) -> Error {
    Error::Api {
        status: 500,
        code: "io".into(),
        message: format!("{what}: {e}"),
    }
}

/// Instance names become directory and container names: plain, no path, not hidden.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            message: format!("instance name {name:?} cannot name a directory"),
        })
    }
}

impl Local {
    /// Checks the configuration and the host (the runner installed, the work directory
    /// writable, the Docker daemon answering when asked for), then cleans what an earlier
    /// process left half done.
    pub async fn new(config: LocalConfig) -> std::result::Result<Local, ConfigError> {
        config.validate()?;
        if !config.docker && !layout::has_runner(&config.runner_dir) {
            return Err(ConfigError::NoRunner(
                config.runner_dir.display().to_string(),
            ));
        }
        std::fs::create_dir_all(&config.work_dir).map_err(|e| {
            ConfigError::WorkDir(format!("cannot create {}: {e}", config.work_dir.display()))
        })?;
        let docker = if config.docker {
            let d = Docker::new(config.docker_binary.clone(), Duration::from_secs(60));
            d.server_version()
                .await
                .map_err(|e| ConfigError::NoDocker(e.to_string()))?;
            Some(d)
        } else {
            None
        };
        let root = rustix::process::geteuid().is_root();
        let run_as = match &config.runner_user {
            Some(_) if !root => {
                return Err(ConfigError::RunnerUser(
                    "starting runners as another user needs mayfly to run as root".into(),
                ));
            }
            Some(name) => {
                Some(process::account(name).map_err(|e| ConfigError::RunnerUser(e.to_string()))?)
            }
            None => None,
        };
        if docker.is_none() && run_as.is_none() {
            if root {
                warn!(
                    "local provider: runners and their jobs run as root; set runner_user to run \
                     them as an unprivileged user"
                );
            } else {
                warn!(
                    "local provider: runners run as mayfly's own user, so their jobs could read \
                     mayfly's environment and files (its tokens); for jobs you do not trust, run \
                     mayfly as root with runner_user"
                );
            }
        }
        let local = Local {
            config,
            docker,
            run_as,
            creating: tokio::sync::Mutex::new(()),
        };
        local.sweep().await;
        Ok(local)
    }

    pub fn config(&self) -> &LocalConfig {
        &self.config
    }

    fn root(&self, name: &str) -> PathBuf {
        self.config.work_dir.join(name)
    }

    /// The work directory's lock file, held shared for as long as the handle lives; waits (a
    /// bounded while) for a sweep to finish.
    async fn shared_lock(&self) -> Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.config.work_dir.join(LOCK))
            .map_err(|e| io_error("cannot open the work_dir lock", e))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match file.try_lock_shared() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock)
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked),
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(io_error("cannot lock the work_dir", e));
                }
            }
        }
    }

    /// Removes roots a crash left half made or half removed, and containers of this work
    /// directory whose root is gone. Only when no other process is making or removing a root.
    async fn sweep(&self) {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.config.work_dir.join(LOCK));
        let Ok(lock) = lock else { return };
        if lock.try_lock().is_err() {
            info!("local: another process works in work_dir; leftovers are left to it");
            return;
        }
        if let Ok(entries) = std::fs::read_dir(&self.config.work_dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(STAGING) || name.starts_with(DELETING) {
                    match layout::remove_tree(&e.path()) {
                        Ok(()) => info!(dir = %e.path().display(), "removed a leftover of a crash"),
                        Err(err) => {
                            warn!(dir = %e.path().display(), error = %err, "cannot remove a leftover")
                        }
                    }
                }
            }
        }
        if let Some(d) = &self.docker {
            let filter = format!("{WORK_DIR_LABEL}={}", self.config.work_dir.display());
            match d.ps(&[filter]).await {
                Ok(list) => {
                    for c in list {
                        if !self.root(&c.name).exists() {
                            match d.remove(&c.name).await {
                                Ok(()) => {
                                    info!(container = %c.name, "removed a container without an instance")
                                }
                                Err(e) => {
                                    warn!(container = %c.name, error = %e, "cannot remove a container")
                                }
                            }
                        }
                    }
                }
                Err(e) => warn!(error = %e, "cannot list this work directory's containers"),
            }
        }
    }

    fn placement(&self, req: &CreateRequest) -> Placement {
        let default_type = if self.docker.is_some() {
            CONTAINER
        } else {
            PROCESS
        };
        Placement {
            machine_type: req
                .spec
                .types
                .first()
                .cloned()
                .unwrap_or_else(|| default_type.into()),
            location: req
                .spec
                .locations
                .first()
                .cloned()
                .unwrap_or_else(|| LOCATION.into()),
            image: req.spec.image.clone(),
        }
    }

    /// The containers of this work directory by name, in Docker mode (one call).
    async fn containers(&self) -> Result<Option<HashMap<String, Container>>> {
        let Some(d) = &self.docker else {
            return Ok(None);
        };
        let filter = format!("{WORK_DIR_LABEL}={}", self.config.work_dir.display());
        let list = d.ps(&[filter]).await.map_err(docker_error)?;
        Ok(Some(
            list.into_iter().map(|c| (c.name.clone(), c)).collect(),
        ))
    }

    /// What an instance is doing, from the containers of one `docker ps` or the processes of
    /// one pass over `/proc` (`marked`).
    fn state_of(
        &self,
        root: &Path,
        rec: &Record,
        containers: Option<&HashMap<String, Container>>,
        marked: &HashMap<String, Vec<process::Proc>>,
    ) -> InstanceState {
        if let Some(all) = containers {
            return match all.get(&rec.name).map(|c| c.state.as_str()) {
                Some("running" | "restarting" | "paused") => InstanceState::Running,
                Some("created") => InstanceState::Starting,
                Some("removing") => InstanceState::Deleting,
                _ => InstanceState::Off,
            };
        }
        let leader = rec.process.as_ref().is_some_and(process::alive);
        if leader || marked.contains_key(&process::marker_of(root)) {
            InstanceState::Running
        } else {
            InstanceState::Off
        }
    }

    fn instance(&self, rec: &Record, state: InstanceState) -> Instance {
        let created_at = Time::from_millis(rec.created_ms);
        Instance {
            name: rec.name.clone(),
            provider_id: Some(rec.name.clone()),
            controller: Some(rec.controller.clone()),
            pool: rec.pool.clone(),
            state,
            created_at,
            state_since: created_at,
            labels: Labels::default(),
            placement: Some(rec.placement.clone()),
            job: None,
            run_id: None,
            billing: Some(billing()),
            address: None,
        }
    }

    /// Every instance root with its record, whoever's controller: the host's slots are shared.
    fn records(&self) -> Result<Vec<(PathBuf, Record)>> {
        let entries = match std::fs::read_dir(&self.config.work_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("cannot read work_dir", e)),
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let root = e.path();
            match record::read(&root) {
                Ok(Some(rec)) => out.push((root, rec)),
                Ok(None) => {}
                Err(err) => {
                    warn!(root = %root.display(), error = %err, "an unreadable instance record");
                }
            }
        }
        Ok(out)
    }

    /// The processes of instances, in process mode (one pass over `/proc`).
    fn marked(&self) -> HashMap<String, Vec<process::Proc>> {
        if self.docker.is_some() {
            HashMap::new()
        } else {
            process::all_marked()
        }
    }

    /// How many instances occupy a slot now (their runner has not exited).
    async fn live(&self) -> Result<usize> {
        let containers = self.containers().await?;
        let marked = self.marked();
        Ok(self
            .records()?
            .iter()
            .filter(|(root, rec)| {
                !matches!(
                    self.state_of(root, rec, containers.as_ref(), &marked),
                    InstanceState::Off
                )
            })
            .count())
    }

    /// The command that starts the runner with `jit` in `root`: `run.sh --jitconfig <config>`,
    /// the documented way to start a just-in-time runner.
    pub fn runner_command(run_sh: &Path, jit: &Secret) -> Vec<String> {
        vec![
            run_sh.display().to_string(),
            "--jitconfig".into(),
            jit.expose().to_string(),
        ]
    }

    async fn start(&self, root: &Path, rec: &mut Record, jit: &Secret) -> Result<()> {
        match &self.docker {
            Some(d) => {
                let image = self.config.docker_image.clone().unwrap_or_default();
                let command = Self::runner_command(&self.config.runner_dir.join("run.sh"), jit);
                let work_dir = self.config.work_dir.display().to_string();
                let labels = [
                    (tags::CONTROLLER, rec.controller.as_str()),
                    (tags::POOL, rec.pool.as_str()),
                    (WORK_DIR_LABEL, work_dir.as_str()),
                ];
                let env = self.config.env.clone();
                let args = docker::run_args(&rec.name, &labels, &env, &image, &command);
                let secret_at = args.len() - 1;
                d.exec(&args, &[secret_at]).await.map_err(docker_error)?;
                Ok(())
            }
            None => {
                let mut words = Self::runner_command(&root.join("run.sh"), jit);
                let program = PathBuf::from(words.remove(0));
                let cmd = process::Command {
                    program,
                    args: words,
                    cwd: root.to_path_buf(),
                    env: process::environment(&self.config.env, &process::marker_of(root)),
                    log: root.join(CONSOLE_LOG),
                    run_as: self.run_as.clone(),
                };
                let (mut child, proc) = process::spawn(&cmd).map_err(|e| Error::Invalid {
                    message: format!("cannot start {}: {e}", cmd.program.display()),
                })?;
                tokio::spawn(async move {
                    // Reaps the runner when it exits; a restarted mayfly is no longer its parent
                    // and reads its state from /proc instead.
                    let _ = child.wait().await;
                });
                rec.process = Some(proc);
                record::write(root, rec).map_err(|e| io_error("cannot record the runner", e))
            }
        }
    }
}

#[async_trait]
impl Provider for Local {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn create(&self, req: &CreateRequest) -> Result<Instance> {
        check_name(&req.name)?;
        let jit = match &req.credential {
            Credential::Jit(j) => j.clone(),
            Credential::Token { .. } => {
                return Err(Error::Invalid {
                    message: "the local provider starts runners with JIT configs; set \
                              github.registration = \"jit\""
                        .into(),
                });
            }
            Credential::Gitlab { .. } | Credential::Ssh { .. } => {
                return Err(Error::Invalid {
                    message: "the local provider starts GitHub Actions runners only; serve \
                              GitLab jobs from a cloud provider"
                        .into(),
                });
            }
        };
        let _one_at_a_time = self.creating.lock().await;
        let _shared = self.shared_lock().await?;
        let root = self.root(&req.name);
        if std::fs::symlink_metadata(&root).is_ok() {
            return Err(Error::AlreadyExists);
        }
        let live = self.live().await?;
        if live >= self.config.slots as usize {
            return Err(Error::Quota {
                message: format!("all {} slots of this host run a runner", self.config.slots),
            });
        }
        let mut rec = Record {
            name: req.name.clone(),
            controller: req.controller.clone(),
            pool: req.pool.clone(),
            created_ms: now_ms(),
            placement: self.placement(req),
            process: None,
            container: self.docker.is_some().then(|| req.name.clone()),
        };
        let staging = self
            .config
            .work_dir
            .join(format!("{STAGING}{}-{}", req.name, unique()));
        let made = if self.docker.is_some() {
            std::fs::create_dir(&staging)
        } else {
            layout::prepare(&self.config.runner_dir, &staging).and_then(|()| match &self.run_as {
                Some(user) => process::give(&staging, user),
                None => Ok(()),
            })
        }
        .and_then(|()| record::write(&staging, &rec))
        .and_then(|()| std::fs::rename(&staging, &root));
        if let Err(e) = made {
            let _ = layout::remove_tree(&staging);
            if root.exists() {
                return Err(Error::AlreadyExists);
            }
            return Err(io_error("cannot make the runner root", e));
        }
        if let Err(e) = self.start(&root, &mut rec, &jit).await {
            // Nothing runs: the root goes again, so a retry starts from scratch.
            if let Some(d) = &self.docker {
                let _ = d.remove(&req.name).await;
            }
            let _ = layout::remove_tree(&root);
            return Err(e);
        }
        info!(instance = %req.name, root = %root.display(), docker = self.docker.is_some(), "local runner started");
        Ok(self.instance(&rec, InstanceState::Running))
    }

    async fn list(&self, controller: &str) -> Result<Vec<Instance>> {
        let containers = self.containers().await?;
        let marked = self.marked();
        Ok(self
            .records()?
            .into_iter()
            .filter(|(_, rec)| rec.controller == controller)
            .map(|(root, rec)| {
                let state = self.state_of(&root, &rec, containers.as_ref(), &marked);
                self.instance(&rec, state)
            })
            .collect())
    }

    async fn get(&self, id: &str) -> Result<Instance> {
        check_name(id).map_err(|_| Error::NotFound)?;
        let root = self.root(id);
        let rec = record::read(&root)
            .map_err(|e| io_error("cannot read the instance record", e))?
            .ok_or(Error::NotFound)?;
        let containers = self.containers().await?;
        let state = self.state_of(&root, &rec, containers.as_ref(), &self.marked());
        Ok(self.instance(&rec, state))
    }

    /// A runner process cannot be paused and resumed with a new credential: the instance runs
    /// its one runner until it exits or is deleted.
    async fn power_off(&self, _id: &str) -> Result<()> {
        Err(Error::Unsupported {
            operation: "power off",
        })
    }

    async fn power_on(&self, _id: &str) -> Result<()> {
        Err(Error::Unsupported {
            operation: "power on",
        })
    }

    async fn rebuild(&self, _id: &str, _image: &Image, _user_data: &Secret) -> Result<()> {
        Err(Error::Unsupported {
            operation: "rebuild",
        })
    }

    async fn delete(&self, id: &str) -> Result<()> {
        check_name(id).map_err(|_| Error::NotFound)?;
        let root = self.root(id);
        let rec = match record::read(&root) {
            Ok(Some(rec)) => rec,
            Ok(None) => return Ok(()),
            Err(e) => return Err(io_error("cannot read the instance record", e)),
        };
        match &self.docker {
            Some(d) => d.remove(&rec.name).await.map_err(docker_error)?,
            None => {
                let marker = process::marker_of(&root);
                if !process::stop(rec.process.as_ref(), &marker, self.config.stop_timeout()).await {
                    return Err(Error::Locked);
                }
            }
        }
        // Out of the listing first, in one step; then the files, however long that takes.
        let _shared = self.shared_lock().await?;
        let doomed = self
            .config
            .work_dir
            .join(format!("{DELETING}{id}-{}", unique()));
        match std::fs::rename(&root, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("cannot remove the runner root", e)),
        }
        layout::remove_tree(&doomed).map_err(|e| io_error("cannot remove the runner root", e))?;
        info!(instance = %id, "local runner removed");
        Ok(())
    }

    async fn billing(&self, _placement: &Placement) -> Result<Billing> {
        Ok(billing())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_plain_directory_names_are_refused() {
        assert!(check_name("mf-linux-7-1").is_ok());
        for bad in ["", "../x", ".hidden", "a/b", "-x"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn local_runners_are_free_and_never_kept() {
        let b = billing();
        assert_eq!(b.price_per_hour, 0.0);
        assert!(!b.billed_while_stopped);
    }
}
