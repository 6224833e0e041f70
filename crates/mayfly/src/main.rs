//! The mayfly binary: parses the command line, loads the configuration and runs a command.
//! Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or usage.

mod cli;
mod cloud;
mod config;
mod daemon;
mod demo;
mod estimate_cmd;
mod exit;
mod gitlab_executor;
mod gitlab_register;
mod logging;
mod node;
mod ops;
mod service;
mod sim_cmd;

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Command, ConfigCommand, SimCommand};
use config::{Config, Env};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = cli.overrides();
    // Loads the configuration for the commands that need one; an invalid one ends the run here.
    let load = || {
        let file = config::find_file(cli.config.as_deref());
        match Config::load(file.as_deref(), &overrides, &Env::process()) {
            Ok(config) => Ok((config, file)),
            Err(e) => Err(exit::invalid_config(&e)),
        }
    };
    let logs = (cli.log_format, cli.log_level.as_deref());
    match cli.command {
        // The simulator needs no mayfly configuration: it stands in for GitHub and the cloud.
        Command::Sim(SimCommand::Serve(args)) => finish(sim(*args, cli.log_format, cli.log_level)),
        Command::Sim(SimCommand::Runner(args)) => sim_cmd::runner(args),
        Command::Sim(SimCommand::InstallRunner(args)) => finish(sim_cmd::install_runner(args)),
        // gitlab-runner's executables: their own file, their own exit codes.
        Command::GitlabExecutor(args) => gitlab_executor::main(args),
        Command::Gitlab(gitlab_register::GitlabCommand::Register(args)) => {
            gitlab_register::main(args)
        }
        Command::Demo(args) => {
            // Warnings only: the demo's own output is the progress table and the report.
            if let Err(e) = logging::init(
                cli.log_format.unwrap_or_default(),
                cli.log_level.as_deref().unwrap_or("warn"),
            ) {
                eprintln!("mayfly: {e:#}");
                return ExitCode::FAILURE;
            }
            match demo::demo(args) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("mayfly: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Estimate(args) => {
            estimate_cmd::main(args, cli.config.as_deref(), &overrides, cli.log_format)
        }
        Command::Config(ConfigCommand::Check) => match load() {
            Ok((config, file)) => finish(check(&config, file.as_deref())),
            Err(code) => code,
        },
        Command::Service(args) => service::run(args, cli.config.as_deref(), &overrides),
        Command::Cloud(args) => cloud::run(args, cli.config.as_deref(), &overrides),
        Command::Node(args) => node::run(
            args,
            cli.config.as_deref(),
            &overrides,
            cli.log_format,
            cli.log_level.as_deref(),
        ),
        Command::Run => match load() {
            Ok((config, _)) => finish(run(config)),
            Err(code) => code,
        },
        Command::Status(args) => operate(load(), logs, |c| ops::status(c, args)),
        Command::List(args) => operate(load(), logs, |c| ops::list(c, args)),
        Command::Delete(args) => operate(load(), logs, |c| ops::delete(c, args)),
        Command::Events(args) => operate(load(), logs, |c| ops::events(c, args)),
        Command::Ssh(args) => operate(load(), logs, |c| ops::ssh(c, args)),
    }
}

/// The operator's commands: their answer is the output, so the log shows warnings only unless
/// --log-level asks for more (the file's log_level is the daemon's).
fn operate(
    loaded: Result<(Config, Option<std::path::PathBuf>), ExitCode>,
    (format, level): (Option<config::LogFormat>, Option<&str>),
    command: impl FnOnce(Config) -> ExitCode,
) -> ExitCode {
    let config = match loaded {
        Ok((config, _)) => config,
        Err(code) => return code,
    };
    if let Err(e) = logging::init(format.unwrap_or(config.log_format), level.unwrap_or("warn")) {
        eprintln!("mayfly: {e:#}");
        return ExitCode::FAILURE;
    }
    command(config)
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mayfly: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(config: &Config, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let source = file.map_or_else(|| "no file".to_string(), |f| f.display().to_string());
    let toml = config
        .to_redacted_toml()
        .context("cannot print the configuration")?;
    println!(
        "# mayfly configuration is valid ({source}, environment, flags); secrets redacted\n{toml}"
    );
    Ok(())
}

fn sim(
    args: sim_cmd::ServeArgs,
    format: Option<config::LogFormat>,
    level: Option<String>,
) -> anyhow::Result<()> {
    let level = level
        .or_else(|| std::env::var("RUST_LOG").ok().filter(|l| !l.is_empty()))
        .unwrap_or_else(|| "info".to_string());
    logging::init(format.unwrap_or_default(), &level)?;
    sim_cmd::serve(args)
}

fn run(config: Config) -> anyhow::Result<()> {
    logging::init(config.log_format, &config.log_level)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let result = runtime.block_on(daemon::run(config));
    // A blocking task still running (a name lookup) must not hold the exit past SIGTERM's budget.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
