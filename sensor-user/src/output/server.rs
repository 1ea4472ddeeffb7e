//! The HTTP endpoint (loopback by default): `/metrics` for Prometheus, `/status` for the live
//! view (`aiwatch status`). HTTP/1.1 through hyper, one request per connection.
//!
//! The endpoint must never cost the sensor its sensing: a failed bind is logged, counted
//! (`aiwatch_metrics_listener_up`, `aiwatch_metrics_bind_failures_total`) and retried in the
//! background; at most `metrics.max_connections` connections are served at once (more are
//! accepted and closed at once, and counted); a connection that has not sent its request head
//! within [`HEADER_TIMEOUT`] is closed, and none lives longer than [`CONNECTION_TIMEOUT`].

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    body::Incoming, header, server::conn::http1, service::service_fn, Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

use crate::output::{
    metrics::Metrics,
    status::{self, EndpointStatus},
};

/// A connection must send its whole request head within this time.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// No connection lives longer than this (a client that does not read its answer).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// While the address cannot be bound, a bind is tried this often.
pub const BIND_RETRY: Duration = Duration::from_secs(2);
/// Failed retries are logged once every this many (once a minute), and the first.
const LOG_EVERY: u64 = 30;
/// Largest request head read (hyper answers 431 past it).
const MAX_HEAD: usize = 8192;

/// What the endpoint shares between its tasks.
pub struct Endpoint {
    pub listen: SocketAddr,
    pub max_connections: usize,
    metrics: Arc<Metrics>,
    status: status::Shared,
    last_error: Mutex<Option<String>>,
}

/// Connections the kernel queues for the accept loop. std's 128 overflows under a burst of
/// connections (a flood, or many scrapers at once) while the loop is off the CPU, and an
/// overflow drops the SYN: a well-behaved scraper then waits a second or more for its retry.
const BACKLOG: i32 = 1024;

/// Binds the endpoint (blocking socket, non-blocking mode): at start-up, on the only thread,
/// and on retry.
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let listen = || -> std::io::Result<Socket> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        // As std's bind does: a restarted daemon rebinds past its old TIME_WAIT connections.
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        Ok(socket)
    };
    let socket = listen().with_context(|| format!("cannot listen for metrics on {addr}"))?;
    socket.set_nonblocking(true).context("metrics listener")?;
    Ok(socket.into())
}

/// The start-up bind: a failure is logged and counted, and the sensor goes on (the runtime
/// retries, see [`serve`]). Returns the error text on failure.
pub fn bind_at_start(addr: SocketAddr, metrics: &Metrics) -> Result<std::net::TcpListener, String> {
    bind(addr).map_err(|e| {
        let e = format!("{e:#}");
        metrics.endpoint.bind_failures.inc();
        metrics.endpoint.listener_up.set(0);
        tracing::error!(
            error = %e,
            retry_s = BIND_RETRY.as_secs(),
            "metrics endpoint unavailable; sensing goes on and the bind is retried"
        );
        e
    })
}

impl Endpoint {
    pub fn new(
        listen: SocketAddr,
        max_connections: usize,
        metrics: Arc<Metrics>,
        status: status::Shared,
    ) -> Arc<Self> {
        Arc::new(Self { listen, max_connections, metrics, status, last_error: Mutex::new(None) })
    }

    /// This endpoint's part of `/status`.
    fn health(&self) -> EndpointStatus {
        EndpointStatus {
            listen: self.listen.to_string(),
            bind_failures: self.metrics.endpoint.bind_failures.get(),
            last_bind_error: self.last_error.lock().ok().and_then(|e| e.clone()),
            connections_rejected: self.metrics.endpoint.connections_rejected.get(),
        }
    }

    /// A failed retry: counted, and kept for `/status`.
    fn record_bind_error(&self, error: String) {
        self.metrics.endpoint.bind_failures.inc();
        self.metrics.endpoint.listener_up.set(0);
        self.keep_error(error);
    }

    fn keep_error(&self, error: String) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }
}

/// Serves `/metrics` and `/status` in the background: on `first` (the start-up bind), or, if
/// that failed, on the address once a retry binds it.
pub fn serve(
    endpoint: Arc<Endpoint>,
    first: Result<std::net::TcpListener, String>,
) -> tokio::task::JoinHandle<()> {
    // The start-up failure is already counted (bind_at_start): keep its text.
    if let Err(e) = &first {
        endpoint.keep_error(e.clone());
    }
    tokio::spawn(async move {
        let listener = match first.ok().and_then(|l| TcpListener::from_std(l).ok()) {
            Some(l) => l,
            None => rebind(&endpoint).await,
        };
        endpoint.metrics.endpoint.listener_up.set(1);
        let addr = endpoint.listen;
        tracing::info!(%addr, "metrics endpoint at http://{addr}/metrics");
        accept_loop(listener, endpoint).await;
    })
}

/// Retries the bind every [`BIND_RETRY`] until it succeeds; failures are counted, the first and
/// then one a minute logged.
async fn rebind(endpoint: &Endpoint) -> TcpListener {
    let mut failed = 0u64;
    loop {
        tokio::time::sleep(BIND_RETRY).await;
        let error = match bind(endpoint.listen).and_then(|l| Ok(TcpListener::from_std(l)?)) {
            Ok(l) => {
                tracing::info!(addr = %endpoint.listen, failed_retries = failed, "metrics endpoint bound on retry");
                return l;
            }
            Err(e) => format!("{e:#}"),
        };
        if failed.is_multiple_of(LOG_EVERY) {
            tracing::warn!(error = %error, failed_retries = failed + 1, "metrics endpoint still unavailable");
        }
        failed += 1;
        endpoint.record_bind_error(error);
    }
}

/// Accepts forever; a connection past the cap is closed at once, never waited on, so no client
/// can hold up the accept loop (or anything else).
async fn accept_loop(listener: TcpListener, endpoint: Arc<Endpoint>) {
    let permits = Arc::new(Semaphore::new(endpoint.max_connections));
    let mut errors = 0u64;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => match permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let endpoint = endpoint.clone();
                    tokio::spawn(async move {
                        connection(stream, endpoint).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    endpoint.metrics.endpoint.connections_rejected.inc();
                    drop(stream);
                }
            },
            Err(e) => {
                // Out of fds, for one: wait a little; log the first and one in a hundred.
                if errors.is_multiple_of(100) {
                    tracing::warn!(error = %e, errors = errors + 1, "metrics accept failed");
                }
                errors += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One request on one connection, within the timeouts.
async fn connection(stream: TcpStream, endpoint: Arc<Endpoint>) {
    let service = service_fn(move |req: Request<Incoming>| {
        let endpoint = endpoint.clone();
        async move { Ok::<_, Infallible>(answer(&req, &endpoint)) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
        Ok(Err(e)) => tracing::debug!(error = %e, "metrics connection"),
        Err(_) => tracing::debug!("metrics connection timed out"),
        Ok(Ok(())) => {}
    }
}

fn answer(req: &Request<Incoming>, endpoint: &Endpoint) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", b"only GET\n".to_vec());
    }
    match req.uri().path() {
        "/metrics" => {
            reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", endpoint.metrics.encode())
        }
        "/status" => {
            let mut s = endpoint.status.lock().map(|s| s.clone()).unwrap_or_default();
            s.endpoint = endpoint.health();
            reply(StatusCode::OK, "application/json", serde_json::to_vec_pretty(&s).unwrap_or_default())
        }
        "/" => reply(StatusCode::OK, "text/plain", b"aiwatch: see /metrics and /status\n".to_vec()),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
    }
}

fn reply(code: StatusCode, ctype: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(ctype));
    if code == StatusCode::METHOD_NOT_ALLOWED {
        r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET"));
    }
    r
}

#[cfg(test)]
mod tests;
