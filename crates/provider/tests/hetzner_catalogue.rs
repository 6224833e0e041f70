//! The Hetzner provider and the catalogue, against the fake Hetzner Cloud over real HTTP: creates
//! skip what the catalogue does not sell before spending a call on it, `check` names unknown,
//! unavailable and deprecated types, images and locations, and the lists are read once an hour.
//! A stand-in covers a catalogue that cannot be read.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use mayfly_core::{Labels, MachineSpec, Secret};
use mayfly_provider::bootstrap::Credential;
use mayfly_provider::hetzner::{Hetzner, HetznerConfig};
use mayfly_provider::{
    CreateRequest, Error, Provider, SpecIssue, SpecItem, SpecProblem, spec_unusable,
};
use mayfly_sim::clock::Clock as SimClock;
use mayfly_sim::hetzner::{Hetzner as Fake, HetznerConfig as FakeConfig};
use mayfly_sim::stats::Stats;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "hcloud-TESTONLY-token-0123456789";

struct World {
    fake: Arc<Fake>,
    stats: Arc<Stats>,
    clock: SimClock,
    endpoint: String,
}

/// The fake at `speed`, with the catalogue faults of `config`.
async fn world(speed: f64, config: FakeConfig) -> World {
    let clock = SimClock::new(speed);
    let stats = Arc::new(Stats::default());
    let fake = Fake::new(
        FakeConfig {
            token: TOKEN.into(),
            boot_delay: Duration::from_secs(5),
            ..config
        },
        clock.clone(),
        stats.clone(),
    );
    let endpoint = fake.serve_local().await.unwrap();
    World {
        fake,
        stats,
        clock,
        endpoint,
    }
}

impl World {
    fn provider(&self) -> Hetzner {
        let config = HetznerConfig {
            endpoint: self.endpoint.clone(),
            ..HetznerConfig::new(Secret::new(TOKEN))
        };
        Hetzner::new(&config, Arc::new(self.clock.clone())).unwrap()
    }

    /// Calls the fake answered on one route, and how many of them failed.
    fn calls(&self, method: &str, route: &str) -> (u64, u64) {
        self.stats
            .rows()
            .iter()
            .filter(|r| r.key.method == method && r.key.route == route)
            .fold((0, 0), |(c, e), r| (c + r.count.calls, e + r.count.errors))
    }

    fn creates(&self) -> (u64, u64) {
        self.calls("POST", "/v1/servers")
    }

    /// Reads of the three catalogue lists: server types, locations, images.
    fn reads(&self) -> [u64; 3] {
        [
            self.calls("GET", "/v1/server_types").0,
            self.calls("GET", "/v1/locations").0,
            self.calls("GET", "/v1/images").0,
        ]
    }
}

fn spec(types: &[&str], locations: &[&str]) -> MachineSpec {
    MachineSpec {
        types: types.iter().map(|t| t.to_string()).collect(),
        locations: locations.iter().map(|l| l.to_string()).collect(),
        image: "x86:system:ubuntu-24.04".parse().unwrap(),
    }
}

fn request(name: &str, spec: MachineSpec) -> CreateRequest {
    CreateRequest {
        name: name.into(),
        controller: "c1".into(),
        pool: "linux".into(),
        spec,
        user_data: Secret::new("#cloud-config\n"),
        labels: Labels::new(["self-hosted"]),
        credential: Credential::Jit(Secret::new("eyJqaXQiOiJ0ZXN0In0=")),
    }
}

fn placed(i: &mayfly_core::Instance) -> (String, String) {
    let p = i.placement.as_ref().expect("placed");
    (p.machine_type.clone(), p.location.clone())
}

#[tokio::test]
async fn a_retired_type_is_skipped_without_a_create() {
    let w = world(100.0, FakeConfig::default()).await;
    let p = w.provider();
    let i = p
        .create(&request("new", spec(&["cx22", "cx23"], &["fsn1"])))
        .await
        .unwrap();
    assert_eq!(placed(&i), ("cx23".into(), "fsn1".into()));
    assert_eq!(w.creates(), (1, 0), "no create spent on cx22");

    let e = p
        .create(&request("old", spec(&["cx22"], &["fsn1", "nbg1"])))
        .await
        .unwrap_err();
    let Error::Invalid { message } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(
        message,
        "pool linux: no server type of the spec can be ordered: server type cx22 is unavailable \
         in fsn1, nbg1 after 2025-12-31 (try: cx23, cx33, cx43, cx53, cpx22)"
    );
    assert!(!e.is_transient());
    assert_eq!(w.creates(), (1, 0), "and none for the refusal");
}

#[tokio::test]
async fn a_type_retired_in_some_locations_is_created_where_it_is_still_sold() {
    let w = world(100.0, FakeConfig::default()).await;
    let p = w.provider();
    // CPX Gen 1 is retired in the EU and still sold in the US.
    let i = p
        .create(&request("us", spec(&["cpx21"], &["fsn1", "ash"])))
        .await
        .unwrap();
    assert_eq!(placed(&i), ("cpx21".into(), "ash".into()));
    // Without locations, the API picks one that sells it.
    let i = p
        .create(&request("anywhere", spec(&["cpx21"], &[])))
        .await
        .unwrap();
    assert_eq!(placed(&i), ("cpx21".into(), "ash".into()));
    assert_eq!(w.creates(), (2, 0));
    // A type never sold in the spec's only location.
    let e = p
        .create(&request("nowhere", spec(&["cx23"], &["ash"])))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        Error::Invalid {
            message: "pool linux: no server type of the spec can be ordered: server type cx23 \
                      is not offered in ash (try: ccx23, cpx21)"
                .into()
        }
    );
    assert_eq!(w.creates(), (2, 0));
}

#[tokio::test]
async fn a_type_missing_from_the_catalogue_is_an_unknown_type() {
    let w = world(
        100.0,
        FakeConfig {
            missing_types: vec!["cx23".into()],
            ..FakeConfig::default()
        },
    )
    .await;
    let p = w.provider();
    let i = p
        .create(&request("next", spec(&["cx23", "cx33"], &["nbg1"])))
        .await
        .unwrap();
    assert_eq!(placed(&i), ("cx33".into(), "nbg1".into()));
    let e = p
        .create(&request("gone", spec(&["cx23"], &["nbg1"])))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        Error::Invalid {
            message: "pool linux: no server type of the spec can be ordered: server type cx23 \
                      does not exist (known: cx33, cx43, cx53, ccx23, cpx22)"
                .into()
        }
    );
    assert_eq!(w.creates(), (1, 0));
}

#[tokio::test]
async fn a_deprecated_type_is_still_created_until_its_date() {
    let w = world(100.0, FakeConfig::default()).await;
    let now = w.clock.now_ms();
    w.fake.set_config(|c| {
        c.deprecations = vec![mayfly_sim::hetzner::DeprecationFault {
            server_type: "cx33".into(),
            location: Some("fsn1".into()),
            deprecation: mayfly_sim::hetzner::catalog::Deprecation {
                announced_ms: now,
                unavailable_after_ms: now + 30 * 86_400_000,
            },
        }]
    });
    let p = w.provider();
    for n in 0..2 {
        let i = p
            .create(&request(&format!("d-{n}"), spec(&["cx33"], &["fsn1"])))
            .await
            .unwrap();
        assert_eq!(placed(&i), ("cx33".into(), "fsn1".into()));
    }
    assert_eq!(w.creates(), (2, 0));
    let problems = p.check(&spec(&["cx33"], &["fsn1", "nbg1"])).await.unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(!problems[0].is_error());
    assert!(
        problems[0]
            .to_string()
            .starts_with("server type cx33 is deprecated in fsn1: orderable until "),
        "{}",
        problems[0]
    );
}

#[tokio::test]
async fn check_names_unknown_unavailable_deprecated_types_images_and_locations() {
    let w = world(100.0, FakeConfig::default()).await;
    let now = w.clock.now_ms();
    w.fake.set_config(|c| {
        c.deprecations = vec![mayfly_sim::hetzner::DeprecationFault {
            server_type: "cx43".into(),
            location: None,
            deprecation: mayfly_sim::hetzner::catalog::Deprecation {
                announced_ms: now,
                unavailable_after_ms: now + 86_400_000,
            },
        }]
    });
    let p = w.provider();
    let mut s = spec(
        &["cx22", "cx24", "cax11", "cx43", "cx23"],
        &["fsn1", "mars"],
    );
    s.image = "x86:system:ubuntu-24.4".parse().unwrap();
    let problems = p.check(&s).await.unwrap();
    let said: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        said,
        [
            "location mars does not exist (known: ash, fsn1, hel1, hil, nbg1)",
            "server type cx22 is unavailable in fsn1 after 2025-12-31 (try: cx23, cx33, cx43, cx53, cpx22)",
            "server type cx24 does not exist (known: cx23, cx33, cx43, cx53, ccx23)",
            "server type cax11 is arm, the image is x86 (try: ccx13, cpx12, cx23)",
            &said[4],
            "image x86:system:ubuntu-24.4 does not exist (known: ubuntu-24.04, ubuntu-22.04, debian-12)",
        ],
    );
    assert!(
        said[4].starts_with("server type cx43 is deprecated in fsn1: orderable until "),
        "{}",
        said[4]
    );
    let kinds: Vec<(SpecItem, bool)> = problems.iter().map(|p| (p.item, p.is_error())).collect();
    assert_eq!(
        kinds,
        [
            (SpecItem::Location, true),
            (SpecItem::ServerType, true),
            (SpecItem::ServerType, true),
            (SpecItem::ServerType, true),
            (SpecItem::ServerType, false),
            (SpecItem::Image, true),
        ]
    );
    assert!(matches!(
        problems[1].issue,
        SpecIssue::Unavailable { since: Some(_), .. }
    ));
    assert!(spec_unusable(&s, &problems), "the image is unknown");
    s.image = "x86:system:ubuntu-24.04".parse().unwrap();
    let problems = p.check(&s).await.unwrap();
    assert!(!spec_unusable(&s, &problems), "cx23 in fsn1 works");
    assert!(
        p.check(&spec(&["cx23"], &["fsn1"]))
            .await
            .unwrap()
            .is_empty()
    );
    let only_old = spec(&["cx22", "cpx11"], &["nbg1"]);
    assert!(spec_unusable(&only_old, &p.check(&only_old).await.unwrap()));
    // An arm image by name for the arm types.
    let mut arm = spec(&["cax11"], &[]);
    arm.image = "arm:system:ubuntu-24.04".parse().unwrap();
    assert_eq!(p.check(&arm).await.unwrap(), Vec::<SpecProblem>::new());
    assert_eq!(w.creates(), (0, 0), "checking creates nothing");
}

/// Every pool is checked at start, creates follow: each list is read once, then again only
/// after an hour.
#[tokio::test]
async fn the_catalogue_is_read_at_most_once_an_hour_whatever_the_number_of_pools() {
    // An hour is 0.36 s of real time.
    let w = world(10_000.0, FakeConfig::default()).await;
    let p = w.provider();
    let pools = [
        spec(&["cx23", "cx33"], &["fsn1", "nbg1"]),
        spec(&["cpx22"], &["hel1"]),
        spec(&["cx22"], &[]),
        spec(&["ccx13"], &["ash"]),
    ];
    for s in &pools {
        p.check(s).await.unwrap();
    }
    assert_eq!(w.reads(), [1, 1, 1], "three calls for every pool");
    p.create(&request("a", pools[0].clone())).await.unwrap();
    p.create(&request("b", pools[1].clone())).await.unwrap();
    for s in &pools {
        p.check(s).await.unwrap();
    }
    assert_eq!(w.reads(), [1, 1, 1], "creates share the lists");
    w.clock.sleep(Duration::from_secs(3601)).await;
    for s in &pools {
        p.check(s).await.unwrap();
    }
    assert_eq!(w.reads(), [2, 2, 2], "read again after an hour");
}

/// A stand-in whose server types cannot be read, and whose creates refuse a retired type with
/// the real API's words: creates go ahead unchecked, move on past the refused type, and do not
/// read the broken list again on every create.
#[derive(Default)]
struct Broken {
    type_reads: AtomicUsize,
    bodies: Mutex<Vec<Value>>,
}

async fn broken() -> (Arc<Broken>, String) {
    let b = Arc::new(Broken::default());
    let app = axum::Router::new()
        .route(
            "/v1/server_types",
            get(|State(b): State<Arc<Broken>>| async move {
                b.type_reads.fetch_add(1, Ordering::SeqCst);
                let e = json!({ "error": { "code": "server_error", "message": "oops" } });
                (StatusCode::INTERNAL_SERVER_ERROR, Json(e))
            }),
        )
        .route(
            "/v1/servers",
            post(|State(b): State<Arc<Broken>>, Json(body): Json<Value>| async move {
                b.bodies.lock().unwrap().push(body.clone());
                if body["server_type"] == "cx22" {
                    let e = json!({ "error": { "code": "invalid_input", "message": "server type 104 is deprecated" } });
                    return (StatusCode::UNPROCESSABLE_ENTITY, Json(e));
                }
                let server = json!({
                    "id": 9, "name": body["name"], "status": "initializing", "created": "2026-03-01T10:00:00+00:00",
                    "labels": body["labels"],
                    "server_type": { "name": body["server_type"], "architecture": "x86", "prices": [
                        { "location": "fsn1", "price_hourly": { "net": "0.0048", "gross": "0.005712" } }
                    ] },
                    "location": { "name": "fsn1" },
                    "image": { "id": 1, "type": "system", "name": "ubuntu-24.04", "architecture": "x86" },
                });
                (StatusCode::CREATED, Json(json!({ "server": server, "action": {}, "next_actions": [] })))
            }),
        )
        .with_state(b.clone());
    let addr = mayfly_sim::serve_local(app).await.unwrap();
    (b, format!("http://{addr}/v1"))
}

#[tokio::test]
async fn without_a_readable_catalogue_creates_go_ahead_and_move_past_refused_types() {
    let (b, endpoint) = broken().await;
    let p = Hetzner::new(
        &HetznerConfig {
            endpoint,
            ..HetznerConfig::new(Secret::new(TOKEN))
        },
        Arc::new(SimClock::new(100.0)),
    )
    .unwrap();
    let i = p
        .create(&request("a", spec(&["cx22", "cx23"], &["fsn1", "nbg1"])))
        .await
        .unwrap();
    assert_eq!(placed(&i).0, "cx23");
    let types: Vec<Value> = b
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| b["server_type"].clone())
        .collect();
    // cx22 is gone everywhere: its second location is not tried.
    assert_eq!(types, [json!("cx22"), json!("cx23")]);
    let reads = b.type_reads.load(Ordering::SeqCst);
    assert!((1..=3).contains(&reads), "one read, retried: {reads}");
    let e = p
        .create(&request("b", spec(&["cx22"], &["fsn1"])))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        Error::Invalid {
            message: "pool linux: no server type of the spec can be ordered: server type cx22 \
                      in fsn1: server type 104 is deprecated"
                .into()
        }
    );
    assert_eq!(
        b.type_reads.load(Ordering::SeqCst),
        reads,
        "a failed read is not repeated on every create"
    );
    assert!(
        p.check(&spec(&["cx23"], &[])).await.is_err(),
        "check says it could not read"
    );
}
