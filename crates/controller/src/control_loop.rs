//! The control loop: passes as the one pacing rule (`mayfly_core::Pacer`) schedules them,
//! woken by demand (`demand::Wake`), obeying the leader lease, cut short by a shutdown. Generic
//! over its clock (`mayfly_core::Clock`): the daemon runs it on the wall clock, the tests on a
//! paused one.

use crate::leader::Leadership;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// A follower looks at its leadership at least this often (a change is also notified).
const FOLLOW_CHECK: Duration = Duration::from_secs(1);

/// What the loop obeys beside its pace: leadership, and how a shutdown cuts a pass.
pub struct Lead {
    /// `None`: no election, this process acts alone.
    pub leadership: Option<watch::Receiver<Leadership>>,
    /// Set on a shutdown: the pass in flight starts no more steps.
    pub halt: crate::reconcile::Halt,
    /// How long the pass in flight may go on after a shutdown signal.
    pub grace: Duration,
}

/// A pass at once (once leading, under an election), then passes as `pacer` schedules them
/// (queued jobs, finished jobs, the last pass's deadlines), until `shutdown` resolves. Events
/// during a pass are served by the next one, which `coalesce` keeps apart from the last.
///
/// A shutdown signal during a pass halts it: steps not yet started are skipped, those in flight
/// get `grace` to reach a safe point, and then the pass is dropped (a create whose intent is
/// written stays pending, and the next pass, of this process or another, carries it out).
pub async fn run(
    wake: &crate::demand::Wake,
    mut pacer: mayfly_core::Pacer,
    clock: &dyn mayfly_core::Clock,
    mut lead: Lead,
    shutdown: impl Future<Output = anyhow::Result<&'static str>>,
    mut step: impl AsyncFnMut(Step) -> Option<mayfly_core::Ended>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let mut trigger = "start";
    loop {
        if let Some(l) = lead.leadership.as_mut()
            && !l.borrow().leads_now()
        {
            tokio::select! {
                changed = l.changed() => {
                    if changed.is_err() {
                        // The election is gone: nothing will change; only a signal ends this.
                        clock.sleep(FOLLOW_CHECK).await;
                    }
                }
                () = clock.sleep(FOLLOW_CHECK) => {}
                signal = &mut shutdown => {
                    let signal = signal?;
                    info!(signal, "stopping");
                    return Ok(());
                }
            }
            if l.borrow().leads_now() {
                info!("leading: reconcile passes start");
                pacer.queued(clock.now());
                trigger = "leading";
            }
            continue;
        }
        let now = clock.now();
        if pacer.is_due(now) {
            debug!(trigger, "reconcile pass");
            pacer.started(now);
            let ended = {
                let pass = step(Step::Pass(trigger));
                tokio::pin!(pass);
                tokio::select! {
                    ended = &mut pass => ended,
                    signal = &mut shutdown => {
                        lead.halt.halt();
                        let signal = signal?;
                        info!(signal, grace = ?lead.grace, "stopping: the pass in flight starts no more steps");
                        if tokio::time::timeout(lead.grace, pass).await.is_err() {
                            warn!(
                                grace = ?lead.grace,
                                "the pass in flight was cut after the grace: creates it recorded \
                                 stay pending for the next pass"
                            );
                        }
                        return Ok(());
                    }
                }
            };
            if let Some(ended) = ended {
                pacer.ended(clock.now(), ended);
            }
            trigger = "timer";
            continue;
        }
        tokio::select! {
            () = clock.sleep(pacer.wait(now)) => {}
            () = wake.now.notified() => {
                pacer.queued(clock.now());
                trigger = "demand";
            }
            () = wake.soon.notified() => {
                pacer.finished(clock.now());
                trigger = "finished";
            }
            () = wake.started.notified() => {
                if let Some(ended) = step(Step::Recheck).await {
                    pacer.ended(clock.now(), ended);
                }
            }
            // Leadership lost while waiting: the loop follows.
            Ok(()) = async {
                match lead.leadership.as_mut() {
                    Some(l) => l.changed().await,
                    None => std::future::pending().await,
                }
            } => {}
            signal = &mut shutdown => {
                // Evaluated outside the macro: a disabled log level would skip the `?`.
                let signal = signal?;
                info!(signal, "stopping");
                return Ok(());
            }
        }
    }
}

/// What the loop asks of the reconciler: a pass, or a check of the last plan on newer news.
pub enum Step {
    Pass(&'static str),
    Recheck,
}

#[cfg(test)]
mod tests {
    use super::*;
    use mayfly_core::{Clock, Time};
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Tokio's clock as mayfly's: paused in these tests, so time moves only when every task
    /// waits, and a minute of pacing takes no time.
    struct Paused(tokio::time::Instant);

    impl Paused {
        fn new() -> Paused {
            Paused(tokio::time::Instant::now())
        }
    }

    impl Clock for Paused {
        fn now(&self) -> Time {
            Time::from_millis(1_000_000 + self.0.elapsed().as_millis() as i64)
        }

        fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
            Box::pin(tokio::time::sleep(d))
        }
    }

    const PACE: mayfly_core::Pace = mayfly_core::Pace {
        unsettled: Duration::from_millis(5),
        resync: Duration::from_millis(5),
        settle: None,
        coalesce: Duration::ZERO,
    };

    fn alone() -> Lead {
        Lead {
            leadership: None,
            halt: crate::reconcile::Halt::default(),
            grace: Duration::from_secs(1),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn loop_ends_when_shutdown_resolves() {
        let clock = Paused::new();
        let wake = crate::demand::Wake::default();
        let done = run(
            &wake,
            mayfly_core::Pacer::new(PACE),
            &clock,
            alone(),
            async { Ok("test") },
            async |_| Some(mayfly_core::Ended::default()),
        );
        tokio::time::timeout(Duration::from_secs(5), done)
            .await
            .expect("loop stopped")
            .expect("clean stop");
    }

    fn leading(yes: bool) -> Leadership {
        Leadership {
            leading: yes,
            epoch: 1,
            holder: Some("me".into()),
            since: None,
            sure_until: yes.then(|| tokio::time::Instant::now() + Duration::from_secs(60)),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_runs_no_pass_until_it_leads_and_none_after_it_lost_the_lease() {
        let clock = Paused::new();
        let wake = crate::demand::Wake::default();
        let (publish, leadership) = watch::channel(leading(false));
        let passes = std::sync::atomic::AtomicU32::new(0);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let looping = run(
            &wake,
            mayfly_core::Pacer::new(PACE),
            &clock,
            Lead {
                leadership: Some(leadership),
                ..alone()
            },
            async move {
                let _ = stopped.await;
                Ok("test")
            },
            async |_| {
                passes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Some(mayfly_core::Ended::default())
            },
        );
        let count = || passes.load(std::sync::atomic::Ordering::SeqCst);
        let drive = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(count(), 0, "a follower ran a pass");
            publish.send_replace(leading(true));
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(count() > 0, "the new leader ran no pass");
            // Lost: a lapsed lease counts as lost even before the election says so.
            publish.send_replace(Leadership {
                sure_until: Some(tokio::time::Instant::now()),
                ..leading(true)
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            let after = count();
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(count(), after, "passes ran after the lease was lost");
            let _ = stop.send(());
        };
        let (done, ()) = tokio::join!(looping, drive);
        done.expect("clean stop");
    }

    #[tokio::test(start_paused = true)]
    async fn a_signal_during_a_pass_halts_it_and_waits_the_grace_at_most() {
        let clock = Paused::new();
        let wake = crate::demand::Wake::default();
        let lead = alone();
        let halt = lead.halt.clone();
        let grace = Duration::from_millis(300);
        let started = tokio::time::Instant::now();
        let done = run(
            &wake,
            mayfly_core::Pacer::new(PACE),
            &clock,
            Lead { grace, ..lead },
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok("test")
            },
            // A pass whose API calls never answer.
            async |_| std::future::pending().await,
        );
        tokio::time::timeout(Duration::from_secs(5), done)
            .await
            .expect("the loop ended")
            .expect("clean stop");
        let took = started.elapsed();
        assert!(halt.halted(), "the pass was not told to stop");
        assert!(
            took >= grace + Duration::from_millis(100) && took < grace + Duration::from_millis(150),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_signal_handler_is_an_error() {
        let clock = Paused::new();
        let r = run(
            &crate::demand::Wake::default(),
            mayfly_core::Pacer::new(PACE),
            &clock,
            alone(),
            async { Err(anyhow::anyhow!("no signals")) },
            async |_| Some(mayfly_core::Ended::default()),
        )
        .await;
        assert!(r.is_err());
    }

    /// The daemon's pace in virtual time: the first pass at once; a queued job's pass at once;
    /// a finished job's `settle` later; with nothing happening, one every `resync`; a plan's
    /// deadline brings its pass when it comes.
    #[tokio::test(start_paused = true)]
    async fn passes_come_as_the_pacing_rule_says() {
        let pace = mayfly_core::Pace {
            unsettled: Duration::from_secs(15),
            resync: Duration::from_secs(300),
            settle: Some(Duration::from_secs(20)),
            coalesce: Duration::from_millis(500),
        };
        let clock = Paused::new();
        let start = clock.now();
        let wake = crate::demand::Wake::default();
        let passes = AtomicU32::new(0);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // The third pass's plan has a deadline 40 s after it.
        let deadline = std::sync::Mutex::new(None::<Time>);
        let looping = run(
            &wake,
            mayfly_core::Pacer::new(pace),
            &clock,
            alone(),
            async move {
                let _ = stopped.await;
                Ok("test")
            },
            async |_| {
                let n = passes.fetch_add(1, Ordering::SeqCst) + 1;
                let next_check = (n == 3).then(|| {
                    let at = clock.now().plus(Duration::from_secs(40));
                    *deadline.lock().unwrap() = Some(at);
                    at
                });
                Some(mayfly_core::Ended {
                    next_check,
                    ..mayfly_core::Ended::default()
                })
            },
        );
        let count = || passes.load(Ordering::SeqCst);
        let at = |secs: u64| {
            tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_secs(secs))
        };
        let drive = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(count(), 1, "the first pass at once");
            at(10).await;
            assert_eq!(count(), 1, "nothing happened: no pass before resync");
            wake.now.notify_one();
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(count(), 2, "a queued job's pass at once");
            wake.soon.notify_one();
            at(19).await;
            assert_eq!(count(), 2, "a finished job's pass waits for settle");
            at(2).await;
            assert_eq!(count(), 3, "and comes after settle");
            at(39).await;
            assert_eq!(count(), 3, "before the plan's deadline");
            at(2).await;
            assert_eq!(count(), 4, "the plan's deadline brings a pass");
            at(298).await;
            assert_eq!(count(), 4, "no event: nothing before resync");
            at(3).await;
            assert_eq!(count(), 5, "resync");
            let _ = stop.send(());
        };
        let (done, ()) = tokio::join!(looping, drive);
        done.expect("clean stop");
        assert!(deadline.lock().unwrap().is_some_and(|t| t > start));
    }
}
