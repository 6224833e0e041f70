//! Prometheus metrics: the recorder `mayfly run` installs (the contract's buckets and help
//! texts, the build's version), rendered at `GET /metrics`; and what the binary records itself.
//!
//! The names and labels are the contract's (`mayfly_core::metrics`). Forge and provider clients
//! report their API calls through the `metrics` facade; the executor, the reconciler, the
//! webhook receiver and the store's path record theirs here (`record`); the gauges about the
//! world are set from each pass's `View` (`world`), not counted along the way.

pub mod record;
pub mod world;

pub use record::job_started;
pub use world::World;

use mayfly_core::metrics::{CONTRACT, Kind};
use metrics::{Key, KeyName, Label, Level, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::time::Duration;

/// How often histogram samples are folded into their buckets when nobody scrapes: keeps the
/// memory of an unscraped controller flat. A scrape folds them too.
const UPKEEP: Duration = Duration::from_secs(10);

/// The `version` label of `mayfly_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A recorder with the contract's buckets and help texts, and `mayfly_build_info` set:
/// what `mayfly run` installs, and what tests record into without touching the global one.
pub fn recorder() -> PrometheusRecorder {
    let mut builder = PrometheusBuilder::new();
    for m in CONTRACT.iter().filter(|m| m.kind == Kind::Histogram) {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(m.name.to_string()), m.buckets)
            // The contract's own test holds that every histogram has buckets.
            .unwrap_or_else(|e| unreachable!("{}: {e}", m.name));
    }
    let recorder = builder.build_recorder();
    for m in CONTRACT {
        let name = KeyName::from_const_str(m.name);
        let help = SharedString::const_str(m.help);
        match m.kind {
            Kind::Counter => recorder.describe_counter(name, None, help),
            Kind::Gauge => recorder.describe_gauge(name, None, help),
            Kind::Histogram => recorder.describe_histogram(name, None, help),
        }
    }
    let build_info = Key::from_parts("mayfly_build_info", vec![Label::new("version", VERSION)]);
    let here = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));
    recorder.register_gauge(&build_info, &here).set(1.0);
    recorder
}

/// What `GET /metrics` renders. Clones share the recorder.
#[derive(Clone, Debug)]
pub struct Exporter {
    handle: PrometheusHandle,
}

impl Exporter {
    pub fn new(handle: PrometheusHandle) -> Exporter {
        Exporter { handle }
    }

    /// The Prometheus text format of everything recorded.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

/// Installs [`recorder`] as the process's recorder and keeps its histograms folded; call once,
/// inside the runtime. Fails if a recorder is installed already.
pub fn install() -> anyhow::Result<Exporter> {
    let recorder = recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|_| anyhow::anyhow!("a metrics recorder is installed already"))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(Exporter::new(handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Before anything happened, the recorder already says what it is: the help texts of the
    /// contract and the version.
    #[test]
    fn a_fresh_recorder_carries_the_version() {
        let text = recorder().handle().render();
        assert!(
            text.contains(&format!("mayfly_build_info{{version=\"{VERSION}\"}} 1")),
            "{text}"
        );
        assert!(text.contains("# HELP mayfly_build_info Always 1"), "{text}");
    }
}
