//! The daemon on a gateway without a real-time clock, end to end through mosquitto into
//! VictoriaMetrics: it boots two days behind and unsynchronised, receives readings without
//! timestamps, syncs, then its clock steps an hour forward. The store must hold exactly the
//! windows at the true (then the stepped) times, nothing at the stale time, nothing twice.
//! The clock is the test-only [`Clock::Manual`] seam; boot time is the real one.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use citysense::clock::{Clock, ManualClock};
use citysense::config::Config;
use support::config::Config as TestConfig;
use support::{now_ms, publish, Daemon, Mosquitto, Victoria};

const WINDOW_MS: i64 = 2000;
const S_NS: i64 = 1_000_000_000;

/// Sleeps until 300 ms into the next window of real time; returns that window's start (ms).
async fn into_next_window() -> i64 {
    let start = (now_ms() / WINDOW_MS + 1) * WINDOW_MS;
    tokio::time::sleep(Duration::from_millis((start + 300 - now_ms()).max(0) as u64)).await;
    start
}

fn config(port: u16, vm: &Victoria) -> String {
    TestConfig::new("gw-rtcless")
        .window(2)
        .grace(1)
        .stats(&["count", "sum"])
        .mqtt(port, "cs-clock")
        .subscription("serialish/{sensor}/{quantity}", "plain")
        .output_v2(&vm.write_url())
        .no_health()
        .to_toml()
}

/// Publishes `n` plain readings (1, 2, ..., n) for `sensor`, no timestamps.
async fn readings(port: u16, sensor: &str, n: usize) {
    let msgs: Vec<(String, Vec<u8>, u8)> = (1..=n)
        .map(|v| {
            (
                format!("serialish/{sensor}/pm2_5"),
                v.to_string().into_bytes(),
                1,
            )
        })
        .collect();
    publish(port, &msgs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsynchronised_boot_then_sync_then_step_lands_exact_windows() {
    let broker = Mosquitto::start().await;
    let vm = Victoria::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let text = config(broker.port, &vm).replace("{spool}", &spool.display().to_string());
    let cfg = Config::parse(&text, Path::new("clock.toml")).unwrap();
    // fake-hwclock restored a time two days behind; NTP has not answered yet.
    let clock = ManualClock::new(-2 * 86_400 * S_NS, false);
    let mut d = Daemon::start_with_clock(cfg, &spool, Clock::Manual(clock.clone()));
    d.wait_connected(1).await;
    let m = d.metrics.clone();

    // Unsynchronised: 5 readings in one window of real time, then several windows pass.
    let w1 = into_next_window().await;
    readings(broker.port, "a", 5).await;
    tokio::time::sleep(Duration::from_millis(3 * WINDOW_MS as u64)).await;
    assert_eq!(m.pipeline.clock.held_readings.load(Relaxed), 5);
    assert_eq!(
        m.pipeline.points_emitted.load(Relaxed),
        0,
        "nothing emitted unsynchronised"
    );
    assert!(m.render().contains("citysense_clock_synchronized 0"));
    assert!(citysense::service::http::health(&m)
        .1
        .contains("clock: not synchronized, holding 5 readings"));

    // NTP answers: the clock jumps to the truth and reports sync.
    clock.set_shift(0);
    clock.set_synced(true);
    d.wait_points_sent(1).await;
    assert_eq!(
        m.pipeline.clock.steps.load(Relaxed),
        0,
        "the first sync is no step"
    );

    // An hour's step forward while running, then 3 readings in one window.
    clock.set_shift(3600 * S_NS);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let w2 = into_next_window().await;
    readings(broker.port, "b", 3).await;
    d.wait_points_sent(2).await;
    d.stop().await;
    assert_eq!(m.pipeline.clock.steps.load(Relaxed), 1);
    assert!(m.render().contains("citysense_clock_steps_total 1"));
    assert_eq!(m.sink.uplink_points_sent.load(Relaxed), 2, "no other point");

    let mut got: BTreeMap<(String, i64), BTreeMap<String, f64>> = BTreeMap::new();
    let end = (now_ms() / 1000 + 2 * 3600).to_string();
    let exported = vm
        .export_with("{__name__=~\"air_quality_.*\"}", &[("end", &end)])
        .await;
    for s in exported {
        let sensor = s.metric.get("sensor").cloned().unwrap_or_default();
        for (t, v) in s.timestamps.iter().zip(&s.values) {
            let prev = got
                .entry((sensor.clone(), *t))
                .or_default()
                .insert(s.metric["__name__"].clone(), *v);
            assert!(prev.is_none(), "duplicate point {sensor} {t}");
        }
    }
    let keys: Vec<(String, i64)> = got.keys().cloned().collect();
    assert_eq!(
        keys,
        vec![("a".to_string(), w1), ("b".to_string(), w2 + 3_600_000)],
        "the held window at its true start, the stepped one an hour on, nothing else"
    );
    let a = &got[&("a".to_string(), w1)];
    assert_eq!(a["air_quality_pm2_5_count"], 5.0);
    assert_eq!(a["air_quality_pm2_5_sum"], 15.0);
    let b = &got[&("b".to_string(), w2 + 3_600_000)];
    assert_eq!(b["air_quality_pm2_5_count"], 3.0);
    assert_eq!(b["air_quality_pm2_5_sum"], 6.0);
}

/// A serial counter on a real pseudo-terminal, read while the clock is unsynchronised: its
/// lines carry no time, so they are held and placed in the window of real time they
/// arrived in once the clock syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_readings_before_sync_land_in_their_true_window() {
    use tokio::io::AsyncWriteExt;
    use tokio_serial::SerialPortBuilderExt;

    let vm = Victoria::start().await;
    let pty = support::PtyPair::start();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let text = TestConfig::new("gw-rtcless")
        .window(2)
        .grace(1)
        .section(&format!(
            "[[serial]]\nname = \"door\"\nport = \"{}\"\nprofile = \"counter-kv\"",
            pty.b.display()
        ))
        .output_v2(&vm.write_url())
        .spool_dir(&spool)
        .no_health()
        .to_toml();
    let cfg = Config::parse(&text, Path::new("clock.toml")).unwrap();
    let clock = ManualClock::new(-2 * 86_400 * S_NS, false);
    let mut d = Daemon::start_with_clock(cfg, &spool, Clock::Manual(clock.clone()));
    let m = d.metrics.clone();
    support::wait_until(Duration::from_secs(10), "serial port open", || {
        let m = m.clone();
        async move { m.sources_connected() == 1 }
    })
    .await;
    let mut sensor = tokio_serial::new(pty.a.to_string_lossy(), 9600)
        .open_native_async()
        .unwrap();

    let w1 = into_next_window().await;
    for _ in 0..4 {
        sensor.write_all(b"in=1,out=0\n").await.unwrap();
    }
    sensor.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2 * WINDOW_MS as u64)).await;
    assert_eq!(
        m.pipeline.clock.held_readings.load(Relaxed),
        8,
        "in and out of 4 lines held"
    );
    assert_eq!(m.pipeline.points_emitted.load(Relaxed), 0);

    clock.set_shift(0);
    clock.set_synced(true);
    d.wait_points_sent(1).await;
    d.stop().await;
    let series = vm.export("{__name__=\"footfall_in\"}").await;
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(
        series[0].timestamps,
        vec![w1],
        "the window the lines arrived in"
    );
    assert_eq!(series[0].values, vec![4.0]);
}
