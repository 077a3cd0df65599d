//! Mutual TLS to a store behind a real nginx (`ssl_verify_client on`) in front of a real
//! VictoriaMetrics, with certificates made by openssl: windows land through it with the
//! configured CA and client certificate; an unknown CA, a missing client certificate and one
//! from another CA are refused (counted by reason, nothing dead-lettered) and the data stays
//! in the spool until the config is fixed, then lands exactly once. Also: the store through a
//! CONNECT proxy with credentials, the proxy from the environment (`https_proxy`,
//! `http_proxy`) and what turns it off (`no_proxy`, `proxy = "none"`), and `validate` finding
//! the client key among the systemd credentials.

use crate::support;

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use citysense::sinks::connect::TlsFailure;
use citysense::sinks::DeadReason;
use support::certs::{make_certs, make_client_cert};
use support::citysensed::{command, output_within, Citysensed};
use support::config::Config;
use support::nginx::{Nginx, TlsFront};
use support::tunnel::Tunnel;
use support::{publish, wait_until, Daemon, Mosquitto, Victoria};
use tempfile::TempDir;

/// A CA with a server and a `gateway` client certificate, VictoriaMetrics, nginx in front of
/// it trusting client certificates of that CA, and a broker to feed the daemon.
struct Rig {
    certs: TempDir,
    vm: Victoria,
    nginx: Nginx,
    broker: Mosquitto,
}

impl Rig {
    async fn start() -> Rig {
        let certs = tempfile::tempdir().unwrap();
        let p = certs.path();
        make_certs(p);
        make_client_cert(p, "gateway");
        let vm = Victoria::start().await;
        let front = TlsFront {
            cert: &p.join("server.pem"),
            key: &p.join("server.key"),
            client_ca: &p.join("ca.pem"),
        };
        let nginx = Nginx::start_mutual_tls(&front, vm.port).await;
        let broker = Mosquitto::start().await;
        Rig {
            certs,
            vm,
            nginx,
            broker,
        }
    }

    fn path(&self, name: &str) -> String {
        self.certs.path().join(name).display().to_string()
    }

    /// The daemon's config: one MQTT subscription, v2 output through nginx with `tls` lines
    /// in `[output.tls]` and `extra` lines in `[output]`.
    fn config(&self, tls: &[(&str, String)], extra: &str) -> String {
        let mut c = Config::new("gw")
            .window(1)
            .stats(&["count"])
            .mqtt(self.broker.port, "cs-store-tls")
            .subscription("n/{sensor}/{quantity}", "plain")
            .output_v2(&self.nginx.url())
            .output_line("max_backoff_secs = 1")
            .output_line(extra)
            .output_line("[output.tls]")
            .assume_clock_synced()
            .no_health();
        for (k, v) in tls {
            c = c.output_line(&format!("{k} = \"{v}\""));
        }
        c.to_toml()
    }

    /// `[output.tls]` with the rig's CA and the `gateway` client certificate.
    fn good_tls(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ca_file", self.path("ca.pem")),
            ("client_cert_file", self.path("gateway.pem")),
            ("client_key_file", self.path("gateway.key")),
        ]
    }

    async fn publish(&self, n: usize) {
        let msgs: Vec<_> = (0..n)
            .map(|i| ("n/a/pm10".to_string(), i.to_string().into_bytes(), 1))
            .collect();
        publish(self.broker.port, &msgs).await;
    }

    /// Sum of `air_quality_pm10_count` in the store: readings delivered.
    async fn stored(&self) -> f64 {
        self.vm
            .export("{__name__=\"air_quality_pm10_count\"}")
            .await
            .iter()
            .flat_map(|s| s.values.iter())
            .sum()
    }

    async fn wait_stored(&self, n: f64) {
        wait_until(Duration::from_secs(20), "readings in the store", || async {
            self.stored().await == n
        })
        .await;
        // Nothing more arrives (no duplicate from a re-sent window would change a count
        // anyway, but a second copy of a reading would).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(self.stored().await, n, "nginx log:\n{}", self.nginx.log());
    }
}

async fn wait_tls_failure(d: &Daemon, failure: TlsFailure) {
    let m = d.metrics.clone();
    wait_until(Duration::from_secs(20), failure.label(), || {
        let m = m.clone();
        async move { m.sink.uplink.tls_failures(failure) >= 1 }
    })
    .await;
}

/// Runs the daemon with `tls` on `spool`, publishes `n` readings, and checks the store refuses
/// them as `failure` while the spool keeps them.
async fn refused_and_kept(
    rig: &Rig,
    tls: &[(&str, String)],
    spool: &Path,
    n: usize,
    failure: TlsFailure,
) {
    let mut d = Daemon::start_with_spool(&rig.config(tls, ""), spool);
    d.wait_connected(1).await;
    rig.publish(n).await;
    wait_tls_failure(&d, failure).await;
    d.stop().await;
    assert_kept(&d, spool);
}

/// After a refusal: nothing delivered, nothing dead-lettered, the readings still spooled.
fn assert_kept(d: &Daemon, spool: &Path) {
    let sink = &d.metrics.sink;
    assert_eq!(sink.uplink_points_sent.load(Relaxed), 0);
    assert_eq!(sink.uplink.dead_letter_points(DeadReason::BadData), 0);
    let stats = citysense::spool::Spool::inspect(spool).unwrap();
    assert!(stats.points > 0, "{stats:?}");
    let rendered = d.metrics.render();
    assert!(
        rendered.contains("citysense_uplink_tls_failures_total{output=\"default\",reason=\""),
        "{rendered}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_through_nginx_delivers_windows() {
    let rig = Rig::start().await;
    let mut d = Daemon::start(&rig.config(&rig.good_tls(), ""));
    d.wait_connected(1).await;
    rig.publish(5).await;
    rig.wait_stored(5.0).await;
    d.stop().await;
    assert!(rig.nginx.log().contains("POST /api/v2/write"));
    for f in TlsFailure::ALL {
        assert_eq!(d.metrics.sink.uplink.tls_failures(f), 0, "{f:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_ca_is_refused_and_the_data_waits_in_the_spool() {
    let rig = Rig::start().await;
    let other = tempfile::tempdir().unwrap();
    make_certs(other.path());
    let spool_dir = tempfile::tempdir().unwrap();
    let spool = spool_dir.path().join("spool");
    let mut tls = rig.good_tls();
    tls[0].1 = other.path().join("ca.pem").display().to_string();
    refused_and_kept(&rig, &tls, &spool, 3, TlsFailure::ServerCertificate).await;
    assert_eq!(rig.stored().await, 0.0);

    // The right CA: the spooled windows land, once.
    let mut d = Daemon::start_with_spool(&rig.config(&rig.good_tls(), ""), &spool);
    rig.wait_stored(3.0).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_foreign_client_certificate_is_refused_and_the_data_waits() {
    let rig = Rig::start().await;
    let spool_dir = tempfile::tempdir().unwrap();
    let spool = spool_dir.path().join("spool");
    // No client certificate: nginx answers 400 "No required SSL certificate was sent".
    let ca_only = vec![("ca_file", rig.path("ca.pem"))];
    refused_and_kept(&rig, &ca_only, &spool, 2, TlsFailure::ClientCertificate).await;

    // A client certificate from a CA nginx does not trust: 400 "The SSL certificate error".
    let other = tempfile::tempdir().unwrap();
    make_certs(other.path());
    make_client_cert(other.path(), "stranger");
    let stranger = vec![
        ("ca_file", rig.path("ca.pem")),
        (
            "client_cert_file",
            other.path().join("stranger.pem").display().to_string(),
        ),
        (
            "client_key_file",
            other.path().join("stranger.key").display().to_string(),
        ),
    ];
    refused_and_kept(&rig, &stranger, &spool, 1, TlsFailure::ClientCertificate).await;
    assert_eq!(rig.stored().await, 0.0);

    let mut d = Daemon::start_with_spool(&rig.config(&rig.good_tls(), ""), &spool);
    rig.wait_stored(3.0).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_is_reached_through_the_configured_proxy_with_its_credentials() {
    let rig = Rig::start().await;
    let proxy = Tunnel::start().await;
    let with_auth = proxy.url().replace("http://", "http://gw:s3cret@");
    let proxy_line = format!("proxy = \"{with_auth}\"");
    let mut d = Daemon::start(&rig.config(&rig.good_tls(), &proxy_line));
    d.wait_connected(1).await;
    rig.publish(4).await;
    rig.wait_stored(4.0).await;
    d.stop().await;
    let seen = proxy.seen();
    let want = format!("CONNECT 127.0.0.1:{} HTTP/1.1", rig.nginx.port);
    assert!(!seen.is_empty(), "no request went through the proxy");
    for s in &seen {
        assert_eq!(s.request_line, want);
        // "gw:s3cret", Basic.
        assert_eq!(s.proxy_authorization.as_deref(), Some("Basic Z3c6czNjcmV0"));
    }
}

/// Runs the daemon binary on `config` with `env` until a reading more is in the store, then
/// stops it. The broker drops what is published before the subscription: publish until one
/// lands.
async fn deliver_with_env(rig: &Rig, config: &str, env: &[(&str, String)]) {
    let dir = tempfile::tempdir().unwrap();
    let before = rig.stored().await;
    let mut d = Citysensed::spawn_env(config, dir.path(), "info", env);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        rig.publish(1).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if rig.stored().await > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing delivered:\n{}",
            d.kill()
        );
    }
    d.terminate(Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_proxy_applies_unless_no_proxy_or_proxy_none_says_otherwise() {
    let rig = Rig::start().await;
    let proxy = Tunnel::start().await;
    let https = ("https_proxy", proxy.url());
    let config = rig.config(&rig.good_tls(), "");

    // `https_proxy`: the store is reached through it.
    deliver_with_env(&rig, &config, std::slice::from_ref(&https)).await;
    let want = format!("CONNECT 127.0.0.1:{} HTTP/1.1", rig.nginx.port);
    let seen = proxy.seen();
    assert!(
        !seen.is_empty(),
        "no request went through the environment's proxy"
    );
    assert!(seen.iter().all(|s| s.request_line == want), "{seen:?}");

    // `no_proxy` naming the store's host: straight to it.
    let bypass = ("no_proxy", "localhost,127.0.0.1".to_string());
    deliver_with_env(&rig, &config, &[https.clone(), bypass]).await;
    assert_eq!(proxy.seen().len(), seen.len(), "no_proxy was not honoured");

    // `proxy = "none"` in the config: the environment is ignored.
    let none = rig.config(&rig.good_tls(), "proxy = \"none\"");
    deliver_with_env(&rig, &none, &[https, ("HTTPS_PROXY", proxy.url())]).await;
    assert_eq!(
        proxy.seen().len(),
        seen.len(),
        "proxy = \"none\" was not honoured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_store_goes_through_http_proxy() {
    let vm = Victoria::start().await;
    let broker = Mosquitto::start().await;
    let proxy = Tunnel::start().await;
    let config = Config::new("gw")
        .window(1)
        .stats(&["count"])
        .mqtt(broker.port, "cs-http-proxy")
        .subscription("n/{sensor}/{quantity}", "plain")
        .output_v2(&vm.write_url())
        .output_line("max_backoff_secs = 1")
        .assume_clock_synced()
        .no_health()
        .to_toml();
    let dir = tempfile::tempdir().unwrap();
    let env = [("http_proxy", proxy.url())];
    let mut d = Citysensed::spawn_env(&config, dir.path(), "info", &env);
    let stored = || async {
        let series = vm.export("{__name__=\"air_quality_pm10_count\"}").await;
        series.iter().flat_map(|s| s.values.iter()).sum::<f64>()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored().await == 0.0 {
        publish(broker.port, &[("n/a/pm10".to_string(), b"1".to_vec(), 1)]).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            Instant::now() < deadline,
            "nothing delivered:\n{}",
            d.kill()
        );
    }
    d.terminate(Duration::from_secs(20)).await;
    let seen = proxy.seen();
    let want = format!("POST http://127.0.0.1:{}/api/v2/write", vm.port);
    assert!(!seen.is_empty(), "no request went through http_proxy");
    assert!(
        seen.iter().all(|s| s.request_line.starts_with(&want)),
        "{seen:?}"
    );
}

/// `validate` opens the client key the way the daemon does: a relative name is a systemd
/// credential (`LoadCredential=`), looked up in `$CREDENTIALS_DIRECTORY` first.
#[test]
fn validate_finds_the_client_key_among_the_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    make_certs(p);
    make_client_cert(p, "gateway");
    let creds = p.join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::rename(p.join("gateway.key"), creds.join("store-key")).unwrap();
    let config = Config::new("gw")
        .output_v2("https://127.0.0.1:1")
        .spool_dir(&p.join("spool"))
        .output_line("[output.tls]")
        .output_line(&format!("ca_file = \"{}\"", p.join("ca.pem").display()))
        .output_line(&format!(
            "client_cert_file = \"{}\"",
            p.join("gateway.pem").display()
        ))
        .output_line("client_key_file = \"store-key\"")
        .to_toml();
    let path = p.join("citysense.toml");
    std::fs::write(&path, config).unwrap();
    let validate = |creds: Option<&Path>| {
        let mut cmd = command();
        cmd.args(["validate", "-c"]).arg(&path).current_dir(p);
        match creds {
            Some(c) => cmd.env("CREDENTIALS_DIRECTORY", c),
            None => cmd.env_remove("CREDENTIALS_DIRECTORY"),
        };
        output_within(&mut cmd, Duration::from_secs(60))
    };
    let ok = validate(Some(&creds));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let missing = validate(None);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{err}");
    assert!(
        err.contains("key `output.tls.client_key_file`: cannot read store-key"),
        "{err}"
    );
    let key = std::fs::read_to_string(creds.join("store-key")).unwrap();
    assert!(!err.contains(key.lines().nth(1).unwrap()), "{err}");
}
