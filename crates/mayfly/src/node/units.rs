//! The systemd units of a node: `mayfly-node@.service`, one instance per slot (`mayfly-node@1`,
//! …), each running one slot's loop of single-use runners and restarted by systemd if it dies;
//! and, when asked for, `mayfly-node-prune.timer` with its service. Also the job hook scripts
//! the runners run. Rendered with the same quoting and environment file as `mayfly service`.

use super::files::NodeDir;
use super::settings::Settings;
use crate::service::unit::quote;
use std::path::Path;
use std::time::Duration;

pub const SLOT_TEMPLATE: &str = "mayfly-node@.service";
pub const PRUNE_SERVICE: &str = "mayfly-node-prune.service";
pub const PRUNE_TIMER: &str = "mayfly-node-prune.timer";
/// The environment file's name (`/etc/mayfly/mayfly-node.env`): the node's secrets.
pub const ENV_NAME: &str = "mayfly-node";
/// Between a slot's death and systemd starting it again.
pub const RESTART_SEC: Duration = Duration::from_secs(5);
/// What a stopping slot needs beyond its job's time: stopping an idle runner, a forge call.
const STOP_MARGIN: Duration = Duration::from_secs(60);

pub fn slot_unit(n: u32) -> String {
    format!("mayfly-node@{n}.service")
}

fn words(words: &[String]) -> Result<String, String> {
    Ok(words
        .iter()
        .map(|w| quote(w))
        .collect::<Result<Vec<_>, _>>()?
        .join(" "))
}

/// `mayfly [-c FILE] node --dir DIR`, the start of every command a unit or hook runs.
fn mayfly(settings: &Settings, dir: &NodeDir) -> Vec<String> {
    let mut w = vec![settings.mayfly.display().to_string()];
    if let Some(f) = &settings.config_file {
        w.push("-c".into());
        w.push(f.display().to_string());
    }
    w.extend([
        "node".into(),
        "--dir".into(),
        dir.path().display().to_string(),
    ]);
    w
}

/// The slot template unit.
pub fn slot_template(
    settings: &Settings,
    dir: &NodeDir,
    group: &str,
    env_file: &Path,
) -> Result<String, String> {
    let exec = format!("{} slot %i", words(&mayfly(settings, dir))?);
    let env_file = quote(&env_file.display().to_string())?;
    let after = if settings.docker {
        "network-online.target docker.service"
    } else {
        "network-online.target"
    };
    let stop = settings.stop_timeout() + STOP_MARGIN;
    Ok(format!(
        "# Written by mayfly node register. Secrets are in {env_file} (mode 0600), never here.\n\
         [Unit]\n\
         Description=mayfly node slot %i: single-use {forge} runners of {name}\n\
         After={after}\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=exec\n\
         # The slot runs as root, holding the credential; its runners and their jobs run as\n\
         # {user}:{group}, who cannot read the slot's environment or memory.\n\
         EnvironmentFile=-{env_file}\n\
         ExecStart={exec}\n\
         Restart=always\n\
         RestartSec={restart}s\n\
         # An invalid configuration: restarting cannot fix that.\n\
         RestartPreventExitStatus=2\n\
         # SIGTERM to the slot alone: it lets a running job finish, then stops its runner.\n\
         KillMode=mixed\n\
         KillSignal=SIGTERM\n\
         TimeoutStopSec={stop}s\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        forge = "GitHub Actions",
        name = settings.name,
        user = settings.user,
        restart = RESTART_SEC.as_secs(),
        stop = stop.as_secs(),
    ))
}

/// The prune service the timer starts, and the daily timer.
pub fn prune_units(
    settings: &Settings,
    dir: &NodeDir,
    env_file: &Path,
) -> Result<(String, String), String> {
    let mut cmd = mayfly(settings, dir);
    cmd.extend([
        "prune".into(),
        "--wait".into(),
        format!("{}s", settings.prune_wait_secs),
    ]);
    let env_file = quote(&env_file.display().to_string())?;
    let service = format!(
        "# Written by mayfly node register: the daily prune of what jobs left behind.\n\
         [Unit]\n\
         Description=mayfly node: prune what jobs left behind on {name}\n\
         After=docker.service\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         EnvironmentFile=-{env_file}\n\
         ExecStart={exec}\n",
        name = settings.name,
        exec = words(&cmd)?,
    );
    let timer = "# Written by mayfly node register.\n\
                 [Unit]\n\
                 Description=Daily prune of what jobs left on this mayfly node\n\
                 \n\
                 [Timer]\n\
                 OnCalendar=daily\n\
                 RandomizedDelaySec=1h\n\
                 Persistent=true\n\
                 \n\
                 [Install]\n\
                 WantedBy=timers.target\n"
        .to_string();
    Ok((service, timer))
}

/// A job hook: the runner runs it with `bash -e` when a job starts or completes.
pub fn hook_script(settings: &Settings, dir: &NodeDir, event: &str) -> String {
    let sh = |w: &str| format!("'{}'", w.replace('\'', r"'\''"));
    let cmd: Vec<String> = mayfly(settings, dir)
        .iter()
        .filter(|w| !w.is_empty())
        .map(|w| sh(w))
        .collect();
    // The hook needs no configuration: drop `-c FILE`.
    let cmd = if settings.config_file.is_some() {
        let mut c = cmd;
        c.drain(1..3);
        c
    } else {
        cmd
    };
    format!(
        "#!/bin/bash\n# Written by mayfly node register: the runner runs this when a job {what}\n\
         # (ACTIONS_RUNNER_HOOK_JOB_{upper}); it notes the job for `mayfly node prune` and doctor.\n\
         exec {} hook {event}\n",
        cmd.join(" "),
        what = if event == "job-started" {
            "starts"
        } else {
            "completes"
        },
        upper = if event == "job-started" {
            "STARTED"
        } else {
            "COMPLETED"
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::settings::Scope;

    fn settings() -> Settings {
        Settings {
            forge: "github".into(),
            name: "ci-host".into(),
            scope: Scope::Repository("acme/app".into()),
            labels: vec!["self-hosted".into()],
            runner_group: None,
            slots: 2,
            runner_dir: "/opt/mayfly/actions-runner".into(),
            work_dir: "/var/lib/mayfly/node/slots".into(),
            user: "runner".into(),
            docker: false,
            docker_image: None,
            stop_timeout_secs: 3600,
            prune_older_than_secs: 864_000,
            prune_timer: true,
            prune_wait_secs: 3600,
            config_file: Some("/etc/mayfly/mayfly.toml".into()),
            mayfly: "/usr/local/bin/mayfly".into(),
        }
    }

    #[test]
    fn the_slot_unit_runs_one_slot_per_instance_and_lets_jobs_finish() {
        let dir = NodeDir("/var/lib/mayfly/node".into());
        let u = slot_template(
            &settings(),
            &dir,
            "runner",
            Path::new("/etc/mayfly/mayfly-node.env"),
        )
        .unwrap();
        for line in [
            "ExecStart=/usr/local/bin/mayfly -c /etc/mayfly/mayfly.toml node --dir /var/lib/mayfly/node slot %i",
            "EnvironmentFile=-/etc/mayfly/mayfly-node.env",
            "Restart=always",
            "KillMode=mixed",
            "TimeoutStopSec=3660s",
            "WantedBy=multi-user.target",
        ] {
            assert!(u.lines().any(|l| l == line), "no {line:?} in\n{u}");
        }
        let (service, timer) =
            prune_units(&settings(), &dir, Path::new("/etc/mayfly/mayfly-node.env")).unwrap();
        assert!(service.contains("ExecStart=/usr/local/bin/mayfly -c /etc/mayfly/mayfly.toml node --dir /var/lib/mayfly/node prune --wait 3600s"), "{service}");
        assert!(timer.contains("OnCalendar=daily") && timer.contains("Persistent=true"));
        let hook = hook_script(&settings(), &dir, "job-started");
        assert!(
            hook.contains("exec '/usr/local/bin/mayfly' 'node' '--dir' '/var/lib/mayfly/node' hook job-started"),
            "{hook}"
        );
    }
}
