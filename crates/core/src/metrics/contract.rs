//! The table itself: each metric's name, type, help text, labels and, for a bounded label, the
//! values it may take; histogram buckets too. docs/metrics.md is generated from it.

use super::{API_CALLS, API_RATE_LIMIT_REMAINING, API_REQUEST_DURATION, APIS};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// As the `# TYPE` line of the Prometheus text format says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// What a label may hold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Values {
    /// A name the operator chose (a pool, a provider) or the build's version: bounded by the
    /// configuration, not by the contract.
    Named,
    OneOf(&'static [&'static str]),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Label {
    pub name: &'static str,
    pub values: Values,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    /// The `# HELP` text: what it counts, in base units.
    pub help: &'static str,
    pub labels: &'static [Label],
    /// Upper bounds of a histogram's buckets (`+Inf` is implied); empty for the others.
    pub buckets: &'static [f64],
}

impl Metric {
    pub fn label(&self, name: &str) -> Option<&Label> {
        self.labels.iter().find(|l| l.name == name)
    }
}

const fn named(name: &'static str) -> Label {
    Label {
        name,
        values: Values::Named,
    }
}

const fn one_of(name: &'static str, values: &'static [&'static str]) -> Label {
    Label {
        name,
        values: Values::OneOf(values),
    }
}

const POOL: Label = named("pool");
const PROVIDER: Label = named("provider");
const API: Label = one_of("api", APIS);
/// What became of a step the executor took.
const STEP_OUTCOME: Label = one_of("outcome", &["ok", "failed", "skipped"]);
const API_OUTCOME: Label = one_of(
    "outcome",
    &[
        "ok",
        "not_modified",
        "rate_limited",
        "client_error",
        "server_error",
        "transport",
    ],
);

/// Seconds from 1 s to an hour: a job waits for a machine to boot (tens of seconds) or for a
/// limit to free up (minutes or more).
const QUEUE_WAIT_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0,
    1800.0, 3600.0,
];
/// A pass reads the store and lists the provider and the forge (tens of milliseconds), and
/// may create and delete (seconds, bounded by the calls' timeouts).
const PASS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// One HTTP call: milliseconds on a good day, up to the request timeout (10 s by default).
const API_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric mayfly exports, with the labels each sample carries.
pub const CONTRACT: &[Metric] = &[
    Metric {
        name: "mayfly_build_info",
        kind: Kind::Gauge,
        help: "Always 1; its label is the version of the running mayfly.",
        labels: &[named("version")],
        buckets: &[],
    },
    Metric {
        name: "mayfly_jobs",
        kind: Kind::Gauge,
        help: "Jobs the store holds as queued or in progress, at the last reconcile pass.",
        labels: &[one_of("state", &["queued", "in_progress"])],
        buckets: &[],
    },
    Metric {
        name: "mayfly_jobs_waiting",
        kind: Kind::Gauge,
        help: "Queued jobs the last plan could not serve: no pool for their labels, a label it \
               cannot read, a limit reached, a pool whose machines the provider refuses, or a \
               job that cannot be registered.",
        labels: &[one_of(
            "reason",
            &["no_pool", "bad_label", "limit", "pool_unusable", "refused"],
        )],
        buckets: &[],
    },
    Metric {
        name: "mayfly_job_queue_wait_seconds",
        kind: Kind::Histogram,
        help: "Seconds from a job's queueing to its start on a runner, once per job, when the \
               store first learns that it started.",
        labels: &[],
        buckets: QUEUE_WAIT_BUCKETS,
    },
    Metric {
        name: "mayfly_pool_unusable",
        kind: Kind::Gauge,
        help: "1 while a pool's machines are refused by its provider (an unknown type, image or \
               location) and nothing is tried until the slow retry; 0 otherwise.",
        labels: &[POOL],
        buckets: &[],
    },
    Metric {
        name: "mayfly_instances",
        kind: Kind::Gauge,
        help: "Instances of each pool by state, at the last reconcile pass; pending is a create \
               recorded but not yet listed by the provider.",
        labels: &[
            POOL,
            one_of(
                "state",
                &[
                    "pending", "starting", "running", "stopping", "off", "deleting", "unknown",
                ],
            ),
        ],
        buckets: &[],
    },
    Metric {
        name: "mayfly_runners",
        kind: Kind::Gauge,
        help: "Runners the forge lists in the scopes mayfly registers in, by state; managed is \
               whether one of this controller's instances carries the runner.",
        labels: &[
            one_of("state", &["idle", "busy", "offline"]),
            one_of("managed", &["true", "false"]),
        ],
        buckets: &[],
    },
    Metric {
        name: "mayfly_instance_creates_total",
        kind: Kind::Counter,
        help: "Instances created (a create cut short by a crash and carried out later counts \
               once more), by pool, provider and outcome.",
        labels: &[POOL, PROVIDER, STEP_OUTCOME],
        buckets: &[],
    },
    Metric {
        name: "mayfly_instance_reuses_total",
        kind: Kind::Counter,
        help: "Paid-for instances rebuilt for another job instead of creating one, by pool, \
               provider and outcome.",
        labels: &[POOL, PROVIDER, STEP_OUTCOME],
        buckets: &[],
    },
    Metric {
        name: "mayfly_instance_deletes_total",
        kind: Kind::Counter,
        help: "Instances deleted, by pool, provider, the deadline that ended them (or quota: \
               freed to make room; operator: asked for by a person) and outcome.",
        labels: &[
            POOL,
            PROVIDER,
            one_of(
                "reason",
                &[
                    "registration_deadline",
                    "idle_deadline",
                    "powered_off_deadline",
                    "paid_time_used_up",
                    "max_lifetime",
                    "stopping_deadline",
                    "operator",
                    "quota",
                ],
            ),
            STEP_OUTCOME,
        ],
        buckets: &[],
    },
    Metric {
        name: API_CALLS,
        kind: Kind::Counter,
        help: "HTTP calls sent to a forge's or provider's API (retries each count), by API and \
               outcome.",
        labels: &[API, API_OUTCOME],
        buckets: &[],
    },
    Metric {
        name: API_REQUEST_DURATION,
        kind: Kind::Histogram,
        help: "Seconds from sending an API call to having its whole answer (or giving up).",
        labels: &[API],
        buckets: API_BUCKETS,
    },
    Metric {
        name: API_RATE_LIMIT_REMAINING,
        kind: Kind::Gauge,
        help: "Requests left in the API's rate-limit budget, as its last answer's headers said.",
        labels: &[API],
        buckets: &[],
    },
    Metric {
        name: "mayfly_cost_per_hour",
        kind: Kind::Gauge,
        help: "What the live instances of each pool cost per hour, in the provider's currency.",
        labels: &[POOL],
        buckets: &[],
    },
    Metric {
        name: "mayfly_cost_so_far",
        kind: Kind::Gauge,
        help: "What the live instances of each pool have cost since they were created (billing \
               periods rounded up), in the provider's currency.",
        labels: &[POOL],
        buckets: &[],
    },
    Metric {
        name: "mayfly_reconcile_duration_seconds",
        kind: Kind::Histogram,
        help: "Seconds one reconcile pass took: reading the world, planning, carrying it out.",
        labels: &[],
        buckets: PASS_BUCKETS,
    },
    Metric {
        name: "mayfly_reconcile_passes_total",
        kind: Kind::Counter,
        help: "Reconcile passes by outcome: ok, partial (the runners could not be read, so it \
               only created) or failed (nothing done).",
        labels: &[one_of("outcome", &["ok", "partial", "failed"])],
        buckets: &[],
    },
    Metric {
        name: "mayfly_leader",
        kind: Kind::Gauge,
        help: "1 while this replica leads (runs the reconcile passes), 0 while it follows; a \
               controller alone on its state always leads.",
        labels: &[],
        buckets: &[],
    },
    Metric {
        name: "mayfly_leader_epoch",
        kind: Kind::Gauge,
        help: "The leader lease's epoch as this replica last saw it: it grows with every new \
               leader (0 for a controller alone on its state).",
        labels: &[],
        buckets: &[],
    },
    Metric {
        name: "mayfly_store_pruned_rows_total",
        kind: Kind::Counter,
        help: "Rows retention deleted from the state, by table.",
        labels: &[one_of(
            "table",
            &["jobs", "deliveries", "events", "intents"],
        )],
        buckets: &[],
    },
    Metric {
        name: "mayfly_webhook_deliveries_total",
        kind: Kind::Counter,
        help: "Webhook deliveries received, by forge and what became of them.",
        labels: &[
            one_of("forge", &["github", "gitlab"]),
            one_of(
                "outcome",
                &[
                    "stored",
                    "unchanged",
                    "duplicate",
                    "ignored",
                    "foreign",
                    "invalid_signature",
                    "bad_request",
                    "disabled",
                    "store_failed",
                ],
            ),
        ],
        buckets: &[],
    },
];

/// The contract's entry for `name`.
pub fn metric(name: &str) -> Option<&'static Metric> {
    CONTRACT.iter().find(|m| m.name == name)
}

/// The contract as a Markdown table, as docs/metrics.md holds it.
pub fn markdown() -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for m in CONTRACT {
        let labels: Vec<String> = m
            .labels
            .iter()
            .map(|l| match l.values {
                Values::Named => format!("`{}`", l.name),
                Values::OneOf(v) => format!("`{}` ({})", l.name, v.join(", ")),
            })
            .collect();
        let labels = if labels.is_empty() {
            "—".to_string()
        } else {
            labels.join("; ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            m.name,
            m.kind.as_str(),
            labels,
            m.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prometheus' naming rules, held for every entry: a rename that breaks them fails here.
    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for m in CONTRACT {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("mayfly_"), "{}", m.name);
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
            assert_eq!(
                m.kind == Kind::Histogram,
                !m.buckets.is_empty(),
                "{}: buckets for histograms only",
                m.name
            );
            assert!(
                m.buckets.windows(2).all(|w| w[0] < w[1]),
                "{}: buckets ascend",
                m.name
            );
            for l in m.labels {
                assert!(
                    l.name != "le" && l.name != "quantile",
                    "{}: reserved",
                    m.name
                );
                if let Values::OneOf(v) = l.values {
                    assert!(!v.is_empty(), "{}: {}", m.name, l.name);
                }
            }
            assert!(!m.help.is_empty() && !m.help.contains('\n'), "{}", m.name);
        }
    }

    #[test]
    fn the_table_renders_one_row_per_metric() {
        let table = markdown();
        assert_eq!(table.lines().count(), CONTRACT.len() + 2);
        assert!(table.contains(
            "| `mayfly_runners` | gauge | `state` (idle, busy, offline); `managed` (true, false) |"
        ));
    }
}
