//! Hostile MQTT input against a real mosquitto and a real VictoriaMetrics: no message can stop
//! the MQTT source or keep later messages out, and what is refused is counted by reason.
//! - a timestamp with a multi-byte character in its UTC offset (JSON `timestamp_path`, TTN
//!   `received_at`, Tasmota `Time`) is bad input, not a dead source;
//! - a QoS 1 message larger than the payload limit is acknowledged and counted once, not
//!   redelivered forever ahead of everything else;
//! - payload keys that name nothing, or the same field as another key, are skipped and
//!   counted instead of merging; readings past `max_series` count as `series_limit` drops.

use crate::support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use citysense::service::metrics::{DropReason, Reject};
use support::config::Config;
use support::{publish, wait_until, Daemon, Mosquitto, Victoria};

/// A UTC offset whose second byte starts a three-byte character (`€`): the old parser cut the
/// offset at fixed byte positions and panicked here.
const BAD_OFFSET_TIME: &str = "2026-11-22T10:00:00+€:0";

/// The config every test here shares; each adds its subscriptions.
fn config(port: u16, vm: &Victoria) -> Config {
    Config::new("gw")
        .window(60)
        .stats(&["mean", "count"])
        .mqtt(port, "cs-hostile")
        .output_v2(&vm.write_url())
        .no_health()
}

async fn wait_aggregated(d: &Daemon, n: u64) {
    let m = d.metrics.clone();
    let what = format!("{n} readings aggregated");
    wait_until(Duration::from_secs(15), &what, || {
        let m = m.clone();
        async move { m.pipeline.readings_aggregated.load(Relaxed) >= n }
    })
    .await;
}

/// Metric name -> (sensor tag, value) of every `_mean` point in the store matching `selector`.
async fn means(vm: &Victoria, selector: &str) -> BTreeMap<String, Vec<(String, f64)>> {
    let mut out: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    for s in vm.export(selector).await {
        let name = s.metric["__name__"].clone();
        if name.ends_with("_mean") {
            let sensor = s.metric.get("sensor").cloned().unwrap_or_default();
            out.entry(name).or_default().push((sensor, s.values[0]));
        }
    }
    out
}

fn now_rfc3339() -> String {
    citysense::time::format_rfc3339(citysense::reading::now_ns())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_ascii_utc_offset_is_bad_input_and_later_messages_arrive() {
    let broker = Mosquitto::start().await;
    let vm = Victoria::start().await;
    let cfg = config(broker.port, &vm)
        .subscription("j/{sensor}", "json")
        .subscription_line("timestamp_path = \"ts\"")
        .subscription("v3/{_}/devices/{sensor}/up", "ttn")
        .subscription_line("qos = 0")
        .subscription("tele/{sensor}/SENSOR", "tasmota")
        .subscription_line("time_zone = \"UTC\"");
    let mut d = Daemon::start(&cfg.to_toml());
    d.wait_connected(1).await;
    let json = |t: &str, v: u32| format!(r#"{{"ts":"{t}","pm10":{v}}}"#);
    let ttn = |t: &str, v: u32| {
        format!(
            r#"{{"end_device_ids":{{"device_id":"t1"}},"received_at":"{t}",
                "uplink_message":{{"decoded_payload":{{"pm10":{v}}}}}}}"#
        )
    };
    // Tasmota's `Time` is local time without an offset (read in `time_zone`).
    let tasmota = |t: &str, v: u32| format!(r#"{{"Time":"{t}","SDS0X1":{{"PM10":{v}}}}}"#);
    let (now, local) = (now_rfc3339(), now_rfc3339()[..19].to_string());
    let msg = |topic: &str, payload: String| (topic.to_string(), payload.into_bytes(), 1);
    publish(
        broker.port,
        &[
            msg("j/j1", json(BAD_OFFSET_TIME, 9)),
            msg("v3/app@ttn/devices/t1/up", ttn(BAD_OFFSET_TIME, 9)),
            msg("tele/s1/SENSOR", tasmota(BAD_OFFSET_TIME, 9)),
            msg("j/j1", json(&now, 1)),
            msg("v3/app@ttn/devices/t1/up", ttn(&now, 2)),
            msg("tele/s1/SENSOR", tasmota(&local, 3)),
        ],
    )
    .await;
    wait_aggregated(&d, 3).await;
    let src = d.metrics.source_list()[0].clone();
    assert_eq!(src.bad_input.load(Relaxed), 3, "the three bad timestamps");
    assert_eq!(src.connected.load(Relaxed), 1);
    d.stop().await;
    let stored = means(&vm, "{__name__=\"air_quality_pm10_mean\"}").await;
    let mut got = stored["air_quality_pm10_mean"].clone();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let want = [("j1", 1.0), ("s1", 3.0), ("t1", 2.0)].map(|(s, v)| (s.to_string(), v));
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_qos1_message_is_acknowledged_and_counted_once() {
    let broker = Mosquitto::start().await;
    let vm = Victoria::start().await;
    let cfg = config(broker.port, &vm)
        .subscription("n/{sensor}/{quantity}", "plain")
        .subscription_line("qos = 1");
    let mut d = Daemon::start(&cfg.to_toml());
    d.wait_connected(1).await;
    // Over the 256 KiB payload limit: a number padded with spaces, so it would even map.
    let mut big = b"7".to_vec();
    big.resize(300 * 1024, b' ');
    let m = |v: &str| ("n/a/pm10".to_string(), v.as_bytes().to_vec(), 1);
    publish(
        broker.port,
        &[("n/a/pm10".to_string(), big, 1), m("4"), m("6")],
    )
    .await;
    wait_aggregated(&d, 2).await;
    // A redelivery would show as a second count; give it the time of a few reconnects.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let src = d.metrics.source_list()[0].clone();
    assert_eq!(src.rejected_count(Reject::TooLarge), 1);
    assert_eq!(src.bad_input.load(Relaxed), 1);
    assert_eq!(src.connected.load(Relaxed), 1, "source up");
    assert_eq!(
        src.reconnects.load(Relaxed),
        0,
        "the connection never broke"
    );
    assert_eq!(d.metrics.pipeline.readings_aggregated.load(Relaxed), 2);
    let text = d.metrics.render();
    let too_large = text.lines().find(|l| {
        l.starts_with("citysense_source_rejected_total{") && l.contains("reason=\"too_large\"}")
    });
    assert!(too_large.is_some_and(|l| l.ends_with(" 1")), "{text}");
    d.stop().await;
    let stored = means(&vm, "{__name__=\"air_quality_pm10_mean\"}").await;
    assert_eq!(
        stored["air_quality_pm10_mean"],
        [("a".to_string(), 5.0)],
        "the two small readings, nothing of the large one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_never_merge_and_series_limit_drops_have_their_reason() {
    let broker = Mosquitto::start().await;
    let vm = Victoria::start().await;
    let cfg = config(broker.port, &vm)
        .aggregation_line("max_series = 4")
        .subscription("j/{sensor}", "json")
        .subscription_line("measurement = \"m\"");
    let mut d = Daemon::start(&cfg.to_toml());
    d.wait_connected(1).await;
    let msg = |topic: &str, payload: &str| (topic.to_string(), payload.as_bytes().to_vec(), 1);
    publish(
        broker.port,
        &[
            // "" and "#" name nothing; "a" folds onto the name "A" took (keys come sorted).
            msg("j/s1", r##"{"":1,"#":2,"ä":3,"A":5,"a":4}"##),
            // Series 3 and 4, then one past max_series.
            msg("j/s2", r#"{"x":1,"y":2,"z":3}"#),
        ],
    )
    .await;
    wait_aggregated(&d, 4).await;
    let src = d.metrics.source_list()[0].clone();
    assert_eq!(src.rejected_count(Reject::InvalidKey), 2);
    assert_eq!(src.rejected_count(Reject::DuplicateKey), 1);
    assert_eq!(d.metrics.dropped_count(DropReason::SeriesLimit), 1);
    assert_eq!(src.bad_input.load(Relaxed), 0, "nothing here is malformed");
    d.stop().await;
    let stored = means(&vm, "{__name__=~\"m_.*\"}").await;
    let names: Vec<&str> = stored.keys().map(String::as_str).collect();
    assert_eq!(names, ["m_a_mean", "m_x_mean", "m_y_mean", "m_ä_mean"]);
    assert_eq!(stored["m_a_mean"], [("s1".to_string(), 5.0)]);
    assert_eq!(stored["m_ä_mean"], [("s1".to_string(), 3.0)]);
}
