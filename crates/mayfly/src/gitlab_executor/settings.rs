//! The executor's own TOML file (the Fargate driver's fargate.toml, for every provider): where
//! its state lives, how it reaches machines over SSH, and the pools a job's tags pick from.

use mayfly_core::{Image, MachineSpec, Secret};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Where gitlab-runner's `[runners.custom]` finds the file unless `--file` says otherwise.
pub const DEFAULT_FILE: &str = "/etc/gitlab-runner/mayfly-executor.toml";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Keys, known_hosts and the machine record of each job, one directory per job (mode 0700).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The store that maps jobs to machines [default: sqlite://<state_dir>/executor.db]. Keep it
    /// apart from a `mayfly run` controller's: the executor's intents are not the planner's.
    pub state: Option<String>,
    /// The controller tag of every machine the executor makes; `reap` touches nothing else.
    #[serde(default = "default_controller")]
    pub controller: String,
    /// Where jobs build and cache on the machine (`builds_dir`, `cache_dir` of config_exec).
    #[serde(default = "default_builds_dir")]
    pub builds_dir: String,
    #[serde(default = "default_cache_dir")]
    pub cache_dir: String,
    /// The shell gitlab-runner writes the stage scripts for, and the machine runs them with.
    #[serde(default = "default_shell")]
    pub shell: String,
    #[serde(default)]
    pub ssh: SshSettings,
    /// A machine whose job is not known to be over is reaped after this long (a job's
    /// timeout plus its cleanup), when the job left no timeout of its own.
    #[serde(default = "default_reap_after")]
    pub reap_after_secs: u64,
    /// A machine created without an address (an ECS task until its network interface is
    /// attached, an EC2 instance until its public IP is) is read again after this pause,
    /// doubling up to `address_poll_max_secs`, until `ssh.ready_timeout_secs` after its create.
    #[serde(default = "default_address_poll")]
    pub address_poll_secs: f64,
    /// Bounds the provider reads of each booting machine (ECS throttles DescribeTasks per
    /// account and region, shared by every job booting at once).
    #[serde(default = "default_address_poll_max")]
    pub address_poll_max_secs: f64,
    #[serde(default, rename = "pool")]
    pub pools: Vec<PoolSettings>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshSettings {
    /// The user the stage scripts run as on the machine.
    pub user: String,
    pub port: u16,
    /// Bounds each TCP connect and key exchange.
    pub connect_timeout_secs: u64,
    /// How long `prepare` waits for the new machine's sshd to answer.
    pub ready_timeout_secs: u64,
    /// How long `run` retries a connection that failed before the script started.
    pub retry_for_secs: u64,
    /// Keep-alive probes: a connection silent for interval × count is dropped.
    pub alive_interval_secs: u64,
    pub alive_count: u32,
    /// Where on the machine each stage invocation claims its directory (relative: to the
    /// user's home), so no stage runs twice.
    pub runs_dir: String,
}

impl Default for SshSettings {
    fn default() -> Self {
        SshSettings {
            user: "root".into(),
            port: 22,
            connect_timeout_secs: 10,
            ready_timeout_secs: 300,
            retry_for_secs: 120,
            alive_interval_secs: 15,
            alive_count: 4,
            runs_dir: ".mayfly-runs".into(),
        }
    }
}

/// One kind of machine, and the jobs it serves.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSettings {
    pub name: String,
    /// Picked when the runner's tags (`CI_RUNNER_TAGS`) include all of these; a pool without
    /// tags takes what no other pool matched.
    #[serde(default)]
    pub tags: Vec<String>,
    /// `hetzner`, `aws-ec2` or `aws-ecs`.
    pub provider: String,
    /// Machine types (Hetzner server types, EC2 instance types), in order of preference.
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub locations: Vec<String>,
    /// `arch:kind:name`, e.g. `x86:system:ubuntu-24.04`; for aws-ecs the task definition family
    /// is chosen by its labels tag (the pool's tags).
    #[serde(default = "default_image")]
    pub image: String,
    /// Commands run once by cloud-init before sshd takes the job's key (VMs only).
    #[serde(default)]
    pub setup: Vec<String>,
    pub hetzner: Option<HetznerSettings>,
    #[serde(rename = "aws")]
    pub aws: Option<AwsSettings>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HetznerSettings {
    /// The API token, or
    pub token: Option<Secret>,
    /// a file holding it (mode 0600), or HCLOUD_TOKEN.
    pub token_file: Option<PathBuf>,
    pub endpoint: Option<String>,
    #[serde(default = "yes")]
    pub ipv4: bool,
    #[serde(default = "yes")]
    pub ipv6: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    pub region: Option<String>,
    /// Another endpoint (moto, a VPC endpoint).
    pub endpoint: Option<String>,
    /// aws-ecs: the cluster and its task network.
    pub cluster: Option<String>,
    #[serde(default)]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub assign_public_ip: bool,
    /// `fargate`, `fargate-spot` or `ec2`.
    pub capacity: Option<String>,
    pub container: Option<String>,
    pub labels_tag: Option<String>,
    /// The host key goes to a SecureString parameter under this path, not the environment.
    pub ssm_prefix: Option<String>,
    /// aws-ec2: the AMI or a launch template.
    pub ami: Option<String>,
    pub launch_template: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/mayfly/gitlab-executor")
}
fn default_controller() -> String {
    "mayfly-gitlab-executor".into()
}
fn default_builds_dir() -> String {
    "/builds".into()
}
fn default_cache_dir() -> String {
    "/cache".into()
}
fn default_shell() -> String {
    "bash".into()
}
fn default_reap_after() -> u64 {
    // GitLab's longest job timeout is a month; a day covers the default hour many times over.
    24 * 3600
}
fn default_address_poll() -> f64 {
    0.5
}
fn default_address_poll_max() -> f64 {
    5.0
}
fn default_image() -> String {
    "x86:system:ubuntu-24.04".into()
}

/// What went wrong reading the file: the path, and toml's line and column with the key.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Settings {
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Settings::parse(&text).map_err(|message| SettingsError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Settings, String> {
        let s: Settings = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), String> {
        if self.pools.is_empty() {
            return Err("no [[pool]]: the executor needs one to make machines".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, p) in self.pools.iter().enumerate() {
            let at = format!("pool[{i}] ({})", p.name);
            if p.name.is_empty()
                || !p
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(format!("{at}: name must be letters, digits and '-'"));
            }
            if !names.insert(p.name.as_str()) {
                return Err(format!("{at}: name used twice"));
            }
            match p.provider.as_str() {
                "hetzner" if p.hetzner.is_none() => {
                    return Err(format!("{at}: provider hetzner needs [pool.hetzner]"));
                }
                "aws-ecs" if p.aws.as_ref().and_then(|a| a.cluster.as_ref()).is_none() => {
                    return Err(format!("{at}: provider aws-ecs needs aws.cluster"));
                }
                "aws-ec2" if p.aws.is_none() => {
                    return Err(format!("{at}: provider aws-ec2 needs [pool.aws]"));
                }
                "hetzner" | "aws-ecs" | "aws-ec2" => {}
                other => {
                    return Err(format!(
                        "{at}: provider {other:?} is not one of hetzner, aws-ec2, aws-ecs"
                    ));
                }
            }
            p.image
                .parse::<Image>()
                .map_err(|e| format!("{at}: image: {e}"))?;
        }
        if self.ssh.user.is_empty()
            || !self
                .ssh
                .user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err("ssh.user: not a user name".into());
        }
        if self.ssh.runs_dir.is_empty()
            || self.ssh.runs_dir.contains("..")
            || !self
                .ssh
                .runs_dir
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
        {
            return Err("ssh.runs_dir: a path of [A-Za-z0-9/._-] without '..'".into());
        }
        if self.ssh.connect_timeout_secs == 0 || self.ssh.ready_timeout_secs == 0 {
            return Err("ssh: a timeout of 0 would wait forever or not at all".into());
        }
        let poll = |s: f64| s.is_finite() && (0.01..=3600.0).contains(&s);
        if !poll(self.address_poll_secs) || !poll(self.address_poll_max_secs) {
            return Err("address_poll_secs, address_poll_max_secs: between 0.01 and 3600".into());
        }
        if self.address_poll_max_secs < self.address_poll_secs {
            return Err("address_poll_max_secs: less than address_poll_secs".into());
        }
        if !["bash", "sh"].contains(&self.shell.as_str()) {
            return Err(format!("shell {:?}: bash or sh", self.shell));
        }
        Ok(())
    }

    pub fn state_url(&self) -> String {
        self.state
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.state_dir.join("executor.db").display()))
    }

    /// The pool for a job: the one `wanted` names (the job's `MAYFLY_POOL` variable), else the
    /// first whose tags the runner's all carry, else the first without tags.
    pub fn pool_for(
        &self,
        wanted: Option<&str>,
        runner_tags: &[String],
    ) -> Result<&PoolSettings, String> {
        if let Some(name) = wanted.filter(|w| !w.is_empty()) {
            return self.pools.iter().find(|p| p.name == name).ok_or_else(|| {
                format!("MAYFLY_POOL names pool {name:?}, which is not configured")
            });
        }
        let has = |t: &String| runner_tags.iter().any(|r| r.eq_ignore_ascii_case(t));
        self.pools
            .iter()
            .find(|p| !p.tags.is_empty() && p.tags.iter().all(has))
            .or_else(|| self.pools.iter().find(|p| p.tags.is_empty()))
            .ok_or_else(|| {
                format!(
                    "no pool serves the runner's tags [{}]: give a pool those tags, or add one without tags",
                    runner_tags.join(", ")
                )
            })
    }
}

impl Settings {
    /// The first and the longest pause between reads of a machine without an address.
    pub fn address_poll(&self) -> (std::time::Duration, std::time::Duration) {
        (
            std::time::Duration::from_secs_f64(self.address_poll_secs),
            std::time::Duration::from_secs_f64(self.address_poll_max_secs),
        )
    }
}

impl PoolSettings {
    pub fn spec(&self) -> MachineSpec {
        MachineSpec {
            types: self.types.clone(),
            locations: self.locations.clone(),
            // Checked by `validate`.
            image: self.image.parse().unwrap_or_else(|_| unreachable_image()),
        }
    }
}

fn unreachable_image() -> Image {
    default_image().parse().expect("the default image parses")
}

/// `CI_RUNNER_TAGS`: a JSON array in current GitLab, comma-separated in older ones.
pub fn parse_tags(raw: &str) -> Vec<String> {
    if let Ok(v) = serde_json::from_str::<Vec<String>>(raw) {
        return v;
    }
    raw.split(',')
        .map(|t| t.trim().trim_matches('"').to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
state_dir = "/tmp/x"
[ssh]
port = 2222
[[pool]]
name = "fargate"
tags = ["fargate"]
provider = "aws-ecs"
aws = { region = "eu-west-1", cluster = "ci", subnets = ["subnet-1"] }
[[pool]]
name = "vm"
provider = "hetzner"
types = ["cx22"]
hetzner = { token_file = "/etc/hcloud" }
"#;

    #[test]
    fn pools_are_picked_by_the_runners_tags() {
        let s = Settings::parse(FILE).unwrap();
        assert_eq!(s.ssh.port, 2222);
        assert_eq!(s.ssh.user, "root");
        let tags = parse_tags(r#"["Fargate", "linux"]"#);
        assert_eq!(s.pool_for(None, &tags).unwrap().name, "fargate");
        assert_eq!(
            s.pool_for(None, &parse_tags("linux, docker")).unwrap().name,
            "vm"
        );
        assert_eq!(s.pool_for(Some("vm"), &tags).unwrap().name, "vm");
        let e = s.pool_for(Some("gpu"), &tags).unwrap_err();
        assert!(e.contains("\"gpu\""), "{e}");
    }

    #[test]
    fn bad_files_name_the_problem() {
        let e = Settings::parse("[[pool]]\nname = \"a\"\nprovider = \"gcp\"\n").unwrap_err();
        assert!(e.contains("pool[0] (a)") && e.contains("gcp"), "{e}");
        let e = Settings::parse("stat_dir = 1\n").unwrap_err();
        assert!(e.contains("stat_dir") && e.contains("line 1"), "{e}");
        let e = Settings::parse("[[pool]]\nname = \"a\"\nprovider = \"hetzner\"\n").unwrap_err();
        assert!(e.contains("[pool.hetzner]"), "{e}");
        let e = Settings::parse(&format!("address_poll_secs = 0\n{FILE}")).unwrap_err();
        assert!(e.contains("address_poll_secs"), "{e}");
        let e = Settings::parse(&format!("address_poll_max_secs = 0.1\n{FILE}")).unwrap_err();
        assert!(e.contains("less than address_poll_secs"), "{e}");
        let s = Settings::parse(&format!("address_poll_secs = 1\n{FILE}")).unwrap();
        assert_eq!(s.address_poll().0, std::time::Duration::from_secs(1));
    }
}
