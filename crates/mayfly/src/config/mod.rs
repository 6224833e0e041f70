//! mayfly's configuration: a TOML file, the environment and flags layered into one validated
//! `Config`, and its conversion into the planner's `Pools`.

mod aws;
mod error;
mod interpolate;
mod layers;
mod local;
mod schema;
mod source;
mod validate;
mod values;

#[cfg(test)]
mod tests;

pub use error::{ConfigError, Origin, Problem};
pub use layers::Overrides;
pub use schema::{Config, NodeConfig, PoolConfig, Provider as ProviderConfig, ProviderKind};
pub use source::referenced_variables;
pub use values::{HumanDuration, LogFormat};

use mayfly_core::{LabelRules, Labels, MachineSpec, Pool, Pools, Secret};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file read when neither `--config` nor `MAYFLY_CONFIG` names one.
pub const DEFAULT_FILE: &str = "mayfly.toml";

/// A snapshot of environment variables. Passed in rather than read where needed, so tests can
/// give each case its own environment. No `Debug`: it holds tokens. The flag makes an unset
/// `${VAR}` in the file empty instead of an error (see `Config::load_for_planning`).
#[derive(Clone, Default)]
pub struct Env(BTreeMap<String, String>, bool);

impl Env {
    /// The process environment; variables that are not UTF-8 are left out.
    pub fn process() -> Self {
        Env(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            false,
        )
    }

    /// The same environment with `name` set to `value`.
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.0.insert(name.to_string(), value.to_string());
        self
    }

    /// Every variable, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    #[cfg(test)]
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Env(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            false,
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The value of `${name}` in the file: the variable, or nothing (an error) unless unset
    /// variables count as empty.
    fn interpolated(&self, name: &str) -> Option<&str> {
        self.get(name).or(self.1.then_some(""))
    }

    /// Set and not blank: an empty `GITHUB_TOKEN=` counts as unset.
    fn nonempty(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }
}

/// The config file to read: the one named, else `./mayfly.toml` if it exists, else none.
pub fn find_file(named: Option<&Path>) -> Option<PathBuf> {
    match named {
        Some(path) => Some(path.to_path_buf()),
        None => Path::new(DEFAULT_FILE)
            .is_file()
            .then(|| PathBuf::from(DEFAULT_FILE)),
    }
}

impl Config {
    /// Read `file` (if any), lay the environment and the flags over it, fill in defaults and
    /// validate. A returned config is complete: `state` and `state_dir` are set.
    pub fn load(
        file: Option<&Path>,
        overrides: &Overrides,
        env: &Env,
    ) -> Result<Config, ConfigError> {
        Self::load_for(file, overrides, env, validate::Needs::Everything)
    }

    /// As `load`, for commands that only plan (`mayfly estimate`): tokens and the GitHub scope
    /// may be missing, as nothing is called with them, and so may the variables a file takes
    /// them from (`token = "${HETZNER_TOKEN}"`): an unset one reads as empty, and a value that
    /// must not be empty still says so.
    pub fn load_for_planning(
        file: Option<&Path>,
        overrides: &Overrides,
        env: &Env,
    ) -> Result<Config, ConfigError> {
        let env = Env(env.0.clone(), true);
        Self::load_for(file, overrides, &env, validate::Needs::Planning)
    }

    /// As `load`, for `mayfly node`: GitHub and `[node]` are checked, pools and providers
    /// (which the node does not use) are not.
    pub fn load_for_node(
        file: Option<&Path>,
        overrides: &Overrides,
        env: &Env,
    ) -> Result<Config, ConfigError> {
        Self::load_for(file, overrides, env, validate::Needs::Node)
    }

    fn load_for(
        file: Option<&Path>,
        overrides: &Overrides,
        env: &Env,
        needs: validate::Needs,
    ) -> Result<Config, ConfigError> {
        let (mut config, spans) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Problem::new("", format!("cannot read the config file: {e}"))
                        .at(Some(Origin::FileOnly(path.into())))
                })?;
                let (config, spans) = source::parse(path, &text, env)?;
                (config, Some(spans))
            }
            None => (Config::default(), None),
        };
        let mut origins = layers::Origins::new(spans);
        layers::defaults(&mut config);
        layers::environment(&mut config, env, &mut origins);
        layers::flags(&mut config, overrides, &mut origins)?;
        layers::state(&mut config, env, file, &origins)?;
        layers::relative_files(&mut config, file);
        validate::check(&config, &origins, needs)?;
        Ok(config)
    }

    /// The effective configuration as TOML, every secret shown as `<redacted>`.
    pub fn to_redacted_toml(&self) -> Result<String, toml::ser::Error> {
        let mut value = toml::Value::try_from(self)?;
        if let Some(providers) = value.get_mut("providers").and_then(|p| p.as_table_mut()) {
            for (name, table) in providers.iter_mut() {
                let (Some(p), Some(table)) = (self.providers.get(name), table.as_table_mut())
                else {
                    continue;
                };
                table.retain(|key, _| {
                    schema::Provider::key_kinds(key).is_none_or(|kinds| kinds.contains(&p.kind))
                });
            }
        }
        toml::to_string_pretty(&value)
    }

    /// What the GitHub forge needs from this configuration. An App, when set, wins over a token.
    pub fn github(&self) -> mayfly_forge::github::GithubConfig {
        use mayfly_forge::github::{AuthConfig, ClientConfig, GithubConfig, LimitsConfig};
        let gh = &self.github;
        let auth = match (&gh.app, &gh.token) {
            (Some(app), _) => AuthConfig::App {
                app_id: app.id,
                installation_id: app.installation_id,
                private_key_path: app.private_key_file.clone(),
            },
            (None, token) => AuthConfig::Token {
                token: token.clone().unwrap_or_else(|| Secret::new("")),
            },
        };
        let l = &gh.limits;
        GithubConfig {
            client: ClientConfig {
                api_url: gh.api_url.trim_end_matches('/').to_string(),
                auth,
                limits: LimitsConfig {
                    request_timeout_ms: millis(l.request_timeout.0),
                    max_concurrent: l.max_concurrent,
                    write_interval_ms: millis(l.write_interval.0),
                    write_burst: l.write_burst,
                    max_wait_secs: l.max_wait.0.as_secs(),
                    reserve: l.reserve,
                    ..LimitsConfig::default()
                },
            },
            repositories: gh.repositories.clone(),
            organization: gh.organization.clone(),
            enterprise: gh.enterprise.clone(),
            runner_group: gh.runner_group.clone(),
            registration: gh.registration,
        }
    }

    /// The Hetzner provider's settings for `[providers.<name>]`.
    pub fn hetzner(
        &self,
        name: &str,
        p: &schema::Provider,
    ) -> anyhow::Result<mayfly_provider::hetzner::HetznerConfig> {
        if p.kind != schema::ProviderKind::Hetzner {
            anyhow::bail!("kind {} is not available in this version", p.kind.as_str());
        }
        let token = p
            .token
            .clone()
            .ok_or_else(|| anyhow::anyhow!("providers.{name}.token is not set"))?;
        let mut c = mayfly_provider::hetzner::HetznerConfig::new(token);
        if let Some(endpoint) = &p.endpoint {
            c.endpoint = endpoint.trim_end_matches('/').to_string();
        }
        c.ipv4 = p.ipv4;
        c.ipv6 = p.ipv6;
        c.ssh_keys = p.ssh_keys.clone();
        Ok(c)
    }

    /// Whether GitHub is served: a repository, organization or enterprise is set, or GitLab
    /// is not configured (GitHub is then the forge whose missing settings `config check` names).
    pub fn serves_github(&self) -> bool {
        let gh = &self.github;
        self.gitlab.is_none()
            || !gh.repositories.is_empty()
            || gh.organization.is_some()
            || gh.enterprise.is_some()
    }

    /// The forges this configuration serves, GitHub first.
    pub fn forges(&self) -> Vec<mayfly_core::ForgeKind> {
        let mut forges = Vec::with_capacity(2);
        if self.serves_github() {
            forges.push(mayfly_core::ForgeKind::Github);
        }
        if self.gitlab.is_some() {
            forges.push(mayfly_core::ForgeKind::Gitlab);
        }
        forges
    }

    /// What the planner needs from this configuration.
    pub fn pools(&self) -> Pools {
        Pools {
            controller: self.controller.clone(),
            // aws-asg pools size their group on their own (`mayfly::asg`): not the planner's.
            pools: self
                .pools
                .iter()
                .filter(|p| !self.scaled_by_asg(p))
                .map(|p| {
                    let mut pool = p.to_pool();
                    if pool.forges.is_empty() {
                        pool.forges = self.forges();
                    }
                    if let Some(slots) = self.slots_of(p) {
                        pool.max = Some(pool.max.map_or(slots, |m| m.min(slots)));
                        // What the local provider places such a pool on, named for `estimate`
                        // and the `type-`/`in-` labels: a process (or container) here.
                        if pool.spec.types.is_empty() {
                            pool.spec.types = vec![self.local_type(p).into()];
                        }
                        if pool.spec.locations.is_empty() {
                            pool.spec.locations = vec![mayfly_provider::local::LOCATION.into()];
                        }
                    }
                    pool
                })
                .collect(),
            limits: mayfly_core::Limits {
                max_instances: self.limits.max_instances,
                max_per_label_set: self.limits.max_per_label_set,
                max_per_workflow_run: self.limits.max_per_workflow_run,
            },
            deadlines: mayfly_core::Deadlines {
                registration: self.deadlines.registration.0,
                idle: self.deadlines.idle.0,
                powered_off: self.deadlines.powered_off.0,
                max_lifetime: self.deadlines.max_lifetime.0,
            },
            labels: LabelRules::new(self.labels.prefix.clone(), self.labels.meta.clone()),
            recycling: mayfly_core::Recycling {
                // Nothing to recycle when every pool is local (free, never kept): the loop then
                // settles after finished jobs, so their runners are removed promptly.
                enabled: self.recycling.enabled && !self.all_pools_local(),
                margin: self.recycling.margin.0,
            },
            runner_scope: if self.github.organization.is_some() || self.github.enterprise.is_some()
            {
                mayfly_core::RunnerScope::Shared
            } else {
                mayfly_core::RunnerScope::Repository {
                    standby: self.github.repositories.first().cloned(),
                }
            },
            // GitLab's is known once its groups are resolved: the reconciler sets it.
            forge_scopes: Default::default(),
        }
    }
}

impl Config {
    /// Whether every pool runs on a local provider.
    fn all_pools_local(&self) -> bool {
        !self.pools.is_empty() && self.pools.iter().all(|p| self.slots_of(p).is_some())
    }

    /// What retention keeps (`[retention]`), for `Store::prune`.
    pub fn retention(&self) -> mayfly_store::Retention {
        let r = &self.retention;
        mayfly_store::Retention {
            jobs: r.jobs.0,
            deliveries: r.deliveries.0,
            events: r.events.0,
            intents: r.intents.0,
            ..mayfly_store::Retention::default()
        }
    }

    /// The leader election of this replica (`[leader]`), under the name `replica`.
    pub fn leader(&self, replica: impl Into<String>) -> mayfly::leader::LeaderConfig {
        mayfly::leader::LeaderConfig {
            lease: self.leader.lease.0,
            renew_every: self.leader.renew.0,
            // A call may not outlast the time between renewals.
            call_timeout: self.leader.renew.0,
            ..mayfly::leader::LeaderConfig::new(replica)
        }
    }

    /// The listeners' options (`[http]`) under a limit of `fd_limit` open files.
    pub fn serve_options(&self, fd_limit: u64) -> mayfly::http::serve::ServeOptions {
        use mayfly::http::serve::ServeOptions;
        ServeOptions {
            header_timeout: self.http.header_timeout.0,
            body_timeout: self.http.body_timeout.0,
            max_connections: self
                .http
                .max_connections
                .unwrap_or_else(|| ServeOptions::cap_for(fd_limit)),
        }
    }

    /// Where the operator's commands find the API: `api.listen` when set, else `listen`.
    pub fn api_addr(&self) -> std::net::SocketAddr {
        self.api.listen.unwrap_or(self.listen)
    }
}

impl Config {
    /// Whether the pool's provider is an aws-asg group.
    pub fn scaled_by_asg(&self, pool: &PoolConfig) -> bool {
        self.providers
            .get(&pool.provider)
            .is_some_and(|p| p.kind == schema::ProviderKind::AwsAsg)
    }
}

impl PoolConfig {
    pub fn to_pool(&self) -> Pool {
        Pool {
            name: self.name.clone(),
            provider: self.provider.clone(),
            labels: Labels::new(&self.labels),
            spec: MachineSpec {
                types: self.types.clone(),
                locations: self.locations.clone(),
                image: self.image.0.clone(),
            },
            max: self.max,
            standby: self.standby,
            forges: self.forges.clone(),
        }
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
