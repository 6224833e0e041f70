//! Wall-clock instants as plain numbers, so the planner never reads a clock.
//! The caller decides what "now" is; tests and simulations pass any value they like.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A notion of now and of waiting, for the code around the planner (clients, the reconcile
/// loop), injected so that tests and the simulator can run a fast clock. Only the interface
/// lives here: the planner itself never reads a clock, and the real one is the binary's.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Time;
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// Milliseconds since the Unix epoch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Time(pub i64);

impl Time {
    pub const fn from_millis(ms: i64) -> Self {
        Time(ms)
    }

    pub const fn from_secs(s: i64) -> Self {
        Time(s * 1000)
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`; zero when `earlier` is in the future (clock skew).
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }

    pub fn plus(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_add(d.as_millis().min(i64::MAX as u128) as i64),
        )
    }

    pub fn minus(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_sub(d.as_millis().min(i64::MAX as u128) as i64),
        )
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:03}",
            self.0.div_euclid(1000),
            self.0.rem_euclid(1000)
        )
    }
}

/// Formats a duration for humans and logs: `95s`, `3m05s`, `2h10m`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s < 120 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_never_goes_negative() {
        assert_eq!(Time(5).since(Time(10)), Duration::ZERO);
        assert_eq!(Time(10_000).since(Time(4_000)), Duration::from_secs(6));
    }

    #[test]
    fn human_durations_read_well() {
        assert_eq!(human(Duration::from_secs(95)), "95s");
        assert_eq!(human(Duration::from_secs(185)), "3m05s");
        assert_eq!(human(Duration::from_secs(7800)), "2h10m");
        assert_eq!(human(Duration::from_secs(3600)), "1h00m");
    }
}
