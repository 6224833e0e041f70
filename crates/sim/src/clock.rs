//! Simulated time: wall-clock time sped up by a factor, so an hour of billing or a ten-minute
//! job can pass in seconds. Every delay, timestamp and rate-limit window in the sim uses it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Cheap to clone; all clones share one start.
#[derive(Clone, Debug)]
pub struct Clock(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    started: Instant,
    epoch_ms: i64,
    speed: f64,
}

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
        }))
    }

    pub fn speed(&self) -> f64 {
        self.0.speed
    }

    /// Simulated now, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        let elapsed = self.0.started.elapsed().as_secs_f64() * self.0.speed;
        self.0.epoch_ms + (elapsed * 1000.0) as i64
    }

    /// Simulated now, in whole seconds since the Unix epoch.
    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// How long a simulated duration takes in real time.
    pub fn real(&self, simulated: Duration) -> Duration {
        simulated.div_f64(self.0.speed)
    }

    /// Sleeps for a simulated duration.
    pub async fn sleep(&self, simulated: Duration) {
        tokio::time::sleep(self.real(simulated)).await;
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
        let a = c.now_ms();
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            c.now_ms() - a >= 1000,
            "20 ms real is at least 1.2 s simulated"
        );
    }
}
