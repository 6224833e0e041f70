//! The command line: global flags that override the config file, and the commands.
//! Every flag also reads a `MAYFLY_*` variable; none has a clap default, so the file's value survives.

use crate::config::{LogFormat, Overrides};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

const ABOUT: &str = "Autoscales single-use CI runners: one fresh machine per queued job, removed when the job is done.";

const LONG_ABOUT: &str = "\
Autoscales single-use (ephemeral) self-hosted CI runners.

mayfly watches GitHub Actions for queued jobs, creates one machine per job on a provider \
(Hetzner Cloud; AWS: EC2 instances, ECS/Fargate tasks, an Auto Scaling group; or this host: \
runner processes or containers), lets the job's runner register, run that one job \
and power off, then deletes the machine. `mayfly node` makes a host a runner node of its own. Pools in the config file say which job labels go \
where, on which machine types, images and locations, with what limits and standby.

Configuration comes from, highest precedence first: command-line flags, environment variables \
(MAYFLY_* for the flags below; GITHUB_TOKEN, GITHUB_REPOSITORY, HETZNER_TOKEN, HCLOUD_ENDPOINT, \
RUST_LOG), the config file (mayfly.toml), and built-in defaults. With GITHUB_TOKEN, \
GITHUB_REPOSITORY and HETZNER_TOKEN set, mayfly runs without any file.

Check a configuration with `mayfly config check`; it prints the effective settings with every \
secret redacted.";

/// No `Debug`: `state` may hold a database password.
#[derive(Parser)]
#[command(name = "mayfly", version, about = ABOUT, long_about = LONG_ABOUT, propagate_version = true)]
pub struct Cli {
    /// Config file (TOML) [default: ./mayfly.toml if it exists, otherwise none]
    #[arg(short, long, global = true, env = "MAYFLY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log line format on stderr [default: log_format in the file, else text]
    #[arg(long, global = true, env = "MAYFLY_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Log filter: a level (error, warn, info, debug, trace; debug and trace apply to mayfly
    /// only) or directives such as `sqlx=debug,info`; overrides RUST_LOG
    /// [default: log_level in the file, else info; warn for status, list, delete and ssh]
    #[arg(long, global = true, env = "MAYFLY_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// State database: sqlite://PATH, a file path, or postgres://USER:PASSWORD@HOST/DB
    /// [default: state in the file, else sqlite://$XDG_STATE_HOME/mayfly/mayfly.db]
    #[arg(
        long,
        global = true,
        env = "MAYFLY_STATE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub state: Option<String>,

    /// Address of the HTTP server for webhooks, the API and metrics
    /// [default: listen in the file, else 127.0.0.1:8080]
    #[arg(long, global = true, env = "MAYFLY_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller until Ctrl-C or SIGTERM
    Run,
    /// Show pools, jobs waiting with their age, instances with state, age and cost so far,
    /// and runners. Asks the running controller (on `listen`, with the token of
    /// api.token_file); with none running, reads the providers and GitHub directly
    Status(crate::ops::StatusArgs),
    /// List the instances (machines) of this controller, like `status` does
    List(crate::ops::ListArgs),
    /// Delete instances: deregister each runner, then delete its machine. A machine whose
    /// runner runs a job is kept. Asks first unless --yes; exit 1 if any was not deleted
    Delete(crate::ops::DeleteArgs),
    /// Show what mayfly did and why (creates, deletes, reuses), newest last; filter by time,
    /// instance or job, and kind. Asks the running controller, else reads the state
    Events(crate::ops::EventsArgs),
    /// Open a shell on an instance, or run COMMAND there, with the system's ssh client
    /// (MAYFLY_SSH names another); exits with the remote command's status
    Ssh(crate::ops::SshArgs),
    /// Watch mayfly work: the simulator and the controller in one process replay about 40 jobs
    /// on a sped-up clock, then a report (exit 1 if a job was not served or a server is left).
    /// Needs no configuration, no cloud account and no GitHub
    Demo(crate::demo::DemoArgs),
    /// Estimate what a configuration would cost and how long jobs would wait, from a trace
    ///
    /// Replays a trace (a file, or a repository's job history on GitHub) in virtual time with
    /// the real planner and billing, recycling on and off, standby 0 and N, and prints cost,
    /// queue wait and machines for each. A day of 10,000 jobs takes seconds. Needs no cloud
    /// account; pools come from the config file, without tokens (see docs/estimate.md)
    Estimate(crate::estimate_cmd::EstimateArgs),
    /// Inspect the configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run `mayfly run` as a systemd service on this machine: install, start, stop, status, logs
    Service(crate::service::ServiceArgs),
    /// Run the controller on a Hetzner server of its own: deploy, status, logs, upgrade, delete
    Cloud(crate::cloud::CloudArgs),
    /// Make this host a runner node for GitHub Actions: register, deregister, doctor, prune
    Node(crate::node::NodeArgs),
    /// Run the simulator: a fake GitHub, GitLab and Hetzner Cloud with virtual runners
    #[command(subcommand)]
    Sim(SimCommand),
    /// gitlab-runner's custom executor: a fresh machine per job behind your gitlab-runner
    /// (config, prepare, run, cleanup for [runners.custom]; reap for what a killed cleanup left)
    GitlabExecutor(crate::gitlab_executor::ExecutorArgs),
    /// GitLab: register custom-executor runners in gitlab-runner's config.toml
    #[command(subcommand)]
    Gitlab(crate::gitlab_register::GitlabCommand),
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Serve the fakes and their control API (under /_sim/) until Ctrl-C or SIGTERM.
    /// The first line of output is JSON with the addresses, for scripts
    Serve(Box<crate::sim_cmd::ServeArgs>),
    /// A stand-in for the GitHub Actions runner's listener (`Runner.Listener run`), for the
    /// simulator: run from a runner directory's run.sh (see install-runner), it takes
    /// `--jitconfig`, writes .runner, .credentials and .credentials_rsaparams into the working
    /// directory, takes one job from the fake GitHub and exits with the listener's codes
    Runner(crate::sim_cmd::RunnerArgs),
    /// Write a runner directory (DIR/run.sh) whose listener is `mayfly sim runner`: a runner_dir
    /// for the local provider and `mayfly node` against the simulator
    InstallRunner(crate::sim_cmd::InstallRunnerArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective settings, secrets redacted.
    /// Exits 0 when valid, 2 with the problems on stderr otherwise
    Check,
}

impl Cli {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            state: self.state.clone(),
            listen: self.listen,
            log_format: self.log_format,
            log_level: self.log_level.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_flag_works_after_the_subcommand() {
        let cli = Cli::try_parse_from(["mayfly", "config", "check", "-c", "x.toml"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
        assert!(matches!(cli.command, Command::Config(ConfigCommand::Check)));
    }
}
