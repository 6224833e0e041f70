//! `mayfly cloud deploy`: checks everything it can before anything is created (flags, the
//! configuration, the user data's size, the type and location), then one server, then its boot.

use super::bundle::Bundle;
use super::hetzner::{self, NewServer, Project};
use super::{Cloud, cloud_init, scripts};
use anyhow::Context;
use clap::Args;
use mayfly_core::Secret;
use mayfly_provider::hetzner::{CallError, Server};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Between two looks at a booting server.
const BOOT_POLL: Duration = Duration::from_secs(1);
/// Public keys tried in this order when no `--ssh-key` is given.
const DEFAULT_KEYS: [&str; 3] = [
    ".ssh/id_ed25519.pub",
    ".ssh/id_ecdsa.pub",
    ".ssh/id_rsa.pub",
];

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Hetzner server type
    #[arg(long = "type", default_value = "cx23", value_name = "TYPE")]
    pub server_type: String,
    /// Hetzner location
    #[arg(long, default_value = "fsn1", value_name = "LOCATION")]
    pub location: String,
    /// Hetzner system image (a Linux with systemd, curl and sha256sum)
    #[arg(long, default_value = "ubuntu-24.04", value_name = "IMAGE")]
    pub image: String,
    /// Public key (OpenSSH) allowed to log in as root, for the other `mayfly cloud` commands;
    /// repeat for several [default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub]
    #[arg(long = "ssh-key", value_name = "FILE.pub")]
    pub ssh_keys: Vec<PathBuf>,
    /// Where the server downloads the mayfly binary (a Linux executable for its architecture)
    #[arg(long, value_name = "URL")]
    pub binary_url: String,
    /// SHA-256 of that file (`sha256sum FILE`); a download that differs is not installed
    #[arg(long, value_name = "HEX")]
    pub binary_sha256: String,
    /// Print the cloud-init user data (secrets redacted) and create nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask before creating the (billed) server; needed without a terminal
    #[arg(short, long)]
    pub yes: bool,
}

pub async fn deploy(cloud: &Cloud<'_>, args: DeployArgs) -> anyhow::Result<ExitCode> {
    let name = cloud.name.as_str();
    scripts::check_url(&args.binary_url).map_err(anyhow::Error::msg)?;
    let sha256 = scripts::check_sha256(&args.binary_sha256).map_err(anyhow::Error::msg)?;
    let keys = ssh_keys(&args.ssh_keys)?;
    let config = cloud.load_config()?;
    let bundle = Bundle::new(&config)?;
    let init = cloud_init::render(name, &bundle, &args.binary_url, &sha256)?;
    if args.dry_run {
        println!(
            "# mayfly cloud deploy --dry-run: would create server `{name}` ({} in {}, {}) with \
             the label mayfly-deploy={name} and this user data ({} bytes); secrets redacted.",
            args.server_type,
            args.location,
            args.image,
            init.user_data.expose().len()
        );
        print!("{}", init.shown);
        return Ok(ExitCode::SUCCESS);
    }

    let api = cloud.api(Some(&config))?;
    let progress = mayfly::progress::spinner("checking the Hetzner project");
    let checked = preflight(&api, name, &args).await;
    progress.finish_and_clear();
    let hourly = checked?;
    let question = format!(
        "create server `{name}` ({} in {}, {}) at €{hourly:.4} an hour, billed until it is deleted?",
        args.server_type, args.location, args.image
    );
    if !super::confirm(&question, args.yes)? {
        println!("nothing created");
        return Ok(ExitCode::FAILURE);
    }
    let progress = mayfly::progress::spinner("uploading SSH keys");
    let server = create(cloud, &api, &args, &keys, &init.user_data, &progress).await;
    progress.finish_and_clear();
    let server = server?;

    let address = server
        .address()
        .unwrap_or_else(|| "no public address".into());
    println!(
        "server {name} is running: {address} ({} in {}, id {})",
        server.server_type.name,
        hetzner::location(&server),
        server.id
    );
    println!("cloud-init now installs mayfly and starts it (a minute or two). Then:");
    println!("  mayfly cloud status --name {name}");
    println!("  mayfly cloud logs --name {name} -f");
    if config.listen.ip().is_loopback() {
        println!(
            "note: listen is {}: GitHub's webhooks cannot reach it, so jobs arrive by polling; \
             set listen = \"0.0.0.0:8080\" and github.webhook_secret, then `mayfly cloud install`",
            config.listen
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Nothing is deployed under the name yet, and the type is offered in the location: its gross
/// hourly price there.
async fn preflight(api: &Project, name: &str, args: &DeployArgs) -> anyhow::Result<f64> {
    if let Some(s) = api.deployed(name).await?.first() {
        anyhow::bail!(
            "server `{}` (id {}) is deployed as `{name}` already; `mayfly cloud install` pushes \
             the configuration again, `mayfly cloud upgrade` a new binary, `mayfly cloud delete` \
             removes it",
            s.name,
            s.id
        );
    }
    let (hourly, _) = check_placement(api, &args.server_type, &args.location).await?;
    Ok(hourly)
}

/// Uploads the SSH keys the project lacks, creates the server and waits until it runs.
async fn create(
    cloud: &Cloud<'_>,
    api: &Project,
    args: &DeployArgs,
    keys: &[(PathBuf, String)],
    user_data: &Secret,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<Server> {
    let name = cloud.name.as_str();
    let mut key_ids = Vec::new();
    for (path, key) in keys {
        let label = format!("mayfly-{name}-{}", key_ids.len() + 1);
        let id = api
            .ssh_key(key, &label)
            .await
            .with_context(|| format!("cannot add the SSH key {}", path.display()))?;
        key_ids.push(id);
    }
    progress.set_message(format!("creating server {name}"));
    let created = api
        .create(&NewServer {
            name,
            server_type: &args.server_type,
            location: &args.location,
            image: &args.image,
            ssh_keys: &key_ids,
            user_data,
        })
        .await
        .map_err(|e| explain_create(e, args))?;
    progress.set_message(format!(
        "waiting for server {name} (id {}) to boot",
        created.id
    ));
    let deadline = Instant::now() + cloud.timeout;
    loop {
        let s = api.server(created.id).await?;
        if s.status == "running" {
            return Ok(s);
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "server {name} (id {}) is still `{}` after {:?}; see `mayfly cloud status --name {name}`",
                s.id,
                s.status,
                cloud.timeout
            );
        }
        tokio::time::sleep(BOOT_POLL).await;
    }
}

/// The named public keys, or the user's default one; each checked to be an OpenSSH public key.
fn ssh_keys(named: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let paths: Vec<PathBuf> = if named.is_empty() {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let found = home
            .iter()
            .flat_map(|h| DEFAULT_KEYS.iter().map(move |k| h.join(k)))
            .find(|p| p.is_file());
        vec![found.context(
            "no SSH public key: pass --ssh-key FILE.pub (the other `mayfly cloud` commands log \
             in with it)",
        )?]
    } else {
        named.to_vec()
    };
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("--ssh-key {}: cannot read it", p.display()))?;
            let key = text.trim().to_string();
            if mayfly_provider::hetzner::fingerprint(&key).is_none() {
                anyhow::bail!(
                    "--ssh-key {}: not an OpenSSH public key (a line like `ssh-ed25519 AAAA… \
                     you@host`; give the .pub file, never the private key)",
                    p.display()
                );
            }
            Ok((p, key))
        })
        .collect()
}

/// The type exists and is offered in the location: its gross prices there.
async fn check_placement(
    api: &Project,
    server_type: &str,
    location: &str,
) -> anyhow::Result<(f64, f64)> {
    let locations = api.locations().await?;
    if !locations.iter().any(|l| l == location) {
        anyhow::bail!(
            "--location {location}: Hetzner has no such location (it has {})",
            locations.join(", ")
        );
    }
    let t = api.server_type(server_type).await?.with_context(|| {
        format!("--type {server_type}: Hetzner has no such server type (cx23, cpx22, cax11, …)")
    })?;
    hetzner::price_in(&t, location).with_context(|| {
        let offered: Vec<&str> = t.prices.iter().map(|p| p.location.as_str()).collect();
        format!(
            "--type {server_type} is not offered in {location}; it is in {}",
            offered.join(", ")
        )
    })
}

/// A refused create in the words of the flags.
fn explain_create(e: CallError, args: &DeployArgs) -> anyhow::Error {
    let CallError::Refused(api) = e else {
        return anyhow::Error::new(e).context("cannot create the server");
    };
    let flag = api.fields.iter().find_map(|f| match f.as_str() {
        "server_type" => Some(format!("--type {}", args.server_type)),
        "location" => Some(format!("--location {}", args.location)),
        "image" => Some(format!("--image {}", args.image)),
        "user_data" => Some("the cloud-init user data".into()),
        "name" => Some("--name".into()),
        _ => None,
    });
    let hint = match api.code.as_str() {
        "uniqueness_error" => {
            "; a server of that name exists (perhaps not deployed by mayfly): choose another --name"
        }
        "resource_unavailable" => "; try another --location or --type",
        "resource_limit_exceeded" => "; the project's server limit is reached",
        _ => "",
    };
    match flag {
        Some(flag) => anyhow::anyhow!("{flag}: {api}{hint}"),
        None => anyhow::anyhow!("cannot create the server: {api}{hint}"),
    }
}
