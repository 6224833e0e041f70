//! `mayfly cloud` as a process against the fake Hetzner Cloud (in this process, on a fast
//! clock) and a recording fake ssh: the server, its labels and its cloud-init user data (parsed
//! back as YAML), status, logs, start, install, upgrade and delete, bad input, and no secret
//! anywhere but in the files' content and on ssh's stdin.

mod support;

use base64::Engine;
use mayfly_sim::clock::Clock as SimClock;
use mayfly_sim::hetzner::{Hetzner as Fake, HetznerConfig as FakeConfig};
use mayfly_sim::runners::MachineSource;
use mayfly_sim::stats::Stats;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

const HZ_TOKEN: &str = "hcloud_CLOUD_SECRET_hz";
const GITHUB_TOKEN: &str = "ghp_CLOUD_SECRET_gh";
const HOOK_SECRET: &str = "whsec_CLOUD_SECRET_hook";
const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const URL: &str = "https://downloads.example.com/mayfly-x86_64-linux";
const APP_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../sim/tests/fixtures/github/test-app-key.TEST-ONLY.pem"
);

const CONFIG: &str = r#"
controller = "ci"
listen = "0.0.0.0:8080"

[github]
repositories = ["acme/app"]
webhook_secret = "${HOOK_SECRET}"

[github.app]
id = 42
installation_id = 7
private_key_file = "app.pem"

[providers.hetzner]
kind = "hetzner"
token = "${HETZNER_TOKEN}"

[[pools]]
name = "linux"
provider = "hetzner"
labels = ["self-hosted", "linux"]
types = ["cx23"]
locations = ["fsn1"]
"#;

struct World {
    _rt: tokio::runtime::Runtime,
    fake: Arc<Fake>,
    endpoint: String,
    dir: tempfile::TempDir,
}

impl World {
    /// The fake on a clock 100 times real time (a boot takes 50 ms), a config with a GitHub
    /// App key, an SSH public key, and a fake ssh that records its arguments and stdin.
    fn new() -> World {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let clock = SimClock::new(100.0);
        let fake = Fake::new(
            FakeConfig {
                token: HZ_TOKEN.into(),
                boot_delay: Duration::from_secs(5),
                ..FakeConfig::default()
            },
            clock,
            Arc::new(Stats::default()),
        );
        let endpoint = rt.block_on(fake.serve_local()).expect("serve the fake");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("mayfly.toml"), CONFIG).unwrap();
        std::fs::copy(APP_KEY, dir.path().join("app.pem")).expect("the App key fixture");
        let blob = base64::engine::general_purpose::STANDARD.encode("mayfly-test-key-blob");
        std::fs::write(
            dir.path().join("key.pub"),
            format!("ssh-ed25519 {blob} tester@laptop\n"),
        )
        .unwrap();
        let ssh = dir.path().join("ssh");
        std::fs::write(
            &ssh,
            "#!/bin/sh\nd=$(dirname \"$0\")\necho \"$*\" >> \"$d/ssh.args\"\ncat >> \"$d/ssh.stdin\"\n\
             case \"$*\" in\n  *is-active*) echo active;;\n  *journalctl*) echo 'mayfly[7]: started';;\nesac\n\
             exit \"${FAKE_SSH_EXIT:-0}\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
        World {
            _rt: rt,
            fake,
            endpoint,
            dir,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn mayfly(&self) -> Command {
        let mut cmd = support::mayfly(self.dir.path(), &[]);
        cmd.env("PATH", support::path())
            .env("HETZNER_TOKEN", HZ_TOKEN)
            .env("HCLOUD_ENDPOINT", &self.endpoint)
            .env("GITHUB_TOKEN", GITHUB_TOKEN)
            .env("HOOK_SECRET", HOOK_SECRET)
            .env("MAYFLY_SSH", self.path("ssh"));
        cmd
    }

    fn deploy(&self, extra: &[&str]) -> (i32, String, String) {
        self.deploy_with("mayfly.toml", extra)
    }

    /// `mayfly -c CONFIG cloud deploy --name ci` with the SSH key and the binary, then `extra`.
    fn deploy_with(&self, config: &str, extra: &[&str]) -> (i32, String, String) {
        run(self
            .mayfly()
            .args(["-c", config, "cloud", "deploy", "--name", "ci"])
            .args([
                "--ssh-key",
                "key.pub",
                "--binary-url",
                URL,
                "--binary-sha256",
                SHA,
            ])
            .args(extra))
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }
}

/// Runs mayfly; asserts that no secret was printed.
fn run(cmd: &mut Command) -> (i32, String, String) {
    let key = std::fs::read_to_string(APP_KEY).unwrap();
    let key_body = key.lines().nth(1).unwrap();
    support::output_without(cmd, &[HZ_TOKEN, GITHUB_TOKEN, HOOK_SECRET, key_body])
}

/// The `write_files` entry at `path`, its content decoded.
fn file<'a>(doc: &'a Yaml, path: &str) -> (&'a Yaml, String) {
    let entry = doc["write_files"]
        .as_vec()
        .expect("write_files")
        .iter()
        .find(|f| f["path"].as_str() == Some(path))
        .unwrap_or_else(|| panic!("no {path} in write_files"));
    let raw = entry["content"].as_str().unwrap_or_default();
    let content = match entry["encoding"].as_str() {
        Some("b64") => String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(raw)
                .unwrap(),
        )
        .unwrap(),
        _ => raw.to_string(),
    };
    (entry, content)
}

fn attrs(entry: &Yaml) -> (&str, &str) {
    (
        entry["owner"].as_str().unwrap_or_default(),
        entry["permissions"].as_str().unwrap_or_default(),
    )
}

#[test]
fn deploy_creates_one_labelled_server_whose_cloud_init_installs_the_controller() {
    let w = World::new();
    let (code, out, err) = w.deploy(&["--yes"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("server ci is running: 198.51."), "{out}");
    assert!(out.contains("mayfly cloud status --name ci"), "{out}");

    let servers = w.fake.servers();
    assert_eq!(servers.len(), 1);
    let s = &servers[0];
    assert_eq!(
        (s.name.as_str(), s.server_type.as_str(), s.location.as_str()),
        ("ci", "cx23", "fsn1")
    );
    assert_eq!(
        s.labels.get("mayfly-deploy").map(String::as_str),
        Some("ci")
    );
    // The runner label would make the controller delete its own server.
    assert!(
        !s.labels.contains_key(mayfly_provider::tags::CONTROLLER),
        "{:?}",
        s.labels
    );

    let user_data = w
        .fake
        .running()
        .into_iter()
        .find(|m| m.name == "ci")
        .expect("the server runs")
        .user_data;
    assert!(user_data.starts_with("#cloud-config\n"));
    let doc = YamlLoader::load_from_str(&user_data)
        .unwrap_or_else(|e| panic!("{e}\n{user_data}"))
        .remove(0);
    let users = doc["users"].as_vec().expect("users");
    assert!(
        users
            .iter()
            .any(|u| u["name"].as_str() == Some("mayfly") && u["system"].as_bool() == Some(true)),
        "{user_data}"
    );

    let (config, toml) = file(&doc, "/etc/mayfly/mayfly.toml");
    assert_eq!(attrs(config), ("mayfly:mayfly", "0600"));
    assert!(toml.contains("state_dir = \"/var/lib/mayfly\""), "{toml}");
    assert!(
        toml.contains("private_key_file = \"/etc/mayfly/github-app.pem\""),
        "{toml}"
    );
    assert!(
        toml.contains("webhook_secret = \"${GITHUB_WEBHOOK_SECRET}\""),
        "{toml}"
    );
    assert!(toml.contains("token = \"${HETZNER_TOKEN}\""), "{toml}");
    toml.parse::<toml::Table>()
        .expect("the configuration is TOML");

    let (env, vars) = file(&doc, "/etc/mayfly/mayfly.env");
    assert_eq!(attrs(env), ("root:root", "0600"));
    assert!(
        vars.contains(&format!("GITHUB_WEBHOOK_SECRET=\"{HOOK_SECRET}\"")),
        "{vars}"
    );
    assert!(
        vars.contains(&format!("HETZNER_TOKEN=\"{HZ_TOKEN}\"")),
        "{vars}"
    );
    // The App authenticates; the token in the environment is not needed on the server.
    assert!(!vars.contains(GITHUB_TOKEN), "{vars}");

    let (key, pem) = file(&doc, "/etc/mayfly/github-app.pem");
    assert_eq!(attrs(key), ("mayfly:mayfly", "0600"));
    assert_eq!(pem, std::fs::read_to_string(APP_KEY).unwrap());

    let (unit, text) = file(&doc, "/etc/systemd/system/mayfly.service");
    assert_eq!(attrs(unit), ("root:root", "0644"));
    assert!(text.contains("\nExecStart=/usr/local/bin/mayfly -c /etc/mayfly/mayfly.toml run\n"));
    assert!(
        text.contains("\nUser=mayfly\n")
            && text.contains("\nEnvironmentFile=/etc/mayfly/mayfly.env\n")
    );

    // systemd reads it without a complaint (but that the binary is not installed here).
    if let Ok(out) = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mayfly.service");
        std::fs::write(&path, &text).unwrap();
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
    } {
        let problems: Vec<String> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.contains("/usr/local/bin/mayfly is not executable"))
            .map(str::to_string)
            .collect();
        assert!(problems.is_empty(), "{problems:?}\n{text}");
    }

    let (script, install) = file(&doc, "/usr/local/lib/mayfly/install.sh");
    assert_eq!(attrs(script), ("root:root", "0700"));
    assert!(
        install.contains(&format!("fetch '{URL}' '{SHA}'")),
        "{install}"
    );
    assert!(install.contains("sha256sum --check"), "{install}");
    assert!(
        install.contains("systemctl enable --now mayfly.service"),
        "{install}"
    );
    for f in doc["write_files"].as_vec().unwrap() {
        assert_eq!(
            f["defer"].as_bool(),
            Some(true),
            "written after the users exist"
        );
    }
    let runcmd = doc["runcmd"].as_vec().expect("runcmd");
    assert_eq!(runcmd.len(), 1);
    assert_eq!(
        runcmd[0]
            .as_vec()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect::<Vec<_>>(),
        ["sh", "/usr/local/lib/mayfly/install.sh"]
    );

    // Secrets are in the files' content and nowhere else: not in any other value, not in a
    // comment (cloud-init logs its runcmd and the rest, never the content of write_files).
    let mut bare = doc.clone();
    if let Yaml::Hash(h) = &mut bare
        && let Some(Yaml::Array(files)) = h.get_mut(&Yaml::String("write_files".into()))
    {
        for f in files {
            if let Yaml::Hash(f) = f {
                f.insert(Yaml::String("content".into()), Yaml::String(String::new()));
            }
        }
    }
    let mut rest = String::new();
    YamlEmitter::new(&mut rest).dump(&bare).unwrap();
    let comments: String = user_data.lines().filter(|l| l.starts_with('#')).collect();
    let pem_body = pem.lines().nth(1).unwrap();
    for secret in [HOOK_SECRET, HZ_TOKEN, pem_body] {
        assert!(user_data.contains(secret), "{secret} not delivered");
        assert!(
            !rest.contains(secret) && !comments.contains(secret),
            "{secret} outside content"
        );
    }

    // Deploying the same name again is refused, and nothing is created.
    let (code, _, err) = w.deploy(&["--yes"]);
    assert_eq!(code, 1);
    assert!(err.contains("deployed as `ci` already"), "{err}");
    assert_eq!(w.fake.servers().len(), 1);

    assert!(w.read("ssh.args").is_empty(), "deploy itself needs no ssh");
}

#[test]
fn dry_run_prints_the_cloud_init_redacted_and_creates_nothing() {
    let w = World::new();
    let (code, out, err) = w.deploy(&["--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("#cloud-config"), "{out}");
    assert!(out.contains("HETZNER_TOKEN=<redacted>"), "{out}");
    assert!(
        out.contains("<redacted> (the GitHub App's private key)"),
        "{out}"
    );
    assert!(out.contains("ExecStart=/usr/local/bin/mayfly -c /etc/mayfly/mayfly.toml run"));
    YamlLoader::load_from_str(&out).expect("the printed cloud-init is YAML");
    assert!(w.fake.servers().is_empty());
}

#[test]
fn status_logs_start_install_upgrade_and_delete_reach_the_server() {
    let w = World::new();
    let (code, _, err) = w.deploy(&["--yes"]);
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = run(w.mayfly().args(["cloud", "status", "--name", "ci"]));
    assert_eq!(code, 0, "{out}\n{err}");
    for needle in [
        "server   ci (id ",
        "state    running",
        "type     cx23 in fsn1, image ubuntu-24.04",
        "address  198.51.",
        "cost     €0.0057 so far (1 started hours at €0.0057 an hour)",
        "service  active",
    ] {
        assert!(out.contains(needle), "no {needle:?} in\n{out}");
    }
    let args = w.read("ssh.args");
    assert!(args.contains("BatchMode=yes root@198.51."), "{args}");
    assert!(
        args.trim_end()
            .ends_with("systemctl is-active mayfly.service"),
        "{args}"
    );

    let (code, out, _) = run(w
        .mayfly()
        .args(["cloud", "logs", "--name", "ci", "-n", "20"]));
    assert_eq!(code, 0);
    assert!(out.contains("mayfly[7]: started"), "{out}");
    let (code, out, _) = run(w.mayfly().args(["cloud", "start", "--name", "ci"]));
    assert_eq!(code, 0);
    assert!(out.contains("start: mayfly.service"), "{out}");
    let calls: Vec<String> = w.read("ssh.args").lines().map(str::to_string).collect();
    assert!(
        calls[1].ends_with("journalctl -u mayfly.service --no-pager -n 20"),
        "{calls:?}"
    );
    assert!(
        calls[2].ends_with("systemctl start mayfly.service"),
        "{calls:?}"
    );

    // install: the files travel in stdin only; the command line is `sh -s`.
    let (code, out, err) =
        run(w
            .mayfly()
            .args(["-c", "mayfly.toml", "cloud", "install", "--name", "ci"]));
    assert_eq!(code, 0, "{out}\n{err}");
    let args = w.read("ssh.args");
    assert!(args.lines().last().unwrap().ends_with(" sh -s"), "{args}");
    for secret in [HZ_TOKEN, HOOK_SECRET, GITHUB_TOKEN] {
        assert!(!args.contains(secret), "{secret} on a command line");
    }
    let stdin = w.read("ssh.stdin");
    let env = heredoc(&stdin, "put /etc/mayfly/mayfly.env root:root 0600");
    assert!(
        env.contains(&format!("HETZNER_TOKEN=\"{HZ_TOKEN}\"")),
        "{env}"
    );
    assert!(
        heredoc(&stdin, "put /etc/mayfly/github-app.pem mayfly:mayfly 0600")
            .contains("PRIVATE KEY")
    );
    assert!(
        heredoc(&stdin, "put /etc/mayfly/mayfly.toml mayfly:mayfly 0600")
            .contains("controller = \"ci\"")
    );
    assert!(stdin.contains("umask 077") && stdin.contains("systemctl restart mayfly.service"));

    // upgrade: download, check, swap, restart, roll back when the service does not stay up.
    let new_sha = "a".repeat(64);
    let upgrade = |w: &World, exit: &str| {
        run(w
            .mayfly()
            .env("FAKE_SSH_EXIT", exit)
            .args(["cloud", "upgrade", "--name", "ci", "--settle", "5s"])
            .args(["--binary-url", "https://downloads.example.com/mayfly-2"])
            .args(["--binary-sha256", &new_sha]))
    };
    let before = w.read("ssh.stdin").len();
    let (code, _, err) = upgrade(&w, "0");
    assert_eq!(code, 0, "{err}");
    let script = &w.read("ssh.stdin")[before..];
    assert!(
        script.contains(&format!(
            "fetch 'https://downloads.example.com/mayfly-2' '{new_sha}'"
        )),
        "{script}"
    );
    assert!(script.contains("while [ \"$i\" -lt 5 ]"), "{script}");
    assert!(script.contains("mv -f /usr/local/bin/mayfly.previous /usr/local/bin/mayfly"));
    let (code, _, err) = upgrade(&w, "3");
    assert_eq!(code, 1);
    assert!(err.contains("the upgrade was rolled back"), "{err}");

    // delete: never without a yes.
    let (code, _, err) = run(w.mayfly().args(["cloud", "delete", "--name", "ci"]));
    assert_eq!(code, 1);
    assert!(err.contains("pass --yes"), "{err}");
    assert_eq!(w.fake.servers().len(), 1);
    let (code, out, err) = run(w
        .mayfly()
        .args(["cloud", "delete", "--name", "ci", "--yes"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("deleted server `ci`") && out.contains("mayfly delete --all"),
        "{out}"
    );
    assert!(w.fake.servers().is_empty());
    let (code, _, err) = run(w.mayfly().args(["cloud", "status", "--name", "ci"]));
    assert_eq!(code, 1);
    assert!(err.contains("no server deployed as `ci`"), "{err}");
}

/// The decoded body of the heredoc that follows the line `head` in a push script.
fn heredoc(script: &str, head: &str) -> String {
    let start = script
        .find(&format!("{head} <<'MAYFLY_EOF'\n"))
        .unwrap_or_else(|| panic!("no {head} in\n{script}"));
    let body: String = script[start..]
        .lines()
        .skip(1)
        .take_while(|l| *l != "MAYFLY_EOF")
        .collect();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn servers_without_the_deploy_label_are_never_touched() {
    let w = World::new();
    // A runner machine of the controller, named like the deployment: not the controller's.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let body = serde_json::json!({
        "name": "ci", "server_type": "cx23", "location": "fsn1", "image": "ubuntu-24.04",
        "labels": { mayfly_provider::tags::CONTROLLER: "ci" },
    });
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/servers", w.endpoint))
            .bearer_auth(HZ_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert!(status.is_success());
    let (code, _, err) = run(w
        .mayfly()
        .args(["cloud", "delete", "--name", "ci", "--yes"]));
    assert_eq!(code, 1);
    assert!(err.contains("no server deployed as `ci`"), "{err}");
    assert_eq!(w.fake.servers().len(), 1);
    // Its name is taken, so a deploy under it is refused by Hetzner, in the flag's words.
    let (code, _, err) = w.deploy(&["--yes"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("--name: Hetzner answered 409 uniqueness_error"),
        "{err}"
    );
}

#[test]
fn bad_input_is_refused_before_anything_is_created() {
    let w = World::new();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--yes", "--type", "cx99"],
            "--type cx99: Hetzner has no such server type",
        ),
        (
            &["--yes", "--location", "mars1"],
            "--location mars1: Hetzner has no such location",
        ),
        (
            &["--yes", "--type", "cax11", "--location", "ash"],
            "--type cax11 is not offered in ash",
        ),
        (
            &["--yes", "--image", "plan9"],
            "--image plan9: Hetzner answered 400 invalid_input",
        ),
    ];
    for (extra, expected) in cases {
        let (code, _, err) = w.deploy(extra);
        assert_eq!(code, 1, "{extra:?}");
        assert!(err.contains(expected), "{extra:?}: {err}");
    }
    let (code, _, err) = run(w
        .mayfly()
        .args(["-c", "mayfly.toml", "cloud", "deploy", "--binary-url", URL])
        .args(["--binary-sha256", "abc123", "--yes"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("--binary-sha256: expected 64 hexadecimal digits"),
        "{err}"
    );
    let (code, _, err) = run(w
        .mayfly()
        .args([
            "-c",
            "mayfly.toml",
            "cloud",
            "deploy",
            "--binary-url",
            "file:///tmp/m",
        ])
        .args(["--binary-sha256", SHA, "--yes", "--ssh-key", "key.pub"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("--binary-url: expected an http(s) URL"),
        "{err}"
    );
    let (code, _, err) = w.deploy(&["--yes", "--ssh-key", "mayfly.toml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("--ssh-key mayfly.toml: not an OpenSSH public key"),
        "{err}"
    );
    let (code, _, err) = w.deploy(&[]);
    assert_eq!(code, 1);
    assert!(err.contains("no terminal to ask on; pass --yes"), "{err}");

    // Over Hetzner's 32 KiB of user data: a long setup script.
    let big = format!(
        "{CONFIG}\n[bootstrap]\nsetup_script = \"\"\"\n{}\"\"\"\n",
        "echo 'install a package here'\n".repeat(1500)
    );
    std::fs::write(w.path("big.toml"), big).unwrap();
    let (code, _, err) = w.deploy_with("big.toml", &["--yes"]);
    assert_eq!(code, 1);
    assert!(err.contains("over Hetzner's limit of 32768 bytes"), "{err}");

    // An invalid configuration: exit 2, named by file and line.
    std::fs::write(
        w.path("bad.toml"),
        "[github]\nrepositories = [\"acme/app\"]\nmx = 1\n",
    )
    .unwrap();
    let (code, _, err) = w.deploy_with("bad.toml", &["--yes"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.toml:3:1: github.mx: unknown key"),
        "{err}"
    );

    // A token of another project (or none that works): Hetzner's own words.
    let (code, _, err) = run(w
        .mayfly()
        .env("HETZNER_TOKEN", "not-the-project-token")
        .args(["cloud", "status", "--name", "ci"]));
    assert_eq!(code, 1);
    assert!(err.contains("Hetzner answered 401 unauthorized"), "{err}");

    assert!(w.fake.servers().is_empty(), "nothing was created");
}
