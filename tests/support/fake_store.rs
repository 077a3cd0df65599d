//! A tiny fake HTTP write endpoint on 127.0.0.1 for the fault cases no real store produces on
//! demand (429 with Retry-After, 503, 400, 401, 413, redirects). It answers what a test's
//! `respond` closure says, per request, and records every request's arrival time, method,
//! path, `Authorization`, answer and (gunzipped) body.
//! HTTP/1.1 with keep-alive and Content-Length bodies only: what reqwest sends.

use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One request as the fake store saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    pub method: String,
    /// Path and query, as in the request line.
    pub path: String,
    pub authorization: Option<String>,
    /// The answer given (0 while `respond` decides it).
    pub status: u16,
    pub body: String,
}

/// An answer: status, an optional `Retry-After` value and an optional `Location`.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<u32>,
    pub location: Option<String>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            retry_after: None,
            location: None,
        }
    }

    /// A redirect to `location`.
    pub fn redirect(status: u16, location: &str) -> Reply {
        Reply {
            location: Some(location.to_string()),
            ..Reply::status(status)
        }
    }
}

/// `respond(index, request)`: the answer to the request number `index` (from 0).
pub type Respond = dyn Fn(usize, &Request) -> Reply + Send + Sync;

pub struct FakeStore {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeStore {
    pub async fn start(respond: Box<Respond>) -> FakeStore {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let respond: Arc<Respond> = Arc::from(respond);
        let log = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, respond.clone(), log.clone()));
            }
        });
        FakeStore {
            port,
            requests,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for FakeStore {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(conn: TcpStream, respond: Arc<Respond>, log: Arc<Mutex<Vec<Request>>>) {
    let mut conn = BufReader::new(conn);
    loop {
        let mut head = String::new();
        let mut len = 0usize;
        let mut gzip = false;
        let mut authorization = None;
        loop {
            let mut line = String::new();
            match conn.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
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
            if lower.starts_with("authorization:") {
                authorization = line.split_once(':').map(|(_, v)| v.trim().to_string());
            }
            head.push_str(&line);
        }
        let mut raw = vec![0u8; len];
        if conn.read_exact(&mut raw).await.is_err() {
            return;
        }
        let body = if gzip {
            let mut s = String::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_string(&mut s)
                .expect("gzip body");
            s
        } else {
            String::from_utf8(raw).expect("utf-8 body")
        };
        let mut words = head.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let mut request = Request {
            at: Instant::now(),
            method: method.to_string(),
            path: path.to_string(),
            authorization,
            status: 0,
            body,
        };
        let reply = {
            let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
            let reply = respond(l.len(), &request);
            request.status = reply.status;
            l.push(request);
            reply
        };
        let text = if reply.status == 204 {
            ""
        } else {
            "fake store says no"
        };
        let mut out = format!(
            "HTTP/1.1 {} Fake\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n",
            reply.status,
            text.len()
        );
        if let Some(s) = reply.retry_after {
            out.push_str(&format!("Retry-After: {s}\r\n"));
        }
        if let Some(l) = &reply.location {
            out.push_str(&format!("Location: {l}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(text);
        if conn.get_mut().write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}
