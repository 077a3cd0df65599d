use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(text, Path::new("test.toml"))
}

#[test]
fn example_and_demo_parse() {
    let ex = parse(EXAMPLE).expect("example config parses");
    assert_eq!(ex.gateway.id, "gw-utrecht-01");
    assert_eq!(ex.mqtt.len(), 1);
    assert_eq!(ex.mqtt[0].subscription.len(), 3);
    assert_eq!(ex.output.all()[0].api, OutputApi::V2);
    let demo = parse(DEMO).expect("demo config parses");
    assert!(demo.output.is_stdout());
    assert!(demo.simulator.is_some());
}

const MINIMAL: &str = r#"
[gateway]
id = "gw"

[[mqtt]]
host = "127.0.0.1"

[[mqtt.subscription]]
topic = "s/{sensor}/{quantity}"
format = "plain"

[output]
api = "stdout"
"#;

#[test]
fn defaults_apply() {
    let cfg = parse(MINIMAL).unwrap();
    assert_eq!(cfg.aggregation.window_secs, 60);
    assert_eq!(cfg.aggregation.ring_capacity, 32);
    assert_eq!(cfg.mqtt[0].port(), 1883);
    assert_eq!(cfg.mqtt[0].subscription[0].qos, 1);
    assert!(!cfg.mqtt[0].clean_session);
    assert_eq!(cfg.spool.max_bytes, 256 << 20);
    assert_eq!(cfg.metrics.listen, "127.0.0.1:9273");
}

#[test]
fn typo_and_wrong_type_are_both_reported_with_lines() {
    let text = MINIMAL
        .replace("id = \"gw\"", "id = \"gw\"\nsitee = \"x\"")
        .replace(
            "host = \"127.0.0.1\"",
            "host = \"127.0.0.1\"\nport = \"1883\"",
        );
    let errs = parse(&text).unwrap_err();
    let rendered = errs.to_string();
    assert_eq!(errs.0.len(), 2, "{rendered}");
    assert_eq!(errs.0[0].line, 4, "{rendered}");
    assert_eq!(errs.0[0].key, "gateway.sitee");
    assert!(
        errs.0[0].message.contains("unknown field `sitee`"),
        "{rendered}"
    );
    assert_eq!(errs.0[1].line, 8, "{rendered}");
    assert_eq!(errs.0[1].key, "mqtt[0].port");
    assert!(errs.0[1].message.contains("invalid type"), "{rendered}");
    assert!(
        rendered.contains("test.toml:4: key `gateway.sitee`"),
        "{rendered}"
    );
}

#[test]
fn errors_inside_a_multi_line_array_name_the_element() {
    let text = MINIMAL.to_string()
        + "\n[aggregation]\nstats = [\n  \"mean\",\n  5,\n  \"p95\",\n]\nwindow_sec = 60\n";
    let errs = parse(&text).unwrap_err();
    let r = errs.to_string();
    assert_eq!(errs.0.len(), 2, "{r}");
    assert_eq!(
        (errs.0[0].line, errs.0[0].key.as_str()),
        (18, "aggregation.stats[1]"),
        "{r}"
    );
    assert!(
        r.contains("test.toml:18: key `aggregation.stats[1]`: invalid type"),
        "{r}"
    );
    // The whole array was blanked and parsing went on to the next entry.
    assert_eq!(
        (errs.0[1].line, errs.0[1].key.as_str()),
        (21, "aggregation.window_sec"),
        "{r}"
    );
}

#[test]
fn errors_inside_an_inline_table_name_its_key() {
    let text = MINIMAL.replace(
        "format = \"plain\"",
        "format = \"plain\"\ncounters = { in = \"counter_total\", out = \"bogus\" }\nqos = 7",
    );
    let errs = parse(&text).unwrap_err();
    let r = errs.to_string();
    let key = "mqtt[0].subscription[0].counters.out";
    assert!(
        r.contains(&format!(
            "test.toml:11: key `{key}`: unknown variant `bogus`"
        )),
        "{r}"
    );
    assert_eq!(errs.0.len(), 1, "{r}");
    let text = text.replace("\"bogus\"", "\"counter\"");
    let errs = parse(&text).unwrap_err();
    let qos = "test.toml:12: key `mqtt[0].subscription[0].qos`: must be 0 or 1";
    assert_eq!(errs.to_string(), qos);
}

#[test]
fn missing_required_table_is_reported() {
    let errs = parse("[gateway]\nid = \"x\"\n").unwrap_err();
    // About the file, not about the [gateway] table it happens to start with.
    assert_eq!(errs.to_string(), "test.toml: missing field `output`");
    let errs = parse("[gateway]\nsite = \"x\"\n[output]\napi = \"stdout\"\n").unwrap_err();
    assert!(
        errs.to_string()
            .starts_with("test.toml:1: key `gateway`: missing field `id`"),
        "{errs}"
    );
}

#[test]
fn semantic_errors_are_located() {
    let text = MINIMAL
        .replace("format = \"plain\"", "format = \"plain\"\nqos = 2")
        .replace("api = \"stdout\"", "api = \"v2\"\nurl = \"ftp://x\"")
        + "\n[aggregation]\nwindow_secs = 0\nstats = [\"mean\", \"median\"]\n";
    let errs = parse(&text).unwrap_err();
    let r = errs.to_string();
    let find = |key: &str| {
        errs.0
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("{key} missing in\n{r}"))
    };
    assert_eq!(find("mqtt[0].subscription[0].qos").line, 11, "{r}");
    assert_eq!(find("aggregation.window_secs").line, 18, "{r}");
    assert!(find("aggregation.stats").message.contains("median"));
    assert_eq!(find("output.url").line, 15, "{r}");
    // bucket is missing: located at its table.
    assert_eq!(find("output.bucket").line, 13, "{r}");
}

#[test]
fn plain_without_quantity_is_rejected() {
    let text = MINIMAL.replace("s/{sensor}/{quantity}", "s/{sensor}/value");
    let errs = parse(&text).unwrap_err();
    assert!(
        errs.0
            .iter()
            .any(|e| e.key == "mqtt[0].subscription[0].quantity"),
        "{errs}"
    );
}

#[test]
fn no_source_is_a_warning_not_an_error() {
    // The packaged default config has no source and must pass `validate`.
    let cfg = parse("[gateway]\nid = \"x\"\n[output]\napi = \"stdout\"\n").unwrap();
    assert!(cfg.has_no_source());
    let warnings = cfg.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("no source configured")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("stdout")),
        "{warnings:?}"
    );
    assert_eq!(parse(EXAMPLE).unwrap().warnings(), Vec::<String>::new());
}

#[test]
fn unparseable_toml_is_one_located_error() {
    let errs = parse("[gateway\nid = 1").unwrap_err();
    assert_eq!(errs.0.len(), 1);
    assert_eq!(errs.0[0].line, 1, "{errs}");
}

#[test]
fn privacy_health_and_ttn_options_are_checked() {
    let text = MINIMAL
        .replace("format = \"plain\"", "format = \"plain\"\nidentifier_path = \"mac\"\nttn_radio = true")
        + "\n[privacy]\nk_min = 1\n\n[health]\nstale_after_intervals = 0\n[health.ranges]\npm2_5 = [10, 0]\n";
    let errs = parse(&text).unwrap_err();
    let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
    for want in [
        "mqtt[0].subscription[0].identifier_path",
        "mqtt[0].subscription[0].format",
        "privacy.k_min",
        "health.stale_after_intervals",
        "health.ranges.pm2_5",
    ] {
        assert!(keys.contains(&want), "{want} in {keys:?}");
    }
    let cfg = parse(MINIMAL).unwrap();
    assert_eq!(cfg.privacy.k_min, 5);
    assert!(cfg.health.enabled);
    assert_eq!(cfg.health.range("humidity"), Some((0.0, 100.0)));
}

#[test]
fn domain_sections_parse_with_defaults() {
    let cfg = parse(MINIMAL).unwrap();
    assert_eq!(cfg.aqi.eaqi, EaqiSetting::V2024);
    assert!(cfg.aqi.lki);
    assert_eq!(cfg.aqi.lki_top_edge.o3, 240.0);
    assert!(cfg.humidity_correction.is_empty());
    assert_eq!(cfg.footfall.rebase_at, "04:00");
    let text = MINIMAL.replace("format = \"plain\"", "format = \"plain\"\ncounters = { in = \"counter_total\", out = \"counter\" }\ncounter_wrap = 65536")
        + "\n[aqi]\neaqi = \"2017\"\nlki = false\n[aqi.lki_top_edge]\npm10 = 175\n\n[[humidity_correction]]\nmatch = { site = \"plein\" }\nkappa = 0.3\nrh_from = \"sensor\"\n";
    let cfg = parse(&text).unwrap();
    assert_eq!(cfg.aqi.eaqi, EaqiSetting::V2017);
    assert_eq!(cfg.aqi.lki_top_edge.pm10, 175.0);
    let h = &cfg.humidity_correction[0];
    assert_eq!(
        (h.kappa, h.rh_cap, h.rh_from),
        (0.3, 95.0, RhFromSetting::Sensor)
    );
    let sub = &cfg.mqtt[0].subscription[0];
    use crate::reading::QuantityKind;
    assert_eq!(sub.series_kind("in").kind, QuantityKind::CounterTotal);
    assert_eq!(sub.series_kind("in").wrap, Some(65536));
    assert_eq!(sub.series_kind("out").wrap, None);
    assert_eq!(sub.series_kind("pm2_5").kind, QuantityKind::Gauge);
}

#[test]
fn domain_errors_are_located() {
    let text = MINIMAL.to_string() + "\n[aqi]\neaqi = \"2030\"\n";
    let errs = parse(&text).unwrap_err();
    assert!(errs.0.iter().any(|e| e.key == "aqi.eaqi"), "{errs}");
    let text = MINIMAL.to_string()
        + "\n[aqi.lki_top_edge]\npm10 = 100\n\n[[humidity_correction]]\nkappa = 0\nrh_cap = 100\n\n[footfall]\ntime_zone = \"Europe/Atlantis\"\n";
    let errs = parse(&text).unwrap_err();
    let r = errs.to_string();
    let find = |key: &str| {
        errs.0
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("{key} missing in\n{r}"))
    };
    assert_eq!(find("aqi.lki_top_edge.pm10").line, 16, "{r}");
    assert_eq!(find("humidity_correction[0].kappa").line, 19, "{r}");
    assert_eq!(find("humidity_correction[0].rh_cap").line, 20, "{r}");
    assert!(
        find("footfall.time_zone")
            .message
            .contains("Europe/Atlantis"),
        "{r}"
    );
    let bad_time = MINIMAL.to_string() + "\n[footfall]\nrebase_at = \"4am\"\n";
    let errs = parse(&bad_time).unwrap_err();
    assert!(
        errs.0.iter().any(|e| e.key == "footfall.rebase_at"),
        "{errs}"
    );
}

#[test]
fn air_quality_errors_are_located() {
    let ok = MINIMAL.to_string() + "\n[air_quality]\nhourly = true\n";
    let cfg = parse(&ok).expect("60 s windows divide the hour");
    assert_eq!(cfg.air_quality.min_coverage, DEFAULT_MIN_COVERAGE);
    assert_eq!(cfg.air_quality.quantities.len(), 5);
    let text = MINIMAL.to_string()
        + "\n[aggregation]\nwindow_secs = 7\n\n[air_quality]\nhourly = true\nmin_coverage = 1.5\n";
    let errs = parse(&text).unwrap_err();
    let r = errs.to_string();
    let find = |key: &str| {
        (errs.0.iter())
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("{key} missing in\n{r}"))
    };
    let start = MINIMAL.lines().count();
    assert_eq!(find("air_quality.hourly").line, start + 6, "{r}");
    assert!(
        find("air_quality.hourly").message.contains("divide 3600"),
        "{r}"
    );
    assert_eq!(find("air_quality.min_coverage").line, start + 7, "{r}");
    let text = MINIMAL.to_string()
        + "\n[air_quality]\nhourly = true\ntime_zone = \"Europe/Atlantis\"\n\n\
           [[air_quality.threshold]]\nname = \"WHO 2021\"\nquantity = \"co2\"\nperiod = \"day\"\nvalue = 15\n";
    let errs = parse(&text).unwrap_err();
    let r = errs.to_string();
    let find = |key: &str| {
        (errs.0.iter())
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("{key} missing in\n{r}"))
    };
    assert_eq!(find("air_quality.time_zone").line, start + 4, "{r}");
    assert_eq!(find("air_quality.threshold[0].name").line, start + 7, "{r}");
    assert_eq!(
        find("air_quality.threshold[0].quantity").line,
        start + 8,
        "{r}"
    );
    let bad_period = MINIMAL.to_string()
        + "\n[[air_quality.threshold]]\nname = \"x\"\nquantity = \"pm10\"\nperiod = \"week\"\nvalue = 1\n";
    let errs = parse(&bad_period).unwrap_err();
    assert!(errs.0.iter().any(|e| e.key.contains("period")), "{errs}");
    // Defaults: the WHO 2021 daily guidelines.
    let cfg = parse(MINIMAL).unwrap();
    let t = &cfg.air_quality.threshold;
    assert_eq!((t.len(), t[0].value, t[1].value), (2, 15.0, 45.0));
}

#[test]
fn calibration_rules_parse_and_their_errors_are_located() {
    let ok = MINIMAL.to_string()
        + "\n[[calibration]]\nid = \"sds-1.2026\"\nmatch = { sensor = \"sds-1\" }\n\
           quantity = \"pm2_5\"\nvalid_from = \"2026-01-01T00:00:00Z\"\nmodel = \"linear_rh\"\n\
           a = 1.5\nb = 0.6\nc = -0.02\n";
    let cfg = parse(&ok).expect("a linear_rh rule");
    assert_eq!(cfg.calibration[0].model, CalibrationModel::LinearRh);
    let text = MINIMAL.to_string()
        + "\n[[calibration]]\nid = \"a b\"\nquantity = \"pm2_5\"\nmodel = \"linear\"\ngain = 1\n\
           valid_from = \"yesterday\"\n\n[[calibration]]\nid = \"p\"\nquantity = \"pm10\"\n\
           model = \"polynomial\"\ncoefficients = []\n";
    let errs = parse(&text).unwrap_err();
    let r = errs.to_string();
    let find = |key: &str| {
        (errs.0.iter())
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("{key} missing in\n{r}"))
    };
    let start = MINIMAL.lines().count();
    assert_eq!(find("calibration[0].id").line, start + 3, "{r}");
    assert_eq!(find("calibration[0].valid_from").line, start + 7, "{r}");
    assert!(
        find("calibration[0].offset").message.contains("required"),
        "{r}"
    );
    assert_eq!(find("calibration[1].coefficients").line, start + 13, "{r}");
}

#[test]
fn output_tls_needs_https_and_proxy_must_be_a_proxy_url() {
    let store = |extra: &str| {
        MINIMAL.replace(
            "api = \"stdout\"",
            &format!("api = \"v1\"\nurl = \"http://s:8086\"\ndb = \"d\"\n{extra}"),
        )
    };
    let keys = |text: &str| -> Vec<(String, String)> {
        let errs = Config::parse(text, Path::new("t.toml")).unwrap_err();
        errs.0.into_iter().map(|e| (e.key, e.message)).collect()
    };
    let errs = keys(&store("[output.tls]\nca_file = \"/ca.pem\""));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, "output.tls");
    let errs = keys(&store("proxy = \"socks5://u:secret@p:1080\""));
    assert_eq!(errs[0].0, "output.proxy", "{errs:?}");
    assert!(
        errs[0].1.contains("must be http:// or https://"),
        "{errs:?}"
    );
    assert!(!errs[0].1.contains("secret"), "{errs:?}");
    for ok in ["proxy = \"none\"", "proxy = \"http://u:p@proxy:3128\""] {
        Config::parse(&store(ok), Path::new("t.toml")).unwrap();
    }
}
