//! `mayfly gitlab-executor`: the four executables of gitlab-runner's custom executor (config,
//! prepare, run, cleanup) making one machine per job from mayfly's providers, and `reap`.
//!
//! gitlab-runner runs each as its own process with the job's variables in `CUSTOM_ENV_*`; they
//! share the job's directory under `state_dir` and the executor's store. Exit codes are the ones
//! gitlab-runner hands over: `BUILD_FAILURE_EXIT_CODE` for the job's own failure,
//! `SYSTEM_FAILURE_EXIT_CODE` for the machine's or the network's, which GitLab retries.

mod cleanup;
mod job;
mod keys;
mod machine;
mod prepare;
mod reap;
mod record;
mod remote;
mod run;
pub mod settings;

use clap::{Args, Subcommand};
use job::JobEnv;
use settings::Settings;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// The executor's file: state, SSH and pools (see docs/gitlab-executor.md)
    #[arg(
        long,
        global = true,
        env = "MAYFLY_GITLAB_EXECUTOR_FILE",
        value_name = "FILE",
        default_value = settings::DEFAULT_FILE
    )]
    pub file: PathBuf,
    #[command(subcommand)]
    pub command: ExecutorCommand,
}

#[derive(Debug, Subcommand)]
pub enum ExecutorCommand {
    /// config_exec: print the JSON gitlab-runner reads (builds_dir, cache_dir, hostname,
    /// driver, shell)
    Config,
    /// prepare_exec: make the job's machine with fresh SSH keys and wait until its sshd
    /// answers with the host key made for it
    Prepare,
    /// run_exec: run the stage's script on the machine over SSH, streaming its output
    Run {
        /// The script gitlab-runner wrote for the stage
        script: PathBuf,
        /// The stage's name (prepare_script, get_sources, step_script, …)
        stage: String,
    },
    /// cleanup_exec: delete the job's machine and keys (safe to repeat)
    Cleanup,
    /// Delete machines a killed cleanup left: those whose job is over or past its deadline,
    /// and tagged ones the store does not know. Exit 1 if one could not be deleted
    Reap {
        /// Reap again every this many seconds until SIGTERM (for a systemd service)
        #[arg(long, value_name = "SECONDS")]
        every: Option<u64>,
    },
}

/// Why an executable failed, and so which code gitlab-runner gets.
#[derive(Debug)]
pub enum Failure {
    /// The job's script failed with this code.
    Build(i32),
    /// The machine, the provider or the network failed.
    System(String),
}

/// A line in the job's log (gitlab-runner shows the driver's stderr there).
pub fn say(line: &str) {
    eprintln!("mayfly: {line}");
}

pub fn main(args: ExecutorArgs) -> ExitCode {
    let settings = match Settings::load(&args.file) {
        Ok(s) => s,
        Err(e) => {
            say(&e.to_string());
            return exit_code(2);
        }
    };
    if let ExecutorCommand::Reap { every } = args.command {
        return reap_main(&settings, every);
    }
    let job = match JobEnv::from_process() {
        Ok(j) => j,
        Err(e) => {
            say(&e);
            return exit_code(2);
        }
    };
    if let ExecutorCommand::Config = args.command {
        println!("{}", config_json(&settings, &job));
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            say(&format!("cannot start the async runtime: {e}"));
            return exit_code(job.system_failure);
        }
    };
    let result = runtime.block_on(async {
        let work = async {
            match &args.command {
                ExecutorCommand::Prepare => prepare::prepare(&settings, &job).await,
                ExecutorCommand::Run { script, stage } => {
                    run::run(&settings, &job, script, stage).await
                }
                ExecutorCommand::Cleanup => cleanup::cleanup(&settings, &job)
                    .await
                    .map_err(Failure::System),
                ExecutorCommand::Config | ExecutorCommand::Reap { .. } => Ok(()),
            }
        };
        // gitlab-runner ends a stage that timed out or was cancelled with SIGTERM (then
        // SIGKILL): stop at once, dropping ssh (killed with us) and any call in flight; the
        // machine is cleanup's, which gitlab-runner runs next.
        tokio::select! {
            r = work => r,
            s = terminated() => Err(Failure::System(format!("{s}: stopping"))),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Build(code)) => {
            say(&format!("the script exited {code}"));
            exit_code(job.build_failure)
        }
        Err(Failure::System(e)) => {
            say(&e);
            exit_code(job.system_failure)
        }
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Set once SIGTERM or SIGINT arrived: a stage whose ssh ended first (ssh exits 255 on the
/// group's SIGTERM) reads it to say why.
pub static TERMINATED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

async fn terminated() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    TERMINATED.store(true, std::sync::atomic::Ordering::SeqCst);
    which
}

/// What config_exec prints. `hostname` is the machine's name, which the job log shows.
fn config_json(settings: &Settings, job: &JobEnv) -> serde_json::Value {
    serde_json::json!({
        "builds_dir": settings.builds_dir,
        "cache_dir": settings.cache_dir,
        "builds_dir_is_shared": false,
        "hostname": job.machine_name(),
        "driver": {"name": "mayfly", "version": env!("CARGO_PKG_VERSION")},
        "shell": settings.shell,
        "job_env": {},
    })
}

fn reap_main(settings: &Settings, every: Option<u64>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            say(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        loop {
            let failed = match reap::reap(settings).await {
                Ok(r) => {
                    for name in &r.deleted {
                        println!("deleted {name}");
                    }
                    for e in &r.errors {
                        say(e);
                    }
                    println!(
                        "{} deleted, {} kept, {} errors",
                        r.deleted.len(),
                        r.kept,
                        r.errors.len()
                    );
                    !r.errors.is_empty()
                }
                Err(e) => {
                    say(&e);
                    true
                }
            };
            let Some(secs) = every else {
                return if failed {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                };
            };
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(secs.max(1))) => {}
                _ = terminated() => return ExitCode::SUCCESS,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_prints_what_gitlab_runner_reads() {
        let s = Settings::parse("[[pool]]\nname = \"p\"\nprovider = \"hetzner\"\nhetzner = {}\n")
            .unwrap();
        let job = JobEnv::read(|k| (k == "CUSTOM_ENV_CI_JOB_ID").then(|| "5".to_string())).unwrap();
        let v = config_json(&s, &job);
        assert_eq!(v["builds_dir"], "/builds");
        assert_eq!(v["hostname"], "mayfly-gl-5");
        assert_eq!(v["driver"]["name"], "mayfly");
    }
}
