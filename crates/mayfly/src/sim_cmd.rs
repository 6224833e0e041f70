//! `mayfly sim serve`: runs the fake GitHub, the fake GitLab and the fake Hetzner Cloud with
//! virtual runners, for trying mayfly without a cloud account. Prints the addresses as JSON on
//! its first line.

use anyhow::Context;
use clap::Args;
use mayfly_sim::github::{GithubConfig, WebhookTarget};
use mayfly_sim::gitlab::{AccessToken, GitlabConfig, HookTarget};
use mayfly_sim::hetzner::HetznerConfig;
use mayfly_sim::{Addresses, Sim, SimConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the fake GitHub (port 0 picks a free port)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub github_addr: SocketAddr,

    /// Address of the fake Hetzner Cloud API (port 0 picks a free port)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub hetzner_addr: SocketAddr,

    /// Address of the fake GitLab (its API under /api/v4; port 0 picks a free port)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub gitlab_addr: SocketAddr,

    /// Simulated seconds per real second: 60 makes a one-hour trace take a minute
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0)]
    pub speed: f64,

    /// Token the fake GitHub accepts
    #[arg(
        long,
        env = "MAYFLY_SIM_GITHUB_TOKEN",
        hide_env_values = true,
        default_value = "sim-github-token"
    )]
    pub github_token: String,

    /// Personal access token the fake GitLab accepts (user root, every scope)
    #[arg(
        long,
        env = "MAYFLY_SIM_GITLAB_TOKEN",
        hide_env_values = true,
        default_value = "sim-gitlab-token"
    )]
    pub gitlab_token: String,

    /// Where the fake GitLab delivers Job Hooks of every project (repeatable)
    #[arg(long = "gitlab-webhook", value_name = "URL")]
    pub gitlab_webhooks: Vec<String>,

    /// Secret the fake GitLab sends with its hooks (X-Gitlab-Token)
    #[arg(
        long,
        env = "MAYFLY_SIM_GITLAB_WEBHOOK_TOKEN",
        hide_env_values = true,
        default_value = ""
    )]
    pub gitlab_webhook_token: String,

    /// Token the fake Hetzner Cloud accepts
    #[arg(
        long,
        env = "MAYFLY_SIM_HETZNER_TOKEN",
        hide_env_values = true,
        default_value = "sim-hetzner-token"
    )]
    pub hetzner_token: String,

    /// Path prefix of the GitHub API: empty like github.com, or /api/v3 like GitHub Enterprise Server
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub api_prefix: String,

    /// Where to deliver workflow_job webhooks (repeatable)
    #[arg(long = "webhook", value_name = "URL")]
    pub webhooks: Vec<String>,

    /// Secret that signs the webhooks (X-Hub-Signature-256)
    #[arg(
        long,
        env = "MAYFLY_SIM_WEBHOOK_SECRET",
        hide_env_values = true,
        default_value = ""
    )]
    pub webhook_secret: String,

    /// A trace (CSV or JSON) to replay from the start
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunnerArgs {
    /// What `run.sh` passes to the listener: `run`, then `--jitconfig ENCODED` (also read from
    /// ACTIONS_RUNNER_INPUT_JITCONFIG), `--once`, `--startuptype TYPE`
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

/// Runs the listener stand-in in the working directory (the runner root); its exit code is the
/// listener's.
pub fn runner(args: RunnerArgs) -> std::process::ExitCode {
    let root = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("An error occurred: cannot read the working directory: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("An error occurred: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let code = runtime.block_on(mayfly_sim::program::run(&root, &args.args));
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

#[derive(Debug, Args)]
pub struct InstallRunnerArgs {
    /// The runner directory to write (created if missing)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

pub fn install_runner(args: InstallRunnerArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the path of the mayfly binary")?;
    let dir = std::path::absolute(&args.dir)
        .with_context(|| format!("cannot make {} absolute", args.dir.display()))?;
    let run = mayfly_sim::program::install(&dir, &exe)
        .with_context(|| format!("cannot write {}", dir.display()))?;
    println!(
        "{}: a runner whose listener is `mayfly sim runner`; use runner_dir = {:?}",
        run.display(),
        dir.display().to_string()
    );
    Ok(())
}

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        anyhow::bail!("--speed: expected a positive factor, got {}", args.speed);
    }
    if !(args.api_prefix.is_empty() || args.api_prefix.starts_with('/')) {
        anyhow::bail!(
            "--api-prefix: expected empty or a path starting with /, got {:?}",
            args.api_prefix
        );
    }
    for url in &args.webhooks {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("--webhook: expected an http(s):// URL, got {url:?}");
        }
    }
    for url in &args.gitlab_webhooks {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("--gitlab-webhook: expected an http(s):// URL, got {url:?}");
        }
    }
    let trace = match &args.trace {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Some(mayfly_sim::trace::parse(
                &path.display().to_string(),
                &text,
            )?)
        }
        None => None,
    };
    let config = SimConfig {
        speed: args.speed,
        github: GithubConfig {
            api_prefix: args.api_prefix.trim_end_matches('/').to_string(),
            tokens: vec![args.github_token.clone()],
            webhooks: args
                .webhooks
                .iter()
                .map(|url| WebhookTarget {
                    url: url.clone(),
                    secret: args.webhook_secret.clone(),
                })
                .collect(),
            ..GithubConfig::default()
        },
        gitlab: GitlabConfig {
            tokens: vec![AccessToken::full(&args.gitlab_token)],
            webhooks: args
                .gitlab_webhooks
                .iter()
                .map(|url| HookTarget {
                    url: url.clone(),
                    token: args.gitlab_webhook_token.clone(),
                })
                .collect(),
            ..GitlabConfig::default()
        },
        hetzner: HetznerConfig {
            token: args.hetzner_token.clone(),
            ..HetznerConfig::default()
        },
        ..SimConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let sim = Sim::start(config);
        let at = sim
            .listen_on(Addresses {
                github: args.github_addr,
                hetzner: args.hetzner_addr,
                gitlab: args.gitlab_addr,
            })
            .await
            .context("cannot listen")?;
        let github = format!(
            "http://{}{}",
            at.github,
            args.api_prefix.trim_end_matches('/')
        );
        let line = serde_json::json!({
            "github": github,
            "hetzner": format!("http://{}/v1", at.hetzner),
            "gitlab": format!("http://{}", at.gitlab),
            "control": format!("http://{}/_sim", at.github),
        });
        println!("{line}");
        if let Some(jobs) = trace {
            tracing::info!(jobs = jobs.len(), "replaying trace");
            sim.replay(jobs);
        }
        let signal = crate::daemon::shutdown_signal()?.await?;
        tracing::info!(signal, "stopping");
        Ok(())
    })
}
