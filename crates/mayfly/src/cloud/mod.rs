//! `mayfly cloud`: the controller itself on a Hetzner server made for it, found again by its
//! `mayfly-deploy=<name>` label; its files come from cloud-init at first and over ssh after.

mod bundle;
mod cloud_init;
mod deploy;
mod hetzner;
mod remote;
mod scripts;
mod server;

use crate::config::{self, Config, Env, HumanDuration, Overrides};
use crate::service::LogsArgs;
use anyhow::Context;
use clap::{Args, Subcommand};
use mayfly_core::Secret;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct CloudArgs {
    #[command(subcommand)]
    pub command: CloudCommand,
    /// Name of the controller's server; it carries the label mayfly-deploy=NAME
    #[arg(long, global = true, default_value = "mayfly", value_name = "NAME")]
    pub name: String,
    /// User that ssh logs in as on the server
    #[arg(long, global = true, default_value = "root", value_name = "USER")]
    pub ssh_user: String,
    /// Longest wait on the server: its boot, one ssh command, an upgrade (`logs -f` runs until
    /// Ctrl-C)
    #[arg(long, global = true, default_value = "5m", value_name = "DURATION")]
    pub timeout: HumanDuration,
}

#[derive(Debug, Subcommand)]
pub enum CloudCommand {
    /// Create a server that runs the controller: cloud-init installs the binary (its SHA-256
    /// checked), the configuration given with -c, its secrets (files of mode 0600) and the
    /// systemd service. Uses HETZNER_TOKEN (and HCLOUD_ENDPOINT), else the configuration's
    /// Hetzner provider
    Deploy(deploy::DeployArgs),
    /// The server (state, type, place, address, age, cost so far) and whether the service runs
    /// (over ssh). Exits 0 when the service is active
    Status,
    /// Show the service's log (journalctl over ssh)
    Logs(LogsArgs),
    /// Start the service on the server
    Start,
    /// Stop the service on the server (the server keeps running and billing)
    Stop,
    /// Push the configuration given with -c, its secrets and the unit to the server again (over
    /// ssh, through stdin) and restart the service
    Install,
    /// Stop the service and remove its unit, configuration and secrets; the server, the binary
    /// and the state stay
    Uninstall,
    /// Replace the binary with a download (SHA-256 checked) and restart; the old binary comes
    /// back when the service does not stay active
    Upgrade(UpgradeArgs),
    /// Delete the server. Runner machines the controller made stay: first `mayfly cloud stop`,
    /// then `mayfly delete --all` with the same configuration
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// Where the server downloads the new binary (a Linux executable for its architecture)
    #[arg(long, value_name = "URL")]
    pub binary_url: String,
    /// SHA-256 of that file (`sha256sum FILE`); a download that differs is not installed
    #[arg(long, value_name = "HEX")]
    pub binary_sha256: String,
    /// How long the service must stay active on the new binary before it is kept
    #[arg(long, default_value = "15s", value_name = "DURATION")]
    pub settle: HumanDuration,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Do not ask; needed without a terminal
    #[arg(short, long)]
    pub yes: bool,
}

/// Runs a `mayfly cloud` command; prints its own errors.
pub fn run(args: CloudArgs, config: Option<&Path>, overrides: &Overrides) -> ExitCode {
    crate::exit::block_on(command(args, config, overrides))
}

async fn command(
    args: CloudArgs,
    config: Option<&Path>,
    overrides: &Overrides,
) -> anyhow::Result<ExitCode> {
    check_name(&args.name)?;
    let ctx = Cloud {
        name: args.name,
        ssh_user: args.ssh_user,
        timeout: args.timeout.0,
        config,
        overrides,
    };
    match args.command {
        CloudCommand::Deploy(d) => deploy::deploy(&ctx, d).await,
        CloudCommand::Status => server::status(&ctx).await,
        CloudCommand::Delete(d) => server::delete(&ctx, d.yes).await,
        CloudCommand::Logs(l) => remote::logs(&ctx, l.follow, l.lines).await,
        CloudCommand::Start => remote::systemctl(&ctx, "start").await,
        CloudCommand::Stop => remote::systemctl(&ctx, "stop").await,
        CloudCommand::Install => remote::install(&ctx).await,
        CloudCommand::Uninstall => remote::uninstall(&ctx).await,
        CloudCommand::Upgrade(u) => remote::upgrade(&ctx, &u).await,
    }
}

/// What every subcommand shares.
pub struct Cloud<'a> {
    pub name: String,
    pub ssh_user: String,
    pub timeout: std::time::Duration,
    pub config: Option<&'a Path>,
    pub overrides: &'a Overrides,
}

impl Cloud<'_> {
    /// The configuration, loaded and validated as `mayfly run` would.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let file = config::find_file(self.config);
        Ok(Config::load(
            file.as_deref(),
            self.overrides,
            &Env::process(),
        )?)
    }

    /// The Hetzner project: HETZNER_TOKEN (HCLOUD_ENDPOINT) when set, else the configuration's
    /// first Hetzner provider with a token.
    pub fn api(&self, config: Option<&Config>) -> anyhow::Result<hetzner::Project> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let endpoint_env = env("HCLOUD_ENDPOINT");
        if let Some(token) = env("HETZNER_TOKEN") {
            let endpoint = endpoint_env
                .unwrap_or_else(|| mayfly_provider::hetzner::DEFAULT_ENDPOINT.to_string());
            return hetzner::Project::new(&endpoint, Secret::new(token));
        }
        let loaded;
        let config = match config {
            Some(c) => c,
            None => {
                loaded = self.load_config().context(
                    "no HETZNER_TOKEN in the environment, and no configuration to take a \
                     Hetzner token from",
                )?;
                &loaded
            }
        };
        let (_, provider) = config
            .providers
            .iter()
            .find(|(_, p)| p.kind.as_str() == "hetzner" && p.token.is_some())
            .context("no Hetzner token: set HETZNER_TOKEN or a token in [providers.<name>]")?;
        let endpoint = provider
            .endpoint
            .clone()
            .or(endpoint_env)
            .unwrap_or_else(|| mayfly_provider::hetzner::DEFAULT_ENDPOINT.to_string());
        let token = provider.token.clone().unwrap_or_default();
        hetzner::Project::new(&endpoint, token)
    }

    /// The one server deployed under this name.
    pub async fn server(
        &self,
        api: &hetzner::Project,
    ) -> anyhow::Result<mayfly_provider::hetzner::Server> {
        let mut found = api.deployed(&self.name).await?;
        match found.len() {
            0 => anyhow::bail!(
                "no server deployed as `{0}` in this Hetzner project (none has the label {1}={0}); \
                 create one with `mayfly cloud deploy --name {0}`",
                self.name,
                hetzner::DEPLOY_LABEL
            ),
            1 => Ok(found.remove(0)),
            n => anyhow::bail!(
                "{n} servers carry the label {}={}: delete the extra ones in the Hetzner console",
                hetzner::DEPLOY_LABEL,
                self.name
            ),
        }
    }
}

/// A server name that is also a label value: lower-case letters, digits and `-`, at most 63.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        anyhow::bail!(
            "--name {name:?}: expected lower-case letters, digits and `-` (at most 63, not \
             starting or ending with `-`), like `mayfly` or `ci-controller`"
        );
    }
    Ok(())
}

/// Asks `question` on the terminal; without one, refuses unless `yes` was given.
pub fn confirm(question: &str, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("{question}: no terminal to ask on; pass --yes to go ahead");
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_names_are_hostnames_and_label_values() {
        assert!(check_name("mayfly").is_ok());
        assert!(check_name("ci-2").is_ok());
        for bad in ["", "Mayfly", "a_b", "-a", "a-", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn without_a_terminal_only_yes_goes_ahead() {
        assert!(confirm("delete x", true).unwrap());
        // nextest gives tests no terminal on stdin.
        let e = confirm("delete x", false).unwrap_err();
        assert!(e.to_string().contains("pass --yes"), "{e}");
    }
}
