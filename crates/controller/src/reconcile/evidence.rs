//! Evidence that the store is behind the forge, read off one pass: a busy runner on the machine
//! made for a job the store still holds as queued (the job, or another, started and its news
//! was lost), and a job the store holds as running on a runner that has gone (it finished and
//! its news was lost). Such jobs are confirmed with the forge at once, and their repository is
//! polled closely again: webhooks are being lost.

use mayfly_core::{How, JobKey, JobStatus, Plan, Snapshot, Time, naming};
use std::collections::HashMap;
use std::time::Duration;

/// Jobs whose state in the store the pass found contradicted for longer than `grace` (news
/// takes a moment to arrive: a webhook a second behind the runner is no evidence). `listed` is
/// when the runner lists in `snapshot` were read: a list read before the store's last news of
/// a job says nothing of it (a pass may plan with the last lists, and a recycled machine's
/// runner keeps its name), and without lists nothing is evidence. `gone` remembers since when
/// each runner a running job names has been missing from the forge's list: it is updated here.
#[allow(clippy::too_many_arguments)]
pub fn suspects(
    snapshot: &Snapshot,
    plan: &Plan,
    news: &HashMap<JobKey, Time>,
    listed: Option<Time>,
    gone: &mut HashMap<String, Time>,
    controller: &str,
    now: Time,
    grace: Duration,
) -> Vec<JobKey> {
    let Some(listed) = listed else {
        return Vec::new();
    };
    let old = |t: Time| now.since(t) > grace;
    // The list was read after the job's last news.
    let after = |job: &JobKey| news.get(job).is_none_or(|t| listed >= *t);
    let runners: HashMap<&str, &mayfly_core::Runner> = snapshot
        .runners
        .iter()
        .map(|r| (r.name.as_str(), r))
        .collect();
    let mut out: Vec<JobKey> = Vec::new();
    // The store holds the job as queued while the runner of its own machine is busy.
    for a in plan.assignments.iter().filter(|a| a.how == How::Assumed) {
        if runners
            .get(a.instance.as_str())
            .is_some_and(|r| old(r.since))
            && news.get(&a.job).is_none_or(|t| old(*t))
            && after(&a.job)
        {
            out.push(a.job.clone());
        }
    }
    // The store holds the job as running on one of our runners, and that runner has been gone
    // for the grace: a single-use runner leaves when its job is over (and the completion's
    // news, on its way, usually lands first).
    let mut missing: HashMap<String, Time> = HashMap::new();
    for j in &snapshot.jobs {
        if j.status == JobStatus::InProgress
            && let Some(runner) = j.runner.as_deref()
            && naming::is_ours(controller, runner)
            && !runners.contains_key(runner)
            && after(&j.key)
        {
            let since = gone.get(runner).copied().unwrap_or(now);
            missing.insert(runner.to_string(), since);
            if old(since) && news.get(&j.key).is_none_or(|t| old(*t)) {
                out.push(j.key.clone());
            }
        }
    }
    *gone = missing;
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mayfly_core::{Assignment, ForgeKind, Instance, InstanceState, Job, Labels, Runner};

    fn key(id: u64) -> JobKey {
        JobKey {
            forge: ForgeKind::Github,
            scope: "acme/app".into(),
            id,
        }
    }

    fn job(id: u64, status: JobStatus, runner: Option<&str>) -> Job {
        Job {
            key: key(id),
            run_id: None,
            attempt: 1,
            labels: Labels::default(),
            status,
            queued_at: Time::from_secs(0),
            instances_created: 1,
            runner: runner.map(str::to_string),
        }
    }

    fn runner(name: &str, since: i64) -> Runner {
        Runner {
            id: 1,
            name: name.into(),
            status: mayfly_core::RunnerStatus::Online,
            busy: true,
            labels: Labels::default(),
            since: Time::from_secs(since),
        }
    }

    fn instance(name: &str, state: InstanceState) -> Instance {
        Instance {
            provider_id: Some("1".into()),
            ..crate::sample::instance(name, "p", state, Time::from_secs(0))
        }
    }

    /// A plan that assumes job `id` runs on `instance` (its runner busy, the job held queued).
    fn assumed(id: u64, instance: &str) -> Plan {
        Plan {
            assignments: vec![Assignment {
                job: key(id),
                instance: instance.into(),
                how: How::Assumed,
            }],
            ..Plan::default()
        }
    }

    #[test]
    fn a_contradiction_counts_once_it_outlasts_the_grace() {
        let snapshot = Snapshot {
            jobs: vec![
                job(1, JobStatus::Queued, None),
                job(2, JobStatus::InProgress, Some("mf-p-2-1")),
                job(3, JobStatus::InProgress, Some("mf-p-3-1")),
                job(4, JobStatus::InProgress, Some("someone-else")),
            ],
            instances: vec![instance("mf-p-3-1", InstanceState::Running)],
            runners: vec![runner("mf-p-1-1", 100)],
            ..Snapshot::default()
        };
        let plan = assumed(1, "mf-p-1-1");
        let news: HashMap<JobKey, Time> = (1..=4).map(|n| (key(n), Time::from_secs(100))).collect();
        let grace = Duration::from_secs(10);
        let mut gone = HashMap::new();
        let early = suspects(
            &snapshot,
            &plan,
            &news,
            Some(Time::from_secs(105)),
            &mut gone,
            "mf",
            Time::from_secs(105),
            grace,
        );
        assert!(early.is_empty(), "news may still be on its way: {early:?}");
        assert_eq!(gone.len(), 2, "the missing runners are remembered from now");
        let soon = suspects(
            &snapshot,
            &plan,
            &news,
            Some(Time::from_secs(111)),
            &mut gone,
            "mf",
            Time::from_secs(111),
            grace,
        );
        assert_eq!(soon, [key(1)], "the runners have been missing for 6 s only");
        let later = suspects(
            &snapshot,
            &plan,
            &news,
            Some(Time::from_secs(200)),
            &mut gone,
            "mf",
            Time::from_secs(200),
            grace,
        );
        // 1: queued while its runner is busy; 2 and 3: running on a runner that is gone (3's
        // machine is still up, powering off). Not 4: not our runner.
        assert_eq!(later, [key(1), key(2), key(3)]);
    }

    /// Lists read before a job's last news say nothing of it: a pass that plans with the last
    /// lists sees neither a recycled machine's new runner nor the end of its old one. No lists
    /// at all (they could not be read): nothing is evidence.
    #[test]
    fn lists_older_than_the_news_are_no_evidence() {
        let snapshot = Snapshot {
            jobs: vec![
                job(1, JobStatus::Queued, None),
                job(2, JobStatus::InProgress, Some("mf-p-2-1")),
            ],
            runners: vec![runner("mf-p-1-1", 100)],
            ..Snapshot::default()
        };
        let plan = assumed(1, "mf-p-1-1");
        let news: HashMap<JobKey, Time> = (1..=2).map(|n| (key(n), Time::from_secs(150))).collect();
        let grace = Duration::from_secs(10);
        let mut gone = HashMap::new();
        for now in [160, 300] {
            let at = Time::from_secs(now);
            let stale = Some(Time::from_secs(140));
            let found = suspects(&snapshot, &plan, &news, stale, &mut gone, "mf", at, grace);
            assert!(found.is_empty(), "{found:?}");
            let found = suspects(&snapshot, &plan, &news, None, &mut gone, "mf", at, grace);
            assert!(found.is_empty(), "{found:?}");
        }
        let fresh = Some(Time::from_secs(300));
        let at = Time::from_secs(300);
        assert_eq!(
            suspects(&snapshot, &plan, &news, fresh, &mut gone, "mf", at, grace),
            [key(1)],
            "2's runner is missing from now on: the grace starts"
        );
    }
}
