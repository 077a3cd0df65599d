//! Keeps `dashboards/*.json` honest without Grafana: each file is a Grafana dashboard of the
//! shape Grafana imports, and every metric, label, measurement, field and tag a query names is
//! one a real daemon emitted in this run. The daemon runs in-process on simulated sensors plus
//! MQTT payloads (mosquitto) that exercise what the simulator does not: climate, humidity
//! correction, footfall zones and `unique_devices`; `/metrics` is scraped over HTTP and the
//! store side read back from a real VictoriaMetrics (series name `<measurement>_<field>`).

use crate::support;

mod check;
mod query;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use check::{check_dashboard, Emitted};
use support::config::Config;
use support::{free_port, publish, wait_until, Daemon, Mosquitto, Victoria};

const DASHBOARDS: [(&str, &str); 3] = [
    (
        "citysense-city.json",
        include_str!("../../dashboards/citysense-city.json"),
    ),
    (
        "citysense-city-vm.json",
        include_str!("../../dashboards/citysense-city-vm.json"),
    ),
    (
        "citysense-gateway.json",
        include_str!("../../dashboards/citysense-gateway.json"),
    ),
];

fn config(mqtt: u16, metrics: u16, vm: &str, board: &Path) -> String {
    Config::new("gw-dash")
        .site("centrum")
        .window(1)
        .grace(1)
        .simulator(1, 1, 100)
        .section("[privacy]\nk_min = 2")
        .mqtt(mqtt, "cs-dashboards")
        .subscription("city/{site}/{sensor}/air", "json")
        .subscription("count/{zone}/{sensor}", "json")
        .subscription_line("measurement = \"footfall\"")
        .subscription_line("fields = { in = \"in\", out = \"out\" }")
        .subscription_line("counters = { in = \"counter_total\", out = \"counter_total\" }")
        .subscription("scan/{sensor}/batch", "")
        .subscription_line("identifier_path = \"devices\"")
        .section("[[humidity_correction]]\nmatch = { sensor = \"sds-1\" }")
        .section(
            "[[calibration]]\nid = \"sds-1-demo\"\nmatch = { sensor = \"sds-1\" }\n\
             quantity = \"pm2_5\"\nmodel = \"linear\"\ngain = 0.8\noffset = 1.0",
        )
        .section(&format!(
            "[gateway_health]\nroot = {:?}",
            board.display().to_string()
        ))
        .output_v2(vm)
        .metrics(&format!("127.0.0.1:{metrics}"))
        .to_toml()
}

/// One round: PM at sds-1 with humidity at the same site (corrected), a climate sensor, a
/// people counter in a zone, and a scanner batch above k_min.
fn round(i: u32) -> Vec<(String, Vec<u8>, u8)> {
    let macs: Vec<String> = (0..8)
        .map(|d| format!("\"02:00:5e:10:{i:02x}:{d:02x}\""))
        .collect();
    [
        (
            "city/plein/sds-1/air",
            r#"{"pm2_5": 21.5, "pm10": 40.0}"#.to_string(),
        ),
        (
            "city/plein/bme-1/air",
            r#"{"humidity": 81.0, "temperature": 12.5, "pressure": 1013.2}"#.to_string(),
        ),
        (
            "count/markt/door-1",
            format!(r#"{{"in": {}, "out": {}}}"#, 100 + 3 * i, 50 + i),
        ),
        (
            "scan/wifi-1/batch",
            format!(r#"{{"devices": [{}]}}"#, macs.join(",")),
        ),
    ]
    .into_iter()
    .map(|(t, p)| (t.to_string(), p.into_bytes(), 1))
    .collect()
}

/// A Raspberry Pi's sysfs (thermal zone, firmware throttling flags) over this host's /proc,
/// so that every `gateway_health` field the dashboard shows is written in this run.
fn pi_board(root: &Path) {
    let files = [
        ("sys/class/thermal/thermal_zone0/type", "cpu-thermal\n"),
        ("sys/class/thermal/thermal_zone0/temp", "58400\n"),
        (
            "sys/devices/platform/soc/soc:firmware/get_throttled",
            "50000\n",
        ),
    ];
    for (rel, text) in files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    std::os::unix::fs::symlink("/proc", root.join("proc")).expect("symlink /proc");
}

/// An hour of 15-minute windows on the manual clock, the last of a UTC day, so that
/// `air_quality_hourly` (with its indices) and `air_quality_daily` are in the store too: a
/// gateway of the same site, readings with their own times.
async fn hourly_run(mqtt: u16, vm: &str) {
    use citysense::clock::{Clock, ManualClock};
    use citysense::reading::now_ns;
    const S: i64 = 1_000_000_000;
    let text = Config::new("gw-dash")
        .site("centrum")
        .window(900)
        .grace(1)
        .aggregation_line("future_tolerance_secs = 7200")
        .mqtt(mqtt, "cs-dashboards-hourly")
        .subscription("hourly/{site}/{sensor}/air", "json")
        .timestamp("ts", "unix_ms")
        .section("[air_quality]\nhourly = true\ntime_zone = \"UTC\"")
        .output_v2(vm)
        .no_health()
        .to_toml();
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("spool");
    let text = text.replace("{spool}", &spool.display().to_string());
    let cfg = citysense::config::Config::parse(&text, Path::new("hourly.toml")).expect("config");
    // 23:00 UTC two days ago: its hour and its day are over.
    const DAY: i64 = 86_400 * S;
    let hour = (now_ns() / DAY - 2) * DAY + 23 * 3600 * S;
    let clock = ManualClock::new(hour - 10 * S - now_ns(), true);
    let mut d = Daemon::start_with_clock(cfg, &spool, Clock::Manual(clock.clone()));
    d.wait_connected(1).await;
    let msgs: Vec<(String, Vec<u8>, u8)> = (0..4)
        .map(|i| {
            let ts = (hour + i * 900 * S + 60 * S) / 1_000_000;
            let body = format!(r#"{{"pm2_5": 12, "pm10": 20, "no2": 30, "o3": 50, "ts": {ts}}}"#);
            ("hourly/plein/sds-1/air".to_string(), body.into_bytes(), 1)
        })
        .collect();
    publish(mqtt, &msgs).await;
    let m = d.metrics.clone();
    wait_until(Duration::from_secs(10), "hourly readings in", || {
        let m = m.clone();
        async move {
            m.pipeline
                .readings_aggregated
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 16
        }
    })
    .await;
    clock.set_shift(hour + 3600 * S + 5 * S - now_ns());
    // Four window points, the hourly and the daily one.
    d.wait_points_sent(6).await;
    d.stop().await;
}

/// `/metrics` text -> metric name -> label names.
fn parse_metrics(text: &str, into: &mut Emitted) {
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = into.prom.entry(line[..name_end].to_string()).or_default();
        if let Some(inner) = line[name_end..]
            .strip_prefix('{')
            .and_then(|r| r.split_once('}'))
        {
            labels.extend(
                inner
                    .0
                    .split("\",")
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, _)| k.trim().to_string()),
            );
        }
    }
}

/// Runs the daemon and collects every name it emitted.
async fn emitted() -> Emitted {
    let broker = Mosquitto::start().await;
    let vm = Victoria::start().await;
    let metrics_port = free_port();
    let board = tempfile::tempdir().expect("temp dir");
    pi_board(board.path());
    let cfg = config(broker.port, metrics_port, &vm.write_url(), board.path());
    let mut d = Daemon::start(&cfg);
    let m = d.metrics.clone();
    wait_until(Duration::from_secs(10), "daemon connected", || {
        let m = m.clone();
        async move { m.sources_connected() == 1 }
    })
    .await;
    for i in 0..4 {
        publish(broker.port, &round(i)).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    // Readiness only (the check itself uses everything exported): the workload's rarest
    // fields are in the store.
    wait_until(Duration::from_secs(20), "workload fields stored", || {
        let vm = &vm;
        async move {
            let names: BTreeSet<String> = vm
                .export(r#"{__name__=~"air_quality_pm2_5_corrected_mean|footfall_unique_devices|footfall_occupancy|climate_humidity_mean|sensor_health_sensor_up|gateway_health_cpu_temp_c"}"#)
                .await
                .into_iter()
                .filter_map(|s| s.metric.get("__name__").cloned())
                .collect();
            names.len() == 6
        }
    })
    .await;
    let text = support::citysensed::metrics_text(metrics_port).await;
    d.stop().await;
    hourly_run(broker.port, &vm.write_url()).await;

    let mut out = Emitted::default();
    parse_metrics(&text, &mut out);
    for s in vm.export(r#"{__name__=~".+"}"#).await {
        let mut labels = s.metric.clone();
        let Some(name) = labels.remove("__name__") else {
            continue;
        };
        out.store
            .entry(name)
            .or_default()
            .extend(labels.into_keys());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_refer_only_to_what_the_daemon_emits() {
    let emitted = emitted().await;
    assert!(
        emitted.prom.contains_key("citysense_source_up") && emitted.store.len() > 20,
        "the run emitted too little to check against: {emitted:#?}"
    );
    let mut errs = Vec::new();
    for (file, text) in DASHBOARDS {
        let d: serde_json::Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{file}: not JSON: {e}"));
        errs.extend(check_dashboard(file, &d, &emitted));
    }
    assert!(
        errs.is_empty(),
        "{} problem(s):\n{}\n\nemitted: {emitted:#?}",
        errs.len(),
        errs.join("\n")
    );

    // The checks have teeth: a field, metric, label or variable no code emits is caught.
    let (file, text) = DASHBOARDS[0];
    let mutate = |text: &str, from: &str, to: &str| -> serde_json::Value {
        assert!(text.contains(from), "`{from}` not in the dashboard");
        serde_json::from_str(&text.replacen(from, to, 1)).expect("still JSON")
    };
    for (from, to) in [
        ("pm2_5_corrected_mean", "pm2_5_humid_mean"),
        (r#"\"zone\" =~"#, r#"\"district\" =~"#),
        ("/^$site$/", "/^$wijk$/"),
    ] {
        let broken = mutate(text, from, to);
        assert!(
            !check_dashboard(file, &broken, &emitted).is_empty(),
            "`{to}` went unnoticed"
        );
    }
    let (file, text) = DASHBOARDS[2];
    for (from, to) in [
        (
            "citysense_spool_oldest_age_seconds",
            "citysense_spool_age_seconds",
        ),
        ("by (reason)", "by (cause)"),
        (r#"mean(\"cpu_temp_c\")"#, r#"mean(\"soc_temp_c\")"#),
    ] {
        let broken = mutate(text, from, to);
        assert!(
            !check_dashboard(file, &broken, &emitted).is_empty(),
            "`{to}` went unnoticed"
        );
    }
}
