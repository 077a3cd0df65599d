//! Board health readers on fake procfs/sysfs trees in a temp dir.

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

use super::*;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A Raspberry Pi 4 as the kernel shows it (values from a Pi under a weak supply).
fn pi_tree(root: &Path) {
    write(
        root,
        "sys/class/thermal/thermal_zone0/type",
        "cpu-thermal\n",
    );
    write(root, "sys/class/thermal/thermal_zone0/temp", "61835\n");
    write(
        root,
        "sys/devices/platform/soc/soc:firmware/get_throttled",
        "50005\n",
    );
    write(root, "proc/loadavg", "0.52 0.58 0.59 1/467 12345\n");
    write(
        root,
        "proc/meminfo",
        "MemTotal:        3884360 kB\nMemFree:          194316 kB\nMemAvailable:    2957000 kB\n",
    );
    write(root, "proc/uptime", "86412.35 339281.20\n");
    write(
        root,
        "proc/self/status",
        "Name:\tcitysensed\nVmPeak:\t  120000 kB\nVmRSS:\t    9876 kB\nThreads:\t3\n",
    );
}

fn field<'a>(fields: &'a [(&str, FieldValue)], name: &str) -> Option<&'a FieldValue> {
    fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
}

#[test]
fn a_pi_tree_gives_every_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    pi_tree(&root);
    let spool = dir.path().join("spool");
    write(&spool, "00000000000000000001.seg", &"x".repeat(1000));
    write(&spool, "ack", &"a".repeat(16));
    let m = HealthMetrics::default();
    let s = BoardReader::new(&root, &spool).sample(&m);
    assert_eq!(s.cpu_temp_c, Some(61.835));
    assert_eq!(s.throttled, Some(0x50005));
    assert_eq!(s.load1, Some(0.52));
    assert_eq!(s.mem_available_bytes, Some(2_957_000 * 1024));
    assert_eq!(s.mem_total_bytes, Some(3_884_360 * 1024));
    assert_eq!(s.uptime_s, Some(86412.35));
    assert_eq!(s.rss_bytes, Some(9876 * 1024));
    assert_eq!(s.spool_bytes, Some(1016));
    let (free, total) = (s.disk_free_bytes.expect("free"), s.disk_total_bytes);
    assert!(total.is_some_and(|t| t >= free && t > 0), "{s:?}");

    let f = s.fields(true);
    // 0x50005: under-voltage and throttled now, both also since boot.
    for (name, want) in [
        ("under_voltage", 1),
        ("freq_capped", 0),
        ("throttled", 1),
        ("soft_temp_limit", 0),
        ("under_voltage_since_boot", 1),
        ("freq_capped_since_boot", 0),
        ("throttled_since_boot", 1),
        ("soft_temp_limit_since_boot", 0),
        ("clock_synced", 1),
    ] {
        assert_eq!(field(&f, name), Some(&FieldValue::Int(want)), "{name}");
    }
    assert_eq!(field(&f, "cpu_temp_c"), Some(&FieldValue::Float(61.835)));
    assert_eq!(field(&f, "spool_bytes"), Some(&FieldValue::Int(1016)));
    assert_eq!(f.len(), 18, "{f:?}");
    let errors: u64 = m.board_read_errors.iter().map(|a| a.load(Relaxed)).sum();
    assert_eq!(errors, 0);
}

#[test]
fn absent_sources_are_left_out_not_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = HealthMetrics::default();
    // An empty root (no procfs, no sysfs) and no spool directory yet.
    let s = BoardReader::new(dir.path(), &dir.path().join("no-spool")).sample(&m);
    assert_eq!(s, BoardSample::default());
    let f = s.fields(false);
    assert_eq!(f, vec![("clock_synced", FieldValue::Int(0))]);
    let errors: u64 = m.board_read_errors.iter().map(|a| a.load(Relaxed)).sum();
    assert_eq!(errors, 0, "absence is no error");
}

#[test]
fn the_cpu_zone_wins_and_hwmon_gives_under_voltage_without_firmware_attr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "sys/class/thermal/thermal_zone0/type", "acpitz\n");
    write(root, "sys/class/thermal/thermal_zone0/temp", "27800\n");
    write(
        root,
        "sys/class/thermal/thermal_zone10/type",
        "cpu-thermal\n",
    );
    write(root, "sys/class/thermal/thermal_zone10/temp", "-1500\n");
    write(root, "sys/class/hwmon/hwmon0/name", "cpu_thermal\n");
    write(root, "sys/class/hwmon/hwmon1/name", "rpi_volt\n");
    write(root, "sys/class/hwmon/hwmon1/in0_lcrit_alarm", "1\n");
    let m = HealthMetrics::default();
    let s = BoardReader::new(root, root).sample(&m);
    assert_eq!(s.cpu_temp_c, Some(-1.5));
    assert_eq!((s.throttled, s.under_voltage_alarm), (None, Some(true)));
    let f = s.fields(true);
    assert_eq!(field(&f, "under_voltage"), Some(&FieldValue::Int(1)));
    assert_eq!(field(&f, "throttled_since_boot"), None);

    // Without a cpu-thermal zone, the first one (by number, not by name order).
    std::fs::write(root.join("sys/class/thermal/thermal_zone10/type"), "gpu\n").expect("w");
    let s = BoardReader::new(root, root).sample(&m);
    assert_eq!(s.cpu_temp_c, Some(27.8));
}

#[test]
fn garbage_is_left_out_counted_and_never_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "sys/class/thermal/thermal_zone0/temp", "hot\n");
    write(
        root,
        "sys/devices/platform/soc/soc:firmware/get_throttled",
        "0xZZ\n",
    );
    write(root, "proc/loadavg", "\n");
    write(root, "proc/meminfo", "MemAvailable: lots kB\n");
    write(root, "proc/uptime", "NaN 1\n");
    write(root, "proc/self/status", "VmRSS:\t12 MB\n");
    let m = HealthMetrics::default();
    let s = BoardReader::new(root, root).sample(&m);
    assert_eq!(s.cpu_temp_c, None);
    assert_eq!(s.throttled, None);
    assert_eq!(s.load1, None);
    assert_eq!(s.mem_available_bytes, None);
    assert_eq!(s.uptime_s, None);
    assert_eq!(s.rss_bytes, None);
    let count = |src: BoardSource| m.board_read_errors[src as usize].load(Relaxed);
    for src in [
        BoardSource::Thermal,
        BoardSource::Throttled,
        BoardSource::Loadavg,
        BoardSource::Uptime,
        BoardSource::Rss,
    ] {
        assert_eq!(count(src), 1, "{}", src.label());
    }
    // MemAvailable unparsable and MemTotal missing.
    assert_eq!(count(BoardSource::Meminfo), 2);
}

#[test]
fn parsers() {
    assert_eq!(parse_hex("0x80008\n"), Some(0x80008));
    assert_eq!(parse_hex("0\n"), Some(0));
    assert_eq!(parse_hex("1_0"), None);
    assert_eq!(parse_millicelsius(" 45277\n"), Some(45.277));
    assert_eq!(first_number("1.5 2"), Some(1.5));
    assert_eq!(first_number("inf 2"), None);
    assert_eq!(kib_line("A: 1 kB\nB:  2 kB\n", "B:"), Some(2048));
    assert_eq!(kib_line("B: 18446744073709551615 kB\n", "B:"), None);
    assert_eq!(kib_line("AB: 1 kB\n", "B:"), None);
}

/// The host this runs on: load, memory, uptime, RSS and the disk are always there on Linux.
#[test]
fn this_host_has_the_basic_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = HealthMetrics::default();
    let s = BoardReader::new(Path::new("/"), dir.path()).sample(&m);
    assert!(s.load1.is_some() && s.uptime_s.is_some(), "{s:?}");
    assert!(s.mem_available_bytes.is_some() && s.rss_bytes.is_some_and(|r| r > 0));
    assert!(s.disk_free_bytes.is_some() && s.spool_bytes == Some(0));
}

#[test]
fn the_config_switch() {
    let on = crate::config::GatewayHealthConfig::default();
    assert!(on.enabled && on.root == Path::new("/"));
    assert!(BoardReader::build(&on, Path::new("/tmp")).is_some());
    let text = "[gateway]\nid = \"g\"\n[output]\napi = \"stdout\"\n\
                [gateway_health]\nenabled = false\nroot = \"/host\"\n";
    let cfg = crate::config::Config::parse(text, Path::new("t.toml")).expect("parses");
    assert_eq!(cfg.gateway_health.root, Path::new("/host"));
    assert!(BoardReader::build(&cfg.gateway_health, Path::new("/tmp")).is_none());
}
