//! The queue-depth policy of an Auto Scaling group of long-lived runners, as a pure function:
//! given the queue, the runners and the group at `now`, what to do. Scale out by `step` (waking
//! draining runners first); scale in by draining `step` runners, which finish their job and are
//! then retired one by one. Out and in have their own cooldowns, and both are enforced.

use mayfly_core::Time;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Fewest runners that take jobs (draining ones do not count).
    pub min: u32,
    /// Most instances the group may have.
    pub max: u32,
    /// Runners added or drained per decision.
    pub step: u32,
    /// Scale out when at least this many jobs are queued.
    pub out_threshold: u32,
    /// Scale in when at most this many jobs are queued.
    pub in_threshold: u32,
    /// No scale-out sooner than this after the last one.
    pub out_cooldown: Duration,
    /// No scale-in sooner than this after the last scale-in or scale-out: capacity just added
    /// is not drained before the jobs it was added for have had time to arrive.
    pub in_cooldown: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min: 0,
            max: 10,
            step: 1,
            out_threshold: 1,
            in_threshold: 0,
            out_cooldown: Duration::from_secs(60),
            in_cooldown: Duration::from_secs(300),
        }
    }
}

/// One runner of the group: its instance and what the forge says of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub instance: String,
    /// Registered and online.
    pub online: bool,
    pub busy: bool,
    /// Marked to take no new job.
    pub draining: bool,
}

/// What the policy sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// Jobs queued for this group's labels.
    pub queued: u32,
    /// The group's in-service instances and their runners.
    pub members: Vec<Member>,
    /// The group's desired capacity.
    pub desired: u32,
    pub last_out: Option<Time>,
    pub last_in: Option<Time>,
}

/// What to do, in this order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Draining runners done with their job: unprotect, deregister, terminate with decrement.
    pub retire: Vec<String>,
    /// Draining runners to take jobs again (a scale-out wakes these before buying any).
    pub reactivate: Vec<String>,
    /// A new desired capacity.
    pub desired: Option<u32>,
    /// Protect every instance from the group's own scale-in before draining any: the group must
    /// never pick a busy instance itself.
    pub protect_all: bool,
    pub drain: Vec<String>,
    /// Set when this decision scales out (or in): the cooldown starts at `now`.
    pub scaled_out: bool,
    pub scaled_in: bool,
    /// Why, for the log.
    pub reason: String,
}

impl Decision {
    pub fn is_empty(&self) -> bool {
        self.retire.is_empty()
            && self.reactivate.is_empty()
            && self.desired.is_none()
            && self.drain.is_empty()
    }
}

fn cooled(last: Option<Time>, cooldown: Duration, now: Time) -> bool {
    last.is_none_or(|t| now.since(t) >= cooldown)
}

pub fn decide(p: &Policy, v: &View, now: Time) -> Decision {
    // A draining runner that is idle (or gone) has finished: retire it whatever else happens.
    let mut d = Decision {
        retire: v
            .members
            .iter()
            .filter(|m| m.draining && !(m.online && m.busy))
            .map(|m| m.instance.clone())
            .collect(),
        ..Decision::default()
    };
    let active = v.members.iter().filter(|m| !m.draining).count() as u32;
    let below_min = active < p.min;
    let starved = v.queued > 0 && active == 0;
    let want_out = v.queued >= p.out_threshold.max(1) || below_min || starved;
    if want_out {
        if !cooled(v.last_out, p.out_cooldown, now) {
            d.reason = format!("scale-out wanted ({} queued), in its cooldown", v.queued);
            return d;
        }
        // Draining runners that are still busy come back first: they cost nothing extra.
        let mut waking: Vec<&Member> = v
            .members
            .iter()
            .filter(|m| m.draining && m.online && m.busy)
            .collect();
        waking.truncate(p.step as usize);
        d.reactivate = waking.iter().map(|m| m.instance.clone()).collect();
        let more = p.step.saturating_sub(d.reactivate.len() as u32);
        // Retired instances leave the group with a decrement: count them out of it already.
        let base = v.desired.saturating_sub(d.retire.len() as u32);
        let target = (base + more).min(p.max);
        if target > base {
            d.desired = Some(target);
        }
        d.scaled_out = !d.reactivate.is_empty() || d.desired.is_some();
        d.reason = format!(
            "{} queued, {active} active runner(s){}: scale out",
            v.queued,
            if below_min { " (below min)" } else { "" }
        );
        if !d.scaled_out {
            d.reason
                .push_str(&format!(", but the group is at its max of {}", p.max));
        }
        return d;
    }
    if v.queued <= p.in_threshold
        && active > p.min
        && cooled(v.last_in, p.in_cooldown, now)
        && cooled(v.last_out, p.in_cooldown, now)
    {
        let n = p.step.min(active - p.min) as usize;
        // Idle runners first: they retire at once; busy ones finish their job first.
        let mut candidates: Vec<&Member> = v.members.iter().filter(|m| !m.draining).collect();
        candidates.sort_by_key(|m| (m.online && m.busy, m.instance.clone()));
        d.drain = candidates
            .iter()
            .take(n)
            .map(|m| m.instance.clone())
            .collect();
        d.protect_all = !d.drain.is_empty();
        d.scaled_in = !d.drain.is_empty();
        d.reason = format!(
            "{} queued, {active} active runner(s): drain {}",
            v.queued,
            d.drain.len()
        );
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, busy: bool, draining: bool) -> Member {
        Member {
            instance: id.into(),
            online: true,
            busy,
            draining,
        }
    }

    fn policy() -> Policy {
        Policy {
            min: 1,
            max: 5,
            step: 2,
            out_threshold: 2,
            in_threshold: 0,
            out_cooldown: Duration::from_secs(60),
            in_cooldown: Duration::from_secs(300),
        }
    }

    /// A clock the test moves by hand, and the group's memory of its cooldowns.
    struct Group {
        now: Time,
        view: View,
    }

    impl Group {
        fn new(members: Vec<Member>, desired: u32) -> Group {
            Group {
                now: Time::from_secs(1_000),
                view: View {
                    queued: 0,
                    members,
                    desired,
                    last_out: None,
                    last_in: None,
                },
            }
        }
        fn advance(&mut self, secs: u64) {
            self.now = self.now.plus(Duration::from_secs(secs));
        }
        /// Decides and remembers when it scaled, as the scaler does.
        fn pass(&mut self, p: &Policy) -> Decision {
            let d = decide(p, &self.view, self.now);
            if d.scaled_out {
                self.view.last_out = Some(self.now);
            }
            if d.scaled_in {
                self.view.last_in = Some(self.now);
            }
            if let Some(n) = d.desired {
                self.view.desired = n;
            }
            d
        }
    }

    #[test]
    fn a_queue_at_the_threshold_scales_out_by_step_once_per_cooldown() {
        let p = policy();
        let mut g = Group::new(vec![member("i-1", true, false)], 1);
        g.view.queued = 2;
        let d = g.pass(&p);
        assert_eq!(d.desired, Some(3));
        assert!(d.scaled_out);
        g.advance(59);
        let d = g.pass(&p);
        assert!(d.is_empty(), "still in the out cooldown: {d:?}");
        assert!(d.reason.contains("cooldown"));
        g.advance(1);
        assert_eq!(g.pass(&p).desired, Some(5));
        g.advance(60);
        let d = g.pass(&p);
        assert_eq!(d.desired, None, "max reached");
        assert!(d.reason.contains("max of 5"), "{}", d.reason);
    }

    #[test]
    fn below_min_or_a_job_with_no_runner_scales_out_below_the_threshold() {
        let p = policy();
        let mut g = Group::new(Vec::new(), 0);
        assert_eq!(g.pass(&p).desired, Some(2), "no runner, min 1");
        let p0 = Policy { min: 0, ..policy() };
        let mut g = Group::new(Vec::new(), 0);
        assert!(
            g.pass(&p0).is_empty(),
            "nothing queued, min 0: nothing to do"
        );
        g.view.queued = 1;
        assert_eq!(g.pass(&p0).desired, Some(2), "one job, no runner");
    }

    #[test]
    fn scale_out_wakes_draining_runners_before_buying() {
        let p = policy();
        let mut g = Group::new(
            vec![
                member("i-1", true, true),
                member("i-2", false, false),
                member("i-3", true, false),
            ],
            3,
        );
        g.view.queued = 3;
        let d = g.pass(&p);
        assert_eq!(d.reactivate, ["i-1"]);
        assert_eq!(d.desired, Some(4), "one woken, one bought");
    }

    #[test]
    fn scale_in_protects_then_drains_idle_runners_first_never_below_min() {
        let p = policy();
        let mut g = Group::new(
            vec![
                member("i-1", true, false),
                member("i-2", false, false),
                member("i-3", true, false),
            ],
            3,
        );
        let d = g.pass(&p);
        assert!(d.protect_all && d.scaled_in);
        assert_eq!(
            d.drain,
            ["i-2", "i-1"],
            "the idle one first, then a busy one"
        );
        assert_eq!(d.desired, None, "scale-in never lowers desired directly");
        // Mark them draining; the idle one retires on the next pass, the busy one later.
        for m in &mut g.view.members {
            m.draining |= d.drain.contains(&m.instance);
        }
        g.advance(10);
        let d = g.pass(&p);
        assert_eq!(d.retire, ["i-2"]);
        assert!(d.drain.is_empty(), "in its cooldown and at min");
        g.view.members.retain(|m| m.instance != "i-2");
        g.view.desired = 2;
        g.view.members[0].busy = false;
        let d = g.pass(&p);
        assert_eq!(d.retire, ["i-1"]);
        g.view.members.retain(|m| m.instance != "i-1");
        g.advance(600);
        assert!(g.pass(&p).is_empty(), "one active runner is the min");
    }

    #[test]
    fn the_in_cooldown_also_follows_a_scale_out() {
        let p = policy();
        let mut g = Group::new(
            vec![member("i-1", false, false), member("i-2", false, false)],
            2,
        );
        g.view.queued = 2;
        assert!(g.pass(&p).scaled_out);
        g.view.queued = 0;
        g.view.members.push(member("i-3", false, false));
        g.view.members.push(member("i-4", false, false));
        g.advance(299);
        assert!(
            g.pass(&p).drain.is_empty(),
            "capacity just added is not drained at once"
        );
        g.advance(1);
        assert_eq!(g.pass(&p).drain.len(), 2);
        g.advance(299);
        assert!(g.pass(&p).drain.is_empty(), "in cooldown");
        g.advance(1);
        assert_eq!(g.pass(&p).drain.len(), 2);
    }

    #[test]
    fn retirement_makes_room_for_a_scale_out_in_the_same_pass() {
        let p = policy();
        let mut g = Group::new(
            vec![
                Member {
                    instance: "i-gone".into(),
                    online: false,
                    busy: false,
                    draining: true,
                },
                member("i-2", true, false),
            ],
            2,
        );
        g.view.queued = 4;
        let d = g.pass(&p);
        assert_eq!(d.retire, ["i-gone"]);
        assert_eq!(d.desired, Some(3), "desired 2 - 1 retired + step 2");
    }
}
