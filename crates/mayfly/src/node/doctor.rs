//! `mayfly node doctor`: one line per check — the registration and the runner, each slot's
//! service, process and runner (online, busy, last job), the forge reachable and the credential
//! valid (and when it expires), clock skew against the forge's `Date`, disk and inode space of
//! the work directory, Docker when used — each ok, warn or fail with a hint.

use super::files::{self, JobMarker, NodeDir, SlotState, iso};
use super::forge::{ForgeError, NodeForge};
use super::settings::Settings;
use super::units;
use crate::service::systemd::{Call, Systemd};
use mayfly_provider::local::docker::Docker;
use mayfly_provider::local::{layout, process};
use serde::Serialize;
use std::path::Path;

/// The runner refuses a token exchange past five minutes of skew: fail there, warn well before.
pub const SKEW_FAIL_MS: i64 = 5 * 60 * 1000;
pub const SKEW_WARN_MS: i64 = 60 * 1000;
/// The free space below which doctor warns and fails (`[node] disk_*`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiskLimits {
    pub warn_bytes: u64,
    pub fail_bytes: u64,
    /// Shares of blocks and of inodes, 0 to 1.
    pub warn_share: f64,
    pub fail_share: f64,
}

impl DiskLimits {
    pub fn of(n: &crate::config::NodeConfig) -> DiskLimits {
        let gib = |g: f64| (g.max(0.0) * (1u64 << 30) as f64) as u64;
        DiskLimits {
            warn_bytes: gib(n.disk_warn_gib),
            fail_bytes: gib(n.disk_fail_gib),
            warn_share: n.disk_warn_percent / 100.0,
            fail_share: n.disk_fail_percent / 100.0,
        }
    }
}
/// A credential that ends within this is worth a warning.
const EXPIRY_WARN_MS: i64 = 7 * 86_400_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub status: Status,
    pub name: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Default)]
pub struct Checks(pub Vec<Check>);

impl Checks {
    fn add(
        &mut self,
        status: Status,
        name: impl Into<String>,
        detail: impl Into<String>,
        hint: Option<&str>,
    ) {
        self.0.push(Check {
            status,
            name: name.into(),
            detail: detail.into(),
            hint: hint.map(str::to_string),
        });
    }

    pub fn worst(&self) -> Status {
        self.0.iter().map(|c| c.status).max().unwrap_or(Status::Ok)
    }
}

/// The clock check for a skew (server minus local) in ms.
pub fn skew_status(skew_ms: i64) -> Status {
    match skew_ms.abs() {
        s if s > SKEW_FAIL_MS => Status::Fail,
        s if s > SKEW_WARN_MS => Status::Warn,
        _ => Status::Ok,
    }
}

/// The disk check for free bytes and shares of free blocks and inodes.
pub fn disk_status(l: &DiskLimits, free_bytes: u64, free_share: f64, inode_share: f64) -> Status {
    if free_bytes < l.fail_bytes || free_share < l.fail_share || inode_share < l.fail_share {
        Status::Fail
    } else if free_bytes < l.warn_bytes || free_share < l.warn_share || inode_share < l.warn_share {
        Status::Warn
    } else {
        Status::Ok
    }
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

/// The nearest existing directory at or above `p` (statvfs needs one).
fn existing(p: &Path) -> &Path {
    let mut at = p;
    while !at.exists() {
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    at
}

fn disk(checks: &mut Checks, dir: &Path, limits: &DiskLimits) {
    let at = existing(dir);
    match rustix::fs::statvfs(at) {
        Ok(v) => {
            let free = v.f_bavail.saturating_mul(v.f_frsize);
            let share = |free: u64, total: u64| {
                if total == 0 {
                    1.0
                } else {
                    free as f64 / total as f64
                }
            };
            let blocks = share(v.f_bavail, v.f_blocks);
            let inodes = share(v.f_favail, v.f_files);
            let status = disk_status(limits, free, blocks, inodes);
            checks.add(
                status,
                "disk",
                format!(
                    "{}: {} free ({:.0}%), inodes {:.0}% free",
                    at.display(),
                    gib(free),
                    blocks * 100.0,
                    inodes * 100.0
                ),
                (status != Status::Ok).then_some(
                    "`mayfly node prune` removes what jobs left; jobs need room in _work",
                ),
            );
        }
        Err(e) => checks.add(
            Status::Fail,
            "disk",
            format!("cannot read {}: {e}", at.display()),
            None,
        ),
    }
}

async fn is_active(systemd: &Systemd, unit: &str) -> (bool, String) {
    let call = Call::systemctl(&["is-active", unit]).unchecked();
    match systemd.output(&call).await {
        Ok((status, out)) => (status.success(), out.trim().to_string()),
        Err(e) => (false, format!("{e:#}")),
    }
}

/// Whether the slots' user can run the binary the units and the job hooks run.
async fn binary(c: &mut Checks, s: &Settings) {
    let shown = s.mayfly.display();
    match super::access::who(&s.user).await {
        Ok(who) => match super::access::blocked(&who, &s.mayfly) {
            Ok(None) => c.add(
                Status::Ok,
                "binary",
                format!("{} can run {shown}", who.name),
                None,
            ),
            Ok(Some(b)) => c.add(
                Status::Fail,
                "binary",
                super::access::problem(&who, &s.mayfly, &b),
                Some(super::access::HINT),
            ),
            Err(e) => c.add(
                Status::Fail,
                "binary",
                format!("{shown}: {e}"),
                Some(super::access::HINT),
            ),
        },
        Err(e) => c.add(
            Status::Warn,
            "binary",
            format!("cannot tell whether {} can run {shown}: {e:#}", s.user),
            None,
        ),
    }
}

/// Runs every check. `forge` is `None` when it could not be set up (the reason is `forge_err`).
pub async fn checks(
    dir: &NodeDir,
    settings: Option<&Settings>,
    forge: Result<&dyn NodeForge, String>,
    systemd: &Systemd,
    docker: &Docker,
    limits: &DiskLimits,
) -> Checks {
    let mut c = Checks::default();
    let Some(s) = settings else {
        c.add(
            Status::Fail,
            "registration",
            format!("not registered: no {}", dir.settings().display()),
            Some("mayfly node register"),
        );
        disk(&mut c, dir.path(), limits);
        return c;
    };
    c.add(
        Status::Ok,
        "registration",
        format!(
            "{}: {} slot(s) in {} of {}, labels {}",
            s.name,
            s.slots,
            s.scope,
            s.forge,
            s.labels.join(",")
        ),
        None,
    );
    binary(&mut c, s).await;
    if s.docker {
        match docker.server_version().await {
            Ok(v) => c.add(
                Status::Ok,
                "docker",
                format!("the daemon answers (API {v})"),
                None,
            ),
            Err(e) => c.add(
                Status::Fail,
                "docker",
                e.to_string(),
                Some("systemctl status docker; the slots' user needs the Docker socket"),
            ),
        }
    } else if layout::has_runner(&s.runner_dir) {
        c.add(
            Status::Ok,
            "runner",
            format!("installed in {}", s.runner_dir.display()),
            None,
        );
    } else {
        c.add(
            Status::Fail,
            "runner",
            format!("no executable run.sh in {}", s.runner_dir.display()),
            Some("mayfly node register installs it"),
        );
    }

    let forge = match forge {
        Ok(f) => Some(f),
        Err(e) => {
            c.add(
                Status::Fail,
                "forge",
                e,
                Some("check [github] in the configuration"),
            );
            None
        }
    };
    let mut known = None;
    if let Some(f) = forge {
        match f.probe().await {
            Ok(p) => {
                let ms = p.received_at.millis() - p.sent_at.millis();
                c.add(
                    Status::Ok,
                    "forge",
                    format!("{} answers ({ms} ms)", f.kind()),
                    None,
                );
                match p.skew_ms() {
                    Some(skew) => {
                        let st = skew_status(skew);
                        c.add(
                            st,
                            "clock",
                            format!("{skew:+} ms against the forge's Date (the runner fails past 5 minutes)"),
                            (st != Status::Ok).then_some("enable NTP: timedatectl set-ntp true"),
                        );
                    }
                    None => c.add(
                        Status::Warn,
                        "clock",
                        "the forge sent no Date to compare with",
                        None,
                    ),
                }
                match p.token_expires {
                    Some(t) => {
                        let left = t.millis() - files::now_ms();
                        let st = if left <= 0 {
                            Status::Fail
                        } else if left < EXPIRY_WARN_MS {
                            Status::Warn
                        } else {
                            Status::Ok
                        };
                        c.add(
                            st,
                            "credential expiry",
                            format!("the token expires {}", iso(t.millis())),
                            (st != Status::Ok).then_some(
                                "make a new token and put it in the node's environment file",
                            ),
                        );
                    }
                    None => c.add(Status::Ok, "credential expiry", "no expiry reported", None),
                }
                if let (Some(limit), Some(left)) = (p.limit, p.remaining)
                    && limit > 0
                    && (left as f64) < limit as f64 * 0.1
                {
                    c.add(
                        Status::Warn,
                        "rate limit",
                        format!("{left} of {limit} requests left this hour"),
                        Some("another tool spends this credential's budget"),
                    );
                }
            }
            Err(ForgeError::Unauthorized) => c.add(
                Status::Fail,
                "forge",
                "the credential was refused",
                Some("a new token (or the App's key) in the node's environment file"),
            ),
            Err(e) => c.add(
                Status::Fail,
                "forge",
                e.to_string(),
                Some("network, proxy or DNS between this host and the forge"),
            ),
        }
        match f.runners_named(&s.prefix()).await {
            Ok(list) => {
                c.add(
                    Status::Ok,
                    "credential",
                    format!("may manage runners in {} ({} of this node registered)", f.scope(), list.len()),
                    None,
                );
                known = Some(list);
            }
            Err(ForgeError::Unauthorized) => c.add(
                Status::Fail,
                "credential",
                "refused",
                Some("a new token in the node's environment file"),
            ),
            Err(e) => c.add(
                Status::Fail,
                "credential",
                format!("cannot list the runners of {}: {e}", f.scope()),
                Some("the token needs administration rights on the repository (or organization self-hosted runners)"),
            ),
        }
    }

    let mut owned = Vec::new();
    for n in 1..=s.slots {
        let unit = units::slot_unit(n);
        let (active, said) = is_active(systemd, &unit).await;
        c.add(
            if active { Status::Ok } else { Status::Fail },
            format!("slot {n} service"),
            format!("{unit} is {said}"),
            (!active).then_some("mayfly node register starts it again; journalctl -u mayfly-node@N shows why it stopped"),
        );
        let state: Option<SlotState> = files::read(&dir.slot_state(n)).ok().flatten();
        let Some(state) = state else {
            c.add(Status::Warn, format!("slot {n}"), "has not run yet", None);
            continue;
        };
        let alive = state.process.as_ref().is_some_and(process::alive);
        if active && !alive {
            c.add(
                Status::Fail,
                format!("slot {n} process"),
                "recorded process is gone",
                Some("mayfly node register restarts it"),
            );
        } else if !active && alive {
            c.add(
                Status::Warn,
                format!("slot {n} process"),
                "runs outside its service",
                None,
            );
        }
        let last_job = files::read::<JobMarker>(&dir.last_job(n))
            .ok()
            .flatten()
            .map(|j| {
                format!(
                    "last job {} of {} (run {}) at {}",
                    j.job,
                    j.repository,
                    j.run_id,
                    iso(j.finished_ms.unwrap_or(j.started_ms))
                )
            })
            .unwrap_or_else(|| "no job yet".into());
        match (&state.runner, &known) {
            (Some(r), Some(list)) => {
                owned.push(r.id);
                let at_forge = list.iter().find(|x| x.id == r.id);
                let (st, what, hint) = match at_forge {
                    Some(x) if x.busy => (Status::Ok, "online, busy".to_string(), None),
                    Some(x) if x.online => (Status::Ok, "online, idle".to_string(), None),
                    Some(_) if alive => (
                        Status::Warn,
                        "offline at the forge while the slot runs it".to_string(),
                        Some(
                            "it may be starting; if it stays so, mayfly node register restarts the slot",
                        ),
                    ),
                    Some(_) => (Status::Warn, "offline".to_string(), None),
                    None => (
                        Status::Fail,
                        "unknown to the forge (removed there)".to_string(),
                        Some("mayfly node register repairs it: the slot starts a new runner"),
                    ),
                };
                c.add(
                    st,
                    format!("slot {n} runner"),
                    format!("{} (id {}): {what}; {last_job}", r.name, r.id),
                    hint,
                );
            }
            (Some(r), None) => c.add(
                Status::Warn,
                format!("slot {n} runner"),
                format!(
                    "{} (id {}): not checked at the forge; {last_job}",
                    r.name, r.id
                ),
                None,
            ),
            (None, _) => c.add(
                Status::Ok,
                format!("slot {n} runner"),
                format!("none right now ({}); {last_job}", state.phase),
                None,
            ),
        }
        if let Some(e) = &state.last_exit
            && (e.message.contains("terminated error")
                || e.message.contains("Session Conflict")
                || e.message.contains("Must not run"))
        {
            c.add(
                Status::Warn,
                format!("slot {n} last runner"),
                format!("{} at {}: {}", e.runner, iso(e.at_ms), e.message),
                Some("see the runner's _diag logs in the slot's root; doctor --debug"),
            );
        }
    }
    if let Some(list) = &known {
        let strays: Vec<String> = list
            .iter()
            .filter(|r| !owned.contains(&r.id) && !r.busy)
            .map(|r| format!("{} ({})", r.name, r.id))
            .collect();
        if !strays.is_empty() {
            c.add(
                Status::Warn,
                "stray runners",
                format!(
                    "registered with this node's name but run by no slot: {}",
                    strays.join(", ")
                ),
                Some("mayfly node register removes them"),
            );
        }
    }
    if s.prune_timer {
        let (active, said) = is_active(systemd, units::PRUNE_TIMER).await;
        c.add(
            if active { Status::Ok } else { Status::Warn },
            "prune timer",
            format!("{} is {said}", units::PRUNE_TIMER),
            (!active).then_some("mayfly node register --prune-timer"),
        );
    }
    disk(&mut c, &s.work_dir, limits);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_fails_past_five_minutes_and_warns_well_before() {
        assert_eq!(skew_status(30_000), Status::Ok);
        assert_eq!(skew_status(-90_000), Status::Warn);
        assert_eq!(skew_status(301_000), Status::Fail);
    }

    #[test]
    fn disk_thresholds() {
        let l = DiskLimits::of(&crate::config::NodeConfig::default());
        assert_eq!(disk_status(&l, 100 << 30, 0.5, 0.5), Status::Ok);
        assert_eq!(disk_status(&l, 5 << 30, 0.5, 0.5), Status::Warn);
        assert_eq!(disk_status(&l, 100 << 30, 0.5, 0.05), Status::Warn);
        assert_eq!(disk_status(&l, 100 << 20, 0.5, 0.5), Status::Fail);
        assert_eq!(disk_status(&l, 100 << 30, 0.01, 0.5), Status::Fail);
    }
}
