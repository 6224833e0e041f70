//! The local provider's part of the configuration: what `[providers.<name>]` of kind `local`
//! must hold (and what other kinds must not), and its conversion into the provider's settings.

use super::Config;
use super::schema::{PoolConfig, Provider, ProviderKind};
use mayfly_forge::github::Registration;
use mayfly_provider::local::{LocalConfig, layout};
use std::path::{Path, PathBuf};

/// Where a runner lives in GitHub's runner image (`ghcr.io/actions/actions-runner`).
pub const IMAGE_RUNNER_DIR: &str = "/home/runner";
pub const DEFAULT_SLOTS: u32 = 1;

type Found = Vec<(String, String, Option<String>)>;

/// The problems of one provider's local keys: wrong for a local provider, or set on another.
pub fn problems(
    name: &str,
    p: &Provider,
    pools: &[(usize, &PoolConfig)],
    config: &Config,
    calls: bool,
) -> Found {
    let mut out: Found = Vec::new();
    let mut problem = |key: String, message: &str, hint: Option<&str>| {
        out.push((key, message.to_string(), hint.map(str::to_string)))
    };
    let key = |k: &str| format!("providers.{name}.{k}");
    if p.kind != ProviderKind::Local {
        let set = [
            ("slots", p.slots.is_some()),
            ("runner_dir", p.runner_dir.is_some()),
            ("work_dir", p.work_dir.is_some()),
            ("docker", p.docker.is_some()),
            ("docker_image", p.docker_image.is_some()),
            ("runner_env", !p.runner_env.is_empty()),
            ("stop_timeout", p.stop_timeout.is_some()),
            ("runner_user", p.runner_user.is_some()),
        ];
        for (k, _) in set.iter().filter(|(_, on)| *on) {
            problem(
                key(k),
                &format!(
                    "is a key of local providers only, not of {}",
                    p.kind.as_str()
                ),
                None,
            );
        }
        return out;
    }
    if p.token.is_some() {
        problem(key("token"), "a local provider has no token", None);
    }
    if p.endpoint.is_some() {
        problem(key("endpoint"), "a local provider has no endpoint", None);
    }
    if p.slots == Some(0) {
        problem(key("slots"), "must be at least 1", None);
    }
    if p.stop_timeout.is_some_and(|t| t.0.is_zero()) {
        problem(
            key("stop_timeout"),
            "must be more than 0",
            Some("for example \"10s\""),
        );
    }
    for var in p.runner_env.keys() {
        let ok = var
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            problem(
                format!("providers.{name}.runner_env.{var}"),
                "is not an environment variable name",
                None,
            );
        }
    }
    let docker = p.docker == Some(true);
    if let Some(u) = &p.runner_user {
        if docker {
            problem(
                key("runner_user"),
                "a container runs as its image's user",
                Some("leave runner_user out with docker = true"),
            );
        } else if u.is_empty() || u.contains(['/', ':', ' ']) {
            problem(key("runner_user"), "not a user name", None);
        }
    }
    if docker {
        match &p.docker_image {
            None => problem(
                key("docker_image"),
                "docker = true needs an image with the runner installed",
                Some("for example \"ghcr.io/actions/actions-runner:2.338.0\""),
            ),
            Some(i) if i.trim().is_empty() || i.contains(char::is_whitespace) => {
                problem(key("docker_image"), "is not an image reference", None)
            }
            Some(_) => {}
        }
        if p.runner_dir.as_ref().is_some_and(|d| !d.is_absolute()) {
            problem(
                key("runner_dir"),
                "with docker, the absolute directory of run.sh inside the image",
                None,
            );
        }
    } else {
        if p.docker_image.is_some() {
            problem(
                key("docker_image"),
                "is used only with docker = true",
                Some("set docker = true, or remove docker_image"),
            );
        }
        match &p.runner_dir {
            None => problem(
                key("runner_dir"),
                "not set: the directory of an installed actions/runner (holding run.sh)",
                Some(
                    "extract actions-runner-linux-x64-<version>.tar.gz there, or run `mayfly node register` once to install the pinned runner",
                ),
            ),
            Some(dir) if calls && !layout::has_runner(dir) => problem(
                key("runner_dir"),
                &format!("no executable run.sh in {}", dir.display()),
                None,
            ),
            Some(_) => {}
        }
    }
    if config.github.registration == Registration::Token {
        problem(
            "github.registration".into(),
            &format!("provider {name} is local: its runners start with JIT configs"),
            Some("set github.registration = \"jit\" (the default)"),
        );
    }
    let slots = p.slots.unwrap_or(DEFAULT_SLOTS);
    for (i, pool) in pools {
        if pool.standby > slots {
            problem(
                format!("pools[{i}].standby"),
                &format!(
                    "{} standby runners exceed providers.{name}.slots ({slots})",
                    pool.standby
                ),
                None,
            );
        }
    }
    out
}

/// Settles the paths of local providers: relative to the config file's directory, the work
/// directory defaulting to `local/<name>` in the state directory.
pub fn settle_paths(config: &mut Config, base: Option<&Path>) {
    let state_dir = config.state_dir.clone();
    for (name, p) in config
        .providers
        .iter_mut()
        .filter(|(_, p)| p.kind == ProviderKind::Local)
    {
        let docker = p.docker == Some(true);
        if let Some(base) = base {
            let from_file = |dir: &mut Option<PathBuf>| {
                if let Some(d) = dir.as_mut()
                    && d.is_relative()
                {
                    *d = base.join(&*d);
                }
            };
            from_file(&mut p.work_dir);
            if !docker {
                from_file(&mut p.runner_dir);
            }
        }
        if p.work_dir.is_none() {
            p.work_dir = state_dir.as_ref().map(|s| s.join("local").join(name));
        }
        if docker && p.runner_dir.is_none() {
            p.runner_dir = Some(PathBuf::from(IMAGE_RUNNER_DIR));
        }
    }
}

impl Config {
    /// The local provider's settings for `[providers.<name>]`.
    pub fn local(&self, name: &str, p: &Provider) -> anyhow::Result<LocalConfig> {
        let runner_dir = p
            .runner_dir
            .clone()
            .ok_or_else(|| anyhow::anyhow!("providers.{name}.runner_dir is not set"))?;
        let work_dir = p
            .work_dir
            .clone()
            .ok_or_else(|| anyhow::anyhow!("providers.{name}.work_dir is not set"))?;
        let mut c = LocalConfig::new(p.slots.unwrap_or(DEFAULT_SLOTS), runner_dir, work_dir);
        c.docker = p.docker == Some(true);
        c.docker_image = p.docker_image.clone();
        c.env = p
            .runner_env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        c.runner_user = p.runner_user.clone();
        if let Some(t) = p.stop_timeout {
            c.stop_timeout_ms = u64::try_from(t.0.as_millis()).unwrap_or(u64::MAX);
        }
        Ok(c)
    }

    /// The machine type of a local pool's instances: a process, or a container.
    pub(super) fn local_type(&self, pool: &PoolConfig) -> &'static str {
        let docker = self
            .providers
            .get(&pool.provider)
            .is_some_and(|p| p.docker == Some(true));
        if docker {
            mayfly_provider::local::CONTAINER
        } else {
            mayfly_provider::local::PROCESS
        }
    }

    /// A pool on a local provider never plans more machines than the host has slots.
    pub(super) fn slots_of(&self, pool: &PoolConfig) -> Option<u32> {
        self.providers
            .get(&pool.provider)
            .filter(|p| p.kind == ProviderKind::Local)
            .map(|p| p.slots.unwrap_or(DEFAULT_SLOTS))
    }
}
