//! The listeners of `mayfly run`: read deadlines and a cap on open connections, so that slow,
//! idle or half-open clients on a port open to the internet cannot take the file descriptors
//! that webhooks, `/healthz`, the store and the calls to GitHub and the clouds need.
//!
//! Why hyper's server under axum's router rather than `axum::serve`: that one has no read
//! deadline and no connection cap. hyper has a header deadline; the body deadline and the cap
//! are here, in a few dozen lines, with crates already in the build (hyper, hyper-util,
//! http-body come with axum), rather than tower-http's timeouts, which bound whole requests
//! (an API delete may rightly take a minute) and not the reading of one.
//!
//! At the cap a new connection makes room: the connection that has waited longest without a
//! request (half-open, or idle between requests) is closed. A slow-loris flood then only ever
//! costs its own connections, while a real client, which sends its request in milliseconds, is
//! served. Connections in the middle of a request are never closed for room; they end by
//! themselves within the deadlines and the handlers' own bounds.

use axum::Router;
use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::Service;
use tracing::{debug, warn};

/// File descriptors kept for everything but inbound connections: the store's pool, the
/// connections to GitHub and the clouds, the log, files, a child process.
pub const RESERVED_FDS: u64 = 256;
/// Connections the private listener may hold: a few operators and a scraper.
pub const PRIVATE_CONNECTIONS: usize = 64;

/// Read deadlines and the connection cap of the listeners.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// From a connection's start, or the end of its last answer, to the end of the request's
    /// headers: also how long an idle kept-alive connection stays open.
    pub header_timeout: Duration,
    /// From the end of the headers to the end of the body.
    pub body_timeout: Duration,
    /// Open connections at most on the public listener.
    pub max_connections: usize,
}

impl ServeOptions {
    /// The cap that keeps [`RESERVED_FDS`] (and the private listener's share) free under a
    /// limit of `fd_limit` descriptors, three quarters of what remains, at most 16,384.
    pub fn cap_for(fd_limit: u64) -> usize {
        let free = fd_limit.saturating_sub(RESERVED_FDS + PRIVATE_CONNECTIONS as u64);
        usize::try_from(free / 4 * 3)
            .unwrap_or(usize::MAX)
            .clamp(1, 16_384)
    }
}

/// Raises this process's soft limit on open files to its hard limit (unprivileged, as Go
/// programs do at start) and returns the limit now in force. systemd's default soft limit is
/// 1,024 under a hard limit of 524,288.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let soft = now.current.unwrap_or(u64::MAX);
    match now.maximum {
        Some(hard) if hard > soft => {
            let raised = Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => hard,
                Err(e) => {
                    warn!(error = %e, soft, hard, "cannot raise the open files limit");
                    soft
                }
            }
        }
        _ => soft,
    }
}

/// The listeners to serve, bound by the caller (so that a bad address fails the start).
pub struct Listeners {
    /// `listen`: webhooks and `/healthz`, and the rest when there is no private listener.
    pub public: TcpListener,
    /// `api.listen`: `/readyz`, `/metrics`, the API (and `/healthz`).
    pub private: Option<TcpListener>,
}

/// Serves `public` (webhooks, `/healthz`) and `private` (`/readyz`, `/metrics`, the API) on
/// `listeners` until `shutdown` resolves, then lets the requests in flight finish: the caller
/// bounds that wait. Without a private listener the public one serves both.
pub async fn serve(
    listeners: Listeners,
    public: Router,
    private: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    match listeners.private {
        None => accept(listeners.public, public.merge(private), options, stopped).await,
        Some(inside) => {
            let inside_options = ServeOptions {
                max_connections: PRIVATE_CONNECTIONS,
                ..options.clone()
            };
            let healthz = Router::new().route("/healthz", axum::routing::get(super::healthz));
            let (a, b) = tokio::join!(
                accept(listeners.public, public, options, stopped.clone()),
                accept(inside, private.merge(healthz), inside_options, stopped),
            );
            a.and(b)
        }
    }
}

/// One listener's accept loop, until `stopped`; then waits for its connections to close.
async fn accept(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    mut stopped: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let cap = options.max_connections.max(1);
    let slots = Arc::new(Slots::new(cap));
    let local = listener.local_addr()?;
    debug!(listen = %local, max_connections = cap, "accepting connections");
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = until_stopped(&mut stopped) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors (EMFILE, ENFILE) or a connection gone before it was
                // taken: wait a little rather than spin.
                warn!(listen = %local, error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(permit) = slots.room(options.header_timeout).await else {
            debug!(%peer, "connection refused: every connection is busy with a request");
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            peer,
            router.clone(),
            options.clone(),
            slots.clone(),
            permit,
            stopped.clone(),
        ));
    }
    // Every connection gives its permit back when it ends.
    let _ = slots.permits.acquire_many(cap as u32).await;
    Ok(())
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    options: ServeOptions,
    slots: Arc<Slots>,
    _permit: OwnedSemaphorePermit,
    mut stopped: watch::Receiver<bool>,
) {
    let (id, evicted) = slots.open();
    let service = Requests {
        router,
        slots: slots.clone(),
        id,
        body_timeout: options.body_timeout,
        stopped: stopped.clone(),
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(
        TokioIo::new(stream),
        hyper_util::service::TowerToHyperService::new(service),
    );
    tokio::pin!(conn);
    tokio::select! {
        done = conn.as_mut() => {
            if let Err(e) = done {
                debug!(%peer, error = %e, "connection ended");
            }
        }
        () = evicted.notified() => {
            debug!(%peer, "connection closed to make room: no request in time");
        }
        () = until_stopped(&mut stopped) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    slots.close(id);
}

/// Resolves once the server is told to stop (or its sender is gone).
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// The connections of one listener: the cap, and which connections wait for a request, oldest
/// first, so that the oldest can be closed to make room.
struct Slots {
    permits: Arc<Semaphore>,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    next: u64,
    /// Connections waiting for a request, by when they began to wait.
    waiting: BTreeMap<u64, u64>,
    conns: HashMap<u64, Conn>,
}

struct Conn {
    /// Its key in `waiting`, while it waits.
    waiting_since: Option<u64>,
    /// Requests in flight (one at a time on HTTP/1.1, but counted to be sure).
    active: usize,
    evict: Arc<Notify>,
}

impl Slots {
    fn new(cap: usize) -> Slots {
        Slots {
            permits: Arc::new(Semaphore::new(cap)),
            state: Mutex::new(SlotState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a new connection: a free one, or one made by closing the connection that
    /// has waited longest for a request. `None` when every connection is in a request and
    /// none ends within `patience`.
    async fn room(&self, patience: Duration) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        self.evict_oldest();
        tokio::time::timeout(patience, self.permits.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    fn evict_oldest(&self) {
        let mut s = self.lock();
        if let Some((_, id)) = s.waiting.pop_first()
            && let Some(conn) = s.conns.get_mut(&id)
        {
            conn.waiting_since = None;
            conn.evict.notify_one();
        }
    }

    /// A new connection, waiting for its first request.
    fn open(&self) -> (u64, Arc<Notify>) {
        let mut s = self.lock();
        let id = s.next;
        s.next += 1;
        let evict = Arc::new(Notify::new());
        s.waiting.insert(id, id);
        s.conns.insert(
            id,
            Conn {
                waiting_since: Some(id),
                active: 0,
                evict: evict.clone(),
            },
        );
        (id, evict)
    }

    fn begin(&self, id: u64) {
        let mut s = self.lock();
        let since = s.conns.get_mut(&id).and_then(|c| {
            c.active += 1;
            c.waiting_since.take()
        });
        if let Some(since) = since {
            s.waiting.remove(&since);
        }
    }

    /// The answer went out: the connection waits for its next request, youngest in line.
    fn end(&self, id: u64) {
        let mut s = self.lock();
        let seq = s.next;
        let waits = s.conns.get_mut(&id).is_some_and(|c| {
            c.active = c.active.saturating_sub(1);
            if c.active == 0 && c.waiting_since.is_none() {
                c.waiting_since = Some(seq);
                true
            } else {
                false
            }
        });
        if waits {
            s.next += 1;
            s.waiting.insert(seq, id);
        }
    }

    fn close(&self, id: u64) {
        let mut s = self.lock();
        if let Some(since) = s.conns.remove(&id).and_then(|c| c.waiting_since) {
            s.waiting.remove(&since);
        }
    }
}

/// The router behind one connection: each request's body gets its deadline, and the
/// connection counts as busy from the request's headers to the end of its answer.
#[derive(Clone)]
struct Requests {
    router: Router,
    slots: Arc<Slots>,
    id: u64,
    body_timeout: Duration,
    stopped: watch::Receiver<bool>,
}

/// Marks an answer whose body streams for as long as the client stays (the dashboard's event
/// stream): once the server is told to stop, such a body ends at once, so that the drain at
/// shutdown does not wait out an open browser tab.
#[derive(Clone, Copy, Debug)]
pub struct EndsAtShutdown;

impl Service<hyper::Request<Incoming>> for Requests {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: hyper::Request<Incoming>) -> Self::Future {
        self.slots.begin(self.id);
        let busy = Busy {
            slots: self.slots.clone(),
            id: self.id,
        };
        let deadline = Instant::now() + self.body_timeout;
        let req = req.map(|body| Body::new(Deadline::new(body, deadline)));
        // axum's router is always ready.
        let answer = self.router.call(req);
        let stopped = self.stopped.clone();
        Box::pin(async move {
            let response = answer.await?;
            let ends = response.extensions().get::<EndsAtShutdown>().is_some();
            Ok(response.map(|body| {
                let body = if ends {
                    Body::new(UntilStopped::new(body, stopped))
                } else {
                    body
                };
                Body::new(Answer { body, _busy: busy })
            }))
        })
    }
}

/// Marks the connection as waiting again when dropped: once the answer's body is sent (or the
/// request was dropped).
struct Busy {
    slots: Arc<Slots>,
    id: u64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.slots.end(self.id);
    }
}

/// An answer's body, holding its connection busy until it is sent.
struct Answer {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A streaming answer that ends when the server is told to stop.
struct UntilStopped {
    body: Body,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl UntilStopped {
    fn new(body: Body, mut stopped: watch::Receiver<bool>) -> UntilStopped {
        UntilStopped {
            body,
            stop: Box::pin(async move { until_stopped(&mut stopped).await }),
        }
    }
}

impl http_body::Body for UntilStopped {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }
}

/// A request body that fails once its deadline passes before it ends: a handler reading it
/// answers at once (axum: 400) instead of waiting on a client that sends nothing.
struct Deadline {
    body: Incoming,
    deadline: Pin<Box<Sleep>>,
}

impl Deadline {
    fn new(body: Incoming, at: Instant) -> Deadline {
        Deadline {
            body,
            deadline: Box::pin(tokio::time::sleep_until(at)),
        }
    }
}

/// The body's deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received in time")]
struct BodyTimeout;

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_everything_else() {
        assert_eq!(ServeOptions::cap_for(1_024), 528);
        assert!(ServeOptions::cap_for(1_024) as u64 + RESERVED_FDS + 64 < 1_024);
        assert_eq!(ServeOptions::cap_for(524_288), 16_384);
        assert_eq!(ServeOptions::cap_for(100), 1, "never none");
    }

    #[tokio::test]
    async fn the_oldest_waiting_connection_makes_room() {
        let slots = Slots::new(2);
        let first = slots.room(Duration::from_millis(10)).await.unwrap();
        let (a, evict_a) = slots.open();
        let second = slots.room(Duration::from_millis(10)).await.unwrap();
        let (b, evict_b) = slots.open();
        // b is in a request; a still waits for its first.
        slots.begin(b);
        let freed = tokio::spawn({
            let evict_a = evict_a.clone();
            async move { evict_a.notified().await }
        });
        tokio::task::yield_now().await;
        let room = tokio::spawn(async move {
            let slots = slots;
            let permit = slots.room(Duration::from_secs(5)).await;
            (slots, permit)
        });
        freed.await.unwrap();
        // a's connection task would now end and give its permit back.
        drop(first);
        let (slots, third) = room.await.unwrap();
        assert!(third.is_some());
        slots.close(a);
        // Nothing waits now: b is busy, so the next one finds no room within its patience.
        assert!(slots.room(Duration::from_millis(50)).await.is_none());
        let _ = evict_b;
        // b's answer is out: it waits again, and can be closed for room.
        slots.end(b);
        slots.evict_oldest();
        assert!(slots.lock().waiting.is_empty());
        drop(second);
    }
}
