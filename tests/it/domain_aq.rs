//! The domain layer end to end: mosquitto -> citysensed -> VictoriaMetrics. Readings carry
//! their own timestamps, so the windows (and their indices, humidity-corrected PM and footfall
//! counts) are known exactly and compared with what the store holds.

use crate::support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use support::config::Config;
use support::{now_ms, publish, Daemon, Mosquitto, Victoria};

const WINDOW_MS: i64 = 2000;

fn config(mqtt_port: u16, write_url: &str) -> String {
    Config::new("gw-aq")
        .window(2)
        .grace(1)
        .stats(&["mean", "count"])
        .mqtt(mqtt_port, "cs-domain-aq")
        .subscription("city/{site}/{sensor}/air", "json")
        .timestamp("ts", "unix_ms")
        .subscription("count/{zone}/{sensor}", "json")
        .subscription_line("measurement = \"footfall\"")
        .timestamp("ts", "unix_ms")
        .subscription_line("fields = { in = \"in\", out = \"out\" }")
        .subscription_line("counters = { in = \"counter_total\", out = \"counter_total\" }")
        .section("[aqi]\neaqi = \"2024\"\nlki = true")
        .section(
            "[[humidity_correction]]\nmatch = { sensor = \"sds-1\" }\nkappa = 0.36\nrh_cap = 95\n\
             rh_from = \"site\"",
        )
        // No daily re-base here: a run at 04:00 Amsterdam time would reset occupancy mid-test
        // (the re-base itself is unit-tested in domain::footfall).
        .section("[footfall]\nrebase_at = \"\"")
        .output_v2(write_url)
        .no_health()
        .to_toml()
}

fn msg(topic: &str, json: String) -> (String, Vec<u8>, u8) {
    (topic.to_string(), json.into_bytes(), 1)
}

/// Three windows from `a`: PM and humidity in the first, a people counter's running totals
/// in all three, with a device reboot in the second and more leaving than entering in the
/// third.
fn workload(a: i64) -> Vec<(String, Vec<u8>, u8)> {
    let mut m = Vec::new();
    let air = |site: &str, sensor: &str| format!("city/{site}/{sensor}/air");
    // sds-2 (no correction): PM2.5 mean 12, PM10 mean 50.
    for (i, (p25, p10)) in [(10.0, 45.0), (14.0, 55.0)].into_iter().enumerate() {
        let ts = a + 100 + i as i64 * 500;
        m.push(msg(
            &air("haven", "sds-2"),
            format!(r#"{{"pm2_5": {p25}, "pm10": {p10}, "ts": {ts}}}"#),
        ));
    }
    // sds-1 at site plein, corrected with the humidity of bme-1 at the same site (mean 80 %).
    for (i, p25) in [18.0, 22.0].into_iter().enumerate() {
        let ts = a + 200 + i as i64 * 500;
        m.push(msg(
            &air("plein", "sds-1"),
            format!(r#"{{"pm2_5": {p25}, "ts": {ts}}}"#),
        ));
    }
    for (i, rh) in [78.0, 82.0].into_iter().enumerate() {
        let ts = a + 300 + i as i64 * 500;
        m.push(msg(
            &air("plein", "bme-1"),
            format!(r#"{{"humidity": {rh}, "ts": {ts}}}"#),
        ));
    }
    let totals: [(i64, f64, f64); 9] = [
        // Window A: in 100 -> 110 (+10; the first total counts 0), out 50 -> 52 (+2).
        (0, 100.0, 50.0),
        (1, 104.0, 51.0),
        (2, 110.0, 52.0),
        // Window B: in 110 -> 112, reboot, 3 -> 5 (+2 +3 +2 = 7); out 52 -> 60 (+8).
        (3, 112.0, 53.0),
        (4, 3.0, 55.0),
        (5, 5.0, 60.0),
        // Window C: in +1, out +20: occupancy would go below 0.
        (6, 6.0, 70.0),
        (7, 6.0, 75.0),
        (8, 6.0, 80.0),
    ];
    for (i, inn, out) in totals {
        let ts = a + (i / 3) * WINDOW_MS + 100 + (i % 3) * 400;
        m.push(msg(
            "count/markt/door-1",
            format!(r#"{{"in": {inn}, "out": {out}, "ts": {ts}}}"#),
        ));
    }
    m
}

/// (metric name, sensor) -> {window start ms: value}
type Store = BTreeMap<(String, String), BTreeMap<i64, f64>>;

fn collect(series: &[support::ExportedSeries]) -> Store {
    let mut got = Store::new();
    for s in series {
        let key = (
            s.metric["__name__"].clone(),
            s.metric.get("sensor").cloned().unwrap_or_default(),
        );
        let e = got.entry(key).or_default();
        for (t, v) in s.timestamps.iter().zip(&s.values) {
            e.insert(*t, *v);
        }
    }
    got
}

fn value(got: &Store, name: &str, sensor: &str, t: i64) -> f64 {
    got.get(&(name.to_string(), sensor.to_string()))
        .and_then(|m| m.get(&t))
        .copied()
        .unwrap_or_else(|| panic!("{name}{{sensor={sensor}}} at {t} missing; store: {got:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indices_humidity_correction_and_footfall_land_in_victoria() {
    let broker = Mosquitto::start().await;
    let vm = Victoria::start().await;
    let mut d = Daemon::start(&config(broker.port, &vm.write_url()));
    d.wait_connected(1).await;

    let a = (now_ms() / WINDOW_MS + 1) * WINDOW_MS;
    let (b, c) = (a + WINDOW_MS, a + 2 * WINDOW_MS);
    publish(broker.port, &workload(a)).await;
    // Three air points (sds-1, sds-2, bme-1) in A, one footfall point per window.
    let want = 6;
    tokio::time::sleep(Duration::from_millis(
        (c + WINDOW_MS + 1500 - now_ms()).max(0) as u64,
    ))
    .await;
    d.wait_points_sent(want).await;
    d.stop().await;
    assert_eq!(d.metrics.sink.uplink_points_sent.load(Relaxed), want);
    assert_eq!(d.metrics.pipeline.domain.counter_resets.load(Relaxed), 1);

    let got = collect(
        &vm.export("{__name__=~\"(air_quality|climate|footfall)_.*\"}")
            .await,
    );
    // sds-2: PM2.5 12 (EAQI 2, LKI 2), PM10 50 (EAQI 3, LKI 5): the worst decides.
    assert_eq!(value(&got, "air_quality_pm2_5_mean", "sds-2", a), 12.0);
    assert_eq!(value(&got, "air_quality_pm10_mean", "sds-2", a), 50.0);
    assert_eq!(value(&got, "air_quality_eaqi", "sds-2", a), 3.0);
    assert_eq!(value(&got, "air_quality_lki", "sds-2", a), 5.0);
    assert_eq!(value(&got, "air_quality_aqi_period_s", "sds-2", a), 2.0);
    // eaqi_pollutant is a string field: VictoriaMetrics stores it as 0 (InfluxDB keeps "pm10").
    assert_eq!(value(&got, "air_quality_eaqi_pollutant", "sds-2", a), 0.0);
    assert!(!got.contains_key(&("air_quality_pm2_5_corrected_mean".into(), "sds-2".into())));

    // sds-1: raw mean 20 kept; corrected with RH 80 %: 20 / (1 + (0.36/1.65) / (100/80 - 1)).
    let factor = 1.0 + (0.36 / 1.65) / (100.0 / 80.0 - 1.0);
    assert_eq!(value(&got, "air_quality_pm2_5_mean", "sds-1", a), 20.0);
    let corrected = value(&got, "air_quality_pm2_5_corrected_mean", "sds-1", a);
    assert!((corrected - 20.0 / factor).abs() < 1e-9, "{corrected}");
    assert_eq!(value(&got, "air_quality_rh_capped", "sds-1", a), 0.0);
    // The index uses the corrected mean (10.7: EAQI 2), not the raw 20 (EAQI 3).
    assert_eq!(value(&got, "air_quality_eaqi", "sds-1", a), 2.0);
    assert_eq!(value(&got, "climate_humidity_mean", "bme-1", a), 80.0);

    // Footfall: increments of running totals, a reboot in B, occupancy floored at 0 in C.
    for (t, inn, out, net, occ) in [
        (a, 10.0, 2.0, 8.0, 8.0),
        (b, 7.0, 8.0, -1.0, 7.0),
        (c, 1.0, 20.0, -19.0, 0.0),
    ] {
        assert_eq!(value(&got, "footfall_in", "door-1", t), inn, "in at {t}");
        assert_eq!(value(&got, "footfall_out", "door-1", t), out, "out at {t}");
        assert_eq!(value(&got, "footfall_net", "door-1", t), net, "net at {t}");
        assert_eq!(
            value(&got, "footfall_occupancy", "door-1", t),
            occ,
            "occupancy at {t}"
        );
    }
    assert!(
        !got.keys().any(|(n, _)| n == "footfall_in_mean"),
        "counters have no stats"
    );
}
