//! Late and out-of-order data end to end: mosquitto -> citysensed -> influxd 1.x, whose
//! overwrite-on-same-timestamp semantics make a corrected window replace the first one.
//! Also Tasmota's offset-less local `Time`, read in the configured time zone.

use crate::support;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use citysense::service::metrics::DropReason;
use support::config::Config;
use support::{now_ms, publish, wait_until, Daemon, Influxd, Mosquitto};

const WINDOW_MS: i64 = 2000;

fn config(mqtt_port: u16, influx: &Influxd) -> String {
    Config::new("gw-late")
        .window(2)
        .grace(4)
        .aggregation_line("close_delay_secs = 1")
        .stats(&["mean", "count"])
        .mqtt(mqtt_port, "cs-late")
        .subscription("lora/{sensor}/up", "json")
        .timestamp("ts", "unix_ms")
        .subscription("tele/{sensor}/SENSOR", "tasmota")
        .subscription_line("time_zone = \"Europe/Amsterdam\"")
        .output_v1(&influx.url())
        .no_health()
        .to_toml()
}

fn reading(sensor: &str, pm10: f64, ts_ms: i64) -> (String, Vec<u8>, u8) {
    let payload = format!(r#"{{"pm10": {pm10}, "ts": {ts_ms}}}"#);
    (format!("lora/{sensor}/up"), payload.into_bytes(), 1)
}

/// (count, mean) of sensor `sensor`'s pm10 per window start (ns), from influxd.
async fn windows(influx: &Influxd, sensor: &str) -> Vec<(i64, f64, f64)> {
    let q = format!("SELECT pm10_count, pm10_mean FROM air_quality WHERE sensor = '{sensor}'");
    influx
        .query_rows("city", &q)
        .await
        .iter()
        .map(|r| {
            let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} in {r:?}"));
            (
                r["time"].as_i64().expect("ns time"),
                f("pm10_count"),
                f("pm10_mean"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reading_within_grace_corrects_the_stored_window() {
    let broker = Mosquitto::start().await;
    let influx = Influxd::start().await;
    influx.create_db("city").await;
    let mut d = Daemon::start(&config(broker.port, &influx));
    d.wait_connected(1).await;

    // Two readings for the window that starts next.
    let a = (now_ms() / WINDOW_MS + 1) * WINDOW_MS;
    publish(
        broker.port,
        &[reading("n1", 10.0, a + 100), reading("n1", 20.0, a + 900)],
    )
    .await;
    d.wait_points_sent(1).await;
    let a_ns = a * 1_000_000;
    assert_eq!(windows(&influx, "n1").await, vec![(a_ns, 2.0, 15.0)]);

    // Window A has been emitted; a reading for it arrives within grace (4 s after its end).
    let late_at = a + WINDOW_MS + 2000;
    tokio::time::sleep(Duration::from_millis((late_at - now_ms()).max(0) as u64)).await;
    publish(broker.port, &[reading("n1", 30.0, a + 1500)]).await;
    d.wait_points_sent(2).await;
    assert_eq!(
        windows(&influx, "n1").await,
        vec![(a_ns, 3.0, 20.0)],
        "the corrected window replaced the first, same timestamp"
    );

    // Beyond grace: dropped and counted, the stored window stays as it is.
    let too_late = a + WINDOW_MS + 4000 + 1500;
    tokio::time::sleep(Duration::from_millis((too_late - now_ms()).max(0) as u64)).await;
    publish(broker.port, &[reading("n1", 1000.0, a + 1600)]).await;
    let m = d.metrics.clone();
    wait_until(Duration::from_secs(10), "late reading counted", || {
        let m = m.clone();
        async move { m.dropped_count(DropReason::Late) == 1 }
    })
    .await;
    d.stop().await;
    assert_eq!(windows(&influx, "n1").await, vec![(a_ns, 3.0, 20.0)]);
    assert_eq!(d.metrics.pipeline.clock.windows_reemitted.load(Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasmota_local_time_lands_in_its_window() {
    let broker = Mosquitto::start().await;
    let influx = Influxd::start().await;
    influx.create_db("city").await;
    let mut d = Daemon::start(&config(broker.port, &influx));
    d.wait_connected(1).await;

    // The device's clock shows Amsterdam time, without offset, 1.5 s into the next window.
    let a = (now_ms() / WINDOW_MS + 1) * WINDOW_MS;
    let ts = jiff::Timestamp::from_millisecond(a + 1500).unwrap();
    let local = jiff::tz::TimeZone::get("Europe/Amsterdam")
        .unwrap()
        .to_datetime(ts)
        .strftime("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let payload = format!(r#"{{"Time":"{local}","SDS0X1":{{"PM10":7.5}}}}"#);
    publish(
        broker.port,
        &[("tele/t1/SENSOR".into(), payload.into_bytes(), 1)],
    )
    .await;
    d.wait_points_sent(1).await;
    d.stop().await;
    let rows = influx
        .query_rows(
            "city",
            "SELECT pm10_mean FROM air_quality WHERE sensor = 't1'",
        )
        .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0]["time"].as_i64(),
        Some(a * 1_000_000),
        "window of the local Time"
    );
    assert_eq!(rows[0]["pm10_mean"].as_f64(), Some(7.5));
}
