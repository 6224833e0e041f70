//! The GitLab runner bootstrap as a machine sees it: rendered scripts linted by shellcheck and
//! parsed by bash, run against stub system tools and a stub gitlab-runner, checksums enforced,
//! and the command line read by the fake GitLab exactly as its virtual runners read it.

use mayfly_core::{Arch, Secret};
use mayfly_provider::bootstrap::{
    BootstrapConfig, BootstrapError, Credential, GITLAB_RUNNER_VERSION, GitlabRunnerConfig,
    user_data,
};
use mayfly_sim::clock::Clock;
use mayfly_sim::gitlab::{AccessToken, Gitlab, GitlabConfig, NewJob, single};
use mayfly_sim::stats::Stats;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use support::{Machine, RECORD, bash_available, lint, tool_missing};

mod support;

const TOKEN: &str = "glrt-t1_AbCdEf0123456789xyz";
const URL: &str = "https://gitlab.example.com";
const SUM: &str = "4e0b1bc33e23d0e23f3d3d1f1bb6ca4b45d5a2e7c0f6d2a0d4d69b1a8d3b7e21";
const TRICKY_SETUP: &str = "#!/bin/bash\nset -eu\necho \"it's $HOME $(id -u)\" '\\'\nMAYFLY_SETUP_EOF\n@GITLAB_RUNNER@ # @START_RUNNER@\nexit 0";

fn credential() -> Credential {
    Credential::Gitlab {
        url: URL.into(),
        token: Secret::new(TOKEN),
    }
}

fn with(gitlab: GitlabRunnerConfig) -> BootstrapConfig {
    BootstrapConfig {
        gitlab,
        ..BootstrapConfig::default()
    }
}

fn render(config: &BootstrapConfig, arch: Arch) -> String {
    user_data(config, arch, &credential())
        .unwrap()
        .expose()
        .to_string()
}

/// Both architectures; downloaded (pinned or not) or in the image; with and without a setup
/// script.
fn all_variants() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (aname, arch) in [("amd64", Arch::X86), ("arm64", Arch::Arm)] {
        for (how, gitlab) in [
            ("download", GitlabRunnerConfig::default()),
            (
                "pinned",
                GitlabRunnerConfig {
                    sha256_amd64: Some(SUM.into()),
                    sha256_arm64: Some(SUM.into()),
                    ..GitlabRunnerConfig::default()
                },
            ),
            (
                "baked",
                GitlabRunnerConfig {
                    binary: Some("/usr/bin/gitlab-runner".into()),
                    ..GitlabRunnerConfig::default()
                },
            ),
        ] {
            for setup in [None, Some(TRICKY_SETUP.to_string())] {
                let config = BootstrapConfig {
                    setup_script: setup.clone(),
                    ..with(gitlab.clone())
                };
                let name = format!(
                    "{aname}-{how}-{}.sh",
                    if setup.is_some() { "setup" } else { "plain" }
                );
                out.push((name, render(&config, arch)));
            }
        }
    }
    out
}

#[test]
fn every_rendered_script_passes_shellcheck_and_bash_n() {
    lint(all_variants(), TRICKY_SETUP, &["@RUNNER_", "@GITLAB_"]);
}

#[test]
fn the_command_line_is_exact_and_the_fake_reads_it_as_gitlab_runner_would() {
    let script = render(&with(GitlabRunnerConfig::default()), Arch::X86);
    assert_eq!(script.matches(TOKEN).count(), 1, "the token once");
    let line = script
        .lines()
        .find(|l| l.contains("run-single"))
        .unwrap()
        .trim();
    assert_eq!(
        line,
        format!(
            "as_runner \"$GITLAB_RUNNER\" run-single --url '{URL}' --token '{TOKEN}' --executor shell --shell bash --builds-dir '/var/lib/mayfly/gitlab/builds' --cache-dir '/var/lib/mayfly/gitlab/cache' --max-builds 1 --wait-timeout 600"
        )
    );
    let run = single::parse(&script).unwrap();
    assert_eq!((run.url.as_str(), run.token.as_str()), (URL, TOKEN));
    assert_eq!((run.executor.as_str(), run.max_builds), ("shell", 1));
    assert_eq!(run.wait_timeout, Some(Duration::from_secs(600)));
}

#[test]
fn the_download_is_the_releases_binary_for_the_arch_checked_against_a_pin_or_the_release() {
    let unpinned = render(&with(GitlabRunnerConfig::default()), Arch::Arm);
    let base = format!("https://gitlab-runner-downloads.s3.amazonaws.com/v{GITLAB_RUNNER_VERSION}");
    assert!(unpinned.contains(&format!(
        "readonly DOWNLOAD_URL='{base}/binaries/gitlab-runner-linux-arm64'"
    )));
    assert!(unpinned.contains(&format!("readonly CHECKSUMS_URL='{base}/release.sha256'")));
    assert!(unpinned.contains("readonly CHECKSUM_NAME='binaries/gitlab-runner-linux-arm64'"));
    assert!(unpinned.contains("readonly RUNNER_SHA256=''"));
    let pinned = render(
        &with(GitlabRunnerConfig {
            sha256_amd64: Some(SUM.to_uppercase()),
            ..GitlabRunnerConfig::default()
        }),
        Arch::X86,
    );
    assert!(pinned.contains(&format!("readonly RUNNER_SHA256='{SUM}'")));
    let baked = render(
        &with(GitlabRunnerConfig {
            binary: Some("/usr/local/bin/gitlab-runner".into()),
            ..GitlabRunnerConfig::default()
        }),
        Arch::X86,
    );
    assert!(baked.contains("readonly GITLAB_RUNNER='/usr/local/bin/gitlab-runner'"));
    assert!(baked.contains("readonly DOWNLOAD_URL=''"));
}

#[test]
fn the_token_never_shows_and_bad_credentials_are_refused() {
    let c = credential();
    assert!(!format!("{c:?} {c}").contains(TOKEN));
    assert_eq!(c.to_string(), format!("GitLab runner token for {URL}"));
    let config = BootstrapConfig::default();
    for token in [
        "GR1348941abcdef",
        "glrt-",
        "glrt-x'y",
        "glrt-$(reboot)",
        "glrt-a b",
    ] {
        let bad = Credential::Gitlab {
            url: URL.into(),
            token: Secret::new(token),
        };
        let e = user_data(&config, Arch::X86, &bad).unwrap_err();
        assert!(
            matches!(e, BootstrapError::BadCredential { .. }),
            "{token}: {e}"
        );
        assert!(!e.to_string().contains(token) || token == "glrt-");
    }
    for url in [
        "https://gitlab.com/api/v4",
        "gitlab.com",
        "https://gitlab.com/x y",
        "https://g'x",
    ] {
        let bad = Credential::Gitlab {
            url: url.into(),
            token: Secret::new(TOKEN),
        };
        assert!(
            matches!(
                user_data(&config, Arch::X86, &bad),
                Err(BootstrapError::Invalid { field: "url", .. })
            ),
            "{url}"
        );
    }
    let zero = with(GitlabRunnerConfig {
        wait_timeout_secs: 0,
        ..GitlabRunnerConfig::default()
    });
    assert!(
        zero.validate().is_err(),
        "the whole bootstrap checks its gitlab part"
    );
    let c: BootstrapConfig = serde_json::from_str(
        r#"{"gitlab": {"binary": "/usr/bin/gitlab-runner", "wait_timeout_secs": 120}}"#,
    )
    .unwrap();
    assert_eq!(c.gitlab.wait_timeout_secs, 120);
    assert_eq!(c.gitlab.version, GITLAB_RUNNER_VERSION);
    assert!(serde_json::from_str::<BootstrapConfig>(r#"{"gitlab": {"vesion": "1"}}"#).is_err());
    // A GitLab token never starts actions/runner.
    let jit_config = BootstrapConfig::default();
    assert!(user_data(&jit_config, Arch::X86, &c_jit()).is_ok());
}

fn c_jit() -> Credential {
    Credential::Jit(Secret::new("eyJhIjoxfQ=="))
}

/// The shared machine with an `install` that records its calls and a stub gitlab-runner in
/// `image/` that records its arguments.
fn machine() -> Machine {
    let m = Machine::new();
    std::fs::create_dir_all(m.path("image")).unwrap();
    m.script("bin/install", RECORD);
    m.script(
        "image/gitlab-runner",
        &format!("{RECORD}\nexit \"${{MAYFLY_TEST_RUN_STATUS:-0}}\""),
    );
    m
}

/// A curl that serves `binary` for the runner and `checksums` for release.sha256.
fn serve(m: &Machine, binary: &str, checksums: &str) {
    std::fs::write(m.path("served-binary"), binary).unwrap();
    std::fs::write(m.path("served-checksums"), checksums).unwrap();
    m.script(
        "bin/curl",
        &format!(
            "{RECORD}\nout=; url=\nwhile [ $# -gt 0 ]; do case \"$1\" in --output) out=$2; shift;; http*) url=$1;; esac; shift; done\n\
             case \"$url\" in *release.sha256) cp {dir}/served-checksums \"$out\";; *) cp {dir}/served-binary \"$out\";; esac",
            dir = m.dir.path().display()
        ),
    );
}

fn config(m: &Machine, gitlab: GitlabRunnerConfig) -> BootstrapConfig {
    with(GitlabRunnerConfig {
        work_dir: m.path("work").display().to_string(),
        ..gitlab
    })
}

fn baked(m: &Machine) -> BootstrapConfig {
    config(
        m,
        GitlabRunnerConfig {
            binary: Some(m.path("image/gitlab-runner").display().to_string()),
            ..GitlabRunnerConfig::default()
        },
    )
}

#[test]
fn a_machine_runs_gitlab_runner_once_as_its_user_then_powers_off() {
    if !bash_available() {
        return;
    }
    let m = machine();
    let config = BootstrapConfig {
        setup_script: Some("echo setup >>\"$MAYFLY_TEST_CALLS\"".into()),
        ..baked(&m)
    };
    let (status, calls, log) = m.boot(&user_data(&config, Arch::X86, &credential()).unwrap(), &[]);
    assert_eq!(status, 0, "{log}");
    let work = m.path("work").display().to_string();
    let run = calls
        .iter()
        .position(|c| c.starts_with("gitlab-runner"))
        .unwrap();
    assert_eq!(
        calls[run],
        format!(
            "gitlab-runner run-single --url {URL} --token {TOKEN} --executor shell --shell bash --builds-dir {work}/builds --cache-dir {work}/cache --max-builds 1 --wait-timeout 600"
        )
    );
    assert!(calls[run - 1].starts_with("runuser -u runner -- env HOME="));
    let setup = calls.iter().position(|c| c == "setup").unwrap();
    assert!(setup < run);
    assert!(
        calls
            .iter()
            .any(|c| c.contains("--uid-owner runner -j REJECT"))
    );
    assert!(
        calls
            .iter()
            .any(|c| c == &format!("chown -R runner: {work}"))
    );
    assert!(m.path("work/builds").is_dir() && m.path("work/cache").is_dir());
    assert!(
        !calls.iter().any(|c| c.starts_with("curl")),
        "baked: nothing downloaded"
    );
    assert_eq!(calls.last().unwrap(), "shutdown -h now", "{calls:?}");
    assert!(!log.contains(TOKEN), "the log never shows the token: {log}");
}

#[test]
fn a_failing_runner_or_a_missing_binary_still_powers_off() {
    if !bash_available() {
        return;
    }
    let m = machine();
    let ud = user_data(&baked(&m), Arch::Arm, &credential()).unwrap();
    let (status, calls, _) = m.boot(&ud, &[("MAYFLY_TEST_RUN_STATUS", "4")]);
    assert_eq!(status, 4);
    assert_eq!(calls.last().unwrap(), "shutdown -h now");

    let m = machine();
    let missing = config(
        &m,
        GitlabRunnerConfig {
            binary: Some(m.path("nowhere/gitlab-runner").display().to_string()),
            ..GitlabRunnerConfig::default()
        },
    );
    let (status, calls, log) = m.boot(&user_data(&missing, Arch::X86, &credential()).unwrap(), &[]);
    assert_ne!(status, 0);
    assert!(log.contains("no gitlab-runner in the image"), "{log}");
    assert_eq!(calls.last().unwrap(), "shutdown -h now");
}

fn sha256_hex(data: &str) -> String {
    hex::encode(Sha256::digest(data.as_bytes()))
}

#[test]
fn a_download_is_run_only_when_it_matches_its_checksum() {
    if !bash_available() || tool_missing("sha256sum") {
        return;
    }
    let binary = "#!/bin/bash\necho not really gitlab-runner\n";
    let good = sha256_hex(binary);
    let listed = |sum: &str| {
        format!(
            "{sum}  binaries/gitlab-runner-linux-amd64\n{}  binaries/gitlab-runner-linux-arm64\n",
            "0".repeat(64)
        )
    };
    let ran = |calls: &[String]| {
        calls
            .iter()
            .any(|c| c.starts_with("runuser") || c.starts_with("gitlab-runner"))
    };

    // A pinned checksum that does not match: never installed, never run.
    let m = machine();
    serve(&m, binary, &listed(&good));
    let pinned = config(
        &m,
        GitlabRunnerConfig {
            sha256_amd64: Some(SUM.into()),
            ..GitlabRunnerConfig::default()
        },
    );
    let (status, calls, log) = m.boot(&user_data(&pinned, Arch::X86, &credential()).unwrap(), &[]);
    assert_ne!(status, 0);
    assert!(log.contains("checksum mismatch"), "{log}");
    let curl: Vec<&String> = calls.iter().filter(|c| c.starts_with("curl")).collect();
    assert_eq!(curl.len(), 1, "a pin needs no checksum list: {calls:?}");
    assert!(curl[0].contains("--retry") && curl[0].contains("--max-time"));
    assert!(curl[0].ends_with(&format!(
        "/v{GITLAB_RUNNER_VERSION}/binaries/gitlab-runner-linux-amd64"
    )));
    assert!(!ran(&calls) && !calls.iter().any(|c| c.starts_with("install")));
    assert_eq!(calls.last().unwrap(), "shutdown -h now");
    assert!(
        std::fs::read_dir(m.path("tmp")).unwrap().next().is_none(),
        "nothing left behind"
    );

    // Unpinned: the release's list decides. A wrong sum there, or none, stops it too.
    for (list, says) in [
        (listed(SUM), "checksum mismatch"),
        (
            "garbage\n".to_string(),
            "no checksum for binaries/gitlab-runner-linux-amd64",
        ),
    ] {
        let m = machine();
        serve(&m, binary, &list);
        let config = config(&m, GitlabRunnerConfig::default());
        let (status, calls, log) =
            m.boot(&user_data(&config, Arch::X86, &credential()).unwrap(), &[]);
        assert_ne!(status, 0);
        assert!(log.contains(says), "{log}");
        assert!(!ran(&calls));
        assert_eq!(calls.last().unwrap(), "shutdown -h now");
    }

    // The release's list matches: verified and installed where the script runs it from.
    let m = machine();
    serve(&m, binary, &listed(&good));
    let config = config(&m, GitlabRunnerConfig::default());
    let (_, calls, log) = m.boot(&user_data(&config, Arch::X86, &credential()).unwrap(), &[]);
    assert!(log.contains("gitlab-runner checksum verified"), "{log}");
    assert!(log.contains("release's published checksum"), "{log}");
    assert!(
        calls.iter().any(|c| c.starts_with("install -D -m 0755")
            && c.ends_with("/opt/mayfly/gitlab-runner/gitlab-runner")),
        "{calls:?}"
    );
    assert_eq!(calls.last().unwrap(), "shutdown -h now");
}

#[tokio::test]
async fn the_fake_gitlab_starts_a_runner_from_the_rendered_user_data() {
    let gl = Gitlab::new(
        GitlabConfig {
            tokens: vec![AccessToken::full("glpat-bootstrap")],
            ..GitlabConfig::default()
        },
        Clock::new(1.0),
        Arc::new(Stats::default()),
    );
    let url = gl.serve_local().await.unwrap();
    let project = gl.project("acme/app").unwrap();
    gl.enqueue(
        "acme/app",
        vec![NewJob {
            name: "build".into(),
            stage: 0,
            tags: vec!["linux".into()],
            duration: Duration::from_secs(1),
            protected: false,
        }],
    )
    .unwrap();
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/api/v4/user/runners"))
        .header("PRIVATE-TOKEN", "glpat-bootstrap")
        .json(&serde_json::json!({ "runner_type": "project_type", "project_id": project, "tag_list": ["linux"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let credential = Credential::Gitlab {
        url: url.clone(),
        token: Secret::new(created["token"].as_str().unwrap()),
    };
    let script = user_data(&BootstrapConfig::default(), Arch::X86, &credential).unwrap();
    let session = gl
        .redeem(script.expose())
        .expect("the fake verifies the token");
    assert_eq!(gl.wait_timeout(session), Some(Duration::from_secs(600)));
    let job = gl.next_job(session).expect("and hands its runner the job");
    gl.finish_job(session, job.job_id, "success");
    assert_eq!(gl.jobs()[0].status, "success");
}
