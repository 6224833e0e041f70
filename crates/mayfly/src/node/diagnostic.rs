//! The diagnostic state file: each node verb records there when it last ran, how it ended and
//! what it found (with `--debug`, the commands it ran and their output too), so the history of a
//! host's node can be read after the fact. It lives in the node directory, never in /tmp.

use super::files::{self, NodeDir, iso, now_ms};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// How many past runs the file keeps.
const HISTORY: usize = 50;

/// One verb's run, collected while it runs and written when it ends.
#[derive(Debug, Default)]
pub struct Run {
    pub verb: &'static str,
    pub findings: Vec<String>,
    /// With `--debug`: each command or call and what it answered.
    pub debug: Vec<String>,
    pub debug_on: bool,
    /// Verb-specific facts (prune's filters and what it reclaimed, doctor's checks).
    pub details: Map<String, Value>,
}

impl Run {
    pub fn new(verb: &'static str, debug_on: bool) -> Run {
        Run {
            verb,
            debug_on,
            ..Run::default()
        }
    }

    pub fn finding(&mut self, line: impl Into<String>) {
        self.findings.push(line.into());
    }

    /// A line for `--debug`: printed at once and kept for the file.
    pub fn debug(&mut self, line: impl Into<String>) {
        if self.debug_on {
            let line = line.into();
            eprintln!("debug: {line}");
            self.debug.push(line);
        }
    }

    pub fn detail(&mut self, key: &str, value: Value) {
        self.details.insert(key.to_string(), value);
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    verbs: Map<String, Value>,
    #[serde(default)]
    history: Vec<Value>,
}

/// Records the run's end in the file; a file that cannot be written is reported, never fatal.
pub fn record(dir: &NodeDir, run: &Run, result: &str) {
    let path = dir.diagnostic();
    let mut state: State = files::read(&path).ok().flatten().unwrap_or_default();
    let at = iso(now_ms());
    let mut entry = json!({
        "last_run": at,
        "result": result,
        "findings": run.findings,
    });
    if let Some(m) = entry.as_object_mut() {
        for (k, v) in &run.details {
            m.insert(k.clone(), v.clone());
        }
        if run.debug_on {
            m.insert("debug".into(), json!(run.debug));
        }
    }
    state.verbs.insert(run.verb.into(), entry);
    state
        .history
        .push(json!({ "verb": run.verb, "at": at, "result": result }));
    let excess = state.history.len().saturating_sub(HISTORY);
    state.history.drain(..excess);
    let mut out = Map::new();
    out.insert("file".into(), json!(path.display().to_string()));
    out.insert("updated_at".into(), json!(at));
    out.insert("verbs".into(), Value::Object(state.verbs));
    out.insert("history".into(), json!(state.history));
    if let Err(e) = files::write(&path, &Value::Object(out)) {
        eprintln!("mayfly: warning: cannot write the diagnostic state: {e:#}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_verb_keeps_its_last_run_and_the_history_is_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = NodeDir(tmp.path().to_path_buf());
        let mut run = Run::new("prune", false);
        run.finding("removed 2 containers");
        run.detail("reclaimed", json!({"containers": 2}));
        for _ in 0..(HISTORY + 5) {
            record(&dir, &run, "ok");
        }
        let v: Value = files::read(&dir.diagnostic()).unwrap().unwrap();
        assert_eq!(v["verbs"]["prune"]["result"], "ok");
        assert_eq!(v["verbs"]["prune"]["reclaimed"]["containers"], 2);
        assert_eq!(v["history"].as_array().unwrap().len(), HISTORY);
        assert!(v["verbs"]["prune"].get("debug").is_none());
    }
}
