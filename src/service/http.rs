//! A deliberately small HTTP/1.1 endpoint for `/metrics` (OpenMetrics text) and `/healthz`.
//! It serves a handful of scrapes a minute on loopback; a full HTTP server crate would cost
//! more binary size on the Pi than this whole file. Requests are read with a size and time
//! limit so a stuck client cannot hold a task forever.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::STALE_AFTER_SECS;
use crate::reading::{now_ns, NANOS_PER_SEC};

/// Binds `addr`; the caller spawns [`serve`] with the listener.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let addr: SocketAddr = addr.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
    })?;
    TcpListener::bind(addr).await
}

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), handle(stream, &metrics)).await;
        });
    }
}

async fn handle(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = RequestHead::new();
    let route = loop {
        match head.state() {
            HeadState::Complete(route) => break route,
            HeadState::TooLarge => {
                return respond(&mut stream, 431, "text/plain", "request header too large\n").await
            }
            HeadState::Incomplete => {}
        }
        let n = stream.read(head.space()).await?;
        if n == 0 {
            return Ok(());
        }
        head.filled(n);
    };
    match route {
        Route::MethodNotAllowed => {
            respond(&mut stream, 405, "text/plain", "method not allowed\n").await
        }
        Route::Metrics => {
            let body = metrics.render();
            respond(&mut stream, 200, super::metrics::CONTENT_TYPE, &body).await
        }
        Route::Health => {
            let (status, body) = health(metrics);
            respond(&mut stream, status, "text/plain", &body).await
        }
        Route::NotFound => {
            respond(
                &mut stream,
                404,
                "text/plain",
                "not found: try /metrics or /healthz\n",
            )
            .await
        }
    }
}

/// Longest request head read; a longer one is answered 431.
pub const MAX_HEAD_BYTES: usize = 2048;

/// What a request head asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Metrics,
    Health,
    NotFound,
    MethodNotAllowed,
}

/// Where reading a request head stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadState {
    /// Read more (into [`RequestHead::space`]).
    Incomplete,
    /// The buffer is full and holds no blank line.
    TooLarge,
    Complete(Route),
}

/// The request head being read: the socket-free half of the endpoint, so it can be tested
/// and fuzzed over arbitrary bytes and read splits.
pub struct RequestHead {
    buf: [u8; MAX_HEAD_BYTES],
    len: usize,
}

impl Default for RequestHead {
    fn default() -> Self {
        RequestHead::new()
    }
}

impl RequestHead {
    pub fn new() -> RequestHead {
        RequestHead {
            buf: [0; MAX_HEAD_BYTES],
            len: 0,
        }
    }

    /// The free part of the buffer, for the next read (empty once full).
    pub fn space(&mut self) -> &mut [u8] {
        &mut self.buf[self.len..]
    }

    /// Records that a read put `n` bytes into [`RequestHead::space`] (clamped to its size).
    pub fn filled(&mut self, n: usize) {
        self.len = (self.len + n).min(MAX_HEAD_BYTES);
    }

    pub fn state(&self) -> HeadState {
        let read = &self.buf[..self.len];
        // We never need a body: the head ends at the first blank line.
        if read.windows(4).any(|w| w == b"\r\n\r\n") {
            HeadState::Complete(route(read))
        } else if self.len == MAX_HEAD_BYTES {
            HeadState::TooLarge
        } else {
            HeadState::Incomplete
        }
    }
}

/// Routes a request head by its method and path (query string ignored); any bytes.
pub fn route(head: &[u8]) -> Route {
    let head = String::from_utf8_lossy(head);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return Route::MethodNotAllowed;
    }
    match path.split('?').next().unwrap_or("") {
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Health,
        _ => Route::NotFound,
    }
}

/// 200 while the aggregator loop is alive; the body says what else needs attention.
pub fn health(m: &Metrics) -> (u16, String) {
    let age = now_ns() / NANOS_PER_SEC - m.pipeline.aggregator_heartbeat.load(Relaxed);
    let uplink = match m.sink.uplink_up.load(Relaxed) {
        1 => "up",
        _ if m.sink.uplink_requests_ok.load(Relaxed)
            + m.sink.uplink_requests_failed.load(Relaxed)
            == 0 =>
        {
            "idle"
        }
        _ => "down (data kept in spool)",
    };
    let mut body = format!(
        "aggregator: heartbeat {age}s ago\nuplink: {uplink}\nspool: {} points, {} bytes\n",
        m.sink.spool_points.load(Relaxed),
        m.sink.spool_bytes.load(Relaxed)
    );
    body.push_str(&clock_line(&m.pipeline.clock));
    if age > STALE_AFTER_SECS {
        (503, format!("unhealthy\n{body}"))
    } else {
        (200, format!("ok\n{body}"))
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

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(chunks: &[&[u8]]) -> HeadState {
        let mut head = RequestHead::new();
        for c in chunks {
            let space = head.space();
            let n = c.len().min(space.len());
            space[..n].copy_from_slice(&c[..n]);
            head.filled(n);
        }
        head.state()
    }

    #[test]
    fn routes_split_heads() {
        let got = read_all(&[b"GET /metr", b"ics?x=1 HTTP/1.1\r\n", b"\r\n"]);
        assert_eq!(got, HeadState::Complete(Route::Metrics));
        let got = read_all(&[b"HEAD /healthz HTTP/1.0\r\n\r\n"]);
        assert_eq!(got, HeadState::Complete(Route::Health));
        assert_eq!(read_all(&[b"GET / HTTP/1.1\r\n"]), HeadState::Incomplete);
    }

    #[test]
    fn odd_heads_get_an_answer() {
        let got = read_all(&[b"POST /metrics HTTP/1.1\r\n\r\n"]);
        assert_eq!(got, HeadState::Complete(Route::MethodNotAllowed));
        let got = read_all(&[b"GET \xff\xfe/\xe2\x82 HTTP/1.1\r\n\r\n"]);
        assert_eq!(got, HeadState::Complete(Route::NotFound));
        assert_eq!(read_all(&[&[b'a'; 4096]]), HeadState::TooLarge);
        assert_eq!(route(b"\r\n\r\n"), Route::MethodNotAllowed);
    }
}
