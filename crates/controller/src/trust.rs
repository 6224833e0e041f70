//! Whether a forge's webhooks can be relied on, learned from evidence, the same for every
//! forge: its scopes (GitHub repositories, GitLab projects) are polled every `intervals.poll`
//! until the webhooks prove they arrive, then only at the backstop. Deliveries of one forge reach
//! mayfly by one way (the forge's hook service to this endpoint), so the evidence is pooled over
//! its scopes: a steady trickle of jobs over many scopes earns trust as fast as a burst in one.
//!
//! Evidence for: a new job (or run) whose webhook was in the store before a poll saw it, and a
//! webhook that found its predecessor in the store ([`crate::demand::Sequence`]). Evidence
//! against: a poll, a confirmation or a reconcile pass that finds the store behind the forge,
//! or a webhook that finds its predecessor missing. Silence proves nothing: a scope no webhook
//! came from stays on every poll (its hook may not exist).

use mayfly_core::Time;
use mayfly_store::Store;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Proofs of delivery in a row before webhooks are trusted: a new job whose first webhook
/// arrived before a poll saw it, and each start or end webhook that found its predecessor in
/// the store. A job whose webhooks all arrive gives about three. With a share `p` of deliveries
/// lost, a job shows no gap (its first webhook arrived, and its start too unless its end was
/// lost as well) with probability `(1 - p)(1 - p + p²)`, 0.55 at 30 % lost, and gives about 2.7
/// proofs: thirty in a row take eleven such jobs, about 0.15 %. Webhooks that lose a noticeable
/// share do not earn the backstop, and lose it at the first gap found.
pub const TRUST_AFTER: u32 = 30;

/// What one poll of a scope saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// Nothing to judge the webhooks by: nothing changed, or the poll brought news first while
    /// it was still fresh.
    Quiet,
    /// Jobs changed, and the webhooks had brought every change already; this many new jobs (or
    /// runs) among them.
    Heard(u32),
    /// The poll found news no webhook had brought yet, still fresh: not a loss, not a proof.
    Unproven,
    /// The poll found news no webhook had brought in time.
    Missed,
}

/// What [`Trust::learn`] concluded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Learned {
    /// The store was behind the forge, and the last plan with it: plan again at once.
    pub urgent: bool,
    /// The webhooks were trusted (some proofs counted) and are no longer.
    pub lossy: bool,
}

/// What is known of one scope's webhooks.
#[derive(Clone, Debug, Default)]
struct Scope {
    /// A webhook of this scope has arrived before a poll saw its job: its hook exists.
    heard: bool,
    /// When it was last polled.
    polled: Option<Time>,
    /// Whether the log has said it is polled at the backstop (said once each time it becomes so).
    announced: bool,
}

/// One forge's trust in its webhooks, over the scopes it polls.
#[derive(Clone, Debug)]
pub struct Trust {
    /// How often a trusted scope is polled; zero polls every scope at every poll.
    backstop: Duration,
    scopes: HashMap<String, Scope>,
    /// Proofs of delivery in a row, over every scope.
    clean: u32,
    /// What the store holds of it (read once, by [`Trust::restore`]; `None` before).
    saved: Option<Saved>,
}

/// What a restart keeps of the trust: the proofs in a row and the scopes heard from. Not when
/// each scope was polled: the first poll after a start covers every scope, so jobs whose
/// webhooks were lost while no controller listened are found at once (and take the trust away).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Saved {
    clean: u32,
    heard: Vec<String>,
}

impl Trust {
    pub fn new(scopes: impl IntoIterator<Item = String>, backstop: Duration) -> Trust {
        Trust {
            backstop,
            scopes: scopes.into_iter().map(|s| (s, Scope::default())).collect(),
            clean: 0,
            saved: None,
        }
    }

    fn to_saved(&self) -> Saved {
        let mut heard: Vec<String> = self
            .scopes
            .iter()
            .filter(|(_, s)| s.heard)
            .map(|(k, _)| k.clone())
            .collect();
        heard.sort();
        Saved {
            clean: self.clean,
            heard,
        }
    }

    /// Reads what an earlier process learned, saved under `name` in the store's cursors; once,
    /// before the first poll. Scopes no longer served are not brought back. A store that cannot
    /// be read, or a value that cannot be, starts the learning afresh.
    pub async fn restore(&mut self, store: &Store, name: &str) {
        if self.saved.is_some() {
            return;
        }
        let saved = match store.cursor(name).await {
            Ok(Some(text)) => match serde_json::from_str::<Saved>(&text) {
                Ok(saved) => saved,
                Err(e) => {
                    tracing::warn!(cursor = name, error = %e, "unreadable webhook trust: learning afresh");
                    Saved::default()
                }
            },
            Ok(None) => Saved::default(),
            Err(e) => {
                tracing::warn!(cursor = name, error = %e, "cannot read the webhook trust: learning afresh");
                Saved::default()
            }
        };
        self.clean = saved.clean;
        for scope in &saved.heard {
            if let Some(s) = self.scopes.get_mut(scope) {
                s.heard = true;
            }
        }
        self.saved = Some(self.to_saved());
    }

    /// Saves the trust under `name` when it changed since it was last saved or read: a restart
    /// (a deploy, a failover) then does not learn it again job by job.
    pub async fn persist(&mut self, store: &Store, name: &str, now: Time) {
        let current = self.to_saved();
        if self.saved.as_ref() == Some(&current) {
            return;
        }
        let Ok(text) = serde_json::to_string(&current) else {
            return;
        };
        match store.save_cursor(name, &text, now).await {
            Ok(()) => self.saved = Some(current),
            Err(e) => {
                tracing::debug!(error = %e, "webhook trust not saved: saved at the next pass")
            }
        }
    }

    pub fn set_backstop(&mut self, every: Duration) {
        self.backstop = every;
    }

    /// Whether `scope`'s webhooks are trusted (polled at the backstop only).
    pub fn trusted(&self, scope: &str) -> bool {
        self.clean >= TRUST_AFTER && self.heard(scope)
    }

    /// Whether a webhook of `scope` has arrived before a poll saw its job.
    pub fn heard(&self, scope: &str) -> bool {
        self.scopes.get(scope).is_some_and(|s| s.heard)
    }

    /// Whether some trusted scope is due for its backstop poll at `now`: the caller then reads
    /// which scopes the store holds queued jobs of, for [`Trust::due`].
    pub fn backstop_due(&self, now: Time) -> bool {
        self.scopes.iter().any(|(key, s)| {
            self.trusted(key) && s.polled.is_some_and(|t| now.since(t) >= self.backstop)
        })
    }

    /// The scopes of `scopes` this poll covers: every one, except a scope whose webhooks are
    /// trusted, which is polled once per backstop, at a moment the store holds none of its
    /// jobs as queued (`queued`: the scopes it does) — at most half a backstop later. With
    /// webhooks flowing, the forge's queue is then as empty as it was at the last backstop, and
    /// a list with an ETag answers 304, free; polled while a job the webhooks announced waits,
    /// it would cost a request twice, to show that job and to show it gone. A job whose first
    /// webhook was lost is in the answer either way. Logs when a scope starts being trusted.
    pub fn due<'a>(
        &mut self,
        now: Time,
        scopes: impl IntoIterator<Item = &'a str>,
        queued: &HashSet<String>,
    ) -> HashSet<String> {
        let mut due = HashSet::new();
        for key in scopes {
            let trusted = self.trusted(key);
            let scope = self.scopes.entry(key.to_string()).or_default();
            if trusted != scope.announced {
                scope.announced = trusted;
                if trusted {
                    tracing::info!(
                        scope = %crate::escape::Text(key),
                        "webhooks arrive: polling at the backstop"
                    );
                }
            }
            if trusted && let Some(t) = scope.polled {
                let wait = if queued.contains(key) {
                    self.backstop + self.backstop / 2
                } else {
                    self.backstop
                };
                if now.since(t) < wait {
                    continue;
                }
            }
            scope.polled = Some(now);
            due.insert(key.to_string());
        }
        due
    }

    /// Evidence that `scope` loses webhooks: every scope is polled at every poll again.
    /// True if that took trust (proofs) away.
    pub fn lost(&mut self, scope: &str) -> bool {
        let had = std::mem::take(&mut self.clean) > 0;
        if had {
            tracing::info!(
                scope = %crate::escape::Text(scope),
                "webhooks are being lost: polling closely again"
            );
        }
        had
    }

    /// What a poll (or the webhooks' own order) says of `scope`'s webhooks: activity they had
    /// all brought counts for them, news they had not brought against.
    pub fn learn(&mut self, scope: &str, activity: Activity, now: Time) -> Learned {
        match activity {
            Activity::Missed => Learned {
                urgent: true,
                lossy: self.lost(scope),
            },
            Activity::Heard(0) | Activity::Quiet => Learned::default(),
            Activity::Heard(n) => {
                let was = self.trusted(scope);
                self.scopes.entry(scope.to_string()).or_default().heard = true;
                self.clean = self.clean.saturating_add(n);
                // Newly trusted: its backstop counts from now.
                if !was
                    && self.trusted(scope)
                    && let Some(s) = self.scopes.get_mut(scope)
                {
                    s.polled = Some(now);
                }
                Learned::default()
            }
            Activity::Unproven => {
                self.clean = 0;
                Learned::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Time {
        Time::from_secs(secs)
    }

    #[test]
    fn thirty_proofs_and_a_webhook_of_its_own_trust_a_scope_and_a_miss_takes_it_away() {
        let mut trust = Trust::new(["a".to_string(), "b".to_string()], Duration::from_secs(300));
        let none = HashSet::new();
        assert_eq!(trust.due(t(0), ["a", "b"], &none).len(), 2);
        trust.learn("a", Activity::Heard(29), t(1));
        assert!(!trust.trusted("a"), "29 proofs");
        trust.learn("a", Activity::Heard(1), t(2));
        assert!(trust.trusted("a"));
        assert!(!trust.trusted("b"), "no webhook of its own yet");
        assert_eq!(
            trust.due(t(10), ["a", "b"], &none),
            HashSet::from(["b".to_string()]),
            "a waits for its backstop"
        );
        assert!(!trust.backstop_due(t(301)));
        assert!(trust.backstop_due(t(302)));
        let queued = HashSet::from(["a".to_string()]);
        assert!(
            !trust.due(t(302), ["a"], &queued).contains("a"),
            "a job waits"
        );
        assert!(
            trust.due(t(452), ["a"], &queued).contains("a"),
            "half a backstop more"
        );
        let learned = trust.learn("b", Activity::Missed, t(460));
        assert_eq!(
            learned,
            Learned {
                urgent: true,
                lossy: true
            }
        );
        assert!(!trust.trusted("a"), "pooled: a loses its trust too");
        assert_eq!(trust.due(t(461), ["a", "b"], &none).len(), 2);
        // Fresh news the poll brought first proves nothing either way, but breaks the row.
        trust.learn("a", Activity::Heard(29), t(470));
        trust.learn("a", Activity::Unproven, t(471));
        trust.learn("a", Activity::Heard(1), t(472));
        assert!(!trust.trusted("a"));
    }
}
