//! The shell scripts run on the controller's server: install the binary (cloud-init), push the
//! files again, remove them, upgrade with a rollback. Over ssh they travel on stdin, never as
//! arguments, so the files' secrets stay off every command line and log.

use super::bundle::{self, Bundle};
use base64::Engine;
use mayfly_core::Secret;
use std::fmt::Write as _;

/// A download mayfly will run as root: an http(s) URL that a single-quoted shell word can hold.
pub fn check_url(url: &str) -> Result<(), String> {
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    let chars_ok = url.chars().all(|c| c.is_ascii_graphic() && c != '\'');
    if !scheme_ok || !chars_ok || url.len() < 10 {
        return Err(format!(
            "--binary-url: expected an http(s) URL without spaces or quotes, like \
             https://example.com/mayfly-x86_64-linux (got {url:?})"
        ));
    }
    Ok(())
}

/// A SHA-256 as 64 hexadecimal digits; returned in lower case.
pub fn check_sha256(hex: &str) -> Result<String, String> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "--binary-sha256: expected 64 hexadecimal digits (the output of `sha256sum FILE`), \
             got {} characters",
            hex.len()
        ));
    }
    Ok(hex.to_ascii_lowercase())
}

/// `fetch URL SHA256 DEST`: downloads with retries (a fresh server's network may take a moment)
/// for at most about four minutes, and keeps the file only if the SHA-256 matches.
const FETCH: &str = r#"fetch() {
  curl --fail --silent --show-error --location --retry 5 --retry-delay 3 --retry-all-errors \
    --retry-max-time 120 --connect-timeout 20 --max-time 120 -o "$3" "$1"
  if ! echo "$2  $3" | sha256sum --check --status; then
    echo "mayfly: the download from $1 does not have SHA-256 $2; nothing installed" >&2
    return 1
  fi
  chmod 0755 "$3"
}
"#;

/// Run once by cloud-init on the new server, after its files are written: the binary, the
/// state directory, the service started.
pub fn install(url: &str, sha256: &str) -> String {
    let (binary, service, state) = (bundle::BINARY, bundle::SERVICE, bundle::STATE_DIR);
    let user = bundle::USER;
    format!(
        r#"#!/bin/sh
# Installs mayfly from {url} (SHA-256 checked) and starts {service}. Written by `mayfly cloud deploy`.
set -eu
{FETCH}
tmp=$(mktemp {binary}.XXXXXX)
trap 'rm -f "$tmp"' EXIT
fetch '{url}' '{sha256}' "$tmp"
mv -f "$tmp" {binary}
install -d -o {user} -g {user} -m 0750 {state}
systemctl daemon-reload
systemctl enable --now {service}
echo "mayfly: installed $({binary} --version) and started {service}"
"#
    )
}

/// Swaps the binary for the download, restarts the service, and puts the old binary back when
/// the service does not stay active for `settle_secs`.
pub fn upgrade(url: &str, sha256: &str, settle_secs: u64) -> String {
    let (binary, service) = (bundle::BINARY, bundle::SERVICE);
    format!(
        r#"set -eu
{FETCH}
new=$(mktemp {binary}.XXXXXX)
trap 'rm -f "$new"' EXIT
fetch '{url}' '{sha256}' "$new"
if ! "$new" --version >/dev/null; then
  echo "mayfly: the new binary does not run on this server; nothing changed" >&2
  exit 1
fi
old=$({binary} --version 2>/dev/null || echo unknown)
cp -p {binary} {binary}.previous
mv -f "$new" {binary}
systemctl restart {service}
i=0
while [ "$i" -lt {settle_secs} ]; do
  sleep 1
  if ! systemctl is-active --quiet {service}; then
    echo "mayfly: {service} did not stay active on the new binary; rolled back to $old" >&2
    mv -f {binary}.previous {binary}
    systemctl restart {service}
    exit 3
  fi
  i=$((i + 1))
done
echo "mayfly: upgraded from $old to $({binary} --version); the old binary is {binary}.previous"
"#
    )
}

/// Writes the bundle's files again (each to a new 0600 file that replaces the old one), then
/// restarts the service. The script holds the secrets: it is itself a secret.
pub fn push(b: &Bundle) -> Secret {
    let (user, state, service) = (bundle::USER, bundle::STATE_DIR, bundle::SERVICE);
    let mut s = format!(
        r#"set -eu
umask 077
id {user} >/dev/null 2>&1 || useradd --system --home-dir {state} --shell /usr/sbin/nologin {user}
install -d -m 0755 /etc/mayfly
install -d -o {user} -g {user} -m 0750 {state}
put() {{
  tmp=$(mktemp "$1.XXXXXX")
  base64 -d > "$tmp"
  chown "$2" "$tmp"
  chmod "$3" "$tmp"
  mv -f "$tmp" "$1"
}}
"#
    );
    for f in &b.files {
        let encoded = base64::engine::general_purpose::STANDARD.encode(f.content.expose());
        let _ = writeln!(
            s,
            "put {} {} {:04o} <<'MAYFLY_EOF'",
            f.path, f.owner, f.mode
        );
        for chunk in encoded.as_bytes().chunks(76) {
            s.push_str(&String::from_utf8_lossy(chunk));
            s.push('\n');
        }
        s.push_str("MAYFLY_EOF\n");
    }
    if !b.files.iter().any(|f| f.path == bundle::APP_KEY) {
        let _ = writeln!(s, "rm -f {}", bundle::APP_KEY);
    }
    let _ = write!(
        s,
        "systemctl daemon-reload\nsystemctl enable {service}\nsystemctl restart {service}\n\
         echo \"mayfly: configuration installed and {service} restarted\"\n"
    );
    Secret::new(s)
}

/// Stops and disables the service and removes its unit, configuration and secrets; the binary
/// and the state stay.
pub fn uninstall() -> String {
    let service = bundle::SERVICE;
    format!(
        "set -eu\nsystemctl disable --now {service} || true\nrm -f {} {} {} {}\n\
         systemctl daemon-reload\necho \"mayfly: {service} removed; {} and {} kept\"\n",
        bundle::UNIT,
        bundle::ENV,
        bundle::CONFIG,
        bundle::APP_KEY,
        bundle::BINARY,
        bundle::STATE_DIR,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_checksums_are_checked() {
        assert!(check_url("https://example.com/mayfly").is_ok());
        for bad in ["ftp://x/y", "https://x/a b", "https://x/it's", "mayfly"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        let hex = "AB".repeat(32);
        assert_eq!(check_sha256(&hex).unwrap(), "ab".repeat(32));
        assert!(check_sha256("abc").unwrap_err().contains("64 hexadecimal"));
        assert!(check_sha256(&"g".repeat(64)).is_err());
    }

    #[test]
    fn the_install_script_checks_the_download_before_installing_it() {
        let s = install("https://example.com/m", &"a".repeat(64));
        let check = s.find("sha256sum --check").unwrap();
        let fetch = s.find(&format!(
            "fetch 'https://example.com/m' '{}'",
            "a".repeat(64)
        ));
        let mv = s.find("mv -f \"$tmp\" /usr/local/bin/mayfly").unwrap();
        assert!(fetch.is_some_and(|f| check < f && f < mv), "{s}");
        assert!(s.contains("systemctl enable --now mayfly.service"));
    }

    /// Runs `script` with its binary path moved into `dir`, and fakes of curl (copies
    /// `dir/download`) and systemctl (the service is active while the binary says `good`).
    fn sandboxed(dir: &std::path::Path, script: &str) -> (i32, String) {
        use std::os::unix::fs::PermissionsExt;
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let fakes = [
            (
                "curl",
                "while [ $# -gt 1 ]; do [ \"$1\" = -o ] && out=$2; shift; done\n\
                 cp \"$(dirname \"$0\")/../download\" \"$out\"",
            ),
            (
                "systemctl",
                "echo \"systemctl $*\" >> \"$(dirname \"$0\")/../calls\"\n\
                 case \"$1\" in is-active) \"$(dirname \"$0\")/../mayfly\" --version | grep -q good;; esac",
            ),
        ];
        for (name, body) in fakes {
            let path = bin.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let script = script.replace(
            "/usr/local/bin/mayfly",
            &dir.join("mayfly").to_string_lossy(),
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn binary(path: &std::path::Path, version: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let text = format!("#!/bin/sh\necho 'mayfly {version}'\n");
        std::fs::write(path, &text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    }

    fn version(dir: &std::path::Path) -> String {
        let out = std::process::Command::new(dir.join("mayfly"))
            .arg("--version")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    fn an_upgrade_keeps_a_binary_that_stays_up_and_rolls_back_one_that_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        binary(&d.join("mayfly"), "good 1");

        let sha = binary(&d.join("download"), "good 2");
        let (code, err) = sandboxed(d, &upgrade("https://example.com/m", &sha, 1));
        assert_eq!(code, 0, "{err}");
        assert_eq!(version(d), "mayfly good 2");
        assert!(d.join("mayfly.previous").exists());

        let sha = binary(&d.join("download"), "bad 3");
        let (code, err) = sandboxed(d, &upgrade("https://example.com/m", &sha, 1));
        assert_eq!(code, 3, "{err}");
        assert!(err.contains("rolled back to mayfly good 2"), "{err}");
        assert_eq!(version(d), "mayfly good 2");

        // A download that is not the one named: nothing changes.
        binary(&d.join("download"), "good 4");
        let (code, err) = sandboxed(d, &upgrade("https://example.com/m", &"0".repeat(64), 1));
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("does not have SHA-256"), "{err}");
        assert_eq!(version(d), "mayfly good 2");
        let calls = std::fs::read_to_string(d.join("calls")).unwrap();
        assert_eq!(calls.matches("systemctl restart mayfly.service").count(), 3);
    }

    #[test]
    fn every_script_is_valid_shell() {
        let b = Bundle {
            files: Vec::new(),
            secrets: Vec::new(),
        };
        for script in [
            install("https://example.com/m", &"a".repeat(64)),
            upgrade("https://example.com/m", &"a".repeat(64), 5),
            push(&b).expose().to_string(),
            uninstall(),
        ] {
            let out = std::process::Command::new("sh")
                .args(["-n", "-c", &script])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}\n{script}",
                String::from_utf8_lossy(&out.stderr)
            );
            // shellcheck, where installed (scripts/test needs it anyway).
            let check = std::process::Command::new("shellcheck")
                .args(["-s", "sh", "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn();
            if let Ok(mut child) = check {
                use std::io::Write;
                let mut stdin = child.stdin.take().unwrap();
                stdin.write_all(script.as_bytes()).unwrap();
                drop(stdin);
                let out = child.wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "{}\n{script}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
        }
    }
}
