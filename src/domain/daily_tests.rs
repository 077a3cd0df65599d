//! Daily values: DST days, the 18-hour rule and thresholds, against values computed by hand.

use super::*;
use crate::time::parse_rfc3339;

fn ts(s: &str) -> TimestampNs {
    parse_rfc3339(s).unwrap()
}

fn key() -> GroupKey {
    GroupKey::new("air_quality", [("sensor".to_string(), "a".to_string())])
}

fn daily(thresholds: Vec<Threshold>) -> Daily {
    let tz = TimeZone::get("Europe/Amsterdam").unwrap();
    Daily::new(Some(DailySettings { tz, thresholds }))
}

fn hour(at: TimestampNs, mean: f64, valid: bool) -> HourValue {
    HourValue {
        hour: at / HOUR_NS,
        mean,
        coverage: if valid { 1.0 } else { 0.5 },
        valid,
    }
}

/// Adds `means` as consecutive valid hours of `q` from `from`.
fn feed(d: &mut Daily, q: &str, from: TimestampNs, means: &[f64]) {
    for (i, m) in means.iter().enumerate() {
        d.add(&key(), q, &hour(from + i as i64 * HOUR_NS, *m, true));
    }
}

fn get(p: &DailyPoint, k: &str) -> Option<FieldValue> {
    p.fields
        .iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.clone())
}

#[test]
fn spring_forward_day_has_23_hours() {
    let mut d = daily(vec![]);
    // 29 March 2026 in Amsterdam: 00:00 +01:00 to 00:00 +02:00 next day.
    let start = ts("2026-03-28T23:00:00Z");
    assert_eq!(
        local_day(&d.settings.as_ref().unwrap().tz, start),
        Some((start, ts("2026-03-29T22:00:00Z"), 2026))
    );
    // 23 hours of 1.0, then one of 100 that belongs to the 30th.
    let mut means = vec![1.0; 23];
    means.push(100.0);
    feed(&mut d, "pm2_5", start, &means);
    assert!(d.close_before(ts("2026-03-29T21:59:59Z")).is_empty());
    let points = d.close_before(ts("2026-03-29T22:00:00Z"));
    assert_eq!(points.len(), 1);
    let p = &points[0];
    assert_eq!((p.ts, &p.key), (start, &key()));
    assert_eq!(get(p, "pm2_5_hours"), Some(FieldValue::Int(23)));
    assert_eq!(get(p, "pm2_5_valid_hours"), Some(FieldValue::Int(23)));
    assert_eq!(get(p, "pm2_5_mean"), Some(FieldValue::Float(1.0)));
    assert_eq!(get(p, "pm2_5_valid"), Some(FieldValue::Bool(true)));
}

#[test]
fn fall_back_day_has_25_hours() {
    let mut d = daily(vec![]);
    // 25 October 2026: 00:00 +02:00 to 00:00 +01:00 next day.
    let start = ts("2026-10-24T22:00:00Z");
    let means: Vec<f64> = (0..25).map(f64::from).collect();
    feed(&mut d, "pm10", start, &means);
    let points = d.close_before(ts("2026-10-25T23:00:00Z"));
    assert_eq!(points.len(), 1, "{points:?}");
    let p = &points[0];
    assert_eq!(p.ts, start);
    assert_eq!(get(p, "pm10_hours"), Some(FieldValue::Int(25)));
    assert_eq!(get(p, "pm10_valid_hours"), Some(FieldValue::Int(25)));
    // (0 + 1 + ... + 24) / 25 = 300 / 25.
    assert_eq!(get(p, "pm10_mean"), Some(FieldValue::Float(12.0)));
}

#[test]
fn eighteen_valid_hours_make_a_day() {
    let mut d = daily(vec![]);
    let day1 = ts("2026-06-09T22:00:00Z");
    let day2 = day1 + 24 * HOUR_NS;
    // Day 1: 17 valid hours of 2.0 and 7 invalid ones of 50 (not in the mean).
    feed(&mut d, "no2", day1, &[2.0; 17]);
    for i in 17..24 {
        d.add(&key(), "no2", &hour(day1 + i * HOUR_NS, 50.0, false));
    }
    // Day 2: 18 valid hours, 9 of 10 and 9 of 20: mean 15.
    let mut means = vec![10.0; 9];
    means.extend([20.0; 9]);
    feed(&mut d, "no2", day2, &means);
    let points = d.close_before(day2 + 24 * HOUR_NS);
    assert_eq!(points.len(), 2);
    let (a, b) = (&points[0], &points[1]);
    assert_eq!(get(a, "no2_valid_hours"), Some(FieldValue::Int(17)));
    assert_eq!(get(a, "no2_valid"), Some(FieldValue::Bool(false)));
    assert_eq!(get(a, "no2_mean"), Some(FieldValue::Float(2.0)));
    assert_eq!(get(b, "no2_valid_hours"), Some(FieldValue::Int(18)));
    assert_eq!(get(b, "no2_valid"), Some(FieldValue::Bool(true)));
    assert_eq!(get(b, "no2_mean"), Some(FieldValue::Float(15.0)));
}

#[test]
fn thresholds_count_hours_and_days_per_year() {
    let t = |name: &str, q: &str, period, value| Threshold {
        name: name.into(),
        quantity: q.into(),
        period,
        value,
    };
    let mut d = daily(vec![
        t("who2021", "pm2_5", ThresholdPeriod::Day, 15.0),
        t("eu", "no2", ThresholdPeriod::Hour, 200.0),
    ]);
    // 30 and 31 December 2026, 1 January 2027 (CET: midnight is 23:00Z the day before).
    let days = [
        ts("2026-12-29T23:00:00Z"),
        ts("2026-12-30T23:00:00Z"),
        ts("2026-12-31T23:00:00Z"),
    ];
    // PM2.5 daily means 16 (above 15), 15 (not above: the guideline is "above"), 20.
    for (day, m) in days.iter().zip([16.0, 15.0, 20.0]) {
        feed(&mut d, "pm2_5", *day, &[m; 24]);
    }
    // NO2: 3 hours above 200 on day 1 (and 200 itself is not above), 1 on day 3.
    let mut no2 = vec![50.0; 24];
    no2[..4].copy_from_slice(&[201.0, 250.0, 300.0, 200.0]);
    feed(&mut d, "no2", days[0], &no2);
    feed(&mut d, "no2", days[1], &[50.0; 24]);
    no2 = vec![50.0; 24];
    no2[5] = 210.0;
    feed(&mut d, "no2", days[2], &no2);
    let points = d.close_before(days[2] + 24 * HOUR_NS);
    assert_eq!(points.len(), 3);
    let f = |i: usize, k: &str| get(&points[i], k);
    assert_eq!(f(0, "pm2_5_above_who2021"), Some(FieldValue::Bool(true)));
    assert_eq!(
        f(0, "pm2_5_days_above_who2021_year"),
        Some(FieldValue::Int(1))
    );
    assert_eq!(f(1, "pm2_5_above_who2021"), Some(FieldValue::Bool(false)));
    assert_eq!(
        f(1, "pm2_5_days_above_who2021_year"),
        Some(FieldValue::Int(1))
    );
    // A new year starts its count again.
    assert_eq!(f(2, "pm2_5_above_who2021"), Some(FieldValue::Bool(true)));
    assert_eq!(
        f(2, "pm2_5_days_above_who2021_year"),
        Some(FieldValue::Int(1))
    );
    assert_eq!(f(0, "no2_hours_above_eu"), Some(FieldValue::Int(3)));
    assert_eq!(f(1, "no2_hours_above_eu_year"), Some(FieldValue::Int(3)));
    assert_eq!(f(2, "no2_hours_above_eu"), Some(FieldValue::Int(1)));
    assert_eq!(f(2, "no2_hours_above_eu_year"), Some(FieldValue::Int(1)));
}

#[test]
fn an_invalid_day_is_not_above_and_off_is_off() {
    let mut d = daily(vec![Threshold {
        name: "who2021".into(),
        quantity: "pm2_5".into(),
        period: ThresholdPeriod::Day,
        value: 15.0,
    }]);
    let day = ts("2026-06-09T22:00:00Z");
    feed(&mut d, "pm2_5", day, &[99.0; 10]);
    let points = d.close_before(day + 24 * HOUR_NS);
    assert_eq!(get(&points[0], "pm2_5_above_who2021"), None);
    let year = get(&points[0], "pm2_5_days_above_who2021_year");
    assert_eq!(year, Some(FieldValue::Int(0)));
    let mut off = Daily::new(None);
    off.add(&key(), "pm2_5", &hour(day, 1.0, true));
    assert!(off.close_before(i64::MAX).is_empty());
}
