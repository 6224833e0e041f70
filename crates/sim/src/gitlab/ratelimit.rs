//! GitLab's request throttles (Rack::Attack): a fixed window of one minute per key (a user, a
//! client address, a runner token), counted before the request is served, and the `RateLimit-*`
//! headers that report it.

use std::collections::HashMap;

const MINUTE_MS: i64 = 60_000;

/// One key's window as the headers report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// `RateLimit-Name`.
    pub name: &'static str,
    pub limit: u32,
    /// Requests in this window, this one included (`RateLimit-Observed`).
    pub observed: u32,
    /// End of the window, epoch seconds (`RateLimit-Reset`).
    pub reset: i64,
}

impl Window {
    pub fn remaining(&self) -> u32 {
        self.limit.saturating_sub(self.observed)
    }

    pub fn exceeded(&self) -> bool {
        self.observed > self.limit
    }

    /// Seconds from `now_ms` until the window ends (`Retry-After`), at least 1.
    pub fn retry_after(&self, now_ms: i64) -> u64 {
        ((self.reset * 1000 - now_ms).max(0) as u64)
            .div_ceil(1000)
            .max(1)
    }
}

/// Counters keyed by throttle and key (the key never leaves the fake).
#[derive(Debug, Default)]
pub struct Buckets {
    counts: HashMap<(&'static str, String), (i64, u32)>,
}

impl Buckets {
    /// Counts one request of `key` under throttle `name` and reports the window. Windows are
    /// aligned to the minute, as Rack::Attack's period counters are.
    pub fn hit(&mut self, name: &'static str, key: &str, limit: u32, now_ms: i64) -> Window {
        let start = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let entry = self
            .counts
            .entry((name, key.to_string()))
            .or_insert((start, 0));
        if entry.0 != start {
            *entry = (start, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        Window {
            name,
            limit,
            observed: entry.1,
            reset: (start + MINUTE_MS).div_euclid(1000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_per_key_and_minute() {
        let mut b = Buckets::default();
        let w = b.hit("t", "alice", 2, 61_000);
        assert_eq!((w.observed, w.remaining(), w.reset), (1, 1, 120));
        b.hit("t", "alice", 2, 62_000);
        let w = b.hit("t", "alice", 2, 63_000);
        assert!(w.exceeded());
        assert_eq!(w.retry_after(63_000), 57);
        assert_eq!(b.hit("t", "bob", 2, 63_000).observed, 1);
        assert_eq!(b.hit("t", "alice", 2, 120_000).observed, 1, "a new minute");
    }
}
