//! `mayfly node`: this host as a runner node for GitHub Actions. `register` installs the pinned
//! runner and N slots, each a systemd unit running a loop of single-use (JIT) runners;
//! `deregister` undoes it; `doctor` checks it; `prune` removes what jobs left behind.
//!
//! Every verb takes `--debug` and records its last run, result and findings in the diagnostic
//! state file of the node directory (`<state_dir>/node/diagnostic.json` by default).
//! What is GitHub's lives behind `forge::NodeForge`.

mod access;
mod deregister;
mod diagnostic;
mod doctor;
mod files;
mod forge;
mod hook;
mod prune;
mod register;
pub mod settings;
mod slot;
mod units;

use crate::config::{self, Config, Env, HumanDuration, LogFormat, Overrides};
use crate::service::identity;
use crate::service::systemd::Systemd;
use anyhow::Context;
use clap::{Args, Subcommand};
use diagnostic::Run;
use files::NodeDir;
use forge::NodeForge;
use mayfly_provider::local::docker::Docker;
use settings::Settings;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    pub command: NodeCommand,
    /// Print more: each systemctl, docker and GitHub call and its answer (kept in the
    /// diagnostic state too)
    #[arg(long, global = true)]
    pub debug: bool,
    /// The node directory: registration, slot states, diagnostic state
    /// [default: node in state_dir]
    #[arg(long, global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Longest wait on one systemctl call (stopping slots waits for their jobs besides)
    #[arg(long, global = true, default_value = "2m", value_name = "DURATION")]
    pub timeout: HumanDuration,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Make this host a runner node: install the pinned runner (or find it), and start N slots,
    /// each a systemd unit (mayfly-node@N) running single-use runners one after another.
    /// Needs root (`sudo -E` keeps GITHUB_TOKEN). Running it again changes nothing, or repairs
    /// what stopped; with other --slots or --labels it applies them
    Register(RegisterArgs),
    /// Stop the slots (a slot running a job lets it finish), remove the node's runners from
    /// GitHub, then its units and files. --force: kill running jobs, and clean everything local
    /// even when GitHub cannot be reached (what stays there is named)
    Deregister(DeregisterArgs),
    /// Check the node: its service and slots, each runner at GitHub (online, busy, last job),
    /// GitHub reachable and the credential valid, clock skew, disk and inodes, Docker. One line
    /// per check; exit 1 if any fails
    Doctor(DoctorArgs),
    /// Remove what jobs left behind: stopped containers, networks and volumes with mayfly's or
    /// the runner's labels, old dangling images and build cache, stale work directories. Never
    /// while a job runs; label filters only
    Prune(prune::PruneArgs),
    /// Run slot N's loop in the foreground: what the mayfly-node@N unit runs
    Slot(SlotArgs),
    /// What the runner's job hooks run (not for people)
    #[command(hide = true)]
    Hook(HookArgs),
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub flags: settings::Flags,
}

#[derive(Debug, Args)]
pub struct DeregisterArgs {
    /// Do not wait for running jobs, and clean up locally even if GitHub cannot be reached
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct SlotArgs {
    /// The slot's number, from 1
    #[arg(value_name = "N")]
    pub n: u32,
}

#[derive(Debug, Args)]
pub struct HookArgs {
    #[arg(value_enum)]
    pub event: hook::Event,
}

/// Runs a `mayfly node` command; prints its own errors.
pub fn run(
    args: NodeArgs,
    config: Option<&Path>,
    overrides: &Overrides,
    format: Option<LogFormat>,
    level: Option<&str>,
) -> ExitCode {
    let default_level = match (&args.command, args.debug) {
        (_, true) => "mayfly=debug,mayfly_forge=debug,mayfly_provider=debug,info",
        (NodeCommand::Slot(_), false) => "info",
        _ => "warn",
    };
    if let Err(e) = crate::logging::init(format.unwrap_or_default(), level.unwrap_or(default_level))
    {
        eprintln!("mayfly: {e:#}");
        return ExitCode::FAILURE;
    }
    if let NodeCommand::Hook(h) = &args.command {
        let Some(dir) = &args.dir else {
            eprintln!("mayfly: node hook needs --dir");
            return ExitCode::from(2);
        };
        return match hook::run(&NodeDir(dir.clone()), h.event) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mayfly: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    crate::exit::block_on(command(args, config, overrides))
}

/// The configuration as a node reads it: GitHub and `[node]`.
fn load(
    config: Option<&Path>,
    overrides: &Overrides,
) -> Result<(Config, Option<PathBuf>), config::ConfigError> {
    let file = config::find_file(config);
    let loaded = Config::load_for_node(file.as_deref(), overrides, &Env::process())?;
    Ok((loaded, file))
}

fn node_dir(args: &NodeArgs, config: Option<&Config>) -> anyhow::Result<NodeDir> {
    if let Some(d) = &args.dir {
        return Ok(NodeDir(std::path::absolute(d).unwrap_or(d.clone())));
    }
    let state = config
        .and_then(|c| c.state_dir.clone())
        .context("no node directory: give --dir, or state_dir in the configuration")?;
    Ok(NodeDir(state.join("node")))
}

fn github(config: &Config, settings: &Settings) -> anyhow::Result<forge::Github> {
    let client = mayfly_forge::github::Client::new(&config.github().client)
        .context("cannot set up the GitHub client")?;
    forge::Github::new(client, settings)
}

fn registered(dir: &NodeDir) -> anyhow::Result<Settings> {
    files::read::<Settings>(&dir.settings())?.with_context(|| {
        format!(
            "this host is not registered as a node ({} does not exist); mayfly node register",
            dir.settings().display()
        )
    })
}

fn docker() -> Docker {
    Docker::new("docker", Duration::from_secs(120))
}

fn require_root(verb: &str) -> anyhow::Result<()> {
    if identity::effective_uid()? != 0 {
        anyhow::bail!(
            "node {verb} writes systemd units and needs root: run `sudo -E mayfly node {verb}` \
             (-E keeps GITHUB_TOKEN); the slots run as you"
        );
    }
    Ok(())
}

async fn command(
    args: NodeArgs,
    config_path: Option<&Path>,
    overrides: &Overrides,
) -> anyhow::Result<ExitCode> {
    let systemd = Systemd::from_env(args.timeout.0);
    let loaded = load(config_path, overrides);
    match &args.command {
        NodeCommand::Register(r) => {
            let (config, file) = loaded?;
            register(&args, &r.flags, &config, file.as_deref(), &systemd).await
        }
        NodeCommand::Deregister(d) => deregister(&args, d.force, loaded, &systemd).await,
        NodeCommand::Doctor(d) => doctor(&args, d.output, loaded, &systemd).await,
        NodeCommand::Prune(p) => {
            let config = loaded.ok().map(|(c, _)| c);
            let dir = node_dir(&args, config.as_ref())?;
            let settings = registered(&dir)?;
            let mut run = Run::new("prune", args.debug);
            // Only Docker-backed slots need GitHub here (is a slot's runner busy?).
            let forge = match (&config, settings.docker) {
                (Some(c), true) => github(c, &settings).ok(),
                _ => None,
            };
            let forge_ref = forge.as_ref().map(|f| f as &dyn NodeForge);
            let outcome = prune::prune(&dir, &settings, p, &docker(), forge_ref, &mut run).await;
            let verb = if p.dry_run { "would remove" } else { "removed" };
            match outcome {
                Ok(done) => {
                    let dirs: u64 = done.directories.iter().map(|(_, b)| b).sum();
                    let line = format!(
                        "prune: {verb} {} containers, {} networks, {} work directories ({}); Docker reclaimed {} of volumes, {} of images, {} of build cache",
                        done.containers.len(),
                        done.networks.len(),
                        done.directories.len(),
                        prune::human_bytes(dirs),
                        prune::human_bytes(done.volumes_bytes),
                        prune::human_bytes(done.images_bytes),
                        prune::human_bytes(done.build_cache_bytes),
                    );
                    println!("{line}");
                    for (path, size) in &done.directories {
                        println!(
                            "  {verb} {} ({})",
                            path.display(),
                            prune::human_bytes(*size)
                        );
                    }
                    for c in &done.containers {
                        println!("  {verb} container {c}");
                    }
                    for n in &done.networks {
                        println!("  {verb} network {n}");
                    }
                    for f in &run.findings {
                        println!("  {f}");
                    }
                    run.finding(line);
                    run.detail(
                        "reclaimed",
                        serde_json::json!({
                            "containers": done.containers,
                            "networks": done.networks,
                            "directories": done.directories.iter().map(|(p, b)| serde_json::json!({"path": p, "bytes": b})).collect::<Vec<_>>(),
                            "volumes_bytes": done.volumes_bytes,
                            "images_bytes": done.images_bytes,
                            "build_cache_bytes": done.build_cache_bytes,
                            "dry_run": p.dry_run,
                        }),
                    );
                    diagnostic::record(&dir, &run, "ok");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    run.finding(format!("{e:#}"));
                    diagnostic::record(&dir, &run, "refused");
                    Err(e)
                }
            }
        }
        NodeCommand::Slot(s) => {
            let (config, _) = match loaded {
                Ok(l) => l,
                Err(e) => return Ok(crate::exit::invalid_config(&e)),
            };
            let dir = node_dir(&args, Some(&config))?;
            let settings = match registered(&dir) {
                Ok(s) => s,
                Err(e) => {
                    // Not registered: restarting cannot help (the unit stops on exit code 2).
                    eprintln!("mayfly: {e:#}");
                    return Ok(ExitCode::from(crate::exit::EXIT_CONFIG));
                }
            };
            if s.n == 0 || s.n > settings.slots {
                eprintln!(
                    "mayfly: slot {}: the node has slots 1 to {}",
                    s.n, settings.slots
                );
                return Ok(ExitCode::from(crate::exit::EXIT_CONFIG));
            }
            // As root, the runners run as the node's user; otherwise the slot must be that user.
            let run_as = if identity::effective_uid()? == 0 {
                (settings.user != "root")
                    .then(|| mayfly_provider::local::process::account(&settings.user))
                    .transpose()
                    .with_context(|| format!("the node's user {}", settings.user))?
            } else {
                let me = identity::lookup(&identity::effective_uid()?.to_string()).await?;
                if me.name != settings.user && !settings.docker {
                    anyhow::bail!(
                        "slot {}: runs as {}, but the node's runners run as {}: run it as root \
                         (its unit does) or as {}",
                        s.n,
                        me.name,
                        settings.user,
                        settings.user
                    );
                }
                None
            };
            let forge = github(&config, &settings)?;
            let (stop_tx, stop) = tokio::sync::watch::channel(false);
            // Installed now, before the slot starts a runner: a SIGTERM is never the default kill.
            let signal = crate::daemon::shutdown_signal()?;
            tokio::spawn(async move {
                if signal.await.is_ok() {
                    let _ = stop_tx.send(true);
                }
            });
            let state = files::read(&dir.slot_state(s.n))
                .ok()
                .flatten()
                .unwrap_or_default();
            let slot = slot::Slot {
                run_as: if settings.docker { None } else { run_as },
                dir,
                n: s.n,
                docker: settings.docker.then(docker),
                settings,
                forge: Box::new(forge),
                state,
                stop,
            };
            slot.run().await?;
            Ok(ExitCode::SUCCESS)
        }
        NodeCommand::Hook(_) => unreachable!("handled before the runtime"),
    }
}

async fn register(
    args: &NodeArgs,
    flags: &settings::Flags,
    config: &Config,
    file: Option<&Path>,
    systemd: &Systemd,
) -> anyhow::Result<ExitCode> {
    require_root("register")?;
    let dir = node_dir(args, Some(config))?;
    let sudo_user = std::env::var("SUDO_USER").ok();
    let (invoker, _) = identity::invoking(sudo_user.as_deref()).await?;
    let settings = settings::resolve(config, file, flags, dir.path(), &invoker.name)?;
    let owner = identity::lookup(&settings.user).await?;
    // The slot units and the job hooks run this very binary, the hooks as the slots' user.
    let who = access::who(&settings.user).await?;
    if let Some(blocked) = access::blocked(&who, &settings.mayfly)
        .with_context(|| format!("cannot read {}", settings.mayfly.display()))?
    {
        anyhow::bail!(
            "{}; {}",
            access::problem(&who, &settings.mayfly, &blocked),
            access::HINT
        );
    }
    let previous: Option<Settings> = files::read(&dir.settings()).ok().flatten();
    let forge = github(config, &settings)?;
    let env = crate::service::service_environment(file, &Env::process())?
        .into_iter()
        .collect();
    let mut run = Run::new("register", args.debug);
    let step = register::Register {
        dir: &dir,
        settings: &settings,
        previous,
        owner: &owner,
        forge: &forge,
        systemd,
        env,
        bootstrap: &config.bootstrap,
    };
    match step.run(&mut run).await {
        Ok(changed) => {
            if changed {
                println!(
                    "registered {}: {} slot(s) of single-use runners in {}, labels {}, as {}",
                    settings.name,
                    settings.slots,
                    settings.scope,
                    settings.labels.join(","),
                    settings.user
                );
                for f in &run.findings {
                    println!("  {f}");
                }
            } else {
                println!("{} is registered already: nothing changed", settings.name);
            }
            println!("  next: mayfly node doctor");
            diagnostic::record(&dir, &run, if changed { "changed" } else { "unchanged" });
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            run.finding(format!("{e:#}"));
            diagnostic::record(&dir, &run, "failed");
            Err(e)
        }
    }
}

async fn deregister(
    args: &NodeArgs,
    force: bool,
    loaded: Result<(Config, Option<PathBuf>), config::ConfigError>,
    systemd: &Systemd,
) -> anyhow::Result<ExitCode> {
    require_root("deregister")?;
    let config = match loaded {
        Ok((c, _)) => Some(c),
        Err(e) if force => {
            eprintln!(
                "mayfly: warning: the configuration does not load ({e}); --force cleans up without GitHub"
            );
            None
        }
        Err(e) => return Ok(crate::exit::invalid_config(&e)),
    };
    let dir = node_dir(args, config.as_ref())?;
    let settings = registered(&dir)?;
    let forge = config.as_ref().map(|c| github(c, &settings)).transpose();
    let forge = match forge {
        Ok(f) => f,
        Err(e) if force => {
            eprintln!("mayfly: warning: {e:#}");
            None
        }
        Err(e) => return Err(e),
    };
    let forge_ref = forge.as_ref().map(|f| f as &dyn NodeForge);
    let mut run = Run::new("deregister", args.debug);
    let d = deregister::Deregister {
        dir: &dir,
        settings: &settings,
        forge: forge_ref,
        systemd,
        docker: &docker(),
        force,
    };
    if force {
        println!("--force: jobs running on this host are killed, not finished");
    } else {
        println!(
            "stopping {} slot(s): a slot running a job lets it finish first (up to {})",
            settings.slots,
            mayfly_core::time::human(settings.stop_timeout())
        );
    }
    // Stopping may wait for jobs: systemctl's wait is the slots' stop timeout.
    let stopping = Systemd {
        timeout: systemd
            .timeout
            .max(settings.stop_timeout() + Duration::from_secs(120)),
        ..systemd.clone()
    };
    let d_stop = deregister::Deregister {
        systemd: &stopping,
        ..d
    };
    if let Err(e) = d_stop.stop_slots(&mut run).await {
        if !force {
            run.finding(format!("{e:#}"));
            diagnostic::record(&dir, &run, "failed");
            return Err(e.context("cannot stop the slots (deregister --force kills them)"));
        }
        run.finding(format!("stopping the slots: {e:#}"));
    }
    let left = d.remove_runners(&mut run).await;
    if !left.is_empty() && !force {
        for (id, name, why) in &left {
            eprintln!("  not removed from GitHub: runner {name} ({id}): {why}");
        }
        run.finding(format!("{} runner(s) not removed from GitHub", left.len()));
        diagnostic::record(&dir, &run, "failed");
        anyhow::bail!(
            "the slots are stopped, but GitHub still has the runners above: the units and files \
             are kept; run deregister again when GitHub answers, or deregister --force"
        );
    }
    d.remove_local(&mut run).await?;
    println!(
        "deregistered {}: slots stopped, units and files removed",
        settings.name
    );
    for f in &run.findings {
        println!("  {f}");
    }
    if !left.is_empty() {
        println!(
            "left on GitHub (could not be removed; GitHub drops offline single-use runners after a day):"
        );
        for (id, name, why) in &left {
            println!("  runner {name} ({id}) in {}: {why}", settings.scope);
            run.finding(format!("left on GitHub: runner {name} ({id}): {why}"));
        }
    }
    diagnostic::record(&dir, &run, if left.is_empty() { "ok" } else { "forced" });
    Ok(ExitCode::SUCCESS)
}

async fn doctor(
    args: &NodeArgs,
    output: Output,
    loaded: Result<(Config, Option<PathBuf>), config::ConfigError>,
    systemd: &Systemd,
) -> anyhow::Result<ExitCode> {
    let (config, config_err) = match loaded {
        Ok((c, _)) => (Some(c), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let dir = node_dir(args, config.as_ref())?;
    let settings = files::read::<Settings>(&dir.settings()).ok().flatten();
    let forge = match (&config, &settings) {
        (Some(c), Some(s)) => github(c, s).map_err(|e| format!("{e:#}")),
        (None, _) => Err(format!(
            "the configuration does not load: {}",
            config_err.unwrap_or_default()
        )),
        (Some(_), None) => Err("not registered".into()),
    };
    let forge_ref = forge
        .as_ref()
        .map(|f| f as &dyn NodeForge)
        .map_err(Clone::clone);
    let limits =
        doctor::DiskLimits::of(&config.as_ref().map(|c| c.node.clone()).unwrap_or_default());
    let checks = doctor::checks(
        &dir,
        settings.as_ref(),
        forge_ref,
        systemd,
        &docker(),
        &limits,
    )
    .await;
    let worst = checks.worst();
    let state_file = dir.diagnostic();
    let mut run = Run::new("doctor", args.debug);
    run.detail("checks", serde_json::to_value(&checks.0)?);
    for c in checks.0.iter().filter(|c| c.status != doctor::Status::Ok) {
        run.finding(format!("{} {}: {}", c.status.as_str(), c.name, c.detail));
    }
    diagnostic::record(&dir, &run, worst.as_str());
    match output {
        Output::Json => {
            let v = serde_json::json!({
                "result": worst,
                "checks": checks.0,
                "diagnostic_state": state_file,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Output::Text => {
            for c in &checks.0 {
                println!("{:<5} {:<18} {}", c.status.as_str(), c.name, c.detail);
                if let Some(h) = &c.hint {
                    println!("{:<5} {:<18} hint: {h}", "", "");
                }
            }
            println!("diagnostic state: {}", state_file.display());
        }
    }
    Ok(if worst == doctor::Status::Fail {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
