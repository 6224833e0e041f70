//! The simulator and the controller in one process (`mayfly::local`) as the in-process tests
//! drive them: a sped-up world, one cadence, and a run of the loop that cannot hang a test.

use mayfly::local::{Cadence, Local, Setup};
use mayfly_core::Pace;
use mayfly_core::Pools;
use mayfly_sim::runners::{Delay, RunnerConfig};
use mayfly_sim::{Sim, SimConfig};
use std::time::Duration;

/// In simulated time: a pass every 5 s while something is unsettled, a poll every 30 s.
pub const CADENCE: Cadence = Cadence {
    pace: Pace {
        unsettled: Duration::from_secs(5),
        resync: Duration::from_secs(60),
        settle: Some(Duration::from_secs(10)),
        coalesce: Duration::from_millis(500),
    },
    poll: Duration::from_secs(30),
};

/// The simulator at `speed` times real time; a runner registers 5 s after its server boots.
pub fn sim_config(speed: f64) -> SimConfig {
    SimConfig {
        speed,
        runners: RunnerConfig {
            boot_delay: Delay::Fixed { secs: 5.0 },
            ..RunnerConfig::default()
        },
        ..SimConfig::default()
    }
}

/// The simulator and a controller of four workers serving `repos` by polling, and by webhook
/// too when `webhook_secret` is given.
pub async fn start(
    config: SimConfig,
    pools: Pools,
    repos: &[&str],
    webhook_secret: Option<&str>,
) -> Local {
    Local::start(config, setup(pools, repos, webhook_secret))
        .await
        .expect("simulator and controller")
}

/// What [`start`] starts: four workers, repositories polled every pass (no backstop), the
/// runner lists read every pass.
pub fn setup(pools: Pools, repos: &[&str], webhook_secret: Option<&str>) -> Setup {
    Setup {
        pools,
        repos: repos.iter().map(|r| r.to_string()).collect(),
        webhook_secret: webhook_secret.map(str::to_string),
        workers: 4,
        confirm_after: Duration::from_secs(600),
        poll_backstop: Duration::ZERO,
        runners_max_age: Duration::ZERO,
        gitlab_projects: Vec::new(),
    }
}

/// Runs the controller's loop until `done`, at most 60 real seconds; a failed pass is printed.
pub async fn run_until(local: &mut Local, mut done: impl FnMut(&Sim) -> bool) {
    let sim = local.sim.clone();
    let run = local.controller.run(CADENCE, |pass, _| {
        if let Err(e) = pass {
            eprintln!("pass failed: {e}");
        }
        done(&sim)
    });
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the world settled within a minute");
}
