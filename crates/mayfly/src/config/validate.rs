//! Checks that need the whole, layered configuration: names, references between tables,
//! scopes, URLs, limits and label rules. Every problem is collected, each with its origin.

use super::Config;
use super::error::{ConfigError, Problem, did_you_mean};
use super::layers::Origins;
use super::schema::ProviderKind;
use super::values::HumanDuration;
use mayfly_core::{LabelRules, Labels};
use std::collections::BTreeSet;
use std::time::Duration;

/// Longest controller id: it prefixes instance names, which must stay within a DNS label.
pub const MAX_CONTROLLER: usize = 16;
/// Longest pool name, for the same reason.
pub const MAX_POOL: usize = 20;

/// What the command needs of the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Running the controller: credentials and something to serve.
    Everything,
    /// Planning only (`mayfly estimate`): pools, limits, deadlines; no token, no scope.
    Planning,
    /// This host as a runner node (`mayfly node`): GitHub and `[node]`; no pools, no providers.
    Node,
}

pub fn check(config: &Config, origins: &Origins, needs: Needs) -> Result<(), ConfigError> {
    let calls = needs != Needs::Planning;
    let node = needs == Needs::Node;
    let mut problems = Vec::new();
    let mut problem = |key: String, message: String, hint: Option<String>| {
        let origin = origins.of(&key);
        problems.push(Problem::new(key, message).at(origin).hint(hint));
    };

    if let Err(m) = dns_label(&config.controller, MAX_CONTROLLER) {
        problem("controller".into(), m, None);
    }
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&config.log_level) {
        problem(
            "log_level".into(),
            format!("not a log filter: {e}"),
            Some("use a level like `info` or directives like `mayfly=debug,info`".into()),
        );
    }

    // A GitLab-only configuration leaves [github] out: its checks then do not apply.
    if config.serves_github() || node {
        let gh = &config.github;
        match &gh.app {
            Some(app) => {
                // Only the key is in question here: the other fields are checked on their own.
                let auth = mayfly_forge::github::ClientConfig {
                    api_url: mayfly_forge::github::config::GITHUB_API.into(),
                    auth: config.github().client.auth,
                    limits: Default::default(),
                };
                if let Err(mayfly_forge::github::ConfigError::PrivateKey { reason, .. }) =
                    mayfly_forge::github::Client::new(&auth)
                {
                    problem(
                        "github.app.private_key_file".into(),
                        format!("{}: {reason}", app.private_key_file.display()),
                        Some("download the App's private key (PEM) from its settings page".into()),
                    );
                }
            }
            None if calls && gh.token.as_ref().is_none_or(|t| t.is_empty()) => problem(
                "github.token".into(),
                "not set".into(),
                Some(
                    "set token in [github] or the GITHUB_TOKEN environment variable, or a GitHub App in [github.app]"
                        .into(),
                ),
            ),
            None => {}
        }
        let node_scope = config.node.repository.is_some() || config.node.organization.is_some();
        let no_scope =
            gh.repositories.is_empty() && gh.organization.is_none() && gh.enterprise.is_none();
        if calls && no_scope && !(node && node_scope) {
            problem(
                "github".into(),
                "no repository, organization or enterprise to serve".into(),
                Some("set github.repositories, github.organization or github.enterprise, or the GITHUB_REPOSITORY environment variable".into()),
            );
        }
        for (i, repo) in gh.repositories.iter().enumerate() {
            let ok = repo
                .split_once('/')
                .is_some_and(|(owner, name)| github_name(owner) && github_name(name));
            if !ok {
                problem(
                    format!("github.repositories[{i}]"),
                    "expected `owner/repo`".into(),
                    None,
                );
            }
        }
        for (key, name, example) in [
            ("organization", &gh.organization, "my-org"),
            ("enterprise", &gh.enterprise, "my-enterprise"),
        ] {
            if let Some(name) = name
                && !github_name(name)
            {
                problem(
                    format!("github.{key}"),
                    format!("expected an {key} name, like `{example}`"),
                    None,
                );
            }
        }
        if !(0.0..=1.0).contains(&gh.limits.reserve) {
            problem(
                "github.limits.reserve".into(),
                "must be between 0 and 1 (a share of the hourly budget)".into(),
                None,
            );
        }
        if gh.limits.max_concurrent == 0 {
            problem(
                "github.limits.max_concurrent".into(),
                "must be at least 1".into(),
                None,
            );
        }
        if let Err(m) = http_url(&gh.api_url) {
            problem("github.api_url".into(), m, None);
        }
        if gh.webhook_secret.as_ref().is_some_and(|s| s.is_empty()) {
            problem(
                "github.webhook_secret".into(),
                "is empty".into(),
                Some("leave it out to accept no webhooks".into()),
            );
        }
    }
    if let Some(gl) = &config.gitlab
        && let Err(e) = gl.check()
    {
        let (key, message, hint) = gitlab_problem(&e);
        problem(key.into(), message, hint);
    }

    // A node uses neither providers nor pools: the defaults' Hetzner provider needs no token.
    for (name, p) in config.providers.iter().filter(|_| !node) {
        if let Err(m) = dns_label(name, 63) {
            problem(
                format!("providers.{name}"),
                format!("provider name {m}"),
                None,
            );
        }
        match p.kind {
            ProviderKind::Hetzner => {}
            ProviderKind::AwsEc2 | ProviderKind::AwsEcs | ProviderKind::AwsAsg => {
                let pools: Vec<_> = (config.pools.iter().enumerate())
                    .filter(|(_, pool)| pool.provider == *name)
                    .collect();
                for (key, message, hint) in super::aws::problems(name, p, &pools) {
                    problem(key, message, hint);
                }
            }
            ProviderKind::Local => {}
        }
        let pools: Vec<_> = (config.pools.iter().enumerate())
            .filter(|(_, pool)| pool.provider == *name)
            .collect();
        for (key, message, hint) in super::local::problems(name, p, &pools, config, calls) {
            problem(key, message, hint);
        }
        if calls && p.kind == ProviderKind::Hetzner && p.token.as_ref().is_none_or(|t| t.is_empty())
        {
            problem(
                format!("providers.{name}.token"),
                "not set".into(),
                Some("set token here or the HETZNER_TOKEN environment variable".into()),
            );
        }
        if let Some(endpoint) = &p.endpoint
            && let Err(m) = http_url(endpoint)
        {
            problem(format!("providers.{name}.endpoint"), m, None);
        }
    }

    let rules = LabelRules::new(config.labels.prefix.clone(), config.labels.meta.clone());
    let mut lower: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
    for label in config.labels.meta.keys() {
        // Job labels are matched without regard to case: two keys equal but for case clash.
        if let Some(first) = lower.insert(label.to_lowercase(), label) {
            problem(
                format!("labels.meta.{label}"),
                format!("`{first}` and `{label}` are the same meta label (case does not count)"),
                Some("keep one of them".into()),
            );
        }
    }
    for (label, expansion) in &config.labels.meta {
        let key = format!("labels.meta.{label}");
        if expansion.is_empty() || expansion.iter().any(|l| l.trim().is_empty()) {
            problem(
                key,
                "expected a non-empty list of non-empty labels".into(),
                None,
            );
        } else if let Err(e) = rules.requirements(&Labels::new(expansion)) {
            problem(key, e.to_string(), None);
        }
    }

    for (key, value, floor, ceiling) in durations(config) {
        if value < floor {
            problem(
                key.clone(),
                format!("must be at least {}", HumanDuration(floor)),
                Some(format!("shorter makes mayfly {}", too_short(&key))),
            );
        } else if value > ceiling {
            problem(
                key,
                format!("must be at most {}", HumanDuration(ceiling)),
                None,
            );
        }
    }
    let (lease, renew) = (config.leader.lease.0, config.leader.renew.0);
    if renew * 3 > lease {
        problem(
            "leader.renew".into(),
            format!(
                "must be at most a third of leader.lease ({}), so that a renewal or two may fail \
                 without losing the lease",
                config.leader.lease
            ),
            None,
        );
    }
    if config.http.max_connections == Some(0) {
        problem(
            "http.max_connections".into(),
            "must be at least 1".into(),
            Some("leave it out to derive it from the open files limit".into()),
        );
    }
    if config.api.listen == Some(config.listen) {
        problem(
            "api.listen".into(),
            format!("is the same address as listen ({})", config.listen),
            Some("give the private listener an address of its own, or leave it out".into()),
        );
    }

    if config.api.token_file.is_none() {
        problem(
            "api.token_file".into(),
            "cannot choose a place for the API token".into(),
            Some(
                "set api.token_file or state_dir, or the XDG_STATE_HOME or HOME environment variable"
                    .into(),
            ),
        );
    }
    if config.workers == 0 {
        problem("workers".into(), "must be at least 1".into(), None);
    }
    if config.pools.is_empty() && !node {
        problem(
            "pools".into(),
            "no pools configured".into(),
            Some("add a [[pools]] table".into()),
        );
    }
    for (key, message, hint) in crate::node::settings::problems(&config.node) {
        problem(key, message, hint);
    }
    let mut seen = BTreeSet::new();
    let forges = config.forges();
    for (i, pool) in config.pools.iter().enumerate() {
        let key = |k: &str| format!("pools[{i}].{k}");
        for (j, forge) in pool.forges.iter().enumerate() {
            if !forges.contains(forge) {
                problem(
                    format!("pools[{i}].forges[{j}]"),
                    format!("{} is not configured", forge.as_str()),
                    Some(format!(
                        "configure [{0}] or take {0:?} out of the pool's forges",
                        forge.as_str()
                    )),
                );
            }
        }
        if let Err(m) = dns_label(&pool.name, MAX_POOL) {
            problem(key("name"), m, None);
        } else if !seen.insert(pool.name.as_str()) {
            problem(
                key("name"),
                format!("a pool named `{}` is already configured", pool.name),
                None,
            );
        }
        match config.providers.get(&pool.provider) {
            None => problem(
                key("provider"),
                format!("no provider named `{}`", pool.provider),
                did_you_mean(&pool.provider, config.providers.keys().map(String::as_str)).or_else(
                    || {
                        Some(format!(
                            "configured: {}",
                            config
                                .providers
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    },
                ),
            ),
            Some(p) if p.kind == ProviderKind::Hetzner => {
                for (k, v, example) in [
                    ("types", &pool.types, "cx23"),
                    ("locations", &pool.locations, "fsn1"),
                ] {
                    if v.is_empty() {
                        problem(
                            key(k),
                            "a Hetzner pool needs at least one".into(),
                            Some(format!("for example [\"{example}\"]")),
                        );
                    }
                }
            }
            Some(_) => {}
        }
        if pool.labels.is_empty() {
            problem(
                key("labels"),
                "a pool needs at least one label".into(),
                Some("for example [\"self-hosted\"]".into()),
            );
        }
        for (j, label) in pool.labels.iter().enumerate() {
            if label.trim().is_empty() {
                problem(
                    format!("pools[{i}].labels[{j}]"),
                    "empty label".into(),
                    None,
                );
            }
        }
        for (k, v) in [("types", &pool.types), ("locations", &pool.locations)] {
            for (j, s) in v.iter().enumerate() {
                if s.trim().is_empty() {
                    problem(format!("pools[{i}].{k}[{j}]"), "empty name".into(), None);
                }
            }
        }
        if let Some(max) = pool.max
            && pool.standby > max
        {
            problem(
                key("standby"),
                format!(
                    "{} standby runners exceed the pool's max of {max}",
                    pool.standby
                ),
                None,
            );
        }
        if let Some(max) = config.limits.max_instances
            && pool.standby > max
        {
            problem(
                key("standby"),
                format!(
                    "{} standby runners exceed limits.max_instances of {max}",
                    pool.standby
                ),
                None,
            );
        }
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems })
    }
}

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Every duration key with its floor and its ceiling. Floors keep a typo (`poll = "1ns"`) from
/// hammering an API or deleting machines before they can boot; ceilings lie far past any use
/// and keep time arithmetic finite.
fn durations(config: &Config) -> Vec<(String, Duration, Duration, Duration)> {
    let i = &config.intervals;
    let d = &config.deadlines;
    let l = &config.github.limits;
    let r = &config.retention;
    let mut out: Vec<(String, Duration, Duration, Duration)> = [
        ("intervals.reconcile", i.reconcile, SEC, HOUR),
        ("intervals.resync", i.resync, SEC, DAY),
        ("intervals.settle", i.settle, SEC, HOUR),
        ("intervals.poll", i.poll, SEC, DAY),
        ("intervals.poll_backstop", i.poll_backstop, SEC, DAY),
        ("intervals.confirm_queued", i.confirm_queued, 10 * SEC, DAY),
        (
            "intervals.confirm_running",
            i.confirm_running,
            10 * SEC,
            DAY,
        ),
        ("intervals.confirm_stale", i.confirm_stale, SEC, HOUR),
        ("intervals.coalesce", i.coalesce, 100 * MS, MIN),
        ("intervals.refused_retry", i.refused_retry, SEC, DAY),
        ("intervals.finishing", i.finishing, 500 * MS, MIN),
        ("intervals.runners", i.runners, SEC, HOUR),
        ("deadlines.registration", d.registration, 5 * SEC, DAY),
        ("deadlines.idle", d.idle, SEC, 30 * DAY),
        ("deadlines.powered_off", d.powered_off, SEC, 30 * DAY),
        ("deadlines.max_lifetime", d.max_lifetime, MIN, 365 * DAY),
        (
            "github.limits.request_timeout",
            l.request_timeout,
            SEC,
            10 * MIN,
        ),
        ("github.limits.write_interval", l.write_interval, MS, MIN),
        ("github.limits.max_wait", l.max_wait, SEC, HOUR),
        ("recycling.margin", config.recycling.margin, MS, DAY),
        (
            "http.header_timeout",
            config.http.header_timeout,
            SEC,
            10 * MIN,
        ),
        ("http.body_timeout", config.http.body_timeout, SEC, 10 * MIN),
        ("dashboard.session", config.dashboard.session, MIN, 30 * DAY),
        ("dashboard.stream", config.dashboard.stream, 10 * SEC, DAY),
        (
            "dashboard.keep_alive",
            config.dashboard.keep_alive,
            SEC,
            10 * MIN,
        ),
        ("leader.lease", config.leader.lease, SEC, 10 * MIN),
        ("leader.renew", config.leader.renew, 100 * MS, MIN),
        ("leader.news", config.leader.news, 100 * MS, MIN),
        ("deadlines.shutdown", config.deadlines.shutdown, MS, MIN),
        ("retention.jobs", r.jobs, HOUR, 3650 * DAY),
        ("retention.deliveries", r.deliveries, HOUR, 3650 * DAY),
        ("retention.events", r.events, HOUR, 3650 * DAY),
        ("retention.intents", r.intents, HOUR, 3650 * DAY),
        ("retention.every", r.every, MIN, DAY),
    ]
    .into_iter()
    .map(|(k, v, floor, ceiling)| (k.to_string(), v.0, floor, ceiling))
    .collect();
    for (name, p) in &config.providers {
        if let Some(s) = &p.scaling {
            let key = |k: &str| format!("providers.{name}.scaling.{k}");
            out.push((key("interval"), s.interval.0, 5 * SEC, DAY));
            out.push((key("out_cooldown"), s.out_cooldown.0, MS, DAY));
            out.push((key("in_cooldown"), s.in_cooldown.0, MS, DAY));
        }
    }
    out
}

/// What a value under its floor would do, for the hint.
fn too_short(key: &str) -> &'static str {
    match key {
        k if k.starts_with("intervals.") || k.ends_with(".interval") => {
            "call GitHub and the clouds too often"
        }
        "deadlines.shutdown" => "cut a pass before any API call it made can answer",
        k if k.starts_with("deadlines.") => "delete machines before they can boot or take a job",
        k if k.starts_with("github.limits.") => "give up on GitHub calls before they can answer",
        k if k.starts_with("http.") => "cut off clients before a request can arrive",
        k if k.starts_with("leader.") => "hand leadership over at every hiccup",
        k if k.starts_with("retention.") => "forget what `mayfly status` and the API report",
        _ => "act on values too small to mean anything",
    }
}

/// Lower-case letters, digits and inner dashes, at most `max` long: safe in instance names,
/// DNS and every provider's tags.
fn dns_label(s: &str, max: usize) -> Result<(), String> {
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if s.is_empty() || !ok_chars || s.starts_with('-') || s.ends_with('-') {
        return Err("expected lower-case letters, digits and inner `-`".into());
    }
    if s.len() > max {
        return Err(format!(
            "is {} characters long, at most {max} allowed",
            s.len()
        ));
    }
    Ok(())
}

/// GitHub's rule for owner and repository names, loosely: ASCII letters, digits, `-`, `_`, `.`.
fn github_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn http_url(s: &str) -> Result<(), String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => Err("expected an http:// or https:// URL".into()),
    }
}

/// The key, message and hint of a `[gitlab]` section's problem.
fn gitlab_problem(e: &mayfly_forge::gitlab::ConfigError) -> (&'static str, String, Option<String>) {
    use mayfly_forge::gitlab::ConfigError as E;
    match e {
        E::BadUrl(_) => (
            "gitlab.url",
            "not the http(s) URL of a GitLab instance".into(),
            Some("like https://gitlab.com or https://gitlab.example.com, without /api/v4".into()),
        ),
        E::NoScope => (
            "gitlab",
            "no project or group to serve".into(),
            Some("set gitlab.projects or gitlab.groups".into()),
        ),
        E::BadPath { field, value } => (
            if *field == "groups" {
                "gitlab.groups"
            } else {
                "gitlab.projects"
            },
            format!("{value:?} is not a project or group id or full path"),
            Some("an id like 42 or a path like group/subgroup/project".into()),
        ),
        E::NoToken => (
            "gitlab.token",
            "not set".into(),
            Some("a token with the scopes create_runner, manage_runner and read_api".into()),
        ),
        E::BadReserve => (
            "gitlab.limits.reserve",
            "must be between 0 and 1 (a share of the per-minute budget)".into(),
            None,
        ),
        E::BadMaximumTimeout => (
            "gitlab.maximum_timeout_secs",
            "must be at least 600 (GitLab's minimum)".into(),
            None,
        ),
        E::GroupRunnersWithoutGroups => (
            "gitlab.runner_type",
            "group runners need gitlab.groups".into(),
            None,
        ),
        E::HttpClient => ("gitlab", e.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_dns_labels() {
        assert!(dns_label("linux-x64", MAX_POOL).is_ok());
        assert!(dns_label("Linux", MAX_POOL).is_err());
        assert!(dns_label("-x", MAX_POOL).is_err());
        assert!(dns_label("a_b", MAX_POOL).is_err());
        assert!(dns_label("", MAX_POOL).is_err());
        assert!(
            dns_label("a-very-long-pool-name-indeed", MAX_POOL)
                .unwrap_err()
                .contains("at most 20")
        );
    }

    #[test]
    fn urls_must_be_http() {
        assert!(http_url("https://ghe.example.com/api/v3").is_ok());
        assert!(http_url("http://127.0.0.1:4000").is_ok());
        assert!(http_url("ftp://x").is_err());
        assert!(http_url("https://").is_err());
    }
}
