//! Runner processes on this host: started in a process group of their own with a minimal
//! environment and a marker variable, recognised later by pid *and* start time (so a reused pid
//! is never signalled), stopped group-wide, leftovers found by their marker.

use rustix::process::{Pid, Signal, kill_process, kill_process_group};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Every process of an instance carries `MAYFLY_LOCAL_INSTANCE=<root>` in its environment
/// (children inherit it), which finds them when the leader is gone or was never recorded.
pub const MARKER: &str = "MAYFLY_LOCAL_INSTANCE";

/// A process as recorded: its pid and its start time in clock ticks since boot
/// (`/proc/<pid>/stat` field 22), which together name one process for the life of the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    pub pid: u32,
    pub start_time: u64,
}

/// What `/proc/<pid>/stat` says about a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `D`, `Z` (zombie: exited, not yet reaped), …
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    pub start_time: u64,
}

/// The fields after the command name, which is in parentheses and may itself hold spaces or
/// parentheses: everything after the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) pgrp(5) … starttime(22), so index 19.
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        start_time: f.get(19)?.parse().ok()?,
    })
}

/// The process `pid` now, if any.
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The process as recorded: this pid, started at this time.
pub fn recorded(pid: u32) -> Option<Proc> {
    stat(pid).map(|s| Proc {
        pid,
        start_time: s.start_time,
    })
}

/// Whether the recorded process still runs: same pid, same start time, not a zombie.
pub fn alive(p: &Proc) -> bool {
    stat(p.pid).is_some_and(|s| s.start_time == p.start_time && !matches!(s.state, 'Z' | 'X'))
}

/// Every live process carrying a marker, by the marker's value: one pass over `/proc`. Only
/// processes of the same user (or every one, for root) can be read; a runner runs as mayfly's
/// user.
pub fn all_marked() -> HashMap<String, Vec<Proc>> {
    let prefix = format!("{MARKER}=");
    let mut found: HashMap<String, Vec<Proc>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let value = environ
            .split(|b| *b == 0)
            .find_map(|kv| kv.strip_prefix(prefix.as_bytes()));
        if let Some(value) = value
            && let Some(s) = stat(pid)
            && !matches!(s.state, 'Z' | 'X')
        {
            found
                .entry(String::from_utf8_lossy(value).into_owned())
                .or_default()
                .push(Proc {
                    pid,
                    start_time: s.start_time,
                });
        }
    }
    found
}

/// The live processes whose environment carries `MARKER=<value>`.
pub fn marked(value: &str) -> Vec<Proc> {
    all_marked().remove(value).unwrap_or_default()
}

/// The environment a runner gets: the few variables a login would set, never mayfly's own
/// (which holds its tokens), plus `extra` and the marker.
pub fn environment(extra: &[(String, String)], marker: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    }
    // run.sh refuses root without it; as root, jobs run as root (warned about at start).
    if rustix::process::geteuid().is_root() {
        env.push(("RUNNER_ALLOW_RUNASROOT".into(), "1".into()));
    }
    env.extend(extra.iter().cloned());
    env.push((MARKER.into(), marker.into()));
    env
}

/// Another user a runner runs as, so that its jobs cannot read the environment or memory of
/// the mayfly process that holds the tokens (a process of the same user could).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// The account `name`, from `getent passwd` (local files or a directory service).
pub fn account(name: &str) -> std::io::Result<RunAs> {
    let out = std::process::Command::new("getent")
        .args(["passwd", name])
        .output()?;
    let line = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = line.trim_end().split(':').collect();
    let parsed = (f.len() >= 7 && out.status.success())
        .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .flatten();
    match parsed {
        Some((uid, gid)) => Ok(RunAs {
            name: f[0].to_string(),
            uid,
            gid,
            home: PathBuf::from(f[5]),
        }),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no user {name:?} on this host"),
        )),
    }
}

/// Gives `path` to `user`: a runner root and its top-level files (the scripts the runner
/// rewrites), not the hard-linked binaries below, which stay as installed.
pub fn give(path: &Path, user: &RunAs) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))?;
    for e in std::fs::read_dir(path)?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_file()) {
            std::os::unix::fs::chown(e.path(), Some(user.uid), Some(user.gid))?;
        }
    }
    Ok(())
}

/// What to start.
#[derive(Clone, Debug)]
pub struct Command {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    /// Where the process's stdout and stderr go (appended).
    pub log: PathBuf,
    /// Started as this user (through `setpriv`, which needs root); `None`: as mayfly's.
    pub run_as: Option<RunAs>,
}

impl Command {
    /// The program and arguments as executed: behind `setpriv` when run as another user
    /// (`--init-groups` gives the user's groups, such as docker's).
    pub fn argv(&self) -> (PathBuf, Vec<String>) {
        match &self.run_as {
            None => (self.program.clone(), self.args.clone()),
            Some(u) => {
                let mut args = vec![
                    format!("--reuid={}", u.uid),
                    format!("--regid={}", u.gid),
                    "--init-groups".to_string(),
                    "--".to_string(),
                    self.program.display().to_string(),
                ];
                args.extend(self.args.iter().cloned());
                (PathBuf::from("setpriv"), args)
            }
        }
    }

    /// The environment as started: the user's HOME, USER and LOGNAME when run as another.
    fn environment(&self) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        if let Some(u) = &self.run_as {
            env.retain(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "HOME" | "USER" | "LOGNAME" | "RUNNER_ALLOW_RUNASROOT"
                )
            });
            env.push(("HOME".into(), u.home.display().to_string()));
            env.push(("USER".into(), u.name.clone()));
            env.push(("LOGNAME".into(), u.name.clone()));
            if u.uid == 0 {
                env.push(("RUNNER_ALLOW_RUNASROOT".into(), "1".into()));
            }
        }
        env
    }
}

/// Starts `cmd` as the leader of a new process group; the child handle (to reap it) and the
/// process as recorded.
pub fn spawn(cmd: &Command) -> std::io::Result<(tokio::process::Child, Proc)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&cmd.log)?;
    let (program, args) = cmd.argv();
    let env = cmd.environment();
    let child = tokio::process::Command::new(&program)
        .args(&args)
        .current_dir(&cmd.cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| std::io::Error::other("the child exited before its pid was read"))?;
    // Not reaped yet (the handle is alive), so the pid cannot have been reused.
    let start_time = stat(pid)
        .map(|s| s.start_time)
        .ok_or_else(|| std::io::Error::other(format!("no /proc entry for pid {pid}")))?;
    Ok((child, Proc { pid, start_time }))
}

fn pid(n: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(n).ok()?)
}

/// Signals the recorded leader's group if the leader is the recorded process, and every other
/// live process carrying `marker`. Errors (already gone) are ignored: the caller checks.
fn signal_all(leader: Option<&Proc>, marker: &str, sig: Signal) {
    if let Some(p) = leader
        && alive(p)
        && let Some(id) = pid(p.pid)
    {
        if stat(p.pid).is_some_and(|s| s.pgrp == p.pid) {
            let _ = kill_process_group(id, sig);
        } else {
            let _ = kill_process(id, sig);
        }
    }
    for p in marked(marker) {
        // Checked again just before the signal: only the very process that was read.
        if alive(&p)
            && let Some(id) = pid(p.pid)
        {
            let _ = kill_process(id, sig);
        }
    }
}

fn all_gone(leader: Option<&Proc>, marker: &str) -> bool {
    leader.is_none_or(|p| !alive(p)) && marked(marker).is_empty()
}

async fn wait_gone(leader: Option<&Proc>, marker: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if all_gone(leader, marker) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops an instance's processes: SIGTERM to the group and the marked ones, SIGKILL after
/// `grace`. `true` when none is left.
pub async fn stop(leader: Option<&Proc>, marker: &str, grace: Duration) -> bool {
    if all_gone(leader, marker) {
        return true;
    }
    signal_all(leader, marker, Signal::TERM);
    if wait_gone(leader, marker, grace).await {
        return true;
    }
    signal_all(leader, marker, Signal::KILL);
    wait_gone(leader, marker, Duration::from_secs(5)).await
}

/// The marker value of an instance: its root, which is unique on the host.
pub fn marker_of(root: &Path) -> String {
    root.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_are_read() {
        let line = "4242 (run (x) y) S 1 4242 4242 0 -1 4194560 300 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            (s.state, s.ppid, s.pgrp, s.start_time),
            ('S', 1, 4242, 987654)
        );
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn another_user_s_runner_starts_behind_setpriv_with_that_user_s_home() {
        let mut cmd = Command {
            program: "/srv/root/run.sh".into(),
            args: vec!["--jitconfig".into(), "J".into()],
            cwd: "/srv/root".into(),
            env: vec![
                ("HOME".into(), "/root".into()),
                ("PATH".into(), "/usr/bin".into()),
            ],
            log: "/srv/root/runner.log".into(),
            run_as: None,
        };
        assert_eq!(cmd.argv().0, PathBuf::from("/srv/root/run.sh"));
        cmd.run_as = Some(RunAs {
            name: "ci".into(),
            uid: 1001,
            gid: 1002,
            home: "/home/ci".into(),
        });
        let (program, args) = cmd.argv();
        assert_eq!(program, PathBuf::from("setpriv"));
        assert_eq!(
            args.join(" "),
            "--reuid=1001 --regid=1002 --init-groups -- /srv/root/run.sh --jitconfig J"
        );
        let env = cmd.environment();
        assert!(env.contains(&("HOME".into(), "/home/ci".into())));
        assert!(!env.contains(&("HOME".into(), "/root".into())));
        assert_eq!(account("root").unwrap().uid, 0);
        assert!(account("no-such-user-mayfly").is_err());
    }

    #[test]
    fn this_process_is_alive_and_a_different_start_time_is_not() {
        let me = recorded(std::process::id()).unwrap();
        assert!(alive(&me));
        assert!(!alive(&Proc {
            start_time: me.start_time + 1,
            ..me
        }));
    }

    #[tokio::test]
    async fn a_group_is_stopped_and_its_marked_children_found() {
        let dir = tempfile::tempdir().unwrap();
        let marker = marker_of(dir.path());
        let cmd = Command {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "sleep 30 & sleep 30; wait".into()],
            cwd: dir.path().into(),
            env: environment(&[], &marker),
            log: dir.path().join("log"),
            run_as: None,
        };
        let (mut child, leader) = spawn(&cmd).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while marked(&marker).len() < 3 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(marked(&marker).len(), 3, "the shell and its two sleeps");
        let reap = tokio::spawn(async move { child.wait().await });
        assert!(stop(Some(&leader), &marker, Duration::from_secs(5)).await);
        assert!(marked(&marker).is_empty());
        let _ = reap.await;
        assert!(!alive(&leader));
    }
}
