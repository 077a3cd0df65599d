//! A deliberately small HTTP/1.1 endpoint for `/metrics` (OpenMetrics text) and `/healthz`.
//! It serves a handful of scrapes a minute on loopback; a full HTTP server crate would cost
//! more binary size on the Pi than this whole file. Requests are read with a size and time
//! limit so a stuck client cannot hold a task forever, and at most [`MAX_CONNECTIONS`] are
//! served at once (a permit is taken before `accept`, as mini-redis does, so a flood of
//! connections waits in the kernel's backlog instead of spawning tasks). HEAD gets the GET
//! answer's head without its body.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
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

/// Connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 16;
/// How long one connection may take, from accept to the answer sent.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return, // never closed
            },
        };
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
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, handle(stream, &metrics)).await;
            drop(permit);
        });
    }
}

async fn handle(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = RequestHead::new();
    let route = loop {
        match head.state() {
            HeadState::Complete(route) => break route,
            HeadState::TooLarge => {
                let a = Answer::text(431, "request header too large\n");
                return a.send(&mut stream, true).await;
            }
            HeadState::Incomplete => {}
        }
        let n = stream.read(head.space()).await?;
        if n == 0 {
            return Ok(());
        }
        head.filled(n);
    };
    let answer = match route {
        Route::MethodNotAllowed => Answer::text(405, "method not allowed\n"),
        Route::Metrics => Answer {
            status: 200,
            ctype: super::metrics::CONTENT_TYPE,
            body: metrics.render(),
        },
        Route::Health => {
            let (status, body) = health(metrics);
            Answer {
                status,
                ctype: "text/plain",
                body,
            }
        }
        Route::NotFound => Answer::text(404, "not found: try /metrics or /healthz\n"),
    };
    answer.send(&mut stream, !head.is_head()).await
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

    /// Whether the request is a HEAD (its answer carries no body).
    pub fn is_head(&self) -> bool {
        self.buf[..self.len].starts_with(b"HEAD ")
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

/// A response to send.
struct Answer {
    status: u16,
    ctype: &'static str,
    body: String,
}

impl Answer {
    fn text(status: u16, body: &str) -> Answer {
        Answer {
            status,
            ctype: "text/plain",
            body: body.to_string(),
        }
    }

    /// Writes the answer; `with_body` is false for HEAD, which still gets the body's length.
    async fn send(&self, stream: &mut TcpStream, with_body: bool) -> std::io::Result<()> {
        let reason = match self.status {
            200 => "OK",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            _ => "Service Unavailable",
        };
        let allow = if self.status == 405 {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        };
        let head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
            self.status,
            self.ctype,
            self.body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        if with_body {
            stream.write_all(self.body.as_bytes()).await?;
        }
        stream.shutdown().await
    }
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

    /// The endpoint on a loopback port, served until the returned token is cancelled.
    async fn endpoint() -> (SocketAddr, CancellationToken) {
        let listener = bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, Metrics::new(), stop.clone()));
        (addr, stop)
    }

    /// Sends `request` and reads the whole answer (the server closes after one).
    async fn ask(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request).await.expect("send");
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.expect("read");
        String::from_utf8_lossy(&out).into_owned()
    }

    fn content_length(answer: &str) -> usize {
        answer
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("Content-Length")
    }

    #[tokio::test]
    async fn head_gets_the_length_but_no_body() {
        let (addr, stop) = endpoint().await;
        let get = ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        let head = ask(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(get.starts_with("HTTP/1.1 200"), "{get}");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(content_length(&head) > 100);
        assert!(
            head.ends_with("\r\n\r\n"),
            "HEAD answer has a body: {head:?}"
        );
        let (_, body) = get.split_once("\r\n\r\n").expect("head end");
        assert_eq!(body.len(), content_length(&get));
        stop.cancel();
    }

    #[tokio::test]
    async fn other_methods_get_405_with_allow_and_big_heads_431() {
        let (addr, stop) = endpoint().await;
        let post = ask(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
        let mut big = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
        big.extend(vec![b'a'; MAX_HEAD_BYTES]);
        let answer = ask(addr, &big).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        let missing = ask(addr, b"GET /nope HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        stop.cancel();
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_for_a_free_one() {
        let (addr, stop) = endpoint().await;
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(TcpStream::connect(addr).await.expect("connect"));
        }
        // Let the server accept them all: each now holds a permit, sending nothing.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let waiting = tokio::spawn(ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !waiting.is_finished(),
            "served beyond {MAX_CONNECTIONS} connections"
        );
        drop(idle.pop());
        let answer = tokio::time::timeout(Duration::from_secs(3), waiting)
            .await
            .expect("served once a connection closed")
            .expect("task");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        stop.cancel();
    }
}
