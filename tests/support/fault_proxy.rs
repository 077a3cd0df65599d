//! A faulty HTTP front for a real store: each write request is either answered with a fault
//! the test chooses (503 with Retry-After, 500, a 302 to a "captive portal" that answers a GET
//! with 200, 413 for large bodies, 400 for a body holding a line the test marks as bad) or
//! forwarded unchanged to the real store behind it, whose answer is passed back. A request the
//! proxy refuses never reaches the store, so what the store holds is exactly what the daemon
//! delivered through a 2xx.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward to the store.
    Pass,
    /// Answer with this status (and `Retry-After: 1` for 429/503).
    Status(u16),
    /// `302 Found` to `/portal`, which answers a GET with 200 and an HTML page.
    Redirect,
}

/// `decide(index, body)` for write request number `index` (from 0); `body` is gunzipped.
pub type Decide = dyn Fn(usize, &str) -> Fault + Send + Sync;

/// Counts of what the proxy did, by kind.
#[derive(Debug, Default)]
pub struct ProxyCounts {
    pub passed: AtomicUsize,
    pub faulted: AtomicUsize,
    pub portal_gets: AtomicUsize,
}

pub struct FaultProxy {
    pub port: u16,
    pub counts: Arc<ProxyCounts>,
    /// While false, every write is forwarded (faults off).
    pub faults_on: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: String, decide: Box<Decide>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let counts = Arc::new(ProxyCounts::default());
        let faults_on = Arc::new(AtomicBool::new(true));
        let shared = Arc::new(Shared {
            upstream,
            decide: Arc::from(decide),
            index: AtomicUsize::new(0),
            counts: counts.clone(),
            faults_on: faults_on.clone(),
            client: super::http(),
        });
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, shared.clone()));
            }
        });
        FaultProxy {
            port,
            counts,
            faults_on,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    upstream: String,
    decide: Arc<Decide>,
    index: AtomicUsize,
    counts: Arc<ProxyCounts>,
    faults_on: Arc<AtomicBool>,
    client: reqwest::Client,
}

/// One parsed request.
struct Request {
    method: String,
    target: String,
    gzip: bool,
    raw: Vec<u8>,
}

async fn read_request(conn: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut first = String::new();
    if conn.read_line(&mut first).await.ok()? == 0 {
        return None;
    }
    let mut parts = first.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let (mut len, mut gzip) = (0usize, false);
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("content-encoding:") && lower.contains("gzip") {
            gzip = true;
        }
    }
    let mut raw = vec![0u8; len];
    conn.read_exact(&mut raw).await.ok()?;
    Some(Request {
        method,
        target,
        gzip,
        raw,
    })
}

async fn serve(conn: TcpStream, shared: Arc<Shared>) {
    let mut conn = BufReader::new(conn);
    while let Some(req) = read_request(&mut conn).await {
        let (status, extra, body) = answer(&shared, req).await;
        let mut out = format!(
            "HTTP/1.1 {status} Proxy\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n{extra}\r\n",
            body.len()
        );
        out.push_str(&body);
        if conn.get_mut().write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// (status, extra header lines, body) for one request.
async fn answer(shared: &Shared, req: Request) -> (u16, String, String) {
    if req.method == "GET" {
        shared.counts.portal_gets.fetch_add(1, Relaxed);
        return (
            200,
            String::new(),
            "<html>welcome to the portal</html>".into(),
        );
    }
    let body = if req.gzip {
        let mut s = String::new();
        let _ =
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&req.raw[..]), &mut s);
        s
    } else {
        String::from_utf8_lossy(&req.raw).into_owned()
    };
    let index = shared.index.fetch_add(1, Relaxed);
    let fault = if shared.faults_on.load(Relaxed) {
        (shared.decide)(index, &body)
    } else {
        Fault::Pass
    };
    match fault {
        Fault::Pass => {
            shared.counts.passed.fetch_add(1, Relaxed);
            forward(shared, &req).await
        }
        Fault::Status(s) => {
            shared.counts.faulted.fetch_add(1, Relaxed);
            let extra = if s == 429 || s == 503 {
                "Retry-After: 1\r\n".to_string()
            } else {
                String::new()
            };
            (s, extra, "proxy fault".into())
        }
        Fault::Redirect => {
            shared.counts.faulted.fetch_add(1, Relaxed);
            (302, "Location: /portal\r\n".into(), String::new())
        }
    }
}

async fn forward(shared: &Shared, req: &Request) -> (u16, String, String) {
    let mut rb = shared
        .client
        .post(format!("{}{}", shared.upstream, req.target))
        .body(req.raw.clone());
    if req.gzip {
        rb = rb.header("Content-Encoding", "gzip");
    }
    match rb.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, String::new(), r.text().await.unwrap_or_default())
        }
        Err(e) => (502, String::new(), format!("upstream: {e}")),
    }
}
