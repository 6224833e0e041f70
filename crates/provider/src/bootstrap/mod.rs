//! The runner bootstrap: the cloud-init user data a machine boots with, a bash script that
//! installs (or finds) the GitHub Actions runner or gitlab-runner, runs one job and powers the
//! machine off.
//!
//! The scripts live in `runner.sh` (GitHub) and `gitlab-runner.sh` (GitLab, see `gitlab.rs`),
//! templates kept valid (and shellcheck-clean) bash so they can be read and linted as files; this
//! module validates every value it fills in, so nothing an operator or a forge supplies can
//! become shell syntax, and keeps the result under the provider's user-data limit.

mod gitlab;

pub use gitlab::{GITLAB_RUNNER_DOWNLOAD_URL, GITLAB_RUNNER_VERSION, GitlabRunnerConfig};

use mayfly_core::{Arch, Secret};
use serde::{Deserialize, Serialize};

/// The actions/runner release mayfly installs when the image has none. GitHub stops serving jobs
/// to runners that fall too far behind, so this is bumped with each mayfly release, together with
/// both checksums below.
///
/// The checksums are those of the v2.338.0 release notes ("SHA-256 Checksums"), confirmed from
/// independent public sources that pin both files: `totKtoXam/retroplay`
/// `scripts/install-runner.sh` (x64 and arm64) and a Debian-slim runner Dockerfile pinning
/// `RUNNER_SHA256_x64` and `RUNNER_SHA256_arm64`; each sum also appears alone in further install
/// scripts and Dockerfiles (x64 in half a dozen, arm64 in two more).
pub const RUNNER_VERSION: &str = "2.338.0";
/// SHA-256 of `actions-runner-linux-x64-2.338.0.tar.gz`.
pub const RUNNER_SHA256_X64: &str =
    "af4b794c1bc41d73d40535e3fe092a39f9679cd8d965954c2aca25a05ca41d32";
/// SHA-256 of `actions-runner-linux-arm64-2.338.0.tar.gz`.
pub const RUNNER_SHA256_ARM64: &str =
    "628b4a7258487b80c1d3c221095a7ded349f5ae0175fd3dfab708d07428f041b";
/// Where GitHub publishes runner releases: `<this>/v<version>/<file>`.
pub const RUNNER_DOWNLOAD_URL: &str = "https://github.com/actions/runner/releases/download";
/// Hetzner Cloud refuses user data over 32 KiB; the tightest limit of the providers mayfly uses.
pub const MAX_USER_DATA: usize = 32 * 1024;
/// Where a downloaded runner is unpacked.
const INSTALL_DIR: &str = "/opt/mayfly/actions-runner";

pub mod install;

const TEMPLATE: &str = include_str!("runner.sh");
/// What every bootstrap template shares (the log, the power-off whatever happens, the runner
/// user, downloads and their checksum check, the setup script, the metadata service closed to
/// jobs), put where a template says `# @COMMON@`.
const COMMON: &str = include_str!("common.sh");

/// `template` with the shared part in place: the text `fill` then fills in.
pub(crate) fn with_common(template: &str) -> String {
    template.replacen("# @COMMON@\n", COMMON, 1)
}
/// Where a template takes its `start_runner` and `setup_script` functions.
const START_RUNNER: &str = "# @START_RUNNER@";
const SETUP_SCRIPT: &str = "# @SETUP_SCRIPT@";

/// How machines install and start the runner; the `bootstrap` section of a pool's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootstrapConfig {
    /// The actions/runner release to download. Changing it means changing both checksums too.
    pub runner_version: String,
    /// SHA-256 of `actions-runner-linux-x64-<runner_version>.tar.gz`: a download that does not
    /// match is never run.
    pub runner_sha256_x64: String,
    /// SHA-256 of `actions-runner-linux-arm64-<runner_version>.tar.gz`.
    pub runner_sha256_arm64: String,
    /// A runner already installed in the image (for example `/opt/actions-runner`): it is used
    /// as is and nothing is downloaded, which saves boot time and the dependence on GitHub's
    /// release downloads.
    pub runner_dir: Option<String>,
    /// The operator's script, run as root after the runner is installed and before it starts:
    /// packages, sudo or docker rights for the runner user, caches. A failure powers the machine
    /// off like any other.
    pub setup_script: Option<String>,
    /// The unprivileged user the runner and its jobs run as; created when the image lacks it.
    pub user: String,
    /// Base URL of runner releases; set it to a mirror that keeps GitHub's layout.
    pub download_url: String,
    /// How machines of GitLab jobs install and start gitlab-runner.
    pub gitlab: GitlabRunnerConfig,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        BootstrapConfig {
            runner_version: RUNNER_VERSION.to_string(),
            runner_sha256_x64: RUNNER_SHA256_X64.to_string(),
            runner_sha256_arm64: RUNNER_SHA256_ARM64.to_string(),
            runner_dir: None,
            setup_script: None,
            user: "runner".to_string(),
            download_url: RUNNER_DOWNLOAD_URL.to_string(),
            gitlab: GitlabRunnerConfig::default(),
        }
    }
}

/// The single-use credential a runner starts with: a forge-neutral type of mayfly-core, which
/// the forges issue and the bootstrap puts into user data.
pub use mayfly_core::forge::Credential;

/// Why no user data was made. The texts never include a credential.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    /// The script with this setup script and credential is over the provider's limit.
    #[error("user data is {bytes} bytes, over the {limit}-byte limit (shorten the setup script)")]
    TooLarge { bytes: usize, limit: usize },
    /// The credential is not of the shape GitHub issues; refused rather than put into a script.
    #[error("malformed runner credential: {reason}")]
    BadCredential { reason: &'static str },
    /// A setting that cannot go into the script safely, or cannot work.
    #[error("invalid bootstrap setting `{field}`: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
}

impl BootstrapConfig {
    /// Checks every setting, so a bad configuration fails at load time rather than at the first
    /// machine it would have booted.
    pub fn validate(&self) -> Result<(), BootstrapError> {
        let invalid = |field, reason| Err(BootstrapError::Invalid { field, reason });
        if !is_version(&self.runner_version) {
            return invalid("runner_version", "not a version like 2.338.0");
        }
        for (field, sum) in [
            ("runner_sha256_x64", &self.runner_sha256_x64),
            ("runner_sha256_arm64", &self.runner_sha256_arm64),
        ] {
            if !is_sha256(sum) {
                return invalid(field, SHA256_REASON);
            }
        }
        let user = self.user.as_bytes();
        let user_ok = (1..=32).contains(&user.len())
            && (user[0].is_ascii_lowercase() || user[0] == b'_')
            && user
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !user_ok {
            return invalid("user", "not a user name ([a-z_][a-z0-9_-]*, at most 32)");
        }
        if self.user == "root" {
            return invalid("user", "jobs must not run as root");
        }
        if self.runner_dir.as_deref().is_some_and(|d| !safe_path(d)) {
            return invalid("runner_dir", PATH_REASON);
        }
        if !is_http_url(&self.download_url) {
            return invalid("download_url", URL_REASON);
        }
        if self
            .setup_script
            .as_deref()
            .is_some_and(|s| s.contains('\0'))
        {
            return invalid("setup_script", "contains a NUL byte");
        }
        self.gitlab.validate()
    }

    fn sha256(&self, arch: Arch) -> (&'static str, &str, &'static str) {
        match arch {
            Arch::X86 => (
                "runner_sha256_x64",
                &self.runner_sha256_x64,
                RUNNER_SHA256_X64,
            ),
            Arch::Arm => (
                "runner_sha256_arm64",
                &self.runner_sha256_arm64,
                RUNNER_SHA256_ARM64,
            ),
        }
    }
}

const SHA256_REASON: &str = "not a SHA-256 (64 hexadecimal digits)";
const PATH_REASON: &str = "not an absolute path of [A-Za-z0-9/._-]";
const URL_REASON: &str = "not an http(s) URL without spaces or quotes";

/// Three dot-separated numbers, as both runners' releases are named (2.338.0, 18.10.1).
fn is_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_sha256(sum: &str) -> bool {
    sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An absolute path that needs no quoting and cannot climb out (`..`).
fn safe_path(p: &str) -> bool {
    p.starts_with('/')
        && p.len() > 1
        && !p.contains("..")
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
}

/// An http(s) URL that is one shell word.
fn is_http_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://")) && plain(url)
}

/// The runner's name for an architecture, as in its release file names.
fn arch_name(arch: Arch) -> &'static str {
    match arch {
        Arch::X86 => "x64",
        Arch::Arm => "arm64",
    }
}

/// The release file of the configured runner for `arch`, and the SHA-256 it must have.
pub fn release(config: &BootstrapConfig, arch: Arch) -> Result<(String, String), BootstrapError> {
    let (field, sum, pinned) = config.sha256(arch);
    // A new version with the old checksum can only fail at boot, on every machine.
    if config.runner_version != RUNNER_VERSION && sum.eq_ignore_ascii_case(pinned) {
        return Err(BootstrapError::Invalid {
            field,
            reason: "runner_version is not the pinned one, but the checksum is",
        });
    }
    let version = &config.runner_version;
    let url = format!(
        "{}/v{version}/actions-runner-linux-{}-{version}.tar.gz",
        config.download_url.trim_end_matches('/'),
        arch_name(arch),
    );
    Ok((url, sum.to_ascii_lowercase()))
}

/// The user data for a machine of `arch` whose runner starts with `credential`: a `#!/bin/bash`
/// script, which cloud-init runs once at first boot. It holds the credential, so it is a secret.
pub fn user_data(
    config: &BootstrapConfig,
    arch: Arch,
    credential: &Credential,
) -> Result<Secret, BootstrapError> {
    if let Credential::Gitlab { url, token } = credential {
        return gitlab::user_data(config, arch, url, token);
    }
    config.validate()?;
    let (url, sha256) = if config.runner_dir.is_some() {
        (String::new(), String::new())
    } else {
        release(config, arch)?
    };
    let runner_dir = config.runner_dir.as_deref().unwrap_or(INSTALL_DIR);
    let start = start_runner(credential)?;
    render(
        config,
        TEMPLATE,
        &start,
        &[
            ("@RUNNER_DIR@", runner_dir),
            ("@RUNNER_URL@", &url),
            ("@RUNNER_SHA256@", &sha256),
        ],
    )
}

/// What every bootstrap does with its template: puts in the shared part, the runner user, the
/// `start_runner` function and the operator's setup script, then the template's own `values`,
/// all in one pass ([`fill`]); and refuses a script over the provider's user-data limit. The
/// script holds the credential, so it is a secret.
fn render(
    config: &BootstrapConfig,
    template: &str,
    start: &str,
    values: &[(&str, &str)],
) -> Result<Secret, BootstrapError> {
    let setup = config
        .setup_script
        .as_deref()
        .map(setup_function)
        .unwrap_or_default();
    let mut all = vec![
        ("@RUNNER_USER@", config.user.as_str()),
        (START_RUNNER, start),
        (SETUP_SCRIPT, &setup),
    ];
    all.extend_from_slice(values);
    let script = fill(&with_common(template), &all);
    if script.len() > MAX_USER_DATA {
        return Err(BootstrapError::TooLarge {
            bytes: script.len(),
            limit: MAX_USER_DATA,
        });
    }
    Ok(Secret::new(script))
}

/// The `start_runner` function for the credential. The credential goes in once, literally, as one
/// single-quoted word: no expansion can touch it, and the simulator (like a reader) finds it
/// next to its flag.
fn start_runner(credential: &Credential) -> Result<String, BootstrapError> {
    let bad = |reason| Err(BootstrapError::BadCredential { reason });
    match credential {
        Credential::Jit(config) => {
            let config = config.expose();
            if !is_base64(config) {
                return bad("the JIT config is not base64");
            }
            Ok(format!(
                "# Starts the runner with its single-use JIT config: it takes one job and exits.\n\
                 start_runner() {{\n    \
                     log \"starting the runner (JIT config)\"\n    \
                     as_runner ./run.sh --jitconfig '{config}'\n\
                 }}"
            ))
        }
        Credential::Token {
            url,
            token,
            name,
            labels,
            group,
        } => {
            let token = token.expose();
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return bad("the registration token is not alphanumeric");
            }
            let invalid = |field, reason| Err(BootstrapError::Invalid { field, reason });
            if !is_http_url(url) {
                return invalid("url", URL_REASON);
            }
            // Whitespace or quotes would split the word for config.sh's readers; commas would
            // split a label.
            if !plain(name) || name.contains('"') {
                return invalid("name", "empty, or has whitespace or quotes");
            }
            if labels
                .iter()
                .any(|l| !plain(l) || l.contains('"') || l.contains(','))
            {
                return invalid(
                    "labels",
                    "a label is empty, or has whitespace, quotes or commas",
                );
            }
            if group
                .as_deref()
                .is_some_and(|g| g.is_empty() || g.chars().any(char::is_control))
            {
                return invalid("group", "empty, or has control characters");
            }
            let mut register = format!(
                "--url {} --token '{token}' --name {}",
                quote(url),
                quote(name)
            );
            if !labels.is_empty() {
                register.push_str(&format!(" --labels {}", quote(&labels.join(","))));
            }
            if let Some(group) = group {
                register.push_str(&format!(" --runnergroup {}", quote(group)));
            }
            Ok(format!(
                "# Registers an ephemeral runner with a registration token (the fallback to JIT\n\
                 # configs) and starts it: it takes one job, deregisters and exits.\n\
                 start_runner() {{\n    \
                     log \"registering the runner\"\n    \
                     as_runner ./config.sh --unattended --ephemeral --disableupdate --work _work \\\n        \
                         {register}\n    \
                     log \"starting the runner\"\n    \
                     as_runner ./run.sh\n\
                 }}"
            ))
        }
        Credential::Gitlab { .. } => bad("a GitLab token starts gitlab-runner, not actions/runner"),
        Credential::Ssh { .. } => bad("an executor job's machine runs no runner"),
    }
}

/// The `setup_script` function, which prints the operator's script: a quoted here-document keeps
/// every byte of it literal, with a delimiter that no line of the script equals.
fn setup_function(script: &str) -> String {
    let mut delimiter = "MAYFLY_SETUP_EOF".to_string();
    let mut n = 0;
    while script.lines().any(|l| l.trim_end() == delimiter) {
        n += 1;
        delimiter = format!("MAYFLY_SETUP_EOF_{n}");
    }
    let newline = if script.ends_with('\n') { "" } else { "\n" };
    format!(
        "# The operator's setup script (BootstrapConfig::setup_script), run as root.\n\
         setup_script() {{\n    \
             cat <<'{delimiter}'\n\
         {script}{newline}\
         {delimiter}\n\
         }}"
    )
}

/// Replaces each pattern with its value in one pass, so a value (a setup script, a group name)
/// that happens to contain a pattern is never expanded in turn.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 4096);
    let mut rest = template;
    while let Some(at) = rest.find('@') {
        // Block patterns start with `# ` before the `@`.
        let hit = values.iter().find_map(|(pattern, value)| {
            let start = at.checked_sub(pattern.find('@').unwrap_or(0))?;
            rest.get(start..)?
                .starts_with(pattern)
                .then_some((start, pattern.len(), *value))
        });
        match hit {
            Some((start, len, value)) => {
                out.push_str(&rest[..start]);
                out.push_str(value);
                rest = &rest[start + len..];
            }
            None => {
                out.push_str(&rest[..=at]);
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Single-quotes `s` for bash: every byte literal, `'` written as `'\''`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Non-empty, without whitespace, control characters or single quotes.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\'')
}

/// Standard base64 with padding, as GitHub encodes JIT configs.
fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && s.len().is_multiple_of(4)
        && s.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_in_the_template_once() {
        for p in [
            "@RUNNER_USER@",
            "@RUNNER_DIR@",
            "@RUNNER_URL@",
            "@RUNNER_SHA256@",
            START_RUNNER,
            SETUP_SCRIPT,
        ] {
            assert_eq!(with_common(TEMPLATE).matches(p).count(), 1, "{p}");
        }
    }

    #[test]
    fn fill_is_one_pass() {
        let out = fill(
            "a='@X@' b\n# @BLOCK@\n\"$@\" @Y@",
            &[("@X@", "@Y@"), ("# @BLOCK@", "echo @X@"), ("@Y@", "y")],
        );
        assert_eq!(out, "a='@Y@' b\necho @X@\n\"$@\" y");
    }

    #[test]
    fn base64_is_checked_strictly() {
        assert!(is_base64("eyJhIjoxfQ=="));
        assert!(is_base64("ab+/"));
        assert!(!is_base64("eyJhIjoxfQ="), "length");
        assert!(!is_base64("ab=c"), "padding inside");
        assert!(!is_base64("a==="), "too much padding");
        assert!(!is_base64("ab'c"));
        assert!(!is_base64("ab$(x)="));
        assert!(!is_base64(""));
        assert!(!is_base64("===="));
    }

    #[test]
    fn quoting_keeps_quotes_literal() {
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("a b"), "'a b'");
    }

    #[test]
    fn the_heredoc_delimiter_avoids_the_script_s_lines() {
        let f = setup_function("echo hi\nMAYFLY_SETUP_EOF\nMAYFLY_SETUP_EOF_1\n");
        assert!(f.contains("cat <<'MAYFLY_SETUP_EOF_2'\n"));
        assert!(f.ends_with("MAYFLY_SETUP_EOF_1\nMAYFLY_SETUP_EOF_2\n}"));
        assert!(setup_function("true").contains("true\nMAYFLY_SETUP_EOF\n"));
    }

    #[test]
    fn the_default_configuration_is_valid_and_pinned() {
        let c = BootstrapConfig::default();
        c.validate().unwrap();
        assert_eq!(c.runner_version, RUNNER_VERSION);
        assert_ne!(RUNNER_SHA256_X64, RUNNER_SHA256_ARM64);
    }

    #[test]
    fn a_new_version_needs_new_checksums() {
        let c = BootstrapConfig {
            runner_version: "2.999.0".into(),
            ..BootstrapConfig::default()
        };
        let jit = Credential::Jit(Secret::new("eyJhIjoxfQ=="));
        assert!(matches!(
            user_data(&c, Arch::Arm, &jit),
            Err(BootstrapError::Invalid {
                field: "runner_sha256_arm64",
                ..
            })
        ));
        let c = BootstrapConfig {
            runner_sha256_arm64: "a".repeat(64),
            ..c
        };
        let script = user_data(&c, Arch::Arm, &jit).unwrap();
        assert!(
            script
                .expose()
                .contains("/v2.999.0/actions-runner-linux-arm64-2.999.0.tar.gz")
        );
        assert!(
            user_data(&c, Arch::X86, &jit).is_err(),
            "x64 still has the old sum"
        );
    }

    #[test]
    fn the_shared_checks_take_only_what_a_script_can_hold() {
        assert!(is_version("2.338.0") && is_version("18.10.1"));
        for v in ["2.338", "2.338.0.1", "2..0", "v2.338.0", "2.338.x"] {
            assert!(!is_version(v), "{v}");
        }
        assert!(is_sha256(RUNNER_SHA256_X64));
        assert!(!is_sha256("abc") && !is_sha256(&"g".repeat(64)));
        assert!(safe_path("/opt/actions-runner") && safe_path("/usr/bin/gitlab-runner"));
        for p in [
            "/",
            "opt/x",
            "/opt/x y",
            "/opt/x'y",
            "/opt/../etc",
            "/opt/$x",
        ] {
            assert!(!safe_path(p), "{p}");
        }
        assert!(is_http_url("https://mirror.example/runner"));
        for u in ["ftp://mirror", "https://a b", "https://x' ; reboot '", ""] {
            assert!(!is_http_url(u), "{u:?}");
        }
    }

    #[test]
    fn unsafe_settings_are_refused() {
        let bad = [
            BootstrapConfig {
                user: "root".into(),
                ..Default::default()
            },
            BootstrapConfig {
                user: "Runner;rm".into(),
                ..Default::default()
            },
            BootstrapConfig {
                runner_dir: Some("/opt/x'y".into()),
                ..Default::default()
            },
            BootstrapConfig {
                runner_dir: Some("opt/runner".into()),
                ..Default::default()
            },
            BootstrapConfig {
                download_url: "https://mirror/x' ; reboot '".into(),
                ..Default::default()
            },
            BootstrapConfig {
                runner_version: "2.338".into(),
                ..Default::default()
            },
            BootstrapConfig {
                runner_sha256_x64: "xyz".into(),
                ..Default::default()
            },
            BootstrapConfig {
                setup_script: Some("echo \0".into()),
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

    #[test]
    fn configuration_reads_with_defaults_and_refuses_unknown_fields() {
        let c: BootstrapConfig =
            serde_json::from_str(r#"{"runner_dir": "/opt/actions-runner"}"#).unwrap();
        assert_eq!(c.runner_dir.as_deref(), Some("/opt/actions-runner"));
        assert_eq!(c.user, "runner");
        assert_eq!(c.runner_sha256_x64, RUNNER_SHA256_X64);
        assert!(serde_json::from_str::<BootstrapConfig>(r#"{"usr": "x"}"#).is_err());
    }
}
