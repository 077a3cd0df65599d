//! Hourly and daily state through a save and restore, against an uninterrupted run.

use super::*;
use crate::domain::daily::{Daily, DailySettings, Threshold, ThresholdPeriod};
use crate::domain::hourly::{Hourly, HourlySettings};
use crate::reading::NANOS_PER_SEC;

const W: i64 = 900 * NANOS_PER_SEC;
/// Midnight 10 June 2026 in Amsterdam (22:00Z the day before).
const DAY0: i64 = 1_781_042_400 * NANOS_PER_SEC;

fn domain() -> Domain {
    let q = vec!["pm2_5".to_string()];
    let tz = jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap();
    let t = Threshold {
        name: "who2021".into(),
        quantity: "pm2_5".into(),
        period: ThresholdPeriod::Day,
        value: 15.0,
    };
    Domain {
        hourly: Hourly::new(HourlySettings::new(W, 0.75, q)),
        daily: Daily::new(Some(DailySettings {
            tz,
            thresholds: vec![t],
        })),
        ..Domain::default()
    }
}

fn key() -> GroupKey {
    GroupKey::new("air_quality", [("sensor".to_string(), "a".to_string())])
}

/// Window `i` from DAY0 with `n` readings of mean `m`.
fn record(d: &mut Domain, i: i64, n: u64, m: f64) {
    d.hourly.record(&key(), "pm2_5", DAY0 / W + i, n, m);
}

/// The value of window `i`: varied so that any lost or doubled window shows.
fn value(i: i64) -> f64 {
    10.0 + (i % 7) as f64
}

#[test]
fn a_restart_mid_hour_keeps_the_hour_the_running_mean_and_the_day() {
    let mut straight = domain();
    let mut before = domain();
    // 30 hours of 15-minute windows; the restart is in hour 14, in window 57 (14:15-14:30):
    // 2 of its 4 readings before, 2 after.
    let restart_at = 57;
    let mut got_straight = Vec::new();
    let mut got = Vec::new();
    let mut after: Option<Domain> = None;
    for i in 0..30 * 4 {
        let end = DAY0 + (i + 1) * W;
        record(&mut straight, i, 4, value(i));
        got_straight.extend(straight.period_points(end));
        let d = after.as_mut().unwrap_or(&mut before);
        if i == restart_at {
            d.hourly.record(&key(), "pm2_5", DAY0 / W + i, 2, value(i));
            let saved = serde_json::to_string(&d.air_quality_snapshot()).unwrap();
            let mut fresh = domain();
            let entries: Vec<AirQualityEntry> = serde_json::from_str(&saved).unwrap();
            assert_eq!(fresh.restore_air_quality(entries, end), 1);
            // After the restart the window is emitted again with its 2 new readings.
            fresh
                .hourly
                .record(&key(), "pm2_5", DAY0 / W + i, 2, value(i));
            got.extend(fresh.period_points(end));
            after = Some(fresh);
            continue;
        }
        record(d, i, 4, value(i));
        got.extend(d.period_points(end));
    }
    assert!(got_straight.len() > 30, "30 hourly points and a daily one");
    assert!(got_straight
        .iter()
        .any(|p| p.measurement == "air_quality_daily"));
    assert_eq!(got, got_straight);
}

#[test]
fn restore_drops_what_does_not_fit() {
    let now = DAY0 + 30 * 3600 * NANOS_PER_SEC;
    let hour = now / (3600 * NANOS_PER_SEC);
    let e = AirQualityEntry {
        measurement: "air_quality".into(),
        tags: vec![("sensor".into(), "a".into())],
        quantity: "pm2_5".into(),
        open_hours: vec![
            // A window of another hour (window_secs changed?) and one that fits.
            (hour, vec![(0, 1, 5.0), (hour * 4 + 1, 2, 8.0)]),
            // Too old for any running mean.
            (hour - 100, vec![((hour - 100) * 4, 1, 1.0)]),
        ],
        recent: vec![(hour - 1, 3.0, 7.0, true), (hour - 2, 4.0, 1.0, true)],
        days: vec![SavedDay {
            start: now - 10 * 86_400 * NANOS_PER_SEC,
            end: now - 9 * 86_400 * NANOS_PER_SEC,
            ..SavedDay::default()
        }],
        year_counts: vec![],
    };
    let mut d = domain();
    assert_eq!(d.restore_air_quality(vec![e.clone()], now), 1);
    let h = &d.hourly.groups[&key()]["pm2_5"];
    assert_eq!(h.open.len(), 1);
    assert_eq!(h.open[&hour].len(), 1);
    // A coverage of 7 is not a coverage.
    assert_eq!(h.recent.len(), 1);
    assert_eq!(h.recent[0].hour, hour - 2);
    assert!(d.daily.groups[&key()]["pm2_5"].open.is_empty());
    // Another quantity, or hourly values off: nothing.
    let mut other = e.clone();
    other.quantity = "co2".into();
    assert_eq!(domain().restore_air_quality(vec![other], now), 0);
    assert_eq!(Domain::default().restore_air_quality(vec![e], now), 0);
}

#[test]
fn a_snapshot_has_no_nan_to_break_the_json() {
    let mut d = domain();
    // A window with readings but no finite mean, and a finished hour made only of it.
    record(&mut d, 0, 3, f64::NAN);
    record(&mut d, 4, 0, f64::NAN);
    let _ = d.period_points(DAY0 + 3600 * NANOS_PER_SEC);
    record(&mut d, 5, 2, 7.0);
    let json = serde_json::to_string(&d.air_quality_snapshot()).unwrap();
    assert!(!json.contains("null"), "{json}");
    let back: Vec<AirQualityEntry> = serde_json::from_str(&json).unwrap();
    assert_eq!(
        domain().restore_air_quality(back, DAY0 + 3600 * NANOS_PER_SEC),
        1
    );
}
