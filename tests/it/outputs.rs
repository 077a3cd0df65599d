//! Several outputs from one spool, against two real VictoriaMetrics: store A stopped for a
//! while must not delay store B (B receives the windows of the outage while A is down), A
//! catches up when it is back, and both end with every window exactly once; output B's
//! filter sends only `air_quality`. Then a SIGKILL of the real binary while A has a backlog:
//! after the restart nothing either output had not acknowledged is lost, and no window
//! reaches a store with a different value.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use citysense::service::metrics::Metrics;
use citysense::spool::Spool;
use support::citysensed::Citysensed;
use support::config::Config;
use support::{now_ms, publish, wait_until, Daemon, Mosquitto, Victoria};

pub(crate) const SENSORS: usize = 3;
/// (sensor, window start ms) -> readings in that window.
pub(crate) type Expected = BTreeMap<(String, i64), u64>;

/// Output `a` (everything) and output `b` (only `air_quality`).
pub(crate) fn outputs(a: &str, b: &str) -> String {
    format!(
        "[[output]]\nname = \"a\"\napi = \"v2\"\nurl = \"{a}\"\nbucket = \"b\"\n\
         max_backoff_secs = 1\n\n\
         [[output]]\nname = \"b\"\napi = \"v2\"\nurl = \"{b}\"\nbucket = \"b\"\n\
         max_backoff_secs = 1\nfilter = {{ measurements = [\"air_quality\"] }}"
    )
}

fn config(mqtt_port: u16, client: &str, a: &str, b: &str) -> Config {
    Config::new("gw-fanout")
        .window(1)
        .grace(1)
        .stats(&["count", "mean"])
        .mqtt(mqtt_port, client)
        .subscription("city/{sensor}/air", "json")
        .timestamp("ts", "unix_ms")
        .section(&outputs(a, b))
        .fsync(true)
        .assume_clock_synced()
}

/// One QoS1 message per sensor stamped `ts`, counted into `expected`.
fn messages(ts: i64, expected: &mut Expected) -> Vec<(String, Vec<u8>, u8)> {
    (0..SENSORS)
        .map(|s| {
            let sensor = format!("s{s}");
            *expected
                .entry((sensor.clone(), ts - ts % 1000))
                .or_default() += 1;
            let payload = format!(r#"{{"pm2_5": {}, "ts": {ts}}}"#, s * 10 + 1);
            (format!("city/{sensor}/air"), payload.into_bytes(), 1)
        })
        .collect()
}

/// Publishes for `secs`, one round every 150 ms; returns what the windows must hold.
pub(crate) async fn publish_for(port: u16, secs: u64) -> Expected {
    let mut expected = Expected::new();
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        let msgs = messages(now_ms(), &mut expected);
        publish(port, &msgs).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    expected
}

/// The store's pm2_5 counts per (sensor, window); a window stored twice must hold the same
/// count both times (a resend after a kill overwrites itself), otherwise it fails.
pub(crate) async fn store_counts(vm: &Victoria, allow_same_resend: bool) -> Expected {
    let mut got = Expected::new();
    for s in vm.export("air_quality_pm2_5_count").await {
        let sensor = s.metric["sensor"].clone();
        for (t, v) in s.timestamps.iter().zip(&s.values) {
            let prev = got.insert((sensor.clone(), *t), *v as u64);
            match prev {
                Some(p) if allow_same_resend => {
                    assert_eq!(p, *v as u64, "window {sensor} {t} with two values")
                }
                Some(_) => panic!("duplicate point {sensor} {t}"),
                None => {}
            }
        }
    }
    got
}

async fn wait_connected(m: &Arc<Metrics>) {
    wait_until(
        Duration::from_secs(15),
        "daemon connected to mosquitto",
        || {
            let m = m.clone();
            async move { m.sources_connected() == 1 }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Waits until the last window of `expected` closed and none of the `n` outputs has a backlog.
pub(crate) async fn wait_all_delivered(spool: &Path, n: usize, expected: &Expected) {
    let last = expected.keys().map(|(_, w)| *w).max().unwrap_or(0);
    let closed_at = last + 2400;
    if closed_at > now_ms() {
        tokio::time::sleep(Duration::from_millis((closed_at - now_ms()) as u64)).await;
    }
    let dir = spool.to_path_buf();
    wait_until(
        Duration::from_secs(30),
        "every output acknowledged all",
        || {
            let dir = dir.clone();
            async move {
                Spool::inspect_outputs(&dir)
                    .is_ok_and(|o| o.len() == n && o.iter().all(|o| o.batches == 0))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_output_down_delays_no_other_and_catches_up() {
    let broker = Mosquitto::start().await;
    let mut vm_a = Victoria::start().await;
    let vm_b = Victoria::start().await;
    let cfg = config(
        broker.port,
        "cs-fanout",
        &vm_a.write_url(),
        &vm_b.write_url(),
    );
    let mut d = Daemon::start(&cfg.to_toml());
    wait_connected(&d.metrics).await;

    let port = broker.port;
    let publisher = tokio::spawn(publish_for(port, 8));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    vm_a.stop().await;
    let down_at = now_ms();
    // B takes windows closed after A went down, while A is still down.
    let window_after = (down_at / 1000 + 1) * 1000;
    let b = &vm_b;
    wait_until(
        Duration::from_secs(4),
        "store B gets windows while A is down",
        || async move {
            let got = store_counts(b, false).await;
            got.keys().any(|(_, w)| *w >= window_after)
        },
    )
    .await;
    let (_, health) = citysense::service::http::health(&d.metrics);
    assert!(
        health.contains("uplink: down") && health.contains("uplink b: up"),
        "{health}"
    );
    let a_backlog = Spool::inspect_outputs(&d.spool_dir).expect("inspect");
    assert!(
        a_backlog[0].name == "a" && a_backlog[0].batches > 0,
        "{a_backlog:?}"
    );
    vm_a.restart().await;
    let expected = publisher.await.expect("publisher");

    wait_all_delivered(&d.spool_dir, 2, &expected).await;
    d.stop().await;
    assert!(expected.len() >= 7 * SENSORS, "{} windows", expected.len());
    assert_eq!(store_counts(&vm_a, false).await, expected, "store A");
    assert_eq!(store_counts(&vm_b, false).await, expected, "store B");
    // The filter: A has the other measurements, B only air_quality.
    let other = r#"{__name__=~"sensor_health_.*|gateway_health_.*"}"#;
    assert!(
        !vm_a.export(other).await.is_empty(),
        "A gets every measurement"
    );
    assert!(
        vm_b.export(other).await.is_empty(),
        "B gets only air_quality"
    );
    let rendered = d.metrics.render();
    for out in ["a", "b"] {
        let line = format!("citysense_uplink_up{{output=\"{out}\"}} 1");
        assert!(rendered.contains(&line), "{line} in\n{rendered}");
    }
    assert!(d.metrics.sink.uplink_requests_failed.load(Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_a_backlog_loses_nothing_unacknowledged() {
    let broker = Mosquitto::start().await;
    let mut vm_a = Victoria::start().await;
    let vm_b = Victoria::start().await;
    vm_a.stop().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("spool");
    let cfg = config(
        broker.port,
        "cs-fanout-kill",
        &vm_a.write_url(),
        &vm_b.write_url(),
    )
    .spool_dir(&spool)
    .to_toml();
    let mut d = Citysensed::spawn(&cfg, dir.path(), "info");
    let port = broker.port;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !d.log().contains("mqtt connected") {
        assert!(
            Instant::now() < deadline,
            "daemon did not connect:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expected = publish_for(port, 4).await;
    // Wait until B has every window, while A holds a backlog; then kill -9.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = store_counts(&vm_b, true).await;
        if got == expected {
            break;
        }
        let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
        assert!(
            Instant::now() < deadline,
            "store B lacks {missing:?}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = Spool::inspect_outputs(&spool).expect("inspect");
    assert!(before[0].name == "a" && before[0].batches > 0, "{before:?}");
    let log = d.kill();
    vm_a.restart().await;
    let mut d = Citysensed::spawn(&cfg, dir.path(), "info");
    wait_all_delivered(&spool, 2, &expected).await;
    let log2 = d.terminate(Duration::from_secs(20)).await;
    let a = store_counts(&vm_a, true).await;
    assert_eq!(a, expected, "store A after the kill\n{log}\n{log2}");
    assert_eq!(
        store_counts(&vm_b, true).await,
        expected,
        "store B after the kill"
    );
}
