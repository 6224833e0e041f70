//! `mayfly node prune`: removes what jobs left behind — stopped containers, unused networks and
//! volumes carrying mayfly's labels or the runner's 6-hex key labels, old dangling images and
//! build cache, stale work directories — never while a job runs on this host.
//!
//! The rules (docs/node.md): the node's lock is held throughout, and a job start takes it too,
//! so no job starts mid-prune; every Docker call is filtered (never an unfiltered `system
//! prune`: in the system this replaces, one raced the agent's own containers); volumes are
//! pruned only by label (Docker refuses `until` on volumes) and never with `--all`; images
//! only dangling ones or mayfly's, by age.

use super::diagnostic::Run;
use super::files::{self, JobMarker, NodeDir, SlotState, now_ms};
use super::forge::NodeForge;
use super::hook;
use super::settings::Settings;
use super::slot::NODE_LABEL;
use mayfly_provider::local::docker::{Docker, json_line, parse_labels};
use mayfly_provider::local::{layout, process};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Remove what is older than this [default: node.prune_older_than, 10d]
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<crate::config::HumanDuration>,
    /// List what would be removed; remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Wait up to this long for running jobs to finish; without it, a running job makes
    /// prune refuse at once
    #[arg(long, value_name = "DURATION")]
    pub wait: Option<crate::config::HumanDuration>,
}

/// What a prune did (or, dry, would do).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reclaimed {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes_bytes: u64,
    pub images_bytes: u64,
    pub build_cache_bytes: u64,
    pub directories: Vec<(PathBuf, u64)>,
}

/// A job seen running on the host.
#[derive(Debug)]
pub struct Running {
    pub slot: u32,
    pub job: JobMarker,
}

/// Whether a runner key label: six hexadecimal digits, as the runner labels its containers
/// and networks (the SHA-256 of its `.runner`, cut to six).
pub fn is_runner_key(k: &str) -> bool {
    k.len() == 6 && k.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The key label of the runner configured in `root`, if one is.
pub fn runner_key(root: &Path) -> Option<String> {
    let bytes = std::fs::read(root.join(".runner")).ok()?;
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let digest = Sha256::digest(text);
    Some(digest.iter().take(3).map(|b| format!("{b:02x}")).collect())
}

/// `2026-05-01 12:00:00.123456 +0000 UTC` (the CLI's CreatedAt) in ms.
pub fn docker_time(s: &str) -> Option<i64> {
    let mut parts = s.split_whitespace();
    let (date, time, offset) = (parts.next()?, parts.next()?, parts.next()?);
    let time = time.split('.').next()?;
    let t: jiff::Timestamp = format!("{date}T{time}{}:{}", &offset[..3], &offset[3..])
        .parse()
        .ok()?;
    Some(t.as_millisecond())
}

/// `Total reclaimed space: 1.5GB` in bytes (Docker's decimal units).
pub fn reclaimed_bytes(out: &str) -> u64 {
    let Some(size) = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Total reclaimed space:"))
    else {
        return 0;
    };
    let size = size.trim();
    let split = size
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(size.len());
    let (n, unit) = size.split_at(split);
    let n: f64 = n.parse().unwrap_or(0.0);
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "b" | "" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => 0.0,
    };
    (n * mult) as u64
}

pub fn exited_containers_args() -> Vec<String> {
    [
        "ps",
        "--all",
        "--no-trunc",
        "--filter",
        "status=exited",
        "--filter",
        "status=created",
        "--filter",
        "status=dead",
        "--format",
        "{{json .}}",
    ]
    .map(String::from)
    .to_vec()
}

pub fn networks_args() -> Vec<String> {
    ["network", "ls", "--no-trunc", "--format", "{{json .}}"]
        .map(String::from)
        .to_vec()
}

pub fn dangling_volumes_args() -> Vec<String> {
    [
        "volume",
        "ls",
        "--filter",
        "dangling=true",
        "--format",
        "{{json .}}",
    ]
    .map(String::from)
    .to_vec()
}

/// `docker volume prune` of the unused anonymous volumes with `label` — never `--all`, never
/// `until` (which volumes do not have).
pub fn volume_prune_args(label: &str) -> Vec<String> {
    vec![
        "volume".into(),
        "prune".into(),
        "--force".into(),
        "--filter".into(),
        format!("label={label}"),
    ]
}

/// Dangling images older than `hours`; with `label`, every unused image carrying it.
pub fn image_prune_args(hours: u64, label: Option<&str>) -> Vec<String> {
    let mut a = vec!["image".into(), "prune".into(), "--force".into()];
    if label.is_some() {
        a.push("--all".into());
    }
    a.push("--filter".into());
    a.push(format!("until={hours}h"));
    if let Some(l) = label {
        a.push("--filter".into());
        a.push(format!("label={l}"));
    }
    a
}

pub fn builder_prune_args(hours: u64) -> Vec<String> {
    vec![
        "builder".into(),
        "prune".into(),
        "--force".into(),
        "--filter".into(),
        format!("until={hours}h"),
    ]
}

/// Whether a container or network with these labels is a job's leftover of this node:
/// mayfly's node label, or a runner key that no live runner of this host holds.
fn leftover(
    labels: &std::collections::BTreeMap<String, String>,
    node: &str,
    live: &BTreeSet<String>,
) -> bool {
    labels.get(NODE_LABEL).is_some_and(|v| v == node)
        || labels
            .keys()
            .any(|k| is_runner_key(k) && !live.contains(&k.to_ascii_lowercase()))
}

/// The jobs running in the slots' containers: their hooks run inside the container and
/// cannot reach the node directory, so the forge is asked whether each slot's runner is busy.
/// Without an answer, a job is assumed: prune never guesses in the jobs' favour of removal.
pub async fn busy_containers(
    dir: &NodeDir,
    settings: &Settings,
    forge: Option<&dyn NodeForge>,
) -> Vec<Running> {
    let mut running = Vec::new();
    for n in 1..=settings.slots {
        let Some(r) = files::read::<SlotState>(&dir.slot_state(n))
            .ok()
            .flatten()
            .and_then(|s| s.runner)
        else {
            continue;
        };
        let busy = match forge {
            Some(f) => !matches!(
                f.runner(r.id).await,
                Ok(None) | Ok(Some(super::forge::Runner { busy: false, .. }))
            ),
            None => true,
        };
        if busy {
            running.push(Running {
                slot: n,
                job: JobMarker {
                    slot: n,
                    repository: "?".into(),
                    run_id: "?".into(),
                    job: format!("a job (runner {} is busy, or GitHub cannot tell)", r.name),
                    runner: r.name.clone(),
                    started_ms: r.started_ms,
                    finished_ms: None,
                },
            });
        }
    }
    running
}

/// The jobs running on the host, from the hooks' markers whose runner still runs; stale
/// markers (their runner is gone) are removed.
pub fn running_jobs(dir: &NodeDir, settings: &Settings, run: &mut Run) -> Vec<Running> {
    let mut running = Vec::new();
    for n in 1..=settings.slots {
        let Ok(Some(job)) = files::read::<JobMarker>(&dir.job_marker(n)) else {
            continue;
        };
        let state: SlotState = files::read(&dir.slot_state(n))
            .ok()
            .flatten()
            .unwrap_or_default();
        let alive = state.runner.as_ref().is_some_and(|r| {
            r.name == job.runner
                && (r.process.as_ref().is_some_and(process::alive)
                    || !process::marked(&process::marker_of(&settings.root(n))).is_empty()
                    || r.container.is_some())
        });
        if alive {
            running.push(Running { slot: n, job });
        } else {
            run.finding(format!(
                "slot {n}: a job note of a runner that is gone, removed"
            ));
            let _ = files::remove(&dir.job_marker(n));
        }
    }
    running
}

fn tree_size(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    std::fs::read_dir(p)
        .map(|e| e.flatten().map(|e| tree_size(&e.path())).sum())
        .unwrap_or(0)
}

fn older(p: &Path, cutoff: SystemTime) -> bool {
    std::fs::symlink_metadata(p)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t < cutoff)
}

/// Work directories to remove: roots of slots the node no longer has, and inside the slots'
/// roots what jobs left in `_work` and old `_diag` logs; all older than `cutoff`.
pub fn stale_directories(settings: &Settings, cutoff: SystemTime) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let slots: BTreeSet<String> = (1..=settings.slots).map(|n| format!("slot-{n}")).collect();
    if let Ok(entries) = std::fs::read_dir(&settings.work_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !slots.contains(&name) && older(&e.path(), cutoff) {
                out.push(e.path());
            }
        }
    }
    for n in 1..=settings.slots {
        let root = settings.root(n);
        for sub in ["_work", "_diag"] {
            if let Ok(entries) = std::fs::read_dir(root.join(sub)) {
                for e in entries.flatten() {
                    if older(&e.path(), cutoff) {
                        out.push(e.path());
                    }
                }
            }
        }
    }
    out
}

/// Prunes; `Err` when a job kept running past the wait (nothing removed then).
pub async fn prune(
    dir: &NodeDir,
    settings: &Settings,
    args: &PruneArgs,
    docker: &Docker,
    forge: Option<&dyn NodeForge>,
    run: &mut Run,
) -> anyhow::Result<Reclaimed> {
    let older_than = args
        .older_than
        .map_or(Duration::from_secs(settings.prune_older_than_secs), |d| d.0);
    let hours = older_than.as_secs().div_ceil(3600).max(1);
    let wait = args.wait.map_or(Duration::ZERO, |d| d.0);
    let deadline = Instant::now() + wait;
    run.detail(
        "filters",
        json!({ "older_than_hours": hours, "labels": [format!("{NODE_LABEL}={}", settings.name), "<6-hex runner key>"] }),
    );
    // The lock, with no job running under it: a job start takes the lock too, so none starts.
    let _lock = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(lock) = hook::exclusive(dir, left)? else {
            anyhow::bail!("a job is starting on this host (the node's lock is held): not pruning");
        };
        let mut running = running_jobs(dir, settings, run);
        if settings.docker {
            running.extend(busy_containers(dir, settings, forge).await);
        }
        if running.is_empty() {
            break lock;
        }
        drop(lock);
        if Instant::now() >= deadline {
            let list: Vec<String> = running
                .iter()
                .map(|r| {
                    format!(
                        "slot {} runs {} of {} (run {}) since {}",
                        r.slot,
                        r.job.job,
                        r.job.repository,
                        r.job.run_id,
                        files::iso(r.job.started_ms)
                    )
                })
                .collect();
            anyhow::bail!(
                "not pruning while a job runs: {}; try later, or give --wait DURATION",
                list.join("; ")
            );
        }
        eprintln!("mayfly: a job runs on this host; prune waits for it");
        tokio::time::sleep(Duration::from_secs(2)).await;
    };

    let cutoff_ms = now_ms() - i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
    let cutoff = SystemTime::now()
        .checked_sub(older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut done = Reclaimed::default();
    let live: BTreeSet<String> = (1..=settings.slots)
        .filter_map(|n| runner_key(&settings.root(n)))
        .collect();

    match docker.server_version().await {
        Err(e) if settings.docker => return Err(anyhow::anyhow!("docker: {e}")),
        Err(e) => {
            run.finding(format!("docker: not pruned ({e})"));
            run.debug(format!("docker version: {e}"));
        }
        Ok(_) => {
            prune_docker(
                docker,
                settings,
                &live,
                cutoff_ms,
                hours,
                args.dry_run,
                &mut done,
                run,
            )
            .await?
        }
    }

    for path in stale_directories(settings, cutoff) {
        let size = tree_size(&path);
        run.debug(format!("directory {} ({size} bytes)", path.display()));
        if !args.dry_run {
            layout::remove_tree(&path)
                .map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", path.display()))?;
        }
        done.directories.push((path, size));
    }
    Ok(done)
}

#[allow(clippy::too_many_arguments)]
async fn prune_docker(
    docker: &Docker,
    settings: &Settings,
    live: &BTreeSet<String>,
    cutoff_ms: i64,
    hours: u64,
    dry_run: bool,
    done: &mut Reclaimed,
    run: &mut Run,
) -> anyhow::Result<()> {
    let exec = |args: Vec<String>| async move { docker.exec(&args, &[]).await };
    let old = |created: &str| docker_time(created).is_some_and(|t| t < cutoff_ms);

    let out = exec(exited_containers_args()).await?;
    for line in out.lines() {
        let Some(f) = json_line(line) else { continue };
        let labels = parse_labels(f.get("Labels").map_or("", String::as_str));
        let created = f.get("CreatedAt").cloned().unwrap_or_default();
        if leftover(&labels, &settings.name, live) && old(&created) {
            let id = f.get("ID").cloned().unwrap_or_default();
            let name = f.get("Names").cloned().unwrap_or_default();
            run.debug(format!("container {id} {name} created {created}"));
            if !dry_run {
                exec(vec!["rm".into(), "--volumes".into(), id.clone()]).await?;
            }
            done.containers.push(name);
        }
    }

    let out = exec(networks_args()).await?;
    for line in out.lines() {
        let Some(f) = json_line(line) else { continue };
        let labels = parse_labels(f.get("Labels").map_or("", String::as_str));
        let created = f.get("CreatedAt").cloned().unwrap_or_default();
        if leftover(&labels, &settings.name, live) && old(&created) {
            let name = f.get("Name").cloned().unwrap_or_default();
            if !dry_run {
                // One still in use is not a leftover: Docker refuses, and it is kept.
                if let Err(e) = exec(vec!["network".into(), "rm".into(), name.clone()]).await {
                    run.finding(format!("network {name} kept: {e}"));
                    continue;
                }
            }
            done.networks.push(name);
        }
    }

    // Volumes: by label only. Runner keys seen on dangling volumes that no live runner holds.
    let out = exec(dangling_volumes_args()).await?;
    let mut labels: BTreeSet<String> = BTreeSet::new();
    labels.insert(format!("{NODE_LABEL}={}", settings.name));
    for line in out.lines() {
        let Some(f) = json_line(line) else { continue };
        for k in parse_labels(f.get("Labels").map_or("", String::as_str)).keys() {
            if is_runner_key(k) && !live.contains(&k.to_ascii_lowercase()) {
                labels.insert(k.clone());
            }
        }
    }
    if dry_run {
        run.finding(format!(
            "would prune unused volumes labelled {}",
            labels.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    } else {
        for label in &labels {
            done.volumes_bytes += reclaimed_bytes(&exec(volume_prune_args(label)).await?);
        }
        done.images_bytes += reclaimed_bytes(&exec(image_prune_args(hours, None)).await?);
        let own = format!("{NODE_LABEL}={}", settings.name);
        done.images_bytes += reclaimed_bytes(&exec(image_prune_args(hours, Some(&own))).await?);
        match exec(builder_prune_args(hours)).await {
            Ok(out) => done.build_cache_bytes += reclaimed_bytes(&out),
            Err(e) => run.finding(format!("build cache not pruned: {e}")),
        }
    }
    Ok(())
}

/// `1.2 GB`.
pub fn human_bytes(b: u64) -> String {
    let b = b as f64;
    for (unit, size) in [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)] {
        if b >= size {
            return format!("{:.1} {unit}", b / size);
        }
    }
    format!("{b} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_commands_are_filtered_and_never_system_wide() {
        assert_eq!(
            volume_prune_args("3fa2c1").join(" "),
            "volume prune --force --filter label=3fa2c1"
        );
        assert_eq!(
            image_prune_args(240, None).join(" "),
            "image prune --force --filter until=240h"
        );
        assert_eq!(
            image_prune_args(240, Some("mayfly-node=ci")).join(" "),
            "image prune --force --all --filter until=240h --filter label=mayfly-node=ci"
        );
        assert_eq!(
            builder_prune_args(240).join(" "),
            "builder prune --force --filter until=240h"
        );
        for args in [
            exited_containers_args(),
            networks_args(),
            dangling_volumes_args(),
            volume_prune_args("x"),
            image_prune_args(1, None),
        ] {
            assert_ne!(args[0], "system");
            assert!(!args.contains(&"--all".to_string()) || args[0] != "volume");
        }
    }

    #[test]
    fn docker_output_is_read() {
        assert_eq!(
            docker_time("2026-05-01 12:00:00 +0000 UTC"),
            docker_time("2026-05-01 14:00:00.5 +0200 CEST")
        );
        assert!(docker_time("yesterday").is_none());
        assert_eq!(
            reclaimed_bytes("Deleted: x\nTotal reclaimed space: 1.5GB\n"),
            1_500_000_000
        );
        assert_eq!(reclaimed_bytes("Total reclaimed space: 0B"), 0);
        assert_eq!(human_bytes(1_500_000_000), "1.5 GB");
        assert!(is_runner_key("3fa2c1") && !is_runner_key("mayfly") && !is_runner_key("3fa2c"));
    }

    /// A forge whose only runner (7) is busy or not.
    struct OneRunner(bool);

    #[async_trait::async_trait]
    impl NodeForge for OneRunner {
        fn kind(&self) -> &'static str {
            "test"
        }
        fn scope(&self) -> String {
            "test".into()
        }
        async fn register(
            &self,
            _: &str,
            _: &[String],
        ) -> Result<(u64, mayfly_core::Secret), super::super::forge::ForgeError> {
            unreachable!()
        }
        async fn runner(
            &self,
            id: u64,
        ) -> Result<Option<super::super::forge::Runner>, super::super::forge::ForgeError> {
            Ok((id == 7).then(|| super::super::forge::Runner {
                id,
                name: "ci-1-1".into(),
                online: true,
                busy: self.0,
            }))
        }
        async fn runners_named(
            &self,
            _: &str,
        ) -> Result<Vec<super::super::forge::Runner>, super::super::forge::ForgeError> {
            Ok(Vec::new())
        }
        async fn remove(&self, _: u64) -> Result<(), super::super::forge::ForgeError> {
            Ok(())
        }
        async fn probe(
            &self,
        ) -> Result<mayfly_forge::github::Probe, super::super::forge::ForgeError> {
            unreachable!()
        }
        fn runner_command(&self, _: &Path, _: &mayfly_core::Secret) -> Vec<String> {
            Vec::new()
        }
    }

    #[tokio::test]
    async fn a_busy_container_slot_stops_prune_and_so_does_not_knowing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = NodeDir(tmp.path().to_path_buf());
        let settings: Settings = serde_json::from_value(serde_json::json!({
            "forge": "github", "name": "ci", "scope": {"kind": "organization", "name": "acme"},
            "labels": ["self-hosted"], "runner_group": null, "slots": 1,
            "runner_dir": "/home/runner", "work_dir": tmp.path().join("slots"), "user": "root",
            "docker": true, "docker_image": "img", "stop_timeout_secs": 60,
            "prune_older_than_secs": 60, "prune_timer": false, "prune_wait_secs": 60,
            "config_file": null, "mayfly": "/usr/bin/mayfly"
        }))
        .unwrap();
        let state = SlotState {
            slot: 1,
            runner: Some(files::RunnerRun {
                id: 7,
                name: "ci-1-1".into(),
                process: None,
                container: Some("mayfly-node-ci-1".into()),
                started_ms: 1,
            }),
            ..SlotState::default()
        };
        files::write(&dir.slot_state(1), &state).unwrap();
        assert_eq!(
            busy_containers(&dir, &settings, Some(&OneRunner(true)))
                .await
                .len(),
            1
        );
        assert!(
            busy_containers(&dir, &settings, Some(&OneRunner(false)))
                .await
                .is_empty()
        );
        assert_eq!(
            busy_containers(&dir, &settings, None).await.len(),
            1,
            "unknown: assumed busy"
        );
    }

    #[test]
    fn leftovers_are_this_node_s_or_dead_runners_keys() {
        let live: BTreeSet<String> = ["aaaaaa".to_string()].into();
        let l = |s: &str| parse_labels(s);
        assert!(leftover(&l("mayfly-node=ci"), "ci", &live));
        assert!(!leftover(&l("mayfly-node=other"), "ci", &live));
        assert!(leftover(&l("bbbbbb="), "ci", &live));
        assert!(!leftover(&l("aaaaaa="), "ci", &live), "a live runner's");
        assert!(!leftover(&l("com.docker.compose.project=x"), "ci", &live));
    }
}
