//! `mayfly run`: opens the store and runs the reconcile loop on its timer until Ctrl-C or
//! SIGTERM. The pass itself is still empty; the wiring of forge, providers and planner comes next.

use crate::config::Config;
use anyhow::Context;
use std::future::Future;
use std::time::Duration;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info};

pub async fn run(config: Config) -> anyhow::Result<()> {
    let state = config.state.as_ref().context("no state URL configured")?;
    let store = mayfly_store::Store::open(state.expose())
        .await
        .context("cannot open the state store")?;
    let pools = config.pools();
    info!(
        controller = %pools.controller,
        listen = %config.listen,
        state = %state,
        pools = pools.pools.len(),
        "started"
    );
    reconcile_loop(config.intervals.reconcile.0, shutdown_signal()).await?;
    store.close().await;
    info!("stopped");
    Ok(())
}

/// One pass per tick until `shutdown` resolves. A pass that overruns delays the next tick
/// instead of firing a burst of catch-up passes.
async fn reconcile_loop(
    every: Duration,
    shutdown: impl Future<Output = anyhow::Result<&'static str>>,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = tick.tick() => debug!("reconcile pass"),
            signal = &mut shutdown => {
                // Evaluated outside the macro: a disabled log level would skip the `?`.
                let signal = signal?;
                info!(signal, "stopping");
                return Ok(());
            }
        }
    }
}

/// The name of the first shutdown signal received.
pub(crate) async fn shutdown_signal() -> anyhow::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT").context("cannot listen for Ctrl-C"),
            _ = term.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("cannot listen for Ctrl-C")?;
        Ok("Ctrl-C")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loop_ends_when_shutdown_resolves() {
        let done = reconcile_loop(Duration::from_millis(5), async { Ok("test") });
        tokio::time::timeout(Duration::from_secs(5), done)
            .await
            .expect("loop stopped")
            .expect("clean stop");
    }

    #[tokio::test]
    async fn a_failing_signal_handler_is_an_error() {
        let r = reconcile_loop(Duration::from_millis(5), async {
            Err(anyhow::anyhow!("no signals"))
        })
        .await;
        assert!(r.is_err());
    }
}
