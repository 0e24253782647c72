//! HTTP listeners for the planes that face the network (the edge, the
//! API): the accept loop, HTTP/1.1 and HTTP/2 connections, and the limits
//! that keep one client from taking the server down.
//!
//! - A client must send a request's headers within `header_timeout`, and a
//!   connection on which nothing moves is closed after `idle_timeout`
//!   (a fresh connection that sends nothing: after `header_timeout`).
//! - At most `max_connections` are open per listener (by default a share
//!   of the file-descriptor limit); past it the connection idle the
//!   longest is closed to make room, and when none is idle the newcomer
//!   gets a `503` and is closed.
//! - Accept errors (out of descriptors) back off instead of spinning.
//!
//! This crate knows nothing of sites or the API; it serves any hyper
//! service. [`guard`] is the other side: what outbound requests that a
//! tenant's configuration makes may reach.

pub mod guard;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// How one listener treats its connections.
#[derive(Clone, Debug)]
pub struct ListenerSettings {
    /// Names the listener in logs (`edge`, `api`).
    pub name: &'static str,
    /// Open connections at most; 0: [`auto_max_connections`] with
    /// `auto_share_percent`.
    pub max_connections: usize,
    /// Percent of the file-descriptor limit the listener's connections may
    /// take when `max_connections` is 0.
    pub auto_share_percent: u64,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// A client must send a request's headers within this, by default.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 15_000;
/// A connection on which nothing moves is closed after this, by default.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;

impl ListenerSettings {
    /// Settings from a plane's flags (timeouts in milliseconds).
    pub fn new(
        name: &'static str,
        max_connections: usize,
        auto_share_percent: u64,
        header_timeout_ms: u64,
        idle_timeout_ms: u64,
    ) -> ListenerSettings {
        ListenerSettings {
            name,
            max_connections,
            auto_share_percent,
            header_timeout: Duration::from_millis(header_timeout_ms),
            idle_timeout: Duration::from_millis(idle_timeout_ms),
        }
    }
}

/// An error with its causes, as one line (`a: b: c`).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Raises the soft file-descriptor limit to the hard limit, and returns
/// the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft),
    }
}

/// `share_percent` of the current file-descriptor limit, at least 16.
pub fn auto_max_connections(share_percent: u64) -> usize {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    let soft = if soft == rlimit::INFINITY { 1 << 20 } else { soft };
    (soft.saturating_mul(share_percent) / 100).clamp(16, 1 << 20) as usize
}

/// Concurrent `503` answers to refused connections; past this they are
/// closed without one.
const MAX_REFUSALS: usize = 64;

/// Concurrent streams per HTTP/2 connection.
pub const MAX_STREAMS: u32 = 64;

/// A connection with a request in flight but nothing moving for this long
/// counts as stalled: past the cap it is closed to make room.
const STALLED: Duration = Duration::from_secs(1);

/// Accept errors that mean this process is out of something (rather than
/// one connection having failed).
fn out_of_resources(e: &io::Error) -> bool {
    // ENOMEM, ENFILE, EMFILE, ENOBUFS on Linux.
    matches!(e.raw_os_error(), Some(12 | 23 | 24 | 105))
}

/// Serves connections from `listener` with a service made per connection
/// (from the client's address) until `shutdown` resolves; then stops
/// accepting and asks open connections to close.
pub async fn serve<M, S, B>(
    listener: TcpListener,
    settings: ListenerSettings,
    make_service: M,
    shutdown: impl Future<Output = ()>,
) where
    M: Fn(SocketAddr) -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let max = if settings.max_connections == 0 {
        auto_max_connections(settings.auto_share_percent)
    } else {
        settings.max_connections
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Write bodies with writev straight from the cached `Bytes` instead of
    // copying them into hyper's buffer first.
    builder.http1().writev(true).timer(TokioTimer::new()).header_read_timeout(settings.header_timeout);
    // Streams per HTTP/2 connection: each may hold a proxied request's
    // upstream connection, so the connection cap must bound them too.
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(MAX_STREAMS);
    let builder = Arc::new(builder);
    let registry = Arc::new(Registry::new());
    let refusals = Arc::new(AtomicUsize::new(0));
    let mut backoff = Duration::from_millis(10);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(c) => c,
            Err(e) if !out_of_resources(&e) => {
                // A connection that failed before it was taken (reset,
                // aborted): nothing to do about it.
                continue;
            }
            Err(e) => {
                // Out of descriptors or memory: make room, back off, keep
                // serving.
                registry.evict_idlest();
                tracing::warn!(listener = settings.name, error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(10);
        let _ = stream.set_nodelay(true);
        if registry.len() >= max && !registry.evict_idlest() {
            refuse(stream, &refusals);
            continue;
        }
        let conn = registry.register();
        let service = Tracked { inner: make_service(peer), conn: conn.state.clone() };
        let builder = builder.clone();
        let settings = settings.clone();
        tokio::spawn(async move { drive(conn, stream, service, &builder, &settings).await });
    }
    registry.close_all();
}

/// Runs one connection to its end, closing it when it idles too long or
/// the listener asks.
async fn drive<S, B>(
    conn: Registration,
    stream: TcpStream,
    service: Tracked<S>,
    builder: &auto::Builder<TokioExecutor>,
    settings: &ListenerSettings,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let state = conn.state.clone();
    let io = TokioIo::new(ActivityIo { inner: stream, state: state.clone() });
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        let deadline = state.deadline(settings);
        tokio::select! {
            _ = connection.as_mut() => break,
            () = state.close.notified(), if !closing => {
                if state.in_flight.load(Ordering::Acquire) > 0 {
                    // Evicted while stalled mid-request: no grace.
                    break;
                }
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = tokio::time::sleep_until(deadline.into()) => {
                if state.deadline(settings) > Instant::now() {
                    continue;
                }
                if closing || state.in_flight.load(Ordering::Acquire) > 0 {
                    // Nothing moved for the whole idle timeout, even while
                    // a response was due: drop it.
                    break;
                }
                connection.as_mut().graceful_shutdown();
                closing = true;
                state.touch();
            }
        }
    }
}

/// Answers a connection past the cap with a `503`, off the accept loop.
fn refuse(mut stream: TcpStream, refusals: &Arc<AtomicUsize>) {
    if refusals.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSALS {
        refusals.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let refusals = refusals.clone();
    tokio::spawn(async move {
        const BODY: &str = "503: this server has too many open connections; try again shortly\n";
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\n\
             retry-after: 1\r\ncontent-length: {}\r\n\r\n{BODY}",
            BODY.len()
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer.as_bytes())).await;
        let _ = stream.shutdown().await;
        refusals.fetch_sub(1, Ordering::AcqRel);
    });
}

/// The open connections of one listener.
struct Registry {
    clock: Instant,
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
}

/// One connection's entry; leaving it (the connection ended) removes it.
struct Registration {
    registry: Arc<Registry>,
    id: u64,
    state: Arc<ConnState>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.conns.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

impl Registry {
    fn new() -> Registry {
        Registry { clock: Instant::now(), next: AtomicU64::new(0), conns: Mutex::new(HashMap::new()) }
    }

    fn len(&self) -> usize {
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn register(self: &Arc<Self>) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            clock: self.clock,
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            close: Notify::new(),
        });
        state.touch();
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).insert(id, state.clone());
        Registration { registry: self.clone(), id, state }
    }

    /// Asks the connection idle the longest (no request in flight) to
    /// close, or else the one stalled the longest (a request in flight,
    /// nothing moving for a second: a client trickling or not reading);
    /// false when every connection is busy.
    fn evict_idlest(&self) -> bool {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let candidates = || conns.values().filter(|c| !c.evicted.load(Ordering::Acquire));
        let idle = candidates()
            .filter(|c| c.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|c| c.last_ms.load(Ordering::Relaxed));
        let stalled_before = self.clock.elapsed().checked_sub(STALLED).map(|t| t.as_millis() as u64);
        let idlest = idle.or_else(|| {
            let before = stalled_before?;
            candidates()
                .filter(|c| c.last_ms.load(Ordering::Relaxed) < before)
                .min_by_key(|c| c.last_ms.load(Ordering::Relaxed))
        });
        match idlest {
            Some(c) => {
                c.evicted.store(true, Ordering::Release);
                c.close.notify_one();
                true
            }
            None => false,
        }
    }

    fn close_all(&self) {
        for c in self.conns.lock().unwrap_or_else(|p| p.into_inner()).values() {
            c.close.notify_one();
        }
    }
}

/// What the listener knows of one connection.
struct ConnState {
    clock: Instant,
    /// When bytes last moved either way (ms since the listener's clock).
    last_ms: AtomicU64,
    /// Requests whose response has not been sent to its end.
    in_flight: AtomicUsize,
    requests: AtomicU64,
    evicted: AtomicBool,
    close: Notify,
}

impl ConnState {
    fn touch(&self) {
        self.last_ms.store(self.clock.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// When the connection counts as idle if nothing moves until then.
    fn deadline(&self, settings: &ListenerSettings) -> Instant {
        let limit = if self.in_flight.load(Ordering::Acquire) == 0 && self.requests.load(Ordering::Acquire) == 0 {
            settings.header_timeout
        } else {
            settings.idle_timeout
        };
        self.clock + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + limit
    }
}

/// The socket, noting when bytes move.
struct ActivityIo {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for ActivityIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.touch();
        }
        poll
    }
}

impl AsyncWrite for ActivityIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.state.touch();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.state.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The service, counting requests in flight until their response bodies
/// end.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    conn: Arc<ConnState>,
}

/// Marks a request in flight while it lives.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn new(conn: Arc<ConnState>) -> InFlight {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        conn.requests.fetch_add(1, Ordering::AcqRel);
        InFlight(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let guard = InFlight::new(self.conn.clone());
        let future = self.inner.call(req);
        Box::pin(async move {
            let resp = future.await?;
            Ok(resp.map(|inner| TrackedBody { inner, _in_flight: guard }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request in flight until it ends.
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        _in_flight: InFlight,
    }
}

impl<B: http_body::Body> http_body::Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
