//! The systemd unit that runs `mayfly run`, and the environment file beside it that holds the
//! secrets. One renderer for `mayfly service install` here and for `mayfly cloud` on its server.

use crate::exit::EXIT_CONFIG;
use mayfly_core::Secret;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// Longer than mayfly's own stop (a reconcile pass in flight finishes, HTTP requests get 10 s):
/// systemd's SIGKILL after this would cut a create between its intent and the cloud's answer.
pub const TIMEOUT_STOP: Duration = Duration::from_secs(90);
/// Between a failure and the restart: long enough not to hammer GitHub or the cloud while
/// something outside is broken.
pub const RESTART_SEC: Duration = Duration::from_secs(5);

/// What the unit says. Everything here is world-readable once installed: no secret goes in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    /// `mayfly` for `mayfly.service`.
    pub name: String,
    /// The absolute path of the binary, then its arguments.
    pub exec: Vec<String>,
    pub user: String,
    pub group: String,
    pub env_file: PathBuf,
    /// The only paths the service may write (the state directory); the rest of the file
    /// system is read-only to it.
    pub writable: Vec<PathBuf>,
    /// The listen port is below 1024: the service keeps the one capability that binds it.
    pub low_port: bool,
}

impl Unit {
    /// The unit file's text. Fails on a value systemd cannot hold (a newline in a path).
    pub fn render(&self) -> Result<String, String> {
        let exec = self
            .exec
            .iter()
            .map(|w| quote(w))
            .collect::<Result<Vec<_>, _>>()?
            .join(" ");
        let writable = self
            .writable
            .iter()
            .map(|p| quote(&p.to_string_lossy()))
            .collect::<Result<Vec<_>, _>>()?
            .join(" ");
        let env_file = quote(&self.env_file.to_string_lossy())?;
        let caps = if self.low_port {
            "CAP_NET_BIND_SERVICE"
        } else {
            ""
        };
        let mut u = String::new();
        let mut line = |s: &str| {
            u.push_str(s);
            u.push('\n');
        };
        line(&format!(
            "# Written by mayfly. Secrets are in {env_file} (mode 0600), never here."
        ));
        line("[Unit]");
        line("Description=mayfly: autoscaled single-use CI runners");
        line("After=network-online.target");
        line("Wants=network-online.target");
        line("");
        line("[Service]");
        line("Type=exec");
        line(&format!("User={}", self.user));
        line(&format!("Group={}", self.group));
        line(&format!("EnvironmentFile={env_file}"));
        line(&format!("ExecStart={exec}"));
        line("Restart=on-failure");
        line(&format!("RestartSec={}s", RESTART_SEC.as_secs()));
        // An invalid configuration: restarting cannot fix that.
        line(&format!("RestartPreventExitStatus={EXIT_CONFIG}"));
        line("KillSignal=SIGTERM");
        line(&format!("TimeoutStopSec={}s", TIMEOUT_STOP.as_secs()));
        line("UMask=0077");
        line("NoNewPrivileges=yes");
        line("ProtectSystem=strict");
        line("ProtectHome=read-only");
        if !writable.is_empty() {
            line(&format!("ReadWritePaths={writable}"));
        }
        line("PrivateTmp=yes");
        line("PrivateDevices=yes");
        line("ProtectKernelTunables=yes");
        line("ProtectKernelModules=yes");
        line("ProtectKernelLogs=yes");
        line("ProtectControlGroups=yes");
        line("ProtectClock=yes");
        line("ProtectHostname=yes");
        line("RestrictSUIDSGID=yes");
        line("RestrictRealtime=yes");
        line("RestrictNamespaces=yes");
        line("LockPersonality=yes");
        line("MemoryDenyWriteExecute=yes");
        line("SystemCallArchitectures=native");
        line("RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX");
        line(&format!("CapabilityBoundingSet={caps}"));
        line(&format!("AmbientCapabilities={caps}"));
        line("");
        line("[Install]");
        line("WantedBy=multi-user.target");
        Ok(u)
    }
}

/// A systemd `EnvironmentFile=`: `NAME="value"` lines. `redacted` shows every value as
/// `<redacted>`, for `--dry-run`.
pub fn env_file(vars: &[(String, Secret)], redacted: bool) -> Result<String, String> {
    let mut out =
        String::from("# Written by mayfly: the secrets of the service. Keep it mode 0600.\n");
    for (name, value) in vars {
        if !valid_name(name) {
            return Err(format!(
                "environment variable name `{name}` cannot go into a systemd environment file"
            ));
        }
        if redacted {
            let _ = writeln!(out, "{name}={}", mayfly_core::secret::REDACTED);
            continue;
        }
        let v = value.expose();
        if v.contains(['\n', '\r', '\0']) {
            // The value is not shown: it is a secret.
            return Err(format!(
                "environment variable {name} holds a line break, which a systemd environment \
                 file cannot carry"
            ));
        }
        let mut quoted = String::with_capacity(v.len() + 2);
        for c in v.chars() {
            if matches!(c, '\\' | '"' | '$' | '`') {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        let _ = writeln!(out, "{name}=\"{quoted}\"");
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One word of a systemd command line or path list: as it is when plain, else double-quoted.
/// `$` and `%` are doubled in both cases: systemd would expand them.
pub(crate) fn quote(word: &str) -> Result<String, String> {
    if word.contains(['\n', '\r', '\0']) {
        return Err(format!(
            "{word:?} holds a line break, which a systemd unit cannot carry"
        ));
    }
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    let mut out = String::with_capacity(word.len() + 2);
    if !plain {
        out.push('"');
    }
    for c in word.chars() {
        match c {
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    if !plain {
        out.push('"');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit() -> Unit {
        Unit {
            name: "mayfly".into(),
            exec: vec![
                "/usr/local/bin/mayfly".into(),
                "-c".into(),
                "/home/al ice/my 100%.toml".into(),
                "run".into(),
            ],
            user: "alice".into(),
            group: "staff".into(),
            env_file: "/etc/mayfly/mayfly.env".into(),
            writable: vec!["/var/lib/mayfly".into()],
            low_port: false,
        }
    }

    #[test]
    fn the_unit_runs_mayfly_as_the_user_restarting_on_failure_and_hardened() {
        let text = unit().render().unwrap();
        for line in [
            "User=alice",
            "Group=staff",
            "EnvironmentFile=/etc/mayfly/mayfly.env",
            r#"ExecStart=/usr/local/bin/mayfly -c "/home/al ice/my 100%%.toml" run"#,
            "Restart=on-failure",
            "RestartSec=5s",
            "RestartPreventExitStatus=2",
            "After=network-online.target",
            "Wants=network-online.target",
            "KillSignal=SIGTERM",
            "TimeoutStopSec=90s",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ReadWritePaths=/var/lib/mayfly",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=",
            "WantedBy=multi-user.target",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn a_low_port_keeps_only_the_bind_capability() {
        let text = Unit {
            low_port: true,
            ..unit()
        }
        .render()
        .unwrap();
        assert!(text.contains("\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"));
        assert!(text.contains("\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n"));
    }

    #[test]
    fn words_are_quoted_for_systemd() {
        assert_eq!(quote("/usr/bin/mayfly").unwrap(), "/usr/bin/mayfly");
        assert_eq!(quote("a b").unwrap(), "\"a b\"");
        assert_eq!(quote("$HOME\"x\\").unwrap(), "\"$$HOME\\\"x\\\\\"");
        assert_eq!(quote("").unwrap(), "\"\"");
        assert!(quote("a\nb").is_err());
    }

    #[test]
    fn the_env_file_quotes_values_and_redacts_on_request() {
        let vars = vec![
            ("GITHUB_TOKEN".to_string(), Secret::new("ghp_a\"b$c`d\\e")),
            ("HETZNER_TOKEN".to_string(), Secret::new("hz")),
        ];
        let text = env_file(&vars, false).unwrap();
        assert!(
            text.contains("\nGITHUB_TOKEN=\"ghp_a\\\"b\\$c\\`d\\\\e\"\n"),
            "{text}"
        );
        assert!(text.contains("\nHETZNER_TOKEN=\"hz\"\n"));
        let shown = env_file(&vars, true).unwrap();
        assert!(shown.contains("\nGITHUB_TOKEN=<redacted>\n"), "{shown}");
        assert!(!shown.contains("ghp_") && !shown.contains("\"hz\""));
    }

    #[test]
    fn a_value_with_a_line_break_is_refused_without_showing_it() {
        let vars = vec![("KEY".to_string(), Secret::new("top\nsecret"))];
        let e = env_file(&vars, false).unwrap_err();
        assert!(e.contains("KEY") && !e.contains("secret"), "{e}");
        let bad = vec![("1X".to_string(), Secret::new("v"))];
        assert!(env_file(&bad, false).is_err());
    }
}
