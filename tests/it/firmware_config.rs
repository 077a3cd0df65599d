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
            _ => panic!("{rel}: no check covers this file; add one to tests/it/firmware_config.rs"),
        };
        *checked.entry(kind).or_default() += 1;
    }
    assert_eq!(checked.get("profile"), Some(&8), "{checked:?}");
    for kind in ["esphome", "tasmota", "raspberry-pi", "doc"] {
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
