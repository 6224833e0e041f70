//! `mayfly status` and `mayfly list` as tables: pools, waiting jobs with their age, instances
//! with state, age and cost so far, runners. Ages are counted to now, not to the view's time.

use super::table::{Col, Table};
use mayfly::view::{InstanceView, View};
use mayfly_core::{JobStatus, Time};
use std::fmt::Write;
use std::time::Duration;

/// Who leads among replicas, as the answering one sees it.
fn leader_line(l: &mayfly::view::LeaderView) -> String {
    match (&l.holder, l.leading) {
        (_, true) => format!("leader {} (epoch {}), which answered", l.replica, l.epoch),
        (Some(h), false) => format!(
            "leader {h} (epoch {}) · answered by follower {}",
            l.epoch, l.replica
        ),
        (None, false) => format!(
            "no replica leads now (last epoch {}) · answered by follower {}",
            l.epoch, l.replica
        ),
    }
}

/// Everything, in sections.
pub fn status(view: &View, now: Time, width: usize) -> String {
    let mut out = String::new();
    let busy = view
        .instances
        .iter()
        .filter(|i| i.runner == mayfly::view::RunnerState::Busy)
        .count();
    let head = format!(
        "controller {} · seen {} ago ({})",
        view.controller,
        age(now.since(view.at)),
        rfc3339(view.at),
    );
    let totals = format!(
        "{} instance{}, {busy} busy · {}/h · {} so far",
        view.instances.len(),
        plural(view.instances.len()),
        money(view.cost.per_hour),
        money(view.cost.so_far),
    );
    let mut lines = vec![head, totals];
    if let Some(l) = &view.leader {
        lines.push(leader_line(l));
    }
    for line in lines {
        let _ = writeln!(out, "{}", super::table::cut(&line, width));
    }

    let mut pools = Table::new(&[
        ("POOL", Col::Key),
        ("PROVIDER", Col::Fixed),
        ("INSTANCES", Col::Number),
        ("BUSY", Col::Number),
        ("IDLE", Col::Number),
        ("QUEUED", Col::Number),
        ("MAX", Col::Number),
        ("STANDBY", Col::Number),
        ("LABELS", Col::Wide),
    ]);
    for p in &view.pools {
        pools.row(vec![
            p.name.clone(),
            p.provider.clone(),
            p.instances.to_string(),
            p.busy.to_string(),
            p.idle.to_string(),
            p.queued.to_string(),
            p.max.map_or_else(|| "-".into(), |m| m.to_string()),
            p.standby.to_string(),
            p.labels.join(","),
        ]);
    }
    section(&mut out, "POOLS", view.pools.len(), &pools, width);
    for p in view.pools.iter().filter(|p| p.unusable.is_some()) {
        let line = format!(
            "! pool {} is unusable: {} (nothing is made for it until the retry)",
            mayfly::escape::text(&p.name),
            mayfly::escape::text(p.unusable.as_deref().unwrap_or_default())
        );
        let _ = writeln!(out, "{}", super::table::cut(&line, width));
    }

    let waiting: Vec<_> = view
        .jobs
        .iter()
        .filter(|j| j.status == JobStatus::Queued)
        .collect();
    let mut jobs = Table::new(&[
        ("JOB", Col::Key),
        ("AGE", Col::Number),
        ("INSTANCE OR WHY IT WAITS", Col::Wide),
        ("LABELS", Col::Wide),
    ]);
    for j in &waiting {
        jobs.row(vec![
            short_job(&j.key),
            age(now.since(j.queued_at)),
            j.waiting
                .clone()
                .or_else(|| j.instance.clone())
                .unwrap_or_else(|| "-".into()),
            j.labels.join(","),
        ]);
    }
    section(&mut out, "JOBS WAITING", waiting.len(), &jobs, width);

    let instances = instances(&view.instances, now);
    section(
        &mut out,
        "INSTANCES",
        view.instances.len(),
        &instances,
        width,
    );

    let mut runners = Table::new(&[
        ("RUNNER", Col::Key),
        ("STATE", Col::Fixed),
        ("FOR", Col::Number),
        ("MANAGED", Col::Fixed),
        ("LABELS", Col::Wide),
    ]);
    for r in &view.runners {
        runners.row(vec![
            r.name.clone(),
            r.state.as_str().to_string(),
            age(now.since(r.since)),
            if r.managed { "yes" } else { "no" }.to_string(),
            r.labels.join(","),
        ]);
    }
    section(&mut out, "RUNNERS", view.runners.len(), &runners, width);
    out
}

/// The instances table of `mayfly list` and `mayfly status`.
pub fn instances(list: &[InstanceView], now: Time) -> Table {
    let mut t = Table::new(&[
        ("NAME", Col::Key),
        ("POOL", Col::Fixed),
        ("STATE", Col::Fixed),
        ("RUNNER", Col::Fixed),
        ("AGE", Col::Number),
        ("TYPE", Col::Fixed),
        ("LOCATION", Col::Fixed),
        ("ADDRESS", Col::Fixed),
        ("COST", Col::Number),
        ("JOB", Col::Wide),
    ]);
    for i in list {
        t.row(vec![
            i.name.clone(),
            i.pool.clone(),
            state(i),
            i.runner.as_str().to_string(),
            age(now.since(i.created_at)),
            i.machine_type.clone().unwrap_or_else(|| "-".into()),
            i.location.clone().unwrap_or_else(|| "-".into()),
            i.address.clone().unwrap_or_else(|| "-".into()),
            i.cost_so_far.map_or_else(|| "-".into(), money),
            i.job.as_deref().map_or_else(|| "-".into(), short_job),
        ]);
    }
    t
}

/// `acme/app#12` for `github:acme/app#12`: GitHub is the only forge yet, and the width is
/// better spent on the repository (`-o json` keeps the whole key).
fn short_job(key: &str) -> String {
    key.strip_prefix("github:").unwrap_or(key).to_string()
}

fn state(i: &InstanceView) -> String {
    serde_json::to_value(i.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{:?}", i.state))
}

fn section(out: &mut String, title: &str, count: usize, table: &Table, width: usize) {
    let _ = writeln!(out, "\n{title} ({count})");
    if table.is_empty() {
        out.push_str("none\n");
    } else {
        out.push_str(&table.render(width));
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Prices are small (a few cents an hour): four decimals.
fn money(amount: f64) -> String {
    format!("{amount:.4}")
}

/// To the second: people read it.
fn rfc3339(t: Time) -> String {
    jiff::Timestamp::from_second(t.millis().div_euclid(1000))
        .map(|ts| ts.to_string())
        .unwrap_or_default()
}

/// `42s`, `3m12s`, `3h04m`, `2d03h`: two units at most.
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mayfly::view::{CostView, JobView, PoolView, RunnerState, RunnerView};
    use mayfly_core::InstanceState;

    #[test]
    fn ages_read_in_two_units() {
        let s = Duration::from_secs;
        assert_eq!(age(s(42)), "42s");
        assert_eq!(age(s(192)), "3m12s");
        assert_eq!(age(s(3 * 3600 + 4 * 60 + 9)), "3h04m");
        assert_eq!(age(s(2 * 86400 + 3 * 3600)), "2d03h");
    }

    fn view() -> View {
        let t = Time::from_secs;
        View {
            controller: "mf".into(),
            at: t(1_000),
            pools: vec![PoolView {
                name: "linux".into(),
                provider: "hetzner".into(),
                labels: vec!["self-hosted".into(), "linux".into()],
                max: None,
                standby: 1,
                instances: 1,
                busy: 1,
                idle: 0,
                queued: 1,
                unusable: Some("Hetzner refused server type cx22: unknown".into()),
            }],
            jobs: vec![JobView {
                key: "github:acme/app#7".into(),
                forge: "github".into(),
                scope: "acme/app".into(),
                id: 7,
                run_id: Some(70),
                attempt: 1,
                status: JobStatus::Queued,
                labels: vec!["self-hosted".into(), "linux".into(), "gpu".into()],
                queued_at: t(940),
                age_seconds: 60,
                instance: None,
                waiting: Some("no pool serves labels [gpu, linux, self-hosted]".into()),
                waiting_reason: Some("no_pool".into()),
            }],
            instances: vec![InstanceView {
                name: "mf-linux-6-1".into(),
                pool: "linux".into(),
                provider: "hetzner".into(),
                provider_id: Some("42".into()),
                state: InstanceState::Running,
                created_at: t(700),
                age_seconds: 300,
                machine_type: Some("cx23".into()),
                location: Some("fsn1".into()),
                address: Some("198.51.100.7".into()),
                job: Some("github:acme/app#6".into()),
                runner: RunnerState::Busy,
                price_per_hour: Some(0.006),
                cost_so_far: Some(0.006),
                paid_until: Some(t(4300)),
            }],
            runners: vec![RunnerView {
                id: 3,
                name: "mf-linux-6-1".into(),
                state: RunnerState::Busy,
                labels: vec!["self-hosted".into()],
                since: t(800),
                managed: true,
            }],
            cost: CostView {
                per_hour: 0.006,
                so_far: 0.006,
            },
            leader: None,
        }
    }

    #[test]
    fn status_shows_every_section_within_the_width() {
        let out = status(&view(), Time::from_secs(1_010), 120);
        for needle in [
            "controller mf · seen 10s ago (1970-01-01T00:16:40Z)",
            "1 instance, 1 busy · 0.0060/h · 0.0060 so far",
            "POOLS (1)",
            "! pool linux is unusable: Hetzner refused server type cx22",
            "JOBS WAITING (1)",
            "acme/app#7",
            "1m10s",
            "no pool serves",
            "INSTANCES (1)",
            "mf-linux-6-1",
            "running",
            "5m10s",
            "198.51.100.7",
            "RUNNERS (1)",
        ] {
            assert!(out.contains(needle), "{needle:?} in\n{out}");
        }
        for width in [40, 80] {
            for line in status(&view(), Time::from_secs(1_010), width).lines() {
                assert!(line.chars().count() <= width, "{line:?}");
            }
        }
        assert!(!out.contains("leader"), "{out}");
    }

    #[test]
    fn status_names_the_leader_among_replicas() {
        let mut v = view();
        v.leader = Some(mayfly::view::LeaderView {
            replica: "b-2-00ff".into(),
            leading: false,
            holder: Some("a-1-0a0a".into()),
            epoch: 7,
        });
        let out = status(&v, Time::from_secs(1_010), 120);
        assert!(
            out.contains("leader a-1-0a0a (epoch 7) · answered by follower b-2-00ff"),
            "{out}"
        );
        v.leader = Some(mayfly::view::LeaderView {
            replica: "a-1-0a0a".into(),
            leading: true,
            holder: Some("a-1-0a0a".into()),
            epoch: 7,
        });
        let out = status(&v, Time::from_secs(1_010), 120);
        assert!(
            out.contains("leader a-1-0a0a (epoch 7), which answered"),
            "{out}"
        );
    }
}
