//! The MQTT source against a real mosquitto: TLS (with the rustls provider pinned, so the
//! "no process-level CryptoProvider" panic cannot come back), resubscription after a broker
//! that lost its state, and the flush of open windows at shutdown.

use crate::support;

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use support::certs::make_certs;
use support::config::Config;
use support::{free_port, now_ms, publish, wait_until, Daemon, Mosquitto, Victoria};

fn config(port: u16, client: &str, vm: &Victoria, extra_mqtt: &str) -> String {
    Config::new("gw")
        .window(60)
        .stats(&["mean", "count"])
        .mqtt(port, client)
        .mqtt_line(extra_mqtt)
        .subscription("n/{sensor}/{quantity}", "plain")
        .output_v2(&vm.write_url())
        .no_health()
        .to_toml()
}

async fn connected(d: &Daemon) {
    d.wait_connected(1).await;
}

fn msg(sensor: &str, q: &str, v: f64) -> (String, Vec<u8>, u8) {
    (format!("n/{sensor}/{q}"), v.to_string().into_bytes(), 1)
}

/// Sum of `air_quality_pm10_count` over all points in the store.
async fn stored_count(vm: &Victoria) -> f64 {
    vm.export("{__name__=\"air_quality_pm10_count\"}")
        .await
        .iter()
        .flat_map(|s| s.values.iter())
        .sum()
}

/// Certificates in `dir` and a broker with a TLS listener using them; returns the TLS port.
async fn tls_broker(dir: &Path) -> (Mosquitto, u16) {
    make_certs(dir);
    let tls_port = free_port();
    let broker = Mosquitto::start_tls(
        tls_port,
        &dir.join("ca.pem"),
        &dir.join("server.pem"),
        &dir.join("server.key"),
    )
    .await;
    (broker, tls_port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connection_delivers_readings() {
    let certs = tempfile::tempdir().unwrap();
    let (broker, tls_port) = tls_broker(certs.path()).await;
    let p = certs.path();
    let vm = Victoria::start().await;
    let tls = format!("[mqtt.tls]\nca_file = \"{}\"", p.join("ca.pem").display());
    let mut d = Daemon::start(&config(tls_port, "cs-tls", &vm, &tls));
    connected(&d).await;
    publish(broker.port, &[msg("a", "pm10", 5.0), msg("a", "pm10", 7.0)]).await;
    let m = d.metrics.clone();
    wait_until(Duration::from_secs(10), "readings aggregated", || {
        let m = m.clone();
        async move { m.pipeline.readings_aggregated.load(Relaxed) == 2 }
    })
    .await;
    d.stop().await;
    assert_eq!(stored_count(&vm).await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_an_unknown_ca_is_refused_and_retried() {
    let certs = tempfile::tempdir().unwrap();
    let (_broker, tls_port) = tls_broker(certs.path()).await;
    let other = tempfile::tempdir().unwrap();
    make_certs(other.path());
    let vm = Victoria::start().await;
    // Trusts a different CA: the handshake must fail, the daemon must keep trying, not panic.
    let tls = format!(
        "[mqtt.tls]\nca_file = \"{}\"",
        other.path().join("ca.pem").display()
    );
    let mut d = Daemon::start(&config(tls_port, "cs-tls-bad", &vm, &tls));
    let m = d.metrics.clone();
    wait_until(Duration::from_secs(10), "two failed attempts", || {
        let m = m.clone();
        async move {
            m.render()
                .contains("citysense_source_reconnects_total{kind=\"mqtt\"")
                && reconnects(&m) >= 2
        }
    })
    .await;
    assert_eq!(d.metrics.sources_connected(), 0);
    d.stop().await;
}

fn reconnects(m: &citysense::service::metrics::Metrics) -> u64 {
    m.render()
        .lines()
        .find(|l| l.starts_with("citysense_source_reconnects_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribes_when_the_broker_lost_the_session() {
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = Mosquitto::start_persistent(state.path(), port).await;
    let vm = Victoria::start().await;
    let mut d = Daemon::start(&config(port, "cs-resub", &vm, ""));
    connected(&d).await;
    publish(port, &[msg("a", "pm10", 1.0)]).await;

    // The broker dies and comes back without its state: no session, no subscriptions.
    broker.stop();
    drop(broker);
    std::fs::remove_dir_all(state.path()).unwrap();
    let _broker = Mosquitto::start_persistent(state.path(), port).await;
    connected(&d).await;
    publish(port, &[msg("a", "pm10", 2.0), msg("b", "pm10", 3.0)]).await;
    let m = d.metrics.clone();
    wait_until(
        Duration::from_secs(15),
        "readings after the restart",
        || {
            let m = m.clone();
            async move { m.pipeline.readings_aggregated.load(Relaxed) == 3 }
        },
    )
    .await;
    d.stop().await;
    assert_eq!(stored_count(&vm).await, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_open_windows_to_the_store() {
    let broker = Mosquitto::start().await;
    let vm = Victoria::start().await;
    let mut d = Daemon::start(&config(broker.port, "cs-flush", &vm, ""));
    connected(&d).await;
    let t0 = now_ms();
    publish(
        broker.port,
        &[
            msg("a", "pm10", 4.0),
            msg("a", "pm10", 6.0),
            msg("b", "pm10", 9.0),
        ],
    )
    .await;
    let m = d.metrics.clone();
    wait_until(Duration::from_secs(10), "readings aggregated", || {
        let m = m.clone();
        async move { m.pipeline.readings_aggregated.load(Relaxed) == 3 }
    })
    .await;
    // The 60 s window is still open: only the shutdown flush can deliver it.
    assert_eq!(d.metrics.sink.uplink_points_sent.load(Relaxed), 0);
    d.stop().await;
    assert_eq!(d.metrics.sink.uplink_points_sent.load(Relaxed), 2);
    let series = vm.export("{__name__=\"air_quality_pm10_mean\"}").await;
    assert_eq!(series.len(), 2);
    for s in &series {
        assert_eq!(s.timestamps.len(), 1);
        let start = t0 - t0.rem_euclid(60_000);
        assert!(
            s.timestamps[0] == start || s.timestamps[0] == start + 60_000,
            "window start"
        );
        let want = if s.metric["sensor"] == "a" { 5.0 } else { 9.0 };
        assert_eq!(s.values[0], want);
    }
}
