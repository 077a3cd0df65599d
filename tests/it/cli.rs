//! The `citysensed` binary's commands: validate, gen-config, demo. They run the binary under
//! test (`support::citysensed::command`), and `arch` calls them again for a cross-built one.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};
use std::time::Duration;

use citysense::line_protocol::FieldValue;

use crate::support::citysensed::{command, output_within};

/// Far beyond the native run times (milliseconds, 2 s for the demo): qemu-user is 5-20x slower.
const DEADLINE: Duration = Duration::from_secs(60);

fn citysensed() -> Command {
    command()
}

fn run(cmd: &mut Command) -> Output {
    output_within(cmd, DEADLINE)
}

#[test]
pub(crate) fn validate_reports_a_typo_and_a_wrong_type_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = "[gateway]\nid = \"gw\"\n\n[aggregation]\nwindow_sec = 60\n\n[[mqtt]]\nport = \"1883\"\n[[mqtt.subscription]]\ntopic = \"a/{quantity}\"\nformat = \"plain\"\n\n[output]\napi = \"stdout\"\n";
    std::fs::write(&path, text).unwrap();
    let out = run(citysensed().args(["validate", "-c"]).arg(&path));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(
        err.contains(&format!(
            "{file}:5: key `aggregation.window_sec`: unknown field `window_sec`"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:8: key `mqtt[0].port`: invalid type")),
        "{err}"
    );
    assert!(err.contains("2 error(s)"), "{err}");
}

#[test]
pub(crate) fn gen_config_output_validates() {
    let out = run(citysensed().arg("gen-config"));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        citysense::config::EXAMPLE
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.toml");
    std::fs::write(&path, &out.stdout).unwrap();
    // validate opens what the config names: the token (a systemd credential) and the spool
    // directory under $STATE_DIRECTORY.
    std::fs::write(dir.path().join("influx-token"), "t\n").unwrap();
    let v = run(citysensed()
        .args(["validate", "-c"])
        .arg(&path)
        .env("CREDENTIALS_DIRECTORY", dir.path())
        .env("STATE_DIRECTORY", dir.path()));
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

#[test]
pub(crate) fn missing_config_file_is_a_clear_error() {
    let out = run(citysensed().args(["validate", "-c", "/nonexistent/citysense.toml"]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/citysense.toml: cannot read"),
        "{err}"
    );
}

#[test]
pub(crate) fn demo_prints_windows_as_line_protocol() {
    // Stopping after 2 s flushes the open (partial) windows: output without waiting 5 s.
    let out = run(citysensed().args(["demo", "--seconds", "2"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let points: Vec<_> = citysense::line_protocol::parse_lines(&text)
        .map(|p| p.expect("demo output is valid line protocol"))
        .collect();
    // Every simulated sensor of the embedded demo config, under its measurement.
    let mut seen: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for p in &points {
        let ts = p.ts.expect("timestamped");
        assert_eq!(ts % 5_000_000_000, 0, "window-aligned timestamp");
        let tag = |k: &str| p.tags.iter().find(|(t, _)| t == k).map(|(_, v)| v.as_str());
        assert_eq!(tag("gateway"), Some("demo"), "{text}");
        assert_eq!(tag("site"), Some("demo-square"), "{text}");
        let sensor = tag("sensor").expect("sensor tag");
        seen.entry(p.measurement.as_str())
            .or_default()
            .insert(sensor);
        if p.measurement == "air_quality" {
            check_air_window(&p.fields, &text);
        }
    }
    let want = BTreeMap::from([
        ("air_quality", BTreeSet::from(["sim-air-0", "sim-air-1"])),
        ("footfall", BTreeSet::from(["sim-door-0"])),
        (
            "sensor_health",
            BTreeSet::from(["sim-air-0", "sim-air-1", "sim-door-0"]),
        ),
    ]);
    assert_eq!(seen, want, "{text}");
}

/// An air-quality window of the demo: each quantity has a count of at least one reading and
/// min <= mean <= max.
fn check_air_window(fields: &[(String, FieldValue)], text: &str) {
    let num = |name: String| match fields.iter().find(|(k, _)| *k == name) {
        Some((_, FieldValue::Float(v))) => *v,
        Some((_, FieldValue::Int(v))) => *v as f64,
        other => panic!("{name}: {other:?} in\n{text}"),
    };
    for q in ["pm2_5", "pm10", "co2"] {
        assert!(num(format!("{q}_count")) >= 1.0, "{q} count in\n{text}");
        let (min, mean, max) = (
            num(format!("{q}_min")),
            num(format!("{q}_mean")),
            num(format!("{q}_max")),
        );
        assert!(min <= mean && mean <= max, "{q} {min} {mean} {max}");
    }
}

/// `--log-format json` (and `CITYSENSE_LOG_FORMAT=json`): every stderr line is one JSON
/// object with `timestamp`, `level`, `target` and `message`, the event's fields beside them.
#[test]
fn json_logs_are_one_object_per_line() {
    let by_flag = run(citysensed().args(["demo", "--seconds", "1", "--log-format", "json"]));
    let by_env = run(citysensed()
        .args(["demo", "--seconds", "1"])
        .env("CITYSENSE_LOG_FORMAT", "json"));
    for out in [by_flag, by_env] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let lines: Vec<serde_json::Value> = err
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}\n{err}")))
            .collect();
        for v in &lines {
            for key in ["timestamp", "level", "target", "message"] {
                assert!(v[key].is_string(), "{key} missing in {v}");
            }
        }
        let running = lines
            .iter()
            .find(|v| v["message"] == "citysensed running")
            .unwrap_or_else(|| panic!("no start line in\n{err}"));
        assert_eq!(running["level"], "INFO");
        assert_eq!(
            running["gateway"], "demo",
            "fields are flattened: {running}"
        );
        assert!(
            running["target"].as_str().unwrap().starts_with("citysense"),
            "{running}"
        );
    }
}

#[test]
fn an_unknown_log_format_in_the_environment_is_refused() {
    let out = run(citysensed()
        .args(["demo", "--seconds", "1"])
        .env("CITYSENSE_LOG_FORMAT", "logfmt"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CITYSENSE_LOG_FORMAT=\"logfmt\": expected \"text\" or \"json\""),
        "{err}"
    );
}

/// `calibrate` on two CSV files of synthetic co-located hours: reference = 0.7 * sensor + 2
/// with noise; it prints a linear rule close to that, and refuses a week cut to two days.
#[test]
fn calibrate_fits_a_rule_and_refuses_too_few_hours() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let (mut sensor, mut reference) = (String::from("time,pm2_5\n"), String::from("time,pm2_5\n"));
    let t0 = 1_767_225_600i64; // 2026-01-01T00:00:00Z
    for h in 0..168 {
        let x = 3.0 + 60.0 * rng.f64();
        let y = 0.7 * x + 2.0 + (rng.f64() - 0.5);
        sensor.push_str(&format!("{},{x}\n", t0 + h * 3600));
        reference.push_str(&format!("{},{y}\n", t0 + h * 3600));
    }
    let (s, r) = (dir.path().join("s.csv"), dir.path().join("r.csv"));
    std::fs::write(&s, &sensor).unwrap();
    std::fs::write(&r, &reference).unwrap();
    let out = run(citysensed()
        .args(["calibrate", "--id", "sds-1-2026"])
        .arg(&s)
        .arg(&r));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("# fitted on 168 hours: R2 = 0.99"),
        "{text}"
    );
    let value = |k: &str| -> f64 {
        let prefix = format!("{k} = ");
        let v = text.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap();
        v.parse().unwrap()
    };
    assert!((value("gain") - 0.7).abs() < 0.01, "{text}");
    assert!((value("offset") - 2.0).abs() < 0.3, "{text}");
    // Two days of reference data: refused.
    let short: String = reference
        .lines()
        .take(49)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&r, short).unwrap();
    let out = run(citysensed().arg("calibrate").arg(&s).arg(&r));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only 48 hours"), "{err}");
    assert!(out.stdout.is_empty());
}
