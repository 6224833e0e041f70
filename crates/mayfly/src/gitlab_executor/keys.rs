//! A job's own keys, made with the system's `ssh-keygen`: the client key the machine trusts,
//! and the machine's host key, made here and handed over at boot so it is pinned before boot.

use mayfly_core::Secret;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The per-job directory and what is in it.
#[derive(Clone, Debug)]
pub struct JobDir {
    pub path: PathBuf,
}

/// Keys made for one job. The host's private half leaves in the user data and is not kept.
pub struct JobKeys {
    pub authorized_key: String,
    pub host_key: Secret,
    pub host_public: String,
}

impl JobDir {
    pub fn new(state_dir: &Path, name: &str) -> JobDir {
        JobDir {
            path: state_dir.join("jobs").join(name),
        }
    }

    pub fn identity(&self) -> PathBuf {
        self.path.join("id_ed25519")
    }
    pub fn known_hosts(&self) -> PathBuf {
        self.path.join("known_hosts")
    }
    pub fn machine_file(&self) -> PathBuf {
        self.path.join("machine.json")
    }

    /// Makes the directory (0700, parents too) and fresh keys in it; a directory left by an
    /// earlier attempt of the same job is replaced, so no key outlives its attempt.
    pub fn make_keys(&self, alias: &str) -> Result<JobKeys, String> {
        if self.path.exists() {
            std::fs::remove_dir_all(&self.path)
                .map_err(|e| format!("cannot remove {}: {e}", self.path.display()))?;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .map_err(|e| format!("cannot make {}: {e}", self.path.display()))?;
        // `recursive` leaves an existing parent's mode alone; the job's own must be private.
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot restrict {}: {e}", self.path.display()))?;
        keygen(&self.identity(), alias)?;
        let host = self.path.join("host_ed25519");
        keygen(&host, alias)?;
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let authorized_key = read(&self.identity().with_extension("pub"))?
            .trim()
            .to_string();
        let host_public = read(&host.with_extension("pub"))?.trim().to_string();
        let host_key = Secret::new(read(&host)?);
        let _ = std::fs::remove_file(&host);
        let _ = std::fs::remove_file(host.with_extension("pub"));
        // `HostKeyAlias` makes ssh look the machine up by this name, whatever address it got.
        let key = host_public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        std::fs::write(self.known_hosts(), format!("{alias} {key}\n"))
            .map_err(|e| format!("cannot write {}: {e}", self.known_hosts().display()))?;
        Ok(JobKeys {
            authorized_key,
            host_key,
            host_public,
        })
    }

    /// Removes the directory and every key in it; gone already is fine.
    pub fn remove(&self) -> Result<(), String> {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove {}: {e}", self.path.display())),
        }
    }
}

/// An ed25519 key pair without a passphrase at `path` (and `path.pub`).
fn keygen(path: &Path, comment: &str) -> Result<(), String> {
    let program = std::env::var_os("MAYFLY_SSH_KEYGEN").unwrap_or_else(|| "ssh-keygen".into());
    let out = Command::new(&program)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!(
            "ssh-keygen failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fresh_private_and_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let job = JobDir::new(dir.path(), "mayfly-gl-1");
        let a = job.make_keys("mayfly-gl-1").unwrap();
        let mode = std::fs::metadata(&job.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(a.authorized_key.starts_with("ssh-ed25519 "));
        assert!(a.host_key.expose().contains("OPENSSH PRIVATE KEY"));
        let known = std::fs::read_to_string(job.known_hosts()).unwrap();
        assert!(known.starts_with("mayfly-gl-1 ssh-ed25519 "), "{known}");
        assert!(!job.path.join("host_ed25519").exists());
        let b = job.make_keys("mayfly-gl-1").unwrap();
        assert_ne!(a.authorized_key, b.authorized_key);
        job.remove().unwrap();
        job.remove().unwrap();
        assert!(!job.path.exists());
    }
}
