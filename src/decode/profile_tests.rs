//! Tests of sensor profiles and the built-in profile files (kept apart for length).

use super::*;
use crate::decode::Step;

#[test]
fn every_builtin_parses_builds_and_is_named_after_its_file() {
    let builtins = builtin_profiles();
    assert_eq!(builtins.len(), 8);
    for (model, text) in builtins {
        let profile = SensorProfile::parse(text).unwrap_or_else(|e| panic!("{model}: {e}"));
        assert_eq!(profile.model, model);
        let decoder = Decoder::build(&profile).unwrap_or_else(|e| panic!("{model}: {e}"));
        let names: Vec<&str> = profile.quantities.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(decoder.quantities(), names.as_slice(), "{model}");
        assert_eq!(
            decoder.poll_command().is_some(),
            profile.poll_interval_secs().is_some(),
            "{model}"
        );
    }
}

#[test]
fn slots_follow_profile_order_and_ranges_apply() {
    let text = r#"
model = "pm"
protocol = { type = "sds011", mode = "active" }
[[quantities]]
name = "pm10"
unit = "ug/m3"
max = 999.9
[[quantities]]
name = "pm2_5"
unit = "ug/m3"
"#;
    let profile = SensorProfile::parse(text).unwrap();
    assert_eq!(profile.baud(), 9600);
    assert_eq!(profile.poll_interval_secs(), None);
    let mut d = profile.build().unwrap();
    let frame = [0xAA, 0xC0, 0xD4, 0x04, 0x3A, 0x0A, 0xA1, 0x60, 0x1D, 0xAB];
    let Step::Frame { values, .. } = d.decode(&frame) else {
        panic!("no frame");
    };
    assert_eq!(values.get(0), Some(261.8));
    assert_eq!(values.get(1), Some(123.6));
    assert_eq!(profile.valid_range(0), Some((f64::NEG_INFINITY, 999.9)));
    assert_eq!(profile.valid_range(1), None);
    assert_eq!(profile.valid_range(2), None);
    assert!(profile.in_range(0, 999.9));
    assert!(!profile.in_range(0, 1000.0));
    assert!(profile.in_range(1, 1e9));
}

#[test]
fn defaults_apply() {
    let profile = SensorProfile::parse(
        "model = \"x\"\nprotocol = { type = \"sps30\" }\n\
         quantities = [{ name = \"pm2_5\", unit = \"ug/m3\" }]",
    )
    .unwrap();
    assert_eq!(profile.baud(), 115_200);
    assert_eq!(profile.warmup_secs, 0);
    assert_eq!(
        profile.poll_interval_secs(),
        Some(DEFAULT_POLL_INTERVAL_SECS)
    );
    assert_eq!(
        profile.protocol,
        Protocol::Sps30 {
            output: Sps30Output::Float
        }
    );
    let line = SensorProfile::parse(
        "model = \"x\"\nprotocol = { type = \"line\", format = \"kv\" }\n\
         quantities = [{ name = \"in\", unit = \"count\" }]",
    )
    .unwrap();
    let Protocol::Line(options) = &line.protocol else {
        panic!("not line");
    };
    assert_eq!(options.max_line_len, DEFAULT_MAX_LINE_LEN);
    assert_eq!(options.checksum, LineChecksum::None);
}

fn parse_err(text: &str) -> ProfileError {
    match SensorProfile::parse(text) {
        Ok(p) => p.build().map(|_| ()).unwrap_err(),
        Err(e) => e,
    }
}

#[test]
fn bad_profiles_are_rejected() {
    let q = "quantities = [{ name = \"co2\", unit = \"ppm\" }]";
    let head = "model = \"m\"\nprotocol = { type = \"mhz19b\" }";
    let cases = [
        (format!("{head}\n{q}\ncolour = 1"), "unknown field"),
        (
            format!("model = \"m\"\nprotocol = {{ type = \"mhz19b\", speed = 1 }}\n{q}"),
            "unknown field",
        ),
        (
            format!("model = \"m\"\nprotocol = {{ type = \"line\", format = \"kv\", x = 1 }}\n{q}"),
            "unknown field",
        ),
        (format!("model = \"m\"\nprotocol = {{ type = \"bme280\" }}\n{q}"), "unknown variant"),
        (format!("{head}\nquantities = []"), "no quantities"),
        (
            format!("{head}\nquantities = [{{ name = \"pm2_5\", unit = \"ug/m3\" }}]"),
            "does not decode",
        ),
        (
            format!("{head}\nquantities = [{{ name = \"co2\", unit = \"ppm\", min = 5.0, max = 1.0 }}]"),
            "not below",
        ),
        (
            format!("{head}\nquantities = [{{ name = \"co2\", unit = \"a\" }}, {{ name = \"co2\", unit = \"b\" }}]"),
            "twice",
        ),
        (format!("{head}\nquantities = [{{ name = \"CO2\", unit = \"ppm\" }}]"), "snake_case"),
        (format!("{head}\npoll_interval_secs = 0\n{q}"), "poll_interval_secs"),
        (
            format!(
                "model = \"m\"\nprotocol = {{ type = \"pms\", mode = \"active\" }}\n\
                 poll_interval_secs = 5\n{}",
                "quantities = [{ name = \"pm2_5\", unit = \"ug/m3\" }]"
            ),
            "free-running",
        ),
        (format!("model = \" \"\nprotocol = {{ type = \"mhz19b\" }}\n{q}"), "model"),
        (
            format!("model = \"m\"\nprotocol = {{ type = \"mhz19b\", range_ppm = 50 }}\n{q}"),
            "range_ppm",
        ),
    ];
    for (text, needle) in cases {
        let err = parse_err(&text).to_string();
        assert!(err.contains(needle), "{text}\n=> {err}");
    }
    let many: Vec<String> = (0..17)
        .map(|i| format!("{{ name = \"q{i}\", unit = \"x\" }}"))
        .collect();
    let text = format!(
        "model = \"m\"\nprotocol = {{ type = \"line\", format = \"kv\" }}\nquantities = [{}]",
        many.join(", ")
    );
    assert!(matches!(
        parse_err(&text),
        ProfileError::TooManyQuantities { count: 17, .. }
    ));
}

#[test]
fn builtin_profile_lookup() {
    assert!(builtin_profile("sps30").is_some_and(|p| p.is_ok()));
    assert!(builtin_profile("nope").is_none());
}

#[test]
fn duty_cycle_only_for_sleeping_sensors_and_longer_than_warmup() {
    let base = builtin_profile("sds011").unwrap().unwrap();
    let mut p = base.clone();
    p.duty_cycle = Some(DutyCycle {
        work_secs: 30,
        sleep_secs: 270,
    });
    p.warmup_secs = 15;
    assert!(p.validate().is_ok());
    p.duty_cycle = Some(DutyCycle {
        work_secs: 15,
        sleep_secs: 270,
    });
    assert!(p.validate().is_err(), "work must outlast warm-up");
    p.duty_cycle = Some(DutyCycle {
        work_secs: 30,
        sleep_secs: 0,
    });
    assert!(p.validate().is_err());
    let mut co2 = builtin_profile("mhz19b").unwrap().unwrap();
    co2.duty_cycle = Some(DutyCycle {
        work_secs: 30,
        sleep_secs: 30,
    });
    assert!(co2.validate().is_err(), "MH-Z19B has no sleep command");
    let d = base.build().unwrap();
    assert_eq!(
        d.sleep_command(),
        Some(crate::decode::sds011::set_sleep(true))
    );
    assert_eq!(
        d.wake_command(),
        Some(crate::decode::sds011::set_sleep(false))
    );
}

#[test]
fn counter_profiles_carry_their_kind() {
    use crate::reading::QuantityKind;
    let csv = builtin_profile("counter-csv").unwrap().unwrap();
    let k = csv.quantities[0].series_kind();
    assert_eq!((k.kind, k.wrap), (QuantityKind::CounterTotal, Some(65_536)));
    let kv = builtin_profile("counter-kv").unwrap().unwrap();
    assert_eq!(kv.quantities[1].kind, QuantityKind::Counter);
    let sds = builtin_profile("sds011").unwrap().unwrap();
    assert_eq!(sds.quantities[0].kind, QuantityKind::Gauge);
    let bad = include_str!("../../firmware-config/sensors/counter-kv.toml")
        .replace("kind = \"counter\"\n", "kind = \"counter\"\nwrap = 65536\n");
    assert!(matches!(
        SensorProfile::parse(&bad),
        Err(ProfileError::Invalid { field: "wrap", .. })
    ));
}
