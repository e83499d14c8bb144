//! The edge's HTTP/1.1 server: an accept loop with a cap on open connections, one hyper
//! connection per client watched for stalls, and one layer in front of the API that every
//! request passes: request id, authentication, rate limit, access log.
//!
//! Why not `warp::serve`: it has no header read timeout, no idle timeout and no connection cap.
//! Why not hyper's `header_read_timeout`: its clock also runs while a keep-alive connection waits
//! for its next request (hyper 1.x), so the idle timeout could never be longer than it.
//! Each connection here keeps its own deadline instead ([`ConnState::deadline`]): the first
//! request's headers within `header_read_timeout` of the connection's start, later ones within
//! `header_read_timeout` of their first byte, at most `idle_timeout` between requests, and
//! `idle_timeout` without a byte either way while a request is being handled (until the last
//! byte of its answer is out: an event stream is busy, its keep-alive comments are its bytes). HTTP/1.1 only:
//! reqwest and curl speak it, and with HTTP/2 detection a silent client would hold its
//! connection before any timeout starts.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use oms_config::HttpConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;
use tracing::{Instrument, debug, info, warn};
use warp::Reply;
use warp::http::header::HeaderName;
use warp::http::{Method, Request, Response};

use crate::auth::{Authentication, Authenticator};
use crate::limits::{self, ConnState, RateKey, RateLimiter, Timeouts};
use oms_bus::metrics as m;
use oms_host::metrics::{self, Access};

/// How long connections may finish what they are doing after shutdown; then they are dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What every request passes before the API: who it is, and whether it may go on.
pub struct Gate {
    pub auth: Arc<Authenticator>,
    pub limiter: RateLimiter,
    /// Who may read `/metrics`: an operator, or this machine when configured.
    pub metrics: Access,
}

/// How a request comes in. The probes go straight to the API, unlimited: a flood from one
/// address must not make the edge look dead. A scrape is answered here, unlimited, so that it
/// comes on time. Everything else is authenticated and rate-limited first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Probe,
    Scrape,
    Limited,
}

impl Entry {
    /// A request for `route` (the template of its path, [`route`]).
    pub fn of(method: &Method, route: &str) -> Entry {
        match route {
            "/healthz" | "/readyz" => Entry::Probe,
            "/metrics" if method == Method::GET => Entry::Scrape,
            _ => Entry::Limited,
        }
    }
}

/// Serves `api` (a warp filter made a service with `warp::service`) on `listener` until
/// `shutdown`, then gives open connections [`CLOSE_GRACE`] to finish.
pub async fn serve<S>(
    listener: TcpListener,
    api: S,
    gate: Arc<Gate>,
    http: &HttpConfig,
    shutdown: CancellationToken,
) where
    S: Service<Request<Incoming>, Response = warp::reply::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let timeouts = Timeouts {
        header: http.header_read_timeout,
        idle: http.idle_timeout,
    };
    // Over the cap, clients wait in the kernel's listen queue until a connection closes.
    let slots = Arc::new(Semaphore::new(http.max_connections.max(1)));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (api, gate, shutdown) = (api.clone(), gate.clone(), shutdown.clone());
        connections.spawn(async move {
            connection(stream, peer, api, gate, timeouts, shutdown).await;
            drop(permit);
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// One client connection, until it closes, stalls past its deadline, or shutdown's grace ends.
async fn connection<S>(
    stream: TcpStream,
    peer: SocketAddr,
    api: S,
    gate: Arc<Gate>,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) where
    S: Service<Request<Incoming>, Response = warp::reply::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let watch = Arc::new(Watch::new(timeouts));
    let io = TokioIo::new(Watched {
        stream,
        watch: watch.clone(),
    });
    let service = {
        let watch = watch.clone();
        hyper::service::service_fn(move |request| {
            handle(request, peer, api.clone(), gate.clone(), watch.clone())
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The deadlines are ours (see the module header), so hyper keeps no clock of its own.
    builder.keep_alive(true).header_read_timeout(None);
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut close_by: Option<tokio::time::Instant> = None;
    loop {
        let deadline = watch.deadline();
        let changed = watch.changed.notified();
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                if watch.deadline() <= Instant::now() {
                    debug!(%peer, "connection stalled past its deadline, closed");
                    return;
                }
            }
            // A byte of a new request arrived: its header clock may end sooner.
            _ = changed => {}
            _ = shutdown.cancelled(), if close_by.is_none() => {
                // Idle connections close now; a request in hand may finish.
                conn.as_mut().graceful_shutdown();
                close_by = Some(tokio::time::Instant::now() + CLOSE_GRACE);
            }
            _ = tokio::time::sleep_until(close_by.unwrap_or_else(tokio::time::Instant::now)), if close_by.is_some() => {
                debug!(%peer, "connection still busy after the shutdown grace, dropped");
                return;
            }
        }
    }
}

/// The layer in front of the API.
async fn handle<S>(
    mut request: Request<Incoming>,
    peer: SocketAddr,
    mut api: S,
    gate: Arc<Gate>,
    watch: Arc<Watch>,
) -> Result<Response<Answer<ApiBody>>, Infallible>
where
    S: Service<Request<Incoming>, Response = warp::reply::Response, Error = Infallible>,
{
    let busy = InFlight::begin(watch);
    let started = Instant::now();
    let id = limits::request_id(request.headers().get(&X_REQUEST_ID));
    request.headers_mut().insert(X_REQUEST_ID, id.clone());
    let request_id = id.to_str().unwrap_or_default().to_string();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let span = tracing::info_span!("request", %request_id);
    let route = route(&path);
    let entry = Entry::of(&method, route);
    let answer = match entry {
        Entry::Probe => api.call(request).instrument(span).await,
        Entry::Scrape => Ok(metrics::answer(
            &gate.metrics,
            Some(peer),
            request.headers(),
        )),
        Entry::Limited => {
            let authentication =
                gate.auth
                    .authenticate_request(request.method(), request.uri(), request.headers());
            let key = match &authentication {
                Authentication::Caller(c) => RateKey::Caller(c.role, c.sub.clone()),
                _ => RateKey::peer(peer.ip()),
            };
            match gate.limiter.check(&key, Instant::now()) {
                Err(wait) => {
                    ::metrics::counter!(m::HTTP_RATE_LIMITED, "service" => crate::SERVICE)
                        .increment(1);
                    Ok(limits::too_many_requests(wait).into_response())
                }
                Ok(()) => {
                    request.extensions_mut().insert(authentication);
                    api.call(request).instrument(span).await
                }
            }
        }
    };
    let mut response = match answer {
        Ok(response) => response,
        Err(never) => match never {},
    };
    response.headers_mut().insert(X_REQUEST_ID, id);
    let status = response.status().as_u16();
    let took = started.elapsed().as_secs_f64();
    let method_label = method_label(&method);
    ::metrics::counter!(m::HTTP_REQUESTS, "service" => crate::SERVICE, "route" => route,
        "method" => method_label, "status" => status.to_string())
    .increment(1);
    ::metrics::histogram!(m::HTTP_REQUEST_DURATION, "service" => crate::SERVICE, "route" => route,
        "method" => method_label)
    .record(took);
    let ms = (took * 10_000.0).round() / 10.0;
    if entry == Entry::Probe {
        debug!(%request_id, %method, %path, status, ms, "request");
    } else {
        info!(%request_id, %method, %path, status, ms, "request");
    }
    Ok(response.map(|body| Answer {
        body,
        busy: Some(busy),
    }))
}

/// The body type of the API's answers.
type ApiBody = <warp::reply::Response as HasBody>::Body;

trait HasBody {
    type Body;
}

impl<B> HasBody for Response<B> {
    type Body = B;
}

/// An answer's body, holding its request's [`InFlight`] until the last byte is out: while a
/// long answer (an event stream) is written, the connection is busy, not idle.
struct Answer<B> {
    body: B,
    busy: Option<InFlight>,
}

impl<B> hyper::body::Body for Answer<B>
where
    B: hyper::body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.busy = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The route template of `path`, for metrics: a fixed set, so that no client can make up
/// new series.
pub fn route(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [""] => "/",
        ["orders"] => "/orders",
        ["orders", _] => "/orders/{id}",
        ["orders", _, "cancel"] => "/orders/{id}/cancel",
        ["orders", _, "ship"] => "/orders/{id}/ship",
        ["orders", _, "deliver"] => "/orders/{id}/deliver",
        ["orders", _, "history"] => "/orders/{id}/history",
        ["orders", _, "events"] => "/orders/{id}/events",
        ["customers"] => "/customers",
        ["customers", _] => "/customers/{id}",
        ["customers", _, "block"] => "/customers/{id}/block",
        ["customers", _, "unblock"] => "/customers/{id}/unblock",
        ["products"] => "/products",
        ["products", _] => "/products/{id}",
        ["products", _, "stock"] => "/products/{id}/stock",
        ["events"] => "/events",
        ["stats"] => "/stats",
        ["assets", _] => "/assets/{file}",
        ["metrics"] => "/metrics",
        ["openapi.json"] => "/openapi.json",
        ["healthz"] => "/healthz",
        ["readyz"] => "/readyz",
        _ => "other",
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A connection's state and the wake-up for its deadline.
struct Watch {
    state: Mutex<ConnState>,
    timeouts: Timeouts,
    changed: Notify,
}

impl Watch {
    fn new(timeouts: Timeouts) -> Self {
        Watch {
            state: Mutex::new(ConnState::new(Instant::now())),
            timeouts,
            changed: Notify::new(),
        }
    }

    fn deadline(&self) -> Instant {
        self.lock().deadline(self.timeouts)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnState> {
        // The state is plain data: a panic elsewhere cannot leave it half-changed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `change`; wakes the connection if its deadline came closer.
    fn update(&self, change: impl FnOnce(&mut ConnState, Instant)) {
        let now = Instant::now();
        let mut state = self.lock();
        let before = state.deadline(self.timeouts);
        change(&mut state, now);
        let sooner = state.deadline(self.timeouts) < before;
        drop(state);
        if sooner {
            self.changed.notify_one();
        }
    }
}

/// A request being handled: counted from its headers until its answer is written.
struct InFlight(Arc<Watch>);

impl InFlight {
    fn begin(watch: Arc<Watch>) -> InFlight {
        watch.update(|s, _| s.begin());
        InFlight(watch)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.update(|s, now| s.end(now));
    }
}

/// The client's socket, telling its [`Watch`] when bytes move.
struct Watched {
    stream: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.update(|s, now| s.io(now, true));
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.update(|s, now| s.io(now, false));
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.update(|s, now| s.io(now, false));
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
