//! The selective parse against the full one: every case runs both and requires the same
//! samples or the same error, and checks which cases the selective parse takes.

use super::super::{parse_json, KeySkips, MapError, Mapper, Sample, TtnOptions};
use crate::config::{PayloadFormat, TimestampFormat};

fn mapper(format: PayloadFormat, fields: &[(&str, &str)], ts: Option<&str>) -> Mapper {
    Mapper::with_fields(format, fields, ts)
}

/// The mapping as it was before the selective parse: full `serde_json::Value` tree only.
fn full<'a>(m: &'a Mapper, payload: &[u8]) -> Result<Vec<Sample<'a>>, MapError> {
    let mut out = Vec::new();
    let doc = parse_json(payload)?;
    match m.format {
        PayloadFormat::Json => m.map_json(doc, &mut out, &mut KeySkips::default())?,
        PayloadFormat::Ttn => m.map_ttn(&doc, &mut out, &mut KeySkips::default())?,
        other => panic!("not a JSON format: {other:?}"),
    }
    if out.is_empty() {
        return Err(MapError::Empty);
    }
    Ok(out)
}

/// Maps `payload` through `Mapper::map`, asserts it equals the full parse's answer and that the
/// selective parse took the payload iff `selective`; returns the answer.
fn check<'a>(
    m: &'a Mapper,
    payload: &'a [u8],
    selective: bool,
) -> Result<Vec<Sample<'a>>, MapError> {
    let text = String::from_utf8_lossy(payload);
    let mut fast = Vec::new();
    let took = match m.format {
        PayloadFormat::Json => m.map_json_fields(payload, &mut fast),
        _ => m.map_ttn_fields(payload, &mut fast),
    };
    assert_eq!(took, selective, "selective parse taken for {text}");
    if !took {
        assert!(fast.is_empty(), "declined but pushed samples for {text}");
    }
    let mut out = Vec::new();
    let got = m.map(payload, None, &mut out).map(|()| out);
    assert_eq!(got, full(m, payload), "{text}");
    got
}

fn values(r: Result<Vec<Sample<'_>>, MapError>) -> Vec<(String, f64, Option<i64>)> {
    r.unwrap()
        .into_iter()
        .map(|s| (s.quantity.into_owned(), s.value, s.ts))
        .collect()
}

const S: i64 = 1_000_000_000;

#[test]
fn loadgen_payload_takes_the_selective_parse() {
    let m = mapper(
        PayloadFormat::Json,
        &[("pm2_5", "pm2_5"), ("pm10", "pm10")],
        Some("ts"),
    );
    let p = br#"{"sensor":"s00123","seq":123,"pm2_5":41.2,"pm10":95.7,"fw":"1.4.2","rssi":-67,"ts":1732000000123}"#;
    // Milliseconds go through f64, as they always did: 64 ns of rounding.
    let ts = Some(1_732_000_000_123_000_064);
    assert_eq!(
        values(check(&m, p, true)),
        vec![("pm10".into(), 95.7, ts), ("pm2_5".into(), 41.2, ts)]
    );
    // A message carrying a subset of the fields.
    assert_eq!(
        values(check(&m, br#"{"pm10":3,"ts":1700000000}"#, true)).len(),
        1
    );
    assert_eq!(
        check(&m, br#"{"ts":1700000000}"#, true),
        Err(MapError::Empty)
    );
}

#[test]
fn nested_and_dotted_paths() {
    let m = mapper(
        PayloadFormat::Json,
        &[("pm2_5", "SDS0X1.PM2.5"), ("t", "env.bme.t")],
        Some("meta.ts"),
    );
    let p = br#"{"SDS0X1":{"PM2.5":4.1,"PM10":7},"env":{"bme":{"t":-3.5,"h":50}},"meta":{"ts":1700000000,"x":[1,{"y":2}]}}"#;
    assert_eq!(
        values(check(&m, p, true)),
        vec![
            ("pm2_5".into(), 4.1, Some(1_700_000_000 * S)),
            ("t".into(), -3.5, Some(1_700_000_000 * S))
        ]
    );
    // A whole key with a dot wins over the nested reading, as in the full parse.
    let m = mapper(PayloadFormat::Json, &[("x", "a.b")], None);
    assert_eq!(
        values(check(&m, br#"{"a":{"b":1},"a.b":2}"#, true))[0].1,
        2.0
    );
    assert_eq!(
        values(check(&m, br#"{"a.b":2,"a":{"b":1}}"#, true))[0].1,
        2.0
    );
    // A key with a dot on the way: "a.b" then "c".
    let m = mapper(PayloadFormat::Json, &[("x", "a.b.c")], None);
    assert_eq!(
        values(check(&m, br#"{"a.b":{"c":5},"a":{"b":7}}"#, true))[0].1,
        5.0
    );
    // A path through a non-object, or an array, finds nothing.
    assert_eq!(
        check(&m, br#"{"a":[{"b":{"c":1}}],"a.b":3}"#, true),
        Err(MapError::Empty)
    );
}

#[test]
fn escaped_and_repeated_keys() {
    let m = mapper(
        PayloadFormat::Json,
        &[("pm2_5", "pm2_5"), ("t", "a.b")],
        Some("ts"),
    );
    let p = br#"{"pm\u0032_5":4.5,"ts":"2023-11-14T22:13:20\u005a","\u0061":{"b":1}}"#;
    assert_eq!(
        values(check(&m, p, true)),
        vec![
            ("pm2_5".into(), 4.5, Some(1_700_000_000 * S)),
            ("t".into(), 1.0, Some(1_700_000_000 * S))
        ]
    );
    // The last of repeated keys wins, subtree and all.
    let p = br#"{"pm2_5":1,"ts":1,"pm2_5":2,"a":{"b":1},"a":{"c":2},"x":1,"x":2}"#;
    assert_eq!(
        values(check(&m, p, true)),
        vec![("pm2_5".into(), 2.0, Some(S))]
    );
}

#[test]
fn wrong_types_fall_back_to_the_full_parse_and_its_error() {
    let m = mapper(PayloadFormat::Json, &[("pm2_5", "pm2_5")], None);
    for p in [
        r#"{"pm2_5":"4.1"}"#,
        r#"{"pm2_5":null}"#,
        r#"{"pm2_5":true}"#,
        r#"{"pm2_5":[4.1]}"#,
        r#"{"pm2_5":{"v":4.1}}"#,
    ] {
        assert!(
            matches!(
                check(&m, p.as_bytes(), false),
                Err(MapError::MissingField(_))
            ),
            "{p}"
        );
    }
    for p in ["[1,2]", "4", "\"x\"", "null"] {
        assert_eq!(
            check(&m, p.as_bytes(), false),
            Err(MapError::NotAnObject),
            "{p}"
        );
    }
}

#[test]
fn malformed_json_anywhere_is_rejected_as_before() {
    let m = mapper(PayloadFormat::Json, &[("pm2_5", "pm2_5")], None);
    let deep = format!(
        r#"{{"pm2_5":1,"x":{}{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let cases: Vec<Vec<u8>> = vec![
        br#"{"pm2_5":NaN}"#.to_vec(),
        br#"{"pm2_5":1,"x":1e400}"#.to_vec(), // out of range, in a member not kept
        br#"{"pm2_5":1,"x":"\q"}"#.to_vec(),
        b"{\"pm2_5\":1,\"x\":\"\xff\"}".to_vec(),
        br#"{"pm2_5":1} x"#.to_vec(),
        br#"{"pm2_5":1,}"#.to_vec(),
        br#"{"pm2_5":1"#.to_vec(),
        b"".to_vec(),
        deep.into_bytes(),
    ];
    for p in cases {
        assert!(
            matches!(check(&m, &p, false), Err(MapError::Json(_))),
            "{}",
            String::from_utf8_lossy(&p)
        );
    }
}

#[test]
fn numbers_convert_as_serde_json_does() {
    let m = mapper(PayloadFormat::Json, &[("v", "v")], None);
    for (p, want) in [
        (r#"{"v":18446744073709551615}"#, u64::MAX as f64),
        (r#"{"v":-9223372036854775808}"#, i64::MIN as f64),
        (
            r#"{"v":123456789012345678901234567890}"#,
            1.2345678901234568e29,
        ),
        (r#"{"v":-0}"#, -0.0),
        (r#"{"v":1.5e-7}"#, 1.5e-7),
    ] {
        let got = values(check(&m, p.as_bytes(), true))[0].1;
        assert_eq!(got.to_bits(), want.to_bits(), "{p}");
    }
}

#[test]
fn timestamp_forms() {
    let mut m = mapper(PayloadFormat::Json, &[("v", "v")], Some("ts"));
    let at = |m: &Mapper, ts: &str, selective: bool| {
        let p = format!(r#"{{"v":1,"ts":{ts}}}"#);
        check(m, p.as_bytes(), selective).map(|s| s[0].ts)
    };
    assert_eq!(at(&m, "1700000000", true), Ok(Some(1_700_000_000 * S)));
    assert_eq!(at(&m, "1700000000000", true), Ok(Some(1_700_000_000 * S)));
    assert_eq!(
        at(&m, "1700000000.5", true),
        Ok(Some(1_700_000_000 * S + S / 2))
    );
    assert_eq!(
        at(&m, r#""2023-11-14T22:13:20Z""#, true),
        Ok(Some(1_700_000_000 * S))
    );
    assert!(matches!(
        at(&m, r#""yesterday""#, false),
        Err(MapError::Timestamp(_))
    ));
    assert!(matches!(at(&m, "-5", false), Err(MapError::Timestamp(_))));
    assert!(matches!(at(&m, "null", false), Err(MapError::Timestamp(_))));
    assert!(matches!(at(&m, "{}", false), Err(MapError::Timestamp(_))));
    assert!(matches!(
        check(&m, br#"{"v":1}"#, false),
        Err(MapError::MissingField(_))
    ));
    m.timestamp_format = TimestampFormat::UnixMs;
    assert_eq!(at(&m, "1700000000000", true), Ok(Some(1_700_000_000 * S)));
    assert!(matches!(
        at(&m, r#""1700000000000""#, false),
        Err(MapError::Timestamp(_))
    ));
    assert!(matches!(
        at(&m, "1e300", false),
        Err(MapError::Timestamp(_))
    ));
    m.timestamp_format = TimestampFormat::UnixNs;
    assert_eq!(
        at(&m, "1700000000000000000", true),
        Ok(Some(1_700_000_000 * S))
    );
    m.timestamp_format = TimestampFormat::Rfc3339;
    assert!(matches!(
        at(&m, "1700000000", false),
        Err(MapError::Timestamp(_))
    ));
    // The timestamp is not a field value even when a field names its path.
    let m = mapper(PayloadFormat::Json, &[("ts", "ts")], Some("ts"));
    assert_eq!(
        check(&m, br#"{"ts":1700000000}"#, true),
        Err(MapError::Empty)
    );
}

fn ttn(fields: &[(&str, &str)], options: TtnOptions) -> Mapper {
    Mapper {
        ttn: options,
        ..mapper(PayloadFormat::Ttn, fields, None)
    }
}

const UPLINK: &str = r#"{"end_device_ids":{"device_id":"aq-node-3","application_ids":{"application_id":"city"},"dev_eui":"70B3"},
  "correlation_ids":["as:up:01HX"],"received_at":"2026-11-22T10:00:07.5Z",
  "uplink_message":{"f_port":2,"frm_payload":"AHsBBQ==","decoded_payload":{"pm2_5":12.3,"pm10":26.1,"env":{"t":4}},
  "rx_metadata":[{"gateway_ids":{"gateway_id":"gw-a"},"rssi":-112,"snr":-3.5}],"settings":{"data_rate":{"lora":{"bandwidth":125000}}}}}"#;

#[test]
fn ttn_uplinks_take_the_selective_parse() {
    let fields = [("pm2_5", "pm2_5"), ("t", "env.t")];
    let m = ttn(&fields, TtnOptions::default());
    let got = check(&m, UPLINK.as_bytes(), true).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].tags, vec![("sensor", "aq-node-3".to_string())]);
    assert_eq!(got[1].value, 4.0);
    assert_eq!(got[0].ts, Some(1_795_341_607_500_000_000));
    let tagged = ttn(
        &fields,
        TtnOptions {
            application_tag: true,
            ..TtnOptions::default()
        },
    );
    let got = check(&tagged, UPLINK.as_bytes(), true).unwrap();
    assert_eq!(got[0].tags[1], ("application", "city".to_string()));
    // Radio quantities need rx_metadata: the full parse.
    let radio = ttn(
        &fields,
        TtnOptions {
            radio: true,
            ..TtnOptions::default()
        },
    );
    assert_eq!(check(&radio, UPLINK.as_bytes(), false).unwrap().len(), 4);
}

#[test]
fn ttn_edge_cases_match_the_full_parse() {
    let m = ttn(&[("pm2_5", "pm2_5")], TtnOptions::default());
    let up = |extra: &str, decoded: &str| {
        format!(r#"{{{extra}"uplink_message":{{"f_port":1,"decoded_payload":{decoded}}}}}"#)
    };
    let ok = |p: String| values(check(&m, p.as_bytes(), true));
    // No received_at, or not a string: time of receipt.
    assert_eq!(ok(up("", r#"{"pm2_5":1}"#))[0].2, None);
    assert_eq!(ok(up(r#""received_at":5,"#, r#"{"pm2_5":1}"#))[0].2, None);
    // A device id that is not a string is no tag; an escaped one is unescaped.
    let p = up(r#""end_device_ids":{"device_id":7},"#, r#"{"pm2_5":1}"#);
    assert!(check(&m, p.as_bytes(), true).unwrap()[0].tags.is_empty());
    let p = up(
        r#""end_device_ids":{"device_id":"n\u00f6de"},"#,
        r#"{"pm2_5":1}"#,
    );
    assert_eq!(check(&m, p.as_bytes(), true).unwrap()[0].tags[0].1, "nöde");
    let p = up(r#""simulated":false,"#, r#"{"pm2_5":1}"#);
    assert_eq!(ok(p).len(), 1);
    let p = up(
        r#""end_device_ids":[1],"received_at":"2026-11-22T10:00:00Z","#,
        r#"{"pm2_5":2}"#,
    );
    assert_eq!(ok(p)[0].1, 2.0);
    assert_eq!(
        check(&m, up("", "null").as_bytes(), true),
        Err(MapError::Empty)
    );
    // Errors come from the full parse, unchanged.
    let sim = up(r#""simulated":true,"#, r#"{"pm2_5":1}"#);
    assert_eq!(check(&m, sim.as_bytes(), false), Err(MapError::Simulated));
    let bad_time = up(r#""received_at":"soon","#, r#"{"pm2_5":1}"#);
    assert!(matches!(
        check(&m, bad_time.as_bytes(), false),
        Err(MapError::Timestamp(_))
    ));
    let no_decoded = br#"{"uplink_message":{"f_port":0}}"#;
    assert_eq!(
        check(&m, no_decoded, false),
        Err(MapError::NoDecodedPayload)
    );
    assert!(matches!(
        check(&m, br#"{"received_at":"2026-11-22T10:00:00Z"}"#, false),
        Err(MapError::MissingField(_))
    ));
    let text = up("", r#"{"pm2_5":"12"}"#);
    assert!(matches!(
        check(&m, text.as_bytes(), false),
        Err(MapError::MissingField(_))
    ));
    assert!(matches!(
        check(&m, b"[]", false),
        Err(MapError::MissingField(_))
    ));
    assert!(matches!(check(&m, b"{", false), Err(MapError::Json(_))));
}

#[test]
fn wanted_paths_compare_across_head_and_tail() {
    use super::Wanted;
    let w = Wanted::new("ab.", "cd.e");
    assert!(w.has_at(0, b"ab.cd") && w.has_at(2, b".c") && w.has_at(3, b"cd.e"));
    assert!(w.has_at(7, b""));
    assert!(!w.has_at(1, b"b.cx") && !w.has_at(5, b".ef") && !w.has_at(8, b"x"));
    let plain = Wanted::new("", "ab.cd.f");
    assert!(w.same_prefix(&plain, 5) && !w.same_prefix(&plain, 7));
}
