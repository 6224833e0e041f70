//! The client against a local fake service: what it signs and sends, what it retries and how
//! often, when it gives up, and that every attempt is counted under the metric contract.

use super::*;
use crate::credentials::fakes::serve;
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use std::sync::{Arc, Mutex};

type Seen = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A fake that answers the scripted `(status, body)`s in turn (the last one forever).
async fn scripted(answers: Vec<(u16, &'static str, Option<&'static str>)>) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let left = Arc::new(Mutex::new(answers));
    let s = seen.clone();
    let router = Router::new().route(
        "/",
        post(move |headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            let left = left.clone();
            async move {
                s.lock().unwrap().push((headers, body));
                let (status, body, error_type) = {
                    let mut l = left.lock().unwrap();
                    if l.len() > 1 { l.remove(0) } else { l[0] }
                };
                let mut r = axum::response::Response::new(axum::body::Body::from(body));
                *r.status_mut() = StatusCode::from_u16(status).unwrap();
                if let Some(t) = error_type {
                    r.headers_mut()
                        .insert("x-amzn-errortype", t.parse().unwrap());
                }
                r
            }
        }),
    );
    (serve(router).await, seen)
}

async fn client(url: &str, attempts: u32) -> Aws {
    let mut s = AwsSettings::emulator(url, "eu-west-1");
    s.max_attempts = attempts;
    Aws::connect(&s, Env::default()).await.unwrap()
}

fn recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder()
}

fn calls(text: &str, outcome: &str) -> f64 {
    mayfly_core::metrics::sum(
        text,
        mayfly_core::metrics::API_CALLS,
        &[("api", "aws-ec2"), ("outcome", outcome)],
    )
}

#[tokio::test]
async fn a_query_call_is_signed_for_its_service_and_region() {
    let (url, seen) = scripted(vec![(
        200,
        "<DescribeSubnetsResponse><subnetSet/></DescribeSubnetsResponse>",
        None,
    )])
    .await;
    let aws = client(&url, 1).await;
    let mut p = Params::new();
    p.list("SubnetId", ["subnet-1"]);
    let out = aws
        .query(EC2, "2016-11-15", "DescribeSubnets", &p)
        .await
        .unwrap();
    assert_eq!(out.name, "DescribeSubnetsResponse");

    let (headers, body) = seen.lock().unwrap()[0].clone();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(
        body,
        "Action=DescribeSubnets&Version=2016-11-15&SubnetId.1=subnet-1"
    );
    let h = |k: &str| headers.get(k).unwrap().to_str().unwrap().to_string();
    let date = h("x-amz-date");
    let auth = h("authorization");
    assert!(
        auth.starts_with(&format!(
            "AWS4-HMAC-SHA256 Credential=testing/{}/eu-west-1/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=",
            &date[..8]
        )),
        "{auth}"
    );
    // The signature is the one of exactly what arrived (host with its port, the body).
    let at: jiff::Timestamp = jiff::fmt::strtime::parse("%Y%m%dT%H%M%SZ", &date)
        .unwrap()
        .to_datetime()
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp();
    let host = h("host");
    let content_type = h("content-type");
    let again = sigv4::sign(
        &sigv4::Unsigned {
            method: "POST",
            host: &host,
            path: "/",
            query: "",
            headers: &[("content-type", &content_type)],
            body: body.as_bytes(),
        },
        &crate::credentials::Credentials {
            access_key_id: "testing".into(),
            secret_access_key: mayfly_core::Secret::new("testing"),
            session_token: None,
            expires: None,
            source: "test",
        },
        sigv4::Scope {
            region: "eu-west-1",
            service: "ec2",
        },
        at,
    );
    assert_eq!(again.last().unwrap().1, auth);
}

#[tokio::test]
async fn a_json_call_names_its_target_and_reads_errors_by_type() {
    let (url, seen) = scripted(vec![(
        400,
        r#"{"__type":"com.amazonaws.ecs#ClusterNotFoundException","message":"Cluster not found."}"#,
        None,
    )])
    .await;
    let aws = client(&url, 3).await;
    let e = aws
        .json(
            ECS,
            "AmazonEC2ContainerServiceV20141113.RunTask",
            &serde_json::json!({"cluster": "x"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "ClusterNotFoundException");
    assert_eq!(e.message, "Cluster not found.");
    assert_eq!(e.status, Some(400));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "a client error is not retried");
    let h = &seen[0].0;
    assert_eq!(
        h["x-amz-target"],
        "AmazonEC2ContainerServiceV20141113.RunTask"
    );
    assert_eq!(h["content-type"], "application/x-amz-json-1.1");
    assert!(h["authorization"].to_str().unwrap().contains(
        "/eu-west-1/ecs/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target,"
    ));
}

#[tokio::test]
async fn throttling_and_outages_are_retried_and_every_attempt_is_counted() {
    let recorder = recorder();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let throttled = "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>slow down</Message></Error></Errors></Response>";
    let (url, seen) = scripted(vec![
        (503, throttled, None),
        (500, "<html>oops</html>", None),
        (200, "<TerminateInstancesResponse/>", None),
    ])
    .await;
    let aws = client(&url, 3).await;
    aws.query(EC2, "2016-11-15", "TerminateInstances", &Params::new())
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().len(), 3);
    let text = recorder.handle().render();
    assert_eq!(calls(&text, "rate_limited"), 1.0, "{text}");
    assert_eq!(calls(&text, "server_error"), 1.0, "{text}");
    assert_eq!(calls(&text, "ok"), 1.0, "{text}");
    let timed = mayfly_core::metrics::sum(
        &text,
        "mayfly_api_request_duration_seconds_count",
        &[("api", "aws-ec2")],
    );
    assert_eq!(timed, 3.0, "every attempt is timed");
}

#[tokio::test]
async fn attempts_run_out_with_the_last_error() {
    let (url, seen) = scripted(vec![(503, "<Response><Errors><Error><Code>Unavailable</Code><Message>down</Message></Error></Errors></Response>", None)]).await;
    let aws = client(&url, 2).await;
    let e = aws
        .query(EC2, "2016-11-15", "StopInstances", &Params::new())
        .await
        .unwrap_err();
    assert_eq!((e.code.as_str(), e.status), ("Unavailable", Some(503)));
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn no_answer_is_a_transport_error_and_the_operation_timeout_bounds_the_call() {
    let recorder = recorder();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let aws = client(&format!("http://127.0.0.1:{port}"), 1).await;
    let e = aws
        .query(EC2, "2016-11-15", "DescribeInstances", &Params::new())
        .await
        .unwrap_err();
    assert!(e.transport, "{e:?}");
    assert!(e.common().unwrap().is_transient());
    assert_eq!(calls(&recorder.handle().render(), "transport"), 1.0);

    let slow = Router::new().route(
        "/",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "<late/>"
        }),
    );
    let url = serve(slow).await;
    let mut s = AwsSettings::emulator(&url, "eu-west-1");
    s.operation_timeout = Duration::from_millis(300);
    let aws = Aws::connect(&s, Env::default()).await.unwrap();
    let started = Instant::now();
    let e = aws
        .query(EC2, "2016-11-15", "DescribeInstances", &Params::new())
        .await
        .unwrap_err();
    assert!(e.transport && e.message.contains("timed out"), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn temporary_credentials_send_their_token_and_missing_ones_say_why() {
    let (url, seen) = scripted(vec![(200, "<ok/>", None)]).await;
    let env = Env::of([
        ("AWS_ACCESS_KEY_ID", "AKIDTEMP"),
        ("AWS_SECRET_ACCESS_KEY", "temp-secret"),
        ("AWS_SESSION_TOKEN", "temp-token"),
        ("AWS_REGION", "us-west-2"),
        ("AWS_ENDPOINT_URL", url.as_str()),
    ]);
    let aws = Aws::connect(&AwsSettings::default(), env).await.unwrap();
    aws.query(
        AUTOSCALING,
        "2011-01-01",
        "DescribeAutoScalingGroups",
        &Params::new(),
    )
    .await
    .unwrap();
    let h = seen.lock().unwrap()[0].0.clone();
    assert_eq!(h["x-amz-security-token"], "temp-token");
    let auth = h["authorization"].to_str().unwrap();
    assert!(
        auth.contains("Credential=AKIDTEMP/")
            && auth.contains("/us-west-2/autoscaling/")
            && auth.contains("x-amz-security-token"),
        "{auth}"
    );

    let env = Env::of([
        ("AWS_REGION", "us-west-2"),
        ("AWS_ENDPOINT_URL", url.as_str()),
        ("AWS_CONFIG_FILE", "/nonexistent"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]);
    let aws = Aws::connect(&AwsSettings::default(), env).await.unwrap();
    let e = aws
        .query(EC2, "2016-11-15", "DescribeInstances", &Params::new())
        .await
        .unwrap_err();
    assert_eq!(e.code, "CredentialsNotLoaded");
    assert!(e.message.contains("no AWS credentials"), "{e}");
    assert!(matches!(
        e.common(),
        Some(mayfly_provider::Error::Api { .. })
    ));
    assert_eq!(seen.lock().unwrap().len(), 1, "nothing unsigned was sent");
}
