//! One slot's loop, what `mayfly-node@N.service` runs: register a single-use runner, start it
//! from the slot's runner root, wait for it to take its job and exit, remove it from the forge
//! if it never took one (a crash, a stop), wipe `_work`, and again.
//!
//! On SIGTERM a slot whose runner is running a job lets the job finish (systemd's stop timeout
//! bounds it); an idle runner is stopped at once and removed from the forge. A slot that was
//! killed finds its runner on the next start: busy, it waits for the job; idle, it stops it.

use super::files::{self, JobMarker, LastExit, NodeDir, RunnerRun, SlotState, now_ms};
use super::forge::{ForgeError, NodeForge};
use super::settings::Settings;
use mayfly_core::Secret;
use mayfly_provider::local::docker::{self, Docker};
use mayfly_provider::local::{layout, process};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// How often a running runner is looked at: its process in /proc, or (less often, a CLI call
/// each time) its container.
const TICK: Duration = Duration::from_millis(500);
const CONTAINER_TICK: Duration = Duration::from_secs(5);
/// Grace between SIGTERM and SIGKILL for an idle runner.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// A runner that exits sooner than this without a job counts as a quick exit: the slot backs
/// off, so a broken install or a refused registration does not spin.
const QUICK: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The console of the slot's current runner, in its root.
const CONSOLE: &str = "console.log";

pub struct Slot {
    /// The user the runners run as, when the slot runs as root and they are not to.
    pub run_as: Option<process::RunAs>,
    pub dir: NodeDir,
    pub n: u32,
    pub settings: Settings,
    pub forge: Box<dyn NodeForge>,
    pub state: SlotState,
    pub stop: watch::Receiver<bool>,
    pub docker: Option<Docker>,
}

/// Sleeps `d` unless a stop comes first; `false` when stopped.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        _ = stop.changed() => false,
    }
}

fn backoff(n: u32) -> Duration {
    let secs = 5u64.saturating_mul(1 << n.saturating_sub(1).min(10));
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

impl Slot {
    pub fn root(&self) -> PathBuf {
        self.settings.root(self.n)
    }

    fn container_name(&self) -> String {
        container_name(&self.settings, self.n)
    }

    fn save(&mut self, phase: &str) {
        self.state.phase = phase.to_string();
        self.state.updated_ms = now_ms();
        if let Err(e) = files::write(&self.dir.slot_state(self.n), &self.state) {
            warn!(slot = self.n, error = %e, "cannot write the slot's state");
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// The slot's loop until a stop.
    pub async fn run(mut self) -> anyhow::Result<()> {
        self.state.slot = self.n;
        self.state.process = process::recorded(std::process::id());
        self.save("starting");
        self.prepare()?;
        self.recover().await;
        while !self.stopping() {
            self.once().await;
            if self.state.quick_exits > 0 && !self.stopping() {
                let wait = backoff(self.state.quick_exits);
                warn!(
                    slot = self.n,
                    quick_exits = self.state.quick_exits,
                    wait_secs = wait.as_secs(),
                    "the runner exited without a job: waiting before the next"
                );
                self.save("backing off");
                pause(&mut self.stop, wait).await;
            }
        }
        self.save("stopped");
        info!(slot = self.n, "slot stopped");
        Ok(())
    }

    /// The slot's runner root, made from the installed runner once.
    fn prepare(&self) -> anyhow::Result<()> {
        if self.docker.is_some() {
            std::fs::create_dir_all(self.root())?;
            return Ok(());
        }
        let root = self.root();
        if !layout::has_runner(&root) {
            layout::remove_tree(&root)?;
            layout::prepare(&self.settings.runner_dir, &root).map_err(|e| {
                anyhow::anyhow!(
                    "cannot make the runner root {} from {}: {e}",
                    root.display(),
                    self.settings.runner_dir.display()
                )
            })?;
            if let Some(user) = &self.run_as {
                process::give(&root, user)?;
            }
        }
        Ok(())
    }

    /// A runner left by an earlier life of this slot (killed, or the host rebooted).
    async fn recover(&mut self) {
        let Some(run) = self.state.runner.clone() else {
            return;
        };
        if self.alive(&run).await && self.job_running(&run).await {
            info!(slot = self.n, runner = %run.name, "a runner from before runs a job: letting it finish");
            self.save("finishing a job started before a restart");
            while self.alive(&run).await {
                tokio::time::sleep(TICK).await;
            }
        }
        self.finish(&run, false).await;
    }

    /// Removes registrations an earlier finish could not (the forge did not answer).
    async fn retry_removals(&mut self) {
        let mut still = Vec::new();
        for (id, name) in std::mem::take(&mut self.state.unremoved) {
            match self.forge.remove(id).await {
                Ok(()) => info!(slot = self.n, runner = %name, "removed a runner left from before"),
                Err(ForgeError::Busy) => {}
                Err(_) => still.push((id, name)),
            }
        }
        self.state.unremoved = still;
    }

    /// One runner's life.
    async fn once(&mut self) {
        if !self.state.unremoved.is_empty() {
            self.retry_removals().await;
        }
        if let Err(e) = layout::wipe(&self.root()) {
            warn!(slot = self.n, error = %e, "cannot wipe the runner root");
        }
        self.state.seq += 1;
        let name = format!("{}-{}-{}", self.settings.name, self.n, self.state.seq);
        self.save("registering");
        let Some((id, jit)) = self.register(&name).await else {
            return;
        };
        let mut run = RunnerRun {
            id,
            name: name.clone(),
            process: None,
            container: None,
            started_ms: now_ms(),
        };
        self.state.runner = Some(run.clone());
        self.save("starting its runner");
        match self.start(&run, &jit).await {
            Ok(started) => run = started,
            Err(e) => {
                warn!(slot = self.n, runner = %name, error = %e, "cannot start the runner");
                self.finish(&run, false).await;
                self.state.quick_exits += 1;
                return;
            }
        }
        self.state.runner = Some(run.clone());
        self.save("waiting for a job");
        info!(slot = self.n, runner = %name, id, "runner started");
        let mut stopped = false;
        while self.alive(&run).await {
            if self.stopping() && !stopped {
                if self.job_running(&run).await {
                    self.save("finishing its job before stopping");
                } else {
                    info!(slot = self.n, runner = %name, "stopping an idle runner");
                    self.kill(&run).await;
                    stopped = true;
                    continue;
                }
            }
            let mut stop = self.stop.clone();
            let tick = if self.docker.is_some() {
                CONTAINER_TICK
            } else {
                TICK
            };
            pause(&mut stop, tick).await;
        }
        self.finish(&run, stopped).await;
    }

    /// A JIT registration, tried until it works or the slot stops; a runner of the same name
    /// (left by a crash) is removed first.
    async fn register(&mut self, name: &str) -> Option<(u64, Secret)> {
        let mut failures = 0;
        loop {
            if self.stopping() {
                return None;
            }
            match self.forge.register(name, &self.settings.labels).await {
                Ok(r) => return Some(r),
                Err(ForgeError::Conflict(_)) => {
                    match self.forge.runners_named(name).await {
                        Ok(list) => {
                            for r in list.iter().filter(|r| r.name == name) {
                                if r.busy {
                                    warn!(
                                        slot = self.n,
                                        runner = name,
                                        "a busy runner has this slot's next name: is another host registered as this node?"
                                    );
                                } else {
                                    let _ = self.forge.remove(r.id).await;
                                }
                            }
                        }
                        Err(e) => warn!(slot = self.n, error = %e, "cannot list runners"),
                    }
                    failures += 1;
                }
                Err(e) => {
                    failures += 1;
                    warn!(slot = self.n, runner = name, error = %e, "cannot register a runner; trying again");
                }
            }
            if failures > 3 {
                self.save("waiting for the forge");
            }
            let mut stop = self.stop.clone();
            if !pause(&mut stop, backoff(failures)).await {
                return None;
            }
        }
    }

    /// The hooks' variables, the slot's number, and the runner's minimal environment.
    fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "ACTIONS_RUNNER_HOOK_JOB_STARTED".into(),
                self.dir.hook("job-started").display().to_string(),
            ),
            (
                "ACTIONS_RUNNER_HOOK_JOB_COMPLETED".into(),
                self.dir.hook("job-completed").display().to_string(),
            ),
            ("MAYFLY_NODE_SLOT".into(), self.n.to_string()),
        ]
    }

    async fn start(&self, run: &RunnerRun, jit: &Secret) -> anyhow::Result<RunnerRun> {
        let mut run = run.clone();
        match &self.docker {
            Some(d) => {
                let name = self.container_name();
                let _ = d.remove(&name).await;
                let command = self
                    .forge
                    .runner_command(&self.settings.runner_dir.join("run.sh"), jit);
                let args = container_args(&self.settings, self.n, &command);
                let secret_at = args.len() - 1;
                d.exec(&args, &[secret_at]).await?;
                run.container = Some(name);
            }
            None => {
                let root = self.root();
                let console = root.join(CONSOLE);
                std::fs::File::create(&console)?;
                let mut words = self.forge.runner_command(&root.join("run.sh"), jit);
                let program = PathBuf::from(words.remove(0));
                let cmd = process::Command {
                    program,
                    args: words,
                    cwd: root.clone(),
                    env: process::environment(&self.env(), &process::marker_of(&root)),
                    log: console,
                    run_as: self.run_as.clone(),
                };
                let (mut child, proc) = process::spawn(&cmd)?;
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
                run.process = Some(proc);
            }
        }
        Ok(run)
    }

    /// Whether the runner (or anything it started) still runs.
    async fn alive(&self, run: &RunnerRun) -> bool {
        match (&self.docker, &run.container) {
            (Some(d), Some(name)) => d
                .ps(&[format!("{NODE_LABEL}={}", self.settings.name)])
                .await
                .map(|list| list.iter().any(|c| &c.name == name && c.state == "running"))
                .unwrap_or(true),
            _ => {
                run.process.as_ref().is_some_and(process::alive)
                    || !process::marked(&process::marker_of(&self.root())).is_empty()
            }
        }
    }

    /// Whether the runner runs a job: its job-started hook wrote the marker, or (in a
    /// container, where the hooks cannot reach the host) the forge says it is busy.
    async fn job_running(&self, run: &RunnerRun) -> bool {
        let marked = files::read::<JobMarker>(&self.dir.job_marker(self.n))
            .ok()
            .flatten()
            .is_some_and(|m| m.runner == run.name);
        if marked || self.docker.is_none() {
            return marked;
        }
        matches!(self.forge.runner(run.id).await, Ok(Some(r)) if r.busy)
    }

    async fn kill(&self, run: &RunnerRun) {
        match (&self.docker, &run.container) {
            (Some(d), Some(name)) => {
                if let Err(e) = d.remove(name).await {
                    warn!(slot = self.n, error = %e, "cannot remove the runner's container");
                }
            }
            _ => {
                let marker = process::marker_of(&self.root());
                if !process::stop(run.process.as_ref(), &marker, STOP_GRACE).await {
                    warn!(slot = self.n, runner = %run.name, "processes of the runner survive SIGKILL");
                }
            }
        }
    }

    /// After a runner's end: what it said, the job it ran, its registration removed if it
    /// never took a job, the root wiped.
    async fn finish(&mut self, run: &RunnerRun, stopped: bool) {
        if self.alive(run).await {
            self.kill(run).await;
        }
        if let (Some(d), Some(name)) = (&self.docker, &run.container) {
            let _ = d.remove(name).await;
        }
        let marker = self.dir.job_marker(self.n);
        let mut ran_job = false;
        if let Ok(Some(mut m)) = files::read::<JobMarker>(&marker)
            && m.runner == run.name
        {
            // The job-completed hook did not run (the runner was killed): the job ends here.
            m.finished_ms.get_or_insert(now_ms());
            let _ = files::write(&self.dir.last_job(self.n), &m);
            let _ = files::remove(&marker);
            ran_job = true;
        }
        if let Ok(Some(last)) = files::read::<JobMarker>(&self.dir.last_job(self.n)) {
            ran_job |= last.runner == run.name;
        }
        // A registration that outlives its runner never took a job: remove it by id.
        match self.forge.runner(run.id).await {
            Ok(Some(r)) if r.busy => {
                warn!(slot = self.n, runner = %run.name, "the forge still shows the runner busy")
            }
            Ok(Some(_)) => match self.forge.remove(run.id).await {
                Ok(()) => {
                    info!(slot = self.n, runner = %run.name, "removed the runner that took no job")
                }
                Err(e) => {
                    warn!(slot = self.n, runner = %run.name, error = %e, "cannot remove the runner");
                    self.state.unremoved.push((run.id, run.name.clone()));
                }
            },
            Ok(None) => {}
            Err(e) => {
                warn!(slot = self.n, runner = %run.name, error = %e, "cannot ask the forge about the runner");
                self.state.unremoved.push((run.id, run.name.clone()));
            }
        }
        let message = if stopped {
            "stopped by mayfly (the slot was stopping)".to_string()
        } else {
            last_words(&self.root())
        };
        let lived = Duration::from_millis(u64::try_from(now_ms() - run.started_ms).unwrap_or(0));
        self.state.quick_exits = if !ran_job && !stopped && lived < QUICK {
            self.state.quick_exits + 1
        } else {
            0
        };
        info!(slot = self.n, runner = %run.name, ran_job, %message, "runner ended");
        self.state.last_exit = Some(LastExit {
            at_ms: now_ms(),
            runner: run.name.clone(),
            message,
            ran_job,
        });
        self.state.runner = None;
        if let Err(e) = layout::wipe(&self.root()) {
            warn!(slot = self.n, error = %e, "cannot wipe the runner root");
        }
        self.save("between runners");
    }
}

/// The label every container of a node carries (`mayfly-node=<name>`).
pub const NODE_LABEL: &str = "mayfly-node";

fn container_name(settings: &Settings, n: u32) -> String {
    format!("mayfly-node-{}-{n}", settings.name)
}

/// `docker run` of slot `n`'s runner container: labelled with the node and the slot, the
/// runner's `command` (its JIT config last) in the node's image.
pub fn container_args(settings: &Settings, n: u32, command: &[String]) -> Vec<String> {
    let slot = n.to_string();
    let labels = [
        (NODE_LABEL, settings.name.as_str()),
        ("mayfly-slot", slot.as_str()),
    ];
    let env = vec![("MAYFLY_NODE_SLOT".to_string(), slot.clone())];
    let image = settings.docker_image.clone().unwrap_or_default();
    docker::run_args(&container_name(settings, n), &labels, &env, &image, command)
}

/// What the runner said last about why it ended: run.sh's line for the listener's exit code.
pub fn last_words(root: &Path) -> String {
    let text = std::fs::read_to_string(root.join(CONSOLE)).unwrap_or_default();
    text.lines()
        .rev()
        .find(|l| {
            l.contains("Runner listener exit")
                || l.contains("Exiting with unknown error code")
                || l.contains("Must not run")
                || l.contains("An error occurred")
        })
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| "the runner exited".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_docker_slot_runs_the_documented_command_in_a_labelled_container() {
        let settings = Settings {
            forge: "github".into(),
            name: "ci".into(),
            scope: super::super::settings::Scope::Organization("acme".into()),
            labels: vec!["self-hosted".into()],
            runner_group: None,
            slots: 2,
            runner_dir: "/home/runner".into(),
            work_dir: "/var/lib/mayfly/node/slots".into(),
            user: "runner".into(),
            docker: true,
            docker_image: Some("ghcr.io/actions/actions-runner:2.338.0".into()),
            stop_timeout_secs: 60,
            prune_older_than_secs: 60,
            prune_timer: false,
            prune_wait_secs: 60,
            config_file: None,
            mayfly: "/usr/local/bin/mayfly".into(),
        };
        let command = mayfly_provider::local::Local::runner_command(
            Path::new("/home/runner/run.sh"),
            &Secret::new("JIT"),
        );
        assert_eq!(
            container_args(&settings, 2, &command).join(" "),
            "run --detach --name mayfly-node-ci-2 --label mayfly-node=ci --label mayfly-slot=2 \
             --env MAYFLY_NODE_SLOT=2 ghcr.io/actions/actions-runner:2.338.0 \
             /home/runner/run.sh --jitconfig JIT"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    #[test]
    fn the_last_words_are_run_sh_s_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONSOLE),
            "√ Connected to GitHub\nRunner listener exit with terminated error, stop the service, no retry needed.\nExiting runner...\n",
        )
        .unwrap();
        assert!(last_words(dir.path()).contains("terminated error"));
        assert_eq!(last_words(Path::new("/nonexistent")), "the runner exited");
    }
}
