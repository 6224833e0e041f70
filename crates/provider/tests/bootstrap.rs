//! The runner bootstrap as a machine sees it: rendered scripts linted by shellcheck and parsed by
//! bash, run against stub system tools, and redeemed by the simulated GitHub.

use mayfly_core::{Arch, Secret};
use mayfly_provider::bootstrap::{
    BootstrapConfig, BootstrapError, Credential, MAX_USER_DATA, RUNNER_SHA256_ARM64,
    RUNNER_SHA256_X64, RUNNER_VERSION, user_data,
};
use mayfly_sim::clock::Clock;
use mayfly_sim::github::{Github, GithubConfig, NewJob};
use mayfly_sim::stats::Stats;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use support::{Machine, RECORD, bash_available, lint, tool_missing};

mod support;

/// Shaped like GitHub's: standard base64 with padding.
const JIT: &str = "eyIucnVubmVyIjoiZXlKQloyVnVkRWxrSWpvM2ZRPT0iLCIuY3JlZGVudGlhbHMiOiJlMzA9In0=";
const TOKEN: &str = "AABBCCDDEEFFGGHHIIJJKKLLMM234";

/// A setup script that would break any naive embedding: quotes, expansions, a line equal to the
/// here-document delimiter mayfly tries first, and no trailing newline.
const TRICKY_SETUP: &str = "#!/bin/bash\nset -eu\necho \"it's $HOME $(id -u) `date`\" '\\'\nMAYFLY_SETUP_EOF\ncat <<'EOF'\n@RUNNER_USER@ # @START_RUNNER@\nEOF\nexit 0";

fn jit() -> Credential {
    Credential::Jit(Secret::new(JIT))
}

fn token(group: Option<&str>, labels: &[&str]) -> Credential {
    Credential::Token {
        url: "https://github.com/acme".into(),
        token: Secret::new(TOKEN),
        name: "mayfly-web-1".into(),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        group: group.map(str::to_string),
    }
}

fn render(config: &BootstrapConfig, arch: Arch, credential: &Credential) -> String {
    user_data(config, arch, credential)
        .unwrap()
        .expose()
        .to_string()
}

/// Every combination the tests lint: both credentials, both architectures, with and without a
/// runner in the image and a setup script.
fn all_variants() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let credentials = [
        ("jit", jit()),
        (
            "token",
            token(
                Some("Linux builders"),
                &["linux", "image-x86-system-ubuntu-24.04"],
            ),
        ),
        ("token-bare", token(None, &[])),
    ];
    for (cname, credential) in &credentials {
        for (aname, arch) in [("x64", Arch::X86), ("arm64", Arch::Arm)] {
            for runner_dir in [None, Some("/opt/actions-runner".to_string())] {
                for setup in [None, Some(TRICKY_SETUP.to_string())] {
                    let name = format!(
                        "{cname}-{aname}-{}-{}.sh",
                        if runner_dir.is_some() {
                            "baked"
                        } else {
                            "download"
                        },
                        if setup.is_some() { "setup" } else { "plain" },
                    );
                    let config = BootstrapConfig {
                        runner_dir: runner_dir.clone(),
                        setup_script: setup,
                        ..BootstrapConfig::default()
                    };
                    out.push((name, render(&config, arch, credential)));
                }
            }
        }
    }
    out
}

#[test]
fn every_rendered_script_passes_shellcheck_and_bash_n() {
    lint(all_variants(), TRICKY_SETUP, &["@RUNNER_", "# @S"]);
}

#[test]
fn the_credential_appears_once_quoted_as_one_word() {
    let config = BootstrapConfig::default();
    let script = render(&config, Arch::X86, &jit());
    assert_eq!(script.matches(JIT).count(), 1);
    assert!(script.contains(&format!("./run.sh --jitconfig '{JIT}'\n")));
    assert!(
        !script.contains("--token") && !script.contains("./config.sh"),
        "a JIT runner registers nothing"
    );

    let script = render(&config, Arch::X86, &token(Some("it's"), &["linux", "gpu"]));
    assert_eq!(script.matches(TOKEN).count(), 1);
    for part in [
        "./config.sh --unattended --ephemeral --disableupdate",
        "--url 'https://github.com/acme'",
        &format!("--token '{TOKEN}'"),
        "--name 'mayfly-web-1'",
        "--labels 'linux,gpu'",
        r"--runnergroup 'it'\''s'",
        "as_runner ./run.sh\n",
    ] {
        assert!(script.contains(part), "{part}");
    }
    assert!(!script.contains("--jitconfig"));
    let bare = render(&config, Arch::X86, &token(None, &[]));
    assert!(!bare.contains("--labels") && !bare.contains("--runnergroup"));
}

#[test]
fn the_checksum_for_the_arch_is_in_the_script() {
    let config = BootstrapConfig::default();
    let x64 = render(&config, Arch::X86, &jit());
    assert!(x64.contains(&format!("readonly RUNNER_SHA256='{RUNNER_SHA256_X64}'")));
    assert!(x64.contains(&format!(
        "'https://github.com/actions/runner/releases/download/v{RUNNER_VERSION}/actions-runner-linux-x64-{RUNNER_VERSION}.tar.gz'"
    )));
    assert!(!x64.contains(RUNNER_SHA256_ARM64));
    assert!(x64.contains("sha256sum -c"));

    let arm = render(&config, Arch::Arm, &jit());
    assert!(arm.contains(&format!("readonly RUNNER_SHA256='{RUNNER_SHA256_ARM64}'")));
    assert!(arm.contains(&format!(
        "actions-runner-linux-arm64-{RUNNER_VERSION}.tar.gz"
    )));
    assert!(!arm.contains(RUNNER_SHA256_X64));

    let mirror = BootstrapConfig {
        download_url: "https://mirror.example/runner/".into(),
        ..BootstrapConfig::default()
    };
    assert!(render(&mirror, Arch::X86, &jit()).contains(&format!(
        "'https://mirror.example/runner/v{RUNNER_VERSION}/actions-runner-linux-x64-"
    )));

    let baked = BootstrapConfig {
        runner_dir: Some("/opt/actions-runner".into()),
        ..BootstrapConfig::default()
    };
    let script = render(&baked, Arch::Arm, &jit());
    assert!(script.contains("readonly RUNNER_DIR='/opt/actions-runner'"));
    assert!(
        script.contains("readonly RUNNER_URL=''"),
        "nothing to download"
    );
    assert!(!script.contains(RUNNER_SHA256_ARM64));
}

#[test]
fn debug_and_display_never_show_the_credential() {
    let config = BootstrapConfig::default();
    for credential in [jit(), token(Some("g"), &["linux"])] {
        let out = user_data(&config, Arch::X86, &credential).unwrap();
        for shown in [
            format!("{out:?}"),
            format!("{out}"),
            format!("{credential:?}"),
            format!("{credential}"),
            format!("{credential:#?}"),
        ] {
            assert!(!shown.contains(JIT) && !shown.contains(TOKEN), "{shown}");
        }
    }
    assert_eq!(format!("{}", jit()), "JIT config");
    assert!(format!("{}", token(None, &[])).contains("mayfly-web-1"));
}

#[test]
fn malformed_credentials_are_refused() {
    let config = BootstrapConfig::default();
    let bad_jit = [
        "",
        "abc",
        "eyJhIjoxfQ==' ; reboot ; '",
        "$(reboot)AAAAAAAAAAAAAAAAAAAAAAAA",
        "eyJhIjoxfQ==\nreboot",
        "eyJh IjoxfQ==",
        "eyJh-IjoxfQ_=",
    ];
    for c in bad_jit {
        let err = user_data(&config, Arch::X86, &Credential::Jit(Secret::new(c))).unwrap_err();
        assert!(
            matches!(err, BootstrapError::BadCredential { .. }),
            "{c:?}: {err}"
        );
        assert!(c.is_empty() || !err.to_string().contains(c));
    }
    for t in [
        "",
        "AAAA;reboot",
        "AAAA'BBBB",
        "AAAA BBBB",
        "AAAA$(id)",
        "ghs_AAAA",
    ] {
        let credential = Credential::Token {
            url: "https://github.com/acme".into(),
            token: Secret::new(t),
            name: "web-1".into(),
            labels: vec![],
            group: None,
        };
        assert!(
            matches!(
                user_data(&config, Arch::X86, &credential),
                Err(BootstrapError::BadCredential { .. })
            ),
            "{t:?}"
        );
    }
    let with = |url: &str, name: &str| Credential::Token {
        url: url.into(),
        token: Secret::new(TOKEN),
        name: name.into(),
        labels: vec![],
        group: None,
    };
    let bad_fields = [
        with("https://github.com/acme", "web 1"),
        with("https://github.com/acme", ""),
        with("ftp://github.com/acme", "web-1"),
        with("https://github.com/acme' x", "web-1"),
        token(None, &["a,b"]),
        token(None, &[""]),
        token(None, &["it's"]),
        token(Some("two\nlines"), &[]),
    ];
    for credential in bad_fields {
        assert!(
            matches!(
                user_data(&config, Arch::X86, &credential),
                Err(BootstrapError::Invalid { .. })
            ),
            "{credential:?}"
        );
    }
}

#[test]
fn user_data_over_the_limit_is_too_large() {
    let huge = BootstrapConfig {
        setup_script: Some("echo mayfly\n".repeat(3000)),
        ..BootstrapConfig::default()
    };
    match user_data(&huge, Arch::X86, &jit()) {
        Err(BootstrapError::TooLarge { bytes, limit }) => {
            assert!(bytes > MAX_USER_DATA);
            assert_eq!(limit, 32 * 1024);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let fits = BootstrapConfig {
        setup_script: Some("echo mayfly\n".repeat(1500)),
        ..BootstrapConfig::default()
    };
    let out = user_data(&fits, Arch::X86, &jit()).unwrap();
    assert!(out.expose().len() <= MAX_USER_DATA);
    assert!(render(&BootstrapConfig::default(), Arch::Arm, &jit()).len() < 16 * 1024);
}

/// The shared machine with a runner directory whose `run.sh` and `config.sh` record their
/// calls, ICU already there, and a download that is not the runner: whatever the URL, garbage
/// arrives.
fn machine() -> Machine {
    let m = Machine::new();
    std::fs::create_dir_all(m.path("runner/bin")).unwrap();
    m.script(
        "bin/ldconfig",
        "echo 'libicuuc.so.74 (libc6,x86-64) => /lib/libicuuc.so.74'",
    );
    m.script(
        "bin/curl",
        &format!(
            "{RECORD}\nwhile [ $# -gt 0 ]; do if [ \"$1\" = --output ]; then echo garbage >\"$2\"; fi; shift; done"
        ),
    );
    m.script(
        "runner/run.sh",
        &format!("{RECORD}\nexit \"${{MAYFLY_TEST_RUN_STATUS:-0}}\""),
    );
    m.script("runner/config.sh", RECORD);
    m.script("runner/bin/installdependencies.sh", RECORD);
    m
}

/// A configuration whose runner is the machine's, already in the image.
fn baked(m: &Machine) -> BootstrapConfig {
    BootstrapConfig {
        runner_dir: Some(m.path("runner").display().to_string()),
        ..BootstrapConfig::default()
    }
}

#[test]
fn a_machine_runs_one_jit_runner_as_its_user_then_powers_off() {
    if !bash_available() {
        return;
    }
    let m = machine();
    let setup = "echo \"setup as $(id -un 2>/dev/null || echo root)\" >>\"$MAYFLY_TEST_CALLS\"";
    let config = BootstrapConfig {
        setup_script: Some(setup.into()),
        ..baked(&m)
    };
    let (status, calls, log) = m.boot(&user_data(&config, Arch::X86, &jit()).unwrap(), &[]);
    assert_eq!(status, 0, "{log}");
    let run = calls.iter().position(|c| c.starts_with("run.sh")).unwrap();
    assert_eq!(calls[run], format!("run.sh --jitconfig {JIT}"));
    assert!(calls[run - 1].starts_with("runuser -u runner -- env HOME="));
    assert!(
        calls
            .iter()
            .any(|c| c == "useradd --create-home --shell /bin/bash runner")
    );
    let setup = calls
        .iter()
        .position(|c| c.starts_with("setup as"))
        .unwrap();
    assert!(setup < run, "setup runs before the runner: {calls:?}");
    assert!(
        calls
            .iter()
            .any(|c| c.contains("--uid-owner runner -j REJECT"))
    );
    assert!(
        !calls.iter().any(|c| c.starts_with("curl")),
        "baked: nothing downloaded"
    );
    assert!(!calls.iter().any(|c| c.starts_with("installdependencies")));
    assert_eq!(calls.last().unwrap(), "shutdown -h now", "{calls:?}");
    assert!(!log.contains(JIT), "the log never shows the credential");
}

#[test]
fn a_token_runner_registers_ephemeral_then_runs_and_powers_off() {
    if !bash_available() {
        return;
    }
    let m = machine();
    let credential = token(Some("builders"), &["linux", "big"]);
    let (status, calls, log) = m.boot(&user_data(&baked(&m), Arch::Arm, &credential).unwrap(), &[]);
    assert_eq!(status, 0, "{log}");
    let config = calls
        .iter()
        .position(|c| c.starts_with("config.sh"))
        .unwrap();
    assert_eq!(
        calls[config],
        format!(
            "config.sh --unattended --ephemeral --disableupdate --work _work --url https://github.com/acme --token {TOKEN} --name mayfly-web-1 --labels linux,big --runnergroup builders"
        )
    );
    let run = calls.iter().position(|c| c == "run.sh").unwrap();
    assert!(config < run);
    assert_eq!(calls.last().unwrap(), "shutdown -h now");
    assert!(!log.contains(TOKEN));
}

#[test]
fn a_failed_runner_or_setup_still_powers_off() {
    if !bash_available() {
        return;
    }
    let m = machine();
    let ud = user_data(&baked(&m), Arch::X86, &jit()).unwrap();
    let (status, calls, _) = m.boot(&ud, &[("MAYFLY_TEST_RUN_STATUS", "3")]);
    assert_eq!(status, 3);
    assert_eq!(calls.last().unwrap(), "shutdown -h now");

    let m = machine();
    let failing = BootstrapConfig {
        setup_script: Some("#!/bin/sh\nexit 7\n".into()),
        ..baked(&m)
    };
    let (status, calls, log) = m.boot(&user_data(&failing, Arch::X86, &jit()).unwrap(), &[]);
    assert_eq!(status, 7, "{log}");
    assert!(!calls.iter().any(|c| c.starts_with("run.sh")), "{calls:?}");
    assert_eq!(calls.last().unwrap(), "shutdown -h now");

    let m = machine();
    let missing = BootstrapConfig {
        runner_dir: Some(m.path("nowhere").display().to_string()),
        ..BootstrapConfig::default()
    };
    let (status, calls, log) = m.boot(&user_data(&missing, Arch::X86, &jit()).unwrap(), &[]);
    assert_ne!(status, 0);
    assert!(log.contains("no runner in the image"), "{log}");
    assert_eq!(calls.last().unwrap(), "shutdown -h now");
}

#[test]
fn a_download_that_fails_its_checksum_is_never_run() {
    if !bash_available() || tool_missing("sha256sum") {
        return;
    }
    let m = machine();
    let ud = user_data(&BootstrapConfig::default(), Arch::X86, &jit()).unwrap();
    let (status, calls, log) = m.boot(&ud, &[]);
    assert_ne!(status, 0);
    assert!(log.contains("checksum mismatch"), "{log}");
    let curl = calls.iter().find(|c| c.starts_with("curl")).unwrap();
    assert!(curl.contains("--retry") && curl.contains("--max-time"));
    assert!(curl.ends_with(&format!(
        "https://github.com/actions/runner/releases/download/v{RUNNER_VERSION}/actions-runner-linux-x64-{RUNNER_VERSION}.tar.gz"
    )));
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("runuser") || c.starts_with("run.sh"))
    );
    assert_eq!(calls.last().unwrap(), "shutdown -h now");
    assert!(
        std::fs::read_dir(m.path("tmp")).unwrap().next().is_none(),
        "the bad tarball is removed"
    );
}

/// The simulated GitHub, with one queued job so the repository exists.
async fn github() -> (Arc<Github>, String, reqwest::Client) {
    let gh = Github::new(
        GithubConfig {
            tokens: vec!["sim-pat".into()],
            ..GithubConfig::default()
        },
        Clock::new(1.0),
        Arc::new(Stats::default()),
    );
    gh.enqueue(
        "acme/app",
        vec![NewJob {
            labels: vec!["self-hosted".into(), "linux".into()],
            duration: Duration::from_secs(60),
        }],
    );
    let api = gh.serve_local().await.unwrap();
    (gh, api, reqwest::Client::new())
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let r = http
        .post(url)
        .bearer_auth("sim-pat")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

#[tokio::test]
async fn the_simulated_github_redeems_a_jit_config_from_the_user_data() {
    let (gh, api, http) = github().await;
    let body = json!({ "name": "mayfly-jit-1", "runner_group_id": 1, "labels": ["linux"], "work_folder": "_work" });
    let issued = post(
        &http,
        format!("{api}/repos/acme/app/actions/runners/generate-jitconfig"),
        body,
    )
    .await;
    let config = issued["encoded_jit_config"].as_str().unwrap();
    let credential = Credential::Jit(Secret::new(config));
    for arch in [Arch::X86, Arch::Arm] {
        let script = user_data(&BootstrapConfig::default(), arch, &credential).unwrap();
        assert_eq!(script.expose().matches(config).count(), 1);
    }
    let setup = BootstrapConfig {
        setup_script: Some(TRICKY_SETUP.into()),
        ..BootstrapConfig::default()
    };
    let script = user_data(&setup, Arch::X86, &credential).unwrap();
    let id = gh.redeem(script.expose(), "host-1").unwrap();
    assert_eq!(issued["runner"]["id"].as_u64(), Some(id));
    assert!(gh.redeem(script.expose(), "host-1").is_err(), "single use");
}

#[tokio::test]
async fn the_simulated_github_registers_a_token_runner_by_its_flags() {
    let (gh, api, http) = github().await;
    let issued = post(
        &http,
        format!("{api}/orgs/acme/actions/runners/registration-token"),
        json!({}),
    )
    .await;
    let credential = Credential::Token {
        url: "https://github.com/acme".into(),
        token: Secret::new(issued["token"].as_str().unwrap()),
        name: "mayfly-org-1".into(),
        labels: vec!["linux".into(), "image-x86-system-ubuntu-24.04".into()],
        group: Some("Default".into()),
    };
    let config = BootstrapConfig {
        setup_script: Some(TRICKY_SETUP.into()),
        ..BootstrapConfig::default()
    };
    let script = user_data(&config, Arch::Arm, &credential).unwrap();
    let id = gh.redeem(script.expose(), "host-2").unwrap();
    let runner = gh.runners().into_iter().find(|r| r.id == id).unwrap();
    assert_eq!(runner.name, "mayfly-org-1");
    assert_eq!(
        runner.labels,
        ["self-hosted", "linux", "image-x86-system-ubuntu-24.04"]
    );
}

#[test]
fn the_template_itself_is_valid_bash() {
    // scripts/test lints the template itself; it must stay valid bash with its placeholders.
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bootstrap/runner.sh");
    if tool_missing("bash") {
        return;
    }
    let out = Command::new("bash")
        .arg("-n")
        .arg(&template)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
