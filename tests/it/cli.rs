//! The `citysensed` binary's commands: validate, gen-config, demo.

use std::process::Command;

fn citysensed() -> Command {
    Command::new(env!("CARGO_BIN_EXE_citysensed"))
}

#[test]
fn validate_reports_a_typo_and_a_wrong_type_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = "[gateway]\nid = \"gw\"\n\n[aggregation]\nwindow_sec = 60\n\n[[mqtt]]\nport = \"1883\"\n[[mqtt.subscription]]\ntopic = \"a/{quantity}\"\nformat = \"plain\"\n\n[output]\napi = \"stdout\"\n";
    std::fs::write(&path, text).unwrap();
    let out = citysensed()
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
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
fn gen_config_output_validates() {
    let out = citysensed().arg("gen-config").output().unwrap();
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
    let v = citysensed()
        .args(["validate", "-c"])
        .arg(&path)
        .env("CREDENTIALS_DIRECTORY", dir.path())
        .env("STATE_DIRECTORY", dir.path())
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let out = citysensed()
        .args(["validate", "-c", "/nonexistent/citysense.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/citysense.toml: cannot read"),
        "{err}"
    );
}

#[test]
fn demo_prints_windows_as_line_protocol() {
    // Stopping after 2 s flushes the open (partial) windows: output without waiting 5 s.
    let out = citysensed()
        .args(["demo", "--seconds", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let points: Vec<_> = citysense::line_protocol::parse_lines(&text)
        .map(|p| p.expect("demo output is valid line protocol"))
        .collect();
    assert!(
        points.iter().any(|p| p.measurement == "air_quality"),
        "{text}"
    );
    assert!(points.iter().any(|p| p.measurement == "footfall"), "{text}");
    for p in &points {
        let ts = p.ts.expect("timestamped");
        assert_eq!(ts % 5_000_000_000, 0, "window-aligned timestamp");
        assert!(p.tags.iter().any(|(k, v)| k == "gateway" && v == "demo"));
    }
}
