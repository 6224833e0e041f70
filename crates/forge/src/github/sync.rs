//! Polling without waste: what each repository's lists of queued and in-progress runs looked
//! like last time, and which runs changed since. Only those have their jobs fetched.
//!
//! GitHub updates a run's `updated_at` when any of its jobs changes, so an unchanged run needs no
//! job request; a run that left both lists has finished or was cancelled, and the jobs the store
//! still holds as queued for it are the ones to confirm.

use std::collections::HashMap;

/// A workflow run as a run list shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSeen {
    pub id: u64,
    pub status: String,
    pub updated_at: String,
}

/// What changed in one repository since the last poll.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunChanges {
    /// New runs, and runs whose status or `updated_at` moved: fetch their jobs.
    pub fetch: Vec<u64>,
    /// Runs listed last time and not now: finished or cancelled.
    pub gone: Vec<u64>,
    /// Of `fetch`, the runs not listed before: new work.
    pub new: Vec<u64>,
}

/// One repository's runs as last seen. Serializable, so a restarted poller does not fetch the
/// jobs of every run again when the run lists have not changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunCursor {
    seen: HashMap<u64, (String, String)>,
}

impl RunCursor {
    /// Takes the runs listed now (queued and in progress together) and says what changed.
    pub fn update(&mut self, now: &[RunSeen]) -> RunChanges {
        let mut changes = RunChanges::default();
        let mut next = HashMap::with_capacity(now.len());
        for run in now {
            let state = (run.status.clone(), run.updated_at.clone());
            if self.seen.get(&run.id) != Some(&state) && !next.contains_key(&run.id) {
                changes.fetch.push(run.id);
                if !self.seen.contains_key(&run.id) {
                    changes.new.push(run.id);
                }
            }
            next.insert(run.id, state);
        }
        changes.gone = self
            .seen
            .keys()
            .filter(|id| !next.contains_key(id))
            .copied()
            .collect();
        changes.fetch.sort_unstable();
        changes.fetch.dedup();
        changes.gone.sort_unstable();
        changes.new.sort_unstable();
        changes.new.dedup();
        self.seen = next;
        changes
    }

    /// Runs currently listed as queued or in progress.
    pub fn active(&self) -> impl Iterator<Item = u64> + '_ {
        self.seen.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: u64, status: &str, updated: &str) -> RunSeen {
        RunSeen {
            id,
            status: status.into(),
            updated_at: updated.into(),
        }
    }

    #[test]
    fn only_new_and_changed_runs_are_fetched() {
        let mut c = RunCursor::default();
        let first = c.update(&[run(1, "queued", "t1"), run(2, "queued", "t1")]);
        assert_eq!(
            first,
            RunChanges {
                fetch: vec![1, 2],
                gone: vec![],
                new: vec![1, 2],
            }
        );
        // Nothing moved: nothing to fetch (the cost of an idle poll is the run lists alone).
        assert_eq!(
            c.update(&[run(1, "queued", "t1"), run(2, "queued", "t1")]),
            RunChanges::default()
        );
        // Run 1 started a job, run 3 is new, run 2 finished.
        let next = c.update(&[run(1, "in_progress", "t2"), run(3, "queued", "t2")]);
        assert_eq!(
            next,
            RunChanges {
                fetch: vec![1, 3],
                gone: vec![2],
                new: vec![3],
            }
        );
        let mut active: Vec<u64> = c.active().collect();
        active.sort_unstable();
        assert_eq!(active, [1, 3]);
    }

    #[test]
    fn a_cursor_survives_a_restart() {
        let mut c = RunCursor::default();
        c.update(&[run(1, "queued", "t1"), run(2, "in_progress", "t1")]);
        let kept: RunCursor = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(kept, c);
        let mut restarted = kept;
        let ch = restarted.update(&[run(1, "queued", "t1"), run(2, "in_progress", "t2")]);
        assert_eq!(ch.fetch, [2], "only the run that moved since");
    }

    #[test]
    fn a_run_listed_twice_is_fetched_once() {
        // A run can move from the queued list to the in-progress list between the two requests.
        let mut c = RunCursor::default();
        let ch = c.update(&[run(7, "queued", "t1"), run(7, "in_progress", "t2")]);
        assert_eq!(ch.fetch, [7]);
    }
}
