//! Webhook verification and parsing against GitHub's documented test vector, every community
//! `workflow_job` example (tests/fixtures/webhooks), and fuzzed bytes and mutated bodies.

use mayfly_core::{ForgeKind, JobStatus, Labels, Secret, Time};
use mayfly_forge::github::webhook::{
    Action, Delivery, JobUpdate, ParseError, SignatureError, parse, sign, verify_signature,
};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const VECTOR_SECRET: &str = "It's a Secret to Everybody";
const VECTOR_BODY: &[u8] = b"Hello, World!";
const VECTOR_SIGNATURE: &str =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

/// The vendored examples, read once: the fuzz properties use them in every case.
fn fixtures() -> &'static [(String, Vec<u8>)] {
    static ALL: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    ALL.get_or_init(read_fixtures)
}

fn read_fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().expect("file name").to_string_lossy().into();
            (name, std::fs::read(&p).expect("read fixture"))
        })
        .collect()
}

fn fixture(prefix: &str) -> &'static [u8] {
    let found = fixtures().iter().find(|(name, _)| name.starts_with(prefix));
    &found.expect("fixture").1
}

fn job(event: &str, body: &[u8]) -> JobUpdate {
    match parse(event, body) {
        Ok(Delivery::Job(update)) => update,
        other => panic!("expected a job update, got {other:?}"),
    }
}

#[test]
fn githubs_test_vector_verifies() {
    let secret = Secret::new(VECTOR_SECRET);
    assert_eq!(sign(&secret, VECTOR_BODY), VECTOR_SIGNATURE);
    assert_eq!(
        verify_signature(&secret, VECTOR_BODY, Some(VECTOR_SIGNATURE)),
        Ok(())
    );
    let upper = VECTOR_SIGNATURE.replace("757107ea", "757107EA");
    assert_eq!(verify_signature(&secret, VECTOR_BODY, Some(&upper)), Ok(()));
}

#[test]
fn wrong_missing_or_malformed_signatures_fail() {
    let secret = Secret::new(VECTOR_SECRET);
    let check = |header: Option<&str>| verify_signature(&secret, VECTOR_BODY, header);
    assert_eq!(check(None), Err(SignatureError::Missing));
    let wrong = VECTOR_SIGNATURE.replace("e17", "e18");
    assert_eq!(check(Some(&wrong)), Err(SignatureError::Mismatch));
    let other_secret = sign(&Secret::new("another"), VECTOR_BODY);
    assert_eq!(check(Some(&other_secret)), Err(SignatureError::Mismatch));
    let body_changed = verify_signature(&secret, b"Hello, World?", Some(VECTOR_SIGNATURE));
    assert_eq!(body_changed, Err(SignatureError::Mismatch));
    for malformed in [
        "",
        "sha256=",
        "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",
        "sha256=757107ea",
    ] {
        assert_eq!(
            check(Some(malformed)),
            Err(SignatureError::Malformed),
            "{malformed:?}"
        );
    }
}

#[test]
fn every_community_example_parses() {
    let all = fixtures();
    assert_eq!(
        all.len(),
        8,
        "the 8 workflow_job examples of @octokit/webhooks-examples"
    );
    for (name, body) in all {
        let update = job("workflow_job", body);
        assert_eq!(update.key.forge, ForgeKind::Github, "{name}");
        assert!(
            name.contains(&format!(".{}.", update.action)),
            "{name}: action {}",
            update.action
        );
        assert_eq!(update.status, update.action.status(), "{name}");
        assert!(!update.labels.is_empty(), "{name}");
        assert!(update.run_id > 0 && update.key.id > 0, "{name}");
    }
}

#[test]
fn examples_map_to_the_expected_updates() {
    let by_name = |n: &str| job("workflow_job", fixture(n));

    // In progress, from an older payload without run_attempt, created_at or workflow_name.
    let first = by_name("workflow_job.1.");
    assert_eq!(first.action, Action::InProgress);
    assert_eq!(first.status, JobStatus::InProgress);
    assert_eq!(&*first.key.scope, "octo-org/example-workflow");
    assert_eq!((first.key.id, first.run_id), (2832853555, 940463255));
    assert_eq!(first.run_attempt, None);
    assert_eq!(first.labels, Labels::new(["gpu", "db-app", "dc-03"]));
    assert_eq!(first.runner_name.as_deref(), Some("my runner"));
    assert_eq!(first.created_at, None);
    assert_eq!(first.started_at, Some(Time::from_secs(1_623_784_947)));

    let failed = by_name("workflow_job.2.");
    assert_eq!(failed.status, JobStatus::Completed);
    assert_eq!(failed.conclusion.as_deref(), Some("failure"));
    assert_eq!(failed.workflow_name.as_deref(), Some("CodeQL"));
    assert_eq!(failed.run_attempt, Some(1));
    assert_eq!(failed.created_at, Some(Time::from_secs(1_628_159_638)));
    assert_eq!(
        by_name("workflow_job.3.").conclusion.as_deref(),
        Some("success")
    );

    let queued = by_name("workflow_job.6.");
    assert_eq!(
        (queued.action, queued.status),
        (Action::Queued, JobStatus::Queued)
    );
    assert_eq!(queued.labels, Labels::new(["ubuntu-latest"]));

    // `queued` with status "waiting", and `waiting`: both still need a runner.
    for n in ["workflow_job.7.", "workflow_job.8."] {
        let u = by_name(n);
        assert_eq!(u.status, JobStatus::Queued, "{n}");
        assert_eq!(u.labels, Labels::new(["self-hosted", "k8s"]), "{n}");
        assert_eq!(&*u.key.scope, "lineville/elastic-machines-testing");
        assert_eq!(u.runner_name, None);
    }
    assert_eq!(by_name("workflow_job.8.").action, Action::Waiting);
}

#[test]
fn in_progress_maps_by_action_even_when_status_says_queued() {
    let mut value: serde_json::Value =
        serde_json::from_slice(fixture("workflow_job.6.")).expect("json");
    value["action"] = "in_progress".into();
    let update = job("workflow_job", value.to_string().as_bytes());
    assert_eq!(update.status, JobStatus::InProgress);
}

#[test]
fn other_events_are_ignored() {
    let ping = br#"{"zen":"Design for failure.","hook_id":1}"#;
    assert_eq!(
        parse("ping", ping),
        Ok(Delivery::Ignored {
            event: "ping".into()
        })
    );
    assert!(matches!(
        parse("push", b"not even json"),
        Ok(Delivery::Ignored { .. })
    ));
}

#[test]
fn unknown_actions_and_broken_payloads_are_typed_errors() {
    let mut value: serde_json::Value =
        serde_json::from_slice(fixture("workflow_job.6.")).expect("json");
    value["action"] = "requested".into();
    assert_eq!(
        parse("workflow_job", value.to_string().as_bytes()),
        Err(ParseError::UnknownAction("requested".into()))
    );
    assert_eq!(
        parse("workflow_job", br#"{"zen":"x"}"#),
        Err(ParseError::MissingAction)
    );
    assert!(matches!(
        parse("workflow_job", br#"{"action":"queued"}"#),
        Err(ParseError::Json(_))
    ));
    assert!(matches!(
        parse("workflow_job", b"{\"action\":"),
        Err(ParseError::Json(_))
    ));
    value["action"] = "queued".into();
    value["workflow_job"]["created_at"] = "yesterday".into();
    assert!(matches!(
        parse("workflow_job", value.to_string().as_bytes()),
        Err(ParseError::Time {
            field: "created_at",
            ..
        })
    ));
    // Ids past 2^63 - 1 are no GitHub ids (and fit no store column): refused as such.
    value["workflow_job"]["created_at"] = "2021-06-15T19:22:27Z".into();
    let big: u64 = 1 << 63;
    for field in ["id", "run_id"] {
        let mut v = value.clone();
        v["workflow_job"][field] = big.into();
        let err = parse("workflow_job", v.to_string().as_bytes()).expect_err(field);
        assert_eq!(err, ParseError::IdRange { field, value: big });
        assert!(err.to_string().contains("below 2^63"), "{err}");
    }
    value["workflow_job"]["id"] = i64::MAX.into();
    assert!(
        parse("workflow_job", value.to_string().as_bytes()).is_ok(),
        "the largest id is one"
    );
    let deep = "[".repeat(100_000);
    assert!(matches!(
        parse("workflow_job", deep.as_bytes()),
        Err(ParseError::Json(_))
    ));
    // A repository name GitHub never gives: no runner could register there, and such a name
    // must not reach the store, a log line or a table.
    for bad in [
        "acme/app?x=1#",
        "acme/app\n2026 INFO forged",
        "acme",
        "a/b/c",
        "/app",
    ] {
        value["workflow_job"]["created_at"] = serde_json::Value::Null;
        value["repository"]["full_name"] = bad.into();
        let err = parse("workflow_job", value.to_string().as_bytes()).expect_err(bad);
        assert!(matches!(err, ParseError::Repository(_)), "{bad}: {err:?}");
        assert!(!err.to_string().contains('\n'), "escaped: {err}");
    }
    let long_action = format!(r#"{{"action":"{}"}}"#, "x".repeat(10_000));
    let err = parse("workflow_job", long_action.as_bytes()).expect_err("unknown action");
    assert!(err.to_string().len() < 200, "{err}");
}

/// Each result must be typed and its message short; a panic fails the property by itself.
fn assert_typed(result: Result<Delivery, ParseError>) {
    if let Err(e) = result {
        assert!(e.to_string().len() < 300, "{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        assert_typed(parse("workflow_job", &body));
        let secret = Secret::new("s");
        prop_assert!(verify_signature(&secret, &body, std::str::from_utf8(&body).ok()).is_err());
    }

    #[test]
    fn mutated_examples_never_panic(
        pick in 0usize..8,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..12),
    ) {
        let all = fixtures();
        let mut body = all[pick % all.len()].1.clone();
        for (at, byte, kind) in edits {
            let at = at % (body.len() + 1);
            match kind {
                0 if at < body.len() => body[at] = byte,
                1 => body.insert(at, byte),
                _ if at < body.len() => { body.remove(at); }
                _ => body.push(byte),
            }
        }
        assert_typed(parse("workflow_job", &body));
    }

    #[test]
    fn retyped_fields_never_panic(
        pick in 0usize..8,
        field in prop::sample::select(vec![
            "id", "run_id", "run_attempt", "labels", "conclusion", "runner_name",
            "workflow_name", "created_at", "started_at", "status",
        ]),
        replacement in prop_oneof![
            Just(serde_json::Value::Null),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            ".{0,40}".prop_map(serde_json::Value::from),
            Just(serde_json::json!([1, "a", null])),
            Just(serde_json::json!({"nested": {"deeper": []}})),
        ],
    ) {
        let all = fixtures();
        let mut value: serde_json::Value =
            serde_json::from_slice(&all[pick % all.len()].1).expect("fixture is JSON");
        value["workflow_job"][field] = replacement;
        assert_typed(parse("workflow_job", value.to_string().as_bytes()));
    }
}
