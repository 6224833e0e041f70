//! `mayfly service` as a user runs it: `--dry-run` output, a real install into a temporary unit
//! directory with a recording fake systemctl, uninstall, and bad input. No secret is ever printed.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use support::BIN;

const GITHUB_TOKEN: &str = "ghp_SVC_SECRET_gh";
const HETZNER_TOKEN: &str = "hz_SVC_SECRET_hz";
const HOOK_SECRET: &str = "whsec_SVC_SECRET_hook";
const EXTRA: &str = "x_SVC_SECRET_extra";
const SECRETS: [&str; 4] = [GITHUB_TOKEN, HETZNER_TOKEN, HOOK_SECRET, EXTRA];

const CONFIG: &str = r#"
[github]
repositories = ["acme/app"]
webhook_secret = "${HOOK_SECRET}"
"#;

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("mayfly.toml");
        std::fs::write(&config, CONFIG).expect("write config");
        // Fake systemctl and journalctl: each call is a line in calls.log; `status` says 3.
        for tool in ["systemctl", "journalctl"] {
            let path = dir.path().join(tool);
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\necho \"{tool} $*\" >> \"$(dirname \"$0\")/calls.log\"\n\
                     case \"$1\" in status) exit 3;; esac\n"
                ),
            )
            .expect("write fake");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .expect("chmod fake");
        }
        Setup { dir, config }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `mayfly` with a clean environment: the tokens, the fakes, units and env files in the
    /// temporary directory.
    fn mayfly(&self) -> Command {
        let mut cmd = support::mayfly(self.dir.path(), &[]);
        cmd.env("PATH", support::path())
            .env("GITHUB_TOKEN", GITHUB_TOKEN)
            .env("HETZNER_TOKEN", HETZNER_TOKEN)
            .env("HOOK_SECRET", HOOK_SECRET)
            .env("MAYFLY_EXTRA_SETTING", EXTRA)
            .env("MAYFLY_SYSTEMD_DIR", self.path("units"))
            .env("MAYFLY_ENV_DIR", self.path("etc"))
            .env("MAYFLY_SYSTEMCTL", self.path("systemctl"))
            .env("MAYFLY_JOURNALCTL", self.path("journalctl"));
        cmd
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    support::output_without(cmd, &SECRETS)
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").expect("/proc/self").uid() == 0
}

/// The name of the user running the tests.
fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn exe() -> String {
    std::fs::canonicalize(BIN)
        .expect("the binary")
        .display()
        .to_string()
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

/// What `systemd-analyze verify` finds wrong with a unit (an unknown key, a bad value); `None`
/// where systemd is not installed.
fn verify_unit(text: &str) -> Option<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mayfly.service");
    std::fs::write(&path, text).expect("write the unit");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn dry_run_prints_the_unit_the_redacted_environment_and_the_commands() {
    let s = Setup::new();
    let (code, out, err) = run(s
        .mayfly()
        .arg("-c")
        .arg(&s.config)
        .args(["--listen", "127.0.0.1:9090", "--log-level", "debug"])
        .args(["service", "install", "--dry-run"]));
    assert_eq!(code, 0, "{out}\n{err}");
    let state = s.path(".local/state/mayfly");
    let exec = format!(
        "ExecStart={} -c {} --state sqlite://{}/mayfly.db --listen 127.0.0.1:9090 --log-level debug run",
        exe(),
        s.config.display(),
        state.display()
    );
    for line in [
        exec.as_str(),
        &format!("User={}", whoami()),
        &format!("EnvironmentFile={}", s.path("etc/mayfly.env").display()),
        &format!("ReadWritePaths={}", state.display()),
        "Restart=on-failure",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "GITHUB_TOKEN=<redacted>",
        "HETZNER_TOKEN=<redacted>",
        "HOOK_SECRET=<redacted>",
        "MAYFLY_EXTRA_SETTING=<redacted>",
        &format!("{} daemon-reload", s.path("systemctl").display()),
        &format!(
            "{} enable --now mayfly.service",
            s.path("systemctl").display()
        ),
    ] {
        assert!(has_line(&out, line), "no line {line:?} in\n{out}");
    }
    // The flags' own variables and the test overrides are not copied into the service.
    for absent in ["MAYFLY_SYSTEMCTL=", "MAYFLY_SYSTEMD_DIR=", "MAYFLY_LISTEN="] {
        assert!(!out.contains(absent), "{absent} in\n{out}");
    }
    assert!(!s.path("units").exists() && !s.path("etc").exists() && !state.exists());
    assert!(s.calls().is_empty());

    // systemd itself reads the unit without a complaint.
    let unit_head = format!("# {}", s.path("units/mayfly.service").display());
    let unit: String = out
        .lines()
        .skip_while(|l| *l != unit_head)
        .skip(1)
        .take_while(|l| !l.starts_with(&format!("# {}", s.path("etc").display())))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(unit.contains("[Service]"), "{out}");
    match verify_unit(&unit) {
        Some(problems) => assert_eq!(problems.trim(), "", "{unit}"),
        None => eprintln!("systemd-analyze is not installed: the unit's syntax is not verified"),
    }
}

#[test]
fn a_database_url_goes_to_the_environment_file_never_into_the_unit() {
    let s = Setup::new();
    let (code, out, err) = run(s
        .mayfly()
        .arg("-c")
        .arg(&s.config)
        .args(["--state", "postgres://mayfly:pg_SVC_SECRET@db/mayfly"])
        .args(["service", "install", "--dry-run"]));
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("pg_SVC_SECRET"), "{out}");
    assert!(has_line(&out, "MAYFLY_STATE=<redacted>"), "{out}");
    assert!(!out.contains("--state"), "{out}");
}

#[test]
fn through_sudo_the_service_runs_as_the_user_behind_it() {
    if !is_root() {
        return; // SUDO_USER only counts for root; covered where the tests run as root (CI).
    }
    let s = Setup::new();
    let (code, out, err) = run(s
        .mayfly()
        .env("SUDO_USER", "nobody")
        .arg("-c")
        .arg(&s.config)
        .args(["service", "install", "--dry-run"]));
    assert_eq!(code, 0, "{err}");
    assert!(has_line(&out, "User=nobody"), "{out}");
    // The default state is in nobody's home, where their own `mayfly run` keeps it.
    let home = String::from_utf8_lossy(
        &Command::new("getent")
            .args(["passwd", "nobody"])
            .output()
            .expect("getent")
            .stdout,
    )
    .split(':')
    .nth(5)
    .expect("a home")
    .to_string();
    assert!(
        out.contains(&format!(
            "--state sqlite://{home}/.local/state/mayfly/mayfly.db"
        )),
        "{out}"
    );
}

#[test]
fn install_writes_the_unit_and_a_private_environment_file_then_uninstall_removes_them() {
    let s = Setup::new();
    let install = |s: &Setup| {
        run(s
            .mayfly()
            .arg("-c")
            .arg(&s.config)
            .args(["service", "install"]))
    };
    let (code, out, err) = install(&s);
    if !is_root() {
        assert_eq!(code, 1);
        assert!(err.contains("needs root"), "{err}");
        return;
    }
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("installed and started mayfly.service"),
        "{out}"
    );

    let unit = std::fs::read_to_string(s.path("units/mayfly.service")).expect("the unit");
    assert!(has_line(&unit, "User=root"), "{unit}");
    assert!(unit.contains(&format!("ExecStart={} -c ", exe())), "{unit}");
    for secret in SECRETS {
        assert!(!unit.contains(secret), "a secret in the unit:\n{unit}");
    }
    let unit_mode = std::fs::metadata(s.path("units/mayfly.service"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(unit_mode & 0o777, 0o644);

    let env_path = s.path("etc/mayfly.env");
    let env = std::fs::read_to_string(&env_path).expect("the environment file");
    assert_eq!(
        std::fs::metadata(&env_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for line in [
        format!("GITHUB_TOKEN=\"{GITHUB_TOKEN}\""),
        format!("HETZNER_TOKEN=\"{HETZNER_TOKEN}\""),
        format!("HOOK_SECRET=\"{HOOK_SECRET}\""),
        format!("MAYFLY_EXTRA_SETTING=\"{EXTRA}\""),
    ] {
        assert!(has_line(&env, &line), "no {line} in\n{env}");
    }
    assert!(
        s.path(".local/state/mayfly").is_dir(),
        "the state directory"
    );
    assert_eq!(
        s.calls(),
        [
            "systemctl daemon-reload",
            "systemctl enable --now mayfly.service"
        ]
    );

    // Again: the unit is updated and the running service restarted.
    let (code, out, _) = install(&s);
    assert_eq!(code, 0);
    assert!(out.contains("updated and restarted"), "{out}");
    assert_eq!(
        s.calls()[2..],
        [
            "systemctl daemon-reload",
            "systemctl enable mayfly.service",
            "systemctl restart mayfly.service"
        ]
    );

    let (code, out, err) = run(s.mayfly().args(["service", "uninstall"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("uninstalled mayfly.service"), "{out}");
    assert!(!s.path("units/mayfly.service").exists() && !env_path.exists());
    assert_eq!(
        s.calls()[5..],
        [
            "systemctl disable --now mayfly.service",
            "systemctl daemon-reload"
        ]
    );
    let (code, _, err) = run(s.mayfly().args(["service", "uninstall"]));
    assert_eq!(code, 1);
    assert!(err.contains("no service mayfly.service installed"), "{err}");
}

#[test]
fn control_commands_call_systemctl_and_journalctl() {
    let s = Setup::new();
    let (code, out, _) =
        run(s
            .mayfly()
            .args(["service", "logs", "-f", "--dry-run", "--name", "ci"]));
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!(
            "{} -u ci.service --no-pager -n 100 -f",
            s.path("journalctl").display()
        )
    );
    let (code, _, _) = run(s.mayfly().args(["service", "logs", "-n", "5"]));
    assert_eq!(code, 0);
    // `systemctl status` answers 3 for a service that is not running; so does mayfly.
    let (code, _, _) = run(s.mayfly().args(["service", "status"]));
    assert_eq!(code, 3);
    let mut expected = vec![
        "journalctl -u mayfly.service --no-pager -n 5",
        "systemctl status mayfly.service --no-pager",
    ];
    if is_root() {
        for verb in ["start", "stop"] {
            let (code, _, err) = run(s.mayfly().args(["service", verb]));
            assert_eq!(code, 0, "{err}");
        }
        expected.extend([
            "systemctl start mayfly.service",
            "systemctl stop mayfly.service",
        ]);
    }
    assert_eq!(s.calls(), expected);
}

#[test]
fn bad_input_is_named() {
    let s = Setup::new();
    let (code, _, err) =
        run(s
            .mayfly()
            .args(["-c", "missing.toml", "service", "install", "--dry-run"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("missing.toml") && err.contains("cannot read the config file"),
        "{err}"
    );

    let (code, _, err) = run(s.mayfly().args(["service", "start", "--name", "../evil"]));
    assert_eq!(code, 1);
    assert!(err.contains("--name \"../evil\""), "{err}");

    let (code, _, err) = run(s.mayfly().args(["service", "status", "--timeout", "soon"]));
    assert_eq!(code, 2);
    assert!(err.contains("--timeout"), "{err}");

    // A timeout that passes: the fake hangs.
    let hang = s.path("hang");
    std::fs::write(&hang, "#!/bin/sh\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, _, err) = run(s.mayfly().env("MAYFLY_SYSTEMCTL", &hang).args([
        "service",
        "status",
        "--timeout",
        "300ms",
    ]));
    assert_eq!(code, 1);
    assert!(err.contains("did not finish within 300ms"), "{err}");
}

#[test]
fn installing_without_root_asks_for_sudo() {
    let mut cmd = if is_root() {
        // Run as nobody: the tests themselves run as root here.
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    cmd.env_clear()
        .current_dir("/")
        .env("PATH", support::path())
        .env("GITHUB_TOKEN", GITHUB_TOKEN)
        .args(["service", "install"]);
    let (code, _, err) = run(&mut cmd);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("install needs root") && err.contains("sudo -E mayfly service install"),
        "{err}"
    );
}
