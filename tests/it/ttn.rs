//! The Things Stack v3 uplinks end to end: realistic uplink JSON (a people counter and an
//! air-quality node, heard by several gateways) over a real mosquitto into a real
//! VictoriaMetrics. The uplinks' `received_at` lies two windows after their arrival, so the
//! points' timestamps prove the event time came from the payload.

use crate::support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use support::config::Config;
use support::{now_ms, publish, Daemon, ExportedSeries, Mosquitto, Victoria};

const WINDOW_MS: i64 = 2000;

fn rfc3339(ms: i64) -> String {
    // Civil date from days since the epoch (Howard Hinnant's algorithm), enough for a test.
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}456789Z")
}

fn uplink(dev: &str, app: &str, received_ms: i64, decoded: &str, extra: &str) -> Vec<u8> {
    format!(
        r#"{{
  "end_device_ids": {{"device_id": "{dev}", "application_ids": {{"application_id": "{app}"}},
    "dev_eui": "70B3D57ED0050001", "join_eui": "0000000000000000", "dev_addr": "260B1234"}},
  "correlation_ids": ["as:up:01HXYZ", "gs:uplink:01HXYZ"],
  "received_at": "{received}",{extra}
  "uplink_message": {{
    "session_key_id": "AYZ=", "f_port": 1, "f_cnt": 4711, "frm_payload": "DAk=",
    {decoded}
    "rx_metadata": [
      {{"gateway_ids": {{"gateway_id": "gw-stadhuis", "eui": "B827EBFFFE000001"}},
        "time": "{received}", "rssi": -109, "channel_rssi": -109, "snr": -4.75, "uplink_token": "x"}},
      {{"gateway_ids": {{"gateway_id": "gw-oude-markt", "eui": "B827EBFFFE000002"}},
        "rssi": -88, "channel_rssi": -88, "snr": 9.5, "uplink_token": "y"}}
    ],
    "settings": {{"data_rate": {{"lora": {{"bandwidth": 125000, "spreading_factor": 7}}}},
      "frequency": "867100000"}},
    "received_at": "{received}", "consumed_airtime": "0.051456s",
    "network_ids": {{"net_id": "000013", "tenant_id": "ttn", "cluster_id": "eu1"}}
  }}
}}"#,
        received = rfc3339(received_ms)
    )
    .into_bytes()
}

fn config(mqtt: u16, vm: &str) -> String {
    Config::new("gw-ttn")
        .window(2)
        .grace(1)
        .stats(&["mean", "max", "count"])
        .no_health()
        .mqtt(mqtt, "cs-ttn")
        .subscription("v3/{_}/devices/{_}/up", "ttn")
        .subscription_line("qos = 0")
        .subscription_line("ttn_radio = true")
        .subscription_line("ttn_application_tag = true")
        .output_v2(vm)
        .to_toml()
}

fn value_at(series: &[ExportedSeries], name: &str, dev: &str) -> (i64, f64) {
    let s = series
        .iter()
        .find(|s| {
            s.metric["__name__"] == name && s.metric.get("sensor").map(String::as_str) == Some(dev)
        })
        .unwrap_or_else(|| panic!("{name} of {dev} in {series:#?}"));
    assert_eq!(s.values.len(), 1, "{name}: one window");
    (s.timestamps[0], s.values[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_and_air_quality_uplinks_land_in_the_received_at_window() {
    let broker = Mosquitto::start().await;
    let vm = Victoria::start().await;
    let mut d = Daemon::start(&config(broker.port, &vm.write_url()));
    d.wait_connected(1).await;

    // Two windows after the arrival window: within future_tolerance, but not "now".
    let window = (now_ms() / WINDOW_MS + 2) * WINDOW_MS;
    let counter = r#""decoded_payload": {"in": 12, "out": 9, "battery": 3.6},"#;
    let air = r#""decoded_payload": {"pm2_5": 8.5, "pm10": 14.25, "temperature": 11.5},"#;
    let topic = |dev: &str| format!("v3/enschede-footfall@ttn/devices/{dev}/up");
    let msgs = vec![
        (
            topic("counter-7"),
            uplink("counter-7", "enschede-footfall", window + 300, counter, ""),
            0,
        ),
        (
            topic("counter-7"),
            uplink(
                "counter-7",
                "enschede-footfall",
                window + 900,
                &counter.replace("12", "20"),
                "",
            ),
            0,
        ),
        (
            topic("aq-3"),
            uplink("aq-3", "enschede-air", window + 500, air, ""),
            0,
        ),
        // Simulated from the console: skipped. No formatter: bad input.
        (
            topic("sim-1"),
            uplink(
                "sim-1",
                "enschede-air",
                window + 600,
                air,
                r#" "simulated": true,"#,
            ),
            0,
        ),
        (
            topic("raw-1"),
            uplink("raw-1", "enschede-air", window + 700, "", ""),
            0,
        ),
    ];
    publish(broker.port, &msgs).await;
    let deadline = window + 2 * WINDOW_MS + 1500 - now_ms();
    tokio::time::sleep(Duration::from_millis(deadline.max(0) as u64)).await;
    d.wait_points_sent(4).await;
    d.stop().await;

    let series = vm
        .export("{__name__=~\"(footfall|air_quality|climate|sensor_health|sensor)_.*\"}")
        .await;
    let (ts, v) = value_at(&series, "footfall_in_mean", "counter-7");
    assert_eq!(
        (ts, v),
        (window, 16.0),
        "the received_at window, mean of 12 and 20"
    );
    assert_eq!(value_at(&series, "footfall_in_count", "counter-7").1, 2.0);
    assert_eq!(value_at(&series, "footfall_out_max", "counter-7").1, 9.0);
    assert_eq!(
        value_at(&series, "air_quality_pm2_5_mean", "aq-3"),
        (window, 8.5)
    );
    assert_eq!(value_at(&series, "air_quality_pm10_mean", "aq-3").1, 14.25);
    assert_eq!(
        value_at(&series, "climate_temperature_mean", "aq-3").1,
        11.5
    );
    assert_eq!(
        value_at(&series, "sensor_health_rssi_max", "aq-3"),
        (window, -88.0)
    );
    assert_eq!(
        value_at(&series, "sensor_health_snr_mean", "counter-7").1,
        9.5
    );
    let tags: BTreeMap<_, _> = series
        .iter()
        .find(|s| s.metric["__name__"] == "air_quality_pm2_5_mean")
        .unwrap()
        .metric
        .clone();
    assert_eq!(
        tags.get("application").map(String::as_str),
        Some("enschede-air")
    );
    assert_eq!(tags.get("gateway").map(String::as_str), Some("gw-ttn"));
    assert!(
        series.iter().all(|s| !matches!(
            s.metric.get("sensor").map(String::as_str),
            Some("sim-1" | "raw-1")
        )),
        "no series for the simulated or undecoded uplink"
    );
    let src = &d.metrics.source_list()[0];
    assert_eq!(src.skipped.load(Relaxed), 1, "the simulated uplink");
    assert_eq!(
        src.bad_input.load(Relaxed),
        1,
        "the uplink without decoded_payload"
    );
}
