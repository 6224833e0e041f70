//! The GitLab runner bootstrap: user data that installs (or finds) a pinned gitlab-runner, runs
//! `gitlab-runner run-single` for one job with the machine's own runner token, and powers off.
//!
//! The script lives in `gitlab-runner.sh`, a template kept valid (and shellcheck-clean) bash;
//! this module checks every value it fills in, so nothing an operator or GitLab supplies can
//! become shell syntax. The command line it writes is exactly (one line; the token and the
//! URL single-quoted; the binary a variable):
//!
//! ```text
//! as_runner "$GITLAB_RUNNER" run-single --url 'URL' --token 'glrt-…' --executor shell
//!     --shell bash --builds-dir 'WORK/builds' --cache-dir 'WORK/cache' --max-builds 1
//!     --wait-timeout N
//! ```
//!
//! `--max-builds 1` makes the runner take one job and exit; `--wait-timeout N` makes it give up
//! when no job came within N seconds (a job cancelled before the machine booted, or taken by
//! another runner), so the machine powers off instead of idling until mayfly's deadline.

use super::{
    BootstrapConfig, BootstrapError, PATH_REASON, SHA256_REASON, URL_REASON, is_http_url,
    is_sha256, is_version, quote, render, safe_path,
};
use mayfly_core::{Arch, Secret};
use serde::{Deserialize, Serialize};

/// The gitlab-runner release mayfly downloads when the image has none. Its binaries are
/// published at `<download_url>/v<version>/binaries/gitlab-runner-linux-{amd64,arm64}`, with
/// their SHA-256 in `<download_url>/v<version>/release.sha256` (as in the Funtoo/MARK ebuild
/// `gitlab-runner-bin-18.10.1`, SRC_URI `…/gitlab-runner-downloads/v18.10.1/binaries/
/// gitlab-runner-linux-amd64`, and GitLab's "Install GitLab Runner manually on GNU/Linux" page).
///
/// No pinned checksum of this release could be found in the sources searched (only the
/// download paths), so none is made up here: without `sha256_amd64` / `sha256_arm64` the
/// machine checks the download against the release's `release.sha256`, fetched over HTTPS from
/// the same release. That catches a corrupted or substituted binary, not a compromised bucket:
/// pin both checksums (copied from that file) to trust no download host.
pub const GITLAB_RUNNER_VERSION: &str = "18.10.1";
/// Where GitLab publishes runner releases.
pub const GITLAB_RUNNER_DOWNLOAD_URL: &str = "https://gitlab-runner-downloads.s3.amazonaws.com";
/// Where a downloaded gitlab-runner is installed.
const INSTALL_PATH: &str = "/opt/mayfly/gitlab-runner/gitlab-runner";

const TEMPLATE: &str = include_str!("gitlab-runner.sh");

/// How machines install and start gitlab-runner; `bootstrap.gitlab` of a pool's configuration.
/// The runner user and the setup script are the bootstrap's own (`user`, `setup_script`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GitlabRunnerConfig {
    /// The gitlab-runner release to download.
    pub version: String,
    /// SHA-256 of `gitlab-runner-linux-amd64` of `version`: a download that does not match is
    /// never run. Unset: the release's own `release.sha256` says.
    pub sha256_amd64: Option<String>,
    /// SHA-256 of `gitlab-runner-linux-arm64` of `version`.
    pub sha256_arm64: Option<String>,
    /// A gitlab-runner already in the image (for example `/usr/bin/gitlab-runner`): used as is,
    /// nothing downloaded.
    pub binary: Option<String>,
    /// Base URL of releases; a mirror must keep GitLab's layout.
    pub download_url: String,
    /// Seconds gitlab-runner waits for its job before it exits and the machine powers off.
    pub wait_timeout_secs: u64,
    /// Where jobs build and cache (`WORK/builds`, `WORK/cache`), owned by the runner user.
    pub work_dir: String,
}

impl Default for GitlabRunnerConfig {
    fn default() -> Self {
        GitlabRunnerConfig {
            version: GITLAB_RUNNER_VERSION.to_string(),
            sha256_amd64: None,
            sha256_arm64: None,
            binary: None,
            download_url: GITLAB_RUNNER_DOWNLOAD_URL.to_string(),
            wait_timeout_secs: 600,
            work_dir: "/var/lib/mayfly/gitlab".to_string(),
        }
    }
}

/// The architecture's name in gitlab-runner's release file names.
fn arch_name(arch: Arch) -> &'static str {
    match arch {
        Arch::X86 => "amd64",
        Arch::Arm => "arm64",
    }
}

impl GitlabRunnerConfig {
    /// Checks every setting, so a bad configuration fails at load time rather than at the first
    /// machine it would have booted.
    pub fn validate(&self) -> Result<(), BootstrapError> {
        let invalid = |field, reason| Err(BootstrapError::Invalid { field, reason });
        if !is_version(&self.version) {
            return invalid("gitlab.version", "not a version like 18.10.1");
        }
        for (field, sum) in [
            ("gitlab.sha256_amd64", &self.sha256_amd64),
            ("gitlab.sha256_arm64", &self.sha256_arm64),
        ] {
            if sum.as_deref().is_some_and(|s| !is_sha256(s)) {
                return invalid(field, SHA256_REASON);
            }
        }
        if self.binary.as_deref().is_some_and(|b| !safe_path(b)) {
            return invalid("gitlab.binary", PATH_REASON);
        }
        if !safe_path(&self.work_dir) {
            return invalid("gitlab.work_dir", PATH_REASON);
        }
        if !is_http_url(&self.download_url) {
            return invalid("gitlab.download_url", URL_REASON);
        }
        if self.wait_timeout_secs == 0 {
            return invalid(
                "gitlab.wait_timeout_secs",
                "0 would wait forever: a machine whose job never comes must power off",
            );
        }
        Ok(())
    }
}

/// The `start_runner` function: `run-single` with the instance URL and the token, each once,
/// literally, as one single-quoted word.
fn start_runner(
    config: &GitlabRunnerConfig,
    url: &str,
    token: &Secret,
) -> Result<String, BootstrapError> {
    let token = token.expose();
    let body = token.strip_prefix("glrt-").unwrap_or("");
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    {
        return Err(BootstrapError::BadCredential {
            reason: "not a runner authentication token (glrt- and [A-Za-z0-9_.-])",
        });
    }
    let url = url.trim_end_matches('/');
    if !is_http_url(url) || url.contains('"') || url.ends_with("/api/v4") {
        return Err(BootstrapError::Invalid {
            field: "url",
            reason: "not the http(s) URL of a GitLab instance (without /api/v4, spaces or quotes)",
        });
    }
    let work = &config.work_dir;
    Ok(format!(
        "# Starts gitlab-runner for one job with this machine's runner token; it exits after the\n\
         # job, or when no job came within the wait timeout.\n\
         start_runner() {{\n    \
             log \"starting gitlab-runner (one job, waiting at most {wait} s)\"\n    \
             as_runner \"$GITLAB_RUNNER\" run-single --url {url} --token '{token}' --executor shell --shell bash --builds-dir {builds} --cache-dir {cache} --max-builds 1 --wait-timeout {wait}\n\
         }}",
        url = quote(url),
        builds = quote(&format!("{work}/builds")),
        cache = quote(&format!("{work}/cache")),
        wait = config.wait_timeout_secs,
    ))
}

/// The user data for a machine of `arch` whose gitlab-runner starts with `token` against the
/// GitLab instance at `url`: a `#!/bin/bash` script, which cloud-init runs once at first boot.
/// It holds the token, so it is a secret.
pub fn user_data(
    config: &BootstrapConfig,
    arch: Arch,
    url: &str,
    token: &Secret,
) -> Result<Secret, BootstrapError> {
    // The whole bootstrap's settings, `gitlab` included.
    config.validate()?;
    let g = &config.gitlab;
    let name = format!("binaries/gitlab-runner-linux-{}", arch_name(arch));
    let base = format!("{}/v{}", g.download_url.trim_end_matches('/'), g.version);
    let (binary, download, checksums, pinned) = match &g.binary {
        Some(path) => (path.clone(), String::new(), String::new(), String::new()),
        None => {
            let pinned = match arch {
                Arch::X86 => &g.sha256_amd64,
                Arch::Arm => &g.sha256_arm64,
            };
            (
                INSTALL_PATH.to_string(),
                format!("{base}/{name}"),
                format!("{base}/release.sha256"),
                pinned.as_deref().unwrap_or("").to_ascii_lowercase(),
            )
        }
    };
    let start = start_runner(g, url, token)?;
    render(
        config,
        TEMPLATE,
        &start,
        &[
            ("@GITLAB_RUNNER@", &binary),
            ("@DOWNLOAD_URL@", &download),
            ("@RUNNER_SHA256@", &pinned),
            ("@CHECKSUMS_URL@", &checksums),
            ("@CHECKSUM_NAME@", &name),
            ("@WORK_DIR@", &g.work_dir),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::{SETUP_SCRIPT, START_RUNNER, with_common};

    #[test]
    fn every_placeholder_is_in_the_template_once() {
        for p in [
            "@RUNNER_USER@",
            "@GITLAB_RUNNER@",
            "@DOWNLOAD_URL@",
            "@RUNNER_SHA256@",
            "@CHECKSUMS_URL@",
            "@CHECKSUM_NAME@",
            "@WORK_DIR@",
            START_RUNNER,
            SETUP_SCRIPT,
        ] {
            assert_eq!(with_common(TEMPLATE).matches(p).count(), 1, "{p}");
        }
    }

    #[test]
    fn the_default_configuration_is_valid() {
        GitlabRunnerConfig::default().validate().unwrap();
        let bad = [
            GitlabRunnerConfig {
                version: "18.10".into(),
                ..Default::default()
            },
            GitlabRunnerConfig {
                sha256_arm64: Some("abc".into()),
                ..Default::default()
            },
            GitlabRunnerConfig {
                binary: Some("gitlab-runner".into()),
                ..Default::default()
            },
            GitlabRunnerConfig {
                work_dir: "/var/lib/x y".into(),
                ..Default::default()
            },
            GitlabRunnerConfig {
                download_url: "ftp://mirror".into(),
                ..Default::default()
            },
            GitlabRunnerConfig {
                wait_timeout_secs: 0,
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(
                matches!(c.validate(), Err(BootstrapError::Invalid { .. })),
                "{c:?}"
            );
        }
    }
}
