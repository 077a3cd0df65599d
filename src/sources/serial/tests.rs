//! Tests of the serial source's pure parts: frame values -> readings, warm-up, valid range,
//! tags. The port itself is exercised on real PTYs in `tests/it/serial.rs`.

use std::path::Path;

use super::*;
use crate::config::Config;
use crate::service::metrics::Metrics;

/// The frame builder the in-process feed uses too.
pub(crate) use crate::loadgen::sds011_frame;

fn source(serial: &str) -> (SerialSource, Registry, Arc<Metrics>) {
    let text = format!(
        "[gateway]\nid = \"gw\"\nsite = \"neude\"\n[gateway.tags]\ncity = \"utrecht\"\n\n{serial}\n[output]\napi = \"stdout\"\n"
    );
    let cfg = Config::parse(&text, Path::new("t.toml")).expect("valid config");
    let registry = Registry::new();
    let metrics = Metrics::new();
    let sm = metrics.source("serial", &cfg.serial[0].name);
    let src = SerialSource::build(&cfg.serial[0], &cfg.gateway_tags(), &registry, sm).unwrap();
    (src, registry, metrics)
}

const ACTIVE_SDS011: &str = r#"[[serial]]
name = "pm-a"
port = "/dev/null-not-a-tty"
tags = { model = "sds011-rev2", street = "oudegracht" }
[serial.profile]
base = "sds011"
warmup_secs = 0
protocol = { type = "sds011", mode = "active" }
"#;

fn feed(src: &mut SerialSource, bytes: &[u8], warming: bool) -> Vec<Reading> {
    let mut out = Vec::new();
    // One byte at a time: frames split across reads must still decode.
    for b in bytes {
        src.buf.push(*b);
        src.drain(7, warming, &mut out);
    }
    out
}

#[test]
fn frames_between_garbage_become_readings_and_bad_frames_are_counted() {
    let (mut src, registry, metrics) = source(ACTIVE_SDS011);
    let mut bad = sds011_frame(99, 99);
    bad[8] ^= 0x01;
    let mut wire = vec![0x00, 0x13, 0xAA, 0x00, 0xFF];
    wire.extend(sds011_frame(41, 79));
    wire.extend(bad);
    wire.extend([0x55; 7]);
    wire.extend(sds011_frame(125, 300));
    let readings = feed(&mut src, &wire, false);
    let values: Vec<f64> = readings.iter().map(|r| r.value).collect();
    assert_eq!(values, [4.1, 7.9, 12.5, 30.0]);
    assert!(readings.iter().all(|r| r.ts == 7));
    let sm = &metrics.bad_input_total();
    assert_eq!(*sm, 1, "one bad checksum");
    let info = registry.info(readings[0].series).unwrap();
    assert_eq!(&*info.quantity, "pm2_5");
    assert_eq!(
        info.group_key.to_string(),
        "air_quality,city=utrecht,gateway=gw,model=sds011-rev2,sensor=pm-a,site=neude,street=oudegracht"
    );
    assert!(src.buf.is_empty());
}

#[test]
fn warmup_and_out_of_range_readings_are_dropped_and_counted() {
    let (mut src, _, metrics) = source(ACTIVE_SDS011);
    assert!(feed(&mut src, &sds011_frame(41, 79), true).is_empty());
    // 1500.0 ug/m3 PM10 is past the profile's 999.9: dropped; PM2.5 of the frame is kept.
    let kept = feed(&mut src, &sds011_frame(50, 15000), false);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].value, 5.0);
    let text = metrics.render();
    assert!(
        text.contains("citysense_source_readings_discarded_total{kind=\"serial\",source=\"pm-a\",reason=\"warmup\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("citysense_source_readings_discarded_total{kind=\"serial\",source=\"pm-a\",reason=\"out_of_range\"} 1"),
        "{text}"
    );
}

#[test]
fn measurement_override_and_polled_profile_settings() {
    let (src, registry, _) = source(
        "[[serial]]\nname = \"co2\"\nport = \"/dev/ttyUSB9\"\nprofile = \"mhz19b\"\nmeasurement = \"indoor\"\npoll_interval_secs = 2\n",
    );
    assert_eq!(src.poll_interval, Some(Duration::from_secs(2)));
    assert_eq!(src.warmup, Duration::from_secs(180));
    assert_eq!(src.baud, 9600);
    let info = registry.info(src.series[1]).unwrap();
    assert_eq!(&*info.quantity, "temperature");
    assert_eq!(&*info.group_key.measurement, "indoor");
    assert_eq!(info.group_key.tag("model"), Some("mhz19b"));
}

#[tokio::test]
async fn a_missing_port_is_an_error_not_a_panic() {
    let (src, _, _) =
        source("[[serial]]\nname = \"x\"\nport = \"/nonexistent/ttyUSB0\"\nprofile = \"sds011\"\n");
    assert!(src.open().is_err());
}

#[tokio::test(start_paused = true)]
async fn missing_port_is_retried_with_backoff_until_shutdown() {
    let (src, _, metrics) =
        source("[[serial]]\nname = \"x\"\nport = \"/nonexistent/ttyUSB0\"\nprofile = \"sds011\"\n");
    let (tx, _rx) = mpsc::channel(4);
    let token = CancellationToken::new();
    let task = tokio::spawn(src.run(tx, token.clone()));
    // With time paused, two minutes pass at once: attempts at ~0.5, 1, 2, 4, 8, 16, 30, 30 s.
    tokio::time::sleep(Duration::from_secs(120)).await;
    let attempts = metrics.render();
    token.cancel();
    task.await.unwrap().unwrap();
    let n: u64 = attempts
        .lines()
        .find(|l| l.starts_with("citysense_source_reconnects_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    // Doubling from 0.25..0.5 s capped at 15..30 s: between 7 and 14 attempts in 120 s,
    // never a tight loop.
    assert!((6..=16).contains(&n), "{n} attempts");
    assert_eq!(metrics.sources_connected(), 0);
}
