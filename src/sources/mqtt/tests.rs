use super::*;
use crate::service::metrics::Metrics;

fn source(sub: &str) -> (MqttSource, Registry) {
    let text = format!("host = \"127.0.0.1\"\n[[subscription]]\n{sub}");
    let cfg: MqttConfig = toml::from_str(&text).unwrap();
    let registry = Registry::new();
    let metrics = Metrics::new().source("mqtt", "test");
    let tags = vec![
        ("gateway".to_string(), "gw".to_string()),
        ("site".to_string(), "default-site".to_string()),
    ];
    let src = MqttSource::build(&cfg, "gw", tags, registry.clone(), metrics).unwrap();
    (src, registry)
}

#[test]
fn topic_captures_become_tags_with_precedence() {
    let (mut src, reg) = source("topic = \"sensors/{site}/{sensor}/{quantity}\"\nformat = \"plain\"\ntags = { zone = \"centrum\" }");
    let mut out = Vec::new();
    src.map("sensors/neude/sds-1/PM2.5", b"12.5", 42, &mut out)
        .unwrap();
    assert_eq!(out, vec![Reading::received(out[0].series, 12.5, 42)]);
    let info = reg.info(out[0].series).unwrap();
    assert_eq!(&*info.quantity, "pm2_5");
    assert_eq!(
        info.group_key.to_string(),
        "air_quality,gateway=gw,sensor=sds-1,site=neude,zone=centrum"
    );
}

#[test]
fn series_are_cached_per_topic_and_quantity() {
    let (mut src, reg) = source("topic = \"n/{sensor}\"\nformat = \"json\"");
    let mut out = Vec::new();
    src.map("n/a", br#"{"pm10": 1, "temperature": 2}"#, 0, &mut out)
        .unwrap();
    src.map("n/a", br#"{"pm10": 3, "temperature": 4}"#, 0, &mut out)
        .unwrap();
    src.map("n/b", br#"{"pm10": 5}"#, 0, &mut out).unwrap();
    assert_eq!(out.len(), 5);
    assert_eq!(out[0].series, out[2].series);
    assert_eq!(out[1].series, out[3].series);
    assert_ne!(out[0].series, out[4].series);
    assert_eq!(reg.series_count(), 3);
    let climate = reg.info(out[1].series).unwrap();
    assert_eq!(&*climate.group_key.measurement, "climate");
}

#[test]
fn payload_tags_split_series() {
    let (mut src, reg) =
        source("topic = \"v3/{_}/devices/{_}/up\"\nformat = \"ttn\"\nmeasurement = \"footfall\"");
    let mut out = Vec::new();
    for dev in ["c1", "c2", "c1"] {
        let p = format!(
            r#"{{"end_device_ids":{{"device_id":"{dev}"}},"uplink_message":{{"decoded_payload":{{"in":1}}}}}}"#
        );
        src.map("v3/city@ttn/devices/x/up", p.as_bytes(), 7, &mut out)
            .unwrap();
    }
    assert_eq!(out[0].series, out[2].series);
    assert_ne!(out[0].series, out[1].series);
    assert_eq!(
        reg.info(out[1].series).unwrap().group_key.tag("sensor"),
        Some("c2")
    );
}

#[test]
fn malformed_payloads_are_errors_not_panics() {
    let (mut src, _) = source("topic = \"n/{sensor}/{quantity}\"\nformat = \"plain\"");
    let mut out = Vec::new();
    for bad in [&b"abc"[..], b"", b"\xff\xfe", b"1e999999", b"--1"] {
        let r = src.map("n/a/pm10", bad, 0, &mut out);
        // 1e999999 parses as inf: accepted here, dropped as non-finite by the aggregator.
        assert!(
            r.is_err() || out.last().is_some_and(|r| !r.value.is_finite()),
            "{bad:?}"
        );
    }
    assert!(matches!(
        src.map("other/topic", b"1", 0, &mut out),
        Err(MapError::UnmatchedTopic)
    ));
}

#[test]
fn identifier_payloads_become_register_updates_only() {
    use crate::config::AggregationConfig;
    use crate::config::PrivacyConfig;
    use crate::privacy::{hll::Update, Privacy};
    let (src, reg) =
        source("topic = \"scan/{sensor}\"\nformat = \"json\"\nidentifier_path = \"probes.mac\"");
    let hub = Arc::new(Privacy::new(
        &PrivacyConfig::default(),
        &AggregationConfig::default(),
        Default::default(),
    ));
    let mut src = src.with_privacy(hub.clone());
    let mut out = Vec::new();
    let payload = br#"{"probes":[{"mac":"AA:BB:CC:00:11:22","rssi":-70},{"mac":"aa-bb-cc-00-11-23","rssi":-80}]}"#;
    src.map("scan/s1", payload, 42, &mut out).unwrap();
    assert_eq!(out.len(), 2, "one reading per identifier, none for rssi");
    assert!(out
        .iter()
        .all(|r| Update::from_value(r.value).is_some() && r.ts == 42));
    assert!(hub.is_identifier_series(out[0].series));
    let info = reg.info(out[0].series).unwrap();
    assert_eq!(&*info.quantity, "unique_devices");
    assert_eq!(
        info.group_key.to_string(),
        "footfall,gateway=gw,sensor=s1,site=default-site"
    );
    // Errors are fixed strings: nothing of the payload in them.
    for bad in [
        &br#"{"probes":[{"mac":"AA:BB:CC:00:11:22""#[..],
        br#"{"mac2":"AA:BB:CC:00:11:22"}"#,
    ] {
        let e = src.map("scan/s1", bad, 42, &mut out).unwrap_err();
        assert!(matches!(e, MapError::Identifier(_)), "{e:?}");
        let text = e.to_string().to_lowercase();
        assert!(!text.contains("aa:bb") && !text.contains("mac2"), "{text}");
    }
    // Without a hub, identifiers are refused, never mapped as values.
    let (mut bare, _) = source("topic = \"scan/{sensor}\"\nidentifier_path = \"mac\"");
    assert!(bare
        .map(
            "scan/s1",
            br#"{"mac":"aa:bb:cc:00:11:22","rssi":-1}"#,
            0,
            &mut out
        )
        .is_err());
}

#[test]
fn a_full_topic_cache_starts_over_with_the_same_series() {
    let (mut src, reg) = source("topic = \"n/{sensor}/{quantity}\"\nformat = \"plain\"");
    src.max_topics = 2;
    let mut out = Vec::new();
    for topic in [
        "n/a/PM10",
        "n/b/PM10",
        "n/c/Temperature",
        "n/a/PM10",
        "n/c/Temperature",
    ] {
        src.map(topic, b"1", 0, &mut out).unwrap();
        assert!(src.topics.len() <= 2 && src.keys.len() <= 2, "bounded");
    }
    assert_eq!(out[3].series, out[0].series);
    assert_eq!(out[4].series, out[2].series);
    assert_eq!(reg.series_count(), 3);
    let info = reg.info(out[2].series).unwrap();
    assert_eq!(&*info.quantity, "temperature");
    assert_eq!(info.group_key.tag("sensor"), Some("c"));
}

#[test]
fn sample_buffer_is_reused_across_messages() {
    let buf: Vec<Sample<'static>> = Vec::with_capacity(8);
    let at = buf.as_ptr() as usize;
    let reused: Vec<Sample<'_>> = recycle(buf);
    assert_eq!((reused.as_ptr() as usize, reused.capacity()), (at, 8));
    // And through the source: mapping leaves the buffer empty, keeping its capacity.
    let (mut src, _) = source("topic = \"n/{sensor}\"\nformat = \"json\"");
    let mut out = Vec::new();
    src.map("n/a", br#"{"pm10": 1, "temperature": 2}"#, 0, &mut out)
        .unwrap();
    src.map("n/a", b"[", 0, &mut out).unwrap_err();
    assert!(src.samples.is_empty() && src.samples.capacity() >= 2);
}

/// A reading refused by `max_series` is a series-limit drop, not bad input.
#[test]
fn series_limit_is_its_own_reason() {
    let text =
        "host = \"127.0.0.1\"\n[[subscription]]\ntopic = \"n/{quantity}\"\nformat = \"plain\"";
    let cfg: MqttConfig = toml::from_str(text).unwrap();
    let metrics = Metrics::new();
    let sm = metrics.source("mqtt", "test");
    let registry = Registry::with_limit(1);
    let mut src = MqttSource::build(&cfg, "gw", Vec::new(), registry, sm.clone()).unwrap();
    let mut out = Vec::new();
    src.map("n/pm10", b"1", 0, &mut out).unwrap();
    src.map("n/pm2_5", b"2", 0, &mut out).unwrap();
    src.map("n/pm2_5", b"3", 0, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(sm.bad_input.load(Relaxed), 0);
    use crate::service::metrics::DropReason;
    assert_eq!(metrics.dropped_count(DropReason::SeriesLimit), 2);
    assert!(metrics
        .render()
        .contains("citysense_readings_dropped_total{reason=\"series_limit\"} 2"));
}
