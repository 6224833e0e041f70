//! The config file's shape: serde structs, one per TOML table, with their defaults.
//! Kept apart from the runtime types of mayfly-core; `Config::pools` converts.

use super::values::{HumanDuration, ImageRef, LogFormat, StateUrl};
use mayfly_core::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The whole configuration. Every table may be left out; an empty file is valid once the
/// environment provides the GitHub token and repository and the Hetzner token.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Tagged on every instance and the prefix of every instance name: two controllers sharing a
    /// cloud project must have different ids.
    pub controller: String,
    /// Directory of the default SQLite state; relative paths are taken from the config file's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// Always set once loading is done (default: `mayfly.db` in `state_dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<StateUrl>,
    pub listen: SocketAddr,
    pub log_format: LogFormat,
    /// A tracing filter: `info`, or `mayfly=debug,info`.
    pub log_level: String,
    pub github: Github,
    pub providers: BTreeMap<String, Provider>,
    pub limits: Limits,
    pub deadlines: Deadlines,
    pub intervals: Intervals,
    pub recycling: Recycling,
    pub labels: LabelsConfig,
    pub pools: Vec<PoolConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            controller: "mayfly".into(),
            state_dir: None,
            state: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            github: Github::default(),
            providers: BTreeMap::new(),
            limits: Limits::default(),
            deadlines: Deadlines::default(),
            intervals: Intervals::default(),
            recycling: Recycling::default(),
            labels: LabelsConfig::default(),
            pools: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Github {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// `owner/repo` scopes whose jobs mayfly serves with repository-level runners.
    pub repositories: Vec<String>,
    /// An organization whose jobs mayfly serves with organization-level runners.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// `https://HOST/api/v3` for GitHub Enterprise Server.
    pub api_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner_group: Option<String>,
    /// Poll the repositories for queued jobs (conditional requests: an idle poll costs no
    /// budget). Off only when every job reaches mayfly by webhook.
    pub poll: bool,
}

impl Default for Github {
    fn default() -> Self {
        Github {
            token: None,
            repositories: Vec::new(),
            organization: None,
            api_url: "https://api.github.com".into(),
            poll: true,
            webhook_secret: None,
            runner_group: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    Hetzner,
    AwsEc2,
    AwsAsg,
    AwsEcs,
    Local,
}

/// One place machines come from, named by the table key (`[providers.hetzner]`), so two Hetzner
/// projects can be two providers.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub kind: ProviderKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// The API's base URL, for a proxy or a fake in tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_label_set: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_workflow_run: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Deadlines {
    pub registration: HumanDuration,
    pub idle: HumanDuration,
    pub powered_off: HumanDuration,
    pub max_lifetime: HumanDuration,
}

impl Default for Deadlines {
    fn default() -> Self {
        let d = mayfly_core::Deadlines::default();
        Deadlines {
            registration: HumanDuration(d.registration),
            idle: HumanDuration(d.idle),
            powered_off: HumanDuration(d.powered_off),
            max_lifetime: HumanDuration(d.max_lifetime),
        }
    }
}

/// How often mayfly looks without being woken: the reconcile timer, and the forge poll that
/// catches jobs whose webhook never arrived.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Intervals {
    pub reconcile: HumanDuration,
    pub poll: HumanDuration,
    /// A job the store holds as queued this long is confirmed with GitHub, so a lost
    /// `completed` webhook never keeps a machine waiting for it.
    pub confirm_queued: HumanDuration,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            reconcile: HumanDuration::secs(15),
            poll: HumanDuration::secs(60),
            confirm_queued: HumanDuration::secs(600),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Recycling {
    pub enabled: bool,
    pub margin: HumanDuration,
}

impl Default for Recycling {
    fn default() -> Self {
        let r = mayfly_core::Recycling::default();
        Recycling {
            enabled: r.enabled,
            margin: HumanDuration(r.margin),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelsConfig {
    /// Put in front of every dynamic label (`type-`, `in-`, `image-`) when set.
    pub prefix: String,
    /// One job label standing for several: `big-arm = ["type-cax41", "in-fsn1"]`.
    pub meta: BTreeMap<String, Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub name: String,
    pub provider: String,
    pub labels: Vec<String>,
    /// Machine types in order of preference.
    #[serde(default)]
    pub types: Vec<String>,
    /// Locations in order of preference.
    #[serde(default)]
    pub locations: Vec<String>,
    #[serde(default)]
    pub image: ImageRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    #[serde(default)]
    pub standby: u32,
}
