//! `gateway_health` end to end: the `citysensed` binary on this host -> VictoriaMetrics. The
//! point arrives every window with the fields this host has (load, memory, disk, spool,
//! uptime, RSS, clock sync) and without those it lacks (no thermal zone or Raspberry Pi
//! firmware in a VM or container: left out, never written as 0).

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use support::citysensed::Citysensed;
use support::config::Config;
use support::{wait_until, Victoria};

/// Fields every Linux host gives.
const ALWAYS: [&str; 9] = [
    "load1",
    "mem_available_bytes",
    "mem_total_bytes",
    "disk_free_bytes",
    "disk_total_bytes",
    "spool_bytes",
    "uptime_s",
    "rss_bytes",
    "clock_synced",
];

/// Does this host have a thermal zone with a temperature / the Pi firmware attribute?
fn host_has(thermal: bool) -> bool {
    let (dir, prefix, file) = match thermal {
        true => ("/sys/class/thermal", "thermal_zone", "temp"),
        false => ("/sys/devices/platform", "", "soc:firmware/get_throttled"),
    };
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with(prefix) && e.path().join(file).is_file()
        })
    })
}

/// Field -> (gateway tag, newest value) of every `gateway_health` series.
async fn stored(vm: &Victoria) -> BTreeMap<String, (String, f64)> {
    let mut out = BTreeMap::new();
    for s in vm.export(r#"{__name__=~"gateway_health_.+"}"#).await {
        let name = &s.metric["__name__"];
        let field = name.trim_start_matches("gateway_health_").to_string();
        let gateway = s.metric.get("gateway").cloned().unwrap_or_default();
        out.insert(
            field,
            (gateway, s.values.last().copied().unwrap_or(f64::NAN)),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_point_lands_with_this_hosts_fields_only() {
    let vm = Victoria::start().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let cfg = Config::new("gw-board")
        .window(1)
        .grace(1)
        .simulator(1, 0, 200)
        .output_v2(&vm.write_url())
        .assume_clock_synced()
        .to_toml();
    let mut d = Citysensed::spawn(&cfg, tmp.path(), "info");
    wait_until(Duration::from_secs(20), "gateway_health points", || {
        let vm = &vm;
        async move { stored(vm).await.contains_key("rss_bytes") }
    })
    .await;
    let log = d.terminate(Duration::from_secs(15)).await;
    assert!(!log.contains("ERROR") && !log.contains("WARN"), "{log}");

    let got = stored(&vm).await;
    for f in ALWAYS {
        assert!(got.contains_key(f), "no `{f}` in {got:?}");
    }
    assert!(got.values().all(|(gw, _)| gw == "gw-board"), "{got:?}");
    assert_eq!(got.contains_key("cpu_temp_c"), host_has(true), "{got:?}");
    let pi = host_has(false);
    for f in [
        "throttled",
        "throttled_since_boot",
        "under_voltage_since_boot",
    ] {
        assert_eq!(got.contains_key(f), pi, "{f}: {got:?}");
    }
    let v = |f: &str| got[f].1;
    let rss = v("rss_bytes");
    assert!(rss > 1e6 && rss < 1e9, "rss {rss}");
    assert!(v("disk_free_bytes") <= v("disk_total_bytes") && v("disk_total_bytes") > 0.0);
    assert!(v("mem_available_bytes") <= v("mem_total_bytes"));
    assert!(
        v("spool_bytes") > 0.0,
        "the spool holds at least its ack file"
    );
    assert_eq!(v("clock_synced"), 1.0);
    let uptime: f64 = std::fs::read_to_string(Path::new("/proc/uptime"))
        .expect("/proc/uptime")
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .expect("uptime");
    assert!(
        v("uptime_s") > 0.0 && v("uptime_s") <= uptime,
        "{}",
        v("uptime_s")
    );
}
