//! `mayfly node register`: makes this host a node, idempotently. Each step compares what is
//! with what should be and changes only the difference, so a second run changes nothing, and a
//! host whose units stopped or whose runners the forge forgot is repaired.

use super::diagnostic::Run;
use super::files::{self, NodeDir, SlotState};
use super::forge::{ForgeError, NodeForge};
use super::settings::Settings;
use super::units;
use crate::service::identity::Account;
use crate::service::systemd::{Call, Systemd};
use mayfly_core::Secret;
use mayfly_provider::bootstrap::BootstrapConfig;
use mayfly_provider::bootstrap::install::{self, Installed};
use mayfly_provider::local::{layout, process};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// The download of the runner and its unpacking, each.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

/// Everything register needs from its caller.
pub struct Register<'a> {
    pub dir: &'a NodeDir,
    pub settings: &'a Settings,
    pub previous: Option<Settings>,
    pub owner: &'a Account,
    pub forge: &'a dyn NodeForge,
    pub systemd: &'a Systemd,
    pub env: Vec<(String, Secret)>,
    pub bootstrap: &'a BootstrapConfig,
}

/// Writes `text` to `path` unless it holds it already; whether it wrote.
fn put(path: &Path, text: &str, mode: u32, run: &mut Run) -> anyhow::Result<bool> {
    if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(false);
    }
    crate::service::write_file(path, text.as_bytes(), mode)?;
    run.finding(format!("wrote {}", path.display()));
    Ok(true)
}

fn own(path: &Path, owner: &Account) -> anyhow::Result<()> {
    std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
        .map_err(|e| anyhow::anyhow!("cannot give {} to {}: {e}", path.display(), owner.name))
}

/// A directory owned by the slots' user; made if missing.
fn owned_dir(path: &Path, owner: &Account) -> anyhow::Result<()> {
    std::fs::create_dir_all(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    own(path, owner)
}

impl Register<'_> {
    /// Runs the steps; `Ok(changed)`.
    pub async fn run(&self, run: &mut Run) -> anyhow::Result<bool> {
        let s = self.settings;
        let mut changed = false;
        if let Some(p) = &self.previous
            && (p.name != s.name || p.scope != s.scope || p.forge != s.forge)
        {
            anyhow::bail!(
                "this host is registered as {} in {} already: `mayfly node deregister` first \
                 (a new name or scope would leave the old runners behind)",
                p.name,
                p.scope
            );
        }

        // The forge first: nothing is installed for a node that cannot register runners.
        let known = match self.forge.runners_named(&s.prefix()).await {
            Ok(list) => list,
            Err(ForgeError::Unauthorized) => anyhow::bail!(
                "{}: the credential was refused; check github.token (or the App) in the configuration",
                self.forge.kind()
            ),
            Err(e) => anyhow::bail!(
                "cannot list the runners of {} ({e}); the credential needs the right to manage \
                 self-hosted runners there",
                self.forge.scope()
            ),
        };

        if !s.docker {
            let arch = if super::settings::arch_label() == "arm64" {
                mayfly_core::Arch::Arm
            } else {
                mayfly_core::Arch::X86
            };
            match install::ensure(self.bootstrap, arch, &s.runner_dir, INSTALL_TIMEOUT).await? {
                Installed::Found(d) => run.debug(format!("runner found in {}", d.display())),
                Installed::Downloaded { dir, url } => {
                    run.finding(format!(
                        "installed the runner in {} from {url} (SHA-256 checked)",
                        dir.display()
                    ));
                    changed = true;
                }
            }
        }

        // Directories: the node's, the slots' state and job notes, the runner roots.
        owned_dir(self.dir.path(), self.owner)?;
        for sub in ["slots", "jobs"] {
            owned_dir(&self.dir.path().join(sub), self.owner)?;
        }
        std::fs::create_dir_all(self.dir.path().join("hooks"))?;
        if !self.dir.lock().exists() {
            std::fs::write(self.dir.lock(), b"")?;
        }
        own(&self.dir.lock(), self.owner)?;
        owned_dir(&s.work_dir, self.owner)?;
        for n in 1..=s.slots {
            let root = s.root(n);
            if s.docker || layout::has_runner(&root) {
                continue;
            }
            layout::remove_tree(&root)?;
            layout::prepare(&s.runner_dir, &root)?;
            // The root and its copied scripts (run.sh rewrites run-helper.sh) are the user's;
            // the hard-linked binaries stay as installed.
            own(&root, self.owner)?;
            for e in std::fs::read_dir(&root)?.flatten() {
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    own(&e.path(), self.owner)?;
                }
            }
            run.finding(format!(
                "made the runner root of slot {n}: {}",
                root.display()
            ));
            changed = true;
        }
        for event in ["job-started", "job-completed"] {
            let text = units::hook_script(s, self.dir, event);
            changed |= put(&self.dir.hook(event), &text, 0o755, run)?;
        }
        let _ = std::fs::set_permissions(
            self.dir.path().join("hooks"),
            std::fs::Permissions::from_mode(0o755),
        );
        changed |= put(
            &self.dir.settings(),
            &format!("{}\n", serde_json::to_string_pretty(s)?),
            0o644,
            run,
        )?;

        // Units and the environment file with the secrets.
        let env_file = self.systemd.env_path(units::ENV_NAME);
        let env_text =
            crate::service::unit::env_file(&self.env, false).map_err(anyhow::Error::msg)?;
        let env_changed = put(&env_file, &env_text, 0o600, run)?;
        let template = units::slot_template(s, self.dir, &self.owner.group, &env_file)
            .map_err(anyhow::Error::msg)?;
        let template_changed = put(
            &self.systemd.unit_dir.join(units::SLOT_TEMPLATE),
            &template,
            0o644,
            run,
        )?;
        let mut timer_changed = false;
        if s.prune_timer {
            let (service, timer) =
                units::prune_units(s, self.dir, &env_file).map_err(anyhow::Error::msg)?;
            timer_changed |= put(
                &self.systemd.unit_dir.join(units::PRUNE_SERVICE),
                &service,
                0o644,
                run,
            )?;
            timer_changed |= put(
                &self.systemd.unit_dir.join(units::PRUNE_TIMER),
                &timer,
                0o644,
                run,
            )?;
        } else if self.previous.as_ref().is_some_and(|p| p.prune_timer) {
            self.call(&["disable", "--now", units::PRUNE_TIMER], run)
                .await?;
            for u in [units::PRUNE_TIMER, units::PRUNE_SERVICE] {
                files::remove(&self.systemd.unit_dir.join(u))?;
            }
            run.finding("removed the prune timer");
            timer_changed = true;
        }
        let units_changed = template_changed || timer_changed;
        if units_changed {
            self.call(&["daemon-reload"], run).await?;
        }
        changed |= units_changed || env_changed;

        // Slots the node no longer has.
        if let Some(p) = &self.previous {
            for n in (s.slots + 1)..=p.slots {
                let unit = units::slot_unit(n);
                self.call(&["disable", "--now", &unit], run).await?;
                layout::remove_tree(&s.root(n))?;
                files::remove(&self.dir.slot_state(n))?;
                run.finding(format!("slot {n} removed"));
                changed = true;
            }
        }

        // Each slot running; a changed unit or secret restarts the running ones.
        let mut started = Vec::new();
        for n in 1..=s.slots {
            let unit = units::slot_unit(n);
            let (active, said) = self.is_active(&unit).await;
            if !active {
                self.call(&["enable", "--now", &unit], run).await?;
                let why = if said.is_empty() {
                    "not running".into()
                } else {
                    said
                };
                run.finding(format!("slot {n}: {unit} was {why}; started"));
                started.push(n);
                changed = true;
            } else if template_changed || env_changed {
                self.call(&["restart", &unit], run).await?;
                run.finding(format!("slot {n}: restarted with the new settings"));
                started.push(n);
            }
        }
        if s.prune_timer {
            let (active, _) = self.is_active(units::PRUNE_TIMER).await;
            if !active || timer_changed {
                self.call(&["enable", "--now", units::PRUNE_TIMER], run)
                    .await?;
                run.finding("the daily prune timer is on");
                changed = true;
            }
        }

        // The forge's side: runners of slots that run no more, and slots whose runner the
        // forge forgot (its process waits for a job that can never come).
        let mut owned = Vec::new();
        for n in 1..=s.slots {
            let state: Option<SlotState> = files::read(&self.dir.slot_state(n)).ok().flatten();
            let Some(r) = state.and_then(|st| st.runner) else {
                continue;
            };
            owned.push(r.id);
            let alive = r.process.as_ref().is_some_and(process::alive) || r.container.is_some();
            if started.contains(&n) || !alive {
                continue;
            }
            // Not in the list read at the start: asked again by id, as it may be newer.
            if !known.iter().any(|k| k.id == r.id)
                && matches!(self.forge.runner(r.id).await, Ok(None))
            {
                self.call(&["restart", &units::slot_unit(n)], run).await?;
                run.finding(format!(
                    "slot {n}: the forge had forgotten runner {} ({}); restarted the slot, which registers a new one",
                    r.name, r.id
                ));
                changed = true;
            }
        }
        for r in known
            .iter()
            .filter(|r| !owned.contains(&r.id) && !r.busy && !r.online)
        {
            match self.forge.remove(r.id).await {
                Ok(()) => {
                    run.finding(format!(
                        "removed stray runner {} ({}) from {}",
                        r.name,
                        r.id,
                        self.forge.scope()
                    ));
                    changed = true;
                }
                Err(e) => run.finding(format!(
                    "could not remove stray runner {} ({}): {e}",
                    r.name, r.id
                )),
            }
        }
        Ok(changed)
    }

    async fn is_active(&self, unit: &str) -> (bool, String) {
        let call = Call::systemctl(&["is-active", unit]).unchecked();
        match self.systemd.output(&call).await {
            Ok((status, out)) => (status.success(), out.trim().to_string()),
            Err(e) => (false, format!("{e:#}")),
        }
    }

    async fn call(&self, args: &[&str], run: &mut Run) -> anyhow::Result<()> {
        let call = Call::systemctl(args);
        run.debug(self.systemd.describe(&call));
        let (_, out) = self.systemd.output(&call).await?;
        if !out.trim().is_empty() {
            run.debug(out.trim().to_string());
        }
        Ok(())
    }
}
