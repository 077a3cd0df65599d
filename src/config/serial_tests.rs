//! Tests of `[[serial]]`: profile merging and the located errors `validate` prints.

use std::path::Path;

use crate::config::{Config, ConfigErrors};
use crate::decode::profile::{Protocol, Sds011Mode};

fn parse(serial: &str) -> Result<Config, ConfigErrors> {
    let text = format!("[gateway]\nid = \"gw\"\n\n{serial}\n[output]\napi = \"stdout\"\n");
    Config::parse(&text, Path::new("test.toml"))
}

#[test]
fn builtin_profile_by_name_counts_as_a_source() {
    let cfg = parse("[[serial]]\nname = \"pm\"\nport = \"/dev/ttyUSB0\"\nprofile = \"sds011\"\n")
        .expect("valid");
    let s = &cfg.serial[0];
    assert_eq!(s.sensor_id(), "pm");
    let p = s.profile().unwrap();
    assert_eq!(p.model, "sds011");
    assert_eq!(p.baud(), 9600);
    assert_eq!(p.warmup_secs, 30);
    assert_eq!(p.poll_interval_secs(), Some(5));
}

#[test]
fn table_overrides_the_base_and_serial_level_wins() {
    let cfg = parse(
        r#"[[serial]]
name = "pm"
port = "/dev/serial0"
sensor = "pm-north"
baud = 19200
[serial.profile]
base = "sds011"
warmup_secs = 0
protocol = { type = "sds011", mode = "active" }
"#,
    )
    .expect("valid");
    let s = &cfg.serial[0];
    assert_eq!(s.sensor_id(), "pm-north");
    let p = s.profile().unwrap();
    assert_eq!(p.warmup_secs, 0);
    assert_eq!(p.baud(), 19200);
    assert_eq!(
        p.protocol,
        Protocol::Sds011 {
            mode: Sds011Mode::Active
        }
    );
    // Active mode is free-running: the base's poll interval is dropped with the protocol.
    assert_eq!(p.poll_interval_secs(), None);
    assert_eq!(p.quantities.len(), 2);
}

#[test]
fn whole_inline_profile_and_profile_file() {
    let cfg = parse(
        r#"[[serial]]
name = "door"
port = "/dev/ttyACM0"
[serial.profile]
model = "door-counter"
protocol = { type = "line", format = "kv" }
[[serial.profile.quantities]]
name = "in"
unit = "count"
"#,
    )
    .expect("valid");
    assert_eq!(cfg.serial[0].profile().unwrap().model, "door-counter");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("co2.toml");
    std::fs::write(
        &file,
        include_str!("../../firmware-config/sensors/mhz19b.toml"),
    )
    .unwrap();
    let cfg = parse(&format!(
        "[[serial]]\nname = \"co2\"\nport = \"/dev/ttyUSB1\"\nprofile_file = \"{}\"\npoll_interval_secs = 2\n[serial.profile]\nwarmup_secs = 1\n",
        file.display()
    ))
    .expect("valid");
    let p = cfg.serial[0].profile().unwrap();
    assert_eq!((p.model.as_str(), p.warmup_secs), ("mhz19b", 1));
    assert_eq!(p.poll_interval_secs(), Some(2));
}

#[test]
fn unknown_profile_lists_the_known_ones_with_its_line() {
    let errs = parse("[[serial]]\nname = \"pm\"\nport = \"/dev/ttyUSB0\"\nprofile = \"sds012\"\n")
        .unwrap_err();
    assert_eq!(errs.0.len(), 1, "{errs}");
    let e = &errs.0[0];
    assert_eq!(e.key, "serial[0].profile");
    assert_eq!(e.line, 7, "{errs}");
    assert!(e.message.contains("unknown profile \"sds012\""), "{errs}");
    assert!(e.message.contains("sds011, pms5003"), "{errs}");
}

#[test]
fn bad_overrides_are_located() {
    let errs = parse(
        r#"[[serial]]
name = "pm"
port = "/dev/ttyUSB0"
profile = "sds011"
[[serial]]
name = "pm"
port = "/dev/ttyUSB0"
poll_interval_secs = 3
tags = { sensor = "x" }
[serial.profile]
base = "sds011"
protocol = { type = "sds011", mode = "active" }
"#,
    )
    .unwrap_err();
    let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
    assert!(keys.contains(&"serial[1].poll_interval_secs"), "{errs}");
    assert!(keys.contains(&"serial[1].tags.sensor"), "{errs}");
    assert!(keys.contains(&"serial[1].name"), "{errs}");
    assert!(keys.contains(&"serial[1].port"), "{errs}");
}

#[test]
fn typos_inside_the_profile_table_name_their_line() {
    let errs = parse(
        "[[serial]]\nname = \"pm\"\nport = \"/dev/ttyUSB0\"\n[serial.profile]\nbase = \"sds011\"\nwarmup = 0\n",
    )
    .unwrap_err();
    let e = &errs.0[0];
    assert_eq!(e.line, 9, "{errs}");
    assert_eq!(e.key, "serial[0].profile.warmup", "{errs}");
    assert!(e.message.contains("unknown field `warmup`"), "{errs}");
}

#[test]
fn missing_profile_and_incomplete_table_are_errors() {
    let errs = parse("[[serial]]\nname = \"pm\"\nport = \"/dev/ttyUSB0\"\n").unwrap_err();
    assert!(errs.0[0].message.contains("no profile"), "{errs}");
    let errs = parse(
        "[[serial]]\nname = \"pm\"\nport = \"/dev/ttyUSB0\"\n[serial.profile]\nwarmup_secs = 0\n",
    )
    .unwrap_err();
    assert!(
        errs.0[0].message.contains("must set `model`, `protocol`"),
        "{errs}"
    );
    let errs = parse(
        "[[serial]]\nname = \"pm\"\nport = \"/dev/ttyUSB0\"\nprofile = \"sds011\"\nprofile_file = \"/x.toml\"\n",
    )
    .unwrap_err();
    assert_eq!(errs.0[0].key, "serial[0].profile_file", "{errs}");
}

#[test]
fn documented_examples_parse() {
    // The commented block in `gen-config`'s example, uncommented.
    let example: String = crate::config::EXAMPLE
        .lines()
        .skip_while(|l| *l != "# [[serial]]")
        .take_while(|l| l.starts_with("# "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    let cfg = parse(&example).unwrap_or_else(|e| panic!("{e}\n{example}"));
    assert_eq!(cfg.serial[0].profile().unwrap().model, "sds011");
    // The README's `[[serial]]` example.
    let readme = include_str!("../../README.md");
    let section = readme
        .split("## Serial sensors")
        .nth(1)
        .expect("README has a Serial sensors section");
    let block = section
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml example");
    let cfg = parse(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
    assert_eq!(cfg.serial.len(), 2);
    let co2 = cfg.serial[1].profile().unwrap();
    assert_eq!((co2.warmup_secs, co2.poll_interval_secs()), (60, Some(10)));
}
