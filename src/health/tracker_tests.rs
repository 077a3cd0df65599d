use super::*;
use crate::reading::{GroupKey, SeriesId};

const S: i64 = NANOS_PER_SEC;
const W: i64 = 60 * S;
/// A window-aligned base time.
const T0: i64 = 1_800_000_000 * S;

struct Fixture {
    tracker: Tracker,
    metrics: HealthMetrics,
    pm: SeriesId,
    temp: SeriesId,
    door: SeriesId,
}

fn fixture(cfg: HealthConfig) -> Fixture {
    let reg = Registry::new();
    let tags = |s: &str| [("sensor".to_string(), s.to_string())];
    let air = reg.group(GroupKey::new("air_quality", tags("a")));
    let climate = reg.group(GroupKey::new("climate", tags("a")));
    let foot = reg.group(GroupKey::new("footfall", tags("door")));
    Fixture {
        pm: reg.series(air, "pm2_5").unwrap(),
        temp: reg.series(climate, "temperature").unwrap(),
        door: reg.series(foot, "in").unwrap(),
        tracker: Tracker::new(cfg, W, reg),
        metrics: HealthMetrics::default(),
    }
}

impl Fixture {
    fn feed(&mut self, series: SeriesId, value: f64, ts: i64) {
        let r = Reading::new(series, value, ts);
        self.tracker
            .observe(&r, ts.div_euclid(W), true, &self.metrics);
    }
}

fn field(p: &HealthPoint, key: &str) -> FieldValue {
    p.fields
        .iter()
        .find(|f| f.0 == key)
        .map(|f| f.1.clone())
        .unwrap_or_else(|| panic!("{key} in {p:?}"))
}

fn sensor<'p>(points: &'p [HealthPoint], name: &str) -> &'p HealthPoint {
    points
        .iter()
        .find(|p| p.tags.iter().any(|(k, v)| &**k == "sensor" && &**v == name))
        .unwrap_or_else(|| panic!("{name} in {points:?}"))
}

#[test]
fn one_point_per_sensor_across_measurements_with_counts_and_ranges() {
    let mut f = fixture(HealthConfig::default());
    for i in 0..6 {
        f.feed(f.pm, 10.0 + i as f64, T0 + i * 10 * S);
        f.feed(
            f.temp,
            if i == 2 { 120.0 } else { 20.0 + i as f64 },
            T0 + i * 10 * S,
        );
    }
    let w0 = T0 / W;
    let points = f.tracker.close(w0, w0 + 1, T0 + W + 6 * S, &f.metrics);
    assert_eq!(
        points.len(),
        1,
        "air_quality and climate of sensor a are one sensor"
    );
    let p = &points[0];
    assert_eq!(p.ts, T0);
    assert_eq!(field(p, "readings"), FieldValue::Int(12));
    assert_eq!(field(p, "out_of_range"), FieldValue::Int(1));
    assert_eq!(field(p, "sensor_up"), FieldValue::Int(1));
    assert_eq!(field(p, "interval_s"), FieldValue::Float(10.0));
    assert_eq!(field(p, "last_seen_s"), FieldValue::Float(10.0));
    assert_eq!(field(p, "stuck"), FieldValue::Int(0));
    assert!(p.fields.iter().all(|f| f.0 != "warming_up"));
    assert_eq!(f.metrics.out_of_range.load(Relaxed), 1);
}

#[test]
fn silent_sensor_goes_stale_after_n_intervals() {
    let mut f = fixture(HealthConfig::default());
    for i in 0..4 {
        f.feed(f.pm, i as f64, T0 + i * 5 * S); // every 5 s, last at +15 s
    }
    let w0 = T0 / W;
    // Window 0 ends at +60 s: 45 s since the last reading > 3 x 5 s.
    let points = f.tracker.close(w0, w0 + 2, T0 + 2 * W + 6 * S, &f.metrics);
    assert_eq!(points.len(), 2, "a point per window, the empty one too");
    assert_eq!(field(&points[0], "sensor_up"), FieldValue::Int(0));
    assert_eq!(field(&points[0], "last_seen_s"), FieldValue::Float(45.0));
    assert_eq!(field(&points[1], "readings"), FieldValue::Int(0));
    assert_eq!(f.metrics.sensors_stale.load(Relaxed), 1);
    assert_eq!(f.metrics.sensors_up.load(Relaxed), 0);
}

#[test]
fn configured_interval_overrides_learning() {
    let cfg = HealthConfig {
        expected_interval_secs: Some(30.0),
        ..HealthConfig::default()
    };
    let mut f = fixture(cfg);
    f.feed(f.pm, 1.0, T0);
    f.feed(f.pm, 2.0, T0 + S);
    let w0 = T0 / W;
    let p = f.tracker.close(w0, w0 + 1, T0 + W, &f.metrics);
    // 59 s silent but 3 x 30 s allowed.
    assert_eq!(field(&p[0], "sensor_up"), FieldValue::Int(1));
    assert_eq!(field(&p[0], "interval_s"), FieldValue::Float(30.0));
}

#[test]
fn identical_values_are_stuck_except_for_counters() {
    let mut f = fixture(HealthConfig::default());
    for i in 0..10 {
        f.feed(f.pm, 7.0, T0 + i * S);
        f.feed(f.door, 0.0, T0 + i * S);
    }
    let w0 = T0 / W;
    let points = f.tracker.close(w0, w0 + 1, T0 + W, &f.metrics);
    assert_eq!(field(sensor(&points, "a"), "stuck"), FieldValue::Int(1));
    assert_eq!(field(sensor(&points, "door"), "stuck"), FieldValue::Int(0));
    assert_eq!(f.metrics.sensors_stuck.load(Relaxed), 1);
    // One changed value ends it.
    f.feed(f.pm, 7.5, T0 + W + S);
    let points = f.tracker.close(w0 + 1, w0 + 2, T0 + 2 * W, &f.metrics);
    assert_eq!(field(sensor(&points, "a"), "stuck"), FieldValue::Int(0));
}

#[test]
fn warm_up_after_first_reading_and_after_a_gap() {
    let cfg = HealthConfig {
        warmup_secs: 90,
        expected_interval_secs: Some(10.0),
        ..HealthConfig::default()
    };
    let mut f = fixture(cfg);
    for i in 0..6 {
        f.feed(f.pm, i as f64, T0 + i * 10 * S);
    }
    let w0 = T0 / W;
    let p = f.tracker.close(w0, w0 + 1, T0 + W, &f.metrics);
    assert_eq!(field(&p[0], "warming_up"), FieldValue::Int(1));
    f.feed(f.pm, 1.0, T0 + W);
    let p = f.tracker.close(w0 + 1, w0 + 2, T0 + 2 * W, &f.metrics);
    assert_eq!(
        field(&p[0], "warming_up"),
        FieldValue::Int(0),
        "120 s after first reading"
    );
    // Silent for 10 minutes, then back: warming up again.
    f.feed(f.pm, 2.0, T0 + 12 * W + 50 * S);
    let p = f.tracker.close(w0 + 12, w0 + 13, T0 + 13 * W, &f.metrics);
    assert_eq!(field(&p[0], "warming_up"), FieldValue::Int(1));
}

#[test]
fn unknown_and_forgotten_sensors_are_not_reported_and_closes_are_capped() {
    let cfg = HealthConfig {
        forget_after_secs: 600,
        ..HealthConfig::default()
    };
    let mut f = fixture(cfg);
    let w0 = T0 / W;
    f.feed(f.pm, 1.0, T0 + W + S); // first seen in window 1
    let p = f.tracker.close(w0, w0 + 1, T0 + W + 6 * S, &f.metrics);
    assert!(p.is_empty(), "not known yet in window 0: {p:?}");
    // Windows 1..=10 end at most 600 s after the reading; later ones forget the sensor.
    let p = f.tracker.close(w0 + 1, w0 + 20, T0 + 20 * W, &f.metrics);
    assert_eq!(p.len(), 10);
    let mut f = fixture(HealthConfig::default());
    f.feed(f.pm, 1.0, T0);
    let p = f.tracker.close(w0, w0 + 1000, T0 + 1000 * W, &f.metrics);
    assert_eq!(
        p.len() as i64,
        MAX_WINDOWS_PER_CLOSE,
        "a clock jump emits a bounded number"
    );
    assert_eq!(p[0].ts, (w0 + 1000 - MAX_WINDOWS_PER_CLOSE) * W);
}

#[test]
fn source_points_report_deltas() {
    let mut f = fixture(HealthConfig::default());
    let m = crate::service::metrics::Metrics::new();
    let s = m.source("mqtt", "local");
    s.messages.fetch_add(10, Relaxed);
    s.bad_input("t", &"x");
    s.set_connected(true);
    let gw = [("gateway".to_string(), "gw".to_string())];
    let p = f.tracker.source_points(std::slice::from_ref(&s), &gw, T0);
    assert_eq!(field(&p[0], "messages"), FieldValue::Int(10));
    assert_eq!(field(&p[0], "bad_input"), FieldValue::Int(1));
    assert_eq!(field(&p[0], "source_up"), FieldValue::Int(1));
    assert_eq!(
        GroupKey {
            measurement: "sensor_health".into(),
            tags: p[0].tags.clone()
        }
        .to_string(),
        "sensor_health,gateway=gw,source=local,source_kind=mqtt"
    );
    s.messages.fetch_add(3, Relaxed);
    let p = f.tracker.source_points(&[s], &gw, T0 + W);
    assert_eq!(field(&p[0], "messages"), FieldValue::Int(3));
    assert_eq!(field(&p[0], "bad_input"), FieldValue::Int(0));
}

#[test]
fn counts_of_open_windows_per_sensor_including_sensors_seen_later() {
    let mut f = fixture(HealthConfig::default());
    let w0 = T0 / W;
    f.feed(f.pm, 1.0, T0);
    f.feed(f.pm, 2.0, T0 + W + S); // window 1 opens before the door is known
    f.feed(f.door, 1.0, T0 + 2 * S);
    f.feed(f.door, 2.0, T0 + W + 2 * S);
    f.feed(f.door, 3.0, T0 + W + 3 * S);
    let p = f.tracker.close(w0, w0 + 1, T0 + W + 6 * S, &f.metrics);
    assert_eq!(field(sensor(&p, "a"), "readings"), FieldValue::Int(1));
    assert_eq!(field(sensor(&p, "door"), "readings"), FieldValue::Int(1));
    assert_eq!(f.tracker.windows.len(), 1, "window 0's counts are dropped");
    let p = f.tracker.close(w0 + 1, w0 + 2, T0 + 2 * W, &f.metrics);
    assert_eq!(field(sensor(&p, "a"), "readings"), FieldValue::Int(1));
    assert_eq!(field(sensor(&p, "door"), "readings"), FieldValue::Int(2));
    assert!(f.tracker.windows.is_empty());
}

#[test]
fn per_series_state_stays_small() {
    assert_eq!(std::mem::size_of::<Option<SeriesHealth>>(), 24);
    assert_eq!(std::mem::size_of::<SensorHealth>(), 48);
}

#[test]
fn learned_intervals_survive_a_restart() {
    let mut f = fixture(HealthConfig::default());
    // Sensor a reports every 15 minutes (windows of 1 minute).
    for i in 0..3 {
        f.feed(f.pm, 10.0 + i as f64, T0 + i * 900 * S);
    }
    let saved = f.tracker.intervals(10);
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].interval_s, 900.0);

    let mut g = fixture(HealthConfig::default());
    // Too old: not kept; recent: kept until the sensor reports again.
    assert_eq!(g.tracker.restore_intervals(saved.clone(), T0 + DAY), 0);
    assert_eq!(g.tracker.restore_intervals(saved.clone(), T0), 1);
    assert_eq!(g.tracker.intervals(10), saved, "saved on while not seen");
    let t = T0 + 3 * 900 * S;
    g.feed(g.pm, 5.0, t);
    // Ten minutes later: within 3 x 15 min, up; without the restored interval the window
    // length (1 min) would make it stale.
    let p = g.tracker.close(
        t.div_euclid(W) + 10,
        t.div_euclid(W) + 11,
        t + 11 * W,
        &g.metrics,
    );
    assert_eq!(field(&p[0], "sensor_up"), FieldValue::Int(1));
    assert_eq!(field(&p[0], "interval_s"), FieldValue::Float(900.0));
}

const DAY: i64 = 86_400 * S;
