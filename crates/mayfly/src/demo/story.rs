//! What the demo says: the progress table (with why powered-off servers stay), the quiet
//! stretches it fast-forwards, the report (GitHub calls that cost rate-limit budget apart from
//! the free 304s, whole hours billed), and the side-by-side of the runs.

use super::{clock, reuse};
use mayfly::estimate::Waits;
use mayfly::view::View;
use mayfly_core::{InstanceState, JobStatus, Time};
use mayfly_sim::Sim;
use std::time::Duration;

/// A quiet stretch shorter than this is not worth a jump.
const MIN_SKIP: Duration = Duration::from_secs(120);
/// Jumps stop this long before the deletes of the powered-off servers are due (their paid
/// time's end less the recycling margin), so the deletes are seen.
const SKIP_MARGIN: Duration = Duration::from_secs(60);

/// The world at one moment, from the fakes and the controller's last view.
pub struct World {
    pub queued: usize,
    pub running: usize,
    pub done: usize,
    pub servers: usize,
    pub off: usize,
    /// When the first powered-off server's paid time ends (the controller's view).
    pub paid_until: Option<Time>,
}

/// A job of either fake forge, as the story counts it.
pub struct SimJob {
    pub forge: &'static str,
    pub id: u64,
    pub labels: Vec<String>,
    /// `queued`, `running` or `done`.
    pub state: &'static str,
    pub success: bool,
    pub queued_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub status: String,
    pub runner: Option<String>,
}

/// Every job of the fake GitHub and the fake GitLab.
pub fn all_jobs(sim: &Sim) -> Vec<SimJob> {
    let mut all: Vec<SimJob> = sim
        .github
        .jobs()
        .into_iter()
        .map(|j| SimJob {
            forge: "GitHub",
            id: j.id,
            labels: j.labels.clone(),
            state: match j.status.as_str() {
                "completed" => "done",
                "in_progress" => "running",
                _ => "queued",
            },
            success: j.conclusion.as_deref() == Some("success"),
            queued_ms: j.queued_ms,
            started_ms: j.started_ms,
            finished_ms: j.completed_ms,
            status: j.status.clone(),
            runner: j.runner_name.clone(),
        })
        .collect();
    all.extend(sim.gitlab.jobs().into_iter().map(|j| SimJob {
        forge: "GitLab",
        id: j.id,
        labels: j.tags.clone(),
        // As mayfly reads GitLab's statuses; one it does not know, or one that is no demand
        // yet (`created`, `manual`), counts as waiting.
        state: match mayfly_forge::gitlab::job_status(&j.status) {
            Ok(Some(JobStatus::Completed)) => "done",
            Ok(Some(JobStatus::InProgress)) => "running",
            _ => "queued",
        },
        success: j.status == "success",
        queued_ms: j.queued_ms.unwrap_or(j.created_ms),
        started_ms: j.started_ms,
        finished_ms: j.finished_ms,
        status: j.status.clone(),
        runner: j.runner_description.clone(),
    }));
    all
}

impl World {
    pub fn of(sim: &Sim, view: Option<&View>) -> World {
        let gh = all_jobs(sim);
        let servers = sim.hetzner.servers();
        let done = gh.iter().filter(|j| j.state == "done").count();
        let running = gh.iter().filter(|j| j.state == "running").count();
        let paid_until = view.and_then(|v| {
            v.instances
                .iter()
                .filter(|i| i.state == InstanceState::Off)
                .filter_map(|i| i.paid_until)
                .min()
        });
        World {
            queued: gh.len().saturating_sub(done + running),
            running,
            done,
            servers: servers.len(),
            off: servers.iter().filter(|s| s.status == "off").count(),
            paid_until,
        }
    }

    pub fn header() -> String {
        format!(
            "{:>7}  {:>6} {:>7} {:>5}  {:>7} {:>4}",
            "time", "queued", "running", "done", "servers", "off"
        )
    }

    /// A progress line; with powered-off servers and nothing to do, why they stay.
    pub fn line(&self, now: i64, start: i64) -> String {
        let mut line = format!(
            "{:>7}  {:>6} {:>7} {:>5}  {:>7} {:>4}",
            clock(now - start),
            self.queued,
            self.running,
            self.done,
            self.servers,
            self.off
        );
        if self.off > 0
            && self.queued == 0
            && let Some(until) = self.paid_until
        {
            line.push_str(&format!(
                "  off: paid until {}, reused if a job comes",
                clock(until.millis() - start)
            ));
        }
        line
    }

    /// How far to jump: nothing queued or running, every server off, and the first of them is
    /// due for deletion (`recycling_margin` before its paid time ends) more than [`MIN_SKIP`]
    /// from now.
    pub fn quiet(&self, now: i64, recycling_margin: Duration) -> Option<Duration> {
        if self.queued > 0 || self.running > 0 || self.servers == 0 || self.off < self.servers {
            return None;
        }
        let until = self.paid_until?.millis() - (recycling_margin + SKIP_MARGIN).as_millis() as i64;
        let skip = Duration::from_millis(u64::try_from(until - now).ok()?);
        (skip >= MIN_SKIP).then_some(skip)
    }

    pub fn skipped(&self, now: i64, skip: Duration, start: i64) -> String {
        format!(
            "{:>7}  fast-forward to {}: nothing to do; {} servers powered off, paid until {}, \
             reused if a job comes",
            clock(now - start),
            clock(now + skip.as_millis() as i64 - start),
            self.off,
            self.paid_until
                .map_or("?".into(), |t| clock(t.millis() - start))
        )
    }
}

/// What one run came to.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub jobs: usize,
    pub served: usize,
    pub waits: Waits,
    /// GitHub calls that count against the rate limit, and conditional ones answered 304 (free).
    pub github_budget: u64,
    pub github_304: u64,
    /// GitLab's calls (none are free: its lists have no ETags).
    pub gitlab: u64,
    pub hetzner: u64,
    pub servers_created: usize,
    pub hours_billed: u64,
    pub cost: f64,
    pub currency: &'static str,
    /// The job-seconds priced like the servers that ran them.
    pub job_cost: f64,
    pub left: usize,
    pub failed_passes: u32,
    pub took_ms: i64,
}

impl Outcome {
    pub fn of(sim: &Sim, jobs: usize, start: i64, failed_passes: u32) -> Outcome {
        let gh = all_jobs(sim);
        let served = gh.iter().filter(|j| j.success).count();
        let waits = Waits::of(
            gh.iter()
                .filter_map(|j| j.started_ms.map(|s| (s - j.queued_ms) as f64 / 1000.0))
                .collect(),
        );
        let job_secs: f64 = gh
            .iter()
            .filter_map(|j| Some((j.finished_ms? - j.started_ms?) as f64 / 1000.0))
            .sum();
        let (mut github_budget, mut github_304) = (0, 0);
        for row in sim
            .stats
            .rows()
            .iter()
            .filter(|r| r.key.service == "github")
        {
            github_304 += row.count.not_modified;
            github_budget += row.count.calls.saturating_sub(row.count.not_modified);
        }
        let bill = sim.hetzner.billing();
        let mean_price = if bill.servers.is_empty() {
            0.0
        } else {
            bill.servers
                .iter()
                .map(|s| s.price_hourly_gross)
                .sum::<f64>()
                / bill.servers.len() as f64
        };
        Outcome {
            jobs,
            served,
            waits,
            github_budget,
            github_304,
            gitlab: sim.stats.total("gitlab"),
            hetzner: sim.stats.total("hetzner"),
            servers_created: bill.servers.len(),
            hours_billed: bill.hours_billed,
            cost: bill.total,
            currency: bill.currency,
            job_cost: job_secs / 3600.0 * mean_price,
            left: sim.hetzner.servers().len(),
            failed_passes,
            took_ms: sim.clock.now_ms() - start,
        }
    }

    pub fn ok(&self) -> bool {
        self.served == self.jobs && self.left == 0
    }

    fn per_job(&self, n: f64) -> f64 {
        n / self.served.max(1) as f64
    }

    /// Prints the report; true when every job was served and no server is left.
    pub fn report(&self, sim: &Sim, recycling: bool) -> bool {
        println!();
        println!("report ({} simulated)", clock(self.took_ms));
        println!("  jobs served          {}/{}", self.served, self.jobs);
        println!(
            "  queue wait           p50 {}  p95 {}  max {}",
            secs(self.waits.p50),
            secs(self.waits.p95),
            secs(self.waits.max)
        );
        println!(
            "  GitHub API calls     {} that count against the rate limit ({:.2} per job), \
             and {} conditional reads answered 304 Not Modified, which are free",
            self.github_budget,
            self.per_job(self.github_budget as f64),
            self.github_304
        );
        if self.gitlab > 0 {
            println!(
                "  GitLab API calls     {} ({:.2} per job of both forges)",
                self.gitlab,
                self.per_job(self.gitlab as f64)
            );
        }
        println!(
            "  Hetzner API calls    {} ({:.2} per job)",
            self.hetzner,
            self.per_job(self.hetzner as f64)
        );
        println!(
            "  servers created      {} ({})",
            self.servers_created,
            reuse(self.servers_created, self.served, recycling)
        );
        println!(
            "  billed cost          {:.4} {} for {} server-hours: Hetzner bills each started hour, \
             so a server costs an hour however short its jobs (the job-seconds alone come to {:.4}); \
             recycling puts later jobs on hours already paid",
            self.cost, self.currency, self.hours_billed, self.job_cost
        );
        println!("  servers left         {}", self.left);
        if self.failed_passes > 0 {
            println!(
                "  failed passes        {} (see the messages above)",
                self.failed_passes
            );
        }
        for j in all_jobs(sim).iter().filter(|j| !j.success) {
            println!(
                "  not served: {} job {} [{}] {} (runner {:?})",
                j.forge,
                j.id,
                j.labels.join(","),
                j.status,
                j.runner
            );
        }
        for s in sim.hetzner.servers() {
            println!("  left: server {} {} ({})", s.name, s.status, s.server_type);
        }
        let ok = self.ok();
        println!(
            "{}",
            if ok {
                "ok: every job was served and no server is left"
            } else {
                "FAILED: a job was not served or a server is left"
            }
        );
        ok
    }
}

/// The runs side by side.
pub fn compare(rows: &[(&str, Outcome)]) {
    let width = 22;
    let mut head = format!("  {:<24}", "");
    for (label, _) in rows {
        head.push_str(&format!("{label:>width$}"));
    }
    println!("{head}");
    let line = |name: &str, f: &dyn Fn(&Outcome) -> String| {
        let mut l = format!("  {name:<24}");
        for (_, o) in rows {
            l.push_str(&format!("{:>width$}", f(o)));
        }
        println!("{l}");
    };
    line("jobs served", &|o| format!("{}/{}", o.served, o.jobs));
    line("queue wait p50 / p95", &|o| {
        format!("{} / {}", secs(o.waits.p50), secs(o.waits.p95))
    });
    line("servers created", &|o| o.servers_created.to_string());
    line("server-hours billed", &|o| o.hours_billed.to_string());
    line("billed cost", &|o| format!("{:.4} {}", o.cost, o.currency));
    line("GitHub calls (budget)", &|o| {
        format!(
            "{} ({:.2}/job)",
            o.github_budget,
            o.per_job(o.github_budget as f64)
        )
    });
    line("GitHub 304s (free)", &|o| o.github_304.to_string());
    if rows.iter().any(|(_, o)| o.gitlab > 0) {
        line("GitLab calls", &|o| {
            format!("{} ({:.2}/job)", o.gitlab, o.per_job(o.gitlab as f64))
        });
    }
    line("Hetzner calls", &|o| o.hetzner.to_string());
    line("servers left", &|o| o.left.to_string());
}

fn secs(s: Option<f64>) -> String {
    s.map_or_else(|| "-".into(), |s| format!("{s:.0}s"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(queued: usize, running: usize, servers: usize, off: usize) -> World {
        World {
            queued,
            running,
            done: 0,
            servers,
            off,
            paid_until: Some(Time(3_600_000)),
        }
    }

    #[test]
    fn only_a_long_quiet_stretch_of_powered_off_servers_is_skipped() {
        // Twelve minutes in, six servers off, paid until 60:00, deleted from 50:00: jump to 49:00.
        let margin = Duration::from_secs(600);
        assert_eq!(
            world(0, 0, 6, 6).quiet(720_000, margin),
            Some(Duration::from_secs(37 * 60))
        );
        assert_eq!(
            world(1, 0, 6, 6).quiet(720_000, margin),
            None,
            "a job waits"
        );
        assert_eq!(world(0, 1, 6, 5).quiet(720_000, margin), None, "a job runs");
        assert_eq!(
            world(0, 0, 0, 0).quiet(720_000, margin),
            None,
            "nothing to wait for"
        );
        assert_eq!(
            world(0, 0, 6, 6).quiet(2_900_000, margin),
            None,
            "under two minutes"
        );
        let line = world(0, 0, 6, 6).line(720_000, 0);
        assert!(
            line.ends_with("off: paid until 60:00, reused if a job comes"),
            "{line}"
        );
    }
}
