//! Delivers Job Hooks as GitLab does: one POST per event and hook, in order, with
//! `X-Gitlab-Event`, `X-Gitlab-Token`, an `Idempotency-Key` that stays the same when a delivery
//! is repeated, and per-attempt `X-Gitlab-Webhook-UUID`. Hooks that keep failing are disabled
//! for a while, as GitLab does; the fault knobs drop, duplicate or delay deliveries.

use super::config::{GitlabConfig, WebhookFaults};
use super::tokens::uuid;
use crate::clock::Clock;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// GitLab gives a receiver 10 s (`gitlab.webhook_timeout`); a real network wait, so real time.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Failures in a row that disable a hook for a while, and for good.
const TEMPORARY_AFTER: u32 = 4;
const PERMANENT_AFTER: u32 = 40;
const FIRST_BACKOFF: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(86_400);

/// Where one event goes: a configured target (no hook id) or a hook made through the API.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub hook_id: Option<u64>,
    pub url: String,
    pub token: String,
}

/// One Job Hook event, serialized once so every target gets the same bytes.
pub struct Event {
    pub body: Vec<u8>,
    pub targets: Vec<Target>,
    /// `X-Gitlab-Instance`.
    pub instance: String,
    /// The fault knobs as they were when the event happened.
    pub faults: WebhookFaults,
}

/// Failures in a row and until when the hook rests.
#[derive(Default)]
struct Health {
    failures: u32,
    disabled_until_ms: Option<i64>,
    backoff: Option<Duration>,
}

struct Delivery {
    target: Target,
    body: Arc<Vec<u8>>,
    idempotency_key: String,
    event_uuid: String,
    instance: String,
    copies: u8,
}

/// The delivery loop; ends when the fake is dropped.
pub async fn run(mut rx: UnboundedReceiver<Event>, config: Arc<Mutex<GitlabConfig>>, clock: Clock) {
    let http = match reqwest::Client::builder().timeout(DELIVERY_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook delivery cannot start");
            return;
        }
    };
    let health: Arc<Mutex<HashMap<Target, Health>>> = Arc::default();
    let mut seed = None;
    let mut rng = StdRng::seed_from_u64(0);
    while let Some(event) = rx.recv().await {
        let faults = event.faults;
        let auto_disable = config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .webhook_auto_disable;
        if seed != Some(faults.seed) {
            seed = Some(faults.seed);
            rng = StdRng::seed_from_u64(faults.seed);
        }
        let body = Arc::new(event.body);
        let event_uuid = uuid();
        for target in event.targets {
            let fate = Fate::draw(&mut rng, &faults);
            if fate.drop {
                continue;
            }
            let d = Delivery {
                target,
                body: body.clone(),
                idempotency_key: uuid(),
                event_uuid: event_uuid.clone(),
                instance: event.instance.clone(),
                copies: 1 + u8::from(fate.duplicate),
            };
            if fate.delay {
                let (http, clock, health) = (http.clone(), clock.clone(), health.clone());
                let wait = Duration::from_secs_f64(faults.delay_secs.max(0.0));
                tokio::spawn(async move {
                    clock.sleep(wait).await;
                    deliver(&http, &clock, &health, auto_disable, d).await;
                });
                continue;
            }
            deliver(&http, &clock, &health, auto_disable, d).await;
        }
    }
}

/// What the fault knobs do to one delivery.
struct Fate {
    drop: bool,
    duplicate: bool,
    delay: bool,
}

impl Fate {
    /// Always three draws, so one knob's setting does not shift the others' sequence.
    fn draw(rng: &mut StdRng, f: &WebhookFaults) -> Fate {
        let mut hit = |p: f64| {
            rng.random_bool(if p.is_finite() {
                p.clamp(0.0, 1.0)
            } else {
                0.0
            })
        };
        Fate {
            drop: hit(f.drop),
            duplicate: hit(f.duplicate),
            delay: hit(f.delay),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn deliver(
    http: &reqwest::Client,
    clock: &Clock,
    health: &Mutex<HashMap<Target, Health>>,
    auto_disable: bool,
    d: Delivery,
) {
    let now = clock.now_ms();
    if auto_disable {
        let h = lock(health);
        if let Some(state) = h.get(&d.target)
            && (state.failures >= PERMANENT_AFTER
                || state.disabled_until_ms.is_some_and(|u| u > now))
        {
            tracing::debug!(url = %d.target.url, "hook disabled: delivery skipped");
            return;
        }
    }
    for _ in 0..d.copies {
        let mut request = http
            .post(&d.target.url)
            .header("content-type", "application/json")
            .header("user-agent", "GitLab/18.6.0-sim")
            .header("x-gitlab-event", "Job Hook")
            .header("x-gitlab-instance", &d.instance)
            .header("x-gitlab-webhook-uuid", uuid())
            .header("x-gitlab-event-uuid", &d.event_uuid)
            .header("idempotency-key", &d.idempotency_key)
            .body(d.body.as_ref().clone());
        if !d.target.token.is_empty() {
            request = request.header("x-gitlab-token", &d.target.token);
        }
        let ok = match request.send().await {
            Ok(r) if r.status().is_success() => true,
            Ok(r) => {
                tracing::debug!(url = %d.target.url, status = %r.status(), "hook refused");
                false
            }
            Err(e) => {
                tracing::debug!(url = %d.target.url, error = %e, "hook not delivered");
                false
            }
        };
        let mut h = lock(health);
        let state = h.entry(d.target.clone()).or_default();
        if ok {
            *state = Health::default();
        } else {
            state.failures += 1;
            if auto_disable && state.failures >= TEMPORARY_AFTER {
                let backoff = state
                    .backoff
                    .map_or(FIRST_BACKOFF, |b| (b * 2).min(MAX_BACKOFF));
                state.backoff = Some(backoff);
                state.disabled_until_ms = Some(clock.now_ms() + backoff.as_millis() as i64);
            }
        }
    }
}
