//! The aggregator against an injected clock: unsynchronised boot, first sync, steps of
//! +1 h, -1 h, +3 days and -10 s in the middle of a window, late and future readings.
//! Each test states the exact windows (timestamp, count) it expects, in emission order.

use super::*;
use crate::line_protocol::{parse_lines, FieldValue};
use crate::pipeline::DropReason;
use crate::reading::{GroupKey, Reading, SeriesId};
use crate::service::metrics::Metrics;
use std::sync::atomic::Ordering::Relaxed;

const S: i64 = NANOS_PER_SEC;
/// Real wall time at the start of each test: window-aligned (multiple of 60 s).
const T0: i64 = 1_800_000_000 * S;
/// Boot time at the start.
const B0: i64 = 1_000 * S;
const DAY: i64 = 86_400 * S;

/// A gateway: an aggregator, the clock it sees, and everything it emitted.
struct Gateway {
    agg: Aggregator,
    metrics: Arc<Metrics>,
    series: SeriesId,
    boot: i64,
    offset: i64,
    synced: bool,
    /// (point timestamp, count, sum) of every emitted point, in order.
    emitted: Vec<(i64, i64, f64)>,
}

impl Gateway {
    /// Starts at boot time `B0` with wall time `wall`.
    fn start(wall: i64, synced: bool, hold_max: usize) -> Gateway {
        let cfg = AggregationConfig {
            window_secs: 60,
            grace_secs: 5,
            close_delay_secs: 1,
            stats: vec!["count".into(), "sum".into()],
            ..AggregationConfig::default()
        };
        let clock = ClockConfig {
            sync: SyncMode::Kernel,
            hold_max_readings: hold_max,
            ..ClockConfig::default()
        };
        let reg = Registry::new();
        let g = reg.group(GroupKey::new("air_quality", []));
        let series = reg.series(g, "pm2_5").unwrap();
        let metrics = Metrics::new();
        let now = Now {
            wall,
            boot: B0,
            synced,
        };
        let agg = Aggregator::with_clock(&cfg, &clock, reg, metrics.pipeline.clone(), now);
        Gateway {
            agg,
            metrics,
            series,
            boot: B0,
            offset: wall - B0,
            synced,
            emitted: Vec::new(),
        }
    }

    fn now(&self) -> Now {
        Now {
            wall: self.boot + self.offset,
            boot: self.boot,
            synced: self.synced,
        }
    }

    fn tick(&mut self) {
        if let Some(batch) = self.agg.tick(self.now()) {
            self.collect(&batch);
        }
    }

    fn collect(&mut self, batch: &WindowBatch) {
        for p in parse_lines(&batch.payload) {
            let p = p.unwrap();
            let get = |k: &str| {
                p.fields
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
            };
            let (Some(FieldValue::Int(count)), Some(FieldValue::Float(sum))) =
                (get("pm2_5_count"), get("pm2_5_sum"))
            else {
                panic!("fields in {p:?}");
            };
            self.emitted.push((p.ts.unwrap(), count, sum));
        }
    }

    /// Time passes: one tick every 200 ms, as the task loop does.
    fn wait(&mut self, secs: i64) {
        for _ in 0..secs * 5 {
            self.boot += S / 5;
            self.tick();
        }
    }

    /// A serial-style reading without its own time, stamped at receipt with boot time.
    fn receive(&mut self, value: f64) {
        let r = Reading::received(self.series, value, self.boot);
        self.agg.insert(r, self.boot + self.offset);
    }

    /// One reading per second for `n` seconds.
    fn receive_every_second(&mut self, n: usize) {
        for _ in 0..n {
            self.receive(1.0);
            self.wait(1);
        }
    }

    fn finish(&mut self) -> Vec<(i64, i64)> {
        if let Some(batch) = self.agg.flush(self.now()) {
            self.collect(&batch);
        }
        let stamps: Vec<i64> = self.emitted.iter().map(|e| e.0).collect();
        let mut unique = stamps.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            stamps.len(),
            "a window emitted twice: {stamps:?}"
        );
        assert!(
            stamps.windows(2).all(|w| w[0] < w[1]),
            "out of order: {stamps:?}"
        );
        self.emitted.iter().map(|e| (e.0, e.1)).collect()
    }
}

#[test]
fn unsynchronised_boot_holds_readings_and_places_them_at_sync() {
    // fake-hwclock restored a time three days (and 17 s) behind.
    let mut gw = Gateway::start(T0 - 3 * DAY + 17 * S, false, 1000);
    gw.receive_every_second(150);
    assert!(gw.emitted.is_empty(), "nothing leaves with a guessed time");
    assert_eq!(gw.metrics.pipeline.clock.held_readings.load(Relaxed), 150);
    assert_eq!(gw.metrics.pipeline.clock.synchronized.load(Relaxed), 0);
    // NTP steps the clock to the truth and reports sync: boot B0 was wall T0.
    gw.offset = T0 - B0;
    gw.synced = true;
    gw.tick();
    assert_eq!(gw.metrics.pipeline.clock.held_readings.load(Relaxed), 0);
    assert_eq!(
        gw.metrics.pipeline.clock.steps.load(Relaxed),
        0,
        "the sync step is no step"
    );
    // The two complete windows at once, at their true starts; the third is still open.
    let at_sync: Vec<(i64, i64)> = gw.emitted.iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(at_sync, vec![(T0, 60), (T0 + 60 * S, 60)]);
    gw.receive_every_second(50);
    assert_eq!(
        gw.finish(),
        vec![
            (T0, 60),
            (T0 + 60 * S, 60),
            (T0 + 120 * S, 60),
            (T0 + 180 * S, 20)
        ]
    );
}

#[test]
fn hold_is_bounded_and_keeps_the_newest() {
    let mut gw = Gateway::start(T0 - DAY, false, 10);
    gw.receive_every_second(15);
    assert_eq!(gw.metrics.pipeline.clock.held_dropped.load(Relaxed), 5);
    gw.offset = T0 - B0;
    gw.synced = true;
    gw.tick();
    // Readings 5..14 (wall T0+5..T0+14) survived.
    assert_eq!(gw.finish(), vec![(T0, 10)]);
    assert_eq!(gw.emitted[0].2, 10.0);
}

#[test]
fn shutdown_before_sync_loses_held_readings_and_emits_nothing() {
    let mut gw = Gateway::start(T0 - DAY, false, 100);
    gw.receive_every_second(30);
    assert_eq!(gw.finish(), vec![]);
    assert_eq!(gw.metrics.pipeline.clock.held_lost.load(Relaxed), 30);
}

/// Synchronised at T0; 30 readings, then the clock steps by `delta` in the middle of window
/// T0 (the step is seen at the next tick, before the next reading), then 120 more readings.
fn step_by(delta: i64) -> (Vec<(i64, i64)>, Arc<Metrics>) {
    let mut gw = Gateway::start(T0, true, 100);
    gw.receive_every_second(30);
    gw.offset += delta;
    gw.tick();
    gw.receive_every_second(120);
    let windows = gw.finish();
    assert_eq!(gw.metrics.pipeline.clock.steps.load(Relaxed), 1);
    (windows, gw.metrics)
}

#[test]
fn step_forward_one_hour() {
    let (w, m) = step_by(3600 * S);
    let h = T0 + 3600 * S;
    // Window T0 closes at the step with its 30 readings; the rest lands an hour on.
    assert_eq!(
        w,
        vec![(T0, 30), (h, 30), (h + 60 * S, 60), (h + 120 * S, 30)]
    );
    assert_eq!(m.dropped_count(DropReason::Late), 0);
}

#[test]
fn step_forward_three_days() {
    let (w, _) = step_by(3 * DAY);
    let d = T0 + 3 * DAY;
    assert_eq!(
        w,
        vec![(T0, 30), (d, 30), (d + 60 * S, 60), (d + 120 * S, 30)]
    );
}

#[test]
fn step_back_one_hour() {
    let (w, m) = step_by(-3600 * S);
    // Window T0 closes at the step; the next 120 s of readings belong to windows that were
    // already emitted an hour "ago": dropped as late rather than emitted a second time.
    assert_eq!(w, vec![(T0, 30)]);
    assert_eq!(m.dropped_count(DropReason::Late), 120);
}

#[test]
fn step_back_ten_seconds() {
    let (w, m) = step_by(-10 * S);
    // At the step the clock shows T0+20 again: window T0 closes with its 30 readings, the
    // 40 readings stamped T0+20..T0+59 would overlap it and are dropped, the rest is normal.
    assert_eq!(w, vec![(T0, 30), (T0 + 60 * S, 60), (T0 + 120 * S, 20)]);
    assert_eq!(m.dropped_count(DropReason::Late), 40);
}

#[test]
fn slewing_is_not_a_step() {
    let mut gw = Gateway::start(T0, true, 100);
    for _ in 0..90 {
        gw.receive(1.0);
        gw.offset += S / 100; // 10 ms per second: far more than NTP ever slews
        gw.wait(1);
    }
    assert_eq!(gw.metrics.pipeline.clock.steps.load(Relaxed), 0);
    assert_eq!(gw.finish(), vec![(T0, 60), (T0 + 60 * S, 30)]);
}

#[test]
fn late_readings_within_grace_reemit_the_window_later_ones_are_dropped() {
    let mut gw = Gateway::start(T0, true, 100);
    let event = |gw: &mut Gateway, ts: i64, v: f64| {
        let r = Reading::new(gw.series, v, ts);
        let now = gw.boot + gw.offset;
        gw.agg.insert(r, now)
    };
    assert!(event(&mut gw, T0 + 10 * S, 1.0));
    gw.wait(61);
    assert_eq!(
        gw.emitted,
        vec![(T0, 1, 1.0)],
        "emitted at end + close delay"
    );
    gw.wait(2);
    // T0+63 s: within grace (5 s) of window T0's end.
    assert!(event(&mut gw, T0 + 50 * S, 2.0));
    gw.tick();
    assert_eq!(
        gw.emitted,
        vec![(T0, 1, 1.0), (T0, 2, 3.0)],
        "same timestamp, corrected"
    );
    assert_eq!(gw.metrics.pipeline.clock.windows_reemitted.load(Relaxed), 1);
    gw.wait(3);
    // T0+66 s: past grace.
    assert!(!event(&mut gw, T0 + 55 * S, 4.0));
    assert_eq!(gw.metrics.dropped_count(DropReason::Late), 1);
    // Beyond the future tolerance (300 s) of the synchronised clock.
    assert!(!event(&mut gw, T0 + 66 * S + 301 * S, 1.0));
    assert!(event(&mut gw, T0 + 66 * S + 299 * S, 1.0));
    assert_eq!(gw.metrics.dropped_count(DropReason::Future), 1);
    // Nothing is re-emitted without new readings, not even at shutdown.
    gw.wait(10);
    let before = gw.emitted.len();
    if let Some(b) = gw.agg.flush(gw.now()) {
        gw.collect(&b);
    }
    assert_eq!(
        gw.emitted.len(),
        before + 1,
        "only the future window's point"
    );
}

#[test]
fn future_readings_are_judged_only_once_the_clock_is_synchronised() {
    // The stale clock would call a correct timestamp "the future": hold it instead.
    let mut gw = Gateway::start(T0 - DAY, false, 100);
    let good = Reading::new(gw.series, 1.0, T0 + 5 * S);
    let future = Reading::new(gw.series, 1.0, T0 + DAY);
    assert!(gw.agg.insert(good, T0 - DAY));
    assert!(gw.agg.insert(future, T0 - DAY));
    assert_eq!(gw.metrics.dropped_count(DropReason::Future), 0);
    gw.offset = T0 + 30 * S - B0;
    gw.synced = true;
    gw.tick();
    assert_eq!(gw.metrics.dropped_count(DropReason::Future), 1);
    assert_eq!(gw.finish(), vec![(T0, 1)]);
}

/// An aggregator on `clock_now` with sensor health on and one source registered: a close
/// writes a `sensor_health` point per source, stamped by the clock.
fn with_health(clock_now: Now) -> (Aggregator, Arc<Metrics>, SeriesId) {
    let cfg = AggregationConfig {
        window_secs: 60,
        grace_secs: 5,
        stats: vec!["count".into()],
        ..AggregationConfig::default()
    };
    let clock = ClockConfig {
        sync: SyncMode::Kernel,
        ..ClockConfig::default()
    };
    let reg = Registry::new();
    let g = reg.group(GroupKey::new("air_quality", []));
    let series = reg.series(g, "pm2_5").unwrap();
    let metrics = Metrics::new();
    let pms = metrics.source("serial", "pms-1");
    let gw = vec![("gateway".to_string(), "gw".to_string())];
    let agg = Aggregator::with_clock(&cfg, &clock, reg, metrics.pipeline.clone(), clock_now)
        .with_hooks(None, &crate::config::HealthConfig::default(), gw)
        .with_sources(vec![pms]);
    (agg, metrics, series)
}

#[test]
fn flush_before_any_sync_writes_nothing_stamped_by_the_clock() {
    let now = Now {
        wall: T0 - DAY,
        boot: B0,
        synced: false,
    };
    let (mut agg, metrics, series) = with_health(now);
    for i in 0..30 {
        assert!(agg.insert(Reading::received(series, 1.0, B0 + i * S), now.wall));
    }
    let batch = agg.flush(Now {
        boot: B0 + 30 * S,
        ..now
    });
    assert!(
        batch.is_none(),
        "points stamped by an unsynchronised clock: {:?}",
        batch.map(|b| b.payload)
    );
    // The held readings are lost, and counted with their reason.
    assert_eq!(metrics.pipeline.clock.held_lost.load(Relaxed), 30);
    assert_eq!(metrics.pipeline.clock.held_readings.load(Relaxed), 0);
    let text = metrics.render();
    assert!(
        text.contains("citysense_clock_held_dropped_total{reason=\"never_synchronized\"} 30"),
        "{text}"
    );
    assert_eq!(metrics.pipeline.points_emitted.load(Relaxed), 0);
}

#[test]
fn flush_stamps_health_by_the_injected_clock() {
    let (mut agg, _metrics, series) = with_health(Now::synced_at(T0));
    assert!(agg.insert(Reading::new(series, 1.0, T0 + S), T0 + S));
    let batch = agg
        .flush(Now::synced_at(T0 + 10 * S))
        .expect("the open window");
    let stamps: Vec<(String, i64)> = parse_lines(&batch.payload)
        .map(|p| p.unwrap())
        .map(|p| (p.measurement.clone(), p.ts.unwrap()))
        .collect();
    // The window's point, its sensor's health point and the source's: all of window T0.
    assert_eq!(stamps.len(), 3, "{stamps:?}");
    assert!(stamps.iter().all(|(_, ts)| *ts == T0), "{stamps:?}");
}
