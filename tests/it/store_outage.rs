//! Outages of the real peers while the daemon runs in-process: VictoriaMetrics stopped for
//! several windows during a steady publish (every window must land exactly once when it is
//! back), and a persistent mosquitto session (QoS1 messages published while the daemon is
//! stopped arrive after it starts again; a broker restart is ridden out by reconnecting).
//! Readings carry their own timestamps, so the expected windows are exact.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use citysense::service::metrics::Metrics;
use support::config::Config;
use support::{free_port, now_ms, publish, wait_until, Daemon, Mosquitto, Victoria};

const SENSORS: usize = 4;
/// (sensor, window start ms) -> readings in that window.
type Expected = BTreeMap<(String, i64), u64>;

fn config(mqtt_port: u16, client: &str, store: &str) -> String {
    Config::new("gw-outage")
        .window(1)
        .grace(1)
        .stats(&["count", "mean"])
        .mqtt(mqtt_port, client)
        .subscription("city/{sensor}/air", "json")
        .timestamp("ts", "unix_ms")
        .output_v2(store)
        .output_line("max_backoff_secs = 1")
        .fsync(true)
        .to_toml()
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

/// Every (sensor, window) in `expected` is in the store exactly once with its exact count,
/// and nothing else is.
async fn assert_store_has(vm: &Victoria, expected: &Expected) {
    let mut got = Expected::new();
    for s in vm.export("air_quality_pm2_5_count").await {
        let sensor = s.metric["sensor"].clone();
        for (t, v) in s.timestamps.iter().zip(&s.values) {
            let prev = got.insert((sensor.clone(), *t), *v as u64);
            assert!(prev.is_none(), "duplicate point {sensor} {t}");
        }
    }
    let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "windows missing from the store: {missing:?}"
    );
    assert_eq!(&got, expected);
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
    // Subscriptions go out right after ConnAck; give the broker a moment to register them.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Waits until every window of `expected` has closed and the spool is empty.
async fn wait_delivered(m: &Arc<Metrics>, expected: &Expected) {
    let last = expected.keys().map(|(_, w)| *w).max().unwrap_or(0);
    let closed_at = last + 1000 + 1000 + 400;
    if closed_at > now_ms() {
        tokio::time::sleep(Duration::from_millis((closed_at - now_ms()) as u64)).await;
    }
    let want = expected.len() as u64;
    wait_until(
        Duration::from_secs(20),
        "spool drained into the store",
        || {
            let m = m.clone();
            async move {
                m.sink.spool_batches.load(Relaxed) == 0
                    && m.sink.uplink_points_sent.load(Relaxed) >= want
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_loses_and_duplicates_no_window() {
    let broker = Mosquitto::start().await;
    let mut vm = Victoria::start().await;
    let mut d = Daemon::start(&config(broker.port, "cs-outage", &vm.write_url()));
    wait_connected(&d.metrics).await;

    // Steady publish for 8 s; the store is down from 1.5 s to 5.5 s (four windows).
    let port = broker.port;
    let publisher = tokio::spawn(async move {
        let mut expected = Expected::new();
        let until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < until {
            let msgs = messages(now_ms(), &mut expected);
            publish(port, &msgs).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        expected
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    vm.stop().await;
    let failed_before = d.metrics.sink.uplink_requests_failed.load(Relaxed);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let spooled = d.metrics.sink.spool_points.load(Relaxed);
    let failed = d.metrics.sink.uplink_requests_failed.load(Relaxed) - failed_before;
    vm.restart().await;
    let expected = publisher.await.expect("publisher");

    wait_delivered(&d.metrics, &expected).await;
    d.stop().await;
    assert!(failed > 0, "requests failed while the store was down");
    assert!(
        spooled >= 3 * SENSORS as u64,
        "windows piled up in the spool during the outage: {spooled}"
    );
    assert!(expected.len() >= 7 * SENSORS, "{} windows", expected.len());
    let left = citysense::spool::Spool::inspect(&d.spool_dir).expect("inspect");
    assert_eq!(
        (left.batches, left.points),
        (0, 0),
        "spool empty at the end"
    );
    assert_store_has(&vm, &expected).await;
}

/// Publishes one message per sensor at 10 timestamps inside the window starting `lead_s`
/// whole seconds from now (far enough ahead that the window is still open on arrival).
async fn publish_window(port: u16, lead_s: i64, expected: &mut Expected) {
    let w = (now_ms() / 1000 + lead_s) * 1000;
    let mut msgs = Vec::new();
    for i in 0..10 {
        msgs.extend(messages(w + i * 90, expected));
    }
    publish(port, &msgs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_and_broker_restart_lose_nothing() {
    let pdir = tempfile::tempdir().expect("temp dir");
    let spool = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut broker = Mosquitto::start_persistent(pdir.path(), port).await;
    let vm = Victoria::start().await;
    let cfg = config(port, "cs-persistent", &vm.write_url());
    let spool_dir = spool.path().join("spool");
    let start = |cfg: &str, dir: &Path| Daemon::start_with_spool(cfg, dir);

    // First run only registers the session (clean_session = false, QoS1 subscription).
    let mut d = start(&cfg, &spool_dir);
    wait_connected(&d.metrics).await;
    d.stop().await;

    // While citysensed is down, QoS1 messages wait in the broker.
    let mut expected = Expected::new();
    publish_window(port, 3, &mut expected).await;
    let mut d = start(&cfg, &spool_dir);
    wait_connected(&d.metrics).await;

    // The broker restarts under the running daemon (persistence saved on SIGTERM).
    tokio::task::block_in_place(|| broker.stop());
    drop(broker);
    let m = d.metrics.clone();
    wait_until(Duration::from_secs(10), "daemon saw the broker go", || {
        let m = m.clone();
        async move { m.sources_connected() == 0 }
    })
    .await;
    let _broker = Mosquitto::start_persistent(pdir.path(), port).await;
    wait_connected(&d.metrics).await;
    publish_window(port, 2, &mut expected).await;

    wait_delivered(&d.metrics, &expected).await;
    d.stop().await;
    assert_eq!(
        d.metrics.pipeline.readings_aggregated.load(Relaxed),
        20 * SENSORS as u64,
        "every QoS1 reading arrived exactly once"
    );
    assert_store_has(&vm, &expected).await;
}
