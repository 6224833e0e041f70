//! The mayfly binary: parses the command line, loads the configuration and runs a command.
//! Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or usage.

mod cli;
mod config;
mod daemon;
mod logging;

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Command, ConfigCommand};
use config::{Config, Env};
use std::process::ExitCode;

/// Same as clap's usage errors: the invocation, not the run, is at fault.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = config::find_file(cli.config.as_deref());
    let config = match Config::load(file.as_deref(), &cli.overrides(), &Env::process()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("mayfly: invalid configuration\n{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let result = match cli.command {
        Command::Config(ConfigCommand::Check) => check(&config, file.as_deref()),
        Command::Run => run(config),
    };
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

fn run(config: Config) -> anyhow::Result<()> {
    logging::init(config.log_format, &config.log_level)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(daemon::run(config))
}
