//! The operator's commands: `status`, `list`, `delete`, `events`, `ssh`. They ask the running
//! daemon's API (on `api.listen`, else `listen`), or read the providers, GitHub and the store
//! themselves when no daemon listens there.

mod client;
mod delete;
mod direct;
mod events;
mod show;
mod source;
mod ssh;
mod table;
pub mod token;

pub use events::EventsArgs;

use crate::config::Config;
use crate::exit::block_on;
use source::Source;
use std::process::ExitCode;

/// How a command prints its answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Tables that fit the terminal
    #[default]
    Table,
    /// JSON as the API serves it, for scripts
    Json,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// How to print the answer
    #[arg(short, long, value_enum, default_value_t, value_name = "FORMAT")]
    pub output: Output,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// How to print the answer
    #[arg(short, long, value_enum, default_value_t, value_name = "FORMAT")]
    pub output: Output,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Instances to delete, by name (`mayfly list` shows them)
    #[arg(
        value_name = "NAME",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub names: Vec<String>,
    /// Delete every instance of this controller (machines running a job are kept)
    #[arg(long)]
    pub all: bool,
    /// Do not ask for confirmation (needed when stdin is not a terminal)
    #[arg(short, long)]
    pub yes: bool,
    /// How to print the answer
    #[arg(short, long, value_enum, default_value_t, value_name = "FORMAT")]
    pub output: Output,
}

#[derive(Debug, clap::Args)]
pub struct SshArgs {
    /// The instance, by name (`mayfly list` shows them)
    pub name: String,
    /// The user to log in as
    #[arg(short = 'l', long, default_value = "root", value_name = "USER")]
    pub user: String,
    /// A command to run instead of a login shell; put `--` before a command with options
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

pub fn status(config: Config, args: StatusArgs) -> ExitCode {
    block_on(async move {
        let (source, view) = Source::open(&config).await?;
        source.close().await;
        match args.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&*view)?),
            Output::Table => print!(
                "{}",
                show::status(&view, mayfly::demand::now(), table::width())
            ),
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn list(config: Config, args: ListArgs) -> ExitCode {
    block_on(async move {
        let (source, view) = Source::open(&config).await?;
        source.close().await;
        match args.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&view.instances)?),
            Output::Table if view.instances.is_empty() => eprintln!("no instances"),
            Output::Table => print!(
                "{}",
                show::instances(&view.instances, mayfly::demand::now()).render(table::width())
            ),
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn delete(config: Config, args: DeleteArgs) -> ExitCode {
    block_on(async move { delete::delete(&config, args).await })
}

pub fn events(config: Config, args: EventsArgs) -> ExitCode {
    block_on(async move {
        events::events(&config, args)
            .await
            .map(|()| ExitCode::SUCCESS)
    })
}

pub fn ssh(config: Config, args: SshArgs) -> ExitCode {
    block_on(async move { ssh::ssh(&config, args).await })
}
