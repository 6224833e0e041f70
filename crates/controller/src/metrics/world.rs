//! The gauges about the world, set from each pass's `View`: jobs by state and by why they
//! wait, instances by pool and state, runners, cost. Every series is set each time, to zero
//! where nothing is, so none keeps a value the world no longer has.

use crate::view::{RunnerState, View};
use mayfly_core::metrics::{Values, metric};
use mayfly_core::{InstanceState, JobStatus};
use std::collections::{BTreeMap, BTreeSet};

/// Sets the world's gauges from each view. Remembers every pool it has set a gauge for, so an
/// instance of a pool no longer configured counts down to zero when it goes.
#[derive(Debug, Default)]
pub struct World {
    pools: BTreeSet<String>,
}

impl World {
    pub fn record(&mut self, view: &View) {
        let mut jobs: BTreeMap<&str, usize> = BTreeMap::new();
        let mut waiting: BTreeMap<&str, usize> = BTreeMap::new();
        for j in &view.jobs {
            let state = match j.status {
                JobStatus::Queued => "queued",
                JobStatus::InProgress => "in_progress",
                JobStatus::Completed => continue,
            };
            *jobs.entry(state).or_default() += 1;
            if let Some(reason) = &j.waiting_reason {
                *waiting.entry(reason.as_str()).or_default() += 1;
            }
        }
        for state in allowed("mayfly_jobs", "state") {
            let n = jobs.get(state).copied().unwrap_or(0);
            metrics::gauge!("mayfly_jobs", "state" => *state).set(n as f64);
        }
        for reason in allowed("mayfly_jobs_waiting", "reason") {
            let n = waiting.get(reason).copied().unwrap_or(0);
            metrics::gauge!("mayfly_jobs_waiting", "reason" => *reason).set(n as f64);
        }

        self.pools.extend(view.pools.iter().map(|p| p.name.clone()));
        self.pools
            .extend(view.instances.iter().map(|i| i.pool.clone()));
        let mut instances: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        let mut cost: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for i in &view.instances {
            *instances.entry((&i.pool, state(i.state))).or_default() += 1;
            // A pending intent has no machine yet: nothing is billed (as `View::cost`).
            if i.state != InstanceState::Pending {
                let c = cost.entry(&i.pool).or_default();
                c.0 += i.price_per_hour.unwrap_or(0.0);
                c.1 += i.cost_so_far.unwrap_or(0.0);
            }
        }
        for pool in &self.pools {
            for state in allowed("mayfly_instances", "state") {
                let n = instances
                    .get(&(pool.as_str(), *state))
                    .copied()
                    .unwrap_or(0);
                metrics::gauge!("mayfly_instances", "pool" => pool.clone(), "state" => *state)
                    .set(n as f64);
            }
            let unusable = view
                .pools
                .iter()
                .any(|p| &p.name == pool && p.unusable.is_some());
            metrics::gauge!("mayfly_pool_unusable", "pool" => pool.clone()).set(if unusable {
                1.0
            } else {
                0.0
            });
            let (per_hour, so_far) = cost.get(pool.as_str()).copied().unwrap_or_default();
            metrics::gauge!("mayfly_cost_per_hour", "pool" => pool.clone()).set(per_hour);
            metrics::gauge!("mayfly_cost_so_far", "pool" => pool.clone()).set(so_far);
        }

        let mut runners: BTreeMap<(&str, bool), usize> = BTreeMap::new();
        for r in &view.runners {
            *runners.entry((r.state.as_str(), r.managed)).or_default() += 1;
        }
        for state in [RunnerState::Idle, RunnerState::Busy, RunnerState::Offline] {
            for managed in [true, false] {
                let n = runners
                    .get(&(state.as_str(), managed))
                    .copied()
                    .unwrap_or(0);
                let managed = if managed { "true" } else { "false" };
                metrics::gauge!("mayfly_runners", "state" => state.as_str(), "managed" => managed)
                    .set(n as f64);
            }
        }
    }
}

/// An instance state as the contract spells it (its serialized name).
fn state(s: InstanceState) -> &'static str {
    match s {
        InstanceState::Pending => "pending",
        InstanceState::Starting => "starting",
        InstanceState::Running => "running",
        InstanceState::Stopping => "stopping",
        InstanceState::Off => "off",
        InstanceState::Deleting => "deleting",
        InstanceState::Unknown => "unknown",
    }
}

/// The values the contract allows for a bounded label.
pub(crate) fn allowed(metric_name: &str, label: &str) -> &'static [&'static str] {
    match metric(metric_name)
        .and_then(|m| m.label(label))
        .map(|l| l.values)
    {
        Some(Values::OneOf(values)) => values,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::View;
    use mayfly_core::metrics::sum;
    use mayfly_core::{
        Arch, Billing, ForgeKind, Instance, Job, JobKey, Labels, Runner, RunnerStatus, Snapshot,
        Time,
    };
    use std::collections::HashMap;

    const LINUX: &[&str] = &["self-hosted", "linux"];

    #[test]
    fn states_are_spelled_as_they_serialize() {
        use InstanceState::*;
        for s in [Pending, Starting, Running, Stopping, Off, Deleting, Unknown] {
            assert_eq!(serde_json::to_value(s).unwrap(), state(s));
            assert!(allowed("mayfly_instances", "state").contains(&state(s)));
        }
    }

    fn instance(name: &str, pool: &str, state: InstanceState) -> Instance {
        Instance {
            labels: Labels::new(LINUX),
            placement: Some(crate::sample::placement()),
            billing: Some(Billing::hourly(0.5)),
            ..crate::sample::instance(name, pool, state, Time::from_secs(0))
        }
    }

    fn view(snapshot: &Snapshot, max: u32) -> View {
        let pool = crate::sample::pool("linux", LINUX, &["cx23"], &["fsn1"], Arch::X86);
        let mut pools = crate::sample::pools("mf", vec![pool], true);
        pools.limits.max_instances = Some(max);
        let now = Time::from_secs(5400);
        let plan = mayfly_core::plan(snapshot, &pools, now);
        View::build(&pools, snapshot, &plan, &HashMap::new(), now)
    }

    /// The gauges say what the view holds, and go back to zero (not away) when it is gone,
    /// also for a pool that is no longer configured.
    #[test]
    fn gauges_follow_the_view_down_to_zero() {
        let recorder = crate::metrics::recorder();
        let render = || recorder.handle().render();
        let mut world = World::default();
        let busy = Snapshot {
            jobs: vec![Job {
                key: JobKey {
                    forge: ForgeKind::Github,
                    scope: "acme/app".into(),
                    id: 1,
                },
                run_id: Some(1),
                attempt: 1,
                labels: Labels::new(LINUX),
                status: JobStatus::Queued,
                queued_at: Time::from_secs(5000),
                instances_created: 0,
                runner: None,
            }],
            instances: vec![
                instance("mf-old-1", "old", InstanceState::Running),
                instance("mf-old-2", "old", InstanceState::Off),
                instance("mf-linux-1", "linux", InstanceState::Deleting),
            ],
            runners: vec![Runner {
                id: 1,
                name: "mf-old-1".into(),
                status: RunnerStatus::Offline,
                busy: false,
                labels: Labels::new(LINUX),
                since: Time::from_secs(0),
            }],
            refused: Default::default(),
        };
        metrics::with_local_recorder(&recorder, || world.record(&view(&busy, 3)));
        let text = render();
        let at = |name: &str, labels: &[(&str, &str)]| sum(&text, name, labels);
        assert_eq!(at("mayfly_instances", &[("pool", "old")]), 2.0, "{text}");
        assert_eq!(
            at(
                "mayfly_instances",
                &[("pool", "linux"), ("state", "deleting")]
            ),
            1.0
        );
        assert_eq!(at("mayfly_jobs", &[("state", "queued")]), 1.0);
        assert_eq!(at("mayfly_jobs_waiting", &[("reason", "limit")]), 1.0);
        assert_eq!(
            at(
                "mayfly_runners",
                &[("state", "offline"), ("managed", "true")]
            ),
            1.0
        );
        // Two hours started for each machine, at 0.5 an hour.
        assert_eq!(at("mayfly_cost_per_hour", &[("pool", "old")]), 1.0);
        assert_eq!(at("mayfly_cost_so_far", &[("pool", "old")]), 2.0);
        assert_eq!(at("mayfly_cost_per_hour", &[("pool", "linux")]), 0.5);

        metrics::with_local_recorder(&recorder, || world.record(&view(&Snapshot::default(), 3)));
        let text = render();
        for name in [
            "mayfly_instances",
            "mayfly_jobs",
            "mayfly_runners",
            "mayfly_cost_so_far",
        ] {
            assert_eq!(sum(&text, name, &[]), 0.0, "{name}: {text}");
        }
        assert!(
            text.contains("mayfly_instances{pool=\"old\",state=\"running\"} 0"),
            "{text}"
        );
        let checked = mayfly_core::metrics::check(
            &text,
            &[
                "mayfly_jobs",
                "mayfly_jobs_waiting",
                "mayfly_instances",
                "mayfly_runners",
                "mayfly_cost_per_hour",
                "mayfly_cost_so_far",
                "mayfly_build_info",
            ],
        );
        assert_eq!(checked, Ok(()));
    }
}
