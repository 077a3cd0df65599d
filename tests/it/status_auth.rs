//! Access to the HTTP endpoint: a listen address beyond loopback without `[metrics]
//! token_file` is a config error naming file, line and key (`validate` and `run` alike, before
//! anything binds); with a token every route answers 401 unless the request carries it
//! (Bearer, or HTTP Basic with it as password); the token never appears in the log (captured
//! at TRACE), nor in what the endpoint serves. Tests bind to 127.0.0.1 only: the token applies
//! to any address it is configured for.

use crate::support;

use std::time::Duration;

use support::citysensed::{command, output_within, Citysensed};
use support::config::Config;
use support::{free_port, http, wait_until};

const TOKEN: &str = "tok-8f1c2e9a77d04b65";

fn config(listen: &str, token_file: Option<&str>) -> String {
    let mut c = Config::new("gw-auth")
        .window(1)
        .simulator(1, 0, 200)
        .metrics(listen)
        .assume_clock_synced()
        .section("[output]\napi = \"stdout\"");
    if let Some(f) = token_file {
        c = c.metrics_line(&format!("token_file = \"{f}\""));
    }
    c.to_toml()
}

#[test]
fn beyond_loopback_without_a_token_is_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config("0.0.0.0:9273", None)).expect("write");
    let text = std::fs::read_to_string(&path).expect("read");
    let line = 1 + text
        .lines()
        .position(|l| l.starts_with("listen"))
        .expect("listen line");
    let want = format!("{}:{line}: key `metrics.listen`", path.display());
    for cmd in ["validate", "run"] {
        let out = output_within(
            command().args([cmd, "-c"]).arg(&path),
            Duration::from_secs(60),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(
            err.contains(&want) && err.contains("token_file"),
            "{cmd}: {err}"
        );
    }
    // With a token file the same address is accepted (validate binds nothing).
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).expect("token");
    let token = dir.path().join("token").display().to_string();
    std::fs::write(&path, config("0.0.0.0:9273", Some(&token))).expect("write");
    let out = output_within(
        command().args(["validate", "-c"]).arg(&path),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_unauthenticated_requests_get_401_and_the_token_is_never_logged() {
    let dir = tempfile::tempdir().expect("dir");
    let token_path = dir.path().join("status-token");
    std::fs::write(&token_path, format!("{TOKEN}\n")).expect("token");
    let port = free_port();
    let cfg = config(
        &format!("127.0.0.1:{port}"),
        Some(&token_path.display().to_string()),
    );
    let mut d = Citysensed::spawn(&cfg, &dir.path().join("d"), "trace");
    let base = format!("http://127.0.0.1:{port}");
    let health = format!("{base}/healthz");
    wait_until(Duration::from_secs(20), "endpoint up", || {
        let url = health.clone();
        async move { http().get(url).send().await.is_ok() }
    })
    .await;
    for path in ["/", "/api/v1/status", "/metrics", "/healthz", "/nope"] {
        let url = format!("{base}{path}");
        let none = http().get(&url).send().await.expect("GET");
        assert_eq!(none.status(), 401, "{path} without a token");
        let challenge = none
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap_or(""));
        assert_eq!(challenge, Some("Basic realm=\"citysense\""), "{path}");
        let wrong = http()
            .get(&url)
            .bearer_auth("tok-8f1c2e9a77d04b6")
            .send()
            .await;
        assert_eq!(
            wrong.expect("GET").status(),
            401,
            "{path} with a wrong token"
        );
        let wrong = http()
            .get(&url)
            .basic_auth("tech", Some("nope"))
            .send()
            .await;
        assert_eq!(
            wrong.expect("GET").status(),
            401,
            "{path} with a wrong password"
        );
    }
    let ok = http()
        .get(format!("{base}/api/v1/status"))
        .bearer_auth(TOKEN)
        .send()
        .await;
    let ok = ok.expect("GET");
    assert_eq!(ok.status(), 200);
    let status = ok.text().await.expect("body");
    assert!(status.contains("\"gateway\":\"gw-auth\""), "{status}");
    let page = http()
        .get(format!("{base}/"))
        .basic_auth("tech", Some(TOKEN))
        .send()
        .await;
    let page = page.expect("GET");
    assert_eq!(page.status(), 200);
    let metrics = http()
        .get(format!("{base}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await;
    let metrics = metrics.expect("GET").text().await.expect("body");
    let log = d.terminate(Duration::from_secs(15)).await;
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "captured below INFO"
    );
    for (place, text) in [("log", &log), ("status", &status), ("metrics", &metrics)] {
        assert!(!text.contains(TOKEN), "the token is in the {place}");
        assert!(
            !text.contains("tok-8f1c2e9a"),
            "part of the token is in the {place}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_the_endpoint_speaks_https_only() {
    let dir = tempfile::tempdir().expect("dir");
    support::certs::make_certs(dir.path());
    let token_path = dir.path().join("status-token");
    std::fs::write(&token_path, format!("{TOKEN}\n")).expect("token");
    let port = free_port();
    let cfg = Config::new("gw-tls")
        .window(1)
        .simulator(1, 0, 200)
        .metrics(&format!("127.0.0.1:{port}"))
        .metrics_line(&format!("token_file = \"{}\"", token_path.display()))
        .assume_clock_synced()
        .section("[output]\napi = \"stdout\"")
        .section(&format!(
            "[metrics.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"",
            dir.path().join("server.pem").display(),
            dir.path().join("server.key").display()
        ))
        .to_toml();
    let mut d = Citysensed::spawn(&cfg, &dir.path().join("d"), "info");
    let ca = std::fs::read(dir.path().join("ca.pem")).expect("ca");
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let url = format!("https://127.0.0.1:{port}/api/v1/status");
    wait_until(Duration::from_secs(20), "HTTPS endpoint up", || {
        let (client, url) = (client.clone(), url.clone());
        async move { client.get(url).send().await.is_ok() }
    })
    .await;
    let none = client.get(&url).send().await.expect("GET");
    assert_eq!(none.status(), 401);
    let ok = client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET");
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.expect("body").contains("gw-tls"));
    // Plain HTTP on the TLS port gets no answer.
    let plain = http()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status() != 200));
    let log = d.terminate(Duration::from_secs(15)).await;
    assert!(!log.contains(TOKEN) && !log.contains("ERROR"), "{log}");
}
