//! The daemon's HTTP endpoint: axum's router for `/` (the status page, `status_page.html`),
//! `/metrics` (OpenMetrics text), `/healthz` and `/api/v1/status` (JSON, [`super::status`]),
//! served over HTTP/1.1 by hyper (the hyper reqwest already links; BENCHMARKS.md has the
//! binary-size cost). The accept loop is ours so the limits are explicit: at most
//! [`MAX_CONNECTIONS`] connections at once (a permit is taken before `accept`, so a flood
//! waits in the kernel's backlog instead of spawning tasks), a request head of at most
//! [`MAX_HEAD_BYTES`] (longer: 431) read within [`HEADER_READ_TIMEOUT`], and a connection
//! closed after [`CONNECTION_LIFETIME`] whatever its client does. HEAD gets the GET answer's
//! headers, `Content-Length` included, without its body; other methods get 405 with `Allow`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::status::StatusState;
use super::STALE_AFTER_SECS;
use crate::reading::{now_ns, NANOS_PER_SEC};

/// Binds `addr`; the caller spawns [`serve`] with the listener.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let addr: SocketAddr = addr.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
    })?;
    TcpListener::bind(addr).await
}

/// Connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 16;
/// Longest request head (request line and headers); a longer one is answered 431. hyper's
/// smallest read buffer.
pub const MAX_HEAD_BYTES: usize = 8192;
/// How long a client may take to send a request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection (keep-alive included) is served; then it is closed after the
/// answer in flight, so a slow or idle client cannot hold a permit for long.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// How long an answer in flight may take once a connection is being closed.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The routes, on `metrics` alone (no sensors, no sources): the endpoint's own tests.
pub fn router(metrics: Arc<Metrics>) -> Router {
    router_with(StatusState::bare(metrics), None)
}

/// The daemon's routes; with a `token`, every request must carry it ([`super::auth`]).
pub fn router_with(state: StatusState, token: Option<super::auth::Token>) -> Router {
    let routes = routes(state);
    match token {
        Some(t) => routes.layer(axum::middleware::from_fn_with_state(
            t,
            super::auth::require,
        )),
        None => routes,
    }
}

fn routes(state: StatusState) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(render_health))
        .route("/", get(render_page))
        .route("/api/v1/status", get(render_status))
        .fallback(not_found)
        .with_state(state)
}

async fn render_metrics(State(s): State<StatusState>) -> Response {
    let text = s.metrics.render();
    ([(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], text).into_response()
}

/// The status page: one file, inline CSS and JS, no build step, nothing fetched but
/// `/api/v1/status` (its content security policy says so).
pub const STATUS_PAGE: &str = include_str!("status_page.html");

async fn render_page() -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-cache"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    (headers, STATUS_PAGE).into_response()
}

async fn render_status(State(s): State<StatusState>) -> Response {
    let body = super::status::document(&s).to_string();
    let headers = [
        (header::CONTENT_TYPE, "application/json"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (headers, body).into_response()
}

async fn render_health(State(s): State<StatusState>) -> Response {
    let (status, body) = health(&s.metrics);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    (status, body).into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found: try /metrics, /healthz or /api/v1/status\n",
    )
        .into_response()
}

/// Serves `app` on `listener` until `shutdown`, over TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return, // never closed
            },
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP endpoint accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (app, shutdown) = (app.clone(), shutdown.clone());
        match tls.clone() {
            None => tokio::spawn(connection(stream, app, permit, shutdown)),
            Some(acceptor) => tokio::spawn(async move {
                // The handshake counts as part of the request head: same time limit.
                let accepted = tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream));
                if let Ok(Ok(tls_stream)) = accepted.await {
                    connection(tls_stream, app, permit, shutdown).await;
                }
            }),
        };
    }
}

/// Serves one connection within its lifetime; the permit is freed when it closes.
async fn connection<S>(
    stream: S,
    app: Router,
    permit: OwnedSemaphorePermit,
    shutdown: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let closing = tokio::select! {
        _ = conn.as_mut() => false,
        _ = tokio::time::sleep(CONNECTION_LIFETIME) => true,
        _ = shutdown.cancelled() => true,
    };
    if closing {
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
    }
    drop(permit);
}

/// 200 while the aggregator loop is alive; the body says what else needs attention.
pub fn health(m: &Metrics) -> (u16, String) {
    let age = now_ns() / NANOS_PER_SEC - m.pipeline.aggregator_heartbeat.load(Relaxed);
    let uplink = uplink_state(&m.sink);
    let mut body = format!(
        "aggregator: heartbeat {age}s ago\nuplink: {uplink}\nspool: {} points, {} bytes\n",
        m.sink.spool_points.load(Relaxed),
        m.sink.spool_bytes.load(Relaxed)
    );
    // The first output is `uplink:` above; the others each get their own line.
    for (name, o) in m.sink.other_outputs() {
        body.push_str(&format!("uplink {name}: {}\n", uplink_state(&o)));
    }
    body.push_str(&clock_line(&m.pipeline.clock));
    if age > STALE_AFTER_SECS {
        (503, format!("unhealthy\n{body}"))
    } else {
        (200, format!("ok\n{body}"))
    }
}

/// One output's uplink state for `/healthz`.
fn uplink_state(s: &crate::sinks::SinkMetrics) -> &'static str {
    match s.uplink_up.load(Relaxed) {
        1 => "up",
        _ if s.uplink_requests_ok.load(Relaxed) + s.uplink_requests_failed.load(Relaxed) == 0 => {
            "idle"
        }
        _ => "down (data kept in spool)",
    }
}

/// The clock's line of `/healthz`: an unsynchronised clock is reported, not unhealthy (it is
/// normal for a while after boot).
fn clock_line(c: &crate::clock::ClockMetrics) -> String {
    let held = c.held_readings.load(Relaxed);
    match (c.synchronized.load(Relaxed), c.trusted.load(Relaxed)) {
        (1, _) => format!("clock: synchronized, {} steps\n", c.steps.load(Relaxed)),
        (_, 1) => "clock: lost synchronization (free-running, windows still emitted)\n".into(),
        _ => format!("clock: not synchronized, holding {held} readings\n"),
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
