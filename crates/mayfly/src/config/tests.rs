//! Loading configurations end to end: file positions in errors, layering, defaults, redaction.
//! Each case gets its own environment map, so nothing here touches the process environment.

use super::*;
use std::path::Path;
use std::time::Duration;
use values::StateUrl;

const BASE_ENV: [(&str, &str); 3] = [
    ("GITHUB_TOKEN", "ghp_base"),
    ("HETZNER_TOKEN", "hz_base"),
    ("HOME", "/home/u"),
];

/// A minimal valid file; tests append to it or replace parts.
const MINIMAL: &str = r#"
[github]
repositories = ["acme/app"]

[providers.hetzner]
kind = "hetzner"

[[pools]]
name = "linux"
provider = "hetzner"
labels = ["self-hosted", "linux"]
types = ["cx23"]
locations = ["fsn1"]
"#;

struct Loaded {
    _dir: tempfile::TempDir,
    result: Result<Config, ConfigError>,
}

fn load_with(text: &str, env: &[(&str, &str)], overrides: &Overrides) -> Loaded {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mayfly.toml");
    std::fs::write(&path, text).expect("write config");
    let result = Config::load(
        Some(&path),
        overrides,
        &Env::from_pairs(env.iter().copied()),
    );
    Loaded { _dir: dir, result }
}

fn load(text: &str) -> Result<Config, ConfigError> {
    load_with(text, &BASE_ENV, &Overrides::default()).result
}

/// The error's text with the temp directory cut off, so assertions read `mayfly.toml:3:1: …`.
fn error(text: &str) -> String {
    let loaded = load_with(text, &BASE_ENV, &Overrides::default());
    let e = loaded.result.expect_err("config should be invalid");
    e.to_string()
        .replace(&format!("{}/", loaded._dir.path().display()), "")
}

#[test]
fn minimal_file_loads_and_converts() {
    let pools = load(MINIMAL).expect("valid").pools();
    assert_eq!(pools.controller, "mayfly");
    assert_eq!(pools.pools.len(), 1);
    let p = &pools.pools[0];
    assert_eq!((p.name.as_str(), p.provider.as_str()), ("linux", "hetzner"));
    assert!(p.labels.contains("linux"));
    assert_eq!(p.spec.image.to_string(), "x86:system:ubuntu-24.04");
    assert_eq!(pools.deadlines, mayfly_core::Deadlines::default());
    assert_eq!(pools.recycling, mayfly_core::Recycling::default());
}

#[test]
fn misspelled_key_names_position_key_and_nearest_known_key() {
    let text = format!("{MINIMAL}mx = 3\n");
    assert_eq!(
        error(&text),
        "mayfly.toml:14:1: pools[0].mx: unknown key; did you mean `max`?"
    );
    let top = error(&format!("controler = \"x\"\n{MINIMAL}"));
    assert_eq!(
        top,
        "mayfly.toml:1:1: controler: unknown key; did you mean `controller`?"
    );
}

#[test]
fn wrong_type_names_position_key_and_both_types() {
    let text = format!("{MINIMAL}max = \"three\"\n");
    assert_eq!(
        error(&text),
        "mayfly.toml:14:7: pools[0].max: expected an integer from 0 to 4294967295, found a string"
    );
    let neg = error(&format!("{MINIMAL}standby = -1\n"));
    assert!(
        neg.starts_with("mayfly.toml:14:11: pools[0].standby: invalid value"),
        "{neg}"
    );
    let big = error(&format!("{MINIMAL}max = 99999999999\n"));
    assert!(
        big.ends_with("expected an integer from 0 to 4294967295"),
        "{big}"
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    let text = format!("# Größe über alles\n[limits]\nmax_instances = \"zwölf\" # ä\n{MINIMAL}");
    assert!(error(&text).starts_with("mayfly.toml:3:17: limits.max_instances: expected"));
    let text = "[labels.meta]\n\"größe\" = 5\n";
    let msg = error(&format!("{text}{MINIMAL}"));
    assert!(
        msg.starts_with("mayfly.toml:2:11: labels.meta.größe: expected an array"),
        "{msg}"
    );
}

#[test]
fn unknown_provider_kind_suggests_the_nearest() {
    let text = MINIMAL.replace("kind = \"hetzner\"", "kind = \"hetzer\"");
    let msg = error(&text);
    assert!(
        msg.starts_with(
            "mayfly.toml:6:8: providers.hetzner.kind: unknown value, expected one of `hetzner`"
        ),
        "{msg}"
    );
    assert!(msg.ends_with("did you mean `hetzner`?"), "{msg}");
}

#[test]
fn bad_duration_names_the_key() {
    let form = "expected a duration like \"90s\", \"3m\", \"1h30m\", \"500ms\" or \"7d\" (units d, h, m, s, ms; no spaces)";
    let msg = error(&format!("[deadlines]\nidle = \"soon\"\n{MINIMAL}"));
    assert_eq!(msg, format!("mayfly.toml:2:8: deadlines.idle: {form}"));
    // A form other tools read is refused, not read as something else.
    let words = error(&format!("[deadlines]\nidle = \"3 minutes\"\n{MINIMAL}"));
    assert_eq!(words, format!("mayfly.toml:2:8: deadlines.idle: {form}"));
    let zero = error(&format!("[intervals]\nreconcile = \"0s\"\n{MINIMAL}"));
    assert_eq!(
        zero,
        "mayfly.toml:2:13: intervals.reconcile: must be longer than zero"
    );
    let ok = load(&format!("[deadlines]\nmax_lifetime = \"1h30m\"\n{MINIMAL}")).expect("valid");
    assert_eq!(ok.pools().deadlines.max_lifetime, Duration::from_secs(5400));
}

#[test]
fn syntax_errors_have_a_position() {
    let msg = error("[github\n");
    assert!(msg.starts_with("mayfly.toml:1:"), "{msg}");
    assert!(msg.contains("not valid TOML"), "{msg}");
}

#[test]
fn missing_variable_names_file_line_column_and_variable() {
    let text = MINIMAL.replace(
        "kind = \"hetzner\"",
        "kind = \"hetzner\"\ntoken = \"hz-${NOT_SET}\"",
    );
    assert_eq!(
        error(&text),
        "mayfly.toml:7:13: providers.hetzner.token: environment variable `NOT_SET` is not set"
    );
}

#[test]
fn variables_are_interpolated_and_escaped() {
    let text = MINIMAL
        .replace("name = \"linux\"", "name = \"${POOL}\"")
        .replace("\"self-hosted\"", "\"$${x}\"");
    let loaded = load_with(
        &text,
        &[
            ("POOL", "gpu"),
            ("HETZNER_TOKEN", "h"),
            ("GITHUB_TOKEN", "g"),
            ("HOME", "/h"),
        ],
        &Overrides::default(),
    );
    let config = loaded.result.expect("valid");
    assert_eq!(config.pools[0].name, "gpu");
    assert_eq!(config.pools[0].labels[0], "${x}");
}

#[test]
fn environment_overrides_the_file_and_flags_override_both() {
    let text = format!(
        "log_level = \"warn\"\nlisten = \"0.0.0.0:9000\"\n{}",
        MINIMAL
            .replace("[github]", "[github]\ntoken = \"ghp_file\"")
            .replace(
                "kind = \"hetzner\"",
                "kind = \"hetzner\"\ntoken = \"hz_file\""
            )
    );
    let env = [
        ("GITHUB_TOKEN", "ghp_env"),
        ("GITHUB_REPOSITORY", "acme/other"),
        ("HETZNER_TOKEN", "hz_env"),
        ("RUST_LOG", "debug"),
        ("HOME", "/h"),
    ];
    let c = load_with(&text, &env, &Overrides::default())
        .result
        .expect("valid");
    assert_eq!(c.github.token.as_ref().map(|t| t.expose()), Some("ghp_env"));
    assert_eq!(c.github.repositories, ["acme/app", "acme/other"]);
    // HETZNER_TOKEN only fills in a provider without a token of its own.
    assert_eq!(
        c.providers["hetzner"].token.as_ref().map(|t| t.expose()),
        Some("hz_file")
    );
    assert_eq!(c.log_level, "debug");
    assert_eq!(c.listen.to_string(), "0.0.0.0:9000");

    let flags = Overrides {
        state: Some("postgres://m:pw@db/m".into()),
        listen: Some("127.0.0.1:1".parse().expect("addr")),
        log_format: Some(LogFormat::Json),
        log_level: Some("trace".into()),
    };
    let c = load_with(&text, &env, &flags).result.expect("valid");
    assert_eq!(c.log_level, "trace");
    assert_eq!(c.listen.to_string(), "127.0.0.1:1");
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(
        c.state.as_ref().map(StateUrl::expose),
        Some("postgres://m:pw@db/m")
    );
}

#[test]
fn a_bad_value_from_the_environment_names_the_variable() {
    let loaded = load_with(
        MINIMAL,
        &[
            ("GITHUB_REPOSITORY", "not-a-repo"),
            ("GITHUB_TOKEN", "g"),
            ("HETZNER_TOKEN", "h"),
            ("HOME", "/h"),
        ],
        &Overrides::default(),
    );
    let msg = loaded.result.expect_err("invalid").to_string();
    assert_eq!(
        msg,
        "environment variable GITHUB_REPOSITORY: github.repositories[1]: expected `owner/repo`"
    );
    let flags = Overrides {
        state: Some("mysql://root:pw@db/x".into()),
        ..Default::default()
    };
    let msg = load_with(MINIMAL, &BASE_ENV, &flags)
        .result
        .expect_err("invalid")
        .to_string();
    assert!(
        msg.starts_with("--state/MAYFLY_STATE: state: unsupported scheme"),
        "{msg}"
    );
    assert!(!msg.contains("pw@"), "{msg}");
}

#[test]
fn bad_pool_reference_suggests_the_provider_and_points_at_it() {
    let text = MINIMAL.replace("provider = \"hetzner\"", "provider = \"hetzer\"");
    assert_eq!(
        error(&text),
        "mayfly.toml:10:12: pools[0].provider: no provider named `hetzer`; did you mean `hetzner`?"
    );
}

#[test]
fn validation_reports_every_problem() {
    let text = r#"
controller = "Mayfly_1"
[github]
repositories = ["acme"]
api_url = "ftp://example.com"
[labels.meta]
big = ["image-sparc-system-x"]
[providers.hetzner]
kind = "hetzner"
[[pools]]
name = "linux"
provider = "hetzner"
labels = []
max = 1
standby = 2
[[pools]]
name = "linux"
provider = "hetzner"
labels = ["x"]
"#;
    let msg = error(text);
    let expected = [
        "mayfly.toml:2:14: controller: expected lower-case letters, digits and inner `-`",
        "mayfly.toml:4:17: github.repositories[0]: expected `owner/repo`",
        "mayfly.toml:5:11: github.api_url: expected an http:// or https:// URL",
        "mayfly.toml:7:7: labels.meta.big: label \"image-sparc-system-x\"",
        "mayfly.toml:10:1: pools[0].types: a Hetzner pool needs at least one; for example [\"cx23\"]",
        "mayfly.toml:10:1: pools[0].locations: a Hetzner pool needs at least one",
        "mayfly.toml:13:10: pools[0].labels: a pool needs at least one label",
        "mayfly.toml:15:11: pools[0].standby: 2 standby runners exceed the pool's max of 1",
        "mayfly.toml:17:8: pools[1].name: a pool named `linux` is already configured",
    ];
    for e in expected {
        assert!(
            msg.lines().any(|l| l.starts_with(e)),
            "missing {e:?} in:\n{msg}"
        );
    }
}

#[test]
fn missing_tokens_and_scope_point_at_their_table_or_variable() {
    let text = MINIMAL.replace("repositories = [\"acme/app\"]", "");
    let loaded = load_with(&text, &[("HOME", "/h")], &Overrides::default());
    let msg = loaded.result.expect_err("invalid").to_string();
    assert!(
        msg.contains(":2:2: github.token: not set; set token in [github] or the GITHUB_TOKEN"),
        "{msg}"
    );
    assert!(
        msg.contains(":2:2: github: no repository, organization or enterprise to serve"),
        "{msg}"
    );
    assert!(
        msg.contains(":5:12: providers.hetzner.token: not set"),
        "{msg}"
    );
}

#[test]
fn defaults_without_a_file_give_one_hetzner_pool() {
    let env = Env::from_pairs([
        ("GITHUB_TOKEN", "ghp_x"),
        ("GITHUB_REPOSITORY", "acme/app"),
        ("HETZNER_TOKEN", "hz_x"),
        ("XDG_STATE_HOME", "/var/state"),
    ]);
    let c = Config::load(None, &Overrides::default(), &env).expect("valid");
    assert_eq!(
        c.state_dir.as_deref(),
        Some(std::path::Path::new("/var/state/mayfly"))
    );
    assert_eq!(
        c.state.as_ref().map(StateUrl::expose),
        Some("sqlite:///var/state/mayfly/mayfly.db")
    );
    assert_eq!(c.providers["hetzner"].kind, schema::ProviderKind::Hetzner);
    let pools = c.pools();
    let p = &pools.pools[0];
    assert_eq!(
        (p.name.as_str(), p.provider.as_str()),
        ("default", "hetzner")
    );
    assert_eq!(p.labels, mayfly_core::Labels::new(["self-hosted"]));
    assert_eq!(p.spec.types, ["cx23"]);
    assert_eq!(p.spec.locations, ["fsn1"]);
    assert_eq!(p.spec.image.to_string(), "x86:system:ubuntu-24.04");

    let bare = Config::load(None, &Overrides::default(), &Env::default()).expect_err("no tokens");
    assert!(
        bare.to_string()
            .contains("state_dir: cannot choose a state directory"),
        "{bare}"
    );
}

#[test]
fn providers_without_pools_is_an_error() {
    let text = "[providers.cloud]\nkind = \"local\"\n";
    let msg = load_with(
        text,
        &[
            ("GITHUB_TOKEN", "g"),
            ("GITHUB_REPOSITORY", "a/b"),
            ("HOME", "/h"),
        ],
        &Overrides::default(),
    )
    .result
    .expect_err("no pools")
    .to_string()
    .replace(&format!("{}/", std::env::temp_dir().display()), "");
    assert!(
        msg.contains("pools: no pools configured; add a [[pools]] table"),
        "{msg}"
    );
    assert!(
        msg.contains("providers.cloud.runner_dir: not set"),
        "what the local provider lacks is named too: {msg}"
    );
}

#[test]
fn relative_state_dir_is_taken_from_the_config_file() {
    let loaded = load_with(
        &format!("state_dir = \"state\"\n{MINIMAL}"),
        &BASE_ENV,
        &Overrides::default(),
    );
    let config = loaded.result.as_ref().expect("valid");
    assert_eq!(
        config.state_dir.as_deref(),
        Some(loaded._dir.path().join("state").as_path())
    );
}

#[test]
fn the_api_token_file_defaults_to_the_state_dir_and_is_found_from_the_config_file() {
    let loaded = load_with(
        &format!("state_dir = \"state\"\n{MINIMAL}"),
        &BASE_ENV,
        &Overrides::default(),
    );
    let config = loaded.result.as_ref().expect("valid");
    assert_eq!(
        config.api.token_file.as_deref(),
        Some(loaded._dir.path().join("state/api.token").as_path())
    );
    let loaded = load_with(
        &format!("[api]\ntoken_file = \"secrets/api.token\"\n{MINIMAL}"),
        &BASE_ENV,
        &Overrides::default(),
    );
    let config = loaded.result.as_ref().expect("valid");
    assert_eq!(
        config.api.token_file.as_deref(),
        Some(loaded._dir.path().join("secrets/api.token").as_path())
    );
    assert_eq!(
        error(&format!("[api]\ntoken = \"x\"\n{MINIMAL}")),
        "mayfly.toml:2:1: api.token: unknown key; known keys: token_file, listen"
    );
    // With a PostgreSQL state and no home, nothing says where the token goes.
    let env = [("GITHUB_TOKEN", "g"), ("HETZNER_TOKEN", "h")];
    let text = format!("state = \"postgres://db/m\"\n{MINIMAL}");
    let msg = load_with(&text, &env, &Overrides::default())
        .result
        .expect_err("no place for the token")
        .to_string();
    assert!(
        msg.contains("api.token_file: cannot choose a place for the API token"),
        "{msg}"
    );
}

#[test]
fn no_secret_appears_in_the_output_or_in_errors() {
    let text = format!(
        "state = \"postgres://mayfly:pg-SECRET-1@db/mayfly\"\n{}",
        MINIMAL
            .replace(
                "[github]",
                "[github]\ntoken = \"gh-SECRET-2\"\nwebhook_secret = \"${HOOK}\""
            )
            .replace(
                "kind = \"hetzner\"",
                "kind = \"hetzner\"\ntoken = \"${HZ}\""
            )
    );
    let env = [
        ("HOOK", "hook-SECRET-3"),
        ("HZ", "hz-SECRET-4"),
        ("GITHUB_TOKEN", "gh-SECRET-5"),
        ("HOME", "/h"),
    ];
    let loaded = load_with(&text, &env, &Overrides::default());
    let config = loaded.result.expect("valid");
    let shown = format!("{}\n{config:?}", config.to_redacted_toml().expect("toml"));
    assert!(!shown.contains("SECRET"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");

    // Secrets put where a value of another type belongs must not be quoted back.
    for bad in [
        "max = \"${HZ}\"",
        "labels = \"${HOOK}\"",
        "image = \"${HZ}\"",
    ] {
        let text = format!("{text}{bad}\n").replace("labels = [\"self-hosted\", \"linux\"]\n", "");
        let e = load_with(&text, &env, &Overrides::default())
            .result
            .expect_err("invalid");
        assert!(!format!("{e} {e:?}").contains("SECRET"), "{e}");
    }
    let text = text.replace("token = \"${HZ}\"", "token = 12345678");
    let e = load_with(&text, &env, &Overrides::default())
        .result
        .expect_err("invalid");
    assert!(!e.to_string().contains("12345678"), "{e}");
}

#[test]
fn the_effective_configuration_reads_back() {
    let config = load(MINIMAL).expect("valid");
    let toml = config.to_redacted_toml().expect("toml");
    assert!(toml.contains("registration = \"3m\""), "{toml}");
    assert!(toml.contains("[[pools]]"), "{toml}");
    // With secrets redacted it no longer carries the tokens, but its shape is a valid config.
    let back: Config = toml::from_str(&toml).expect("reads back");
    assert_eq!(back.pools, config.pools);
    assert_eq!(back.deadlines, config.deadlines);
}

/// The example file's comments promise routes; the planner must deliver them.
#[test]
fn the_example_routes_jobs_as_its_comments_say() {
    use mayfly_core::{Action, ForgeKind, Job, JobKey, JobStatus, Labels, Snapshot, Time};
    let text = include_str!("../../../../examples/mayfly.toml");
    let pools = load(text).expect("example loads").pools();
    let job = |id, labels: &[&str]| Job {
        key: JobKey {
            forge: ForgeKind::Github,
            scope: "acme/app".into(),
            id,
        },
        run_id: Some(1),
        attempt: 1,
        labels: Labels::new(labels.iter().copied()),
        status: JobStatus::Queued,
        queued_at: Time::from_secs(0),
        instances_created: 0,
        runner: None,
    };
    let snap = Snapshot {
        jobs: vec![
            job(1, &["self-hosted", "big-arm"]),
            job(2, &["self-hosted", "linux", "x64", "in-nbg1"]),
        ],
        ..Default::default()
    };
    let plan = mayfly_core::plan(&snap, &pools, Time::from_secs(10));
    let creates: Vec<(String, Vec<String>, Vec<String>)> = plan
        .creates()
        .filter_map(|a| match a {
            Action::Create {
                pool,
                spec,
                job: Some(_),
                ..
            } => Some((pool.clone(), spec.types.clone(), spec.locations.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        creates,
        [
            (
                "linux-arm64".to_string(),
                vec!["cax41".to_string()],
                vec!["fsn1".to_string()]
            ),
            (
                "linux-x64".to_string(),
                vec!["cx23".to_string(), "cpx22".to_string()],
                vec!["nbg1".to_string()]
            ),
        ]
    );
}

const APP_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../sim/tests/fixtures/github/test-app-key.TEST-ONLY.pem"
);

#[test]
fn a_github_app_needs_no_token_and_its_key_file_is_found_next_to_the_config() {
    let text = MINIMAL.replace(
        "[github]\n",
        "[github]\nenterprise = \"big\"\nrunner_group = 7\nregistration = \"token\"\n",
    ) + "[github.app]\nid = 42\ninstallation_id = 7\nprivate_key_file = \"keys/app.pem\"\n\
         [github.limits]\nwrite_interval = \"750ms\"\nreserve = 0.2\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::copy(APP_KEY, dir.path().join("keys/app.pem")).unwrap();
    let path = dir.path().join("mayfly.toml");
    std::fs::write(&path, &text).unwrap();
    let env = Env::from_pairs([("HETZNER_TOKEN", "hz"), ("HOME", "/home/u")]);
    let config = Config::load(Some(&path), &Overrides::default(), &env).expect("valid");

    let gh = config.github();
    let mayfly_forge::github::AuthConfig::App {
        app_id,
        installation_id,
        private_key_path,
    } = &gh.client.auth
    else {
        panic!("expected App auth, got {:?}", gh.client.auth);
    };
    assert_eq!((*app_id, *installation_id), (42, 7));
    assert_eq!(private_key_path, &dir.path().join("keys/app.pem"));
    assert_eq!(
        gh.scopes().unwrap().len(),
        2,
        "a repository and an enterprise"
    );
    assert_eq!(
        gh.runner_group,
        Some(mayfly_forge::github::RunnerGroup::Id(7))
    );
    assert_eq!(gh.registration, mayfly_forge::github::Registration::Token);
    assert_eq!(gh.client.limits.write_interval_ms, 750);
    assert_eq!(gh.client.limits.reserve, 0.2);
    assert_eq!(gh.client.limits.request_timeout_ms, 10_000);
    mayfly_forge::github::Client::new(&gh.client).expect("the key loads");
}

#[test]
fn a_github_app_key_that_cannot_be_read_is_named_without_its_contents() {
    let text = format!(
        "{MINIMAL}[github.app]\nid = 1\ninstallation_id = 2\nprivate_key_file = \"missing.pem\"\n"
    );
    let e = error(&text);
    assert!(
        e.contains("github.app.private_key_file: missing.pem: "),
        "{e}"
    );

    let loaded = load_with(
        &text.replace("missing.pem", "mayfly.toml"),
        &BASE_ENV,
        &Overrides::default(),
    );
    let e = loaded.result.expect_err("not a key").to_string();
    assert!(e.contains("not an RSA private key"), "{e}");
    assert!(!e.contains("[github]"), "the file's contents stay out: {e}");
}

#[test]
fn github_scope_and_limit_mistakes_are_named() {
    let text = MINIMAL.replace(
        "[github]\n",
        "[github]\nenterprise = \"a b\"\nrunner_group = \"linux\"\n",
    ) + "[github.limits]\nreserve = 1.5\nmax_concurrent = 0\n";
    let e = error(&text);
    assert!(
        e.contains("github.enterprise: expected an enterprise name"),
        "{e}"
    );
    assert!(
        e.contains("github.limits.reserve: must be between 0 and 1"),
        "{e}"
    );
    assert!(
        e.contains("github.limits.max_concurrent: must be at least 1"),
        "{e}"
    );

    let no_credential = load_with(
        MINIMAL,
        &[("HETZNER_TOKEN", "hz"), ("HOME", "/h")],
        &Overrides::default(),
    );
    let e = no_credential.result.expect_err("no token").to_string();
    assert!(e.contains("github.token: not set"), "{e}");
    assert!(e.contains("[github.app]"), "the hint names the App: {e}");
}

#[test]
fn planning_needs_no_token_or_scope_but_still_checks_the_pools() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mayfly.toml");
    let env = Env::from_pairs([("HOME", "/h")]);
    let pools = "[[pools]]\nname = \"linux\"\nprovider = \"hetzner\"\nlabels = [\"self-hosted\"]\ntypes = [\"cx23\"]\nlocations = [\"fsn1\"]\n";
    std::fs::write(&path, pools).expect("write config");
    let c = Config::load_for_planning(Some(&path), &Overrides::default(), &env).expect("valid");
    assert_eq!(c.pools().pools[0].name, "linux");
    let full = Config::load(Some(&path), &Overrides::default(), &env).expect_err("no tokens");
    assert!(full.to_string().contains("github.token: not set"), "{full}");

    // Tokens from unset variables, as the shipped example takes them, are no obstacle either.
    let tokens = format!(
        "[github]\ntoken = \"${{GITHUB_TOKEN}}\"\n[providers.hetzner]\nkind = \"hetzner\"\ntoken = \"${{HETZNER_TOKEN}}\"\n{pools}"
    );
    std::fs::write(&path, &tokens).expect("write config");
    Config::load_for_planning(Some(&path), &Overrides::default(), &env).expect("valid");
    let full = Config::load(Some(&path), &Overrides::default(), &env).expect_err("unset");
    assert!(
        full.to_string().contains("`GITHUB_TOKEN` is not set"),
        "{full}"
    );

    std::fs::write(&path, pools.replace("types = [\"cx23\"]\n", "mx = 3\n")).expect("write");
    let e = Config::load_for_planning(Some(&path), &Overrides::default(), &env).expect_err("bad");
    assert!(e.to_string().contains("pools[0].mx: unknown key"), "{e}");
}

const AWS: &str = r#"
[github]
repositories = ["acme/app"]

[providers.ec2]
kind = "aws-ec2"
region = "eu-west-1"
endpoint_url = "http://127.0.0.1:5000"
ami = "ami-0abc"
subnets = ["subnet-1", "subnet-2"]
security_groups = ["sg-1"]
on_demand_fallback = ["InsufficientInstanceCapacity"]
root_volume_gb = 30

[providers.ec2.prices]
"m7i.large" = 0.1008

[providers.fargate]
kind = "aws-ecs"
cluster = "ci"
launch_type = "fargate-spot"
subnets = ["subnet-1"]
ssm_prefix = "/mayfly/runners"

[[pools]]
name = "ec2"
provider = "ec2"
labels = ["self-hosted", "linux"]
types = ["m7i.large"]

[[pools]]
name = "tasks"
provider = "fargate"
labels = ["self-hosted", "container"]
max = 20
"#;

#[cfg(feature = "aws")]
#[test]
fn aws_providers_load_and_convert() {
    let c = load(AWS).expect("valid");
    let p = &c.providers["ec2"];
    assert_eq!(p.kind, schema::ProviderKind::AwsEc2);
    assert_eq!(p.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
    assert!(p.spot, "spot by default");
    {
        let e = c.aws_ec2(p);
        assert_eq!(e.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(e.aws.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(e.on_demand_fallback, ["InsufficientInstanceCapacity"]);
        assert_eq!(e.prices["m7i.large"], 0.1008);
        assert_eq!(e.check(), Ok(()));
        let f = c.aws_ecs(&c.providers["fargate"]);
        assert_eq!(f.capacity, mayfly_provider_aws::ecs::Capacity::FargateSpot);
        assert_eq!(f.parameter("r").as_deref(), Some("/mayfly/runners/r"));
        assert_eq!(f.check(), Ok(()));
    }
}

#[cfg(feature = "aws")]
#[test]
fn aws_mistakes_are_named_by_key() {
    let msg = error(
        &AWS.replace("ami = \"ami-0abc\"\n", "")
            .replace("\"m7i.large\" = 0.1008", "\"m6i.large\" = 0.1")
            .replace("cluster = \"ci\"\n", "")
            .replace("sg-1", "default"),
    );
    for want in [
        "providers.ec2.ami: neither `ami` nor `launch_template` is set",
        "pools[0].types[0]: no price for m7i.large in providers.ec2.prices",
        "providers.fargate.cluster: not set",
        "providers.ec2.security_groups[0]: expected a security group id",
    ] {
        assert!(msg.contains(want), "{want:?} missing from:\n{msg}");
    }
    let msg = error(&AWS.replace(
        "kind = \"aws-ec2\"",
        "kind = \"aws-ec2\"\ntoken = \"AKIA-secret\"",
    ));
    assert!(
        msg.contains("providers.ec2.token: AWS credentials never go in the configuration"),
        "{msg}"
    );
    assert!(!msg.contains("AKIA-secret"), "{msg}");
    let msg = error(&AWS.replace("launch_type = \"fargate-spot\"", "launch_type = \"lambda\""));
    assert!(msg.contains("providers.fargate.launch_type"), "{msg}");
    let msg = error(&AWS.replace("region = \"eu-west-1\"", "regoin = \"eu-west-1\""));
    assert!(msg.contains("regoin"), "unknown keys are refused: {msg}");
}

#[cfg(not(feature = "aws"))]
#[test]
fn without_the_aws_feature_aws_kinds_are_refused() {
    let msg = error(AWS);
    assert!(
        msg.contains("providers.ec2.kind: aws-ec2 needs the `aws` feature"),
        "{msg}"
    );
}

#[cfg(feature = "aws")]
#[test]
fn the_aws_example_loads() {
    let c = load(include_str!("../../../../examples/aws.toml")).expect("examples/aws.toml loads");
    assert_eq!(c.pools.len(), 3);
    assert_eq!(c.providers["fargate"].kind, schema::ProviderKind::AwsEcs);
    assert_eq!(c.aws_ec2(&c.providers["ec2"]).check(), Ok(()));
}

#[cfg(feature = "aws")]
#[test]
fn an_aws_asg_pool_is_scaled_by_its_group_not_the_planner() {
    let text = format!(
        "{AWS}\n[providers.asg]\nkind = \"aws-asg\"\ngroup = \"ci\"\n\n[providers.asg.scaling]\n\
         max = 20\nstep = 2\nin_cooldown = \"10m\"\n\n[[pools]]\nname = \"big\"\nprovider = \"asg\"\n\
         labels = [\"self-hosted\", \"big\"]\n"
    );
    let c = load(&text).expect("valid");
    assert!(
        c.pools().pools.iter().all(|p| p.name != "big"),
        "the planner never sees the group's pool"
    );
    let a = c.aws_asg(&c.providers["asg"]);
    assert_eq!(
        (a.group.as_str(), a.policy.max, a.policy.step),
        ("ci", 20, 2)
    );
    assert_eq!(a.policy.in_cooldown, Duration::from_secs(600));
    assert_eq!(a.check(), Ok(()));
    let msg = error(&text.replace(
        "step = 2",
        "step = 0\nscale_out_threshold = 1\nscale_in_threshold = 3",
    ));
    assert!(
        msg.contains("providers.asg.scaling.step: must be at least 1"),
        "{msg}"
    );
    assert!(
        msg.contains("providers.asg.scaling.scale_in_threshold"),
        "{msg}"
    );
    let msg = error(&text.replace(
        "name = \"big\"\nprovider = \"asg\"",
        "name = \"big\"\nprovider = \"ec2\"\ntypes = [\"m7i.large\"]",
    ));
    assert!(
        msg.contains("an aws-asg provider backs exactly one pool, and 0 name it"),
        "{msg}"
    );
}

#[test]
fn config_check_shows_each_provider_only_the_keys_of_its_kind() {
    let hetzner = load(MINIMAL).expect("valid").to_redacted_toml().unwrap();
    let table = hetzner
        .split("[providers.hetzner]")
        .nth(1)
        .and_then(|t| t.split("\n[").next())
        .expect("the provider's table");
    assert!(table.contains("ipv4 = true"), "{table}");
    for aws_only in ["spot", "fallback_to_fargate", "assign_public_ip", "region"] {
        assert!(
            !table.contains(aws_only),
            "{aws_only} under Hetzner:\n{table}"
        );
    }
}

#[cfg(feature = "aws")]
#[test]
fn config_check_shows_aws_providers_their_own_keys_only() {
    let text = load(AWS).expect("valid").to_redacted_toml().unwrap();
    let table = |name: &str| {
        text.split(&format!("[providers.{name}]\n"))
            .nth(1)
            .and_then(|t| t.split("\n[").next())
            .unwrap_or_else(|| panic!("no [providers.{name}] in:\n{text}"))
            .to_string()
    };
    let ecs = table("fargate");
    assert!(ecs.contains("fallback_to_fargate = true"), "{ecs}");
    for other in ["ipv4", "spot =", "ami", "root_volume_gb"] {
        assert!(!ecs.contains(other), "{other} under aws-ecs:\n{ecs}");
    }
    let ec2 = table("ec2");
    assert!(
        ec2.contains("spot = true") && ec2.contains("ami = \"ami-0abc\""),
        "{ec2}"
    );
    for other in ["ipv4", "fallback_to_fargate", "assign_public_ip", "cluster"] {
        assert!(!ec2.contains(other), "{other} under aws-ec2:\n{ec2}");
    }
}

/// A local provider next to the Hetzner one; the runner directory is made by each test.
const LOCAL: &str = r#"
[github]
repositories = ["acme/app"]

[providers.here]
kind = "local"
slots = 3
runner_dir = "runner"

[providers.here.runner_env]
HTTPS_PROXY = "http://proxy:3128"

[[pools]]
name = "host"
provider = "here"
labels = ["self-hosted", "linux"]
max = 10
"#;

/// Loads `text` with an executable `runner/run.sh` beside the file.
fn load_local(text: &str) -> (tempfile::TempDir, Result<Config, ConfigError>) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("runner")).unwrap();
    let run = dir.path().join("runner/run.sh");
    std::fs::write(&run, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("mayfly.toml");
    std::fs::write(&path, text).expect("write config");
    let r = Config::load(
        Some(&path),
        &Overrides::default(),
        &Env::from_pairs(BASE_ENV.iter().copied()),
    );
    (dir, r)
}

#[test]
fn a_local_provider_loads_converts_and_caps_its_pools_at_its_slots() {
    let (dir, c) = load_local(LOCAL);
    let c = c.expect("valid");
    let p = &c.providers["here"];
    let l = c.local("here", p).unwrap();
    assert_eq!(l.slots, 3);
    assert_eq!(
        l.runner_dir,
        dir.path().join("runner"),
        "relative to the file"
    );
    assert_eq!(
        l.work_dir,
        Path::new("/home/u/.local/state/mayfly/local/here")
    );
    assert_eq!(
        l.env,
        [("HTTPS_PROXY".to_string(), "http://proxy:3128".to_string())]
    );
    assert!(!l.docker);
    assert_eq!(c.pools().pools[0].max, Some(3), "max 10 capped at 3 slots");
    assert!(
        !c.pools().recycling.enabled,
        "nothing to recycle on local pools alone"
    );
    let shown = c.to_redacted_toml().unwrap();
    assert!(
        shown.contains("slots = 3") && shown.contains("work_dir"),
        "{shown}"
    );
}

#[test]
fn local_mistakes_are_named_by_key() {
    let cases = [
        (
            LOCAL.replace("runner_dir = \"runner\"\n", ""),
            "providers.here.runner_dir: not set",
        ),
        (
            LOCAL.replace("runner_dir = \"runner\"", "runner_dir = \"nowhere\""),
            "providers.here.runner_dir: no executable run.sh in",
        ),
        (
            LOCAL.replace("slots = 3", "slots = 0"),
            "providers.here.slots: must be at least 1",
        ),
        (
            LOCAL.replace("slots = 3", "slots = 3\ndocker = true"),
            "providers.here.docker_image: docker = true needs an image",
        ),
        (
            LOCAL.replace("slots = 3", "slots = 3\ndocker_image = \"x\""),
            "providers.here.docker_image: is used only with docker = true",
        ),
        (
            LOCAL.replace("HTTPS_PROXY", "\"BAD-NAME\""),
            "providers.here.runner_env.BAD-NAME: is not an environment variable name",
        ),
        (
            LOCAL.replace(
                "repositories = [\"acme/app\"]",
                "repositories = [\"acme/app\"]\nregistration = \"token\"",
            ),
            "github.registration: provider here is local",
        ),
        (
            format!("{LOCAL}\n[providers.hz]\nkind = \"hetzner\"\nslots = 2\n"),
            "providers.hz.slots: is a key of local providers only",
        ),
        (
            LOCAL.replace("slots = 3", "slots = 3\ntoken = \"tok_SECRET\""),
            "providers.here.token: a local provider has no token",
        ),
    ];
    for (text, want) in cases {
        let (_dir, r) = load_local(&text);
        let msg = r.expect_err(want).to_string();
        assert!(msg.contains(want), "{want:?} missing from:\n{msg}");
        assert!(!msg.contains("tok_SECRET"), "{msg}");
    }
}

#[test]
fn a_docker_local_provider_needs_no_runner_on_the_host() {
    let text = LOCAL.replace(
        "runner_dir = \"runner\"\n",
        "docker = true\ndocker_image = \"ghcr.io/actions/actions-runner:2.338.0\"\n",
    );
    let (_dir, c) = load_local(&text);
    let c = c.expect("valid");
    let l = c.local("here", &c.providers["here"]).unwrap();
    assert!(l.docker);
    assert_eq!(l.runner_dir, Path::new("/home/runner"));
}

/// Intervals and deadlines have floors (`poll = "1ns"` once made 32,529 GitHub calls in ten
/// seconds) and ceilings; the error names the key, where it is, and the bound.
#[test]
fn durations_below_their_floor_or_above_their_ceiling_are_named() {
    let poll = error(&format!("[intervals]\npoll = \"1ms\"\n{MINIMAL}"));
    assert_eq!(
        poll,
        "mayfly.toml:2:8: intervals.poll: must be at least 1s; shorter makes mayfly call GitHub \
         and the clouds too often"
    );
    for (table, key, value, bound) in [
        ("intervals", "reconcile", "10ms", "at least 1s"),
        ("intervals", "confirm_queued", "1s", "at least 10s"),
        ("intervals", "resync", "400d", "at most 1d"),
        ("deadlines", "registration", "1s", "at least 5s"),
        ("deadlines", "max_lifetime", "10s", "at least 1m"),
        ("github.limits", "request_timeout", "1ms", "at least 1s"),
        ("http", "header_timeout", "10ms", "at least 1s"),
        ("http", "body_timeout", "1h", "at most 10m"),
        ("leader", "lease", "100ms", "at least 1s"),
        ("retention", "events", "1m", "at least 1h"),
        ("retention", "every", "1s", "at least 1m"),
    ] {
        let msg = error(&format!("[{table}]\n{key} = \"{value}\"\n{MINIMAL}"));
        assert!(
            msg.contains(&format!("{table}.{key}: must be {bound}")),
            "{table}.{key} = {value}: {msg}"
        );
    }
    let renew = error(&format!(
        "[leader]\nlease = \"3s\"\nrenew = \"2s\"\n{MINIMAL}"
    ));
    assert!(
        renew.contains("leader.renew: must be at most a third of leader.lease (3s)"),
        "{renew}"
    );
    // What the tests and the examples use stays valid.
    let fast = "[intervals]\nreconcile = \"1s\"\npoll = \"1s\"\nresync = \"2s\"\n\
                [deadlines]\nregistration = \"5s\"\npowered_off = \"1s\"\n\
                [github.limits]\nwrite_interval = \"1ms\"\n";
    load(&format!("{fast}{MINIMAL}")).expect("the fastest settings the tests use are valid");
}

#[test]
fn listeners_leader_and_retention_load_with_defaults() {
    let config = load(MINIMAL).expect("valid");
    assert_eq!(config.api.listen, None);
    assert_eq!(config.api_addr(), config.listen);
    let serve = config.serve_options(1_024);
    assert_eq!(
        (
            serve.header_timeout,
            serve.body_timeout,
            serve.max_connections
        ),
        (Duration::from_secs(10), Duration::from_secs(10), 528)
    );
    let leader = config.leader("r1");
    assert_eq!(
        (leader.lease, leader.renew_every, leader.replica.as_str()),
        (Duration::from_secs(10), Duration::from_secs(2), "r1")
    );
    assert_eq!(config.retention(), mayfly_store::Retention::default());

    let text = format!(
        "[api]\nlisten = \"127.0.0.1:9090\"\n[http]\nmax_connections = 100\n\
         [leader]\nlease = \"15s\"\nrenew = \"3s\"\n[retention]\nevents = \"2d\"\n{MINIMAL}"
    );
    let config = load(&text).expect("valid");
    assert_eq!(config.api_addr().to_string(), "127.0.0.1:9090");
    assert_eq!(config.serve_options(1_024).max_connections, 100);
    assert_eq!(config.leader("r").lease, Duration::from_secs(15));
    assert_eq!(config.retention().events, Duration::from_secs(2 * 86_400));

    let same = error(&format!(
        "listen = \"127.0.0.1:9090\"\n[api]\nlisten = \"127.0.0.1:9090\"\n{MINIMAL}"
    ));
    assert!(
        same.contains("api.listen: is the same address as listen"),
        "{same}"
    );
    let zero = error(&format!("[http]\nmax_connections = 0\n{MINIMAL}"));
    assert!(
        zero.contains("http.max_connections: must be at least 1"),
        "{zero}"
    );
}

/// Validation is linear in the number of meta labels: 38,000 of them once took 55 s (every key's
/// line was counted from the top of the file, every job label compared with every key).
#[test]
fn tens_of_thousands_of_meta_labels_validate() {
    let mut text = format!("{MINIMAL}[labels.meta]\n");
    for i in 0..38_000 {
        text.push_str(&format!("m{i} = [\"type-cx{i}\", \"in-fsn1\", \"l{i}\"]\n"));
    }
    text.push_str("Big = [\"x\"]\nbig = [\"y\"]\n");
    let msg = error(&text);
    assert!(
        msg.contains("labels.meta.big: `Big` and `big` are the same meta label"),
        "{msg}"
    );
    let config = load(&text.replace("Big = [\"x\"]\n", "")).expect("valid");
    assert_eq!(config.labels.meta.len(), 38_001);
    let last = text.lines().count() + 1;
    let line = error(&format!("{text}zzz = 3\n"));
    assert!(
        line.starts_with(&format!("mayfly.toml:{last}:7: labels.meta.zzz")),
        "positions stay right: {line}"
    );
}

const GITLAB_ONLY: &str = r#"
[gitlab]
url = "https://gitlab.example.com"
token = "glpat-SECRET-gitlab"
projects = ["acme/app"]
webhook_secret = "hook-SECRET"

[providers.hetzner]
kind = "hetzner"

[[pools]]
name = "linux"
provider = "hetzner"
labels = ["linux"]
types = ["cx23"]
locations = ["fsn1"]
"#;

#[test]
fn a_gitlab_only_configuration_needs_no_github_and_its_pools_take_gitlab_jobs() {
    let config = load(GITLAB_ONLY).expect("valid");
    assert!(!config.serves_github());
    assert_eq!(config.forges(), vec![mayfly_core::ForgeKind::Gitlab]);
    let pools = config.pools();
    assert_eq!(pools.pools[0].forges, vec![mayfly_core::ForgeKind::Gitlab]);
    assert_eq!(
        pools.standby_forge("linux"),
        mayfly_core::ForgeKind::Gitlab,
        "standby runners register with GitLab"
    );
    let shown = config.to_redacted_toml().expect("toml");
    assert!(!shown.contains("SECRET"), "{shown}");
    // With a repository, both are served, GitHub first.
    let both = format!("{GITLAB_ONLY}\n[github]\nrepositories = [\"acme/hub\"]\n");
    let config = load(&both).expect("valid");
    assert_eq!(
        config.forges(),
        vec![
            mayfly_core::ForgeKind::Github,
            mayfly_core::ForgeKind::Gitlab
        ]
    );
}

#[test]
fn gitlab_mistakes_are_named_by_their_key() {
    let bad_url = GITLAB_ONLY.replace("https://gitlab.example.com", "gitlab.example.com/api/v4");
    assert!(
        error(&bad_url).contains("gitlab.url"),
        "{}",
        error(&bad_url)
    );
    let no_scope = GITLAB_ONLY.replace("projects = [\"acme/app\"]", "");
    assert!(
        error(&no_scope).contains("gitlab: no project or group"),
        "{}",
        error(&no_scope)
    );
    let bad_path = GITLAB_ONLY.replace("\"acme/app\"", "\"acme/../app\"");
    assert!(
        error(&bad_path).contains("gitlab.projects"),
        "{}",
        error(&bad_path)
    );
    let github_pool = GITLAB_ONLY.replace(
        "labels = [\"linux\"]",
        "labels = [\"linux\"]\nforges = [\"github\"]",
    );
    let e = error(&github_pool);
    assert!(
        e.contains("pools[0].forges[0]") && e.contains("github is not configured"),
        "{e}"
    );
    assert!(!e.contains("SECRET"), "{e}");
}
