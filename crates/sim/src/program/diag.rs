//! What the listener leaves behind for a person (and `mayfly node doctor`) to read: its console
//! lines on stdout, and `_diag/Runner_<time>-utc.log` and `_diag/Worker_<time>-utc.log` files.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `2026-05-01 12:00:00Z`, the listener's console time stamp.
pub fn stamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M:%SZ")
        .to_string()
}

/// `20260501-120000`, the time in the listener's log file names.
fn file_stamp() -> String {
    jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string()
}

/// One `_diag` log file; writing is best effort, as a full disk must not stop the runner.
pub struct Diag {
    file: Option<File>,
    pub path: PathBuf,
}

impl Diag {
    /// `_diag/<kind>_<time>-utc.log` under `root`.
    pub fn open(root: &Path, kind: &str) -> Diag {
        let dir = root.join("_diag");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{kind}_{}-utc.log", file_stamp()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok();
        Diag { file, path }
    }

    pub fn info(&mut self, component: &str, line: &str) {
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "[{} INFO {component}] {line}", stamp());
        }
    }

    pub fn error(&mut self, component: &str, line: &str) {
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "[{} ERR  {component}] {line}", stamp());
        }
    }
}

/// A console line with the listener's time stamp.
pub fn console(line: &str) {
    println!("{}: {line}", stamp());
}
