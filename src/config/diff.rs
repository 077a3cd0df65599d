//! What a reload may change: the settings that need a restart ([`restart_keys`]) and the
//! config's identity in `/metrics` ([`config_hash`]).
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

use std::fmt::Debug;

use super::{Config, OutputApi};

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
    let stdout = |c: &Config| c.output.api == OutputApi::Stdout;
    check(
        stdout(old) != stdout(new),
        "output.api (between stdout and a store)",
    );
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
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
    fn hash_is_sha256_prefix() {
        // `printf abc | sha256sum`
        assert_eq!(config_hash("abc"), "ba7816bf8f01cfea");
    }
}
