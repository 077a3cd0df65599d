//! A minimal HTTP proxy on 127.0.0.1 for the proxy tests: it tunnels a `CONNECT` to the
//! `host:port` a client names (127.0.0.1 only), forwards a plain-HTTP request in absolute form
//! (`POST http://127.0.0.1:port/...`) to that host, and records each connection's first
//! request line and `Proxy-Authorization`, so a test can prove the daemon's requests went
//! through it. Anything else is answered 501 and recorded too.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// One request the proxy saw: its first line and its `Proxy-Authorization` value.
#[derive(Debug, Clone)]
pub struct Seen {
    pub request_line: String,
    pub proxy_authorization: Option<String>,
}

pub struct Tunnel {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Tunnel {
    pub async fn start() -> Tunnel {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, log.clone()));
            }
        });
        Tunnel { port, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut client: TcpStream, log: Arc<Mutex<Vec<Seen>>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let end = loop {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 16 << 10 {
            return;
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let proxy_authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, v)| v.trim().to_string());
    log.lock().unwrap_or_else(|e| e.into_inner()).push(Seen {
        request_line: request_line.clone(),
        proxy_authorization,
    });
    let words: Vec<&str> = request_line.split(' ').collect();
    let (target, connect) = match words[..] {
        ["CONNECT", target, _] if target.starts_with("127.0.0.1:") => (target.to_string(), true),
        [_, uri, _] if uri.starts_with("http://127.0.0.1:") => {
            let host = uri.trim_start_matches("http://").split('/').next();
            (host.unwrap_or_default().to_string(), false)
        }
        _ => {
            let _ = client
                .write_all(b"HTTP/1.1 501 Not Implemented\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        }
    };
    let Ok(mut upstream) = TcpStream::connect(&target).await else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    // A tunnel answers the CONNECT and passes on what follows it; a forwarded request goes on
    // whole (servers take the absolute form), and so do later ones on the same connection.
    let first = match connect {
        true => {
            let ok = client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await;
            if ok.is_err() {
                return;
            }
            &head[end..]
        }
        false => &head[..],
    };
    if upstream.write_all(first).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
