use super::*;
use crate::line_protocol::{parse_lines, FieldValue, Point};
use crate::pipeline::DropReason;
use crate::reading::{GroupKey, QuantityKind, Reading, SeriesId};
use crate::service::metrics::Metrics;
use std::sync::atomic::Ordering::Relaxed;

const S: i64 = NANOS_PER_SEC;
/// A window-aligned base time (multiple of 60 s).
const T0: i64 = 1_800_000_000 * S;

fn setup(stats: &[&str]) -> (Aggregator, Registry, Arc<Metrics>, SeriesId, SeriesId) {
    let cfg = AggregationConfig {
        window_secs: 60,
        grace_secs: 5,
        stats: stats.iter().map(|s| s.to_string()).collect(),
        ..AggregationConfig::default()
    };
    let reg = Registry::new();
    let g = reg.group(GroupKey::new(
        "air_quality",
        [("sensor".into(), "a".into())],
    ));
    let pm25 = reg.series(g, "pm2_5").unwrap();
    let pm10 = reg.series(g, "pm10").unwrap();
    let metrics = Metrics::new();
    let agg = Aggregator::new(&cfg, reg.clone(), metrics.pipeline.clone(), T0);
    (agg, reg, metrics, pm25, pm10)
}

fn points(batch: &WindowBatch) -> Vec<Point> {
    parse_lines(&batch.payload).map(|p| p.unwrap()).collect()
}

fn field(p: &Point, key: &str) -> FieldValue {
    p.fields
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("{key} in {p:?}"))
        .1
        .clone()
}

#[test]
fn one_point_per_group_with_exact_stats_at_window_start() {
    let (mut agg, _, metrics, pm25, pm10) = setup(&["mean", "min", "max", "count"]);
    for (i, v) in [4.0, 8.0, 6.0].into_iter().enumerate() {
        assert!(agg.insert(Reading::new(pm25, v, T0 + i as i64 * S), T0));
    }
    agg.insert(Reading::new(pm10, 11.0, T0 + 59 * S), T0);
    // Not yet due: the window ends at T0+60 s, close delay 1 s.
    assert_eq!(agg.close_due(T0 + 60 * S + S / 2), None);
    let batch = agg.close_due(T0 + 61 * S).expect("window closes");
    let pts = points(&batch);
    assert_eq!(pts.len(), 1, "{}", batch.payload);
    let p = &pts[0];
    assert_eq!(p.measurement, "air_quality");
    assert_eq!(p.ts, Some(T0));
    assert_eq!(field(p, "pm2_5_mean"), FieldValue::Float(6.0));
    assert_eq!(field(p, "pm2_5_min"), FieldValue::Float(4.0));
    assert_eq!(field(p, "pm2_5_max"), FieldValue::Float(8.0));
    assert_eq!(field(p, "pm2_5_count"), FieldValue::Int(3));
    assert_eq!(field(p, "pm10_count"), FieldValue::Int(1));
    assert_eq!((batch.points, batch.min_ts, batch.max_ts), (1, T0, T0));
    assert_eq!(metrics.pipeline.windows_closed.load(Relaxed), 2);
    // Nothing left to close.
    assert_eq!(agg.close_due(T0 + 200 * S), None);
}

#[test]
fn late_future_and_non_finite_readings_are_dropped_and_counted() {
    let (mut agg, _, metrics, pm25, _) = setup(&["count"]);
    agg.insert(Reading::new(pm25, 1.0, T0), T0);
    agg.close_due(T0 + 65 * S).unwrap();
    assert!(!agg.insert(Reading::new(pm25, 1.0, T0 + 59 * S), T0 + 66 * S));
    assert_eq!(metrics.dropped_count(DropReason::Late), 1);
    assert!(!agg.insert(Reading::new(pm25, 1.0, T0 + 1000 * S), T0 + 66 * S));
    assert_eq!(metrics.dropped_count(DropReason::Future), 1);
    assert!(!agg.insert(Reading::new(pm25, f64::NAN, T0 + 66 * S), T0 + 66 * S));
    assert!(!agg.insert(Reading::new(pm25, f64::INFINITY, T0 + 66 * S), T0 + 66 * S));
    assert_eq!(metrics.dropped_count(DropReason::NonFinite), 2);
    assert!(!agg.insert(Reading::new(SeriesId(999), 1.0, T0 + 66 * S), T0 + 66 * S));
    assert_eq!(metrics.dropped_count(DropReason::SeriesLimit), 1);
}

#[test]
fn grace_keeps_the_previous_window_open() {
    let (mut agg, _, _, pm25, _) = setup(&["sum"]);
    agg.insert(Reading::new(pm25, 1.0, T0 + 61 * S), T0 + 61 * S);
    // Window T0 is still within grace at T0+62 s: a reading for it is accepted.
    assert!(agg.insert(Reading::new(pm25, 2.0, T0 + 30 * S), T0 + 62 * S));
    let batch = agg.close_due(T0 + 65 * S).unwrap();
    let pts = points(&batch);
    assert_eq!(pts.len(), 1);
    assert_eq!(pts[0].ts, Some(T0));
    assert_eq!(field(&pts[0], "pm2_5_sum"), FieldValue::Float(2.0));
    let batch = agg.flush(Now::synced_at(T0 + 70 * S)).unwrap();
    let pts = points(&batch);
    assert_eq!(pts[0].ts, Some(T0 + 60 * S));
    assert_eq!(field(&pts[0], "pm2_5_sum"), FieldValue::Float(1.0));
}

#[test]
fn windows_are_aligned_and_ordered_across_a_gap() {
    let (mut agg, _, _, pm25, _) = setup(&["count"]);
    for w in [0, 1, 3] {
        agg.insert(
            Reading::new(pm25, 1.0, T0 + w * 60 * S + 7 * S),
            T0 + w * 60 * S + 7 * S,
        );
    }
    let batch = agg.close_due(T0 + 10 * 60 * S).unwrap();
    let ts: Vec<i64> = points(&batch).iter().map(|p| p.ts.unwrap()).collect();
    assert_eq!(ts, vec![T0, T0 + 60 * S, T0 + 180 * S]);
    assert_eq!(batch.points, 3);
}

#[test]
fn percentiles_and_stddev_fields_are_named_by_quantity_and_stat() {
    let (mut agg, _, _, pm25, _) = setup(&["p50", "p95", "stddev", "last"]);
    for v in 1..=100 {
        agg.insert(Reading::new(pm25, v as f64, T0 + v * 100_000_000), T0);
    }
    let p = &points(&agg.flush(Now::synced_at(T0 + 20 * S)).unwrap())[0];
    let names: Vec<&str> = p.fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        vec!["pm2_5_p50", "pm2_5_p95", "pm2_5_stddev", "pm2_5_last"]
    );
    assert_eq!(field(p, "pm2_5_last"), FieldValue::Float(100.0));
    let FieldValue::Float(p95) = field(p, "pm2_5_p95") else {
        panic!()
    };
    assert!((p95 - 95.0).abs() <= 95.0 * 0.02, "p95 {p95}");
}

#[test]
fn percentiles_are_written_at_f32_precision() {
    let (mut agg, _, _, pm25, _) = setup(&["p50"]);
    agg.insert(Reading::new(pm25, 10.7, T0), T0);
    let p = &points(&agg.flush(Now::synced_at(T0 + 20 * S)).unwrap())[0];
    assert_eq!(field(p, "pm2_5_p50"), FieldValue::Float(10.7));
}

#[test]
fn counter_totals_become_increments_across_windows_and_resets() {
    use crate::reading::{QuantityKind, SeriesKind};
    let (agg, reg, metrics, _, _) = setup(&["mean", "count"]);
    let g = reg.group(GroupKey::new(
        "footfall",
        [("sensor".into(), "door".into())],
    ));
    let total = SeriesKind {
        kind: QuantityKind::CounterTotal,
        wrap: Some(65_536),
    };
    let inn = reg.series_with_kind(g, "in", total).unwrap();
    let out = reg.series_with_kind(g, "out", total).unwrap();
    let mut agg = agg.with_derive(Domain::default());
    let mut put = |series, value, secs| {
        assert!(agg.insert(Reading::new(series, value, T0 + secs * S), T0));
    };
    // Window 1: in 100 -> 110 (first reading counts 0), out 65530 -> 4 (16-bit wrap: 10).
    put(inn, 100.0, 1);
    put(inn, 110.0, 30);
    put(out, 65_530.0, 2);
    put(out, 4.0, 31);
    // Window 2: chains from 110; the device reboots mid-window (115 -> 3 -> 5).
    put(inn, 115.0, 61);
    put(inn, 3.0, 70);
    put(inn, 5.0, 80);
    put(out, 4.0, 62);
    let batch = agg.close_due(T0 + 125 * S).expect("two windows close");
    let pts = points(&batch);
    assert_eq!(pts.len(), 2, "{}", batch.payload);
    let (w1, w2) = (&pts[0], &pts[1]);
    assert_eq!(field(w1, "in"), FieldValue::Float(10.0));
    assert_eq!(field(w1, "out"), FieldValue::Float(10.0));
    assert_eq!(field(w1, "net"), FieldValue::Float(0.0));
    assert_eq!(field(w2, "in"), FieldValue::Float(5.0 + 3.0 + 2.0));
    assert_eq!(field(w2, "out"), FieldValue::Float(0.0));
    assert_eq!(field(w2, "net"), FieldValue::Float(10.0));
    assert_eq!(field(w2, "occupancy"), FieldValue::Float(10.0));
    // Counters carry no statistics fields.
    assert!(
        w1.fields.iter().all(|(k, _)| !k.contains("_mean")),
        "{w1:?}"
    );
    assert_eq!(metrics.pipeline.domain.counter_resets.load(Relaxed), 1);
    assert_eq!(metrics.pipeline.domain.counter_wraps.load(Relaxed), 1);
}

#[test]
fn a_correction_reemits_the_whole_point() {
    let (mut agg, _, _, pm25, pm10) = setup(&["mean", "count"]);
    assert!(agg.insert(Reading::new(pm25, 4.0, T0 + S), T0 + S));
    assert!(agg.insert(Reading::new(pm10, 11.0, T0 + 2 * S), T0 + 2 * S));
    let first = points(
        &agg.close_due(T0 + 61 * S)
            .expect("emitted after the close delay"),
    );
    assert_eq!(first.len(), 1);
    // A late PM10 reading within grace: the point comes again with PM2.5 too, so the store
    // (and the indices derived from both) never see a PM10-only point.
    assert!(agg.insert(Reading::new(pm10, 13.0, T0 + 30 * S), T0 + 62 * S));
    let again = points(&agg.close_due(T0 + 62 * S).expect("correction"));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].ts, Some(T0));
    assert_eq!(field(&again[0], "pm10_mean"), FieldValue::Float(12.0));
    assert_eq!(field(&again[0], "pm10_count"), FieldValue::Int(2));
    assert_eq!(field(&again[0], "pm2_5_mean"), FieldValue::Float(4.0));
    // Nothing changed since: nothing more to send.
    assert_eq!(agg.close_due(T0 + 63 * S), None);
}

#[test]
fn series_without_percentiles_keep_no_samples() {
    let heap = |stats: &[&str], kind: QuantityKind| {
        let (mut agg, reg, _, _, _) = setup(stats);
        let g = reg.group(GroupKey::new("m", [("sensor".into(), "x".into())]));
        let kind = crate::reading::SeriesKind { kind, wrap: None };
        let id = reg.series_with_kind(g, "q", kind).unwrap();
        for i in 0..200 {
            assert!(agg.insert(
                Reading::new(id, f64::from(i % 7), T0 + i64::from(i) * S / 10),
                T0
            ));
        }
        let slot = agg.slots[id.0 as usize].as_ref().unwrap();
        let bytes = slot.state.heap_bytes();
        let batch = agg.close_due(T0 + 61 * S).expect("window closes");
        (bytes, batch.payload)
    };
    let (with, payload) = heap(&["mean", "p50"], QuantityKind::Gauge);
    assert!(payload.contains("q_p50="), "{payload}");
    let (without, payload) = heap(&["mean", "max"], QuantityKind::Gauge);
    assert!(payload.contains("q_max=6"), "{payload}");
    let (counter, payload) = heap(&["mean", "p50"], QuantityKind::Counter);
    // 200 readings of 0..6 cycling: 28 full cycles of 21 plus 0+1+2+3.
    assert!(payload.contains("q=594"), "{payload}");
    // The ring of 32 samples and a sketch for the 200 readings, against one sample and none.
    assert!(with > without + 200, "{with} vs {without}");
    assert_eq!(without, counter);
}

#[test]
fn hourly_point_after_the_hour_and_grace_with_the_late_correction_in_it() {
    use crate::domain::hourly::{Hourly, HourlySettings};
    let (agg, _, _, pm25, pm10) = setup(&["mean", "count"]);
    let q = vec!["pm2_5".to_string(), "pm10".to_string()];
    let settings = HourlySettings::new(60 * S, 0.75, q);
    let mut agg = agg.with_derive(Domain {
        hourly: Hourly::new(settings),
        eaqi: Some(crate::domain::aqi::EaqiVersion::V2024),
        ..Domain::default()
    });
    // PM2.5 in windows 0-43 (44 of 60: not enough alone); window 0 has two readings.
    for w in 0..44 {
        let ts = T0 + w * 60 * S + S;
        assert!(agg.insert(Reading::new(pm25, 10.0, ts), ts));
    }
    assert!(agg.insert(Reading::new(pm25, 70.0, T0 + 2 * S), T0 + 2 * S));
    assert!(agg.insert(Reading::new(pm10, 5.0, T0 + 3590 * S), T0 + 3590 * S));
    agg.close_due(T0 + 3595 * S).expect("windows 0-58");
    let first = agg.close_due(T0 + 3601 * S + S / 2).expect("window 59");
    assert!(!first.payload.contains("air_quality_hourly"));
    // The window points keep their own, labelled indication of the index.
    assert_eq!(
        field(&points(&first)[0], "aqi_period_s"),
        FieldValue::Int(60)
    );
    // A late PM2.5 reading for window 59, within the 5 s grace: the 45th window.
    assert!(agg.insert(Reading::new(pm25, 30.0, T0 + 3595 * S), T0 + 3602 * S));
    let fix = agg.close_due(T0 + 3603 * S).expect("correction");
    assert!(
        !fix.payload.contains("air_quality_hourly"),
        "{}",
        fix.payload
    );
    let batch = agg.close_due(T0 + 3606 * S).expect("hour final");
    let pts = points(&batch);
    let p = (pts.iter())
        .find(|p| p.measurement == "air_quality_hourly")
        .unwrap_or_else(|| panic!("{}", batch.payload));
    assert_eq!(p.ts, Some(T0));
    assert_eq!(p.tags, vec![("sensor".to_string(), "a".to_string())]);
    // (44 * 10 + 70 + 30) / 46 readings.
    assert_eq!(field(p, "pm2_5_mean"), FieldValue::Float(540.0 / 46.0));
    assert_eq!(field(p, "pm2_5_coverage"), FieldValue::Float(0.75));
    assert_eq!(field(p, "pm2_5_valid"), FieldValue::Bool(true));
    assert_eq!(field(p, "pm2_5_valid_hours_24h"), FieldValue::Int(1));
    assert_eq!(field(p, "pm10_coverage"), FieldValue::Float(1.0 / 60.0));
    assert_eq!(field(p, "pm10_valid"), FieldValue::Bool(false));
    // The official index from the valid hour only: PM2.5 11.7 is EAQI 2 (5-15).
    assert_eq!(field(p, "eaqi"), FieldValue::Int(2));
    assert_eq!(field(p, "eaqi_pollutants"), FieldValue::Str("pm2_5".into()));
    assert_eq!(field(p, "aqi_period_s"), FieldValue::Int(3600));
    // Once.
    assert_eq!(agg.close_due(T0 + 3700 * S), None);
}

#[test]
fn calibration_feeds_the_statistics_and_indices_and_keeps_the_raw_mean() {
    use crate::domain::calibration::{Calibration, Model};
    let (agg, reg, _, pm25, pm10) = setup(&["mean", "min", "max", "count", "sum"]);
    let g = reg.group(GroupKey::new(
        "air_quality",
        [("sensor".into(), "a".into())],
    ));
    let rh = reg.series(g, "humidity").unwrap();
    let rule = |id: &str, q: &str, model| Calibration {
        id: id.into(),
        match_tags: vec![("sensor".into(), "a".into())],
        quantity: q.into(),
        valid_from: i64::MIN,
        model,
    };
    let mut agg = agg.with_derive(Domain {
        eaqi: Some(crate::domain::aqi::EaqiVersion::V2024),
        calibration: vec![
            rule(
                "lin-1",
                "pm2_5",
                Model::Linear {
                    gain: 0.5,
                    offset: 1.0,
                },
            ),
            rule(
                "rh-1",
                "pm10",
                Model::LinearRh {
                    a: 2.0,
                    b: 0.5,
                    c: -0.1,
                },
            ),
        ],
        ..Domain::default()
    });
    for (i, v) in [4.0, 8.0, 6.0].into_iter().enumerate() {
        agg.insert(Reading::new(pm25, v, T0 + i as i64 * S), T0);
    }
    agg.insert(Reading::new(pm10, 40.0, T0 + 5 * S), T0);
    agg.insert(Reading::new(rh, 60.0, T0 + 6 * S), T0);
    let batch = agg.close_due(T0 + 61 * S).expect("window closes");
    let p = &points(&batch)[0];
    // PM2.5: 0.5 x + 1 of 4, 8, 6: mean 4, min 3, max 5, sum 12.
    assert_eq!(field(p, "pm2_5_mean"), FieldValue::Float(4.0));
    assert_eq!(field(p, "pm2_5_min"), FieldValue::Float(3.0));
    assert_eq!(field(p, "pm2_5_max"), FieldValue::Float(5.0));
    assert_eq!(field(p, "pm2_5_sum"), FieldValue::Float(12.0));
    assert_eq!(field(p, "pm2_5_count"), FieldValue::Int(3));
    assert_eq!(field(p, "pm2_5_raw_mean"), FieldValue::Float(6.0));
    // PM10: 2 + 0.5 * 40 - 0.1 * 60 = 16, with the point's humidity.
    assert_eq!(field(p, "pm10_mean"), FieldValue::Float(16.0));
    assert_eq!(field(p, "pm10_raw_mean"), FieldValue::Float(40.0));
    assert_eq!(
        field(p, "calibration_id"),
        FieldValue::Str("lin-1,rh-1".into())
    );
    // The index of the calibrated means: PM10 16 is EAQI 2 (15-45); raw 40 would be too,
    // but PM2.5 raw 6 is 2 and calibrated 4 is 1: PM10 decides.
    assert_eq!(field(p, "eaqi"), FieldValue::Int(2));
    assert_eq!(field(p, "eaqi_pollutant"), FieldValue::Str("pm10".into()));
    // Humidity itself is not calibrated.
    assert_eq!(field(p, "humidity_mean"), FieldValue::Float(60.0));
}
