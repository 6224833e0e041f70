//! The project's request bucket: `limit` requests, refilled continuously at `limit / 3600` per
//! simulated second, so 3,600/h gives one request back each second as the real API does.

/// What one request gets: whether it may pass, and the values of the three RateLimit headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Unix seconds when the bucket is full again.
    pub reset_secs: i64,
}

#[derive(Clone, Debug)]
pub struct Bucket {
    tokens: f64,
    at_ms: i64,
}

impl Bucket {
    pub fn full(limit: u32, now_ms: i64) -> Bucket {
        Bucket {
            tokens: f64::from(limit),
            at_ms: now_ms,
        }
    }

    /// Refills for the time passed, then takes one request if there is one.
    pub fn take(&mut self, limit: u32, now_ms: i64) -> Verdict {
        let cap = f64::from(limit);
        let per_ms = cap / 3_600_000.0;
        let elapsed = (now_ms - self.at_ms).max(0) as f64;
        self.tokens = (self.tokens + elapsed * per_ms).min(cap);
        self.at_ms = self.at_ms.max(now_ms);
        let allowed = self.tokens >= 1.0;
        if allowed {
            self.tokens -= 1.0;
        }
        let missing_ms = if per_ms > 0.0 {
            ((cap - self.tokens) / per_ms).ceil() as i64
        } else {
            0
        };
        Verdict {
            allowed,
            limit,
            remaining: self.tokens.floor() as u32,
            reset_secs: (now_ms + missing_ms).div_euclid(1000) + i64::from(missing_ms % 1000 != 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_bucket_refuses_then_refills_one_per_second() {
        let mut b = Bucket::full(3, 0);
        assert!((0..3).all(|_| b.take(3, 0).allowed));
        let v = b.take(3, 0);
        assert_eq!((v.allowed, v.remaining, v.reset_secs), (false, 0, 3600));
        assert!(
            !b.take(3, 1_199_000).allowed,
            "one request comes back after 1,200 s"
        );
        let v = b.take(3, 1_200_001);
        assert_eq!((v.allowed, v.remaining), (true, 0));
    }
}
