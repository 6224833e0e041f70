//! How a command ends: on a runtime of its own, its error printed as `mayfly: …`, and its exit
//! code (0 success, 1 runtime failure, 2 invalid configuration).

use crate::config::ConfigError;
use anyhow::Context;
use std::future::Future;
use std::process::ExitCode;

/// Same as clap's usage errors: the invocation, not the run, is at fault, so systemd does not
/// restart the service on it either.
pub const EXIT_CONFIG: u8 = 2;

/// Runs a command on a current-thread runtime of its own; its result as [`report`] ends it.
pub fn block_on(work: impl Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(work));
    report(result)
}

/// The exit code of a command's result, its error printed as mayfly prints errors.
pub fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => match e.downcast_ref::<ConfigError>() {
            Some(c) => invalid_config(c),
            None => {
                eprintln!("mayfly: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Prints a configuration's problems (each named by file, line and key) and exits 2.
pub fn invalid_config(e: &ConfigError) -> ExitCode {
    eprintln!("mayfly: invalid configuration\n{e}");
    ExitCode::from(EXIT_CONFIG)
}
