//! `mayfly gitlab register` against the fake GitLab: 50 tokens with a bad one among them, a
//! second run that changes nothing, a hand-written config.toml whose entries and comments stay,
//! `--dry-run`, and runners made with the API.

mod support;

use serde_json::{Value, json};
use support::sim::SimServe;

const PAT: &str = "sim-gitlab-token";
const HAND: &str = "# gitlab-runner's file, written by hand\nconcurrent = 4 # our limit\ncheck_interval = 0\n\n[[runners]]\n  # the docker runner stays\n  name = \"docker\"\n  url = \"https://gitlab.example.com\"\n  token = \"glrt-handwritten\"\n  executor = \"docker\"\n  [runners.docker]\n    image = \"alpine\"\n";

fn create_runner(sim: &SimServe, project: &Value) -> String {
    let (status, body) = support::sim::request_with(
        sim.gitlab.trim_start_matches("http://"),
        "POST",
        "/api/v4/user/runners",
        Some(&json!({"runner_type": "project_type", "project_id": project["id"], "tag_list": ["fargate"]}).to_string()),
        &format!("PRIVATE-TOKEN: {PAT}\r\n"),
    );
    assert_eq!(status, 201, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn register(
    dir: &std::path::Path,
    sim: &SimServe,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let config = dir.join("gitlab-runner/config.toml");
    let mut cmd = support::mayfly(dir, env);
    cmd.args([
        "gitlab",
        "register",
        "--url",
        &sim.gitlab,
        "--runner-config",
    ])
    .arg(&config)
    .args([
        "--mayfly",
        "/usr/local/bin/mayfly",
        "--executor-file",
        "/etc/gitlab-runner/mayfly-executor.toml",
    ])
    .args(extra);
    support::output(&mut cmd)
}

#[test]
fn fifty_tokens_one_bad_then_nothing_changes_and_the_hand_written_file_stays() {
    let sim = SimServe::start(&[]);
    let project = sim.post("gitlab/projects", &json!({"path": "acme/app"}));
    let dir = tempfile::tempdir().unwrap();
    let mut tokens: Vec<String> = (0..49).map(|_| create_runner(&sim, &project)).collect();
    tokens.insert(25, "glrt-not-a-runner-of-this-gitlab".into());
    let list = dir.path().join("tokens.txt");
    std::fs::write(&list, tokens.join("\n")).unwrap();
    let config = dir.path().join("gitlab-runner/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, HAND).unwrap();

    let tokens_arg = list.display().to_string();
    let (code, out, err) = register(dir.path(), &sim, &["--tokens", &tokens_arg], &[]);
    assert_eq!(code, 1, "one token failed: {out}{err}");
    assert!(
        err.contains("tokens.txt, line 26: token not registered"),
        "{err}"
    );
    assert!(
        !err.contains("glrt-not-a-runner") && !out.contains(&tokens[0]),
        "no token printed"
    );
    assert!(out.contains("49 runner entries added"), "{out}");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.starts_with(HAND),
        "the hand-written part is kept byte for byte:\n{text}"
    );
    let parsed: toml::Value = toml::from_str(&text).unwrap();
    let runners = parsed["runners"].as_array().unwrap();
    assert_eq!(runners.len(), 50);
    assert_eq!(parsed["concurrent"].as_integer(), Some(4));
    for r in &runners[1..] {
        assert_eq!(r["executor"].as_str(), Some("custom"));
        assert_eq!(
            r["custom"]["run_exec"].as_str(),
            Some("/usr/local/bin/mayfly")
        );
        assert_eq!(
            r["custom"]["run_args"].as_array().unwrap()[3].as_str(),
            Some("run")
        );
        assert!(r["id"].as_integer().unwrap() > 0);
    }
    let system_id =
        std::fs::read_to_string(dir.path().join("gitlab-runner/.runner_system_id")).unwrap();
    assert!(system_id.starts_with("r_"), "{system_id}");

    // Again: nothing changes (the bad token is still named).
    let (code, out, err) = register(dir.path(), &sim, &["--tokens", &tokens_arg], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("no change"), "{out}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);

    // A dry run with one more token shows it, redacted, and writes nothing.
    let extra = create_runner(&sim, &project);
    let more = dir.path().join("more.txt");
    std::fs::write(&more, format!("{}\n{extra}\n", tokens[0])).unwrap();
    let more_arg = more.display().to_string();
    let (code, out, err) = register(dir.path(), &sim, &["--tokens", &more_arg, "--dry-run"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("+[[runners]]")
            || out.contains("+ [[runners]]")
            || out.contains("+[[runners]]"),
        "{out}"
    );
    assert!(
        out.contains(&format!("glrt-…{}", &extra[extra.len() - 4..])) && !out.contains(&extra),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        text,
        "a dry run writes nothing"
    );
}

#[test]
fn runners_created_with_the_api_and_tokens_from_standard_input() {
    let sim = SimServe::start(&[]);
    let project = sim.post("gitlab/projects", &json!({"path": "acme/app"}));
    let dir = tempfile::tempdir().unwrap();
    let id = project["id"].as_u64().unwrap().to_string();
    let (code, out, err) = register(
        dir.path(),
        &sim,
        &[
            "--create",
            "2",
            "--tags",
            "fargate,linux",
            "--owner-id",
            &id,
        ],
        &[("GITLAB_TOKEN", PAT)],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !out.contains("glrt-") && !err.contains("glrt-"),
        "{out}{err}"
    );
    let text = std::fs::read_to_string(dir.path().join("gitlab-runner/config.toml")).unwrap();
    let parsed: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(parsed["runners"].as_array().unwrap().len(), 2);
    let runners = sim.get("gitlab/runners");
    let text = runners.to_string();
    assert!(text.contains("fargate") && text.contains("linux"), "{text}");

    // A token list on standard input.
    let token = create_runner(&sim, &project);
    let config = dir.path().join("gitlab-runner/config.toml");
    let mut cmd = support::mayfly(dir.path(), &[]);
    cmd.args([
        "gitlab",
        "register",
        "--url",
        &sim.gitlab,
        "--tokens",
        "-",
        "--runner-config",
    ])
    .arg(&config)
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("# one\n{token}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: toml::Value = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(parsed["runners"].as_array().unwrap().len(), 3);
}
