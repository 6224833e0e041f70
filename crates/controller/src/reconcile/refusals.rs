//! What the executor learned will be refused again if tried unchanged: pool specs a provider
//! refused (an unknown server type, image or location) and jobs whose runner cannot be
//! registered. The planner tries none of them until their slow retry is due; a restart with a
//! changed configuration starts with none.

use mayfly_core::{Refused, RefusedJob, RefusedSpec, Time};
use std::time::Duration;
use tracing::error;

pub struct Refusals {
    /// How long a refusal holds before the planner may try again.
    retry: Duration,
    specs: Vec<(RefusedSpec, Time)>,
    jobs: Vec<(RefusedJob, Time)>,
}

impl Refusals {
    pub fn new(retry: Duration) -> Refusals {
        Refusals {
            retry,
            specs: Vec::new(),
            jobs: Vec::new(),
        }
    }

    /// The refusals in force at `now`. A spec whose retry is due stays refused but may be
    /// probed by one create (the plan makes no more of it until the provider has answered: a
    /// refusal extends it, an accepted create ends it); a job whose retry is due is tried again.
    pub fn current(&mut self, now: Time) -> Refused {
        let retry = self.retry;
        self.jobs.retain(|(_, at)| now.since(*at) < retry);
        Refused {
            specs: self
                .specs
                .iter()
                .map(|(s, at)| RefusedSpec {
                    probe: now.since(*at) >= retry,
                    ..s.clone()
                })
                .collect(),
            jobs: self.jobs.iter().map(|(j, _)| j.clone()).collect(),
        }
    }

    /// The provider accepted a create of `pool` with `spec`: a refusal of it is over.
    pub fn accepted(&mut self, pool: &str, spec: &mayfly_core::MachineSpec) {
        self.specs
            .retain(|(s, _)| !(s.pool == pool && &s.spec == spec));
    }

    /// Takes in what a pass learned; each new refusal is logged once, as an error with its
    /// reason (the plan's waiting reasons say it again on every pass, in the view).
    pub fn learn(&mut self, learned: Refused, now: Time) {
        let retry = mayfly_core::time::human(self.retry);
        for spec in learned.specs {
            if let Some(known) = self
                .specs
                .iter_mut()
                .find(|(s, _)| s.pool == spec.pool && s.spec == spec.spec)
            {
                known.1 = now;
                continue;
            }
            error!(
                pool = %crate::escape::Text(&spec.pool),
                reason = %crate::escape::Text(&spec.reason),
                retry_in = %retry,
                "pool unusable: the provider refuses its machines; fix the pool's types, image or \
                 locations (mayfly run checks them against the catalogue at start)"
            );
            self.specs.push((spec, now));
        }
        for job in learned.jobs {
            if let Some(known) = self.jobs.iter_mut().find(|(j, _)| j.job == job.job) {
                known.1 = now;
                continue;
            }
            error!(
                job = %crate::escape::Text(&job.job.to_string()),
                reason = %crate::escape::Text(&job.reason),
                retry_in = %retry,
                "job cannot be served: nothing more is made for it until the retry"
            );
            self.jobs.push((job, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mayfly_core::{ForgeKind, JobKey, MachineSpec};

    fn spec(pool: &str) -> RefusedSpec {
        RefusedSpec {
            pool: pool.into(),
            spec: MachineSpec {
                types: vec!["cx22".into()],
                locations: vec![],
                image: "x86:system:ubuntu-24.04".parse().expect("image"),
            },
            reason: "unknown server type cx22".into(),
            probe: false,
        }
    }

    #[test]
    fn a_refusal_holds_until_its_retry_then_the_planner_tries_once_more() {
        let mut r = Refusals::new(Duration::from_secs(600));
        let t = Time::from_secs;
        r.learn(
            Refused {
                specs: vec![spec("linux")],
                jobs: vec![RefusedJob {
                    job: JobKey {
                        forge: ForgeKind::Github,
                        scope: "a/b".into(),
                        id: 1,
                    },
                    reason: "no".into(),
                }],
            },
            t(100),
        );
        r.learn(
            Refused {
                specs: vec![spec("linux")],
                jobs: vec![],
            },
            t(200),
        );
        let now = r.current(t(750));
        assert_eq!(now.specs.len(), 1, "learned again at 200: held until 800");
        assert!(!now.specs[0].probe);
        assert!(now.jobs.is_empty(), "the job's retry was due at 700");
        let due = r.current(t(800));
        assert!(due.specs[0].probe, "its retry is due: one create may probe");
        r.learn(
            Refused {
                specs: vec![spec("linux")],
                jobs: vec![],
            },
            t(801),
        );
        assert!(!r.current(t(900)).specs[0].probe, "refused again: held");
        r.accepted("linux", &spec("linux").spec);
        assert!(r.current(t(900)).is_empty(), "accepted: over");
    }
}
