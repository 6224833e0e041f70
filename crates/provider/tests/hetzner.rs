//! The Hetzner provider against the fake Hetzner Cloud over real HTTP: the conformance suite,
//! then what is Hetzner's own (fallback, quota, rate limits, paging, SSH keys, snapshots,
//! secrets kept out of errors, endpoint override). Stand-ins cover what the fake does not model.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use base64::Engine;
use mayfly_core::metrics;
use mayfly_core::{Image, InstanceState, Labels, MachineSpec, Placement, Secret, Time};
use mayfly_provider::bootstrap::Credential;
use mayfly_provider::conformance::{self, Fixture};
use mayfly_provider::hetzner::{ConfigError, Hetzner, HetznerConfig};
use mayfly_provider::{CreateRequest, Error, Provider};
use mayfly_sim::clock::Clock as SimClock;
use mayfly_sim::hetzner::{Hetzner as Fake, HetznerConfig as FakeConfig};
use mayfly_sim::stats::Stats;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "hcloud-TESTONLY-token-0123456789";
const SPEED: f64 = 100.0;

struct World {
    fake: Arc<Fake>,
    stats: Arc<Stats>,
    clock: SimClock,
    endpoint: String,
}

/// Short delays: a boot is 5 simulated seconds, 50 ms of real time at speed 100.
fn fast() -> FakeConfig {
    FakeConfig {
        token: TOKEN.into(),
        boot_delay: Duration::from_secs(5),
        shutdown_delay: Duration::from_secs(2),
        action_delay: Duration::from_secs(5),
        ..FakeConfig::default()
    }
}

async fn world(config: FakeConfig) -> World {
    let clock = SimClock::new(SPEED);
    let stats = Arc::new(Stats::default());
    let fake = Fake::new(config, clock.clone(), stats.clone());
    let endpoint = fake.serve_local().await.unwrap();
    World {
        fake,
        stats,
        clock,
        endpoint,
    }
}

impl World {
    fn config(&self) -> HetznerConfig {
        HetznerConfig {
            endpoint: self.endpoint.clone(),
            ..HetznerConfig::new(Secret::new(TOKEN))
        }
    }

    fn provider_with(&self, config: &HetznerConfig) -> Hetzner {
        Hetzner::new(config, Arc::new(self.clock.clone())).unwrap()
    }

    fn provider(&self) -> Hetzner {
        self.provider_with(&self.config())
    }

    /// Calls the fake answered on one route (`GET /v1/servers`), and how many of them failed.
    fn calls(&self, method: &str, route: &str) -> (u64, u64) {
        self.stats
            .rows()
            .iter()
            .filter(|r| r.key.method == method && r.key.route == route)
            .fold((0, 0), |(c, e), r| (c + r.count.calls, e + r.count.errors))
    }
}

fn spec(types: &[&str], locations: &[&str]) -> MachineSpec {
    MachineSpec {
        types: types.iter().map(|t| t.to_string()).collect(),
        locations: locations.iter().map(|l| l.to_string()).collect(),
        image: "x86:system:ubuntu-24.04".parse().unwrap(),
    }
}

fn placement(machine_type: &str, location: &str) -> Placement {
    Placement {
        machine_type: machine_type.into(),
        location: location.into(),
        image: "x86:system:ubuntu-24.04".parse().unwrap(),
    }
}

fn request(name: &str, controller: &str, spec: MachineSpec) -> CreateRequest {
    CreateRequest {
        name: name.into(),
        controller: controller.into(),
        pool: "x64".into(),
        spec,
        user_data: Secret::new("#cloud-config\n"),
        labels: Labels::new(["self-hosted"]),
        credential: Credential::Jit(Secret::new("eyJqaXQiOiJ0ZXN0In0=")),
    }
}

/// A Prometheus recorder with the contract's histogram buckets, as `mayfly run` installs one.
fn recorder() -> PrometheusRecorder {
    let mut builder = PrometheusBuilder::new();
    for m in metrics::CONTRACT.iter().filter(|m| !m.buckets.is_empty()) {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(m.name.into()), m.buckets)
            .unwrap();
    }
    builder.build_recorder()
}

/// The suite passes, and the client reported every call it made under the metric contract:
/// the fake's own count of calls and failures is the truth.
#[tokio::test]
async fn the_conformance_suite_passes_against_the_fake() {
    // A current-thread runtime: every call is recorded on this thread, into this recorder.
    let recorder = recorder();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let w = world(fast()).await;
    let p = w.provider();
    let f = Fixture::new(spec(&["cx23", "cpx12"], &["fsn1", "nbg1"]))
        .with_settle(Duration::from_secs(5), Duration::from_millis(10));
    conformance::run(&p, &f).await;
    assert!(
        w.fake.servers().is_empty(),
        "the suite cleans up after itself"
    );

    let text = recorder.handle().render();
    if let Err(problems) = metrics::check(&text, metrics::API_FAMILIES) {
        panic!("{}\n{text}", problems.join("\n"));
    }
    let api = [("api", p.kind())];
    let reported = metrics::sum(&text, metrics::API_CALLS, &api);
    let answered = w.stats.total("hetzner");
    assert!(answered > 10, "the suite made calls: {answered}");
    assert_eq!(reported, answered as f64, "{text}");
    let errors: u64 = w.stats.rows().iter().map(|r| r.count.errors).sum();
    let failed: f64 = ["rate_limited", "client_error", "server_error"]
        .iter()
        .map(|o| metrics::sum(&text, metrics::API_CALLS, &[api[0], ("outcome", o)]))
        .sum();
    assert_eq!(failed, errors as f64, "{text}");
    let timed = metrics::sum(&text, "mayfly_api_request_duration_seconds_count", &api);
    assert_eq!(timed, reported, "every call is timed");
    assert!(!text.contains(TOKEN), "no token in the metrics");
}

#[tokio::test]
async fn create_falls_back_through_locations_then_types() {
    let w = world(FakeConfig {
        unavailable: vec![("cx23".into(), "fsn1".into())],
        ..fast()
    })
    .await;
    let p = w.provider();
    let s = spec(&["cx23", "cpx12"], &["fsn1", "nbg1"]);
    // Types outer, locations inner: the first type in its second location beats the second type.
    let i = p.create(&request("fb-1", "c1", s.clone())).await.unwrap();
    let placed = i.placement.unwrap();
    assert_eq!(
        (placed.machine_type.as_str(), placed.location.as_str()),
        ("cx23", "nbg1")
    );
    assert_eq!(w.calls("POST", "/v1/servers"), (2, 1));

    w.fake
        .set_config(|c| c.unavailable.push(("cx23".into(), "nbg1".into())));
    let i = p.create(&request("fb-2", "c1", s.clone())).await.unwrap();
    let placed = i.placement.unwrap();
    assert_eq!(
        (placed.machine_type.as_str(), placed.location.as_str()),
        ("cpx12", "fsn1")
    );
    assert!(i.billing.unwrap().price_per_hour > 0.0);

    w.fake.set_config(|c| {
        c.unavailable.push(("cpx12".into(), "fsn1".into()));
        c.unavailable.push(("cpx12".into(), "nbg1".into()));
    });
    let e = p.create(&request("fb-3", "c1", s)).await.unwrap_err();
    let Error::CapacityUnavailable { message } = &e else {
        panic!("{e:?}");
    };
    for tried in ["cx23@fsn1", "cx23@nbg1", "cpx12@fsn1", "cpx12@nbg1"] {
        assert!(message.contains(tried), "{message}");
    }
    assert_eq!(w.fake.servers().len(), 2);
}

#[tokio::test]
async fn a_full_quota_is_quota_and_creates_nothing() {
    let w = world(FakeConfig {
        server_quota: 1,
        ..fast()
    })
    .await;
    let p = w.provider();
    let s = spec(&["cx23", "cpx12"], &["fsn1", "nbg1"]);
    p.create(&request("q-1", "c1", s.clone())).await.unwrap();
    let e = p.create(&request("q-2", "c1", s)).await.unwrap_err();
    assert!(matches!(e, Error::Quota { .. }), "{e:?}");
    assert!(!e.is_transient());
    assert_eq!(w.fake.servers().len(), 1);
    // A quota is the project's, not the placement's: no fallback attempts.
    assert_eq!(w.calls("POST", "/v1/servers"), (2, 1));
}

#[tokio::test]
async fn a_taken_name_is_already_exists() {
    let w = world(fast()).await;
    let p = w.provider();
    let s = spec(&["cx23"], &["fsn1"]);
    p.create(&request("same", "c1", s.clone())).await.unwrap();
    assert_eq!(
        p.create(&request("same", "c1", s)).await.unwrap_err(),
        Error::AlreadyExists
    );
    assert_eq!(w.fake.servers().len(), 1);
}

/// Spends the fake's bucket until the provider sees it empty.
async fn drain(p: &Hetzner) {
    for _ in 0..500 {
        let _ = p.get("1").await;
        if p.budget().is_some_and(|(remaining, _)| remaining == 0) {
            return;
        }
    }
    panic!("the bucket never ran dry: {:?}", p.budget());
}

#[tokio::test]
async fn an_empty_bucket_is_waited_out_within_max_wait() {
    // 60 an hour: one request back every simulated minute (0.6 s of real time).
    let w = world(FakeConfig {
        rate_limit_per_hour: 60,
        ..fast()
    })
    .await;
    let p = w.provider_with(&HetznerConfig {
        max_wait_secs: 120,
        ..w.config()
    });
    // The catalogue is read first, so the create below is the one call that meets the 429.
    p.billing(&placement("cx23", "fsn1")).await.unwrap();
    drain(&p).await;
    let before = w.clock.now_ms();
    let i = p
        .create(&request("after-wait", "c1", spec(&["cx23"], &["fsn1"])))
        .await
        .unwrap();
    assert_eq!(i.name, "after-wait");
    let waited = Duration::from_millis((w.clock.now_ms() - before) as u64);
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(120),
        "{waited:?}"
    );
    let (calls, errors) = w.calls("POST", "/v1/servers");
    assert_eq!((calls, errors), (2, 1), "one 429, then the create");
    assert_eq!(p.budget().map(|(_, limit)| limit), Some(60));
}

#[tokio::test]
async fn a_wait_longer_than_max_wait_is_rate_limited_at_once() {
    let w = world(FakeConfig {
        rate_limit_per_hour: 60,
        ..fast()
    })
    .await;
    let p = w.provider_with(&HetznerConfig {
        max_wait_secs: 10,
        ..w.config()
    });
    // The catalogue is read first, so the create below is the one call that meets the 429.
    p.billing(&placement("cx23", "fsn1")).await.unwrap();
    drain(&p).await;
    let started = std::time::Instant::now();
    let e = p
        .create(&request("no-wait", "c1", spec(&["cx23"], &["fsn1"])))
        .await
        .unwrap_err();
    let Error::RateLimited {
        retry_after: Some(after),
    } = e
    else {
        panic!("{e:?}");
    };
    assert!(
        after > Duration::from_secs(10) && after <= Duration::from_secs(61),
        "{after:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "it did not wait"
    );
    assert!(w.fake.servers().is_empty());
    // The pause is shared: the next call does not even reach the API.
    let before = w.calls("GET", "/v1/servers/{id}").0;
    assert!(matches!(p.get("1").await, Err(Error::RateLimited { .. })));
    assert_eq!(w.calls("GET", "/v1/servers/{id}").0, before);
}

#[tokio::test]
async fn a_list_of_many_servers_costs_one_get_per_fifty() {
    let w = world(FakeConfig {
        server_quota: 500,
        ..fast()
    })
    .await;
    let p = w.provider();
    let s = spec(&["cx23"], &["fsn1"]);
    for n in 0..120 {
        p.create(&request(&format!("mine-{n}"), "c1", s.clone()))
            .await
            .unwrap();
    }
    for n in 0..3 {
        p.create(&request(&format!("theirs-{n}"), "c2", s.clone()))
            .await
            .unwrap();
    }
    w.stats.reset();
    let listed = p.list("c1").await.unwrap();
    assert_eq!(listed.len(), 120);
    assert!(
        listed
            .iter()
            .all(|i| i.controller.as_deref() == Some("c1") && i.pool == "x64")
    );
    assert!(
        listed
            .iter()
            .all(|i| i.billing.as_ref().is_some_and(|b| b.price_per_hour > 0.0))
    );
    let mut names: Vec<&str> = listed.iter().map(|i| i.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 120, "no server twice across pages");
    assert_eq!(
        w.calls("GET", "/v1/servers"),
        (3, 0),
        "ceil(120 / 50) pages"
    );
    assert_eq!(
        w.stats.total("hetzner"),
        3,
        "no GET per server, no catalogue read"
    );
}

#[tokio::test]
async fn listed_servers_map_every_field() {
    let w = world(fast()).await;
    let p = w.provider();
    let created = p
        .create(&request("mapped", "c1", spec(&["cax11"], &["hel1"])))
        .await;
    // cax11 is arm: the API would quietly boot the arm variant of an x86 image's name.
    assert!(matches!(created, Err(Error::Invalid { .. })), "{created:?}");
    assert_eq!(w.calls("POST", "/v1/servers").0, 0);
    let mut s = spec(&["cax11"], &["hel1"]);
    s.image = "arm:system:debian-12".parse().unwrap();
    let i = p.create(&request("mapped", "c1", s.clone())).await.unwrap();
    assert_eq!(i.state, InstanceState::Starting);
    let listed = p.list("c1").await.unwrap();
    let l = &listed[0];
    let want = Placement {
        machine_type: "cax11".into(),
        location: "hel1".into(),
        image: s.image.clone(),
    };
    assert_eq!(l.placement.as_ref(), Some(&want));
    assert_eq!(l.provider_id, i.provider_id);
    assert_eq!(l.state_since, l.created_at);
    let now = Time::from_millis(w.clock.now_ms());
    assert!(
        now.since(l.created_at) < Duration::from_secs(60),
        "created {} now {now}",
        l.created_at
    );
    assert_eq!(l.billing, Some(p.billing(&want).await.unwrap()));
    assert!(l.labels.is_empty() && l.job.is_none());
    let ip: std::net::IpAddr = l.address.as_deref().expect("an address").parse().unwrap();
    assert!(ip.is_ipv4(), "IPv4 first: {ip}");
}

#[tokio::test]
async fn the_ssh_key_is_uploaded_once_and_then_found_by_fingerprint() {
    let w = world(fast()).await;
    let blob =
        base64::engine::general_purpose::STANDARD.encode(b"\0\0\0\x0bssh-ed25519 mayfly test key");
    let key = format!("ssh-ed25519 {blob} ops@example");
    let config = HetznerConfig {
        ssh_keys: vec![key.clone()],
        ..w.config()
    };
    let p = w.provider_with(&config);
    let s = spec(&["cx23"], &["fsn1"]);
    p.create(&request("k-1", "c1", s.clone())).await.unwrap();
    p.create(&request("k-2", "c1", s.clone())).await.unwrap();
    assert_eq!(w.calls("POST", "/v1/ssh_keys"), (1, 0));
    assert_eq!(w.calls("GET", "/v1/ssh_keys"), (1, 0));
    // A restarted controller finds the key by its fingerprint instead of uploading it again.
    let again = w.provider_with(&config);
    again.create(&request("k-3", "c1", s)).await.unwrap();
    assert_eq!(w.calls("POST", "/v1/ssh_keys"), (1, 0));
    assert_eq!(w.calls("GET", "/v1/ssh_keys"), (2, 0));

    let bad = HetznerConfig {
        ssh_keys: vec![key, "ssh-rsa not-base64!".into()],
        ..w.config()
    };
    let e = Hetzner::new(&bad, Arc::new(w.clock.clone())).unwrap_err();
    assert_eq!(e, ConfigError::BadSshKey(2));
}

#[tokio::test]
async fn actions_surface_their_immediate_errors() {
    let w = world(fast()).await;
    let p = w.provider();
    let i = p
        .create(&request("busy", "c1", spec(&["cx23"], &["fsn1"])))
        .await
        .unwrap();
    let id = i.provider_id.unwrap();
    // The create action still runs: the server is locked.
    assert_eq!(p.power_off(&id).await, Err(Error::Locked));
    assert_eq!(p.power_on("999").await, Err(Error::NotFound));
    assert_eq!(p.get("999").await.unwrap_err(), Error::NotFound);
    assert!(matches!(
        p.get("../ssh_keys").await,
        Err(Error::Invalid { .. })
    ));
    let image: Image = "x86:system:no-such-os".parse().unwrap();
    let s = Secret::new("#cloud-config\n");
    // Locked first (the fake checks the lock before the image), then the bad image.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(
        p.rebuild(&id, &image, &s).await,
        Err(Error::Invalid { .. })
    ));
    assert_eq!(p.delete("999").await, Ok(()));
    assert_eq!(p.delete(&id).await, Ok(()));
    assert_eq!(p.delete(&id).await, Ok(()));
}

#[tokio::test]
async fn the_budget_is_reported_from_the_headers() {
    let w = world(fast()).await;
    let p = w.provider();
    assert_eq!(p.budget(), None);
    // The fake's clock runs 100 times faster: a second there is 10 ms here.
    let before = Time::from_millis(w.clock.now_ms());
    p.list("c1").await.unwrap();
    // One call spent; a second may have passed on a loaded machine and refilled it.
    let (remaining, limit) = p.budget().expect("a budget after a call");
    assert_eq!(limit, 3600);
    assert!((3599..=3600).contains(&remaining), "{remaining}");
    let b = p.budget_detail().unwrap();
    // `RateLimit-Reset` is in whole seconds: full again no earlier than the call's second.
    assert!(
        b.full_at >= Time::from_secs(before.millis() / 1000),
        "full at {} before {before}",
        b.full_at
    );
}

#[tokio::test]
async fn errors_and_debug_output_never_show_the_token_or_user_data() {
    const MARKER: &str = "JITCONFIG-MARKER-5f3a9c";
    let w = world(FakeConfig {
        server_quota: 0,
        ..fast()
    })
    .await;
    let p = w.provider();
    let mut req = request("leak", "c1", spec(&["cx23"], &["fsn1"]));
    req.user_data = Secret::new(format!("#cloud-config\nrunner: {MARKER}\n"));
    let quota = p.create(&req).await.unwrap_err();
    assert!(matches!(quota, Error::Quota { .. }), "{quota:?}");
    req.user_data = Secret::new(format!("#cloud-config\n{}", MARKER.repeat(2000)));
    w.fake.set_config(|c| c.server_quota = 10);
    let too_long = p.create(&req).await.unwrap_err();
    assert!(matches!(too_long, Error::Invalid { .. }), "{too_long:?}");
    let wrong = w.provider_with(&HetznerConfig {
        token: Secret::new("hcloud-WRONG-token-987654"),
        ..w.config()
    });
    let unauthorized = wrong.list("c1").await.unwrap_err();
    assert_eq!(unauthorized, Error::Unauthorized { status: 401 });

    // An API that echoes everything it got, headers included: the worst case.
    let echo = axum::Router::new().route(
        "/v1/servers",
        post(|headers: HeaderMap, body: String| async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let message = format!("cannot take {body} from {auth}");
            (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": { "code": "invalid_input", "message": message } })),
            )
        }),
    );
    let addr = mayfly_sim::serve_local(echo).await.unwrap();
    let echoing = w.provider_with(&HetznerConfig {
        endpoint: format!("http://{addr}/v1"),
        ..w.config()
    });
    req.user_data = Secret::new(format!("#cloud-config\nrunner: {MARKER}\n"));
    let echoed = echoing.create(&req).await.unwrap_err();
    assert!(matches!(echoed, Error::Invalid { .. }), "{echoed:?}");

    let config = w.config();
    for shown in [
        format!("{quota} {quota:?}"),
        format!("{too_long} {too_long:?}"),
        format!("{unauthorized} {unauthorized:?}"),
        format!("{echoed} {echoed:?}"),
        format!("{p:?} {config:?} {req:?}"),
        serde_json::to_string(&config).unwrap(),
    ] {
        assert!(!shown.contains(MARKER), "user data shown: {shown}");
        assert!(!shown.contains(TOKEN), "token shown: {shown}");
        assert!(!shown.contains("WRONG-token"), "token shown: {shown}");
    }
}

#[tokio::test]
async fn the_endpoint_can_be_overridden() {
    let (a, b) = (world(fast()).await, world(fast()).await);
    let p = b.provider_with(&HetznerConfig {
        endpoint: format!("{}/", b.endpoint),
        ..b.config()
    });
    assert_eq!(p.endpoint(), b.endpoint);
    p.create(&request("here", "c1", spec(&["cx23"], &["fsn1"])))
        .await
        .unwrap();
    assert_eq!((a.fake.servers().len(), b.fake.servers().len()), (0, 1));
    assert_eq!(
        HetznerConfig::new(Secret::new("t")).endpoint,
        "https://api.hetzner.cloud/v1"
    );
    for bad in ["ftp://example.com/v1", "api.hetzner.cloud/v1", ""] {
        let c = HetznerConfig {
            endpoint: bad.into(),
            ..b.config()
        };
        let e = Hetzner::new(&c, Arc::new(b.clock.clone())).unwrap_err();
        assert!(matches!(e, ConfigError::BadEndpoint(_)), "{bad}: {e:?}");
    }
    let empty = HetznerConfig::new(Secret::new(""));
    let e = Hetzner::new(&empty, Arc::new(b.clock.clone())).unwrap_err();
    assert_eq!(e, ConfigError::EmptyToken);
}

/// A stand-in for what the fake does not model: snapshots, and 5xx answers.
#[derive(Default)]
struct StandIn {
    image_lists: AtomicUsize,
    server_gets: AtomicUsize,
    bodies: Mutex<Vec<Value>>,
}

fn snapshot(id: u64, description: &str, arch: &str, created: &str) -> Value {
    json!({ "id": id, "type": "snapshot", "status": "available", "name": null, "description": description,
            "architecture": arch, "created": created, "labels": {} })
}

fn stand_in_server(id: u64, name: &str, image: Value) -> Value {
    json!({
        "id": id, "name": name, "status": "initializing", "created": "2025-03-01T10:00:00+00:00",
        "labels": { "mayfly-controller": "c1", "mayfly-pool": "x64" },
        "server_type": { "name": "cx23", "architecture": "x86", "prices": [
            { "location": "fsn1", "price_hourly": { "net": "0.0060000000", "gross": "0.0071400000000000" } }
        ] },
        "datacenter": { "name": "fsn1-dc14", "location": { "name": "fsn1" } },
        "image": image,
    })
}

async fn stand_in() -> (Arc<StandIn>, String) {
    let s = Arc::new(StandIn::default());
    let app = axum::Router::new()
        .route(
            "/v1/images",
            get(|State(s): State<Arc<StandIn>>, Query(q): Query<Vec<(String, String)>>| async move {
                s.image_lists.fetch_add(1, Ordering::SeqCst);
                let param = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
                assert_eq!(param("type").as_deref(), Some("snapshot"));
                assert_eq!(param("architecture").as_deref(), Some("x86"));
                // Two pages; the newest "runner-base" is on the second, an arm twin is ignored.
                let (images, next) = match param("page").as_deref() {
                    Some("2") => (vec![snapshot(502, "runner-base", "x86", "2025-02-01T00:00:00+00:00")], None),
                    _ => (
                        vec![
                            snapshot(501, "runner-base", "x86", "2025-01-01T00:00:00+00:00"),
                            snapshot(503, "runner-base", "arm", "2025-03-01T00:00:00+00:00"),
                            snapshot(504, "other", "x86", "2025-03-01T00:00:00+00:00"),
                        ],
                        Some(2),
                    ),
                };
                Json(json!({ "images": images, "meta": { "pagination": { "next_page": next } } }))
            }),
        )
        .route(
            "/v1/server_types",
            get(|| async {
                let cx23 = json!({ "name": "cx23", "architecture": "x86", "prices": [
                    { "location": "fsn1", "price_hourly": { "net": "0.0060000000", "gross": "0.0071400000000000" } }
                ] });
                Json(json!({ "server_types": [cx23], "meta": { "pagination": { "next_page": null } } }))
            }),
        )
        .route(
            "/v1/servers",
            post(|State(s): State<Arc<StandIn>>, Json(body): Json<Value>| async move {
                s.bodies.lock().unwrap().push(body.clone());
                let name = body["name"].as_str().unwrap_or("").to_string();
                let image = snapshot(502, "runner-base", "x86", "2025-02-01T00:00:00+00:00");
                (StatusCode::CREATED, Json(json!({ "server": stand_in_server(7, &name, image), "action": {}, "next_actions": [] })))
            }),
        )
        .route(
            "/v1/servers/{id}",
            get(|State(s): State<Arc<StandIn>>| async move {
                // The first read meets a passing outage; a read may be retried.
                if s.server_gets.fetch_add(1, Ordering::SeqCst) == 0 {
                    let e = json!({ "error": { "code": "unavailable", "message": "try again" } });
                    return (StatusCode::SERVICE_UNAVAILABLE, Json(e));
                }
                let image = snapshot(502, "runner-base", "x86", "2025-02-01T00:00:00+00:00");
                (StatusCode::OK, Json(json!({ "server": stand_in_server(7, "snap", image) })))
            }),
        )
        .route(
            "/v1/servers/{id}/actions/rebuild",
            post(|State(s): State<Arc<StandIn>>, Json(body): Json<Value>| async move {
                s.bodies.lock().unwrap().push(body);
                Json(json!({ "action": { "id": 1, "command": "rebuild_server", "status": "running" } }))
            }),
        )
        .route(
            "/v1/servers/{id}/actions/poweroff",
            post(|| async {
                let e = json!({ "error": { "code": "unavailable", "message": "try again" } });
                (StatusCode::SERVICE_UNAVAILABLE, Json(e))
            }),
        )
        .with_state(s.clone());
    let addr = mayfly_sim::serve_local(app).await.unwrap();
    (s, format!("http://{addr}/v1"))
}

#[tokio::test]
async fn snapshots_are_resolved_by_description_once() {
    let (s, endpoint) = stand_in().await;
    let clock = SimClock::new(SPEED);
    let p = Hetzner::new(
        &HetznerConfig {
            endpoint,
            ..HetznerConfig::new(Secret::new(TOKEN))
        },
        Arc::new(clock),
    )
    .unwrap();
    let mut sp = spec(&["cx23"], &["fsn1"]);
    sp.image = "x86:snapshot:runner-base".parse().unwrap();
    let i = p.create(&request("snap", "c1", sp.clone())).await.unwrap();
    assert_eq!(i.placement.as_ref().map(|p| &p.image), Some(&sp.image));
    p.create(&request("snap-2", "c1", sp.clone()))
        .await
        .unwrap();
    p.rebuild("7", &sp.image, &Secret::new("#cloud-config\nnew\n"))
        .await
        .unwrap();
    assert_eq!(
        s.image_lists.load(Ordering::SeqCst),
        2,
        "two pages, once, then cached"
    );
    let bodies = s.bodies.lock().unwrap().clone();
    assert!(
        bodies.iter().all(|b| b["image"] == json!(502)),
        "the newest x86 match: {bodies:?}"
    );
    assert_eq!(bodies[2]["user_data"], "#cloud-config\nnew\n");
    assert_eq!(
        bodies[0]["labels"],
        json!({ "mayfly-controller": "c1", "mayfly-pool": "x64" })
    );
    assert_eq!(
        bodies[0]["public_net"],
        json!({ "enable_ipv4": true, "enable_ipv6": true })
    );
    assert_eq!(bodies[0]["start_after_create"], json!(true));

    // Read back, the server's snapshot is named as the spec named it, and a 503 was retried.
    let got = p.get("7").await.unwrap();
    assert_eq!(got.placement.map(|p| p.image), Some(sp.image.clone()));
    assert_eq!(s.server_gets.load(Ordering::SeqCst), 2);
    // A POST is never repeated after an unclear outcome.
    let e = p.power_off("7").await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");

    sp.image = "x86:snapshot:missing".parse().unwrap();
    let e = p.create(&request("snap-3", "c1", sp)).await.unwrap_err();
    assert!(matches!(e, Error::Invalid { .. }), "{e:?}");
}
