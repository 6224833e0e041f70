//! What a node is, settled once at `register`: `[node]` and the flags over it, checked key by
//! key, resolved into absolute paths and a scope, and kept in the node directory as
//! `node.json`, which every later verb and each slot reads.

use crate::config::{Config, HumanDuration, NodeConfig};
use anyhow::Context;
use mayfly_forge::github::RunnerGroup;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Most slots one host may run: each is a runner root and a systemd unit.
pub const MAX_SLOTS: u32 = 64;

/// The flags of `mayfly node register`, each overriding its `[node]` key.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Flags {
    /// How many runners run at once [config: node.slots, default 1]
    #[arg(long, value_name = "N")]
    pub slots: Option<u32>,
    /// Labels of the runners, comma separated [config: node.labels, default
    /// self-hosted,linux,<arch>]
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// Runner group of organization runners, by name or id [config: node.runner_group]
    #[arg(long, value_name = "GROUP")]
    pub runner_group: Option<String>,
    /// Register repository runners in owner/repo [config: node.repository, default the first
    /// of github.repositories]
    #[arg(long, value_name = "OWNER/REPO", conflicts_with = "organization")]
    pub repository: Option<String>,
    /// Register organization runners in ORG [config: node.organization, default
    /// github.organization]
    #[arg(long, value_name = "ORG")]
    pub organization: Option<String>,
    /// Prefix of the runner names [config: node.name, default the host name]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The installed runner, or where to install it [config: node.runner_dir]
    #[arg(long, value_name = "DIR")]
    pub runner_dir: Option<PathBuf>,
    /// Where the slots' runner roots live [config: node.work_dir]
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// The user the slots and their jobs run as [config: node.user, default you]
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Install a daily timer that prunes what jobs left behind [config: node.prune_timer]
    #[arg(long)]
    pub prune_timer: bool,
}

/// Where runners register.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "name")]
pub enum Scope {
    Repository(String),
    Organization(String),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Repository(r) => write!(f, "repository {r}"),
            Scope::Organization(o) => write!(f, "organization {o}"),
        }
    }
}

/// The node as registered: `node.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// `github` now; GitLab's runners come with its forge.
    pub forge: String,
    pub name: String,
    pub scope: Scope,
    pub labels: Vec<String>,
    pub runner_group: Option<RunnerGroup>,
    pub slots: u32,
    pub runner_dir: PathBuf,
    pub work_dir: PathBuf,
    pub user: String,
    pub docker: bool,
    pub docker_image: Option<String>,
    pub stop_timeout_secs: u64,
    pub prune_older_than_secs: u64,
    pub prune_timer: bool,
    pub prune_wait_secs: u64,
    /// The config file the slots read the GitHub credential from (absolute), if any.
    pub config_file: Option<PathBuf>,
    /// The mayfly binary the units and hooks run.
    pub mayfly: PathBuf,
}

impl Settings {
    /// The runner root of slot `n` (1-based).
    pub fn root(&self, n: u32) -> PathBuf {
        self.work_dir.join(format!("slot-{n}"))
    }

    /// The prefix every runner name of this node starts with.
    pub fn prefix(&self) -> String {
        format!("{}-", self.name)
    }

    pub fn stop_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.stop_timeout_secs)
    }
}

fn runner_name_ok(s: &str) -> bool {
    (1..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !s.starts_with(['-', '.'])
}

fn github_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// What is wrong with `[node]` on its own, each `(key, message, hint)`: checked with the rest
/// of the configuration by `config check`.
pub fn problems(n: &NodeConfig) -> Vec<(String, String, Option<String>)> {
    let mut out = Vec::new();
    let mut problem = |k: &str, m: String, h: Option<&str>| {
        out.push((format!("node.{k}"), m, h.map(str::to_string)))
    };
    if n.slots == 0 || n.slots > MAX_SLOTS {
        problem("slots", format!("must be 1 to {MAX_SLOTS}"), None);
    }
    if let Some(name) = &n.name
        && !runner_name_ok(name)
    {
        problem(
            "name",
            "letters, digits, `-`, `_` and `.`, at most 40, not starting with `-` or `.`".into(),
            None,
        );
    }
    for (i, l) in n.labels.iter().enumerate() {
        if l.trim().is_empty() || l.contains(',') {
            problem(
                &format!("labels[{i}]"),
                "empty, or holds a comma".into(),
                None,
            );
        }
    }
    if n.repository.is_some() && n.organization.is_some() {
        problem(
            "organization",
            "give repository or organization, not both".into(),
            None,
        );
    }
    if let Some(r) = &n.repository
        && !r
            .split_once('/')
            .is_some_and(|(o, r)| github_name(o) && github_name(r))
    {
        problem("repository", "expected `owner/repo`".into(), None);
    }
    if let Some(o) = &n.organization
        && !github_name(o)
    {
        problem("organization", "expected an organization name".into(), None);
    }
    if !n.runner_dir.is_absolute() && n.runner_dir.components().count() == 0 {
        problem("runner_dir", "is empty".into(), None);
    }
    if n.docker && n.docker_image.is_none() {
        problem(
            "docker_image",
            "docker = true needs an image with the runner installed".into(),
            Some("for example \"ghcr.io/actions/actions-runner:2.338.0\""),
        );
    }
    if let Some(u) = &n.user
        && (u.is_empty() || u.contains(['/', ':', ' ']))
    {
        problem("user", "not a user name".into(), None);
    }
    for (k, v) in [
        ("disk_warn_gib", n.disk_warn_gib),
        ("disk_fail_gib", n.disk_fail_gib),
        ("disk_warn_percent", n.disk_warn_percent),
        ("disk_fail_percent", n.disk_fail_percent),
    ] {
        if !(v.is_finite() && v >= 0.0) || (k.ends_with("percent") && v > 100.0) {
            problem(
                k,
                "must be a number from 0 (100 at most for a percent)".into(),
                None,
            );
        }
    }
    out
}

/// The host name, for the default node name: `/proc/sys/kernel/hostname`, up to its first dot.
fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let short = h.trim().split('.').next()?.to_string();
    runner_name_ok(&short).then_some(short)
}

/// The architecture label the runner registers with by default.
pub fn arch_label() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "x64"
    }
}

fn absolute(p: &Path, base: Option<&Path>) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        let joined = base.map_or_else(|| p.to_path_buf(), |b| b.join(p));
        std::path::absolute(&joined).unwrap_or(joined)
    }
}

/// Settles the node from the configuration and the flags. `dir` is the node directory (for
/// the default work directory), `user` the account the slots run as unless configured.
pub fn resolve(
    config: &Config,
    config_file: Option<&Path>,
    flags: &Flags,
    dir: &Path,
    user: &str,
) -> anyhow::Result<Settings> {
    let n = &config.node;
    let base = config_file.and_then(Path::parent);
    let name = match flags.name.clone().or_else(|| n.name.clone()) {
        Some(name) => name,
        None => hostname().context(
            "node.name: the host name is not a usable runner name; set node.name or --name",
        )?,
    };
    if !runner_name_ok(&name) {
        anyhow::bail!(
            "--name/node.name {name:?}: letters, digits, `-`, `_` and `.`, at most 40, not \
             starting with `-` or `.`"
        );
    }
    let slots = flags.slots.unwrap_or(n.slots);
    if slots == 0 || slots > MAX_SLOTS {
        anyhow::bail!("--slots/node.slots {slots}: must be 1 to {MAX_SLOTS}");
    }
    let gh = &config.github;
    let scope = match (
        flags.repository.clone().or_else(|| n.repository.clone()),
        flags
            .organization
            .clone()
            .or_else(|| n.organization.clone()),
    ) {
        (Some(r), _) => Scope::Repository(r),
        (None, Some(o)) => Scope::Organization(o),
        (None, None) => match (&gh.organization, gh.repositories.first()) {
            (Some(o), _) => Scope::Organization(o.clone()),
            (None, Some(r)) => Scope::Repository(r.clone()),
            (None, None) => anyhow::bail!(
                "no scope for the node's runners: set node.repository or node.organization, \
                 github.repositories or github.organization, or --repository/--organization"
            ),
        },
    };
    match &scope {
        Scope::Repository(r)
            if !r
                .split_once('/')
                .is_some_and(|(o, r)| github_name(o) && github_name(r)) =>
        {
            anyhow::bail!("--repository/node.repository {r:?}: expected owner/repo")
        }
        Scope::Organization(o) if !github_name(o) => {
            anyhow::bail!("--organization/node.organization {o:?}: expected an organization name")
        }
        _ => {}
    }
    let labels = match flags.labels.clone() {
        Some(l) => l,
        None if !n.labels.is_empty() => n.labels.clone(),
        None => vec!["self-hosted".into(), "linux".into(), arch_label().into()],
    };
    let labels: Vec<String> = labels
        .into_iter()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if labels.is_empty() {
        anyhow::bail!("--labels/node.labels: at least one label");
    }
    let runner_group = match &flags.runner_group {
        Some(g) => Some(match g.parse::<u64>() {
            Ok(id) => RunnerGroup::Id(id),
            Err(_) => RunnerGroup::Name(g.clone()),
        }),
        None => n.runner_group.clone().or_else(|| gh.runner_group.clone()),
    };
    let runner_dir = absolute(flags.runner_dir.as_deref().unwrap_or(&n.runner_dir), base);
    let work_dir = match flags.work_dir.as_ref().or(n.work_dir.as_ref()) {
        Some(w) => absolute(w, base),
        None => dir.join("slots"),
    };
    if work_dir.starts_with(&runner_dir) || runner_dir.starts_with(&work_dir) {
        anyhow::bail!(
            "node.work_dir {} and node.runner_dir {} must not contain each other",
            work_dir.display(),
            runner_dir.display()
        );
    }
    let secs = |d: HumanDuration| d.0.as_secs();
    let mayfly = std::env::current_exe().context("cannot find the path of the mayfly binary")?;
    Ok(Settings {
        forge: "github".into(),
        name,
        scope,
        labels,
        runner_group,
        slots,
        runner_dir,
        work_dir,
        user: flags
            .user
            .clone()
            .or_else(|| n.user.clone())
            .unwrap_or_else(|| user.to_string()),
        docker: n.docker,
        docker_image: n.docker_image.clone(),
        stop_timeout_secs: secs(n.stop_timeout),
        prune_older_than_secs: secs(n.prune_older_than),
        prune_timer: flags.prune_timer || n.prune_timer,
        prune_wait_secs: secs(n.prune_wait),
        config_file: config_file.map(|f| absolute(f, None)),
        mayfly,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_node_key_is_named() {
        let bad = NodeConfig {
            slots: 0,
            name: Some("-x".into()),
            labels: vec!["a,b".into()],
            repository: Some("noslash".into()),
            docker: true,
            ..NodeConfig::default()
        };
        let keys: Vec<String> = problems(&bad).into_iter().map(|p| p.0).collect();
        for k in [
            "node.slots",
            "node.name",
            "node.labels[0]",
            "node.repository",
            "node.docker_image",
        ] {
            assert!(keys.contains(&k.to_string()), "{k} in {keys:?}");
        }
        assert!(problems(&NodeConfig::default()).is_empty());
    }
}
