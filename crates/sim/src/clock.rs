//! Simulated time: wall-clock time sped up by a factor, so an hour of billing or a ten-minute
//! job can pass in seconds. Every delay, timestamp and rate-limit window in the sim uses it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Cheap to clone; all clones share one start.
#[derive(Clone, Debug)]
pub struct Clock(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    started: Instant,
    epoch_ms: i64,
    speed: f64,
    /// Simulated time jumped over by [`Clock::advance`].
    skipped_ms: AtomicI64,
}

/// A sleeping task looks at the clock at least this often (real time), so that it wakes soon
/// after [`Clock::advance`] jumps past its deadline.
const RECHECK: Duration = Duration::from_millis(200);

impl Clock {
    /// `speed` simulated seconds pass per real second (1.0: real time).
    pub fn new(speed: f64) -> Clock {
        let epoch_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Clock(Arc::new(Inner {
            started: Instant::now(),
            epoch_ms,
            speed: speed.max(1e-6),
            skipped_ms: AtomicI64::new(0),
        }))
    }

    pub fn speed(&self) -> f64 {
        self.0.speed
    }

    /// Simulated now, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        let elapsed = self.0.started.elapsed().as_secs_f64() * self.0.speed;
        self.0.epoch_ms + (elapsed * 1000.0) as i64 + self.0.skipped_ms.load(Ordering::Relaxed)
    }

    /// Jumps simulated time forward by `d`: a quiet stretch of a demo (nothing queued or
    /// running, machines waiting out their paid hour) passes at once. Sleepers through
    /// [`Clock::sleep`] wake within [`RECHECK`]; real-time waits (a virtual runner's job) do not
    /// move, so call it only when nothing is in flight.
    pub fn advance(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.0.skipped_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Simulated now, in whole seconds since the Unix epoch.
    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// How long a simulated duration takes in real time.
    pub fn real(&self, simulated: Duration) -> Duration {
        simulated.div_f64(self.0.speed)
    }

    /// Sleeps for a simulated duration, or less when [`Clock::advance`] jumps past its end.
    pub async fn sleep(&self, simulated: Duration) {
        let until = self
            .now_ms()
            .saturating_add(i64::try_from(simulated.as_millis()).unwrap_or(i64::MAX));
        loop {
            let left = until - self.now_ms();
            if left <= 0 {
                return;
            }
            let real = self.real(Duration::from_millis(left as u64));
            tokio::time::sleep(real.min(RECHECK)).await;
        }
    }
}

/// The simulator's time as the clock of mayfly's clients and loop, so that they and the fakes
/// agree on deadlines, resets and billing. (mayfly-core holds only the interface.)
impl mayfly_core::Clock for Clock {
    fn now(&self) -> mayfly_core::Time {
        mayfly_core::Time::from_millis(self.now_ms())
    }

    fn sleep(
        &self,
        d: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let clock = self.clone();
        Box::pin(async move { Clock::sleep(&clock, d).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_clock_runs_ahead_and_shortens_sleeps() {
        let c = Clock::new(60.0);
        assert_eq!(c.real(Duration::from_secs(60)), Duration::from_secs(1));
        let before = c.now_ms();
        c.advance(Duration::from_secs(3600));
        assert!(c.now_ms() - before >= 3_600_000);
        let a = c.now_ms();
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            c.now_ms() - a >= 1000,
            "20 ms real is at least 1.2 s simulated"
        );
    }

    #[tokio::test]
    async fn a_sleeper_wakes_soon_after_the_clock_jumps_past_its_end() {
        let c = Clock::new(1.0);
        let sleeper = tokio::spawn({
            let c = c.clone();
            async move { c.sleep(Duration::from_secs(3600)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!sleeper.is_finished());
        c.advance(Duration::from_secs(3600));
        tokio::time::timeout(Duration::from_secs(2), sleeper)
            .await
            .expect("woken within a recheck")
            .unwrap();
    }
}
