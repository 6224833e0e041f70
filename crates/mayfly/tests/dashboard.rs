//! The dashboard in-process, over a controller driven against the simulator: only the sign-in
//! for a wrong or missing token, no secret in any page, stream or cookie, the page agrees with
//! `/api/v1/status`, a pass reaches an open event stream within a second, and the delete keeps
//! a busy machine and removes an idle one.

mod support;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use mayfly::http::Api;
use mayfly::http::api;
use mayfly::local::{self, Local};
use mayfly_core::{Arch, Secret};
use mayfly_sim::github::NewJob;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const TOKEN: &str = "dash-test-token-DUMMY-51c9e";
const REPO: &str = "acme/app";
const LABELS: &[&str] = &["self-hosted", "linux"];

/// Every secret the process holds: none may reach a browser.
const SECRETS: &[&str] = &[TOKEN, local::GITHUB_TOKEN];

async fn world() -> (Local, Router) {
    let mut pool = local::pool("linux", LABELS, &["cx23"], &["fsn1"], Arch::X86);
    pool.standby = 1;
    let pools = local::pools("mf", vec![pool], false);
    let local = support::local::start(support::local::sim_config(50.0), pools, &[REPO], None).await;
    let c = &local.controller;
    let api = Api::new(
        &c.reconciler,
        c.store.clone(),
        c.wake.clone(),
        Secret::new(TOKEN),
        Duration::from_secs(600),
    );
    let router = api::router(Arc::new(api));
    (local, router)
}

async fn call(
    router: &Router,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    form: Option<String>,
) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let body = match form {
        Some(f) => {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Body::from(f)
        }
        None => Body::empty(),
    };
    let response = router
        .clone()
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} carries a secret:\n{text}");
    }
}

/// Signs in; the cookie to send back.
async fn sign_in(router: &Router) -> String {
    let (status, headers, body) = call(
        router,
        Method::POST,
        "/signin",
        None,
        Some(format!("token={TOKEN}")),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers[header::LOCATION], "/");
    let set = headers[header::SET_COOKIE].to_str().unwrap();
    no_secret("the cookie", set);
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    set.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_token_sees_only_the_sign_in() {
    let (mut local, router) = world().await;
    support::local::run_until(&mut local, |sim| !sim.hetzner.servers().is_empty()).await;
    local.controller.reconciler.pass().await.unwrap();
    let machine = local.sim.hetzner.servers()[0].name.clone();

    let forged = "mayfly_session=99999999999.00ff";
    for cookie in [None, Some(forged), Some("mayfly_session=")] {
        let (status, headers, body) = call(&router, Method::GET, "/", cookie, None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("action=\"/signin\""), "{body}");
        assert!(
            !body.contains(&machine) && !body.contains("Machines"),
            "{body}"
        );
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        let (status, _, body) = call(&router, Method::GET, "/dashboard/stream", cookie, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let confirm = format!("/dashboard/delete?name={machine}");
        let (_, _, body) = call(&router, Method::GET, &confirm, cookie, None).await;
        assert!(body.contains("action=\"/signin\"") && !body.contains(&machine));
        let (_, _, body) = call(
            &router,
            Method::POST,
            "/dashboard/delete",
            cookie,
            Some(format!("name={machine}")),
        )
        .await;
        assert!(body.contains("action=\"/signin\""), "{body}");
    }
    assert!(
        local
            .sim
            .hetzner
            .servers()
            .iter()
            .any(|s| s.name == machine),
        "nothing was deleted without a sign-in"
    );
    for wrong in ["wrong", "", &TOKEN[..TOKEN.len() - 1], &format!("{TOKEN}x")] {
        let (status, headers, body) = call(
            &router,
            Method::POST,
            "/signin",
            None,
            Some(format!("token={wrong}")),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong:?}");
        assert!(headers.get(header::SET_COOKIE).is_none());
        assert!(body.contains("not the API token") && !body.contains(&machine));
    }
    // A post from another site is refused even with a good token.
    let req = Request::post("/signin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ORIGIN, "http://evil.example")
        .header(header::HOST, "127.0.0.1:8080")
        .body(Body::from(format!("token={TOKEN}")))
        .unwrap();
    let answer = router.clone().oneshot(req).await.unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_last_pass_streams_the_next_and_deletes_only_an_idle_machine() {
    let (mut local, router) = world().await;
    local.sim.github.enqueue(
        REPO,
        vec![NewJob {
            labels: LABELS.iter().map(|l| l.to_string()).collect(),
            duration: Duration::from_secs(100_000),
        }],
    );
    support::local::run_until(&mut local, |sim| {
        let runners = sim.github.runners();
        let online = |busy: bool| {
            runners
                .iter()
                .filter(|r| r.status == "online" && r.busy == busy)
                .count()
        };
        online(true) == 1 && online(false) == 1
    })
    .await;
    local.controller.reconciler.pass().await.unwrap();
    let runners = local.sim.github.runners();
    let busy = runners.iter().find(|r| r.busy).unwrap().name.clone();
    let idle = runners.iter().find(|r| !r.busy).unwrap().name.clone();

    let cookie = sign_in(&router).await;
    let req = Request::get("/api/v1/status")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let answer = router.clone().oneshot(req).await.unwrap();
    let status: Value = serde_json::from_slice(
        &axum::body::to_bytes(answer.into_body(), usize::MAX)
            .await
            .unwrap(),
    )
    .unwrap();
    let at = status["at"].as_str().unwrap();
    // The broadcast renders the pass the API serves within a second.
    let mut page = String::new();
    for _ in 0..50 {
        page = call(&router, Method::GET, "/", Some(&cookie), None).await.2;
        if page.contains(&format!("data-at=\"{at}\"")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        page.contains(&format!("data-at=\"{at}\"")),
        "the page is of the API's pass"
    );
    no_secret("the page", &page);
    for i in status["instances"].as_array().unwrap() {
        let name = i["name"].as_str().unwrap();
        let row = format!("<tr data-machine=\"{name}\">");
        let start = page
            .find(&row)
            .unwrap_or_else(|| panic!("{name} missing:\n{page}"));
        let row = &page[start..start + page[start..].find("</tr>").unwrap()];
        assert!(row.contains(&format!(
            "data-k=\"runner\">{}<",
            i["runner"].as_str().unwrap()
        )));
        // Only a machine that is not busy has a delete.
        assert_eq!(row.contains("Delete…"), i["runner"] != "busy", "{row}");
    }
    for js in ["/dashboard/dashboard.js", "/dashboard/dashboard.css"] {
        let (status, _, body) = call(&router, Method::GET, js, None, None).await;
        assert_eq!(status, StatusCode::OK);
        no_secret(js, &body);
    }

    // An open stream gets the current frame at once, and the next pass's within a second.
    let req = Request::get("/dashboard/stream")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let answer = router.clone().oneshot(req).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = answer.into_body();
    let first = next_pass(&mut body).await;
    no_secret("the stream", &first);
    assert!(first.contains(&busy), "{first}");
    local.controller.reconciler.pass().await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(1), next_pass(&mut body))
        .await
        .expect("a pass reaches the stream within a second");
    let at = |frame: &str| -> String {
        let json: Value = serde_json::from_str(frame.trim_start_matches("data:").trim()).unwrap();
        json["at"].as_str().unwrap().to_string()
    };
    assert!(at(&next) > at(&first), "a newer pass");

    // Each pass's minute is in the store, for the plots after a restart or a failover.
    let saved = local
        .controller
        .store
        .samples_since(mayfly_core::Time(0))
        .await
        .unwrap();
    let last = saved.last().expect("a sample in the store");
    assert_eq!((last.busy, last.idle), (1, 1), "{saved:?}");

    // The busy machine is kept; the idle one goes, after a confirmation page.
    let (status, _, confirm) = call(
        &router,
        Method::GET,
        &format!("/dashboard/delete?name={idle}"),
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(confirm.contains("method=\"post\"") && confirm.contains(&idle));
    assert!(
        local.sim.hetzner.servers().iter().any(|s| s.name == idle),
        "asking deletes nothing"
    );
    let delete = |name: &str| {
        call(
            &router,
            Method::POST,
            "/dashboard/delete",
            Some(&cookie),
            Some(format!("name={name}")),
        )
    };
    let (status, _, body) = delete(&busy).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("never deletes a busy machine"), "{body}");
    let (status, _, body) = delete(&idle).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let servers = local.sim.hetzner.servers();
    assert!(servers.iter().any(|s| s.name == busy));
    assert!(
        !servers.iter().any(|s| s.name == idle),
        "the idle machine is gone"
    );
    let (status, _, _) = delete("mf-nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Signed out: the sign-in again.
    let (status, headers, _) = call(&router, Method::POST, "/signout", Some(&cookie), None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}

/// The data line of the next `pass` event of an event stream.
async fn next_pass(body: &mut Body) -> String {
    let mut text = String::new();
    loop {
        let frame = std::future::poll_fn(|cx| {
            http_body::Body::poll_frame(std::pin::Pin::new(&mut *body), cx)
        })
        .await
        .expect("the stream is open")
        .unwrap();
        if let Some(data) = frame.data_ref() {
            text.push_str(&String::from_utf8_lossy(data));
        }
        if let Some(end) = text.find("\n\n") {
            let event = text[..end].to_string();
            text.drain(..end + 2);
            if event.contains("event: pass") {
                return event
                    .lines()
                    .filter(|l| l.starts_with("data:"))
                    .collect::<Vec<_>>()
                    .join("");
            }
        }
    }
}

/// `mayfly run` itself serves the dashboard at `/` on `listen`, with the token it wrote.
#[test]
fn mayfly_run_serves_the_dashboard_behind_its_token() {
    use std::io::{Read, Write};
    use support::sim::{LINUX_POOL, RunConfig, SimServe};
    let sim = SimServe::start(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("mayfly.toml");
    let text = sim.mayfly_config(&RunConfig {
        controller: "dash",
        repos: &["acme/app".to_string()],
        webhook_secret: None,
        registration: "30s",
        poll: "1s",
        poll_backstop: "5s",
        workers: 2,
        pools: LINUX_POOL,
    });
    std::fs::write(&config, text).expect("write the config");
    let mut daemon = support::Daemon::start(dir.path(), &config, &[]);
    let addr = daemon
        .listen_addr()
        .expect("mayfly run started")
        .to_string();
    let token = std::fs::read_to_string(dir.path().join("state/api.token"))
        .expect("the token mayfly run wrote");
    let token = token.trim();
    let http = |text: String| {
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(text.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let get = |cookie: &str| {
        http(format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        ))
    };
    let page = get("");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("action=\"/signin\"") && !page.contains(token),
        "{page}"
    );
    let body = format!("token={token}");
    let answer = http(format!(
        "POST /signin HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");
    let cookie = answer
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    // The page fills in once the first pass has read the world.
    let mut page = String::new();
    for _ in 0..100 {
        page = get(&cookie);
        if page.contains("id=\"machines\"") && page.contains("data-at=\"2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(page.contains("<h2 id=\"h-pools\">Pools</h2>"), "{page}");
    assert!(page.contains("data-pool=\"linux\""), "{page}");
    assert!(!page.contains(token), "the page carries no token");

    // An open event stream ends when the daemon stops, rather than holding up its drain.
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(
            format!("GET /dashboard/stream HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut first = [0u8; 4096];
    let n = stream.read(&mut first).expect("the stream answers");
    let head = String::from_utf8_lossy(&first[..n]).to_string();
    assert!(head.contains("text/event-stream"), "{head}");
    let reader = std::thread::spawn(move || {
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).map(|_| rest.len())
    });
    daemon.stop();
    assert!(
        reader.join().unwrap().is_ok(),
        "the stream ended at shutdown"
    );
    let log = daemon.log();
    assert!(
        !log.contains("still open at shutdown"),
        "the drain waited on the stream:\n{log}"
    );
}
