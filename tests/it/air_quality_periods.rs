//! Hourly and daily air-quality values end to end: mosquitto -> citysense -> VictoriaMetrics,
//! over a simulated day of 15-minute windows on the test-only manual clock (no waiting an
//! hour), with a restart at 14:20 on the same state directory. The store must hold the hourly
//! means, coverage, running means, indices and the daily value an uninterrupted day gives:
//! the 14:00 hour with the readings from both sides of the restart, the running mean's count
//! of valid hours going on across it.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use citysense::clock::{Clock, ManualClock};
use citysense::config::Config;
use citysense::reading::now_ns;
use support::config::Config as TestConfig;
use support::{publish, Daemon, Mosquitto, Victoria};

const S: i64 = 1_000_000_000;
const H: i64 = 3600 * S;
const W: i64 = 900 * S;
/// 2025-06-10T00:00:00Z: a fixed day in the past (the store keeps 100 years).
const DAY: i64 = 1_749_513_600 * S;

fn config(port: u16, vm: &Victoria) -> String {
    TestConfig::new("gw-aq-periods")
        .window(900)
        .grace(5)
        .stats(&["mean", "count"])
        // The readings of the simulated day arrive ahead of the manual clock.
        .aggregation_line("future_tolerance_secs = 90000")
        .mqtt(port, "cs-aq-periods")
        .subscription("city/{sensor}/air", "json")
        .timestamp("ts", "unix_ms")
        .section("[aqi]\neaqi = \"2024\"\nlki = true")
        .section("[air_quality]\nhourly = true\ntime_zone = \"UTC\"")
        .output_v2(&vm.write_url())
        .no_health()
        .to_toml()
}

/// A PM2.5 reading of sensor `a` at `ts` (ns).
fn reading(ts: i64, pm: f64) -> (String, Vec<u8>, u8) {
    let body = format!(r#"{{"pm2_5": {pm}, "ts": {}}}"#, ts / 1_000_000);
    ("city/a/air".to_string(), body.into_bytes(), 1)
}

/// One reading a minute into each window of `hours` (value hour + 5), but hour 3 has only
/// two windows (coverage 0.5) and hour 5 none.
fn hours(hours: std::ops::Range<i64>) -> Vec<(String, Vec<u8>, u8)> {
    let mut m = Vec::new();
    for h in hours {
        let windows = match h {
            3 => 2,
            5 => 0,
            _ => 4,
        };
        for i in 0..windows {
            m.push(reading(DAY + h * H + i * W + 60 * S, (h + 5) as f64));
        }
    }
    m
}

fn start(text: &str, spool: &Path, wall: i64) -> (Daemon, Arc<ManualClock>) {
    let cfg = Config::parse(text, Path::new("aq.toml")).unwrap();
    let clock = ManualClock::new(wall - now_ns(), true);
    let d = Daemon::start_with_clock(cfg, spool, Clock::Manual(clock.clone()));
    (d, clock)
}

async fn wait_readings(d: &Daemon, n: u64) {
    let m = d.metrics.clone();
    let what = format!("{n} readings aggregated");
    support::wait_until(Duration::from_secs(20), &what, || {
        let m = m.clone();
        async move { m.pipeline.readings_aggregated.load(Relaxed) >= n }
    })
    .await;
}

/// metric name -> {timestamp ms: value}
async fn periods(vm: &Victoria) -> BTreeMap<String, BTreeMap<i64, f64>> {
    let mut got: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    let selector = "{__name__=~\"air_quality_(hourly|daily)_.*\"}";
    for s in vm.export_with(selector, &[("start", "0")]).await {
        let e = got.entry(s.metric["__name__"].clone()).or_default();
        e.extend(s.timestamps.iter().copied().zip(s.values.iter().copied()));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_day_with_a_restart_at_14_20_gives_the_hourly_and_daily_values() {
    let broker = Mosquitto::start().await;
    let vm = Victoria::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let text = config(broker.port, &vm).replace("{spool}", &spool.display().to_string());

    // Before the restart: hours 0-13, and in hour 14 one reading (19) at 14:01 and one (14)
    // in the 14:15 window, at 14:16.
    let (mut d, clock) = start(&text, &spool, DAY - 10 * S);
    d.wait_connected(1).await;
    let mut first = hours(0..14);
    first.push(reading(DAY + 14 * H + 60 * S, 19.0));
    first.push(reading(DAY + 14 * H + W + 60 * S, 14.0));
    publish(broker.port, &first).await;
    wait_readings(&d, first.len() as u64).await;
    clock.set_shift(DAY + 14 * H + 20 * 60 * S - now_ns());
    // 51 windows closed (up to 14:00) and the hours 0-13 but 5: 13 hourly points.
    d.wait_points_sent(51 + 13).await;
    d.stop().await;
    let state = std::fs::read_to_string(dir.path().join("state.json")).unwrap();
    assert!(state.contains("\"air_quality\""), "{state}");

    // After it: 24 in the 14:15 window at 14:21, then 14:30, 14:45 and hours 15-23.
    let (mut d, clock) = start(&text, &spool, DAY + 14 * H + 20 * 60 * S + 30 * S);
    d.wait_connected(1).await;
    let mut second = vec![
        reading(DAY + 14 * H + W + 6 * 60 * S, 24.0),
        reading(DAY + 14 * H + 2 * W + 60 * S, 19.0),
        reading(DAY + 14 * H + 3 * W + 60 * S, 19.0),
    ];
    second.extend(hours(15..24));
    publish(broker.port, &second).await;
    wait_readings(&d, second.len() as u64).await;
    clock.set_shift(DAY + 24 * H + 30 * S - now_ns());
    // 39 windows, the hourly points of hours 14-23 and the day.
    d.wait_points_sent(39 + 10 + 1).await;
    d.stop().await;

    let got = periods(&vm).await;
    let at = |name: &str, t: i64| -> f64 {
        let series = got.get(&format!("air_quality_{name}"));
        let v = series.and_then(|s| s.get(&(t / 1_000_000))).copied();
        v.unwrap_or_else(|| panic!("air_quality_{name} at {t} missing; store: {got:#?}"))
    };
    let hour = |h: i64| DAY + h * H;
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    let hourly_means = &got["air_quality_hourly_pm2_5_mean"];
    assert_eq!(hourly_means.len(), 23, "every hour but 5: {hourly_means:?}");
    for h in (0..24).filter(|h| *h != 5) {
        assert_eq!(at("hourly_pm2_5_mean", hour(h)), (h + 5) as f64, "hour {h}");
    }
    // Hour 14: (19 + 14 + 24 + 19 + 19) / 5 = 19, the 14:15 window from both sides of the
    // restart (without the saved part it would be (19 + 24 + 19 + 19) / 4 = 20.25).
    assert_eq!(at("hourly_pm2_5_coverage", hour(14)), 1.0);
    assert_eq!(at("hourly_pm2_5_valid", hour(14)), 1.0);
    assert_eq!(at("hourly_pm2_5_coverage", hour(3)), 0.5);
    assert_eq!(at("hourly_pm2_5_valid", hour(3)), 0.0);
    // Valid hours in the running mean: 12 by hour 13, 13 at 14 (it went on across the
    // restart), 22 at hour 23 (all but 3 and 5).
    assert_eq!(at("hourly_pm2_5_valid_hours_24h", hour(13)), 12.0);
    assert_eq!(at("hourly_pm2_5_valid_hours_24h", hour(14)), 13.0);
    assert_eq!(at("hourly_pm2_5_valid_24h", hour(16)), 0.0);
    assert_eq!(at("hourly_pm2_5_valid_hours_24h", hour(23)), 22.0);
    assert_eq!(at("hourly_pm2_5_valid_24h", hour(23)), 1.0);
    // (5 + 6 + ... + 28) - 8 - 10 = 396 - 18 = 378, over 22 hours.
    let day_mean = 378.0 / 22.0;
    assert!(close(at("hourly_pm2_5_mean_24h", hour(23)), day_mean));
    // EAQI 2024 on the hourly mean: 5 is 1, 19 is 3 (15-50).
    assert_eq!(at("hourly_eaqi", hour(0)), 1.0);
    assert_eq!(at("hourly_eaqi", hour(14)), 3.0);
    assert_eq!(at("hourly_aqi_period_s", hour(14)), 3600.0);
    // No EAQI from the invalid hour 3; the LKI needs the PM2.5 24-hour running mean, valid
    // from 18 valid hours: first at hour 19 (0-19 but 3 and 5), 17.2 at hour 23 is LKI 3.
    assert!(!got["air_quality_hourly_eaqi"].contains_key(&(hour(3) / 1_000_000)));
    let lki = &got["air_quality_hourly_lki"];
    let first_lki = lki.keys().next().copied();
    assert_eq!(first_lki, Some(hour(19) / 1_000_000), "{lki:?}");
    assert_eq!(at("hourly_lki", hour(23)), 3.0);
    // The day (UTC): 22 valid hours, mean 17.2, above the WHO 2021 guideline of 15.
    assert!(close(at("daily_pm2_5_mean", DAY), day_mean));
    assert_eq!(at("daily_pm2_5_valid_hours", DAY), 22.0);
    assert_eq!(at("daily_pm2_5_hours", DAY), 24.0);
    assert_eq!(at("daily_pm2_5_valid", DAY), 1.0);
    assert_eq!(at("daily_pm2_5_above_who2021", DAY), 1.0);
    assert_eq!(at("daily_pm2_5_days_above_who2021_year", DAY), 1.0);
}
