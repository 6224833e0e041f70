//! What the GitHub and GitLab bootstrap tests share: the lint every rendered script must pass
//! (shellcheck, `bash -n`, no trace, no placeholder left) and a throwaway "machine" of stub
//! system tools that record their calls, on which a script boots.

// Each test file uses the part it needs.
#![allow(dead_code)]

use mayfly_core::Secret;
use std::path::PathBuf;
use std::process::Command;

/// The line a recording stub runs: its name and arguments, appended to `$MAYFLY_TEST_CALLS`.
pub const RECORD: &str = r#"printf '%s\n' "$(basename "$0")${*:+ $*}" >>"$MAYFLY_TEST_CALLS""#;

/// Whether `tool` is missing here (then the caller skips); in CI it must be there.
pub fn tool_missing(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is required in CI (apt-get install {tool})"
        );
        eprintln!("note: {tool} is not installed; skipped");
    }
    !found
}

pub fn bash_available() -> bool {
    !tool_missing("bash")
}

/// Every `(name, script)` starts as bash with `set -euo pipefail`, never traces (it holds a
/// credential), carries a `-setup` variant's `setup` verbatim, has none of `leftovers` outside
/// that setup script, and passes `bash -n` and shellcheck.
pub fn lint(scripts: Vec<(String, String)>, setup: &str, leftovers: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (name, script) in scripts {
        assert!(script.starts_with("#!/bin/bash\n"), "{name}");
        assert!(script.contains("\nset -euo pipefail\n"), "{name}");
        assert!(
            !script
                .lines()
                .any(|l| l.trim_start().starts_with("set -x") || l.contains("xtrace")),
            "{name}: never trace the credential"
        );
        if name.contains("-setup") {
            assert!(
                script.contains(setup),
                "{name}: the setup script is verbatim"
            );
        }
        let own = script.replace(setup, "");
        for left in leftovers {
            assert!(
                !own.contains(left),
                "{name}: a placeholder ({left}) is left"
            );
        }
        let path = dir.path().join(&name);
        std::fs::write(&path, &script).unwrap();
        paths.push(path);
    }
    if bash_available() {
        for path in &paths {
            let out = Command::new("bash").arg("-n").arg(path).output().unwrap();
            assert!(
                out.status.success(),
                "bash -n {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    if tool_missing("shellcheck") {
        return;
    }
    let out = Command::new("shellcheck").args(&paths).output().unwrap();
    assert!(
        out.status.success(),
        "shellcheck:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A throwaway machine: `bin/` of stub system tools on PATH (shutdown, poweroff, useradd,
/// chown, iptables and runuser record their calls; `id` says no user exists; `getent` gives
/// the runner user a home here), `home/` and `tmp/`.
pub struct Machine {
    pub dir: tempfile::TempDir,
}

impl Machine {
    pub fn new() -> Machine {
        let m = Machine {
            dir: tempfile::tempdir().unwrap(),
        };
        for d in ["bin", "home", "tmp"] {
            std::fs::create_dir_all(m.path(d)).unwrap();
        }
        let stubs = [
            ("shutdown", RECORD.to_string()),
            ("poweroff", RECORD.to_string()),
            ("logger", "true".to_string()),
            ("useradd", RECORD.to_string()),
            ("chown", RECORD.to_string()),
            ("iptables", RECORD.to_string()),
            ("id", "exit 1".to_string()),
            (
                "getent",
                format!(
                    "echo 'runner:x:1000:1000::{}:/bin/bash'",
                    m.path("home").display()
                ),
            ),
            // runuser -u USER -- COMMAND...: record, then run COMMAND as the test's user.
            ("runuser", format!("{RECORD}\nshift 3\nexec \"$@\"")),
        ];
        for (name, body) in stubs {
            m.script(&format!("bin/{name}"), &body);
        }
        m
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// An executable bash script at `rel` (its folder must exist).
    pub fn script(&self, rel: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(rel);
        std::fs::write(&path, format!("#!/bin/bash\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Boots: runs the user data; returns its exit status, the recorded calls and its log.
    pub fn boot(&self, user_data: &Secret, env: &[(&str, &str)]) -> (i32, Vec<String>, String) {
        let file = self.path("user-data");
        std::fs::write(&file, user_data.expose()).unwrap();
        let calls = self.path("calls");
        let out = Command::new("bash")
            .arg(&file)
            .env_clear()
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", self.path("bin").display()),
            )
            .env("TMPDIR", self.path("tmp"))
            .env("MAYFLY_TEST_CALLS", &calls)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let calls = std::fs::read_to_string(&calls).unwrap_or_default();
        (
            out.status.code().unwrap_or(-1),
            calls.lines().map(str::to_string).collect(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}
