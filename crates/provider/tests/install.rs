//! Installing the runner on a host: the configured release downloaded from a mirror, checked
//! against its pinned SHA-256 before it is unpacked, found in place the second time, and a
//! download whose checksum differs refused without leaving anything behind.

use axum::Router;
use axum::routing::get;
use mayfly_core::Arch;
use mayfly_provider::bootstrap::BootstrapConfig;
use mayfly_provider::bootstrap::install::{InstallError, Installed, ensure};
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// A runner release: `run.sh` and `bin/Runner.Listener` in a gzipped tar, as GitHub ships it.
fn tarball(dir: &Path) -> Vec<u8> {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::write(src.join("run.sh"), "#!/bin/sh\necho runner\n").unwrap();
    std::fs::set_permissions(src.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(src.join("bin/Runner.Listener"), "listener").unwrap();
    let out = dir.join("runner.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(&src)
        .args(["run.sh", "bin"])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(out).unwrap()
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn mirror(release: Vec<u8>) -> String {
    let app = Router::new().route(
        "/v9.9.9/actions-runner-linux-x64-9.9.9.tar.gz",
        get(move || {
            let r = release.clone();
            async move { r }
        }),
    );
    let addr = mayfly_sim::serve_local(app).await.unwrap();
    format!("http://{addr}")
}

fn config(url: &str, x64: &str) -> BootstrapConfig {
    BootstrapConfig {
        runner_version: "9.9.9".into(),
        runner_sha256_x64: x64.into(),
        runner_sha256_arm64: "b".repeat(64),
        download_url: url.into(),
        ..BootstrapConfig::default()
    }
}

#[tokio::test]
async fn the_pinned_release_is_downloaded_checked_unpacked_and_then_found() {
    let dir = tempfile::tempdir().unwrap();
    let release = tarball(dir.path());
    let url = mirror(release.clone()).await;
    let target = dir.path().join("opt/actions-runner");
    let c = config(&url, &sha(&release));
    let first = ensure(&c, Arch::X86, &target, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(matches!(first, Installed::Downloaded { .. }), "{first:?}");
    assert!(target.join("run.sh").exists() && target.join("bin/Runner.Listener").exists());
    let again = ensure(&c, Arch::X86, &target, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again, Installed::Found(target.clone()));
}

#[tokio::test]
async fn a_download_with_another_checksum_is_never_unpacked() {
    let dir = tempfile::tempdir().unwrap();
    let release = tarball(dir.path());
    let url = mirror(release).await;
    let target = dir.path().join("opt/actions-runner");
    let c = config(&url, &"a".repeat(64));
    match ensure(&c, Arch::X86, &target, Duration::from_secs(30)).await {
        Err(InstallError::Checksum { want, .. }) => assert_eq!(want, "a".repeat(64)),
        other => panic!("{other:?}"),
    }
    assert!(!target.exists());
    let left: Vec<_> = std::fs::read_dir(dir.path().join("opt"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "nothing left beside the target: {left:?}");
    // A mirror that does not have the file.
    let c = config(&url, &"a".repeat(64));
    let e = ensure(&c, Arch::Arm, &target, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(e, InstallError::Download { .. }), "{e}");
}
