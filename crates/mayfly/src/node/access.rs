//! Whether the slots' user can run the mayfly binary that the slot units and the job hooks run:
//! every directory on its path must let that user through and the file must be executable by
//! it. Installed under a home only root can enter, the hooks fail and every job with them.

use crate::service::identity;
use anyhow::Context;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `id` answers from local files or a directory service; a hung one must not hang mayfly.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A user as the kernel checks it: its id and every group it is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Who {
    pub name: String,
    pub uid: u32,
    pub groups: Vec<u32>,
}

/// The part of a path a user cannot pass: a directory it cannot enter, or the file it cannot
/// execute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub at: PathBuf,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (mode {:04o}, owner {}:{})",
            self.at.display(),
            self.mode & 0o7777,
            self.uid,
            self.gid
        )
    }
}

/// The user `name`, with its groups (`id -G`, so directory-service groups count too).
pub async fn who(name: &str) -> anyhow::Result<Who> {
    let account = identity::lookup(name).await?;
    let run = tokio::process::Command::new("id")
        .args(["-G", name])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(LOOKUP_TIMEOUT, run)
        .await
        .with_context(|| format!("`id -G {name}` did not answer within {LOOKUP_TIMEOUT:?}"))?
        .context("cannot run `id`")?;
    anyhow::ensure!(
        out.status.success(),
        "`id -G {name}` failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let mut groups: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|g| g.parse().ok())
        .collect();
    if !groups.contains(&account.gid) {
        groups.push(account.gid);
    }
    Ok(Who {
        name: account.name,
        uid: account.uid,
        groups,
    })
}

/// The first step of `path` that `who` cannot pass (`None`: it can run the file). Reads the
/// mode and owner of each directory from the root down, then of the file.
pub fn blocked(who: &Who, path: &Path) -> std::io::Result<Option<Blocked>> {
    let path = path.canonicalize()?;
    let mut steps: Vec<&Path> = path.ancestors().skip(1).collect();
    steps.reverse();
    for dir in steps {
        let meta = std::fs::metadata(dir)?;
        if !allowed(who, meta.mode(), meta.uid(), meta.gid()) {
            return Ok(Some(step(dir, &meta)));
        }
    }
    let meta = std::fs::metadata(&path)?;
    let runnable = meta.is_file() && allowed(who, meta.mode(), meta.uid(), meta.gid());
    Ok((!runnable).then(|| step(&path, &meta)))
}

fn step(at: &Path, meta: &std::fs::Metadata) -> Blocked {
    Blocked {
        at: at.to_path_buf(),
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
    }
}

/// Whether `who` has the execute (search) permission on an inode of `mode` owned by
/// `uid:gid`, as the kernel decides it: the owner's bits for the owner, else the group's for a
/// member, else the others'. Root passes a directory always and a file with any execute bit.
fn allowed(who: &Who, mode: u32, uid: u32, gid: u32) -> bool {
    let any_x = mode & 0o111 != 0;
    if who.uid == 0 {
        return any_x || mode & 0o170000 == 0o040000;
    }
    if who.uid == uid {
        mode & 0o100 != 0
    } else if who.groups.contains(&gid) {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

/// What to tell the operator when `who` cannot run `mayfly`.
pub fn problem(who: &Who, mayfly: &Path, blocked: &Blocked) -> String {
    format!(
        "the slots' user {} cannot run {}: blocked at {blocked}",
        who.name,
        mayfly.display()
    )
}

pub const HINT: &str = "install mayfly where the slots' user can run it (install -m 0755 mayfly \
                        /usr/local/bin/) and run `mayfly node register` with that binary";

#[cfg(test)]
mod tests {
    use super::*;

    fn nobody() -> Who {
        Who {
            name: "nobody".into(),
            uid: 65534,
            groups: vec![65534, 100],
        }
    }

    #[test]
    fn the_owner_group_or_other_bits_decide_as_the_kernel_does() {
        let who = nobody();
        // Root's home: only root enters.
        assert!(!allowed(&who, 0o040700, 0, 0));
        // Others may search, or the user's own group may.
        assert!(allowed(&who, 0o040755, 0, 0));
        assert!(allowed(&who, 0o040750, 0, 100));
        assert!(!allowed(&who, 0o040750, 0, 5));
        // The owner's bits count for the owner, even when others have more.
        assert!(!allowed(&who, 0o040075, 65534, 100));
        // A file: the same bits, execute.
        assert!(allowed(&who, 0o100755, 0, 0));
        assert!(!allowed(&who, 0o100644, 0, 0));
        // Root enters any directory, and runs a file with any execute bit.
        let root = Who {
            name: "root".into(),
            uid: 0,
            groups: vec![0],
        };
        assert!(allowed(&root, 0o040000, 5, 5));
        assert!(allowed(&root, 0o100700, 5, 5));
        assert!(!allowed(&root, 0o100644, 5, 5));
    }

    /// On the real file system, as this process's user: a binary in a directory whose execute
    /// bit is taken away is blocked at that directory; once given back, it runs.
    #[test]
    fn a_directory_on_the_path_that_keeps_the_user_out_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("bin");
        std::fs::create_dir(&inner).unwrap();
        let bin = inner.join("mayfly");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let me = std::fs::metadata(dir.path()).unwrap();
        // Someone who is neither the owner nor in the group: the others' bits decide.
        let stranger = Who {
            name: "stranger".into(),
            uid: me.uid().wrapping_add(4242),
            groups: vec![me.gid().wrapping_add(4242)],
        };
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o700)).unwrap();
        let found = blocked(&stranger, &bin).unwrap().expect("blocked");
        assert_eq!(found.at, inner.canonicalize().unwrap());
        assert!(found.to_string().contains("mode 0700"), "{found}");
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o755)).unwrap();
        // The temporary directory itself may keep others out; then it is named instead.
        match blocked(&stranger, &bin).unwrap() {
            None => {}
            Some(b) => assert!(inner.starts_with(&b.at), "{b}"),
        }
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o744)).unwrap();
        let own = Who {
            name: "me".into(),
            uid: me.uid(),
            groups: vec![me.gid()],
        };
        assert_eq!(blocked(&own, &bin).unwrap(), None, "the owner's x bit");
    }
}
