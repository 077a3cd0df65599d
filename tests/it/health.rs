//! Sensor health end to end: four MQTT sensors without timestamps of their own (stamped on
//! receipt) -> citysensed -> VictoriaMetrics. One is fine, one is stuck on a value, one
//! reports out-of-range values, one falls silent; the `sensor_health` points say so.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::config::Config;
use support::{now_ms, publish, Daemon, Mosquitto, Victoria};

const WINDOW_MS: i64 = 2000;

fn config(port: u16, vm: &Victoria) -> String {
    Config::new("gw-health")
        .window(2)
        .grace(1)
        .stats(&["mean", "count"])
        .section(
            "[health]\nexpected_interval_secs = 0.5\nstale_after_intervals = 3\nstuck_after = 5\n\
             [health.ranges]\npm10 = [0, 100]",
        )
        .mqtt(port, "cs-health")
        .subscription("h/{sensor}/{quantity}", "plain")
        .output_v2(&vm.write_url())
        .to_toml()
}

fn msg(sensor: &str, v: f64) -> (String, Vec<u8>, u8) {
    (format!("h/{sensor}/pm10"), v.to_string().into_bytes(), 1)
}

/// Publishes one round of messages every 200 ms (so intervals can be learned), within
/// about 1.2 s.
async fn rounds(port: u16, rounds: Vec<Vec<(String, Vec<u8>, u8)>>) {
    for round in rounds {
        publish(port, &round).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_out_of_range_and_silent_sensors_are_reported() {
    let broker = Mosquitto::start().await;
    let vm = Victoria::start().await;
    let mut d = Daemon::start(&config(broker.port, &vm));
    d.wait_connected(1).await;

    // Window A: everyone reports; B: only `good` does.
    let a = (now_ms() / WINDOW_MS + 1) * WINDOW_MS;
    tokio::time::sleep(Duration::from_millis((a + 100 - now_ms()).max(0) as u64)).await;
    let first = (0..6)
        .map(|i| {
            vec![
                msg("good", 10.0 + i as f64),
                msg("stuck", 42.0),
                msg("wild", if i % 3 == 0 { 500.0 } else { 20.0 }),
                msg("gone", 5.0 + i as f64),
            ]
        })
        .collect();
    rounds(broker.port, first).await;
    let b = a + WINDOW_MS;
    tokio::time::sleep(Duration::from_millis((b + 100 - now_ms()).max(0) as u64)).await;
    let second = (0..6).map(|i| vec![msg("good", 20.0 + i as f64)]).collect();
    rounds(broker.port, second).await;
    // Both windows closed (end + 1 s close delay + a tick), then stop.
    tokio::time::sleep(Duration::from_millis(
        (b + WINDOW_MS + 1500 - now_ms()).max(0) as u64,
    ))
    .await;
    d.stop().await;

    // (sensor, window start ms) -> field -> value
    let mut health: BTreeMap<(String, i64), BTreeMap<String, f64>> = BTreeMap::new();
    for s in vm.export("{__name__=~\"sensor_health_.*\"}").await {
        let Some(sensor) = s.metric.get("sensor").cloned() else {
            continue; // per-source points
        };
        let field = s.metric["__name__"]
            .trim_start_matches("sensor_health_")
            .to_string();
        for (t, v) in s.timestamps.iter().zip(&s.values) {
            health
                .entry((sensor.clone(), *t))
                .or_default()
                .insert(field.clone(), *v);
        }
    }
    let at = |sensor: &str, w: i64, field: &str| -> f64 {
        health
            .get(&(sensor.to_string(), w))
            .and_then(|f| f.get(field))
            .copied()
            .unwrap_or_else(|| panic!("{sensor} {field} at {w} in {health:?}"))
    };
    assert_eq!(at("good", a, "readings"), 6.0);
    assert_eq!(at("good", a, "stuck"), 0.0);
    assert_eq!(at("good", a, "out_of_range"), 0.0);
    assert_eq!(
        at("stuck", a, "stuck"),
        1.0,
        "6 identical readings, stuck_after = 5"
    );
    assert_eq!(
        at("wild", a, "out_of_range"),
        2.0,
        "two of 500 against [0, 100]"
    );
    assert_eq!(at("wild", a, "stuck"), 0.0);
    for s in ["good", "stuck", "wild", "gone"] {
        assert_eq!(at(s, a, "sensor_up"), 1.0, "{s} up in A: {health:?}");
    }
    // Window B: `good` still reports, `gone` has been silent for > 3 x 0.5 s.
    assert_eq!(at("good", b, "sensor_up"), 1.0);
    assert_eq!(at("gone", b, "sensor_up"), 0.0);
    assert_eq!(at("gone", b, "readings"), 0.0);
    // The out-of-range readings were flagged, not dropped: the mean includes them.
    let pm = vm
        .export("{__name__=\"air_quality_pm10_count\",sensor=\"wild\"}")
        .await;
    assert_eq!(pm[0].values, vec![6.0]);
}
