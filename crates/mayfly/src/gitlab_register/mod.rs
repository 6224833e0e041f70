//! `mayfly gitlab register`: many custom-executor runners in gitlab-runner's config.toml at
//! once, from authentication tokens (verified as `gitlab-runner register` does) or made with
//! the API, written idempotently through toml_edit; `--dry-run` shows the diff.

mod diff;
mod runner_toml;
mod tokens;

use clap::{Args, Subcommand, ValueEnum};
use mayfly_core::Secret;
use mayfly_forge::gitlab::{
    Client, ClientSettings, Error as GitlabError, LimitsConfig, RunnerScope,
};
use runner_toml::{Custom, Entry};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum GitlabCommand {
    /// Register custom-executor runners in gitlab-runner's config.toml: each `glrt-` token of
    /// --tokens (verified with GitLab), and --create new ones made with the API. Entries with
    /// other tokens, settings and comments are kept; running it again changes nothing
    Register(RegisterArgs),
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The GitLab instance (https://gitlab.com), not its API
    #[arg(long, env = "GITLAB_URL", value_name = "URL")]
    pub url: String,
    /// Runner authentication tokens, one a line (`#` comments allowed); `-` reads standard
    /// input. Never on the command line: others can read it there
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Also create this many runners with `POST /user/runners` (needs GITLAB_TOKEN with the
    /// create_runner scope)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub create: u32,
    /// Tags of the created runners (comma-separated): they pick the executor's pool
    #[arg(long, value_delimiter = ',', value_name = "TAGS")]
    pub tags: Vec<String>,
    /// Whose runners to create
    #[arg(long, value_enum, default_value_t = Kind::Project)]
    pub runner_type: Kind,
    /// The project's or group's numeric id, for project and group runners
    #[arg(long, value_name = "ID")]
    pub owner_id: Option<u64>,
    /// gitlab-runner's configuration, created if missing
    #[arg(
        long,
        default_value = "/etc/gitlab-runner/config.toml",
        value_name = "FILE"
    )]
    pub runner_config: PathBuf,
    /// The executor's file the entries point at
    #[arg(long, default_value = crate::gitlab_executor::settings::DEFAULT_FILE, value_name = "FILE")]
    pub executor_file: PathBuf,
    /// The mayfly binary gitlab-runner runs [default: this one]
    #[arg(long, value_name = "PATH")]
    pub mayfly: Option<PathBuf>,
    #[arg(long, default_value = "/builds", value_name = "DIR")]
    pub builds_dir: String,
    #[arg(long, default_value = "/cache", value_name = "DIR")]
    pub cache_dir: String,
    /// Show what would change in config.toml; verify nothing, create nothing, write nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    Instance,
    Group,
    Project,
}

pub fn main(args: RegisterArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mayfly: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(register(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("mayfly: {e}");
            ExitCode::from(2)
        }
    }
}

/// `Ok(false)` when some runners could not be registered (each named on stderr) while the
/// others were.
async fn register(args: RegisterArgs) -> Result<bool, String> {
    let listed = match &args.tokens {
        Some(p) => tokens::read(p)?,
        None => (String::new(), Vec::new()),
    };
    if listed.1.is_empty() && args.create == 0 {
        return Err("nothing to register: give --tokens FILE (or -) or --create N".into());
    }
    let personal = std::env::var("GITLAB_TOKEN").ok().filter(|t| !t.is_empty());
    if args.create > 0 && personal.is_none() {
        return Err("--create needs GITLAB_TOKEN (a token with the create_runner scope)".into());
    }
    let scope = match (args.runner_type, args.owner_id) {
        (Kind::Instance, _) => RunnerScope::Instance,
        (Kind::Group, Some(id)) => RunnerScope::Group {
            id,
            path: String::new(),
        },
        (Kind::Project, Some(id)) => RunnerScope::Project {
            id,
            path: String::new(),
        },
        (_, None) if args.create > 0 => {
            return Err("--create of group or project runners needs --owner-id".into());
        }
        _ => RunnerScope::Instance,
    };
    let program = match &args.mayfly {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?,
    };
    let custom = Custom {
        program: program.display().to_string(),
        executor_file: args.executor_file.display().to_string(),
        builds_dir: args.builds_dir.clone(),
        cache_dir: args.cache_dir.clone(),
    };
    let path = args.runner_config.display().to_string();
    let old = match std::fs::read_to_string(&args.runner_config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {path}: {e}")),
    };
    let mut doc = runner_toml::parse(&path, &old)?;
    // Verify needs no personal token; the client wants one, and sends it on no runner call.
    let client = Client::new(&ClientSettings {
        url: args.url.clone(),
        token: Secret::new(personal.clone().unwrap_or_else(|| "unused".into())),
        limits: LimitsConfig::default(),
    })
    .map_err(|e| e.to_string())?;
    let url = client.instance_url().to_string();
    let mut ok = true;
    let mut entries: Vec<(String, u64, Secret, Option<String>)> = Vec::new();
    let known = runner_toml::tokens(&doc);
    let system_id = if args.dry_run {
        String::new()
    } else {
        system_id(&args.runner_config)?
    };
    for l in &listed.1 {
        if args.dry_run {
            // Not verified: verifying records this host as a manager of the runner.
            let id = if known.iter().any(|k| k == l.token.expose()) {
                existing_id(&doc, l.token.expose())
            } else {
                0
            };
            entries.push((format!("mayfly-line-{}", l.line), id, l.token.clone(), None));
            continue;
        }
        match client.verify_runner(&l.token, &system_id).await {
            Ok(v) => entries.push((
                format!("mayfly-{}", v.id),
                v.id,
                l.token.clone(),
                v.token_expires_at,
            )),
            Err(e) => {
                ok = false;
                let why = match e {
                    GitlabError::Forbidden { .. } | GitlabError::Unauthorized => {
                        "GitLab does not know it (403)".to_string()
                    }
                    other => other.to_string(),
                };
                eprintln!(
                    "mayfly: {}, line {}: token not registered: {why}",
                    listed.0, l.line
                );
            }
        }
    }
    for n in 0..args.create {
        if args.dry_run {
            println!(
                "would create a {scope} runner with tags [{}]",
                args.tags.join(", ")
            );
            continue;
        }
        let description = format!("mayfly custom executor {}", n + 1);
        let labels = mayfly_core::Labels::new(args.tags.clone());
        match client
            .create_runner(&scope, &description, &labels, None)
            .await
        {
            Ok(c) => {
                let expires = c.token_expires_at.map(|t| t.to_string());
                entries.push((format!("mayfly-{}", c.id), c.id, c.token, expires));
            }
            Err(e) => {
                ok = false;
                eprintln!(
                    "mayfly: could not create runner {} of {}: {e}",
                    n + 1,
                    args.create
                );
            }
        }
    }
    let mut changed = 0;
    for (name, id, token, expires) in &entries {
        let e = Entry {
            name: name.clone(),
            url: &url,
            id: *id,
            token: token.expose(),
            token_expires_at: expires.as_deref(),
        };
        if runner_toml::upsert(&mut doc, &e, &custom) {
            changed += 1;
        }
    }
    let new = doc.to_string();
    if args.dry_run {
        let d = diff::unified(&redact(&old, &entries), &redact(&new, &entries), 3);
        if d.is_empty() {
            println!("{path}: no change");
        } else {
            println!("--- {path}\n+++ {path} (after register)\n{d}");
        }
        return Ok(ok);
    }
    if new == old {
        println!(
            "{path}: no change ({} runners registered already)",
            entries.len()
        );
        return Ok(ok);
    }
    write(&args.runner_config, &new)?;
    println!("{path}: {changed} runner entries added or updated");
    Ok(ok)
}

fn existing_id(doc: &toml_edit::DocumentMut, token: &str) -> u64 {
    doc.get("runners")
        .and_then(toml_edit::Item::as_array_of_tables)
        .and_then(|a| {
            a.iter()
                .find(|t| t.get("token").and_then(toml_edit::Item::as_str) == Some(token))
        })
        .and_then(|t| t.get("id").and_then(toml_edit::Item::as_integer))
        .unwrap_or(0) as u64
}

/// The diff shows where tokens go, never the tokens.
fn redact(text: &str, entries: &[(String, u64, Secret, Option<String>)]) -> String {
    let mut out = text.to_string();
    for (_, _, token, _) in entries {
        let t = token.expose();
        let shown = format!("glrt-…{}", &t[t.len().saturating_sub(4)..]);
        out = out.replace(t, &shown);
    }
    out
}

/// Atomically, mode 0600 (the file holds tokens), beside the old one.
fn write(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.mayfly-tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config.toml")
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

/// gitlab-runner's `.runner_system_id` beside config.toml: this host's identity as a runner
/// manager, made once (`r_` and 12 random characters, as gitlab-runner makes it without a
/// machine id) and kept.
fn system_id(config: &Path) -> Result<String, String> {
    let file = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join(".runner_system_id");
    if let Ok(id) = std::fs::read_to_string(&file) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_string());
        }
    }
    use rand::Rng;
    let chars: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(12)
        .map(|c| char::from(c).to_ascii_lowercase())
        .collect();
    let id = format!("r_{chars}");
    if let Some(dir) = file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&file, format!("{id}\n"))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok(id)
}
