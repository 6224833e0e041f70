//! One broadcast per pass for every open dashboard: a task follows the reconciler's views,
//! adds each to the history, reads the recent events once, renders the page's sections once,
//! and publishes the result on a watch channel that every page and event stream reads.
//!
//! So twenty open tabs cost twenty clones of an `Arc`, not twenty renders or store reads, and
//! no tab polls: a stream waits on the channel.

use super::history::{History, MINUTES as HISTORY_MINUTES};
use super::page;
use crate::view::View;
use mayfly_core::{JobStatus, Time};
use mayfly_store::{EventQuery, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::debug;

/// Recent actions shown.
pub const RECENT_EVENTS: u32 = 30;

/// One pass, rendered.
#[derive(Debug)]
pub struct Frame {
    pub sections: page::Sections,
    /// What an event stream sends: the sections as JSON.
    pub json: String,
}

/// The latest frame, for pages and streams.
#[derive(Clone)]
pub struct Hub {
    frames: watch::Receiver<Option<Arc<Frame>>>,
}

impl Hub {
    /// Starts the task that renders every pass of `views`; it ends when the views' sender (the
    /// reconciler) is gone. Call inside a tokio runtime.
    pub fn start(
        views: watch::Receiver<Option<Arc<View>>>,
        store: Store,
        store_timeout: Duration,
    ) -> Hub {
        let (send, frames) = watch::channel(None);
        tokio::spawn(follow(views, store, store_timeout, send));
        Hub { frames }
    }

    pub fn latest(&self) -> Option<Arc<Frame>> {
        self.frames.borrow().clone()
    }

    /// A receiver that sees every new frame.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Frame>>> {
        self.frames.clone()
    }
}

async fn follow(
    mut views: watch::Receiver<Option<Arc<View>>>,
    store: Store,
    store_timeout: Duration,
    send: watch::Sender<Option<Arc<Frame>>>,
) {
    let mut history = History::default();
    let mut backfilled = false;
    let mut last_minute = None;
    loop {
        let view = views.borrow_and_update().clone();
        if let Some(view) = view {
            if !backfilled {
                backfilled = true;
                restore(&mut history, &store, store_timeout, view.at).await;
            }
            let sample = history.record(&view);
            save(&store, store_timeout, &sample, &mut last_minute).await;
            let events = recent_events(&store, store_timeout).await;
            let sections = page::sections(&view, &history, &events);
            let json = serde_json::to_string(&sections).unwrap_or_default();
            let _ = send.send(Some(Arc::new(Frame { sections, json })));
        }
        if views.changed().await.is_err() {
            debug!("the reconciler is gone: the dashboard's broadcast ends");
            return;
        }
    }
}

/// How far back the samples go.
fn kept(now: Time) -> Time {
    now.minus(Duration::from_secs(60 * HISTORY_MINUTES as u64))
}

/// The samples the store keeps; with none (a first start), the jobs it has seen finish.
async fn restore(history: &mut History, store: &Store, timeout: Duration, now: Time) {
    match tokio::time::timeout(timeout, store.samples_since(kept(now))).await {
        Ok(Ok(saved)) if !saved.is_empty() => {
            history.load(saved);
            return;
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => debug!(error = %e, "cannot read the dashboard's samples"),
        Err(_) => debug!("the store gave no dashboard samples in time"),
    }
    let done = tokio::time::timeout(timeout, store.jobs_with_status(&[JobStatus::Completed]));
    match done.await {
        Ok(Ok(jobs)) => history.backfill_served(jobs.iter().map(|j| j.updated_at), now),
        Ok(Err(e)) => debug!(error = %e, "cannot read finished jobs for the dashboard"),
        Err(_) => debug!("the store gave no finished jobs in time for the dashboard"),
    }
}

/// Saves the minute's sample; once a minute, forgets those older than the plots show. A
/// failure costs the plots a point after a restart, nothing else.
async fn save(
    store: &Store,
    timeout: Duration,
    sample: &mayfly_store::Sample,
    last: &mut Option<i64>,
) {
    match tokio::time::timeout(timeout, store.save_sample(sample)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, "cannot save a dashboard sample"),
        Err(_) => debug!("the store took no dashboard sample in time"),
    }
    if *last != Some(sample.minute) {
        *last = Some(sample.minute);
        let before = kept(Time(sample.minute));
        if let Ok(Err(e)) = tokio::time::timeout(timeout, store.prune_samples(before)).await {
            debug!(error = %e, "cannot prune the dashboard samples");
        }
    }
}

/// The newest events, or none when the store cannot say in time (the page says so).
async fn recent_events(store: &Store, timeout: Duration) -> Option<Vec<mayfly_store::Event>> {
    let query = EventQuery {
        newest: true,
        ..EventQuery::first(RECENT_EVENTS)
    };
    match tokio::time::timeout(timeout, store.query_events(&query)).await {
        Ok(Ok(events)) => Some(events),
        Ok(Err(e)) => {
            debug!(error = %e, "cannot read events for the dashboard");
            None
        }
        Err(_) => None,
    }
}
