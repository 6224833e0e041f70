//! `mayfly node deregister [--force]`: stops the slots (a slot running a job finishes it first,
//! unless `--force`), removes the node's runners from the forge, then its units and local files.
//! `--force` cleans everything local even when the forge cannot be reached, and names what it
//! could not remove there.

use super::diagnostic::Run;
use super::files::{self, NodeDir, SlotState};
use super::forge::NodeForge;
use super::settings::Settings;
use super::slot::NODE_LABEL;
use super::units;
use crate::service::systemd::{Call, Systemd};
use mayfly_provider::local::docker::Docker;
use mayfly_provider::local::{layout, process};
use std::collections::BTreeMap;
use std::time::Duration;

/// What was left on the forge: `(id, name, why)`.
pub type Left = Vec<(u64, String, String)>;

pub struct Deregister<'a> {
    pub dir: &'a NodeDir,
    pub settings: &'a Settings,
    pub forge: Option<&'a dyn NodeForge>,
    pub systemd: &'a Systemd,
    pub docker: &'a Docker,
    pub force: bool,
}

impl Deregister<'_> {
    async fn systemctl(&self, args: &[&str], run: &mut Run, checked: bool) -> anyhow::Result<()> {
        let call = if checked {
            Call::systemctl(args)
        } else {
            Call::systemctl(args).unchecked()
        };
        run.debug(self.systemd.describe(&call));
        let (status, out) = self.systemd.output(&call).await?;
        run.debug(format!("{status}: {}", out.trim()));
        Ok(())
    }

    /// Stops every slot: gracefully (jobs finish), or with `--force` at once.
    pub async fn stop_slots(&self, run: &mut Run) -> anyhow::Result<()> {
        let s = self.settings;
        let slots: Vec<String> = (1..=s.slots).map(units::slot_unit).collect();
        let slots: Vec<&str> = slots.iter().map(String::as_str).collect();
        if self.force {
            let mut kill = vec!["kill", "--signal=SIGKILL"];
            kill.extend(&slots);
            self.systemctl(&kill, run, false).await?;
            // What a unit's kill might not reach: runners recorded by the slots, containers.
            for n in 1..=s.slots {
                let state: Option<SlotState> = files::read(&self.dir.slot_state(n)).ok().flatten();
                let leader = state.and_then(|st| st.runner).and_then(|r| r.process);
                let marker = process::marker_of(&s.root(n));
                if !process::stop(leader.as_ref(), &marker, Duration::from_secs(2)).await {
                    run.finding(format!("slot {n}: a runner process survived SIGKILL"));
                }
            }
            if s.docker {
                for c in self
                    .docker
                    .ps(&[format!("{NODE_LABEL}={}", s.name)])
                    .await
                    .unwrap_or_default()
                {
                    let _ = self.docker.remove(&c.name).await;
                }
            }
        }
        let mut disable = vec!["disable", "--now"];
        disable.extend(&slots);
        self.systemctl(&disable, run, !self.force).await
    }

    /// Removes the node's runners from the forge: those the slots recorded and every one
    /// named after the node. What could not be removed is returned.
    pub async fn remove_runners(&self, run: &mut Run) -> Left {
        let s = self.settings;
        let mut todo: BTreeMap<u64, String> = BTreeMap::new();
        for n in 1..=s.slots {
            if let Ok(Some(st)) = files::read::<SlotState>(&self.dir.slot_state(n)) {
                if let Some(r) = st.runner {
                    todo.insert(r.id, r.name);
                }
                todo.extend(st.unremoved);
            }
        }
        let Some(forge) = self.forge else {
            return todo
                .into_iter()
                .map(|(id, name)| (id, name, "no forge client".to_string()))
                .collect();
        };
        let mut left = Left::new();
        match forge.runners_named(&s.prefix()).await {
            Ok(list) => {
                for r in list {
                    todo.insert(r.id, r.name);
                }
            }
            Err(e) => left.push((
                0,
                format!("{}*", s.prefix()),
                format!("cannot list the runners: {e}"),
            )),
        }
        for (id, name) in todo {
            match forge.remove(id).await {
                Ok(()) => run.finding(format!(
                    "removed runner {name} ({id}) from {}",
                    forge.scope()
                )),
                Err(e) => left.push((id, name, e.to_string())),
            }
        }
        left
    }

    /// Removes the units, the environment file and the node's local files; the diagnostic
    /// state stays, as the record of this deregistration.
    pub async fn remove_local(&self, run: &mut Run) -> anyhow::Result<()> {
        let s = self.settings;
        if s.prune_timer || self.systemd.unit_dir.join(units::PRUNE_TIMER).exists() {
            self.systemctl(&["disable", "--now", units::PRUNE_TIMER], run, false)
                .await?;
        }
        for u in [
            units::SLOT_TEMPLATE,
            units::PRUNE_SERVICE,
            units::PRUNE_TIMER,
        ] {
            files::remove(&self.systemd.unit_dir.join(u))?;
        }
        files::remove(&self.systemd.env_path(units::ENV_NAME))?;
        self.systemctl(&["daemon-reload"], run, false).await?;
        layout::remove_tree(&s.work_dir)
            .map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", s.work_dir.display()))?;
        for sub in ["slots", "jobs", "hooks"] {
            layout::remove_tree(&self.dir.path().join(sub))?;
        }
        files::remove(&self.dir.lock())?;
        files::remove(&self.dir.settings())?;
        run.finding(format!(
            "removed the units, {} and the node's files in {}",
            s.work_dir.display(),
            self.dir.path().display()
        ));
        Ok(())
    }
}
