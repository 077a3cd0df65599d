//! What the log says when the store's TLS front refuses the gateway: one ERROR naming the
//! reason and the keys to check, and, at TRACE, no byte of the client key and no proxy
//! password anywhere in the log.

use crate::support;

use std::time::Duration;

use citysense::sinks::connect::TlsFailure;
use support::certs::{make_certs, make_client_cert};
use support::config::Config;
use support::nginx::{Nginx, TlsFront};
use support::tunnel::Tunnel;
use support::{free_port, logs, wait_until, Daemon};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_certificate_is_logged_without_key_or_proxy_password() {
    logs::capture();
    let certs = tempfile::tempdir().unwrap();
    let p = certs.path();
    make_certs(p);
    let front = TlsFront {
        cert: &p.join("server.pem"),
        key: &p.join("server.key"),
        client_ca: &p.join("ca.pem"),
    };
    // The refusal comes before nginx passes anything on: no store is needed behind it.
    let nginx = Nginx::start_mutual_tls(&front, free_port()).await;
    let other = tempfile::tempdir().unwrap();
    make_certs(other.path());
    make_client_cert(other.path(), "stranger");
    let proxy = Tunnel::start().await;
    let file = |dir: &std::path::Path, name: &str| dir.join(name).display().to_string();
    let config = Config::new("gw-tls-log")
        .window(1)
        .simulator(1, 0, 200)
        .output_v2(&nginx.url())
        .output_line("max_backoff_secs = 1")
        .output_line(&format!(
            "proxy = \"{}\"",
            proxy.url().replace("http://", "http://gw:pr0xy-s3cret@")
        ))
        .output_line("[output.tls]")
        .output_line(&format!("ca_file = \"{}\"", file(p, "ca.pem")))
        .output_line(&format!(
            "client_cert_file = \"{}\"",
            file(other.path(), "stranger.pem")
        ))
        .output_line(&format!(
            "client_key_file = \"{}\"",
            file(other.path(), "stranger.key")
        ))
        .no_health()
        .to_toml();
    let mut d = Daemon::start(&config);
    let m = d.metrics.clone();
    wait_until(
        Duration::from_secs(20),
        "a client certificate refusal",
        || {
            let m = m.clone();
            async move { m.sink.uplink.tls_failures(TlsFailure::ClientCertificate) >= 1 }
        },
    )
    .await;
    d.stop().await;
    assert!(!proxy.seen().is_empty(), "the proxy was not used");

    let log = logs::text();
    let refusal = log
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("reason=\"client_certificate\""))
        .unwrap_or_else(|| panic!("no refusal line in\n{log}"));
    assert!(
        refusal.contains("check output.tls.client_cert_file and client_key_file"),
        "{refusal}"
    );
    assert!(refusal.contains("The SSL certificate error"), "{refusal}");
    assert!(!log.contains("pr0xy-s3cret"), "proxy password in the log");
    let key = std::fs::read_to_string(other.path().join("stranger.key")).unwrap();
    for line in key.lines().filter(|l| !l.starts_with("-----")) {
        // Every base64 line of the key, and any 16-character piece of it.
        for piece in line.as_bytes().chunks(16).filter(|c| c.len() == 16) {
            let piece = std::str::from_utf8(piece).unwrap();
            assert!(!log.contains(piece), "key material {piece:?} in the log");
        }
    }
}
