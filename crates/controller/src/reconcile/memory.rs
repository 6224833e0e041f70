//! Since when each instance and runner has been in its state: the provider and the forge say
//! what the state is, not since when, and the deadlines are counted from that moment.

use mayfly_core::{InstanceState, Time};
use std::collections::{HashMap, HashSet};

/// What counts as one state for the deadlines: starting and running are one "up" phase (the
/// registration deadline runs from the boot, not from the last status flip), split by whether
/// the machine's runner is registered. A runner that goes away from a machine that is up has
/// finished its job: the machine is powering off, and gets the registration deadline's length
/// to do so before it counts as a zombie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Up { runner: bool },
    Other(InstanceState),
}

impl Phase {
    fn of(state: InstanceState, runner: bool) -> Phase {
        match state {
            InstanceState::Starting | InstanceState::Running => Phase::Up { runner },
            s => Phase::Other(s),
        }
    }
}

#[derive(Clone, Default)]
pub struct Memory {
    /// Instance name → (phase, since, whether its runner left while it was up: its job is
    /// done and it is on its way off).
    instances: HashMap<String, (Phase, Time, bool)>,
    /// Runner name → (idle, since).
    runners: HashMap<String, (bool, Time)>,
}

impl Memory {
    /// Since when instance `name` has been in `state`. First seen up: since it was created (a
    /// fresh machine boots from its creation); first seen otherwise: since now, which after a
    /// restart gives a deadline its full length rather than cutting it short.
    pub fn instance(
        &mut self,
        name: &str,
        state: InstanceState,
        runner: bool,
        created: Time,
        now: Time,
    ) -> Time {
        let phase = Phase::of(state, runner);
        match self.instances.get(name) {
            Some((p, since, _)) if *p == phase => *since,
            // A runner registering on a booting machine changes no deadline.
            Some((Phase::Up { runner: false }, since, _))
                if phase == Phase::Up { runner: true } =>
            {
                let since = *since;
                self.instances
                    .insert(name.to_string(), (phase, since, false));
                since
            }
            seen => {
                let since = if seen.is_none() && matches!(phase, Phase::Up { .. }) {
                    created
                } else {
                    now
                };
                let left = matches!(seen, Some((Phase::Up { runner: true }, _, _)))
                    && phase == Phase::Up { runner: false };
                self.instances
                    .insert(name.to_string(), (phase, since, left));
                since
            }
        }
    }

    /// Whether instance `name` had a registered runner when last seen.
    pub fn had_runner(&self, name: &str) -> bool {
        matches!(
            self.instances.get(name),
            Some((Phase::Up { runner: true }, _, _))
        )
    }

    /// Whether instance `name`, up, has seen its runner go: the job it ran is over and the
    /// machine powers itself off (the bootstrap's last step), so it is as good as stopping.
    pub fn finishing(&self, name: &str) -> bool {
        self.instances
            .get(name)
            .is_some_and(|(phase, _, left)| *left && *phase == Phase::Up { runner: false })
    }

    /// A reused machine boots again now: its registration deadline starts over, and it waits
    /// for a new runner (whatever the last one did).
    pub fn restarted(&mut self, name: &str, now: Time) {
        self.instances
            .insert(name.to_string(), (Phase::Up { runner: false }, now, false));
    }

    /// Since when runner `name` has been idle (or not idle).
    pub fn runner(&mut self, name: &str, idle: bool, now: Time) -> Time {
        match self.runners.get(name) {
            Some((i, since)) if *i == idle => *since,
            _ => {
                self.runners.insert(name.to_string(), (idle, now));
                now
            }
        }
    }

    /// Forgets what was not seen this pass, so the maps stay as large as the world.
    pub fn retain(&mut self, instances: &HashSet<&str>, runners: &HashSet<&str>) {
        self.instances.retain(|k, _| instances.contains(k.as_str()));
        self.runners.retain(|k, _| runners.contains(k.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_counts_from_creation_and_survives_status_flips() {
        let mut m = Memory::default();
        let t = Time::from_secs;
        let up = InstanceState::Running;
        assert_eq!(
            m.instance("a", InstanceState::Starting, false, t(10), t(50)),
            t(10)
        );
        assert_eq!(
            m.instance("a", up, true, t(10), t(60)),
            t(10),
            "registering"
        );
        assert!(!m.finishing("a"));
        assert_eq!(
            m.instance("a", up, false, t(10), t(65)),
            t(65),
            "job done, powering off"
        );
        assert!(m.finishing("a"), "its runner left: finishing");
        assert_eq!(
            m.instance("a", InstanceState::Off, false, t(10), t(70)),
            t(70)
        );
        assert_eq!(
            m.instance("a", InstanceState::Off, false, t(10), t(90)),
            t(70)
        );
        m.restarted("a", t(100));
        assert!(!m.finishing("a"), "rebuilt: waiting for its new runner");
        assert_eq!(m.instance("a", up, false, t(10), t(110)), t(100));
        assert!(!m.finishing("a"));
        assert_eq!(m.instance("a", up, true, t(10), t(120)), t(100));
        assert_eq!(
            m.instance("b", InstanceState::Off, false, t(10), t(120)),
            t(120)
        );
    }

    #[test]
    fn runners_count_idle_time_from_when_they_became_idle() {
        let mut m = Memory::default();
        let t = Time::from_secs;
        assert_eq!(m.runner("r", false, t(1)), t(1));
        assert_eq!(m.runner("r", true, t(5)), t(5));
        assert_eq!(m.runner("r", true, t(9)), t(5));
        m.retain(&HashSet::new(), &HashSet::new());
        assert_eq!(m.runner("r", true, t(12)), t(12));
    }
}
