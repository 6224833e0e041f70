//! The layers over the file, in rising precedence: built-in defaults, then the environment
//! (`GITHUB_*`, `HETZNER_TOKEN`, `RUST_LOG`), then command-line flags and their `MAYFLY_*` variables.

use super::error::{Origin, Problem};
use super::schema::{PoolConfig, Provider, ProviderKind};
use super::source::{FileSpans, parent};
use super::values::{LogFormat, StateUrl};
use super::{Config, Env};
use mayfly_core::Secret;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Values from the command line (clap has already folded in their `MAYFLY_*` variables).
/// No `Debug`: the state URL may hold a password.
#[derive(Clone, Default)]
pub struct Overrides {
    pub state: Option<String>,
    pub listen: Option<SocketAddr>,
    pub log_format: Option<LogFormat>,
    pub log_level: Option<String>,
}

/// Where each value came from, so a problem found later names the file position, the
/// environment variable or the flag that set it.
#[derive(Default)]
pub struct Origins {
    file: Option<FileSpans>,
    set: BTreeMap<String, Origin>,
}

impl Origins {
    pub fn new(file: Option<FileSpans>) -> Self {
        Origins {
            file,
            set: BTreeMap::new(),
        }
    }

    fn set(&mut self, key: impl Into<String>, origin: Origin) {
        self.set.insert(key.into(), origin);
    }

    /// The origin of `key`, or of the nearest enclosing key with one.
    pub fn of(&self, key: &str) -> Option<Origin> {
        let mut key = key;
        loop {
            if let Some(o) = self.set.get(key) {
                return Some(o.clone());
            }
            if let Some(o) = self.file.as_ref().and_then(|f| f.origin(key)) {
                return Some(o);
            }
            key = parent(key)?;
        }
    }
}

/// Without providers, one Hetzner provider named `hetzner`; without pools either, one `default`
/// pool on it, so a user with only environment variables gets a working controller.
pub fn defaults(config: &mut Config) {
    if !config.providers.is_empty() {
        return;
    }
    config
        .providers
        .insert("hetzner".into(), Provider::of_kind(ProviderKind::Hetzner));
    if config.pools.is_empty() {
        config.pools.push(PoolConfig {
            name: "default".into(),
            provider: "hetzner".into(),
            labels: vec!["self-hosted".into()],
            types: vec!["cx23".into()],
            locations: vec!["fsn1".into()],
            image: Default::default(),
            max: None,
            standby: 0,
            forges: Vec::new(),
        });
    }
}

pub fn environment(config: &mut Config, env: &Env, origins: &mut Origins) {
    if let Some(token) = env.nonempty("GITHUB_TOKEN") {
        config.github.token = Some(Secret::new(token));
        origins.set("github.token", Origin::Env("GITHUB_TOKEN"));
    }
    if let Some(repo) = env.nonempty("GITHUB_REPOSITORY") {
        let repos = &mut config.github.repositories;
        if !repos.iter().any(|r| r.eq_ignore_ascii_case(repo)) {
            origins.set(
                format!("github.repositories[{}]", repos.len()),
                Origin::Env("GITHUB_REPOSITORY"),
            );
            repos.push(repo.to_string());
        }
    }
    if let Some(level) = env.nonempty("RUST_LOG") {
        config.log_level = level.to_string();
        origins.set("log_level", Origin::Env("RUST_LOG"));
    }
    // Only providers without their own value: one variable cannot tell two Hetzner projects apart.
    for (name, p) in config
        .providers
        .iter_mut()
        .filter(|(_, p)| p.kind == ProviderKind::Hetzner)
    {
        if p.token.as_ref().is_none_or(Secret::is_empty)
            && let Some(token) = env.nonempty("HETZNER_TOKEN")
        {
            p.token = Some(Secret::new(token));
            origins.set(
                format!("providers.{name}.token"),
                Origin::Env("HETZNER_TOKEN"),
            );
        }
        if p.endpoint.is_none()
            && let Some(endpoint) = env.nonempty("HCLOUD_ENDPOINT")
        {
            p.endpoint = Some(endpoint.to_string());
            origins.set(
                format!("providers.{name}.endpoint"),
                Origin::Env("HCLOUD_ENDPOINT"),
            );
        }
    }
}

pub fn flags(config: &mut Config, o: &Overrides, origins: &mut Origins) -> Result<(), Problem> {
    if let Some(state) = &o.state {
        let origin = Origin::Flag("--state/MAYFLY_STATE");
        config.state = Some(
            state
                .parse()
                .map_err(|m: String| Problem::new("state", m).at(Some(origin.clone())))?,
        );
        origins.set("state", origin);
    }
    if let Some(listen) = o.listen {
        config.listen = listen;
        origins.set("listen", Origin::Flag("--listen/MAYFLY_LISTEN"));
    }
    if let Some(format) = o.log_format {
        config.log_format = format;
        origins.set("log_format", Origin::Flag("--log-format/MAYFLY_LOG_FORMAT"));
    }
    if let Some(level) = &o.log_level {
        config.log_level = level.clone();
        origins.set("log_level", Origin::Flag("--log-level/MAYFLY_LOG_LEVEL"));
    }
    Ok(())
}

/// Files named in the config file are found from the file's directory, wherever mayfly runs.
/// The API token file defaults to `api.token` in the state directory.
pub fn relative_files(config: &mut Config, file: Option<&Path>) {
    let base = file.and_then(Path::parent);
    if let Some(app) = &mut config.github.app
        && let Some(base) = base
        && app.private_key_file.is_relative()
    {
        app.private_key_file = base.join(&app.private_key_file);
    }
    match &mut config.api.token_file {
        Some(path) => {
            if let Some(base) = base
                && path.is_relative()
            {
                *path = base.join(&*path);
            }
        }
        None => config.api.token_file = config.state_dir.as_ref().map(|d| d.join("api.token")),
    }
    super::local::settle_paths(config, base);
}

/// Settles `state_dir` (made absolute, relative to the config file) and `state` (default:
/// `mayfly.db` in `state_dir`, itself defaulting to `$XDG_STATE_HOME/mayfly` or `~/.local/state/mayfly`).
pub fn state(
    config: &mut Config,
    env: &Env,
    file: Option<&Path>,
    origins: &Origins,
) -> Result<(), Problem> {
    let dir = match config.state_dir.take() {
        Some(dir) => Some(
            file.and_then(Path::parent)
                .map_or_else(|| dir.clone(), |base| base.join(&dir)),
        ),
        None => env
            .nonempty("XDG_STATE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| {
                env.nonempty("HOME")
                    .map(|home| Path::new(home).join(".local/state"))
            })
            .map(|base| base.join("mayfly")),
    };
    config.state_dir = dir.map(|d| std::path::absolute(&d).unwrap_or(d));
    if config.state.is_none() {
        let dir = config.state_dir.as_deref().ok_or_else(|| {
            Problem::new("state_dir", "cannot choose a state directory")
                .at(origins.of("state_dir"))
                .hint(Some(
                    "set state_dir or state, or the XDG_STATE_HOME or HOME environment variable"
                        .into(),
                ))
        })?;
        config.state = Some(StateUrl::sqlite_in(dir));
    }
    Ok(())
}
