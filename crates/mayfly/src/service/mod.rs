//! `mayfly service`: `mayfly run` as a systemd service on this machine, run as the user who
//! installed it, its secrets in a root-only environment file beside the world-readable unit.

pub(crate) mod identity;
pub(crate) mod systemd;
pub mod unit;

use crate::config::{self, Config, Env, HumanDuration, Overrides};
use anyhow::Context;
use clap::{Args, Subcommand};
use mayfly_core::Secret;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use systemd::{Call, Systemd};
use unit::Unit;

/// Variables the configuration reads by name: the service gets them when they are set now.
pub const CONFIG_VARIABLES: [&str; 6] = [
    "GITHUB_TOKEN",
    "GITHUB_REPOSITORY",
    "GITHUB_WEBHOOK_SECRET",
    "HETZNER_TOKEN",
    "HCLOUD_ENDPOINT",
    "RUST_LOG",
];

/// `MAYFLY_*` variables that become flags on the command line instead (or that only steer
/// mayfly's own tools and tests).
const NOT_PASSED: [&str; 7] = [
    "MAYFLY_CONFIG",
    "MAYFLY_STATE",
    "MAYFLY_LISTEN",
    "MAYFLY_LOG_FORMAT",
    "MAYFLY_LOG_LEVEL",
    mayfly::ssh::PROGRAM_ENV,
    "MAYFLY_SIM_",
];

#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    pub command: ServiceCommand,
    /// Name of the systemd unit: NAME.service, its secrets in /etc/mayfly/NAME.env
    #[arg(long, global = true, default_value = "mayfly", value_name = "NAME")]
    pub name: String,
    /// Print the unit, the environment file (values redacted) and the commands; change nothing
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Longest wait on one systemctl or journalctl call (`logs -f` runs until Ctrl-C)
    #[arg(long, global = true, default_value = "2m", value_name = "DURATION")]
    pub timeout: HumanDuration,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Install and start a systemd service that runs `mayfly run` as you, with the options given
    /// now (-c, --state, --listen, --log-format, --log-level), restarting on failure. Needs root:
    /// `sudo -E mayfly -c mayfly.toml service install` (-E keeps the tokens in the environment).
    /// Installing again updates the unit and restarts the service
    Install,
    /// Stop and disable the service, then remove its unit and its environment file
    Uninstall,
    /// Start the service
    Start,
    /// Stop the service (a reconcile pass in flight finishes first)
    Stop,
    /// Show the service's state and its last log lines (systemctl status)
    Status,
    /// Show the service's log (journalctl)
    Logs(LogsArgs),
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new lines until Ctrl-C
    #[arg(short, long)]
    pub follow: bool,
    /// How many of the last lines to show
    #[arg(short = 'n', long, default_value_t = 100, value_name = "N")]
    pub lines: u32,
}

/// Runs a `mayfly service` command; prints its own errors.
pub fn run(args: ServiceArgs, config: Option<&Path>, overrides: &Overrides) -> ExitCode {
    crate::exit::block_on(command(args, config, overrides))
}

async fn command(
    args: ServiceArgs,
    config: Option<&Path>,
    overrides: &Overrides,
) -> anyhow::Result<ExitCode> {
    check_name(&args.name)?;
    let systemd = Systemd::from_env(args.timeout.0);
    let name = args.name.as_str();
    let unit = format!("{name}.service");
    match args.command {
        ServiceCommand::Install => install(&systemd, name, args.dry_run, config, overrides).await,
        ServiceCommand::Uninstall => uninstall(&systemd, name, args.dry_run).await,
        ServiceCommand::Start => {
            simple(&systemd, Call::systemctl(&["start", &unit]), args.dry_run).await
        }
        ServiceCommand::Stop => {
            simple(&systemd, Call::systemctl(&["stop", &unit]), args.dry_run).await
        }
        ServiceCommand::Status => {
            let call = Call::systemctl(&["status", &unit, "--no-pager"]).unchecked();
            passthrough(&systemd, call, args.dry_run).await
        }
        ServiceCommand::Logs(logs) => {
            let mut words = vec![
                "-u".to_string(),
                unit.clone(),
                "--no-pager".into(),
                "-n".into(),
                logs.lines.to_string(),
            ];
            if logs.follow {
                words.push("-f".into());
            }
            passthrough(&systemd, Call::journalctl(words, logs.follow), args.dry_run).await
        }
    }
}

/// A unit name mayfly writes files for: no path separators, nothing systemd would refuse.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
        && !name.starts_with(['.', '-']);
    if !ok {
        anyhow::bail!(
            "--name {name:?}: a unit name is letters, digits, `-`, `_`, `.` and `@` (at most 64), \
             not starting with `.` or `-`"
        );
    }
    Ok(())
}

/// Changing system services is root's: a clear word instead of systemctl's polkit prompt.
pub(crate) fn require_root(what: &str) -> anyhow::Result<()> {
    if identity::effective_uid()? != 0 {
        anyhow::bail!(
            "{what} needs root: run it with sudo, e.g. `sudo -E mayfly service {what}` \
             (-E keeps GITHUB_TOKEN and the other variables the configuration reads; the \
             service still runs as you)"
        );
    }
    Ok(())
}

async fn simple(systemd: &Systemd, call: Call, dry_run: bool) -> anyhow::Result<ExitCode> {
    if dry_run {
        println!("{}", systemd.describe(&call));
        return Ok(ExitCode::SUCCESS);
    }
    require_root(&call.args[0])?;
    systemd.run(&call).await?;
    Ok(ExitCode::SUCCESS)
}

/// Runs a read-only command whose exit status is the answer (status: 3 means not running).
async fn passthrough(systemd: &Systemd, call: Call, dry_run: bool) -> anyhow::Result<ExitCode> {
    if dry_run {
        println!("{}", systemd.describe(&call));
        return Ok(ExitCode::SUCCESS);
    }
    let status = systemd.run(&call).await?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

/// Everything `install` writes and runs, worked out before anything changes.
struct Plan {
    unit: Unit,
    unit_text: String,
    env: Vec<(String, Secret)>,
    /// The state directory to create (owned by the service's user) when it does not exist.
    state_dir: Option<PathBuf>,
    owner: identity::Account,
}

async fn install(
    systemd: &Systemd,
    name: &str,
    dry_run: bool,
    config_path: Option<&Path>,
    overrides: &Overrides,
) -> anyhow::Result<ExitCode> {
    if !dry_run {
        require_root("install")?;
    }
    let sudo_user = std::env::var("SUDO_USER").ok();
    let (owner, via_sudo) = identity::invoking(sudo_user.as_deref()).await?;
    let mut env = Env::process();
    if via_sudo {
        // The service runs as the user behind sudo, so their home decides the default state.
        env = env.with("HOME", &owner.home.to_string_lossy());
    }
    let file = config::find_file(config_path);
    let config = Config::load(file.as_deref(), overrides, &env)?;
    let file = file
        .map(|f| std::path::absolute(&f).context("cannot make the config file's path absolute"))
        .transpose()?;
    let plan = plan(
        systemd,
        name,
        &config,
        file.as_deref(),
        overrides,
        &env,
        owner,
    )?;

    let unit_path = systemd.unit_path(name);
    let env_path = systemd.env_path(name);
    let existed = unit_path.exists();
    let unit_name = format!("{name}.service");
    let mut calls = vec![Call::systemctl(&["daemon-reload"])];
    if existed {
        calls.push(Call::systemctl(&["enable", &unit_name]));
        calls.push(Call::systemctl(&["restart", &unit_name]));
    } else {
        calls.push(Call::systemctl(&["enable", "--now", &unit_name]));
    }

    if dry_run {
        println!("# mayfly service install --dry-run: nothing is written or run.");
        if let Some(dir) = &plan.state_dir {
            println!(
                "# The state directory {} is created, owned by {}.",
                dir.display(),
                plan.owner.name
            );
        }
        println!("\n# {}\n{}", unit_path.display(), plan.unit_text);
        println!(
            "# {} (mode 0600, owner root; values redacted)\n{}",
            env_path.display(),
            unit::env_file(&plan.env, true).map_err(anyhow::Error::msg)?
        );
        println!("# commands");
        for call in &calls {
            println!("{}", systemd.describe(call));
        }
        return Ok(ExitCode::SUCCESS);
    }

    if plan.owner.uid == 0 {
        eprintln!(
            "mayfly: warning: the service runs as root; run the install through sudo from your \
             own account to run it as you"
        );
    }
    if let Some(dir) = &plan.state_dir {
        create_owned(dir, &plan.owner)?;
    }
    let env_text = unit::env_file(&plan.env, false).map_err(anyhow::Error::msg)?;
    write_file(&env_path, env_text.as_bytes(), 0o600)?;
    write_file(&unit_path, plan.unit_text.as_bytes(), 0o644)?;
    for call in &calls {
        systemd.run(call).await?;
    }
    println!(
        "{} {unit_name}: runs `{}` as {}",
        if existed {
            "updated and restarted"
        } else {
            "installed and started"
        },
        plan.unit.exec.join(" "),
        plan.owner.name
    );
    println!("  unit:    {}", unit_path.display());
    println!(
        "  secrets: {} (mode 0600, {} variables)",
        env_path.display(),
        plan.env.len()
    );
    println!(
        "  next:    mayfly service status --name {name}; mayfly service logs --name {name} -f"
    );
    Ok(ExitCode::SUCCESS)
}

fn plan(
    systemd: &Systemd,
    name: &str,
    config: &Config,
    file: Option<&Path>,
    overrides: &Overrides,
    env: &Env,
    owner: identity::Account,
) -> anyhow::Result<Plan> {
    let exe = std::env::current_exe().context("cannot find the path of the mayfly binary")?;
    let mut exec = vec![exe.to_string_lossy().into_owned()];
    if let Some(file) = file {
        exec.push("-c".into());
        exec.push(file.to_string_lossy().into_owned());
    }
    let mut vars: BTreeMap<String, Secret> = BTreeMap::new();
    // The state is settled now, for the service's user: their `mayfly run` and the service
    // then share one store.
    let state = config.state.as_ref().context("no state URL configured")?;
    let mut writable = Vec::new();
    let mut state_dir = None;
    match sqlite_path(state.expose()) {
        Some(path) => {
            let path = std::path::absolute(&path).unwrap_or(path);
            exec.push("--state".into());
            exec.push(format!("sqlite://{}", path.display()));
            if let Some(dir) = path.parent() {
                writable.push(dir.to_path_buf());
                if !dir.exists() {
                    state_dir = Some(dir.to_path_buf());
                }
            }
        }
        // A database URL may carry a password: it goes to the environment file.
        None => {
            vars.insert("MAYFLY_STATE".into(), Secret::new(state.expose()));
        }
    }
    if let Some(listen) = overrides.listen {
        exec.push("--listen".into());
        exec.push(listen.to_string());
    }
    if let Some(format) = overrides.log_format {
        exec.push("--log-format".into());
        exec.push(
            clap::ValueEnum::to_possible_value(&format)
                .map(|v| v.get_name().to_string())
                .unwrap_or_default(),
        );
    }
    if let Some(level) = &overrides.log_level {
        exec.push("--log-level".into());
        exec.push(level.clone());
    }
    exec.push("run".into());

    vars.extend(service_environment(file, env)?);

    let unit = Unit {
        name: name.to_string(),
        exec,
        user: owner.name.clone(),
        group: owner.group.clone(),
        env_file: systemd.env_path(name),
        writable,
        low_port: config.listen.port() < 1024,
    };
    let unit_text = unit.render().map_err(anyhow::Error::msg)?;
    Ok(Plan {
        unit,
        unit_text,
        env: vars.into_iter().collect(),
        state_dir,
        owner,
    })
}

/// What a service's environment file carries from `env`: the variables the configuration reads
/// by name or through `${VAR}` in `file`, and mayfly's own `MAYFLY_*` settings.
pub(crate) fn service_environment(
    file: Option<&Path>,
    env: &Env,
) -> anyhow::Result<BTreeMap<String, Secret>> {
    let referenced = match file {
        Some(f) => config::referenced_variables(
            &std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?,
        ),
        None => Default::default(),
    };
    let mut vars = BTreeMap::new();
    for (k, v) in env.iter() {
        let wanted = CONFIG_VARIABLES.contains(&k)
            || referenced.contains(k)
            || (k.starts_with("MAYFLY_")
                && !NOT_PASSED.iter().any(|n| k.starts_with(n))
                && !systemd::OVERRIDES.contains(&k));
        if wanted && !v.trim().is_empty() {
            vars.insert(k.to_string(), Secret::new(v));
        }
    }
    Ok(vars)
}

/// The file of an SQLite state URL (`sqlite://PATH`, `sqlite:PATH` or a bare path); `None` for
/// a database server.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return None;
    }
    let rest = match lower.strip_prefix("sqlite:") {
        Some(_) => &url["sqlite:".len()..],
        None => url,
    };
    Some(PathBuf::from(rest.strip_prefix("//").unwrap_or(rest)))
}

/// Creates `dir` and its missing parents, each owned by the service's user, so the service can
/// create its database there.
pub(crate) fn create_owned(dir: &Path, owner: &identity::Account) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.exists()) {
        missing.push(d.to_path_buf());
        at = d.parent();
    }
    for d in missing.iter().rev() {
        std::fs::create_dir(d).with_context(|| format!("cannot create {}", d.display()))?;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o750))
            .with_context(|| format!("cannot set the mode of {}", d.display()))?;
        std::os::unix::fs::chown(d, Some(owner.uid), Some(owner.gid))
            .with_context(|| format!("cannot give {} to {}", d.display(), owner.name))?;
    }
    Ok(())
}

/// Writes `path` whole or not at all, with `mode` from the first byte on: the text goes to a
/// new file beside it (created 0600) that then replaces it.
pub fn write_file(path: &Path, text: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(text)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

async fn uninstall(systemd: &Systemd, name: &str, dry_run: bool) -> anyhow::Result<ExitCode> {
    let unit_path = systemd.unit_path(name);
    let env_path = systemd.env_path(name);
    let unit_name = format!("{name}.service");
    let disable = Call::systemctl(&["disable", "--now", &unit_name]);
    let reload = Call::systemctl(&["daemon-reload"]);
    if dry_run {
        println!("{}", systemd.describe(&disable));
        println!("rm -f {} {}", unit_path.display(), env_path.display());
        println!("{}", systemd.describe(&reload));
        return Ok(ExitCode::SUCCESS);
    }
    require_root("uninstall")?;
    if !unit_path.exists() {
        anyhow::bail!(
            "no service {unit_name} installed ({} does not exist); another --name?",
            unit_path.display()
        );
    }
    systemd.run(&disable).await?;
    for path in [&unit_path, &env_path] {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
    systemd.run(&reload).await?;
    println!(
        "uninstalled {unit_name}: removed {} and {}; the state is kept",
        unit_path.display(),
        env_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_are_checked() {
        assert!(check_name("mayfly").is_ok());
        assert!(check_name("mayfly-ci@2").is_ok());
        for bad in ["", "../etc/passwd", "a b", "-x", ".hidden"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sqlite_state_urls_name_their_file() {
        assert_eq!(
            sqlite_path("sqlite:///var/lib/mayfly/m.db"),
            Some("/var/lib/mayfly/m.db".into())
        );
        assert_eq!(sqlite_path("sqlite:state/m.db"), Some("state/m.db".into()));
        assert_eq!(sqlite_path("/srv/m.db"), Some("/srv/m.db".into()));
        assert_eq!(sqlite_path("postgres://u:p@db/m"), None);
    }

    #[test]
    fn written_files_get_their_mode_and_replace_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.env");
        write_file(&path, b"one", 0o644).unwrap();
        write_file(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
