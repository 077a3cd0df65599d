//! End to end through real servers: mosquitto -> citysensed -> VictoriaMetrics (v2 API) and
//! influxd 1.x (v1 API). Readings carry their own timestamps, so the expected windows can be
//! computed exactly and compared with what the stores hold.

use crate::support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use support::config::Config;
use support::{now_ms, publish, Daemon, Influxd, Mosquitto, Victoria};

const WINDOW_S: i64 = 2;
const SENSORS: usize = 10;
const PER_SENSOR: usize = 100;

/// Expected (count, sum, min, max) per (sensor, window start in ms).
pub(crate) type Expected = BTreeMap<(String, i64), (u64, f64, f64, f64)>;

/// JSON readings on `city/{sensor}/air` stamped by their `ts` (unix ms), in windows of
/// `window_s` closed `grace_s` after their end; the caller adds the output.
pub(crate) fn config(window_s: i64, grace_s: i64, mqtt_port: u16, client: &str) -> Config {
    Config::new("gw-test")
        .window(window_s)
        .grace(grace_s)
        .stats(&["mean", "min", "max", "count"])
        // Exact point counts below: no sensor_health points.
        .no_health()
        .mqtt(mqtt_port, client)
        .subscription("city/{sensor}/air", "json")
        .timestamp("ts", "unix_ms")
}

/// `per_sensor` messages for each of `sensors` sensors, spread over the two windows of
/// `window_s` after the current one (so none is late), half QoS0 and half QoS1. Values are
/// integers/2, exact in f32 and f64. With `bad_every`, a malformed message follows every
/// n-th good one.
pub(crate) fn workload(
    window_s: i64,
    sensors: usize,
    per_sensor: usize,
    bad_every: Option<usize>,
) -> (Vec<(String, Vec<u8>, u8)>, Expected) {
    let window_ms = window_s * 1000;
    let first = (now_ms() / window_ms + 1) * window_ms;
    let mut msgs = Vec::new();
    let mut expected = Expected::new();
    for i in 0..per_sensor {
        for s in 0..sensors {
            let sensor = format!("s{s:02}");
            let ts = first + (i as i64 * 2 * window_ms) / per_sensor as i64;
            let value = ((i * 7 + s * 13) % 97) as f64 / 2.0;
            let payload = format!(r#"{{"pm2_5": {value}, "ts": {ts}}}"#);
            let qos = (i % 2) as u8;
            msgs.push((format!("city/{sensor}/air"), payload.into_bytes(), qos));
            let w = ts - ts.rem_euclid(window_ms);
            let e = expected
                .entry((sensor, w))
                .or_insert((0, 0.0, f64::MAX, f64::MIN));
            e.0 += 1;
            e.1 += value;
            e.2 = e.2.min(value);
            e.3 = e.3.max(value);
            if let Some(n) = bad_every {
                if (i * sensors + s).is_multiple_of(n) {
                    let bad: &[u8] = match i % 4 {
                        0 => b"{\"pm2_5\": ",
                        1 => b"not json",
                        2 => b"{\"pm2_5\": \"high\", \"ts\": 1}",
                        _ => b"\xff\xfe\x00",
                    };
                    msgs.push((format!("city/{}/air", "s00"), bad.to_vec(), qos));
                }
            }
        }
    }
    (msgs, expected)
}

/// Waits until every expected window has closed (its end + grace + a tick has passed).
async fn wait_windows_closed(expected: &Expected) {
    let last = expected.keys().map(|(_, w)| *w).max().unwrap();
    let close_at = last + WINDOW_S * 1000 + 1000 + 500;
    let wait = close_at - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
}

/// The store holds exactly the `expected` windows of gateway `gw-test`, each once, with its
/// exact count, mean, min and max.
pub(crate) fn check_victoria(series: &[support::ExportedSeries], expected: &Expected) {
    let mut got: BTreeMap<(String, i64), BTreeMap<String, f64>> = BTreeMap::new();
    for s in series {
        let name = s.metric["__name__"].clone();
        let sensor = s.metric.get("sensor").cloned().unwrap_or_default();
        assert_eq!(s.metric.get("gateway").map(String::as_str), Some("gw-test"));
        for (t, v) in s.timestamps.iter().zip(&s.values) {
            let prev = got
                .entry((sensor.clone(), *t))
                .or_default()
                .insert(name.clone(), *v);
            assert!(prev.is_none(), "duplicate point {name} {sensor} {t}");
        }
    }
    assert_eq!(got.len(), expected.len(), "windows in store vs expected");
    for ((sensor, w), (count, sum, min, max)) in expected {
        let f = got
            .get(&(sensor.clone(), *w))
            .unwrap_or_else(|| panic!("window {sensor} {w} missing"));
        assert_eq!(f["air_quality_pm2_5_count"], *count as f64, "{sensor} {w}");
        assert!(
            (f["air_quality_pm2_5_mean"] - sum / *count as f64).abs() < 1e-9,
            "{sensor} {w}"
        );
        assert_eq!(f["air_quality_pm2_5_min"], *min, "{sensor} {w}");
        assert_eq!(f["air_quality_pm2_5_max"], *max, "{sensor} {w}");
    }
}

async fn check_influxd(influx: &Influxd, expected: &Expected) {
    let rows = influx
        .query_rows("city", "SELECT * FROM air_quality GROUP BY sensor")
        .await;
    assert_eq!(rows.len(), expected.len(), "rows in influxd: {rows:?}");
    for row in rows {
        let sensor = row["sensor"].as_str().expect("sensor tag").to_string();
        let t_ms = row["time"].as_i64().expect("time in ns") / 1_000_000;
        let (count, sum, min, max) = expected
            .get(&(sensor.clone(), t_ms))
            .unwrap_or_else(|| panic!("unexpected window {sensor} {t_ms}"));
        let f = |k: &str| row[k].as_f64().unwrap_or_else(|| panic!("{k} in {row:?}"));
        assert_eq!(f("pm2_5_count"), *count as f64);
        assert!((f("pm2_5_mean") - sum / *count as f64).abs() < 1e-9);
        assert_eq!(f("pm2_5_min"), *min);
        assert_eq!(f("pm2_5_max"), *max);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_messages_land_exactly_in_victoria_and_influxd() {
    let broker = Mosquitto::start().await;
    let vm = Victoria::start().await;
    let influx = Influxd::start().await;
    influx.create_db("city").await;
    let v2 = format!(
        "api = \"v2\"\nurl = \"{}\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"t\"",
        vm.write_url()
    );
    let v1 = format!("api = \"v1\"\nurl = \"{}\"\ndb = \"city\"", influx.url());
    let config = |client, output| {
        config(WINDOW_S, 1, broker.port, client)
            .output_line(output)
            .to_toml()
    };
    let mut d2 = Daemon::start(&config("cs-v2", &v2));
    let mut d1 = Daemon::start(&config("cs-v1", &v1));
    for d in [&d2, &d1] {
        d.wait_connected(1).await;
    }

    let (msgs, expected) = workload(WINDOW_S, SENSORS, PER_SENSOR, None);
    assert_eq!(msgs.len(), SENSORS * PER_SENSOR);
    publish(broker.port, &msgs).await;
    wait_windows_closed(&expected).await;

    let want = expected.len() as u64;
    for d in [&d2, &d1] {
        d.wait_points_sent(want).await;
    }
    d2.stop().await;
    d1.stop().await;
    for d in [&d2, &d1] {
        assert_eq!(
            d.metrics.pipeline.readings_aggregated.load(Relaxed),
            msgs.len() as u64
        );
        assert_eq!(
            d.metrics.sink.uplink_points_sent.load(Relaxed),
            want,
            "no extra points at shutdown"
        );
    }
    check_victoria(
        &vm.export("{__name__=~\"air_quality_.*\"}").await,
        &expected,
    );
    check_influxd(&influx, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_flood_loses_no_good_reading() {
    let broker = Mosquitto::start().await;
    let vm = Victoria::start().await;
    let v2 = format!("api = \"v2\"\nurl = \"{}\"\nbucket = \"b\"", vm.write_url());
    let mut d = Daemon::start(
        &config(WINDOW_S, 1, broker.port, "cs-flood")
            .output_line(&v2)
            .to_toml(),
    );
    d.wait_connected(1).await;

    // One bad message after every good one: 1,000 bad among 1,000 good.
    let (msgs, expected) = workload(WINDOW_S, SENSORS, PER_SENSOR, Some(1));
    let bad = msgs.len() - SENSORS * PER_SENSOR;
    assert_eq!(bad, 1000);
    publish(broker.port, &msgs).await;
    wait_windows_closed(&expected).await;
    let want = expected.len() as u64;
    d.wait_points_sent(want).await;
    d.stop().await;
    assert_eq!(d.metrics.bad_input_total(), bad as u64);
    assert_eq!(
        d.metrics.pipeline.readings_aggregated.load(Relaxed),
        (SENSORS * PER_SENSOR) as u64
    );
    check_victoria(
        &vm.export("{__name__=~\"air_quality_.*\"}").await,
        &expected,
    );
}
