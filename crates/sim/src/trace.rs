//! Traces: files that drive load (when each job is submitted, to which repository, with which
//! labels, for how long), in CSV or JSON, and their replay in simulated time.
//!
//! CSV: a header `at,repo,labels,duration` (plus optional `run` and `forge` columns), one job a
//! line, labels separated by `;`, times in seconds, `#` starts a comment. Jobs with the same `run`
//! value, repository and submit time form one workflow run. A job's forge is GitHub unless it
//! says `gitlab`: then `repo` is the project's full path (`group[/subgroup…]/project`), `labels`
//! are the job's tags (none is allowed: an untagged job) and a run is one pipeline. The CSV is parsed by hand: the format
//! is ours and has no quoting, so a CSV crate would add nothing but a dependency.

use crate::clock::Clock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Which fake a trace job goes to.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TraceForge {
    #[default]
    Github,
    Gitlab,
}

impl TraceForge {
    pub fn is_github(&self) -> bool {
        *self == TraceForge::Github
    }

    fn parse(s: &str) -> Option<TraceForge> {
        match s {
            "" | "github" => Some(TraceForge::Github),
            "gitlab" => Some(TraceForge::Gitlab),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceJob {
    /// Seconds after the start of the replay (simulated).
    pub at: f64,
    /// `owner/repo`.
    pub repo: String,
    pub labels: Vec<String>,
    /// How long the job runs once a runner has it, in simulated seconds.
    pub duration: f64,
    /// Jobs sharing a run (with the same repo and `at`) form one workflow run.
    #[serde(default)]
    pub run: Option<String>,
    /// GitHub (the default) or GitLab.
    #[serde(default, skip_serializing_if = "TraceForge::is_github")]
    pub forge: TraceForge,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TraceError {
    #[error("{origin}:{line}: {message}")]
    Line {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("{origin}: {message}")]
    Json { origin: String, message: String },
}

/// Parses a trace; JSON when the text starts with `[`, CSV otherwise. `origin` names the file in
/// errors.
pub fn parse(origin: &str, text: &str) -> Result<Vec<TraceJob>, TraceError> {
    let jobs = if text.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<TraceJob>>(text).map_err(|e| TraceError::Json {
            origin: origin.to_string(),
            message: e.to_string(),
        })?
    } else {
        parse_csv(origin, text)?
    };
    for (n, j) in jobs.iter().enumerate() {
        let bad = |message: &str| TraceError::Json {
            origin: origin.to_string(),
            message: format!("job {}: {message}", n + 1),
        };
        check(j).map_err(|m| bad(&m))?;
    }
    Ok(jobs)
}

/// The latest a job may arrive, in seconds: 400 days, as far back as GitHub keeps a run's
/// history. A replay in virtual time passes through every moment up to the last arrival, so
/// an arrival in a million years would keep `mayfly estimate` busy for ever.
pub const MAX_AT: f64 = 400.0 * 86_400.0;
/// The longest a job may run, in seconds: 7 days (GitHub ends a self-hosted runner's job after
/// 5). Longer does not fit a `Duration` for much longer, and `1e20` does not fit at all.
pub const MAX_DURATION: f64 = 7.0 * 86_400.0;

fn check(j: &TraceJob) -> Result<(), String> {
    if !(j.at.is_finite() && (0.0..=MAX_AT).contains(&j.at)) {
        return Err(format!(
            "at must be a number of seconds from 0 to {MAX_AT} (400 days), got {}",
            j.at
        ));
    }
    if !(j.duration.is_finite() && (0.0..=MAX_DURATION).contains(&j.duration)) {
        return Err(format!(
            "duration must be a number of seconds from 0 to {MAX_DURATION} (7 days), got {}",
            j.duration
        ));
    }
    if j.forge == TraceForge::Gitlab {
        let parts: Vec<&str> = j.repo.split('/').collect();
        if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "a GitLab job's repo must be group/project (subgroups allowed), got {:?}",
                j.repo
            ));
        }
        return Ok(());
    }
    match j.repo.split_once('/') {
        Some((o, r)) if !o.is_empty() && !r.is_empty() && !r.contains('/') => {}
        _ => return Err(format!("repo must be owner/repo, got {:?}", j.repo)),
    }
    if j.labels.is_empty() {
        return Err("a job needs at least one label".into());
    }
    Ok(())
}

fn parse_csv(origin: &str, text: &str) -> Result<Vec<TraceJob>, TraceError> {
    let err = |line: usize, message: String| TraceError::Line {
        origin: origin.to_string(),
        line,
        message,
    };
    let mut rows = text
        .lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l.split('#').next().unwrap_or("").trim()))
        .filter(|(_, l)| !l.is_empty());
    let (hline, header) = rows.next().ok_or_else(|| {
        err(
            1,
            "empty trace: expected a header at,repo,labels,duration".into(),
        )
    })?;
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let col = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(at), Some(repo), Some(labels), Some(duration)) =
        (col("at"), col("repo"), col("labels"), col("duration"))
    else {
        return Err(err(
            hline,
            format!(
                "header {header:?}: expected the columns at,repo,labels,duration (and optionally run, forge)"
            ),
        ));
    };
    let run = col("run");
    let forge = col("forge");
    if let Some(unknown) = columns
        .iter()
        .find(|c| !["at", "repo", "labels", "duration", "run", "forge"].contains(c))
    {
        return Err(err(hline, format!("unknown column {unknown:?}")));
    }
    let mut jobs = Vec::new();
    for (line, row) in rows {
        let fields: Vec<&str> = row.split(',').map(str::trim).collect();
        if fields.len() != columns.len() {
            return Err(err(
                line,
                format!("expected {} fields, found {}", columns.len(), fields.len()),
            ));
        }
        let number = |i: usize, name: &str| {
            fields[i].parse::<f64>().map_err(|_| {
                err(
                    line,
                    format!("{name}: expected seconds, found {:?}", fields[i]),
                )
            })
        };
        let job = TraceJob {
            at: number(at, "at")?,
            repo: fields[repo].to_string(),
            labels: fields[labels]
                .split(';')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
            duration: number(duration, "duration")?,
            run: run.map(|i| fields[i].to_string()).filter(|r| !r.is_empty()),
            forge: match forge.map(|i| fields[i]) {
                None => TraceForge::Github,
                Some(f) => TraceForge::parse(f).ok_or_else(|| {
                    err(
                        line,
                        format!("forge: expected github or gitlab, found {f:?}"),
                    )
                })?,
            },
        };
        check(&job).map_err(|m| err(line, m))?;
        jobs.push(job);
    }
    Ok(jobs)
}

/// Writes a trace as CSV that `parse` reads back, with the `run` column. `Err` names a label
/// the format cannot hold (one with `,`, `;` or `#`): write JSON instead.
pub fn to_csv(trace: &[TraceJob]) -> Result<String, String> {
    // The forge column only when a job needs it, so GitHub traces read as they always did.
    let forges = trace.iter().any(|j| !j.forge.is_github());
    let mut out = String::from(if forges {
        "at,repo,labels,duration,run,forge\n"
    } else {
        "at,repo,labels,duration,run\n"
    });
    let plain = |s: &str| !s.contains([',', ';', '#', '\n', '\r']);
    for j in trace {
        if let Some(l) = j.labels.iter().find(|l| !plain(l)) {
            return Err(format!("label {l:?} cannot be written in CSV"));
        }
        if !plain(&j.repo) || j.run.as_deref().is_some_and(|r| !plain(r)) {
            return Err(format!(
                "repo or run of {:?} cannot be written in CSV",
                j.repo
            ));
        }
        out.push_str(&format!(
            "{},{},{},{},{}",
            j.at,
            j.repo,
            j.labels.join(";"),
            j.duration,
            j.run.as_deref().unwrap_or("")
        ));
        if forges {
            out.push_str(match j.forge {
                TraceForge::Github => ",github",
                TraceForge::Gitlab => ",gitlab",
            });
        }
        out.push('\n');
    }
    Ok(out)
}

/// One workflow run to submit: its repository and its jobs (labels, duration).
#[derive(Clone, Debug, PartialEq)]
pub struct Submission {
    pub at: Duration,
    pub forge: TraceForge,
    pub repo: String,
    pub jobs: Vec<(Vec<String>, Duration)>,
}

/// Groups a trace into workflow runs in submit order.
pub fn submissions(trace: &[TraceJob]) -> Vec<Submission> {
    let mut runs: BTreeMap<(u64, TraceForge, String, String, usize), Submission> = BTreeMap::new();
    for (n, j) in trace.iter().enumerate() {
        let at = Duration::from_secs_f64(j.at);
        // A job without a run is a run of its own (keyed by its position).
        let key = (
            at.as_millis() as u64,
            j.forge,
            j.repo.clone(),
            j.run.clone().unwrap_or_default(),
            if j.run.is_some() { 0 } else { n },
        );
        runs.entry(key)
            .or_insert_with(|| Submission {
                at,
                forge: j.forge,
                repo: j.repo.clone(),
                jobs: Vec::new(),
            })
            .jobs
            .push((j.labels.clone(), Duration::from_secs_f64(j.duration)));
    }
    runs.into_values().collect()
}

/// Submits each run at its time, in simulated time from now. `submit` enqueues one run.
pub async fn replay(trace: &[TraceJob], clock: &Clock, mut submit: impl FnMut(&Submission)) {
    let start = clock.now_ms();
    for s in submissions(trace) {
        let due = start + s.at.as_millis() as i64;
        let wait = due - clock.now_ms();
        if wait > 0 {
            clock.sleep(Duration::from_millis(wait as u64)).await;
        }
        submit(&s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_comments_runs_and_labels() {
        let text = "# a trace\nat,repo,labels,duration,run\n0,acme/app,self-hosted;linux,60,r1\n0,acme/app,self-hosted;linux,30,r1\n5.5,acme/web,self-hosted,10,\n";
        let t = parse("t.csv", text).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].labels, ["self-hosted", "linux"]);
        assert_eq!(t[2].at, 5.5);
        let subs = submissions(&t);
        assert_eq!(subs.len(), 2, "the two r1 jobs are one run");
        assert_eq!(subs[0].jobs.len(), 2);
        assert_eq!(subs[1].at, Duration::from_millis(5500));
    }

    #[test]
    fn csv_written_reads_back_the_same() {
        let text = "at,repo,labels,duration,run\n0,a/b,self-hosted;linux,60.5,r1\n1.25,a/c,x,1,\n";
        let t = parse("t.csv", text).unwrap();
        assert_eq!(to_csv(&t).unwrap(), text);
        let mut odd = t.clone();
        odd[0].labels.push("a,b".into());
        assert!(to_csv(&odd).unwrap_err().contains("\"a,b\""));
    }

    #[test]
    fn gitlab_jobs_say_their_forge_and_may_be_untagged() {
        let text = "at,repo,labels,duration,run,forge\n0,acme/platform/app,docker;linux,60,p1,gitlab\n0,acme/platform/app,,30,p1,gitlab\n0,acme/app,x,10,,\n";
        let t = parse("t.csv", text).unwrap();
        assert_eq!(t[0].forge, TraceForge::Gitlab);
        assert!(t[1].labels.is_empty());
        assert_eq!(t[2].forge, TraceForge::Github);
        let subs = submissions(&t);
        assert_eq!(subs.len(), 2);
        assert_eq!(
            subs.iter()
                .find(|s| s.forge == TraceForge::Gitlab)
                .unwrap()
                .jobs
                .len(),
            2
        );
        assert_eq!(parse("again.csv", &to_csv(&t).unwrap()).unwrap(), t);
        let e = parse("t.csv", "at,repo,labels,duration,forge\n0,a/b,x,1,gitea\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("t.csv:2: forge: expected github or gitlab"),
            "{e}"
        );
        let e = parse(
            "t.csv",
            "at,repo,labels,duration,forge\n0,lonely,x,1,gitlab\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("group/project"), "{e}");
        let j = parse(
            "t.json",
            r#"[{"at": 0, "repo": "g/p", "labels": [], "duration": 1, "forge": "gitlab"}]"#,
        )
        .unwrap();
        assert_eq!(j[0].forge, TraceForge::Gitlab);
        assert!(
            !serde_json::to_string(&t[2]).unwrap().contains("forge"),
            "GitHub jobs serialize as before"
        );
    }

    #[test]
    fn jobs_without_a_run_are_runs_of_their_own() {
        let t = parse("t.csv", "at,repo,labels,duration\n0,a/b,x,1\n0,a/b,x,1\n").unwrap();
        assert_eq!(submissions(&t).len(), 2);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = parse(
            "t.csv",
            "at,repo,labels,duration\n0,acme/app,x,60\nsoon,acme/app,x,60\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.csv:3: at: expected seconds, found \"soon\""
        );
        let e = parse("t.csv", "at,repo,labels\n").unwrap_err();
        assert!(e.to_string().starts_with("t.csv:1: header"), "{e}");
        let e = parse("t.csv", "at,repo,labels,duration\n0,notarepo,x,1\n").unwrap_err();
        assert!(
            e.to_string().contains("t.csv:2: repo must be owner/repo"),
            "{e}"
        );
        let e = parse("t.csv", "at,repo,labels,duration\n0,a/b,x\n").unwrap_err();
        assert!(e.to_string().contains("expected 4 fields, found 3"), "{e}");
    }

    #[test]
    fn json_traces_parse_and_are_checked() {
        let t = parse(
            "t.json",
            r#"[{"at": 1, "repo": "a/b", "labels": ["x"], "duration": 2}]"#,
        )
        .unwrap();
        assert_eq!(t[0].duration, 2.0);
        let e = parse(
            "t.json",
            r#"[{"at": -1, "repo": "a/b", "labels": ["x"], "duration": 2}]"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("job 1: at must be"), "{e}");
        assert!(parse("t.json", r#"[{"at": 1}]"#).is_err());
    }

    /// Values that once panicked (`Duration::from_secs_f64(1e20)`) or kept a replay busy for
    /// ever (`at = 1e15`) are errors that name the field and the range, in CSV and in JSON.
    #[test]
    fn times_out_of_range_are_errors() {
        for (row, field) in [
            (
                "1e15,a/b,x,1",
                "at must be a number of seconds from 0 to 34560000",
            ),
            (
                "0,a/b,x,1e20",
                "duration must be a number of seconds from 0 to 604800",
            ),
            ("0,a/b,x,inf", "duration must be"),
            ("NaN,a/b,x,1", "at must be"),
            ("34560000.5,a/b,x,1", "at must be"),
        ] {
            let e = parse("t.csv", &format!("at,repo,labels,duration\n{row}\n")).unwrap_err();
            assert!(e.to_string().starts_with("t.csv:2: "), "{e}");
            assert!(e.to_string().contains(field), "{e}");
        }
        let e = parse(
            "t.json",
            r#"[{"at": 0, "repo": "a/b", "labels": ["x"], "duration": 1e20}]"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("job 1: duration must be"), "{e}");
        let edge = parse("t.csv", "at,repo,labels,duration\n34560000,a/b,x,604800\n").unwrap();
        let subs = submissions(&edge);
        assert_eq!(subs[0].at, Duration::from_secs(34_560_000));
    }

    #[tokio::test]
    async fn replay_submits_in_order_in_simulated_time() {
        let t = parse("t.csv", "at,repo,labels,duration\n120,a/b,x,1\n0,a/c,x,1\n").unwrap();
        let clock = Clock::new(1000.0);
        let mut seen = Vec::new();
        let started = std::time::Instant::now();
        replay(&t, &clock, |s| seen.push(s.repo.clone())).await;
        assert_eq!(seen, ["a/c", "a/b"]);
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "120 s simulated at 1000x"
        );
    }

    #[test]
    fn the_shipped_traces_parse() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/traces");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let t = parse(&path.display().to_string(), &text).unwrap();
            assert!(!t.is_empty(), "{}", path.display());
            n += 1;
        }
        assert!(n >= 3);
    }
}
