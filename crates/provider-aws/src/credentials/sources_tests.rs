//! Each network source against its local fake: web identity and AssumeRole (STS), the
//! container endpoint and the instance metadata service; and the order the chain tries them.

use super::fakes;
use super::{CredentialsError, Env, Provider};

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

fn token_file(dir: &tempfile::TempDir, name: &str, token: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path.display().to_string()
}

/// No shared files, no metadata service: only what a test adds.
fn base<'a>(more: &[(&'a str, &'a str)]) -> Env {
    let mut vars = vec![
        ("AWS_CONFIG_FILE", "/nonexistent/config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    vars.extend_from_slice(more);
    Env::of(vars)
}

#[tokio::test]
async fn a_web_identity_token_is_exchanged_at_sts_unsigned() {
    let (sts, seen) = fakes::sts("eks-projected-token", "unused").await;
    let dir = tempfile::tempdir().unwrap();
    let file = token_file(&dir, "token", "eks-projected-token");
    let env = base(&[
        ("AWS_WEB_IDENTITY_TOKEN_FILE", &file),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/mayfly"),
        ("AWS_ROLE_SESSION_NAME", "controller"),
        ("AWS_ENDPOINT_URL_STS", &sts),
    ]);
    let p = Provider::from_env(&env, &http(), Some("eu-west-1"));
    let c = p.get().await.unwrap();
    assert_eq!(
        (c.access_key_id.as_str(), c.source),
        ("AKIDWEB", "web identity")
    );
    assert_eq!(c.session_token.unwrap().expose(), "sts-token");
    assert!(c.expires.is_some());
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "AssumeRoleWithWebIdentity role=arn:aws:iam::123456789012:role/mayfly session=controller signed=false"
        ]
    );
    // Cached: a second call asks STS nothing.
    p.get().await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1);

    let wrong = token_file(&dir, "wrong", "someone-elses-token");
    let env = base(&[
        ("AWS_WEB_IDENTITY_TOKEN_FILE", &wrong),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/mayfly"),
        ("AWS_ENDPOINT_URL_STS", &sts),
    ]);
    let e = Provider::from_env(&env, &http(), None)
        .get()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("InvalidIdentityToken"), "{e}");
    assert!(!e.to_string().contains("someone-elses-token"), "{e}");
}

#[tokio::test]
async fn a_profile_role_is_assumed_with_its_source_profiles_keys() {
    let (sts, seen) = fakes::sts("unused", "AKIDBASE").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        "[profile ci]\nrole_arn = arn:aws:iam::1:role/runners\nsource_profile = base\nrole_session_name = mayfly-ci\n\
         [profile base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = base-secret\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let env = Env::of([
        ("AWS_CONFIG_FILE", config.as_str()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_PROFILE", "ci"),
        ("AWS_ENDPOINT_URL_STS", &sts),
    ]);
    let c = Provider::from_env(&env, &http(), Some("eu-west-1"))
        .get()
        .await
        .unwrap();
    assert_eq!(
        (c.access_key_id.as_str(), c.source),
        ("AKIDROLE", "assume role")
    );
    assert_eq!(
        *seen.lock().unwrap(),
        ["AssumeRole role=arn:aws:iam::1:role/runners session=mayfly-ci signed=true"]
    );
}

#[tokio::test]
async fn container_credentials_carry_the_authorization_token_from_its_file() {
    let (url, seen) = fakes::container("task-auth-token").await;
    let dir = tempfile::tempdir().unwrap();
    let file = token_file(&dir, "auth", "task-auth-token");
    let full = format!("{url}/v2/credentials");
    let env = base(&[
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &file),
    ]);
    let c = Provider::from_env(&env, &http(), None).get().await.unwrap();
    assert_eq!(
        (c.access_key_id.as_str(), c.source),
        ("AKIDTASK", "container")
    );
    assert_eq!(c.session_token.unwrap().expose(), "served-token");
    assert_eq!(
        *seen.lock().unwrap(),
        ["GET auth=Some(\"task-auth-token\")"]
    );

    let env = base(&[
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong"),
    ]);
    let e = Provider::from_env(&env, &http(), None)
        .get()
        .await
        .unwrap_err();
    assert!(
        matches!(e, CredentialsError::Invalid { .. }) && e.to_string().contains("401"),
        "{e}"
    );

    // The token never goes over plain HTTP to just any host.
    let env = base(&[(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "http://198.51.100.7/creds",
    )]);
    let e = Provider::from_env(&env, &http(), None)
        .get()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("plain http"), "{e}");
}

#[tokio::test]
async fn imdsv2_gives_the_roles_credentials_and_the_region_with_a_session_token() {
    let (url, seen) = fakes::imds().await;
    let env = Env::of([
        ("AWS_CONFIG_FILE", "/nonexistent/config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", url.as_str()),
    ]);
    let c = Provider::from_env(&env, &http(), None).get().await.unwrap();
    assert_eq!(
        (c.access_key_id.as_str(), c.source),
        ("AKIDIMDS", "instance metadata")
    );
    assert!(c.expires.is_some());
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "PUT token ttl=Some(\"21600\")",
            "GET roles token=true",
            "GET credentials token=true"
        ]
    );
    assert_eq!(
        super::instance_region(&env, &http()).await.as_deref(),
        Some("eu-central-1")
    );
}

#[tokio::test]
async fn with_nothing_configured_the_error_lists_what_was_looked_at() {
    let e = Provider::from_env(&base(&[]), &http(), None)
        .get()
        .await
        .unwrap_err();
    assert!(matches!(e, CredentialsError::Missing(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("AWS_ACCESS_KEY_ID") && text.contains("AWS_WEB_IDENTITY_TOKEN_FILE"),
        "{text}"
    );
}

#[tokio::test]
async fn the_chain_prefers_environment_then_web_identity_then_container_then_imds() {
    let (sts, _) = fakes::sts("t", "unused").await;
    let (container, _) = fakes::container("c").await;
    let (imds, _) = fakes::imds().await;
    let dir = tempfile::tempdir().unwrap();
    let file = token_file(&dir, "token", "t");
    let full = format!("{container}/v2/credentials");
    let all = [
        ("AWS_CONFIG_FILE", "/nonexistent/config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ("AWS_ACCESS_KEY_ID", "AKIDENV"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", file.as_str()),
        ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
        ("AWS_ENDPOINT_URL_STS", sts.as_str()),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", full.as_str()),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "c"),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.as_str()),
    ];
    let without = |drop: &[&str]| Env::of(all.iter().copied().filter(|(k, _)| !drop.contains(k)));
    let key = |env: Env| async move {
        Provider::from_env(&env, &http(), None)
            .get()
            .await
            .unwrap()
            .access_key_id
    };
    assert_eq!(key(without(&[])).await, "AKIDENV");
    assert_eq!(key(without(&["AWS_ACCESS_KEY_ID"])).await, "AKIDWEB");
    assert_eq!(
        key(without(&["AWS_ACCESS_KEY_ID", "AWS_ROLE_ARN"])).await,
        "AKIDTASK"
    );
    assert_eq!(
        key(without(&[
            "AWS_ACCESS_KEY_ID",
            "AWS_ROLE_ARN",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI"
        ]))
        .await,
        "AKIDIMDS"
    );
}
