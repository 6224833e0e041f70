//! The #cloud-config that turns a fresh server into the controller: a `mayfly` system user, the
//! bundle's files through `write_files` (whose content cloud-init never logs), the install script.

use super::bundle::{self, Bundle};
use super::scripts;
use base64::Engine;
use mayfly_core::Secret;
use std::fmt::Write as _;

/// Hetzner refuses larger user data.
pub const MAX_USER_DATA: usize = mayfly_provider::bootstrap::MAX_USER_DATA;
/// Where the install script waits for cloud-init's last stage.
pub const INSTALL_SCRIPT: &str = "/usr/local/lib/mayfly/install.sh";

/// The user data, and the same with every secret shown as `<redacted>` (for `--dry-run`).
pub struct CloudInit {
    pub user_data: Secret,
    pub shown: String,
}

/// Renders the cloud-config; fails when it is over Hetzner's limit.
pub fn render(name: &str, b: &Bundle, url: &str, sha256: &str) -> anyhow::Result<CloudInit> {
    let install = scripts::install(url, sha256);
    let real = document(name, b, &install, false);
    if real.len() > MAX_USER_DATA {
        let config = b
            .files
            .iter()
            .find(|f| f.path == bundle::CONFIG)
            .map_or(0, |f| f.content.expose().len());
        anyhow::bail!(
            "the cloud-init user data is {} bytes, over Hetzner's limit of {MAX_USER_DATA} \
             bytes; the configuration makes {config} bytes of it (a long bootstrap.setup_script? \
             install a script on the runners' image instead)",
            real.len()
        );
    }
    let shown = b.redact(&document(name, b, &install, true));
    Ok(CloudInit {
        user_data: Secret::new(real),
        shown,
    })
}

fn document(name: &str, b: &Bundle, install: &str, redacted: bool) -> String {
    let user = bundle::USER;
    let mut y = format!(
        "#cloud-config\n\
         # The mayfly controller `{name}`, set up by `mayfly cloud deploy`. cloud-init writes the\n\
         # files below without logging their content; no secret is on a command line.\n\
         users:\n  - default\n  - name: {user}\n    system: true\n    homedir: {}\n    \
         no_create_home: true\n    shell: /usr/sbin/nologin\n    lock_passwd: true\n\
         write_files:\n",
        bundle::STATE_DIR
    );
    for f in &b.files {
        let text = if redacted {
            f.shown.as_str()
        } else {
            f.content.expose()
        };
        file(&mut y, f.path, f.owner, f.mode, text);
    }
    file(&mut y, INSTALL_SCRIPT, "root:root", 0o700, install);
    let _ = write!(y, "runcmd:\n  - [sh, {INSTALL_SCRIPT}]\n");
    y
}

/// One `write_files` entry. Deferred to cloud-init's last stage: the `mayfly` user exists then.
fn file(y: &mut String, path: &str, owner: &str, mode: u32, text: &str) {
    let _ = write!(
        y,
        "  - path: {path}\n    owner: {owner}\n    permissions: '{mode:04o}'\n    defer: true\n"
    );
    if literal_ok(text) {
        let chomp = if text.ends_with("\n\n") {
            "+"
        } else if text.ends_with('\n') {
            ""
        } else {
            "-"
        };
        let _ = writeln!(y, "    content: |{chomp}");
        let body = text.strip_suffix('\n').unwrap_or(text);
        for line in body.split('\n') {
            if line.is_empty() {
                y.push('\n');
            } else {
                let _ = writeln!(y, "      {line}");
            }
        }
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(text);
        let _ = write!(y, "    encoding: b64\n    content: {encoded}\n");
    }
}

/// Whether `text` survives a YAML literal block as it is (YAML 1.1, as cloud-init reads it):
/// printable characters and tabs only, no carriage returns or Unicode line breaks, and a first
/// line that does not start with blanks (it sets the block's indentation).
fn literal_ok(text: &str) -> bool {
    let printable = |c: char| {
        c == '\n'
            || c == '\t'
            || (c >= ' '
                && c != '\u{7f}'
                && !('\u{80}'..='\u{9f}').contains(&c)
                && !matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                ))
    };
    let first = text.lines().find(|l| !l.is_empty());
    !text.is_empty()
        && text.chars().all(printable)
        && first.is_some_and(|l| !l.starts_with([' ', '\t']))
}

#[cfg(test)]
mod tests {
    use super::*;
    use yaml_rust2::{Yaml, YamlLoader};

    fn parse(text: &str) -> Yaml {
        YamlLoader::load_from_str(text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .remove(0)
    }

    #[test]
    fn text_of_any_shape_comes_back_from_the_yaml_unchanged() {
        let cases = [
            "a = 1\n",
            "no newline at the end",
            "two newlines\n\n",
            "\n\nstarts empty\n",
            "  starts indented\n",
            "tab\tinside\nand: colons # and hashes\n'quotes\" and \\ backslashes\n",
            "windows\r\nline\r\n",
            "",
            "key = \"\u{2028}\"\n",
        ];
        for text in cases {
            let mut y = String::from("write_files:\n");
            file(&mut y, "/x", "root:root", 0o600, text);
            let doc = parse(&y);
            let entry = &doc["write_files"][0];
            let content = entry["content"].as_str().unwrap_or_default();
            let decoded = match entry["encoding"].as_str() {
                Some("b64") => String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(content)
                        .unwrap(),
                )
                .unwrap(),
                _ => content.to_string(),
            };
            assert_eq!(decoded, text, "{y}");
            assert_eq!(entry["permissions"].as_str(), Some("0600"));
        }
    }
}
