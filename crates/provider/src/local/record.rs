//! The record every local instance keeps in its root: whose it is (controller, pool), when it
//! was made, where it runs, and the process or container that runs it. A restarted mayfly finds
//! its instances, and their processes, from these files alone.

use super::process::Proc;
use mayfly_core::Placement;
use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::path::Path;

/// The record's file name inside an instance's root.
pub const FILE: &str = ".mayfly-instance.json";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub controller: String,
    pub pool: String,
    pub created_ms: i64,
    pub placement: Placement,
    /// The runner process as started; `None` until it is, or in a container.
    #[serde(default)]
    pub process: Option<Proc>,
    /// The container's name, in Docker mode.
    #[serde(default)]
    pub container: Option<String>,
}

/// Writes the record whole or not at all: a temporary file in the root, renamed over it.
pub fn write(root: &Path, record: &Record) -> io::Result<()> {
    let text = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
    let tmp = root.join(format!("{FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, root.join(FILE))
}

/// The record of the root, `None` when there is none (not an instance, or being removed).
pub fn read(root: &Path) -> io::Result<Option<Record>> {
    match std::fs::read(root.join(FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let r = Record {
            name: "c-p-1-1".into(),
            controller: "c".into(),
            pool: "p".into(),
            created_ms: 42,
            placement: Placement {
                machine_type: "process".into(),
                location: "local".into(),
                image: "x86:system:ubuntu-24.04".parse().unwrap(),
            },
            process: Some(Proc {
                pid: 7,
                start_time: 9,
            }),
            container: None,
        };
        write(dir.path(), &r).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(r));
        std::fs::write(dir.path().join(FILE), "{").unwrap();
        assert!(read(dir.path()).is_err());
    }
}
