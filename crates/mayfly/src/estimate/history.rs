//! A repository's job history from GitHub as a trace: each job that ran becomes a line, queued
//! at its `created_at` (counted from the window's start) and running from `started_at` to
//! `completed_at`, with its labels and workflow run.

use mayfly_core::Time;
use mayfly_forge::github::WorkflowJob;
use mayfly_forge::github::time::parse;
use mayfly_sim::trace::TraceJob;

/// The trace, and the jobs left out of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Converted {
    /// In order of arrival.
    pub trace: Vec<TraceJob>,
    /// Jobs that never had a runner: cancelled or skipped before they started.
    pub never_ran: usize,
    /// Jobs without labels or without readable times.
    pub unreadable: usize,
}

/// Turns the jobs of `repo` (`owner/name`) into a trace whose time 0 is `since`.
pub fn trace_from_jobs(repo: &str, since: Time, jobs: &[WorkflowJob]) -> Converted {
    let mut out = Converted::default();
    for j in jobs {
        let ran = j.runner_id.is_some_and(|id| id > 0)
            || j.runner_name.as_deref().is_some_and(|n| !n.is_empty());
        if !ran || j.conclusion.as_deref() == Some("skipped") {
            out.never_ran += 1;
            continue;
        }
        let time = |s: &Option<String>| s.as_deref().and_then(parse);
        let (Some(created), Some(started), Some(completed)) = (
            time(&j.created_at),
            time(&j.started_at),
            time(&j.completed_at),
        ) else {
            out.unreadable += 1;
            continue;
        };
        if j.labels.is_empty() {
            out.unreadable += 1;
            continue;
        }
        out.trace.push(TraceJob {
            at: created.since(since).as_secs_f64(),
            repo: repo.to_string(),
            labels: j.labels.iter().map(str::to_string).collect(),
            duration: completed.since(started).as_secs_f64(),
            run: Some(j.run_id.to_string()),
            forge: Default::default(),
        });
    }
    out.trace.sort_by(|a, b| a.at.total_cmp(&b.at));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job as GitHub's REST API answers it (the fields read here, and a few more).
    fn job(
        id: u64,
        runner: Option<&str>,
        conclusion: &str,
        times: [Option<&str>; 3],
    ) -> WorkflowJob {
        let v = serde_json::json!({
            "id": id, "run_id": 7, "run_attempt": 1, "status": "completed",
            "conclusion": conclusion, "labels": ["self-hosted", "Linux", "x64"],
            "runner_id": runner.map(|_| 42), "runner_name": runner,
            "created_at": times[0], "started_at": times[1], "completed_at": times[2],
            "head_branch": "main", "workflow_name": "CI", "steps": [],
        });
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn jobs_that_ran_become_trace_lines_and_the_rest_are_counted() {
        let since = parse("2026-01-31T00:00:00Z").unwrap();
        let t = |s| Some(s);
        let jobs = [
            job(
                2,
                Some("mayfly-x-2-1"),
                "success",
                [
                    t("2026-01-31T08:00:30Z"),
                    t("2026-01-31T08:01:00Z"),
                    t("2026-01-31T08:06:00Z"),
                ],
            ),
            job(
                1,
                Some("mayfly-x-1-1"),
                "failure",
                [
                    t("2026-01-31T08:00:00Z"),
                    t("2026-01-31T08:00:40Z"),
                    t("2026-01-31T08:00:50Z"),
                ],
            ),
            // Cancelled while queued: GitHub gives it no runner (name null or empty).
            job(
                3,
                None,
                "cancelled",
                [
                    t("2026-01-31T09:00:00Z"),
                    t("2026-01-31T09:05:00Z"),
                    t("2026-01-31T09:05:00Z"),
                ],
            ),
            job(
                4,
                Some(""),
                "skipped",
                [
                    t("2026-01-31T09:00:00Z"),
                    t("2026-01-31T09:00:00Z"),
                    t("2026-01-31T09:00:00Z"),
                ],
            ),
            job(
                5,
                Some("r"),
                "success",
                [t("2026-01-31T09:00:00Z"), None, t("2026-01-31T09:00:00Z")],
            ),
        ];
        let c = trace_from_jobs("acme/app", since, &jobs);
        assert_eq!((c.never_ran, c.unreadable), (2, 1));
        assert_eq!(c.trace.len(), 2);
        assert_eq!(c.trace[0].at, 8.0 * 3600.0, "sorted by arrival");
        assert_eq!(c.trace[0].duration, 10.0);
        assert_eq!(c.trace[1].duration, 300.0);
        assert_eq!(c.trace[1].labels, ["self-hosted", "linux", "x64"]);
        assert_eq!(c.trace[1].run.as_deref(), Some("7"));
        // What it writes reads back as a trace.
        let csv = mayfly_sim::trace::to_csv(&c.trace).unwrap();
        assert_eq!(mayfly_sim::trace::parse("t.csv", &csv).unwrap(), c.trace);
    }
}
