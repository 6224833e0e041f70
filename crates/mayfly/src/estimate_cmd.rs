//! `mayfly estimate`: reads a trace (a file, or a repository's job history from GitHub), replays
//! it in virtual time under a few scenarios and prints what each would cost and how jobs would wait.

use crate::config::{self, Config, Env, HumanDuration, LogFormat, Overrides};
use anyhow::{Context, bail};
use clap::{ArgGroup, Args, ValueEnum};
use mayfly::estimate::history::{self, Converted};
use mayfly::estimate::{self, Model, Outcome, Prices, Scenario, Trace};
use mayfly::local;
use mayfly_core::{Arch, Pools, RunnerScope, Secret, Time};
use mayfly_forge::github::{AuthConfig, Client, ClientConfig, LimitsConfig, Repo};
use serde::Serialize;
use serde_json::json;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["trace", "from_github"])))]
pub struct EstimateArgs {
    /// The trace to replay: CSV (`at,repo,labels,duration[,run]`, seconds) or JSON, as
    /// `mayfly demo --trace` reads it (see docs/simulator.md)
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,

    /// Build the trace from this repository's completed jobs on GitHub instead: each job that
    /// ran, queued when GitHub queued it, running as long as it ran. Needs a token
    /// (GITHUB_TOKEN, or [github] in the config; its api_url for GitHub Enterprise Server)
    #[arg(long, value_name = "OWNER/REPO", requires = "since")]
    pub from_github: Option<String>,

    /// Start of the --from-github window: a date (2026-01-31, midnight UTC) or an RFC 3339
    /// time (2026-01-31T08:00:00Z). Time 0 of the trace
    #[arg(long, value_name = "DATE", requires = "from_github", conflicts_with = "trace", value_parser = parse_time)]
    pub since: Option<Time>,

    /// End of the --from-github window, exclusive [default: now]
    #[arg(long, value_name = "DATE", requires = "from_github", conflicts_with = "trace", value_parser = parse_time)]
    pub until: Option<Time>,

    /// Also write the trace built from GitHub to FILE (CSV, or JSON when FILE ends in .json)
    /// to replay it later with --trace
    #[arg(
        long,
        value_name = "FILE",
        requires = "from_github",
        conflicts_with = "trace"
    )]
    pub save_trace: Option<PathBuf>,

    /// Standby runners per pool in the "standby N" scenarios (capped at the pool's max)
    /// [default: the configured standby if a pool has any, else 1 per pool]
    #[arg(long, value_name = "N")]
    pub standby: Option<u32>,

    /// Hourly price of a server type in EUR, instead of its Hetzner list price (net); needed
    /// for types the list lacks. Repeat for several
    #[arg(long = "price", value_name = "TYPE=EUR_PER_HOUR", value_parser = parse_price)]
    pub prices: Vec<(String, f64)>,

    /// From a create until the runner takes a job (the simulator's server boot and runner start)
    #[arg(long, value_name = "DURATION", default_value_t = HumanDuration(Model::default().boot))]
    pub boot: HumanDuration,

    /// From a reuse (the server rebuilt for the next job) until the runner takes a job
    #[arg(long, value_name = "DURATION", default_value_t = HumanDuration(Model::default().rebuild))]
    pub rebuild: HumanDuration,

    /// A table for people, or JSON for scripts
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Runs the command; the configuration is `config` (or `./mayfly.toml`), loaded without tokens.
pub fn main(
    args: EstimateArgs,
    config: Option<&Path>,
    overrides: &Overrides,
    log_format: Option<LogFormat>,
) -> ExitCode {
    // Warnings only (a GitHub rate limit, say): the output is the report.
    if let Err(e) = crate::logging::init(log_format.unwrap_or_default(), "warn") {
        eprintln!("mayfly: {e:#}");
        return ExitCode::FAILURE;
    }
    let file = config::find_file(config);
    let loaded = match &file {
        Some(path) => match Config::load_for_planning(Some(path), overrides, &Env::process()) {
            Ok(c) => Some(c),
            Err(e) => return crate::exit::invalid_config(&e),
        },
        None => None,
    };
    match run(args, loaded.as_ref(), file.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mayfly: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where the jobs came from, for the report.
struct Source {
    origin: String,
    skipped: Option<Converted>,
}

fn run(args: EstimateArgs, config: Option<&Config>, file: Option<&Path>) -> anyhow::Result<()> {
    let pools = pools(config);
    let mut prices = Prices::hetzner();
    for (server_type, price) in &args.prices {
        prices.set(server_type, *price);
    }
    let model = Model {
        boot: args.boot.0,
        rebuild: args.rebuild.0,
        ..config.map_or_else(Model::default, |c| Model {
            reconcile: c.intervals.reconcile.0,
            resync: c.intervals.resync.0,
            settle: c.intervals.settle.0,
            coalesce: c.intervals.coalesce.0,
            ..Model::default()
        })
    };
    let (jobs, source) = match (&args.trace, &args.from_github) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the trace {}", path.display()))?;
            let origin = path.display().to_string();
            let jobs = mayfly_sim::trace::parse(&origin, &text)?;
            (
                jobs,
                Source {
                    origin,
                    skipped: None,
                },
            )
        }
        (None, Some(repo)) => from_github(&args, repo, config)?,
        (None, None) => bail!("give --trace FILE or --from-github OWNER/REPO"),
    };
    let trace = Trace::new(&jobs);
    if trace.is_empty() {
        bail!("{}: no jobs to replay", source.origin);
    }
    let list = estimate::scenarios(&pools, args.standby);
    let rows = estimate::run_all(&trace, &pools, &prices, &model, &list)?;
    let text = match args.output {
        Output::Table => table(&source, &trace, &pools, &prices, &model, &rows, file),
        Output::Json => json(&source, &trace, &pools, &prices, &model, &rows)?,
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A reader that stopped early (`| head`) is not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write the report")
        }
        _ => Ok(()),
    }
}

/// The configured pools; without a configuration file, one pool for `self-hosted, linux, x64`
/// jobs on a cx23 in fsn1.
fn pools(config: Option<&Config>) -> Pools {
    let Some(config) = config else {
        let pool = local::pool(
            "default",
            &["self-hosted", "linux", "x64"],
            &["cx23"],
            &["fsn1"],
            Arch::X86,
        );
        return local::pools("mayfly", vec![pool], true);
    };
    let mut pools = config.pools();
    // No repository to register standby runners in: count them as organization runners rather
    // than runners that can take nothing.
    if pools.runner_scope == (RunnerScope::Repository { standby: None }) {
        pools.runner_scope = RunnerScope::Shared;
    }
    pools
}

fn from_github(
    args: &EstimateArgs,
    repo: &str,
    config: Option<&Config>,
) -> anyhow::Result<(Vec<mayfly_sim::trace::TraceJob>, Source)> {
    let parsed = Repo::parse(repo).map_err(|_| {
        anyhow::anyhow!("--from-github: expected OWNER/REPO, like acme/app, got {repo:?}")
    })?;
    let since = args.since.context("--from-github needs --since DATE")?;
    let until = args.until.unwrap_or_else(now);
    if until <= since {
        bail!(
            "--since {} is not before --until {}",
            rfc3339(since),
            rfc3339(until)
        );
    }
    let client = github_client(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let terminal = std::io::stderr().is_terminal();
    let progress = move |done: usize, total: usize| {
        if terminal && (done.is_multiple_of(10) || done == total) {
            eprint!("\rreading jobs of {done}/{total} runs");
            if done == total {
                eprintln!();
            }
        }
    };
    let found = runtime
        .block_on(client.history(&parsed, since, until, &progress))
        .with_context(|| format!("cannot read the history of {repo}"))?;
    let converted = history::trace_from_jobs(repo, since, &found.jobs);
    eprintln!(
        "{repo}: {} completed runs created {} to {}, {} jobs; {} never ran and {} had no labels or times: left out{}",
        found.runs,
        rfc3339(since),
        rfc3339(until),
        found.jobs.len(),
        converted.never_ran,
        converted.unreadable,
        if found.unlisted > 0 {
            format!("; {} runs GitHub would not list", found.unlisted)
        } else {
            String::new()
        }
    );
    if let Some(path) = &args.save_trace {
        save(path, &converted.trace)?;
        eprintln!("trace written to {}", path.display());
    }
    let trace = converted.trace.clone();
    Ok((
        trace,
        Source {
            origin: format!("{repo} since {}", rfc3339(since)),
            skipped: Some(converted),
        },
    ))
}

/// The credential of the configuration (a token or an App), else GITHUB_TOKEN, for github.com.
fn github_client(config: Option<&Config>) -> anyhow::Result<Client> {
    let client = match config {
        Some(c) => c.github().client,
        None => ClientConfig {
            api_url: mayfly_forge::github::config::GITHUB_API.to_string(),
            auth: AuthConfig::Token {
                token: Secret::new(std::env::var("GITHUB_TOKEN").unwrap_or_default()),
            },
            limits: LimitsConfig::default(),
        },
    };
    if let AuthConfig::Token { token } = &client.auth
        && token.expose().trim().is_empty()
    {
        bail!(
            "--from-github needs a GitHub token: set GITHUB_TOKEN, or token (or an App) in the config's [github]"
        );
    }
    Client::new(&client).context("cannot set up the GitHub client")
}

fn save(path: &Path, trace: &[mayfly_sim::trace::TraceJob]) -> anyhow::Result<()> {
    let text = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        serde_json::to_string_pretty(trace)?
    } else {
        mayfly_sim::trace::to_csv(trace)
            .map_err(|e| anyhow::anyhow!("{e}: give --save-trace a .json file"))?
    };
    std::fs::write(path, text)
        .with_context(|| format!("cannot write the trace to {}", path.display()))
}

fn now() -> Time {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Time::from_millis(ms)
}

fn rfc3339(t: Time) -> String {
    jiff::Timestamp::from_millisecond(t.millis())
        .map_or_else(|_| t.to_string(), |ts| ts.to_string())
}

/// `--since`/`--until`: a date (midnight UTC) or an RFC 3339 time.
fn parse_time(s: &str) -> Result<Time, String> {
    let s = s.trim();
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(Time::from_millis(t.as_millisecond()));
    }
    s.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| Time::from_millis(z.timestamp().as_millisecond()))
        .ok_or_else(|| {
            "expected a date (2026-01-31) or an RFC 3339 time (2026-01-31T08:00:00Z)".to_string()
        })
}

/// `--price cx23=0.0071`.
fn parse_price(s: &str) -> Result<(String, f64), String> {
    let form = "expected TYPE=EUR_PER_HOUR, like cx23=0.0071";
    let (t, p) = s.split_once('=').ok_or(form)?;
    let price: f64 = p.trim().parse().map_err(|_| form)?;
    if t.trim().is_empty() || !price.is_finite() || price < 0.0 {
        return Err(form.to_string());
    }
    Ok((t.trim().to_string(), price))
}

fn hours(secs: f64) -> String {
    mayfly_core::time::human(std::time::Duration::from_secs_f64(secs.max(0.0)))
}

fn table(
    source: &Source,
    trace: &Trace,
    pools: &Pools,
    prices: &Prices,
    model: &Model,
    rows: &[(Scenario, Outcome)],
    file: Option<&Path>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "mayfly estimate: {} jobs from {}, arriving over {}",
        trace.len(),
        source.origin,
        hours(trace.span().as_secs_f64())
    );
    let _ = writeln!(
        out,
        "pools {}:",
        file.map_or_else(
            || "(built in: no config file)".to_string(),
            |f| format!("of {}", f.display())
        )
    );
    for p in &pools.pools {
        let priced = prices.place(&p.spec).map_or_else(
            |e| e.to_string(),
            |(at, b)| {
                format!(
                    "{} in {}, {:.4} EUR/h",
                    at.machine_type, at.location, b.price_per_hour
                )
            },
        );
        let max = p.max.map_or_else(String::new, |m| format!(", max {m}"));
        let _ = writeln!(out, "  {} {}: {priced}{max}", p.name, p.labels);
    }
    let _ = writeln!(
        out,
        "boot {}, rebuild {}; Hetzner list prices in EUR, net of VAT, unless --price\n",
        hours(model.boot.as_secs_f64()),
        hours(model.rebuild.as_secs_f64()),
    );
    out.push_str(&estimate::table(rows));
    let _ = writeln!(
        out,
        "\n*: as configured. cost: billed machine-hours; ratio: cost / job-seconds at the same prices;\n\
         wait: from queued until a runner took the job; peak: most machines at once; created: machines made"
    );
    if let Some((_, o)) = rows.iter().find(|(s, _)| s.configured) {
        for (why, n) in &o.unserved {
            let _ = writeln!(out, "unserved, as configured: {n} jobs {why}");
        }
        for (why, n) in &o.no_pool {
            let _ = writeln!(out, "left to other runners: {n} jobs, {why}");
        }
    }
    if let Some(c) = &source.skipped
        && c.never_ran + c.unreadable > 0
    {
        let _ = writeln!(
            out,
            "left out of the trace: {} jobs that never ran, {} without labels or times",
            c.never_ran, c.unreadable
        );
    }
    out
}

#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    scenario: &'a Scenario,
    #[serde(flatten)]
    outcome: &'a Outcome,
}

fn json(
    source: &Source,
    trace: &Trace,
    pools: &Pools,
    prices: &Prices,
    model: &Model,
    rows: &[(Scenario, Outcome)],
) -> anyhow::Result<String> {
    let pools: Vec<_> = pools
        .pools
        .iter()
        .map(|p| {
            let placed = prices.place(&p.spec).ok();
            json!({
                "name": p.name,
                "labels": p.labels,
                "max": p.max,
                "standby": p.standby,
                "machine_type": placed.as_ref().map(|(at, _)| at.machine_type.clone()),
                "location": placed.as_ref().map(|(at, _)| at.location.clone()),
                "price_per_hour": placed.as_ref().map(|(_, b)| b.price_per_hour),
            })
        })
        .collect();
    let rows: Vec<Row> = rows
        .iter()
        .map(|(scenario, outcome)| Row { scenario, outcome })
        .collect();
    let out = json!({
        "trace": {
            "origin": source.origin,
            "jobs": trace.len(),
            "span_secs": trace.span().as_secs_f64(),
            "left_out_never_ran": source.skipped.as_ref().map(|c| c.never_ran),
            "left_out_unreadable": source.skipped.as_ref().map(|c| c.unreadable),
        },
        "model": {
            "boot_secs": model.boot.as_secs_f64(),
            "rebuild_secs": model.rebuild.as_secs_f64(),
            "shutdown_secs": model.shutdown.as_secs_f64(),
            "reconcile_secs": model.reconcile.as_secs_f64(),
            "resync_secs": model.resync.as_secs_f64(),
            "settle_secs": model.settle.as_secs_f64(),
            "coalesce_secs": model.coalesce.as_secs_f64(),
        },
        "currency": "EUR",
        "pools": pools,
        "scenarios": rows,
    });
    Ok(serde_json::to_string_pretty(&out)? + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_dates_or_rfc3339() {
        assert_eq!(
            parse_time("2026-01-31").unwrap(),
            Time::from_millis(1_769_817_600_000)
        );
        assert_eq!(
            parse_time("2026-01-31T08:00:00Z").unwrap(),
            Time::from_millis(1_769_846_400_000)
        );
        assert!(parse_time("yesterday").unwrap_err().contains("2026-01-31"));
    }

    #[test]
    fn prices_are_type_equals_euros() {
        assert_eq!(parse_price("cx23=0.5").unwrap(), ("cx23".to_string(), 0.5));
        for bad in ["cx23", "=1", "cx23=-1", "cx23=cheap", "cx23=NaN"] {
            assert!(
                parse_price(bad).unwrap_err().contains("TYPE=EUR_PER_HOUR"),
                "{bad}"
            );
        }
    }
}
