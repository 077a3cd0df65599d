//! What a reload may change: the settings that need a restart ([`restart_keys`]), the
//! config's identity in `/metrics` ([`config_hash`]) and that of the files a source section
//! names ([`mqtt_files_digest`], [`serial_files_digest`]).
//!
//! Everything else (sources, subscriptions, statistics, domain rules, output) is applied by a
//! reload while the aggregator and the spool keep running. The settings named here shape state
//! that lives for the whole run: window boundaries and ring sizes (open windows), the spool
//! (its files), the listening socket, the gateway's tags (baked into every series), the
//! privacy keys, sensor health's trackers and the clock tracker. Changing them in place would
//! lose or corrupt that state, so the reload refuses them and keeps the running config.
//!
//! Sections are compared by their effective values (the `Debug` form of the parsed config, so
//! a default written out equals a default left out, and a field added to a section later is
//! covered without touching this file).
//!
//! A source reads its files (MQTT password and TLS files, a sensor profile file) once, when it
//! is built: a reload compares their contents too, so a changed file restarts its source
//! although its section reads the same. (`[output]` needs no such check: the uplink reads its
//! files again at every reload.)

use std::fmt::Debug;
use std::path::PathBuf;

use super::{Config, MqttConfig, SerialConfig};
use crate::fs_limits;

fn differs<T: Debug + ?Sized>(a: &T, b: &T) -> bool {
    format!("{a:?}") != format!("{b:?}")
}

/// The keys whose change from `old` to `new` needs a restart, in file order; empty when the
/// reload may apply `new`.
pub fn restart_keys(old: &Config, new: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    let mut check = |changed: bool, key: &str| {
        if changed {
            keys.push(key.to_string());
        }
    };
    let (g, h) = (&old.gateway, &new.gateway);
    check(g.id != h.id, "gateway.id");
    check(g.site != h.site, "gateway.site");
    check(g.tags != h.tags, "gateway.tags");
    let (a, b) = (&old.aggregation, &new.aggregation);
    check(a.window_secs != b.window_secs, "aggregation.window_secs");
    check(a.grace_secs != b.grace_secs, "aggregation.grace_secs");
    check(
        a.close_delay_secs != b.close_delay_secs,
        "aggregation.close_delay_secs",
    );
    // Series without percentiles keep no sample ring: percentiles cannot start mid-window.
    check(
        !has_percentiles(&a.stats) && has_percentiles(&b.stats),
        "aggregation.stats (percentiles added where none were configured)",
    );
    check(
        a.ring_capacity != b.ring_capacity,
        "aggregation.ring_capacity",
    );
    check(a.max_series != b.max_series, "aggregation.max_series");
    check(
        a.queue_capacity != b.queue_capacity,
        "aggregation.queue_capacity",
    );
    let stdout = |c: &Config| c.output.is_stdout();
    check(
        stdout(old) != stdout(new),
        "output.api (between stdout and a store)",
    );
    // One delivery position and one uplink per output name, made at start.
    let names = |c: &Config| -> Vec<String> {
        (0..c.output.all().len())
            .map(|i| c.output.name(i).to_string())
            .collect()
    };
    check(
        names(old) != names(new),
        "output names (adding, removing or renaming an output)",
    );
    // An MQTT output's client is built once, at start.
    let mqtt = |c: &Config| -> Vec<String> {
        let all = c.output.all().iter();
        all.filter(|o| o.api == super::OutputApi::Mqtt)
            .map(|o| format!("{o:?}"))
            .collect()
    };
    check(mqtt(old) != mqtt(new), "an api = \"mqtt\" output");
    check(old.spool.dir() != new.spool.dir(), "spool.dir");
    check(
        old.spool.max_bytes != new.spool.max_bytes,
        "spool.max_bytes",
    );
    check(old.spool.fsync != new.spool.fsync, "spool.fsync");
    check(old.metrics.listen != new.metrics.listen, "metrics.listen");
    check(differs(&old.privacy, &new.privacy), "[privacy]");
    check(differs(&old.health, &new.health), "[health]");
    check(differs(&old.clock, &new.clock), "[clock]");
    // The state file is read once at start and written by a task opened then.
    check(differs(&old.state, &new.state), "[state]");
    // The board reader finds its sysfs paths once, when the aggregator is built.
    check(
        differs(&old.gateway_health, &new.gateway_health),
        "[gateway_health]",
    );
    keys
}

fn has_percentiles(stats: &[String]) -> bool {
    stats
        .iter()
        .filter_map(|s| super::Stat::parse(s))
        .any(|s| matches!(s, super::Stat::Quantile(_)))
}

/// The first 16 hex digits of the SHA-256 of the config file's bytes: what `sha256sum` prints
/// first, so an operator can tell which file a gateway runs.
pub fn config_hash(text: &str) -> String {
    sha256_prefix(text.as_bytes())
}

fn sha256_prefix(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The contents of the files an `[[mqtt]]` section names (password and TLS files, found as
/// the source finds them: systemd credentials first), as a digest to compare across a reload.
pub fn mqtt_files_digest(m: &MqttConfig) -> String {
    let tls = m
        .tls
        .iter()
        .flat_map(|t| [&t.ca_file, &t.client_cert_file, &t.client_key_file]);
    let named = std::iter::once(&m.password_file).chain(tls).flatten();
    files_digest(named.map(|p| fs_limits::credential_path(p)))
}

/// The contents of a `[[serial]]` section's `profile_file`, as a digest to compare across a
/// reload.
pub fn serial_files_digest(s: &SerialConfig) -> String {
    files_digest(s.profile_file.iter().cloned())
}

/// One SHA-256 prefix per file, in order; a file that cannot be read counts as a change of its
/// own (building the source then reports why).
fn files_digest(files: impl Iterator<Item = PathBuf>) -> String {
    let one = |p: PathBuf| match fs_limits::read(&p, fs_limits::MAX_PEM_BYTES, "a source file") {
        Ok(bytes) => sha256_prefix(&bytes),
        Err(_) => "unreadable".to_string(),
    };
    files.map(one).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
[gateway]
id = "gw-1"
[aggregation]
window_secs = 10
stats = ["mean", "count", "p95"]
[[mqtt]]
host = "127.0.0.1"
[[mqtt.subscription]]
topic = "a/{sensor}"
format = "json"
[output]
api = "v2"
url = "http://127.0.0.1:8086"
bucket = "b"
token = "t"
[spool]
dir = "/tmp/spool"
"#;

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("t.toml")).expect("valid test config")
    }

    fn keys(edit: impl Fn(String) -> String) -> Vec<String> {
        restart_keys(&parse(BASE), &parse(&edit(BASE.to_string())))
    }

    #[test]
    fn reloadable_changes_need_no_restart() {
        assert!(keys(|t| t).is_empty());
        // Sources, subscriptions, statistics, output and domain rules: all applied in place.
        let edited = |t: String| {
            t.replace("a/{sensor}", "b/{sensor}")
                .replace(r#""mean", "count", "p95""#, r#""max", "p99""#)
                .replace("8086", "8087")
                .replace("token = \"t\"", "token = \"u\"")
                + "[aqi]\nlki = false\n[[serial]]\nname = \"s\"\nport = \"/dev/ttyUSB0\"\n\
                   profile = \"sds011\"\n"
        };
        assert_eq!(keys(edited), Vec::<String>::new());
        // A default written out is no change.
        assert!(keys(|t| t.replace("[spool]", "[spool]\nfsync = true")).is_empty());
    }

    #[test]
    fn restart_only_changes_are_named() {
        assert_eq!(
            keys(|t| t.replace("window_secs = 10", "window_secs = 20")),
            ["aggregation.window_secs"]
        );
        assert_eq!(
            keys(|t| t
                .replace("gw-1", "gw-2")
                .replace("/tmp/spool", "/tmp/other")
                + "[metrics]\nlisten = \"127.0.0.1:9999\"\n[health]\nenabled = false\n"),
            ["gateway.id", "spool.dir", "metrics.listen", "[health]"]
        );
        assert_eq!(
            keys(|t| t.replace("\"v2\"", "\"stdout\"")),
            ["output.api (between stdout and a store)"]
        );
    }

    #[test]
    fn percentiles_may_go_but_not_come() {
        let none = BASE.replace(r#""mean", "count", "p95""#, r#""mean""#);
        assert!(restart_keys(&parse(BASE), &parse(&none)).is_empty());
        assert_eq!(
            restart_keys(&parse(&none), &parse(BASE)),
            ["aggregation.stats (percentiles added where none were configured)"]
        );
    }

    #[test]
    fn a_source_file_changed_behind_its_section_changes_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let (pass, ca) = (dir.path().join("pass"), dir.path().join("ca.pem"));
        std::fs::write(&pass, "old\n").unwrap();
        std::fs::write(&ca, "CA 1").unwrap();
        let text = BASE.replace(
            "host = \"127.0.0.1\"",
            &format!(
                "host = \"127.0.0.1\"\nusername = \"u\"\npassword_file = \"{}\"\n\
                 tls = {{ ca_file = \"{}\" }}",
                pass.display(),
                ca.display()
            ),
        );
        let mqtt = &parse(&text).mqtt[0];
        let before = mqtt_files_digest(mqtt);
        assert_eq!(before, mqtt_files_digest(mqtt), "same files, same digest");
        std::fs::write(&pass, "new\n").unwrap();
        let after = mqtt_files_digest(mqtt);
        assert_ne!(after, before);
        std::fs::write(&ca, "CA 2").unwrap();
        assert_ne!(mqtt_files_digest(mqtt), after);
        std::fs::remove_file(&ca).unwrap();
        assert!(mqtt_files_digest(mqtt).ends_with(",unreadable"));

        let profile = dir.path().join("sensor.toml");
        std::fs::write(&profile, "a").unwrap();
        let serial: SerialConfig = toml::from_str(&format!(
            "name = \"s\"\nport = \"/dev/ttyUSB0\"\nprofile_file = \"{}\"",
            profile.display()
        ))
        .unwrap();
        let before = serial_files_digest(&serial);
        std::fs::write(&profile, "b").unwrap();
        assert_ne!(serial_files_digest(&serial), before);
    }

    #[test]
    fn hash_is_sha256_prefix() {
        // `printf abc | sha256sum`
        assert_eq!(config_hash("abc"), "ba7816bf8f01cfea");
    }
}
