//! Hourly means, coverage, the 75 % and 18-hour rules, against values computed by hand.

use super::*;

/// 15-minute windows: four per hour, so 3 of 4 is exactly the 75 % rule.
const W: i64 = 900 * NANOS_PER_SEC;

fn hourly() -> Hourly {
    let q = vec!["pm2_5".to_string(), "no2".to_string()];
    Hourly::new(HourlySettings::new(W, 0.75, q))
}

fn key() -> GroupKey {
    GroupKey::new("air_quality", [("sensor".to_string(), "a".to_string())])
}

/// Window `i` (0..4) of hour `hour`.
fn window(hour: i64, i: i64) -> i64 {
    hour * 4 + i
}

/// Fills `hour` of `q` with `(window in hour, count, mean)`.
fn fill(h: &mut Hourly, q: &str, hour: i64, windows: &[(i64, u64, f64)]) {
    for &(i, n, m) in windows {
        h.record(&key(), q, window(hour, i), n, m);
    }
}

fn only(points: &[HourlyPoint], q: &str) -> QuantityHour {
    assert_eq!(points.len(), 1, "{points:?}");
    let v = points[0].values.iter().find(|v| v.quantity == q);
    v.cloned().unwrap_or_else(|| panic!("no {q} in {points:?}"))
}

#[test]
fn mean_is_weighted_by_reading_count() {
    let mut h = hourly();
    // 1 reading of 10, 3 of 20, 2 of 40: (10 + 60 + 80) / 6 = 25, not (10 + 20 + 40) / 3.
    fill(
        &mut h,
        "pm2_5",
        0,
        &[(0, 1, 10.0), (1, 3, 20.0), (3, 2, 40.0)],
    );
    let points = h.close_before(HOUR_NS);
    let v = only(&points, "pm2_5");
    assert_eq!(v.hour.mean, 25.0);
    assert_eq!(v.hour.coverage, 0.75);
    assert!(v.hour.valid);
    assert_eq!(points[0].ts(), 0);
    assert_eq!(points[0].key, key());
}

#[test]
fn seventy_five_percent_rule() {
    let mut h = hourly();
    // Hour 0: 3 of 4 windows -> 0.75, valid. Hour 1: 2 of 4 plus one with no readings -> 0.5.
    fill(&mut h, "pm2_5", 0, &[(0, 5, 1.0), (1, 5, 2.0), (2, 5, 3.0)]);
    fill(
        &mut h,
        "pm2_5",
        1,
        &[(0, 5, 1.0), (1, 5, 2.0), (2, 0, f64::NAN)],
    );
    let points = h.close_before(2 * HOUR_NS);
    assert_eq!(points.len(), 2);
    let (a, b) = (&points[0].values[0], &points[1].values[0]);
    assert_eq!(
        (a.hour.hour, a.hour.coverage, a.hour.valid),
        (0, 0.75, true)
    );
    assert_eq!(
        (b.hour.hour, b.hour.coverage, b.hour.valid),
        (1, 0.5, false)
    );
    assert_eq!(b.hour.mean, 1.5);
}

#[test]
fn hour_is_emitted_once_it_is_over_and_corrections_replace() {
    let mut h = hourly();
    fill(
        &mut h,
        "pm2_5",
        0,
        &[(0, 1, 10.0), (1, 1, 10.0), (2, 1, 10.0)],
    );
    assert!(h.close_before(HOUR_NS - 1).is_empty());
    // A late correction of window 2 (within grace): 3 readings, mean 30, replaces it.
    fill(&mut h, "pm2_5", 0, &[(2, 3, 30.0)]);
    let v = only(&h.close_before(HOUR_NS), "pm2_5");
    // (10 + 10 + 90) / 5 = 22.
    assert_eq!(v.hour.mean, 22.0);
    assert!(h.close_before(HOUR_NS).is_empty(), "emitted once");
    // Too late: the hour is final.
    fill(&mut h, "pm2_5", 0, &[(3, 100, 1000.0)]);
    assert!(h.close_before(2 * HOUR_NS).is_empty());
}

#[test]
fn only_configured_quantities_and_off_is_off() {
    let mut h = hourly();
    fill(&mut h, "co2", 0, &[(0, 1, 400.0)]);
    assert!(h.close_before(HOUR_NS).is_empty());
    let mut off = Hourly::new(None);
    off.record(&key(), "pm2_5", 0, 1, 1.0);
    assert!(off.close_before(HOUR_NS).is_empty());
    // A window that does not divide the hour: off.
    assert_eq!(HourlySettings::new(7 * NANOS_PER_SEC, 0.75, vec![]), None);
}

#[test]
fn running_mean_and_the_eighteen_hour_rule_across_missing_hours() {
    let mut h = hourly();
    let full = |m: f64| [(0, 1, m), (1, 1, m), (2, 1, m), (3, 1, m)];
    // Hours 0..=23 with mean = hour, but hours 5 and 6 have no data at all and hour 7 only
    // one window (coverage 0.25, not valid).
    for hour in 0..24 {
        match hour {
            5 | 6 => {}
            7 => fill(&mut h, "pm2_5", hour, &[(0, 1, 7.0)]),
            _ => fill(&mut h, "pm2_5", hour, &full(hour as f64)),
        }
    }
    let points = h.close_before(24 * HOUR_NS);
    // 22 points: no hourly point for hours without data.
    assert_eq!(points.len(), 22);
    let at = |hour: i64| {
        let p = points.iter().find(|p| p.hour == hour).unwrap();
        p.values[0].running
    };
    // Hour 0: one valid hour, mean 0, not valid.
    assert_eq!(
        at(0),
        Running {
            mean: Some(0.0),
            valid_hours: 1,
            valid: false
        }
    );
    // Hour 20: valid hours 0-4 and 8-20 = 5 + 13 = 18: valid from here.
    // Sum 0+1+2+3+4 = 10 and 8+...+20 = 182: 192 / 18.
    assert_eq!(at(19).valid_hours, 17);
    assert!(!at(19).valid);
    assert_eq!(
        at(20),
        Running {
            mean: Some(192.0 / 18.0),
            valid_hours: 18,
            valid: true
        }
    );
    // Hour 23: 21 valid hours; (0..=23 sum 276) - 5 - 6 - 7 = 258.
    assert_eq!(
        at(23),
        Running {
            mean: Some(258.0 / 21.0),
            valid_hours: 21,
            valid: true
        }
    );
    // Hour 24 slides hour 0 out: 21 valid hours of 24, sum 258 - 0 + 24 = 282.
    fill(&mut h, "pm2_5", 24, &full(24.0));
    let v = only(&h.close_before(25 * HOUR_NS), "pm2_5");
    assert_eq!(
        v.running,
        Running {
            mean: Some(282.0 / 21.0),
            valid_hours: 21,
            valid: true
        }
    );
    // 25 hours with no data: then a lone hour has just itself in its running mean.
    fill(&mut h, "pm2_5", 50, &full(4.0));
    let v = only(&h.close_before(51 * HOUR_NS), "pm2_5");
    assert_eq!(
        v.running,
        Running {
            mean: Some(4.0),
            valid_hours: 1,
            valid: false
        }
    );
}

#[test]
fn one_point_per_key_and_hour_with_fields() {
    let mut h = hourly();
    fill(
        &mut h,
        "pm2_5",
        3,
        &[(0, 2, 8.0), (1, 2, 8.0), (2, 2, 8.0), (3, 2, 8.0)],
    );
    fill(&mut h, "no2", 3, &[(0, 1, 30.0)]);
    let points = h.close_before(4 * HOUR_NS);
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].ts(), 3 * HOUR_NS);
    let f = points[0].fields();
    let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("pm2_5_mean"), Some(FieldValue::Float(8.0)));
    assert_eq!(get("pm2_5_coverage"), Some(FieldValue::Float(1.0)));
    assert_eq!(get("pm2_5_valid"), Some(FieldValue::Bool(true)));
    assert_eq!(get("pm2_5_mean_24h"), Some(FieldValue::Float(8.0)));
    assert_eq!(get("pm2_5_valid_hours_24h"), Some(FieldValue::Int(1)));
    assert_eq!(get("pm2_5_valid_24h"), Some(FieldValue::Bool(false)));
    assert_eq!(get("no2_valid"), Some(FieldValue::Bool(false)));
    assert_eq!(get("no2_coverage"), Some(FieldValue::Float(0.25)));
    // No valid no2 hour: no running mean.
    assert_eq!(get("no2_mean_24h"), None);
}
