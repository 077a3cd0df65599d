//! Golden test of `firmware-config/`: every file in it is loaded and checked, so a profile or
//! a node config that drifts from what citysensed expects fails the build.
//!
//! - `sensors/*.toml`: parse, build a decoder, model = file name, and equal the built-in copy.
//! - `esphome/*.yaml`: parsed with `yaml-rust2` (pure Rust, maintained; `serde_yaml` is
//!   archived and `serde_yml` carries unsoundness advisories). Its state topics must match a
//!   subscription of the example config with the node name as `sensor` and the right quantity.
//! - `tasmota/*.txt`: console commands; `Topic`/`FullTopic`/`Prefix3` must give a topic the
//!   example's Tasmota subscription matches.
//! - `raspberry-pi/config.txt`: turns the UART on and moves Bluetooth off it.
//! - `raspberry-pi/*.rules`: udev rules that parse and link known USB-serial adapters under
//!   `/dev/citysense/`; every serial `port = "..."` in the example configs and the READMEs must
//!   be a device these files set up (`/dev/serial0`, such a link, or `/dev/serial/by-id/usb-*`).
//! - `*.md`: documentation. Any other file fails the test until it is covered here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use citysense::config::{Config, PayloadFormat, EXAMPLE};
use citysense::decode::profile::{builtin_profile, SensorProfile};
use citysense::sources::mqtt::TopicPattern;
use yaml_rust2::{Yaml, YamlLoader};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/firmware-config");
/// What the ESPHome air node must publish (citysense quantity names).
const AIR_NODE_QUANTITIES: [&str; 5] = ["pm2_5", "pm10", "temperature", "humidity", "pressure"];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The example config's subscriptions of `format`, as patterns.
fn example_patterns(format: PayloadFormat) -> Vec<TopicPattern> {
    let cfg = Config::parse(EXAMPLE, Path::new("example.toml")).expect("example parses");
    let patterns: Vec<TopicPattern> = cfg
        .mqtt
        .iter()
        .flat_map(|m| &m.subscription)
        .filter(|s| s.format == format)
        .map(|s| TopicPattern::parse(&s.topic).expect("valid pattern"))
        .collect();
    assert!(
        !patterns.is_empty(),
        "example has a {format:?} subscription"
    );
    patterns
}

/// (sensor tag, quantity) a topic yields under the first matching pattern.
fn route(patterns: &[TopicPattern], topic: &str) -> Option<(String, Option<String>)> {
    patterns.iter().find_map(|p| {
        let caps = p.captures(topic)?;
        let sensor = caps
            .tags
            .iter()
            .find(|(k, _)| *k == "sensor")?
            .1
            .to_string();
        Some((sensor, caps.quantity.map(str::to_string)))
    })
}

#[test]
fn every_file_in_firmware_config_is_valid() {
    let mut all = Vec::new();
    files(Path::new(ROOT), &mut all);
    all.sort();
    let mut checked = BTreeMap::<&str, usize>::new();
    for path in &all {
        let rel = path
            .strip_prefix(ROOT)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let kind = match (
            rel.split('/').next(),
            path.extension().and_then(|e| e.to_str()),
        ) {
            (_, Some("md")) => "doc",
            (Some("sensors"), Some("toml")) => {
                check_profile(path, &text);
                "profile"
            }
            (Some("esphome"), Some("yaml")) => {
                check_esphome(&rel, &text);
                "esphome"
            }
            (Some("tasmota"), Some("txt")) => {
                check_tasmota(&rel, &text);
                "tasmota"
            }
            (Some("raspberry-pi"), _) if rel.ends_with("config.txt") => {
                check_pi_config(&text);
                "raspberry-pi"
            }
            (Some("raspberry-pi"), Some("rules")) => {
                udev_links(&rel, &text);
                "udev"
            }
            _ => panic!("{rel}: no check covers this file; add one to tests/it/firmware_config.rs"),
        };
        *checked.entry(kind).or_default() += 1;
    }
    assert_eq!(checked.get("profile"), Some(&8), "{checked:?}");
    for kind in ["esphome", "tasmota", "raspberry-pi", "udev", "doc"] {
        assert!(checked.contains_key(kind), "no {kind} file: {checked:?}");
    }
}

fn check_profile(path: &Path, text: &str) {
    let stem = path.file_stem().unwrap().to_string_lossy();
    let profile = SensorProfile::parse(text).unwrap_or_else(|e| panic!("{stem}: {e}"));
    assert_eq!(profile.model, stem, "model is named after its file");
    profile.build().unwrap_or_else(|e| panic!("{stem}: {e}"));
    let builtin = builtin_profile(&stem)
        .unwrap_or_else(|| panic!("{stem} is not built in: add it to builtin_profiles()"))
        .unwrap();
    assert_eq!(builtin, profile, "{stem}: built-in copy differs");
}

/// Replaces `${name}` and `$name` with the file's substitutions.
fn substitute(s: &str, subs: &BTreeMap<String, String>) -> String {
    let mut out = s.to_string();
    for (k, v) in subs {
        out = out
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    out
}

/// ESPHome's default object id: lower case, anything but `a-z0-9_-` becomes `_`.
fn object_id(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' | '-' => c,
            _ => '_',
        })
        .collect()
}

fn check_esphome(rel: &str, text: &str) {
    let docs = YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let doc = &docs[0];
    let subs: BTreeMap<String, String> = doc["substitutions"]
        .as_hash()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.as_str().unwrap().into(), v.as_str().unwrap().into()))
                .collect()
        })
        .unwrap_or_default();
    let node = substitute(
        doc["esphome"]["name"].as_str().expect("esphome.name"),
        &subs,
    );
    let prefix = doc["mqtt"]["topic_prefix"]
        .as_str()
        .map(|p| substitute(p, &subs))
        .unwrap_or_else(|| node.clone());
    let patterns = example_patterns(PayloadFormat::Plain);
    let mut quantities = Vec::new();
    for sensor in doc["sensor"].as_vec().expect("a sensor list") {
        for (key, entity) in sensor.as_hash().unwrap() {
            let Some(name) = entity["name"].as_str() else {
                continue;
            };
            let default_topic = format!("{prefix}/sensor/{}/state", object_id(name));
            let topic = match &entity["state_topic"] {
                Yaml::String(t) => substitute(t, &subs),
                _ => default_topic.clone(),
            };
            assert_eq!(
                topic, default_topic,
                "{rel}: {key:?} state_topic vs its name"
            );
            let (sensor_tag, quantity) = route(&patterns, &topic)
                .unwrap_or_else(|| panic!("{rel}: {topic} matches no example subscription"));
            assert_eq!(sensor_tag, node, "{rel}: {topic}");
            quantities.push(quantity.unwrap_or_else(|| panic!("{rel}: {topic} has no quantity")));
        }
    }
    quantities.sort();
    let mut want = AIR_NODE_QUANTITIES.map(String::from).to_vec();
    want.sort();
    assert_eq!(quantities, want, "{rel}: published quantities");
}

fn check_tasmota(rel: &str, text: &str) {
    let mut settings = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (cmd, arg) = line.split_once(' ').unwrap_or((line, ""));
        let known = [
            "MqttHost",
            "MqttPort",
            "MqttUser",
            "MqttPassword",
            "Topic",
            "FullTopic",
            "Prefix3",
            "TelePeriod",
            "SetOption52",
            "TimeZone",
            "TimeStd",
            "TimeDst",
            "SetOption8",
            "SetOption24",
        ];
        assert!(known.contains(&cmd), "{rel}: unexpected command {cmd:?}");
        settings.insert(cmd, arg.trim());
    }
    let topic = settings.get("Topic").expect("Topic set");
    // Tasmota's defaults when a command is left out.
    let full = settings.get("FullTopic").unwrap_or(&"%prefix%/%topic%/");
    let tele = settings.get("Prefix3").unwrap_or(&"tele");
    let sensor_topic = format!(
        "{}SENSOR",
        full.replace("%prefix%", tele).replace("%topic%", topic)
    );
    assert!(
        !sensor_topic.contains('%'),
        "{rel}: unresolved {sensor_topic}"
    );
    let period: u32 = settings["TelePeriod"].parse().unwrap();
    assert!((10..=3600).contains(&period), "{rel}: TelePeriod {period}");
    let (sensor_tag, _) = route(&example_patterns(PayloadFormat::Tasmota), &sensor_topic)
        .unwrap_or_else(|| panic!("{rel}: {sensor_topic} matches no example subscription"));
    assert_eq!(&sensor_tag, topic);
}

fn check_pi_config(text: &str) {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(lines.contains(&"enable_uart=1"), "{lines:?}");
    // The Pi 5's GPIO UART, /dev/ttyAMA0 (its serial0 is the debug connector).
    let pi5 = lines
        .iter()
        .position(|l| *l == "[pi5]")
        .expect("a [pi5] section");
    assert_eq!(lines.get(pi5 + 1), Some(&"dtparam=uart0=on"), "{lines:?}");
    assert_eq!(
        lines.last(),
        Some(&"[all]"),
        "later lines apply to every model"
    );
    assert!(
        lines.contains(&"dtoverlay=disable-bt") || lines.contains(&"dtoverlay=miniuart-bt"),
        "{lines:?}"
    );
}

#[test]
fn object_ids_follow_esphome() {
    assert_eq!(object_id("PM2.5"), "pm2_5");
    assert_eq!(object_id("PM10"), "pm10");
    assert_eq!(object_id("Temperature"), "temperature");
}

/// The udev rule file for USB-serial adapters.
const UDEV_RULES: &str = "raspberry-pi/99-citysense-serial.rules";
/// The adapters the rule file must name: CH340 (the SDS011's), CP2102, FTDI FT232R.
const ADAPTERS: [(&str, &str); 3] = [("1a86", "7523"), ("10c4", "ea60"), ("0403", "6001")];

/// One udev rule line as (key, operator, value) triples: `KEY=="value", KEY+="value", ...`.
fn udev_rule(line: &str) -> Result<Vec<(String, String, String)>, String> {
    let mut rest = line.trim();
    let mut pairs = Vec::new();
    while !rest.is_empty() {
        let at = rest
            .find(['=', '!', '+', '-', ':'])
            .ok_or_else(|| format!("no operator after {rest:?}"))?;
        let (key, after) = rest.split_at(at);
        let op = ["==", "!=", "+=", "-=", ":=", "="]
            .into_iter()
            .find(|op| after.starts_with(op))
            .ok_or_else(|| format!("bad operator at {after:?}"))?;
        let value = after[op.len()..]
            .strip_prefix('"')
            .ok_or_else(|| format!("{key}: value not quoted"))?;
        let end = value
            .find('"')
            .ok_or_else(|| format!("{key}: unterminated value"))?;
        pairs.push((
            key.trim().to_string(),
            op.to_string(),
            value[..end].to_string(),
        ));
        rest = value[end + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(format!("expected `,` before {rest:?}"));
        }
    }
    Ok(pairs)
}

/// Checks the rule file and returns the device paths its active rules create. Commented-out
/// example rules (`# SUBSYSTEM==...`) are checked the same way, so they cannot rot.
fn udev_links(rel: &str, text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut adapters = Vec::new();
    let mut examples = 0;
    for line in text.lines().map(str::trim) {
        let (rule, active) = match line.strip_prefix("# ") {
            Some(r) if r.starts_with("SUBSYSTEM") => (r, false),
            Some(_) => continue,
            None if line.is_empty() || line.starts_with('#') => continue,
            None => (line, true),
        };
        let pairs = udev_rule(rule).unwrap_or_else(|e| panic!("{rel}: {e}: {line}"));
        let get = |key: &str, op: &str| {
            pairs
                .iter()
                .find(|(k, o, _)| k == key && o == op)
                .map(|(_, _, v)| v.as_str())
                .unwrap_or_else(|| panic!("{rel}: no {key}{op} in {line}"))
        };
        assert_eq!(get("SUBSYSTEM", "=="), "tty", "{rel}: {line}");
        let id = (get("ATTRS{idVendor}", "=="), get("ATTRS{idProduct}", "=="));
        for hex in [id.0, id.1] {
            assert!(
                hex.len() == 4 && hex.chars().all(|c| c.is_ascii_hexdigit()),
                "{rel}: {hex:?} is not a USB id: {line}"
            );
        }
        let link = get("SYMLINK", "+=");
        assert!(link.starts_with("citysense/"), "{rel}: {link}: {line}");
        if active {
            let path = format!("/dev/{link}");
            assert!(!links.contains(&path), "{rel}: {path} twice");
            links.push(path);
            adapters.push(format!("{}:{}", id.0, id.1));
        } else {
            examples += 1;
        }
    }
    for (vendor, product) in ADAPTERS {
        let want = format!("{vendor}:{product}");
        assert!(adapters.contains(&want), "{rel}: no rule for {want}");
    }
    assert!(examples > 0, "{rel}: no per-socket example");
    links
}

/// True when `port` is a device the Raspberry Pi set-up in this repository makes: the Pi's
/// UART alias (or, on a Pi 5, UART0 itself), a link of the udev rule, or a by-id link of
/// systemd's 60-serial.rules.
fn port_is_set_up(port: &str, links: &[String]) -> bool {
    port == "/dev/serial0"
        || port == "/dev/ttyAMA0"
        || links.iter().any(|l| l == port)
        || port.starts_with("/dev/serial/by-id/usb-")
}

/// Every quoted `port = "..."` value in `text` (commented lines and prose too).
fn quoted_ports(text: &str) -> Vec<String> {
    let needle = "port = \"";
    let mut ports = Vec::new();
    for line in text.lines() {
        let mut rest = line;
        while let Some(at) = rest.find(needle) {
            let value = &rest[at + needle.len()..];
            let end = value.find('"').unwrap_or(value.len());
            ports.push(value[..end].to_string());
            rest = &value[end..];
        }
    }
    ports
}

#[test]
fn every_serial_port_named_is_one_the_pi_setup_makes() {
    let read = |rel: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"))
    };
    // /dev/serial0 (and the Pi 5's /dev/ttyAMA0) exist only with the UART turned on.
    check_pi_config(&read("firmware-config/raspberry-pi/config.txt"));
    let links = udev_links(UDEV_RULES, &read(&format!("firmware-config/{UDEV_RULES}")));
    let gen = std::process::Command::new(env!("CARGO_BIN_EXE_citysensed"))
        .arg("gen-config")
        .output()
        .unwrap();
    assert!(gen.status.success());
    let mut named = vec![(
        "citysensed gen-config".to_string(),
        String::from_utf8_lossy(&gen.stdout).to_string(),
    )];
    for rel in [
        "src/config/example.toml",
        "packaging/deb/citysense.toml",
        "README.md",
        "firmware-config/raspberry-pi/README.md",
    ] {
        named.push((rel.to_string(), read(rel)));
    }
    let mut bad = Vec::new();
    for (file, text) in &named {
        let ports = quoted_ports(text);
        assert!(!ports.is_empty(), "{file}: names no serial port");
        bad.extend(
            ports
                .into_iter()
                .filter(|p| !port_is_set_up(p, &links))
                .map(|p| format!("{file}: port {p:?}")),
        );
    }
    assert!(
        bad.is_empty(),
        "ports that neither firmware-config/raspberry-pi/config.txt (/dev/serial0, /dev/ttyAMA0), \
         firmware-config/{UDEV_RULES} \
         nor /dev/serial/by-id/usb-* set up:\n{}",
        bad.join("\n")
    );
}

#[test]
fn port_check_refuses_plug_order_names() {
    let links = vec!["/dev/citysense/ch340".to_string()];
    assert!(port_is_set_up("/dev/citysense/ch340", &links));
    assert!(port_is_set_up(
        "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0",
        &links
    ));
    assert!(!port_is_set_up("/dev/ttyUSB0", &links));
    assert!(!port_is_set_up("/dev/citysense/cp2102", &links));
    assert_eq!(
        quoted_ports("port = 1883\n# port = \"/dev/a\" and `port = \"/dev/b\"`"),
        ["/dev/a", "/dev/b"]
    );
    assert!(udev_rule(r#"SUBSYSTEM=="tty" SYMLINK+="x""#).is_err());
    assert!(udev_rule(r#"SUBSYSTEM=="tty", SYMLINK+="x"#).is_err());
}
