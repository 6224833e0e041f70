//! Logging to stderr through tracing: readable text by default, one JSON object per line for
//! log collectors. The filter is the configured `log_level` (flag > RUST_LOG > file > `info`).

use crate::config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

pub fn init(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::builder().parse(filter_directives(level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot initialise logging: {e}"))
}

/// A bare level more verbose than `info` applies to mayfly's own crates only (`mayfly` matches
/// every `mayfly_*` target): `--log-level debug` should not print every SQL statement sqlx runs.
/// Directives such as `sqlx=debug,info` are taken as written.
fn filter_directives(level: &str) -> String {
    let level = level.trim();
    match level.to_ascii_lowercase().as_str() {
        "debug" | "trace" => format!("info,mayfly={level}"),
        _ => level.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_bare_levels_stay_within_mayfly() {
        assert_eq!(filter_directives("debug"), "info,mayfly=debug");
        assert_eq!(filter_directives("warn"), "warn");
        assert_eq!(filter_directives("sqlx=debug,info"), "sqlx=debug,info");
    }
}
