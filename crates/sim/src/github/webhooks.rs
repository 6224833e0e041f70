//! Delivers workflow_job webhooks to the configured targets, signed as GitHub signs them, one at
//! a time in order, except where the fault knobs drop, duplicate or reorder a delivery.

use super::config::{GithubConfig, WebhookFaults, WebhookTarget};
use super::jit::guid;
use crate::clock::Clock;
use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// GitHub gives a receiver 10 s to answer. The bound is on a real network wait, so it is real
/// time, not simulated.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// A delivery held back for reordering goes out after the next one, or after this long
/// (simulated) when no other comes.
const HOLD: Duration = Duration::from_secs(10);

/// One event's payload, serialized once so every target gets the same bytes.
pub struct Event {
    pub body: Vec<u8>,
    pub job: u64,
    /// The job's `queued` event (the one `lose_after_queued` lets through).
    pub queued: bool,
    /// The job's `completed` event (its last).
    pub last: bool,
}

/// `sha256=` and the hex HMAC-SHA256 of the body under the target's secret.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

struct Send {
    target: WebhookTarget,
    hook_id: usize,
    delivery: String,
    body: Arc<Vec<u8>>,
    copies: u8,
}

/// The delivery loop; ends when the fake GitHub is dropped.
pub async fn run(mut rx: UnboundedReceiver<Event>, config: Arc<Mutex<GithubConfig>>, clock: Clock) {
    let http = match reqwest::Client::builder().timeout(DELIVERY_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook delivery cannot start");
            return;
        }
    };
    let mut seed = None;
    let mut rng = StdRng::seed_from_u64(0);
    let mut silence_rng = StdRng::seed_from_u64(0);
    // Jobs whose webhooks after `queued` are lost.
    let mut silenced = std::collections::HashSet::new();
    let mut held: Vec<Option<Send>> = Vec::new();
    loop {
        let next = if held.iter().any(Option::is_some) {
            match tokio::time::timeout(clock.real(HOLD), rx.recv()).await {
                Ok(e) => e,
                Err(_) => {
                    for s in held.iter_mut().filter_map(Option::take) {
                        post(&http, s).await;
                    }
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let Some(event) = next else { break };
        let (targets, faults) = {
            let c = config.lock().unwrap_or_else(|e| e.into_inner());
            (c.webhooks.clone(), c.webhook_faults.clone())
        };
        if seed != Some(faults.seed) {
            seed = Some(faults.seed);
            rng = StdRng::seed_from_u64(faults.seed);
            silence_rng = StdRng::seed_from_u64(faults.seed ^ 0x5111_e4ce);
        }
        if event.queued && silence_rng.random_bool(probability(faults.lose_after_queued)) {
            silenced.insert(event.job);
        }
        if !event.queued && silenced.contains(&event.job) {
            if event.last {
                silenced.remove(&event.job);
            }
            continue;
        }
        held.resize_with(targets.len().max(held.len()), || None);
        let body = Arc::new(event.body);
        for (i, target) in targets.into_iter().enumerate() {
            let fate = Fate::draw(&mut rng, &faults);
            if fate.drop {
                continue;
            }
            let mut id = [0u8; 16];
            rand::rng().fill(&mut id);
            let send = Send {
                target,
                hook_id: i + 1,
                delivery: guid(id),
                body: body.clone(),
                copies: 1 + u8::from(fate.duplicate),
            };
            if fate.reorder && held[i].is_none() {
                held[i] = Some(send);
                continue;
            }
            post(&http, send).await;
            if let Some(h) = held[i].take() {
                post(&http, h).await;
            }
        }
    }
}

/// What the fault knobs do to one delivery.
struct Fate {
    drop: bool,
    duplicate: bool,
    reorder: bool,
}

impl Fate {
    /// Always three draws, so one knob's setting does not shift the others' sequence.
    fn draw(rng: &mut StdRng, f: &WebhookFaults) -> Fate {
        let mut hit = |p: f64| rng.random_bool(probability(p));
        Fate {
            drop: hit(f.drop),
            duplicate: hit(f.duplicate),
            reorder: hit(f.reorder),
        }
    }
}

/// A knob's value as a probability: clamped to 0..=1, 0 when it is not a number.
fn probability(p: f64) -> f64 {
    if p.is_finite() {
        p.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

async fn post(http: &reqwest::Client, s: Send) {
    let sig = signature(&s.target.secret, &s.body);
    for _ in 0..s.copies {
        let r = http
            .post(&s.target.url)
            .header("content-type", "application/json")
            .header("user-agent", "GitHub-Hookshot/mayfly-sim")
            .header("x-github-event", "workflow_job")
            .header("x-github-delivery", &s.delivery)
            .header("x-github-hook-id", s.hook_id.to_string())
            .header("x-hub-signature-256", &sig)
            .body(s.body.as_ref().clone())
            .send()
            .await;
        match r {
            Ok(resp) if !resp.status().is_success() => {
                tracing::debug!(url = %s.target.url, status = %resp.status(), "webhook refused");
            }
            Err(e) => tracing::debug!(url = %s.target.url, error = %e, "webhook not delivered"),
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn signatures_match_githubs_test_vector() {
        assert_eq!(
            signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
