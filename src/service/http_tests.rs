//! The HTTP endpoint's limits and HEAD, against the real server on a loopback port.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The endpoint on a loopback port, served until the returned token is cancelled.
async fn endpoint() -> (SocketAddr, CancellationToken) {
    let listener = bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, router(Metrics::new()), None, stop.clone()));
    (addr, stop)
}

/// Sends `request` (which asks to close) and reads the whole answer.
async fn ask(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let (head, _) = answer.split_once("\r\n\r\n")?;
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn content_length(answer: &str) -> usize {
    header(answer, "content-length")
        .and_then(|v| v.parse().ok())
        .expect("Content-Length")
}

#[tokio::test]
async fn head_gets_the_same_headers_but_no_body() {
    let (addr, stop) = endpoint().await;
    for path in ["/metrics", "/healthz"] {
        let get = ask(
            addr,
            format!("GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        let head = ask(
            addr,
            format!("HEAD {path} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        // A fresh registry has no aggregator heartbeat: /healthz answers 503, with a body.
        assert_eq!(get.lines().next(), head.lines().next());
        assert_eq!(header(&head, "content-type"), header(&get, "content-type"));
        assert!(content_length(&head) > 20, "{head}");
        assert!(
            head.ends_with("\r\n\r\n"),
            "HEAD answer has a body: {head:?}"
        );
        let (_, body) = get.split_once("\r\n\r\n").expect("head end");
        assert_eq!(body.len(), content_length(&get));
    }
    let get = ask(addr, b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(
        header(&get, "content-type"),
        Some(crate::service::metrics::CONTENT_TYPE)
    );
    stop.cancel();
}

#[tokio::test]
async fn other_methods_get_405_with_allow_and_big_heads_431() {
    let (addr, stop) = endpoint().await;
    let post = ask(
        addr,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let allow = header(&post, "allow").expect("Allow");
    assert!(allow.contains("GET") && allow.contains("HEAD"), "{post}");
    let mut big = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    big.extend(vec![b'a'; MAX_HEAD_BYTES]);
    big.extend(b"\r\n\r\n");
    let answer = ask(addr, &big).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let missing = ask(addr, b"GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    stop.cancel();
}

#[tokio::test]
async fn a_client_silent_past_the_header_timeout_is_dropped() {
    let (addr, stop) = endpoint().await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\n")
        .await
        .expect("send");
    let mut out = Vec::new();
    let read = tokio::time::timeout(HEADER_READ_TIMEOUT * 2, s.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "connection still open after {HEADER_READ_TIMEOUT:?}"
    );
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains(" 200 "), "{text}");
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
    let waiting = tokio::spawn(ask(
        addr,
        b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
    ));
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

#[tokio::test]
async fn shutdown_closes_a_keep_alive_connection() {
    let (addr, stop) = endpoint().await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /nope HTTP/1.1\r\n\r\n")
        .await
        .expect("send");
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.expect("answer");
    assert!(buf[..n].starts_with(b"HTTP/1.1 404"));
    stop.cancel();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "keep-alive connection outlived shutdown");
}

#[test]
fn the_page_is_small_and_self_contained() {
    assert!(
        STATUS_PAGE.len() <= 100 * 1024,
        "{} bytes",
        STATUS_PAGE.len()
    );
    for outside in ["http://", "https://", "//cdn", "<link", "src=\""] {
        assert!(!STATUS_PAGE.contains(outside), "page loads {outside}");
    }
    assert!(STATUS_PAGE.contains("api/v1/status"));
}

#[tokio::test]
async fn the_page_is_served_as_html() {
    let (addr, stop) = endpoint().await;
    let page = ask(addr, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert_eq!(
        header(&page, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        header(&page, "content-security-policy").is_some_and(|c| c.contains("default-src 'none'"))
    );
    assert!(page.ends_with("</html>\n"));
    stop.cancel();
}
