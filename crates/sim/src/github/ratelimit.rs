//! GitHub's primary rate limit (an hourly budget per token, x-ratelimit-* headers) and the
//! secondary limit on writes (a per-minute cap answered with 403 and retry-after).

use std::collections::HashMap;

const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;

/// One token's primary window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Primary {
    pub limit: u32,
    pub used: u32,
    /// End of the window, epoch seconds (x-ratelimit-reset).
    pub reset: i64,
}

impl Primary {
    pub fn remaining(&self) -> u32 {
        self.limit.saturating_sub(self.used)
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Window {
    start_ms: i64,
    count: u32,
}

/// Budgets keyed by the credential itself (kept in memory only, never shown).
#[derive(Debug, Default)]
pub struct Budgets {
    primary: HashMap<String, Window>,
    writes: HashMap<String, Window>,
}

/// The window containing `now_ms`, restarted when the previous one has ended.
fn current(w: &mut Window, now_ms: i64, len_ms: i64) -> &mut Window {
    if now_ms >= w.start_ms + len_ms {
        *w = Window {
            start_ms: now_ms,
            count: 0,
        };
    }
    w
}

impl Budgets {
    /// The token's primary budget now, without spending any.
    pub fn primary(&mut self, who: &str, limit: u32, now_ms: i64) -> Primary {
        let w = self.primary.entry(who.to_string()).or_insert(Window {
            start_ms: now_ms,
            count: 0,
        });
        let w = current(w, now_ms, HOUR_MS);
        Primary {
            limit,
            used: w.count,
            reset: (w.start_ms + HOUR_MS).div_euclid(1000),
        }
    }

    /// Spends one request of the token's primary budget.
    pub fn spend(&mut self, who: &str, limit: u32, now_ms: i64) -> Primary {
        self.primary(who, limit, now_ms);
        if let Some(w) = self.primary.get_mut(who) {
            w.count = w.count.saturating_add(1);
        }
        self.primary(who, limit, now_ms)
    }

    /// Gives back one request (a conditional request answered 304 is free).
    pub fn refund(&mut self, who: &str, limit: u32, now_ms: i64) -> Primary {
        if let Some(w) = self.primary.get_mut(who) {
            w.count = w.count.saturating_sub(1);
        }
        self.primary(who, limit, now_ms)
    }

    /// Admits one write, or says how many seconds to wait before the next one.
    pub fn write(&mut self, who: &str, per_minute: u32, now_ms: i64) -> Result<(), u64> {
        let w = self.writes.entry(who.to_string()).or_insert(Window {
            start_ms: now_ms,
            count: 0,
        });
        let w = current(w, now_ms, MINUTE_MS);
        if w.count >= per_minute {
            let wait_ms = (w.start_ms + MINUTE_MS - now_ms).max(0);
            return Err((wait_ms as u64).div_ceil(1000).max(1));
        }
        w.count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_budget_refills_when_the_hour_ends() {
        let mut b = Budgets::default();
        assert_eq!(b.spend("t", 2, 0).remaining(), 1);
        assert_eq!(b.spend("t", 2, 10).remaining(), 0);
        assert_eq!(b.refund("t", 2, 10).remaining(), 1);
        assert_eq!(b.spend("t", 2, 10).remaining(), 0);
        assert_eq!(b.primary("t", 2, HOUR_MS - 1).remaining(), 0);
        assert_eq!(
            b.primary("other", 2, 10).remaining(),
            2,
            "budgets are per token"
        );
        let p = b.primary("t", 2, HOUR_MS);
        assert_eq!((p.remaining(), p.reset), (2, 2 * 3600));
    }

    #[test]
    fn writes_over_the_minute_cap_wait_for_the_next_minute() {
        let mut b = Budgets::default();
        assert_eq!(b.write("t", 1, 0), Ok(()));
        assert_eq!(b.write("t", 1, 20_500), Err(40));
        assert_eq!(b.write("t", 1, MINUTE_MS), Ok(()));
    }
}
