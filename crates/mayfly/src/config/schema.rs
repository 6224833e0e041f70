//! The config file's shape: serde structs, one per TOML table, with their defaults.
//! Kept apart from the runtime types of mayfly-core; `Config::pools` converts.

use super::values::{HumanDuration, ImageRef, LogFormat, StateUrl};
use mayfly_core::Secret;
use mayfly_forge::github::{Registration, RunnerGroup};
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
    pub api: Api,
    /// The listeners' read deadlines and connection cap.
    pub http: Http,
    /// The dashboard's sign-in and event stream deadlines.
    pub dashboard: Dashboard,
    /// The leader lease, when several `mayfly run` share one PostgreSQL state.
    pub leader: Leader,
    /// How long finished things are kept in the state.
    pub retention: Retention,
    pub log_format: LogFormat,
    /// A tracing filter: `info`, or `mayfly=debug,info`.
    pub log_level: String,
    pub github: Github,
    /// GitLab CI projects and groups to serve, beside or instead of GitHub.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gitlab: Option<mayfly_forge::gitlab::GitlabConfig>,
    pub providers: BTreeMap<String, Provider>,
    pub limits: Limits,
    pub deadlines: Deadlines,
    pub intervals: Intervals,
    pub recycling: Recycling,
    pub labels: LabelsConfig,
    /// How many creates, reuses and deletes run at once.
    pub workers: usize,
    /// What a new machine runs: the runner version, a setup script.
    pub bootstrap: mayfly_provider::bootstrap::BootstrapConfig,
    pub pools: Vec<PoolConfig>,
    /// This host as a runner node (`mayfly node register`); `mayfly run` ignores it.
    pub node: NodeConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            controller: "mayfly".into(),
            state_dir: None,
            state: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api: Api::default(),
            http: Http::default(),
            dashboard: Dashboard::default(),
            leader: Leader::default(),
            retention: Retention::default(),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            github: Github::default(),
            gitlab: None,
            providers: BTreeMap::new(),
            limits: Limits::default(),
            deadlines: Deadlines::default(),
            intervals: Intervals::default(),
            recycling: Recycling::default(),
            labels: LabelsConfig::default(),
            workers: 10,
            bootstrap: Default::default(),
            pools: Vec::new(),
            node: NodeConfig::default(),
        }
    }
}

/// `[node]`: this host's runner slots, each a loop of single-use (JIT) runners supervised by
/// systemd. Flags of `mayfly node register` override every key.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// The prefix of this host's runner names, `<name>-<slot>-<n>` (default: the host name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How many runners this host runs at once.
    pub slots: u32,
    /// The labels the runners register with (default: self-hosted, linux and the architecture).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Runner group of organization runners, by name or id (default: github.runner_group).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner_group: Option<RunnerGroup>,
    /// Register repository runners here (default: the first of github.repositories).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Register organization runners here (default: github.organization).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// The installed actions/runner; installed there (the pinned release of [bootstrap],
    /// SHA-256 checked) when it holds none.
    pub runner_dir: PathBuf,
    /// Where each slot's runner root lives (default: slots/ in the node directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<PathBuf>,
    /// The user the slots (and so the jobs) run as (default: the user who registers, the one
    /// behind sudo).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Run each slot's runner in a Docker container of `docker_image`.
    pub docker: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_image: Option<String>,
    /// How long a stopping slot waits for its runner's job to finish before it is killed.
    pub stop_timeout: HumanDuration,
    /// Docker data and work directories older than this are pruned.
    pub prune_older_than: HumanDuration,
    /// `register` installs a daily timer that runs `mayfly node prune`.
    pub prune_timer: bool,
    /// How long the timer's prune waits for the jobs running on the host to finish.
    pub prune_wait: HumanDuration,
    /// Doctor warns when the work directory's file system has less free than this (GiB, and
    /// percent of blocks or inodes), and fails below the `fail` values.
    pub disk_warn_gib: f64,
    pub disk_fail_gib: f64,
    pub disk_warn_percent: f64,
    pub disk_fail_percent: f64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: None,
            slots: 1,
            labels: Vec::new(),
            runner_group: None,
            repository: None,
            organization: None,
            runner_dir: PathBuf::from("/opt/mayfly/actions-runner"),
            work_dir: None,
            user: None,
            docker: false,
            docker_image: None,
            stop_timeout: HumanDuration::secs(6 * 3600),
            prune_older_than: HumanDuration::secs(10 * 86_400),
            prune_timer: false,
            prune_wait: HumanDuration::secs(3600),
            disk_warn_gib: 10.0,
            disk_fail_gib: 1.0,
            disk_warn_percent: 10.0,
            disk_fail_percent: 2.0,
        }
    }
}

/// The HTTP API under `/api/v1/` on `listen`, for `mayfly status`, `list`, `delete`, `ssh` and
/// scripts. Every request carries the token of `token_file` as `Authorization: Bearer …`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Api {
    /// The file holding the token; `mayfly run` creates it with a random token (readable by its
    /// owner only) when it does not exist. Relative paths are taken from the config file's
    /// directory. Always set once loading is done (default: `api.token` in `state_dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// A second, private listener for `/readyz`, `/metrics` and the API (and `/healthz`): once
    /// set, `listen` serves only webhooks and `/healthz`, and can face the internet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

/// The listeners' deadlines and connection cap (see `http::serve`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    /// From a connection's start (or its last answer) to the end of a request's headers; an
    /// idle kept-alive connection is closed after it too.
    pub header_timeout: HumanDuration,
    /// From the end of a request's headers to the end of its body.
    pub body_timeout: HumanDuration,
    /// Open connections on `listen` at most; default: three quarters of the open files limit
    /// left after what mayfly keeps for its own calls and files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            header_timeout: HumanDuration::secs(10),
            body_timeout: HumanDuration::secs(10),
            max_connections: None,
        }
    }
}

/// The dashboard at `GET /` (see docs/dashboard.md).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dashboard {
    /// How long a sign-in lasts (the cookie's life).
    pub session: HumanDuration,
    /// How long one live event stream stays open before the browser opens the next (each
    /// checks the sign-in again).
    pub stream: HumanDuration,
    /// A comment on an idle event stream this often, so proxies keep it open.
    pub keep_alive: HumanDuration,
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard {
            session: HumanDuration::secs(12 * 3600),
            stream: HumanDuration::secs(600),
            keep_alive: HumanDuration::secs(15),
        }
    }
}

impl Dashboard {
    pub fn settings(&self) -> mayfly::http::dashboard::Settings {
        mayfly::http::dashboard::Settings {
            session: self.session.0,
            stream: self.stream.0,
            keep_alive: self.keep_alive.0,
        }
    }
}

/// The leader lease in the state: one replica runs the passes, the others take over when it
/// stops renewing. One replica alone leads at once.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Leader {
    /// How long the lease lasts without a renewal: a follower leads at most `lease + renew`
    /// after the leader died.
    pub lease: HumanDuration,
    /// How often the leader renews and followers try to take over.
    pub renew: HumanDuration,
    /// How often the leader reads the store for jobs that webhooks brought to other replicas
    /// (PostgreSQL only): the most a job received by a follower waits for the leader to see it.
    pub news: HumanDuration,
}

impl Default for Leader {
    fn default() -> Self {
        Leader {
            lease: HumanDuration::secs(10),
            renew: HumanDuration::secs(2),
            news: HumanDuration::secs(1),
        }
    }
}

/// What is pruned from the state and when (`mayfly_store::Retention`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Completed jobs, with their delivery ids and instance counts, after their last update.
    pub jobs: HumanDuration,
    /// Webhook delivery ids (GitHub redelivers for up to 3 days).
    pub deliveries: HumanDuration,
    /// Events (`mayfly events`).
    pub events: HumanDuration,
    /// Records of instances that are gone (deleted, failed).
    pub intents: HumanDuration,
    /// How often the leader prunes.
    pub every: HumanDuration,
}

impl Default for Retention {
    fn default() -> Self {
        let r = mayfly_store::Retention::default();
        Retention {
            jobs: HumanDuration(r.jobs),
            deliveries: HumanDuration(r.deliveries),
            events: HumanDuration(r.events),
            intents: HumanDuration(r.intents),
            every: HumanDuration::secs(600),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Github {
    /// A personal access token. Leave it out when `[github.app]` is set: the App wins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Authenticate as a GitHub App installation instead of with a token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<GithubApp>,
    /// `owner/repo` scopes whose jobs mayfly serves with repository-level runners.
    pub repositories: Vec<String>,
    /// An organization whose jobs mayfly serves with organization-level runners.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// An enterprise whose jobs mayfly serves with enterprise-level runners.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enterprise: Option<String>,
    /// `https://HOST/api/v3` for GitHub Enterprise Server.
    pub api_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<Secret>,
    /// Runner group of organization and enterprise runners, by name or id (repository runners
    /// always join the default group).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner_group: Option<RunnerGroup>,
    /// `jit` (a single-use runner config, the default) or `token` (a registration token, for
    /// runner versions without `--jitconfig`).
    pub registration: Registration,
    /// Poll the repositories for queued jobs (conditional requests: an idle poll costs no
    /// budget). Off only when every job reaches mayfly by webhook.
    pub poll: bool,
    pub limits: GithubLimits,
}

/// A GitHub App installation: the App's id, the installation's id, and the App's private key.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GithubApp {
    pub id: u64,
    pub installation_id: u64,
    /// The PEM file GitHub hands out; a relative path is taken from the config file's directory.
    pub private_key_file: PathBuf,
}

/// How mayfly spends GitHub's rate limits.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GithubLimits {
    /// Deadline of each request, connection included.
    pub request_timeout: HumanDuration,
    /// Average spacing of writes (JIT configs, deletes): GitHub asks for about a second.
    pub write_interval: HumanDuration,
    /// Writes that may go out at once before the spacing applies, so a burst of jobs gets its
    /// runners together. A minute holds at most `write_burst` + 60 s / `write_interval` writes:
    /// keep it under GitHub's 80 content-creating requests a minute (docs/reconcile.md).
    pub write_burst: u32,
    /// GitHub's secondary limit: at most this many requests in flight.
    pub max_concurrent: usize,
    /// The longest mayfly waits on a rate limit before it gives up on the call.
    pub max_wait: HumanDuration,
    /// Share (0 to 1) of the hourly budget kept for serving jobs: below it, housekeeping waits.
    pub reserve: f64,
}

impl Default for GithubLimits {
    fn default() -> Self {
        let d = mayfly_forge::github::LimitsConfig::default();
        GithubLimits {
            request_timeout: HumanDuration(d.request_timeout()),
            write_interval: HumanDuration(d.write_interval()),
            write_burst: d.write_burst,
            max_concurrent: d.max_concurrent,
            max_wait: HumanDuration(d.max_wait()),
            reserve: d.reserve,
        }
    }
}

impl Default for Github {
    fn default() -> Self {
        Github {
            token: None,
            app: None,
            repositories: Vec::new(),
            organization: None,
            enterprise: None,
            api_url: mayfly_forge::github::config::GITHUB_API.into(),
            webhook_secret: None,
            runner_group: None,
            registration: Registration::Jit,
            poll: true,
            limits: GithubLimits::default(),
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

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Hetzner => "hetzner",
            ProviderKind::AwsEc2 => "aws-ec2",
            ProviderKind::AwsAsg => "aws-asg",
            ProviderKind::AwsEcs => "aws-ecs",
            ProviderKind::Local => "local",
        }
    }
}

/// One place machines come from, named by the table key (`[providers.hetzner]`), so two Hetzner
/// projects can be two providers.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub kind: ProviderKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// The API's base URL, for a proxy or a fake in tests (AWS: `endpoint_url`, for every service).
    #[serde(
        default,
        alias = "endpoint_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint: Option<String>,
    /// Hetzner: give machines a public IPv4 address (billed) and an IPv6 network.
    #[serde(default = "yes")]
    pub ipv4: bool,
    #[serde(default = "yes")]
    pub ipv6: bool,
    /// Hetzner: public keys (OpenSSH format) put on every machine, for `mayfly ssh`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<String>,
    /// AWS (every kind; credentials come from the standard AWS chain, never from this file):
    /// the region; default: the AWS environment's (`AWS_REGION`, the profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// aws-ec2: a launch template (`lt-…` id or name) holding further launch parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_template: Option<String>,
    /// aws-ec2: `$Default` (default), `$Latest` or a version number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_template_version: Option<String>,
    /// aws-ec2: the AMI of pools whose image names none (`ami-…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ami: Option<String>,
    /// Subnet ids in order of preference; a pool's locations (zones) choose among them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    /// Security group ids (`sg-…`) of instances and tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// aws-ec2: ask for spot capacity first.
    #[serde(default = "yes")]
    pub spot: bool,
    /// aws-ec2: spot error codes after which the same instance is asked for on-demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand_fallback: Option<Vec<String>>,
    /// Price per hour per instance type (EC2), for the planner's cost decisions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, f64>,
    /// aws-ec2: root volume size in GB (always encrypted); default: the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_volume_gb: Option<u32>,
    /// aws-ec2: IAM instance profile (name or ARN) the jobs run with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    /// aws-ecs: the cluster tasks run in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// aws-ecs: `fargate` (default), `fargate-spot` or `ec2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<String>,
    /// aws-ecs: with `fargate-spot`, run on Fargate when Spot has no capacity.
    #[serde(default = "yes")]
    pub fallback_to_fargate: bool,
    /// aws-ecs: give tasks a public address (subnets without NAT).
    #[serde(default)]
    pub assign_public_ip: bool,
    /// aws-ecs: the task definition tag listing the labels it serves (default `mayfly-labels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels_tag: Option<String>,
    /// aws-ecs: the container that runs the runner (default: the task definition's first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// aws-ecs: pass the JIT config through SecureString parameters under this path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssm_prefix: Option<String>,
    /// aws-asg: the Auto Scaling group (created from `launch_template` and `subnets` if missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// aws-asg: the queue-depth policy (docs/aws.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<AsgScaling>,
    /// local: how many runners run at once on this host (default 1); the pools on it never
    /// plan more machines than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
    /// local: the installed actions/runner, the directory holding run.sh (relative paths are
    /// taken from the config file's directory); with `docker`, its directory inside the image
    /// (default /home/runner, as in GitHub's runner image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_dir: Option<PathBuf>,
    /// local: where each runner gets a root of its own (default: local/<provider> in state_dir).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<PathBuf>,
    /// local: run each runner in a Docker container of `docker_image` instead of a process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<bool>,
    /// local: the image with the runner installed, for `docker = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_image: Option<String>,
    /// local: variables every runner gets (a proxy, say); mayfly's own environment, which
    /// holds its tokens, never reaches a runner.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub runner_env: BTreeMap<String, String>,
    /// local: how long a runner being removed gets between SIGTERM and SIGKILL (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<HumanDuration>,
    /// local: run the runners (and so the jobs) as this user, so that no job can read mayfly's
    /// environment or memory; mayfly must then run as root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_user: Option<String>,
}

/// `[providers.<name>.scaling]` of an aws-asg provider.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AsgScaling {
    /// Fewest runners that take jobs.
    pub min: u32,
    /// Most instances in the group.
    pub max: u32,
    /// Runners added or drained per decision.
    pub step: u32,
    /// Scale out when at least this many jobs are queued.
    pub scale_out_threshold: u32,
    /// Scale in when at most this many jobs are queued.
    pub scale_in_threshold: u32,
    pub out_cooldown: HumanDuration,
    pub in_cooldown: HumanDuration,
    /// Between decisions.
    pub interval: HumanDuration,
}

impl Default for AsgScaling {
    fn default() -> Self {
        AsgScaling {
            min: 0,
            max: 10,
            step: 1,
            scale_out_threshold: 1,
            scale_in_threshold: 0,
            out_cooldown: HumanDuration::secs(60),
            in_cooldown: HumanDuration::secs(300),
            interval: HumanDuration::secs(60),
        }
    }
}

impl Provider {
    /// The kinds a key of `[providers.<name>]` means something to; `None`: every kind (and
    /// keys this list does not know). `config check` prints a provider's keys of its own kind
    /// only: a Hetzner provider has no `spot`.
    pub fn key_kinds(key: &str) -> Option<&'static [ProviderKind]> {
        use ProviderKind::{AwsAsg, AwsEc2, AwsEcs, Hetzner};
        Some(match key {
            "token" | "ipv4" | "ipv6" | "ssh_keys" => &[Hetzner],
            "region" | "subnets" => &[AwsEc2, AwsEcs, AwsAsg],
            "launch_template" => &[AwsEc2, AwsAsg],
            "security_groups" | "prices" => &[AwsEc2, AwsEcs],
            "launch_template_version"
            | "ami"
            | "spot"
            | "on_demand_fallback"
            | "root_volume_gb"
            | "instance_profile" => &[AwsEc2],
            "cluster"
            | "launch_type"
            | "fallback_to_fargate"
            | "assign_public_ip"
            | "labels_tag"
            | "container"
            | "ssm_prefix" => &[AwsEcs],
            "group" | "scaling" => &[AwsAsg],
            _ => return None,
        })
    }

    /// A provider of this kind with every other key at its default.
    pub fn of_kind(kind: ProviderKind) -> Provider {
        Provider {
            kind,
            token: None,
            endpoint: None,
            ipv4: true,
            ipv6: true,
            ssh_keys: Vec::new(),
            region: None,
            launch_template: None,
            launch_template_version: None,
            ami: None,
            subnets: Vec::new(),
            security_groups: Vec::new(),
            spot: true,
            on_demand_fallback: None,
            prices: BTreeMap::new(),
            root_volume_gb: None,
            instance_profile: None,
            cluster: None,
            launch_type: None,
            fallback_to_fargate: true,
            assign_public_ip: false,
            labels_tag: None,
            container: None,
            ssm_prefix: None,
            group: None,
            scaling: None,
            slots: None,
            runner_dir: None,
            work_dir: None,
            docker: None,
            docker_image: None,
            runner_env: BTreeMap::new(),
            stop_timeout: None,
            runner_user: None,
        }
    }
}

fn yes() -> bool {
    true
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
    /// On SIGTERM, how long the pass in flight may go on to reach a safe point (its API calls
    /// in flight answer) before it is cut. The process exits within this and a few seconds
    /// (the lease released, requests drained), inside systemd's stop timeout.
    pub shutdown: HumanDuration,
}

impl Default for Deadlines {
    fn default() -> Self {
        let d = mayfly_core::Deadlines::default();
        Deadlines {
            registration: HumanDuration(d.registration),
            idle: HumanDuration(d.idle),
            powered_off: HumanDuration(d.powered_off),
            max_lifetime: HumanDuration(d.max_lifetime),
            shutdown: HumanDuration::secs(4),
        }
    }
}

/// How often mayfly looks without being woken: the reconcile timer, and the forge poll that
/// catches jobs whose webhook never arrived.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Intervals {
    /// Between passes while something is unsettled (a failed step, a job waiting for
    /// capacity). Otherwise the loop sleeps until the next deadline or an event.
    pub reconcile: HumanDuration,
    /// The longest the loop sleeps without an event or a deadline: the safety net for changes
    /// nobody reports, such as a server deleted by hand.
    pub resync: HumanDuration,
    /// After a job finishes, the pass that sees its machine powered off comes this much later
    /// (one pass for every job that finished meanwhile).
    pub settle: HumanDuration,
    /// Passes start at least this far apart: a flood of webhooks is served by one pass per
    /// interval, each with one provider list, rather than one pass per webhook.
    pub coalesce: HumanDuration,
    pub poll: HumanDuration,
    /// A GitHub repository or GitLab project whose webhooks prove they arrive is polled this
    /// often instead of every `poll`: the poll is the fallback for lost webhooks, and a lost
    /// one is caught within this.
    pub poll_backstop: HumanDuration,
    /// A job the store holds as queued with no news for this long is confirmed with GitHub
    /// (a conditional request: free when nothing changed), so a lost webhook never keeps a
    /// machine waiting for it. Polled repositories too.
    pub confirm_queued: HumanDuration,
    /// The same for a job the store holds as running.
    pub confirm_running: HumanDuration,
    /// A job whose last news is older than this is confirmed before a machine is made or
    /// reused for it, and a contradiction (a busy runner for a job held queued, a gone runner
    /// for a job held running) counts as a lost webhook once this old.
    pub confirm_stale: HumanDuration,
    /// A pool whose machines the provider refuses (an unknown type, image or location), or a
    /// job that cannot be registered, is left alone this long before one more try.
    pub refused_retry: HumanDuration,
    /// While jobs wait for capacity and a machine's runner has just finished, the next pass
    /// comes this soon: the machine is reused (or deleted to make room) once it has stopped.
    pub finishing: HumanDuration,
    /// The runner lists are read at least this often; in between, a pass that acts on nothing
    /// they say (it only creates machines, or reuses or deletes powered-off ones) plans with
    /// the last lists and spends no request on them. A pass that does act on them reads them
    /// whatever their age, so this bounds only how stale `mayfly status` shows idle and
    /// offline runners and how late a runner left without a machine is removed.
    pub runners: HumanDuration,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            reconcile: HumanDuration::secs(15),
            resync: HumanDuration::secs(300),
            settle: HumanDuration::secs(20),
            coalesce: HumanDuration(std::time::Duration::from_millis(500)),
            poll: HumanDuration::secs(10),
            poll_backstop: HumanDuration::secs(300),
            confirm_queued: HumanDuration::secs(60),
            confirm_running: HumanDuration::secs(600),
            confirm_stale: HumanDuration::secs(10),
            refused_retry: HumanDuration::secs(600),
            finishing: HumanDuration::secs(2),
            runners: HumanDuration(mayfly::reconcile::RUNNERS_MAX_AGE),
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
    /// Which forges' jobs it takes (`github`, `gitlab`), in order: standby runners register
    /// with the first. Default: every configured forge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forges: Vec<mayfly_core::ForgeKind>,
}
