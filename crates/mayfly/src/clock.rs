//! The simulator's sped-up time as mayfly's `Clock`, so the demo and the tests run the daemon's
//! deadlines, intervals and billing on the same time as the fakes.

use mayfly_core::{Clock, Time};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// `mayfly_sim`'s clock seen through `mayfly_core::Clock`.
#[derive(Clone, Debug)]
pub struct SimClock(pub mayfly_sim::clock::Clock);

impl Clock for SimClock {
    fn now(&self) -> Time {
        Time::from_millis(self.0.now_ms())
    }

    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let clock = self.0.clone();
        Box::pin(async move { clock.sleep(d).await })
    }
}
