//! The runner installed on this host (`mayfly node register`): found in place, or the pinned
//! release downloaded once, its SHA-256 checked before a single byte is unpacked — the same
//! release, checksums and mirror setting as the cloud-init bootstrap (`BootstrapConfig`).

use super::{BootstrapConfig, BootstrapError, release};
use crate::local::layout;
use mayfly_core::Arch;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the runner came to be in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Installed {
    /// `run.sh` was there already: nothing was downloaded.
    Found(PathBuf),
    /// The release was downloaded from `url`, checked, and unpacked.
    Downloaded { dir: PathBuf, url: String },
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Config(#[from] BootstrapError),
    #[error("cannot download {url}: {reason}")]
    Download { url: String, reason: String },
    #[error(
        "{url} has SHA-256 {got}, not the pinned {want}: refusing to unpack it (a corrupt \
         download, a tampered mirror, or runner_version changed without its checksums)"
    )]
    Checksum {
        url: String,
        got: String,
        want: String,
    },
    #[error("cannot unpack the runner into {dir}: {reason}")]
    Unpack { dir: String, reason: String },
    #[error("{0}")]
    Io(String),
}

/// Makes sure an actions/runner is installed in `dir` for `arch`; downloads the configured
/// release there if `dir` holds none. `timeout` bounds the download and the unpacking each.
pub async fn ensure(
    config: &BootstrapConfig,
    arch: Arch,
    dir: &Path,
    timeout: Duration,
) -> Result<Installed, InstallError> {
    if layout::has_runner(dir) {
        return Ok(Installed::Found(dir.to_path_buf()));
    }
    config.validate()?;
    let (url, want) = release(config, arch)?;
    let parent = dir.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent)
        .map_err(|e| InstallError::Io(format!("cannot create {}: {e}", parent.display())))?;
    let mut file = tempfile::NamedTempFile::new_in(parent)
        .map_err(|e| InstallError::Io(format!("cannot write in {}: {e}", parent.display())))?;
    let got = download(&url, file.as_file_mut(), timeout).await?;
    if got != want {
        return Err(InstallError::Checksum { url, got, want });
    }
    // Unpacked beside the target and moved into place: a cut-short unpack leaves no half runner.
    let staging = tempfile::Builder::new()
        .prefix(".runner-")
        .tempdir_in(parent)
        .map_err(|e| InstallError::Io(format!("cannot write in {}: {e}", parent.display())))?;
    unpack(file.path(), staging.path(), timeout).await?;
    if !layout::has_runner(staging.path()) {
        return Err(InstallError::Unpack {
            dir: dir.display().to_string(),
            reason: "the archive holds no run.sh".into(),
        });
    }
    if dir.exists() {
        // An empty or unfinished directory from before: replaced.
        layout::remove_tree(dir).map_err(|e| InstallError::Io(e.to_string()))?;
    }
    let unpacked = staging.keep();
    std::fs::rename(&unpacked, dir).map_err(|e| InstallError::Unpack {
        dir: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(Installed::Downloaded {
        dir: dir.to_path_buf(),
        url,
    })
}

/// Streams `url` into `out`; the SHA-256 of what arrived, in lower-case hex.
async fn download(
    url: &str,
    out: &mut std::fs::File,
    timeout: Duration,
) -> Result<String, InstallError> {
    let fail = |reason: String| InstallError::Download {
        url: url.to_string(),
        reason,
    };
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut response = http
        .get(url)
        .header("user-agent", concat!("mayfly/", env!("CARGO_PKG_VERSION")))
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!("the server answered {}", response.status())));
    }
    let mut hash = Sha256::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| fail(e.to_string()))? {
        hash.update(&chunk);
        out.write_all(&chunk)
            .map_err(|e| InstallError::Io(format!("cannot write the download: {e}")))?;
    }
    out.sync_all()
        .map_err(|e| InstallError::Io(format!("cannot write the download: {e}")))?;
    Ok(hex_lower(&hash.finalize()))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `tar -xzf ARCHIVE -C DIR`, as the bootstrap script unpacks it.
async fn unpack(archive: &Path, dir: &Path, timeout: Duration) -> Result<(), InstallError> {
    let fail = |reason: String| InstallError::Unpack {
        dir: dir.display().to_string(),
        reason,
    };
    let run = tokio::process::Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| fail(format!("tar took longer than {timeout:?}")))?
        .map_err(|e| fail(format!("cannot run tar: {e}")))?;
    if !out.status.success() {
        return Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}
