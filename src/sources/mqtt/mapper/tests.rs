use super::*;

fn mapper(format: PayloadFormat) -> Mapper {
    Mapper {
        format,
        quantity: None,
        fields: BTreeMap::new(),
        timestamp_path: None,
        timestamp_format: TimestampFormat::Auto,
        ttn: TtnOptions::default(),
        local_tz: None,
    }
}

fn run(
    m: &Mapper,
    payload: &str,
    q: Option<&str>,
) -> Result<Vec<(String, f64, Option<i64>)>, MapError> {
    let mut out = Vec::new();
    m.map(payload.as_bytes(), q, &mut out)?;
    Ok(out
        .into_iter()
        .map(|s| (s.quantity.into_owned(), s.value, s.ts))
        .collect())
}

#[test]
fn plain_numbers_and_esphome_nan() {
    let m = mapper(PayloadFormat::Plain);
    assert_eq!(
        run(&m, " 12.5\n", Some("pm2_5")).unwrap(),
        vec![("pm2_5".into(), 12.5, None)]
    );
    assert_eq!(run(&m, "nan", Some("pm2_5")).unwrap(), vec![]);
    assert_eq!(run(&m, "None", Some("pm2_5")).unwrap(), vec![]);
    assert!(matches!(
        run(&m, "12,5", Some("x")),
        Err(MapError::NotANumber(_))
    ));
    assert!(matches!(
        run(&m, "", Some("x")),
        Err(MapError::NotANumber(_))
    ));
    let mut out = Vec::new();
    assert_eq!(
        m.map(&[0xff, 0xfe], Some("x"), &mut out),
        Err(MapError::NotUtf8)
    );
    let fixed = Mapper {
        quantity: Some("co2".into()),
        ..mapper(PayloadFormat::Plain)
    };
    assert_eq!(
        run(&fixed, "415", None).unwrap(),
        vec![("co2".into(), 415.0, None)]
    );
}

#[test]
fn json_every_numeric_leaf_by_default() {
    let m = mapper(PayloadFormat::Json);
    let mut got = run(
        &m,
        r#"{"pm2_5": 4.1, "pm10": 7, "name": "x", "env": {"Temperature": 21.5}}"#,
        None,
    )
    .unwrap();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("env_temperature".into(), 21.5, None),
            ("pm10".into(), 7.0, None),
            ("pm2_5".into(), 4.1, None)
        ]
    );
    assert!(matches!(run(&m, "[1,2]", None), Err(MapError::NotAnObject)));
    assert!(matches!(run(&m, "{\"a\":", None), Err(MapError::Json(_))));
    assert!(matches!(
        run(&m, "{\"a\":\"x\"}", None),
        Err(MapError::Empty)
    ));
}

#[test]
fn json_timestamp_is_not_a_quantity() {
    let mut m = mapper(PayloadFormat::Json);
    m.timestamp_path = Some("meta.ts".into());
    let got = run(&m, r#"{"pm10": 2, "meta": {"ts": 1700000000}}"#, None).unwrap();
    assert_eq!(
        got,
        vec![("pm10".into(), 2.0, Some(1_700_000_000_000_000_000))]
    );
}

#[test]
fn json_field_paths_and_timestamps() {
    let mut m = mapper(PayloadFormat::Json);
    m.fields.insert("pm2_5".into(), "SDS0X1.PM2.5".into());
    m.fields.insert("t".into(), "bme.t".into());
    m.timestamp_path = Some("ts".into());
    let got = run(&m, r#"{"ts": 1700000000, "SDS0X1": {"PM2.5": 4.1}}"#, None).unwrap();
    assert_eq!(
        got,
        vec![("pm2_5".into(), 4.1, Some(1_700_000_000_000_000_000))]
    );
    let got = run(
        &m,
        r#"{"ts": "2023-11-14T22:13:20Z", "bme": {"t": -3.5}}"#,
        None,
    )
    .unwrap();
    assert_eq!(
        got,
        vec![("t".into(), -3.5, Some(1_700_000_000_000_000_000))]
    );
    assert!(matches!(
        run(&m, r#"{"SDS0X1": {"PM2.5": 4.1}}"#, None),
        Err(MapError::MissingField(_))
    ));
    assert!(matches!(
        run(&m, r#"{"ts": "yesterday", "bme": {"t": 1}}"#, None),
        Err(MapError::Timestamp(_))
    ));
    assert!(matches!(
        run(&m, r#"{"ts": 1, "bme": {"t": "warm"}}"#, None),
        Err(MapError::MissingField(_))
    ));
    m.timestamp_format = TimestampFormat::UnixMs;
    let got = run(&m, r#"{"ts": 1700000000000, "bme": {"t": 1}}"#, None).unwrap();
    assert_eq!(got[0].2, Some(1_700_000_000_000_000_000));
}

#[test]
fn tasmota_sensors_units_and_models() {
    let m = mapper(PayloadFormat::Tasmota);
    let mut out = Vec::new();
    let payload = br#"{"Time":"2026-11-22T10:00:00","SDS0X1":{"PM2.5":4.1,"PM10":7.9},"BME280":{"Temperature":68.0,"Humidity":55.0,"Pressure":760.0},"TempUnit":"F","PressureUnit":"mmHg"}"#;
    m.map(payload, None, &mut out).unwrap();
    let get = |q: &str| {
        out.iter()
            .find(|s| s.quantity == q)
            .unwrap_or_else(|| panic!("{q}"))
    };
    assert_eq!(get("pm2_5").value, 4.1);
    assert_eq!(get("pm2_5").tags, vec![("model", "sds0x1".to_string())]);
    assert!((get("temperature").value - 20.0).abs() < 1e-9);
    assert!((get("pressure").value - 1013.25).abs() < 0.01);
    assert_eq!(get("humidity").tags, vec![("model", "bme280".to_string())]);
    // Local time without offset is not trusted as event time.
    assert!(out.iter().all(|s| s.ts.is_none()));
}

#[test]
fn ttn_uplink() {
    let m = mapper(PayloadFormat::Ttn);
    let payload = r#"{"end_device_ids":{"device_id":"counter-07","application_ids":{"application_id":"city"}},
        "received_at":"2026-11-22T10:00:01.5Z",
        "uplink_message":{"f_port":1,"decoded_payload":{"in":12,"out":9,"battery":"ok"}}}"#;
    let mut out = Vec::new();
    m.map(payload.as_bytes(), None, &mut out).unwrap();
    assert_eq!(out.len(), 2);
    let inn = out.iter().find(|s| s.quantity == "in").unwrap();
    assert_eq!(inn.value, 12.0);
    assert_eq!(inn.tags, vec![("sensor", "counter-07".to_string())]);
    assert_eq!(inn.ts, Some(1_795_341_601_500_000_000));
    let no_decoded = r#"{"received_at":"2026-11-22T10:00:01Z","uplink_message":{"f_port":1}}"#;
    let e = run(&m, no_decoded, None).unwrap_err();
    assert_eq!(e, MapError::NoDecodedPayload);
    assert!(e.to_string().contains("payload formatter"), "{e}");
}

/// A v3 uplink as The Things Stack publishes it (fields trimmed), heard by two gateways.
const TTN_UPLINK: &str = r#"{
  "end_device_ids": {"device_id": "aq-node-3", "application_ids": {"application_id": "enschede-air"},
                     "dev_eui": "70B3D57ED0051234"},
  "correlation_ids": ["as:up:01HX"],
  "received_at": "2026-11-22T10:00:07.123456789Z",
  "uplink_message": {
    "f_port": 2, "f_cnt": 118, "frm_payload": "AHsBBQ==",
    "decoded_payload": {"pm2_5": 12.3, "pm10": 26.1},
    "rx_metadata": [
      {"gateway_ids": {"gateway_id": "gw-a"}, "rssi": -112, "channel_rssi": -112, "snr": -3.5},
      {"gateway_ids": {"gateway_id": "gw-b"}, "rssi": -97, "channel_rssi": -97, "snr": 7.25},
      {"gateway_ids": {"gateway_id": "gw-c"}, "channel_rssi": -120}
    ],
    "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 9}}}
  }
}"#;

fn ttn(options: TtnOptions) -> Mapper {
    Mapper {
        ttn: options,
        ..mapper(PayloadFormat::Ttn)
    }
}

#[test]
fn ttn_radio_and_application_tag_when_configured() {
    let plain = ttn(TtnOptions::default());
    let mut out = Vec::new();
    plain.map(TTN_UPLINK.as_bytes(), None, &mut out).unwrap();
    assert_eq!(out.len(), 2, "no radio quantities unless asked: {out:?}");
    assert_eq!(out[0].tags, vec![("sensor", "aq-node-3".to_string())]);

    let full = ttn(TtnOptions {
        radio: true,
        application_tag: true,
        simulated: false,
    });
    let mut out = Vec::new();
    full.map(TTN_UPLINK.as_bytes(), None, &mut out).unwrap();
    let get = |q: &str| out.iter().find(|s| s.quantity == q).unwrap();
    assert_eq!(get("rssi").value, -97.0, "best gateway");
    assert_eq!(get("snr").value, 7.25, "the best gateway's SNR");
    assert_eq!(get("pm10").value, 26.1);
    assert_eq!(
        get("rssi").tags,
        vec![
            ("sensor", "aq-node-3".to_string()),
            ("application", "enschede-air".to_string())
        ]
    );
    assert!(out.iter().all(|s| s.ts == Some(1_795_341_607_123_456_789)));
}

#[test]
fn ttn_missing_snr_and_metadata() {
    let m = ttn(TtnOptions {
        radio: true,
        ..TtnOptions::default()
    });
    let one_gw = r#"{"received_at":"2026-11-22T10:00:00Z","uplink_message":{"decoded_payload":{"in":3},
        "rx_metadata":[{"gateway_ids":{"gateway_id":"g"},"rssi":-80}]}}"#;
    let got = run(&m, one_gw, None).unwrap();
    let names: Vec<&str> = got.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["rssi", "in"], "snr omitted (TTN drops zero values)");
    let no_meta = r#"{"uplink_message":{"decoded_payload":{"in":3}}}"#;
    assert_eq!(run(&m, no_meta, None).unwrap().len(), 1);
}

#[test]
fn ttn_simulated_uplinks_skipped_unless_configured() {
    let sim = TTN_UPLINK.replacen('{', r#"{"simulated": true,"#, 1);
    let m = ttn(TtnOptions::default());
    let e = run(&m, &sim, None).unwrap_err();
    assert!(e.is_skip() && e == MapError::Simulated);
    let accept = ttn(TtnOptions {
        simulated: true,
        ..TtnOptions::default()
    });
    assert_eq!(run(&accept, &sim, None).unwrap().len(), 2);
}

#[test]
fn line_protocol_payloads() {
    let m = mapper(PayloadFormat::LineProtocol);
    let mut out = Vec::new();
    m.map(
        b"feinstaub,node=esp32-1,junk=x SDS_P1=7.9,SDS_P2=4.1 1700000000000000000\n",
        None,
        &mut out,
    )
    .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].quantity, "sds_p1");
    assert_eq!(out[0].tags, vec![("node", "esp32-1".to_string())]);
    assert_eq!(out[0].ts, Some(1_700_000_000_000_000_000));
    assert!(run(&m, "bad line", None).is_err());
}

#[test]
fn vendor_keys_become_snake_case_quantities() {
    assert_eq!(quantity_name("PM2.5"), "pm2_5");
    assert_eq!(quantity_name("CarbonDioxide"), "co2");
    assert_eq!(quantity_name("DewPoint"), "dew_point");
    assert_eq!(quantity_name("IlluminanceLux"), "illuminance_lux");
    assert_eq!(quantity_name("pm2_5"), "pm2_5");
    assert_eq!(quantity_name("a b/c"), "a_b_c");
}

#[test]
fn tasmota_time_in_the_configured_zone() {
    let tz = jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap();
    let m = Mapper {
        local_tz: Some(tz),
        ..mapper(PayloadFormat::Tasmota)
    };
    let at = |time: &str| {
        let p = format!(r#"{{"Time":"{time}","SDS0X1":{{"PM2.5":4.1}}}}"#);
        run(&m, &p, None).map(|v| v[0].2)
    };
    // Winter: CET, UTC+1. 2026-11-22T11:00 local = 10:00 UTC.
    assert_eq!(
        at("2026-11-22T11:00:00").unwrap(),
        Some(1_795_341_600 * 1_000_000_000)
    );
    // Summer: CEST, UTC+2.
    assert_eq!(
        at("2026-07-01T12:00:00").unwrap(),
        at("2026-07-01T10:00:00Z").unwrap()
    );
    // 02:30 on 2026-10-25 happens twice: the earlier (CEST, 00:30 UTC) is taken.
    assert_eq!(
        at("2026-10-25T02:30:00").unwrap(),
        at("2026-10-25T00:30:00Z").unwrap()
    );
    // An explicit offset (SetOption52 1) wins over the zone.
    assert_eq!(
        at("2026-11-22T10:00:00+00:00").unwrap(),
        Some(1_795_341_600 * 1_000_000_000)
    );
    assert!(matches!(at("yesterday"), Err(MapError::Timestamp(_))));
    // Without a zone, Time is ignored.
    let plain = mapper(PayloadFormat::Tasmota);
    let v = run(
        &plain,
        r#"{"Time":"2026-11-22T11:00:00","X":{"PM10":1}}"#,
        None,
    )
    .unwrap();
    assert_eq!(v[0].2, None);
}

/// Two different keys of one message never merge into one field: keys that name nothing are
/// skipped and counted, a key folding onto a name already taken is skipped and counted.
#[test]
fn keys_never_merge_silently() {
    let counted = |m: &Mapper, payload: &str, q: Option<&str>| {
        let mut out = Vec::new();
        let mut skips = KeySkips::default();
        let r = m.map_counted(payload.as_bytes(), q, &mut out, &mut skips);
        let names: Vec<String> = out.iter().map(|s| s.quantity.to_string()).collect();
        (r, names, skips)
    };
    let json = mapper(PayloadFormat::Json);
    let payload =
        r##"{"":1,"#":2,"ä":3,"中":4,"A":5,"a":6,"t":{"x":7},"t_x":8,"%":{"b":9},"b":10}"##;
    let (r, names, skips) = counted(&json, payload, None);
    assert_eq!(r, Ok(()));
    assert_eq!(names, ["a", "b", "t_x", "ä", "中"]);
    // "", "#", "%".b; "a" after "A", "t_x" after "t"."x".
    assert_eq!((skips.invalid, skips.duplicate), (3, 2));
    let (r, _, skips) = counted(&json, r##"{"":1,"#":2}"##, None);
    assert_eq!((r, skips.invalid), (Err(MapError::Empty), 2));

    let tasmota = mapper(PayloadFormat::Tasmota);
    let payload =
        r#"{"BME280":{"Temperature":20,"temperature":21,"":1},"SHT3X":{"Temperature":19}}"#;
    let (_, names, skips) = counted(&tasmota, payload, None);
    assert_eq!(names, ["temperature", "temperature"], "one per sensor");
    assert_eq!((skips.invalid, skips.duplicate), (1, 1));

    let lp = mapper(PayloadFormat::LineProtocol);
    let (_, names, skips) = counted(&lp, "m a=1,A=2,\\ =3 1\nm a=4 2", None);
    assert_eq!(names, ["a", "a"], "one per point");
    assert_eq!((skips.invalid, skips.duplicate), (1, 1));

    let plain = mapper(PayloadFormat::Plain);
    assert_eq!(
        counted(&plain, "1.5", Some("")).0,
        Err(MapError::NoQuantityName)
    );
    assert_eq!(run(&plain, "1.5", Some("ä")).unwrap()[0].0, "ä");
}
