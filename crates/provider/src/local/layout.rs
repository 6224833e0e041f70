//! Runner roots: each runner on a host needs its own, because the listener writes its JIT
//! config's files (`.runner`, `.credentials`, …) into the directory it runs from, and writes
//! `run-helper.sh`, `_diag/` and `_work/` there too.
//!
//! A root is made from the installed runner without copying its few hundred megabytes: the
//! top-level files (scripts the runner rewrites, like `run-helper.sh`) are copied, and the files
//! under its directories (`bin/`, `externals/`) are hard-linked, which costs an inode each. A
//! symbolic link would not do: the listener finds its root from its own executable's real path.
//! Where hard links cannot be made (another file system), files are copied.

use std::io;
use std::path::Path;

/// What a runner leaves in its root and a fresh root must not inherit.
pub const RUNNER_STATE: [&str; 9] = [
    ".runner",
    ".credentials",
    ".credentials_rsaparams",
    ".service",
    "_diag",
    "_work",
    "_update",
    "_tool",
    "run-helper.sh",
];

/// Makes `root` (which must not exist) a runner root of the runner installed in `runner_dir`.
pub fn prepare(runner_dir: &Path, root: &Path) -> io::Result<()> {
    std::fs::create_dir(root)?;
    for entry in std::fs::read_dir(runner_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if RUNNER_STATE.iter().any(|s| name == *s) {
            continue;
        }
        let from = entry.path();
        let to = root.join(&name);
        let kind = entry.file_type()?;
        if kind.is_dir() {
            link_tree(&from, &to)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// Recreates the directory tree of `from` at `to`, its files hard-linked (copied across file
/// systems), its symbolic links as they are.
fn link_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir(to)?;
    std::fs::set_permissions(to, std::fs::metadata(from)?.permissions())?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            link_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// Empties the job's working directory and removes what a runner left of its configuration,
/// so the next runner in this root starts clean.
pub fn wipe(root: &Path) -> io::Result<()> {
    for name in [".runner", ".credentials", ".credentials_rsaparams"] {
        match std::fs::remove_file(root.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    remove_tree(&root.join("_work"))
}

/// Removes a directory tree; a missing one is fine. Read-only directories (some jobs leave
/// them) are made writable first.
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_writable(dir);
            std::fs::remove_dir_all(dir)
        }
        Err(e) => Err(e),
    }
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::symlink_metadata(dir)
        && m.is_dir()
    {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

/// Whether `runner_dir` holds an installed runner: an executable `run.sh`.
pub fn has_runner(runner_dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(runner_dir.join("run.sh"))
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_root_links_the_binaries_copies_the_scripts_and_skips_runner_state() {
        let dir = tempfile::tempdir().unwrap();
        let runner = dir.path().join("runner");
        std::fs::create_dir_all(runner.join("bin/sub")).unwrap();
        std::fs::write(runner.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::write(runner.join("bin/Runner.Listener"), "x").unwrap();
        std::fs::write(runner.join("bin/sub/lib.so"), "y").unwrap();
        std::fs::write(runner.join(".runner"), "{}").unwrap();
        std::fs::create_dir(runner.join("_work")).unwrap();
        let root = dir.path().join("root");
        prepare(&runner, &root).unwrap();
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(
            ino(&root.join("bin/sub/lib.so")),
            ino(&runner.join("bin/sub/lib.so"))
        );
        assert_ne!(ino(&root.join("run.sh")), ino(&runner.join("run.sh")));
        assert!(!root.join(".runner").exists() && !root.join("_work").exists());
        assert!(prepare(&runner, &root).is_err(), "the root must be new");

        std::fs::create_dir_all(root.join("_work/app/app")).unwrap();
        std::fs::write(root.join(".credentials"), "{}").unwrap();
        wipe(&root).unwrap();
        assert!(!root.join("_work").exists() && !root.join(".credentials").exists());
        assert!(root.join("bin/Runner.Listener").exists());
    }
}
