//! Small local fakes of the credential endpoints, for the tests of each source: STS (both
//! AssumeRole calls), the ECS container endpoint and an IMDSv2-only metadata service. Each
//! answers as AWS documents, refuses what AWS would refuse, and records what it was sent.

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What a fake was sent: one line per request.
pub type Seen = Arc<Mutex<Vec<String>>>;

/// Serves `router` on a free loopback port until the test ends; its base URL.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

fn in_an_hour() -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string()
}

fn xml_credentials(action: &str, key: &str) -> String {
    format!(
        "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><{action}Result>\
         <Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>sts-secret</SecretAccessKey>\
         <SessionToken>sts-token</SessionToken><Expiration>{}</Expiration></Credentials>\
         </{action}Result></{action}Response>",
        in_an_hour()
    )
}

fn sts_error(code: &str) -> (StatusCode, String) {
    (
        StatusCode::FORBIDDEN,
        format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>refused</Message></Error></ErrorResponse>"
        ),
    )
}

/// STS: AssumeRoleWithWebIdentity takes `web_token` (unsigned); AssumeRole wants a SigV4
/// signature by `signer_key`.
pub async fn sts(web_token: &'static str, signer_key: &'static str) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let router = Router::new()
        .route(
            "/",
            post(
                move |State(seen): State<Seen>,
                      headers: HeaderMap,
                      Form(f): Form<HashMap<String, String>>| async move {
                    let action = f.get("Action").cloned().unwrap_or_default();
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    seen.lock().unwrap().push(format!(
                        "{action} role={} session={} signed={}",
                        f.get("RoleArn").cloned().unwrap_or_default(),
                        f.get("RoleSessionName").cloned().unwrap_or_default(),
                        !auth.is_empty()
                    ));
                    match action.as_str() {
                        "AssumeRoleWithWebIdentity" => {
                            if f.get("WebIdentityToken").map(String::as_str) != Some(web_token) {
                                return sts_error("InvalidIdentityToken");
                            }
                            (
                                StatusCode::OK,
                                xml_credentials("AssumeRoleWithWebIdentity", "AKIDWEB"),
                            )
                        }
                        "AssumeRole" => {
                            let prefix = format!("AWS4-HMAC-SHA256 Credential={signer_key}/");
                            if !auth.starts_with(&prefix) || !auth.contains("/sts/aws4_request") {
                                return sts_error("SignatureDoesNotMatch");
                            }
                            (StatusCode::OK, xml_credentials("AssumeRole", "AKIDROLE"))
                        }
                        _ => sts_error("InvalidAction"),
                    }
                },
            ),
        )
        .with_state(seen.clone());
    (serve(router).await, seen)
}

fn json_credentials(key: &str, with_code: bool) -> String {
    let code = if with_code {
        "\"Code\": \"Success\", \"Type\": \"AWS-HMAC\", "
    } else {
        ""
    };
    format!(
        "{{{code}\"AccessKeyId\": \"{key}\", \"SecretAccessKey\": \"served-secret\", \"Token\": \"served-token\", \"Expiration\": \"{}\"}}",
        in_an_hour()
    )
}

/// The container endpoint at `/v2/credentials`, wanting `token` in `Authorization`.
pub async fn container(token: &'static str) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let router = Router::new()
        .route(
            "/v2/credentials",
            get(
                move |State(seen): State<Seen>, headers: HeaderMap| async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    seen.lock().unwrap().push(format!("GET auth={auth:?}"));
                    if auth.as_deref() != Some(token) {
                        return (StatusCode::UNAUTHORIZED, "unauthorized".to_string())
                            .into_response();
                    }
                    json_credentials("AKIDTASK", false).into_response()
                },
            ),
        )
        .with_state(seen.clone());
    (serve(router).await, seen)
}

/// An IMDSv2-only metadata service with role `runner-role` in `eu-central-1`: every GET
/// without the session token is refused with 401, as AWS does when IMDSv1 is off.
pub async fn imds() -> (String, Seen) {
    const TOKEN: &str = "imds-session-token";
    let seen: Seen = Arc::default();
    let guarded = |seen: &Seen, headers: &HeaderMap, what: &str| {
        let ok = headers
            .get("x-aws-ec2-metadata-token")
            .and_then(|v| v.to_str().ok())
            == Some(TOKEN);
        seen.lock().unwrap().push(format!("GET {what} token={ok}"));
        ok
    };
    let router = Router::new()
        .route(
            "/latest/api/token",
            put(|State(seen): State<Seen>, headers: HeaderMap| async move {
                let ttl = headers
                    .get("x-aws-ec2-metadata-token-ttl-seconds")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                seen.lock().unwrap().push(format!("PUT token ttl={ttl:?}"));
                match ttl {
                    Some(_) => (StatusCode::OK, TOKEN.to_string()),
                    None => (StatusCode::BAD_REQUEST, String::new()),
                }
            }),
        )
        .route(
            "/latest/meta-data/iam/security-credentials/",
            get(
                move |State(seen): State<Seen>, headers: HeaderMap| async move {
                    if !guarded(&seen, &headers, "roles") {
                        return (StatusCode::UNAUTHORIZED, String::new());
                    }
                    (StatusCode::OK, "runner-role\n".to_string())
                },
            ),
        )
        .route(
            "/latest/meta-data/iam/security-credentials/runner-role",
            get(
                move |State(seen): State<Seen>, headers: HeaderMap| async move {
                    if !guarded(&seen, &headers, "credentials") {
                        return (StatusCode::UNAUTHORIZED, String::new());
                    }
                    (StatusCode::OK, json_credentials("AKIDIMDS", true))
                },
            ),
        )
        .route(
            "/latest/meta-data/placement/region",
            get(
                move |State(seen): State<Seen>, headers: HeaderMap| async move {
                    if !guarded(&seen, &headers, "region") {
                        return (StatusCode::UNAUTHORIZED, String::new());
                    }
                    (StatusCode::OK, "eu-central-1".to_string())
                },
            ),
        )
        .with_state(seen.clone());
    (serve(router).await, seen)
}
