//! When the controller's loop passes: the one rule that the daemon, the in-process controller
//! (`mayfly demo`, the tests) and `mayfly estimate` share. Pure: every call is told `now`.
//!
//! Every pass costs a provider list call (Hetzner allows 3,600 an hour), so passes go where they
//! serve jobs: at once for a queued job; at once for a finished job while other jobs wait (its
//! machine may serve them), or `settle` later when recycling is off (the pass that sees its
//! machine off); when the plan's next deadline passes; every `unsettled` while something is
//! unsettled; at the latest after `resync`. Events that arrive while a pass runs, or within
//! `coalesce` of the last start, are served by one pass: a flood of webhooks makes at most one
//! pass in flight and one pending, and a pass at most every `coalesce`.

use crate::time::Time;
use std::time::Duration;

/// The loop's intervals (`[intervals]` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// While something is unsettled (a step failed or was skipped, a job waits for capacity,
    /// the runners could not be read): look again this soon.
    pub unsettled: Duration,
    /// The longest the loop sleeps without an event or a deadline: the safety net for changes
    /// nobody reports (a server deleted by hand in the console).
    pub resync: Duration,
    /// After a job finished with nothing waiting, the pass that sees its machine off comes this
    /// much later (one pass for every job that finished meanwhile). `None`: no such pass (with
    /// recycling, a kept machine waits for the next job or its paid time's end, both of which
    /// bring a pass anyway).
    pub settle: Option<Duration>,
    /// Passes start at least this far apart: what arrives meanwhile waits for the next one.
    pub coalesce: Duration,
}

/// How a pass ended, as far as the next one is concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ended {
    /// The world may change without an event saying so (or the pass failed): look again within
    /// `unsettled`.
    pub unsettled: bool,
    /// Jobs are left waiting (for a limit, say): a job that finishes may free their machine.
    pub waiting: bool,
    /// The plan's next deadline (`Plan::next_check`).
    pub next_check: Option<Time>,
    /// The pass found its picture stale (a job it was about to serve had started): plan again
    /// at once, as soon as `coalesce` allows.
    pub again: bool,
}

/// The loop's schedule: feed it events and passes, ask it when the next pass is due.
#[derive(Clone, Debug)]
pub struct Pacer {
    pace: Pace,
    /// When an event (a queued job, a finished one) wants a pass; `None`: none does.
    wanted: Option<Time>,
    /// When the last plan (or a re-check of it) wants the next pass: its next deadline within
    /// the caps; `None` before the first pass (wanted at once).
    deadline: Option<Time>,
    /// When the last pass started, for `coalesce`.
    last_start: Option<Time>,
    /// Whether the last pass left jobs waiting.
    waiting: bool,
}

impl Pacer {
    /// The first pass is due at once.
    pub fn new(pace: Pace) -> Pacer {
        Pacer {
            pace,
            wanted: None,
            deadline: None,
            last_start: None,
            waiting: false,
        }
    }

    pub fn pace(&self) -> Pace {
        self.pace
    }

    /// When the next pass may start: when it is wanted, but not within `coalesce` of the last.
    pub fn due(&self) -> Time {
        let wanted = match (self.wanted, self.deadline) {
            (Some(w), Some(d)) => w.min(d),
            (Some(t), None) | (None, Some(t)) => t,
            // Before the first pass: at once.
            (None, None) if self.last_start.is_none() => Time(i64::MIN),
            (None, None) => Time(i64::MAX),
        };
        match self.last_start {
            Some(s) => wanted.max(s.plus(self.pace.coalesce)),
            None => wanted,
        }
    }

    /// Whether a pass is due at `now`.
    pub fn is_due(&self, now: Time) -> bool {
        self.due() <= now
    }

    /// How long to sleep at `now` before the next pass.
    pub fn wait(&self, now: Time) -> Duration {
        self.due().since(now)
    }

    /// A job was queued (a webhook, a poll, a confirmation): a pass as soon as it may.
    pub fn queued(&mut self, now: Time) {
        self.want(now);
    }

    /// A job finished. While jobs wait, its machine may serve them: a pass at once. Otherwise,
    /// with `settle`, one pass a little later sees the machine off.
    pub fn finished(&mut self, now: Time) {
        if self.waiting {
            self.want(now);
        } else if let Some(settle) = self.pace.settle {
            self.want(now.plus(settle));
        }
    }

    /// Something else calls for a look at `at` (an operator's delete, say).
    pub fn want(&mut self, at: Time) {
        self.wanted = Some(self.wanted.map_or(at, |n| n.min(at)));
    }

    /// A pass starts at `now`: what was wanted until now is served by it.
    pub fn started(&mut self, now: Time) {
        self.last_start = Some(now);
        if self.wanted.is_some_and(|n| n <= now) {
            self.wanted = None;
        }
        if self.deadline.is_some_and(|d| d <= now) {
            self.deadline = None;
        }
    }

    /// The pass that started last ended at `now` (or its plan was checked again on newer news
    /// without reading the world: then this replaces what the pass said): the next is wanted
    /// at the plan's next deadline, within `unsettled` or `resync`, unless an event wants it
    /// sooner.
    pub fn ended(&mut self, now: Time, ended: Ended) {
        self.waiting = ended.waiting;
        let cap = now.plus(if ended.unsettled {
            self.pace.unsettled
        } else {
            self.pace.resync
        });
        let at = match ended.next_check {
            _ if ended.again => now,
            Some(t) if t > now => t.min(cap),
            Some(_) => now,
            None => cap,
        };
        self.deadline = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACE: Pace = Pace {
        unsettled: Duration::from_secs(15),
        resync: Duration::from_secs(300),
        settle: Some(Duration::from_secs(20)),
        coalesce: Duration::from_millis(500),
    };

    fn t(ms: i64) -> Time {
        Time::from_millis(ms)
    }

    /// Starts and ends a pass at `now`.
    fn pass(p: &mut Pacer, now: Time, ended: Ended) {
        assert!(p.is_due(now), "a pass is due at {now}");
        p.started(now);
        p.ended(now, ended);
    }

    #[test]
    fn the_first_pass_is_at_once_then_the_next_deadline_within_the_caps() {
        let mut p = Pacer::new(PACE);
        assert!(p.is_due(t(0)));
        pass(&mut p, t(0), Ended::default());
        assert_eq!(p.due(), t(300_000), "nothing due: the safety net");
        let mut p = Pacer::new(PACE);
        pass(
            &mut p,
            t(0),
            Ended {
                next_check: Some(t(60_000)),
                ..Ended::default()
            },
        );
        assert_eq!(p.due(), t(60_000), "the plan's next deadline");
        let mut p = Pacer::new(PACE);
        pass(
            &mut p,
            t(0),
            Ended {
                unsettled: true,
                next_check: Some(t(60_000)),
                ..Ended::default()
            },
        );
        assert_eq!(p.due(), t(15_000), "unsettled: look again soon");
        let mut p = Pacer::new(PACE);
        pass(
            &mut p,
            t(1000),
            Ended {
                next_check: Some(t(900)),
                ..Ended::default()
            },
        );
        assert_eq!(
            p.due(),
            t(1500),
            "overdue: at once, after the coalescing gap"
        );
    }

    #[test]
    fn a_flood_of_queued_jobs_makes_one_pass_per_gap() {
        let mut p = Pacer::new(PACE);
        let mut passes = 0;
        // A webhook every 10 ms for 10 s; a pass takes 70 ms.
        let mut now = 0;
        let mut busy_until = 0;
        while now < 10_000 {
            p.queued(t(now));
            if now >= busy_until && p.is_due(t(now)) {
                p.started(t(now));
                passes += 1;
                busy_until = now + 70;
                p.ended(t(busy_until), Ended::default());
            }
            now += 10;
        }
        assert_eq!(passes, 20, "one pass per 500 ms, not one per 70 ms");
    }

    #[test]
    fn a_queued_job_is_served_at_once_after_a_quiet_spell() {
        let mut p = Pacer::new(PACE);
        pass(&mut p, t(0), Ended::default());
        p.queued(t(10_000));
        assert_eq!(p.due(), t(10_000));
        p.started(t(10_000));
        p.queued(t(10_100));
        assert_eq!(p.due(), t(10_500), "the one pending pass, after the gap");
    }

    #[test]
    fn a_check_on_newer_news_replaces_the_deadline_but_not_an_event() {
        let mut p = Pacer::new(PACE);
        pass(
            &mut p,
            t(0),
            Ended {
                next_check: Some(t(180_000)),
                ..Ended::default()
            },
        );
        assert_eq!(
            p.due(),
            t(180_000),
            "a booting machine's registration deadline"
        );
        // Its job started on it (a webhook said so): that deadline is gone, the next is later.
        p.ended(
            t(30_000),
            Ended {
                next_check: Some(t(3_000_000)),
                ..Ended::default()
            },
        );
        assert_eq!(p.due(), t(330_000), "the safety net, no earlier");
        p.queued(t(40_000));
        p.ended(t(41_000), Ended::default());
        assert_eq!(p.due(), t(40_000), "a queued job still wants its pass");
    }

    #[test]
    fn a_finished_job_brings_a_pass_at_once_only_while_jobs_wait() {
        let mut p = Pacer::new(PACE);
        pass(
            &mut p,
            t(0),
            Ended {
                waiting: true,
                unsettled: true,
                ..Ended::default()
            },
        );
        p.finished(t(4000));
        assert_eq!(p.due(), t(4000), "its machine may serve a waiting job");
        pass(&mut p, t(4000), Ended::default());
        p.finished(t(8000));
        assert_eq!(p.due(), t(28_000), "nothing waits: the settle pass");
        let mut recycling = Pacer::new(Pace {
            settle: None,
            ..PACE
        });
        pass(&mut recycling, t(0), Ended::default());
        recycling.finished(t(8000));
        assert_eq!(recycling.due(), t(300_000), "no settle pass with recycling");
    }
}
