//! The commands' side of the daemon's API: requests to `/api/v1/` on `listen` with the token of
//! `api.token_file`, each bounded. "Nothing listens there" is told apart from every other failure.

use super::token;
use anyhow::{Context, anyhow};
use mayfly::http::api::{ApiError, Deletion, Events, EventsQuery};
use mayfly::view::View;
use mayfly_core::Secret;
use reqwest::StatusCode;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A daemon on loopback answers at once; a connect that takes longer is not going to work.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Reads are served from memory.
const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// A delete may wait for the pass in flight (`reconcile::operator::TURN_WAIT`, 60 s), then
/// reads the world and makes two calls of its own.
const DELETE_TIMEOUT: Duration = Duration::from_secs(150);

pub struct Client {
    addr: SocketAddr,
    token: Option<Secret>,
    token_file: PathBuf,
    http: reqwest::Client,
}

#[derive(Debug)]
pub enum Failure {
    /// Nothing listens at the address: no daemon runs.
    NoDaemon,
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

impl Client {
    /// A client for the daemon listening on `listen` (an unspecified address such as 0.0.0.0
    /// is reached on loopback).
    pub fn new(listen: SocketAddr, token_file: &Path) -> anyhow::Result<Client> {
        if listen.port() == 0 {
            anyhow::bail!(
                "listen has port 0, so the daemon's port is unknown: pass --listen ADDRESS:PORT \
                 with the address `mayfly run` logged at its start"
            );
        }
        let token = token::read(token_file)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(READ_TIMEOUT)
            // The daemon is local: a proxy from the environment must not stand in between.
            .no_proxy()
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Client {
            addr: loopback(listen),
            token,
            token_file: token_file.to_path_buf(),
            http,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self
            .http
            .request(method, format!("http://{}/api/v1/{path}", self.addr));
        match &self.token {
            Some(t) => req.bearer_auth(t.expose()),
            None => req,
        }
    }

    /// The view of the daemon's last pass.
    pub async fn status(&self) -> Result<View, Failure> {
        let response = self
            .request(reqwest::Method::GET, "status")
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if response.status() != StatusCode::OK {
            return Err(Failure::Other(self.refusal(response).await));
        }
        let body = response
            .bytes()
            .await
            .with_context(|| format!("the daemon at {} broke off its answer", self.addr))?;
        serde_json::from_slice(&body)
            .with_context(|| format!("the daemon at {} answered with an unknown view", self.addr))
            .map_err(Failure::Other)
    }

    /// A page of the daemon's events (`GET /api/v1/events`).
    pub async fn events(&self, query: &EventsQuery) -> Result<Events, Failure> {
        let mut params = Vec::new();
        let mut add = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                params.push(format!("{name}={}", segment(&v)));
            }
        };
        add("since", query.since.clone());
        add("until", query.until.clone());
        add("subject", query.subject.clone());
        add("kind", query.kind.clone());
        add("after", query.after.map(|a| a.to_string()));
        add("limit", query.limit.map(|l| l.to_string()));
        add("newest", query.newest.map(|n| n.to_string()));
        let path = if params.is_empty() {
            "events".to_string()
        } else {
            format!("events?{}", params.join("&"))
        };
        let response = self
            .request(reqwest::Method::GET, &path)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if response.status() != StatusCode::OK {
            return Err(Failure::Other(self.refusal(response).await));
        }
        let body = response
            .bytes()
            .await
            .with_context(|| format!("the daemon at {} broke off its answer", self.addr))?;
        serde_json::from_slice(&body)
            .with_context(|| format!("the daemon at {} answered with unknown events", self.addr))
            .map_err(Failure::Other)
    }

    /// Asks the daemon to delete `name`: `Ok(Err(why))` when it refused or failed that one.
    pub async fn delete(&self, name: &str) -> anyhow::Result<Result<Deletion, String>> {
        let response = self
            .request(
                reqwest::Method::DELETE,
                &format!("instances/{}", segment(name)),
            )
            .timeout(DELETE_TIMEOUT)
            .send()
            .await
            .map_err(|e| match self.unreachable(e) {
                Failure::NoDaemon => anyhow!("the daemon at {} has gone away", self.addr),
                Failure::Other(e) => e,
            })?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(self.refusal(response).await);
        }
        let body = response
            .bytes()
            .await
            .with_context(|| format!("the daemon at {} broke off its answer", self.addr))?;
        if status == StatusCode::OK {
            let done: Deletion = serde_json::from_slice(&body).with_context(|| {
                format!("the daemon at {} answered a delete unreadably", self.addr)
            })?;
            return Ok(Ok(done));
        }
        Ok(Err(message(status, &body)))
    }

    fn unreachable(&self, e: reqwest::Error) -> Failure {
        if refused(&e) {
            return Failure::NoDaemon;
        }
        let what = if e.is_timeout() {
            "gave no answer in time"
        } else {
            "cannot be reached"
        };
        Failure::Other(anyhow!("the daemon at {} {what}: {e}", self.addr))
    }

    /// The error for an answer other than 200.
    async fn refusal(&self, response: reqwest::Response) -> anyhow::Error {
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            return match &self.token {
                Some(_) => anyhow!(
                    "the daemon at {} refused the token of {}: it is not the token the daemon \
                     uses (a daemon with another api.token_file?)",
                    self.addr,
                    self.token_file.display()
                ),
                None => anyhow!(
                    "the daemon at {} wants an API token, and {} does not exist: run this as \
                     the daemon's user, with its configuration",
                    self.addr,
                    self.token_file.display()
                ),
            };
        }
        let body = response.bytes().await.unwrap_or_default();
        anyhow!("the daemon at {}: {}", self.addr, message(status, &body))
    }
}

/// The `error` of a JSON error body, else the status.
fn message(status: StatusCode, body: &[u8]) -> String {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => e.error,
        Err(_) => format!("it answered {status}"),
    }
}

/// Whether the connection was refused: nothing listens there.
fn refused(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// Where a daemon listening on `listen` is reached from this machine.
fn loopback(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// `name` as one URL path segment (or query value): instance names are DNS labels, anything
/// else is escaped.
fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_reached_on_loopback() {
        let at = |s: &str| loopback(s.parse().unwrap()).to_string();
        assert_eq!(at("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(at("[::]:8080"), "[::1]:8080");
        assert_eq!(at("10.0.0.5:9000"), "10.0.0.5:9000");
    }

    #[test]
    fn names_stay_one_path_segment() {
        assert_eq!(segment("mayfly-linux-12-1"), "mayfly-linux-12-1");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }

    #[tokio::test]
    async fn nothing_listening_is_no_daemon_and_other_failures_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("api.token");
        // A port that was free a moment ago: nothing listens there.
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = Client::new(free, &token_file).unwrap();
        assert!(matches!(client.status().await, Err(Failure::NoDaemon)));

        // A server that answers 401: an error, never a fallback.
        let app = axum::Router::new().fallback(|| async {
            (
                axum::http::StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({"error": "no"})),
            )
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = Client::new(addr, &token_file).unwrap();
        match client.status().await {
            Err(Failure::Other(e)) => {
                let msg = format!("{e:#}");
                assert!(msg.contains("wants an API token"), "{msg}");
                assert!(msg.contains("api.token does not exist"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        let port0 = Client::new("127.0.0.1:0".parse().unwrap(), &token_file);
        assert!(format!("{:#}", port0.err().unwrap()).contains("port 0"));
    }
}
