//! Per-sensor health state, updated on every reading and read out at every window close.
//! Pure: no tokio, no clock; the aggregator passes event times and `now`.
//!
//! Memory: 24 bytes per series, 48 per sensor plus its index entry (its tag set is shared with
//! the registry), and 8 per sensor per open window for the counts. Ranges are a small table of
//! their own (one entry per distinct range), not a copy per series.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use super::HealthMetrics;
use crate::config::HealthConfig;
use crate::line_protocol::FieldValue;
use crate::reading::{Reading, Registry, Tags, TimestampNs, NANOS_PER_SEC};
use crate::telemetry::SourceMetrics;

/// Weight of the newest gap in the learned interval (exponential moving average).
const EWMA_WEIGHT: f64 = 0.2;
/// Most windows one close reports health for (a clock jump must not emit days of points).
pub const MAX_WINDOWS_PER_CLOSE: i64 = 60;

/// One `sensor_health` point: the tag set (without gateway extras for sources) and fields.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthPoint {
    pub tags: Tags,
    pub fields: Vec<(&'static str, FieldValue)>,
    pub ts: TimestampNs,
}

/// `SeriesHealth::range` of a series without a plausible range.
const NO_RANGE: u32 = u32::MAX;

/// 24 bytes, and 24 as an `Option` too (the `bool` gives it a niche).
struct SeriesHealth {
    last: f64,
    sensor: u32,
    run: u32,
    /// Index into `Tracker::ranges`, or [`NO_RANGE`].
    range: u32,
    track_stuck: bool,
}

struct SensorHealth {
    tags: Tags,
    first_ts: TimestampNs,
    last_ts: TimestampNs,
    /// Learned gap between readings, ns; 0 until two readings with distinct times.
    interval_ns: f64,
    /// Start of the current run of reporting (first reading, or first after being stale).
    up_since: TimestampNs,
}

/// (readings, out of range) per sensor index in one open window.
struct WindowCounts {
    window: i64,
    counts: Vec<(u32, u32)>,
}

pub struct Tracker {
    cfg: HealthConfig,
    window_ns: i64,
    registry: Registry,
    series: Vec<Option<SeriesHealth>>,
    sensors: Vec<SensorHealth>,
    sensor_index: HashMap<Tags, u32>,
    /// The distinct plausible ranges series refer to.
    ranges: Vec<(f64, f64)>,
    /// Counts of the open windows (a few), dropped as they close.
    windows: Vec<WindowCounts>,
    /// (messages, bad input) per source at the previous close.
    sources_prev: HashMap<String, (u64, u64)>,
    /// Intervals restored from the state file, waiting for their sensors.
    restored: state::Pending,
}

impl Tracker {
    pub fn new(cfg: HealthConfig, window_ns: i64, registry: Registry) -> Tracker {
        Tracker {
            cfg,
            window_ns,
            registry,
            series: Vec::new(),
            sensors: Vec::new(),
            sensor_index: HashMap::new(),
            ranges: Vec::new(),
            windows: Vec::new(),
            sources_prev: HashMap::new(),
            restored: state::Pending::new(),
        }
    }

    /// Records `r` (in `window`). `measured` is false for readings that carry no measured
    /// value (privacy register updates): they count as a sign of life only.
    pub fn observe(&mut self, r: &Reading, window: i64, measured: bool, metrics: &HealthMetrics) {
        let Some(idx) = self.series_entry(r, measured) else {
            return;
        };
        let Some(s) = self.series[idx].as_mut() else {
            return;
        };
        let sensor_idx = s.sensor as usize;
        let mut out_of_range = false;
        if measured {
            let range = self.ranges.get(s.range as usize);
            if range.is_some_and(|(lo, hi)| r.value < *lo || r.value > *hi) {
                out_of_range = true;
                metrics.out_of_range.fetch_add(1, Relaxed);
            }
            if s.last == r.value {
                s.run = s.run.saturating_add(1);
            } else {
                (s.last, s.run) = (r.value, 1);
            }
        }
        let stale_ns = self.stale_ns_for(sensor_idx);
        let Some(sensor) = self.sensors.get_mut(sensor_idx) else {
            return;
        };
        let gap = r.ts - sensor.last_ts;
        if gap > 0 {
            if gap as f64 > stale_ns {
                sensor.up_since = r.ts;
            }
            sensor.interval_ns = if sensor.interval_ns == 0.0 {
                gap as f64
            } else {
                (1.0 - EWMA_WEIGHT) * sensor.interval_ns + EWMA_WEIGHT * gap as f64
            };
            sensor.last_ts = r.ts;
        }
        let sensors = self.sensors.len();
        let counts = self.window_counts(window, sensors);
        if let Some(c) = counts.get_mut(sensor_idx) {
            c.0 += 1;
            c.1 += u32::from(out_of_range);
        }
    }

    /// The counts of `window`, one per sensor (`sensors` of them), created on first use.
    fn window_counts(&mut self, window: i64, sensors: usize) -> &mut Vec<(u32, u32)> {
        let i = match self.windows.iter().position(|w| w.window == window) {
            Some(i) => i,
            None => {
                self.windows.push(WindowCounts {
                    window,
                    counts: Vec::new(),
                });
                self.windows.len() - 1
            }
        };
        let counts = &mut self.windows[i].counts;
        if counts.len() < sensors {
            reserve_some(counts, sensors);
            counts.resize(sensors, (0, 0));
        }
        counts
    }

    /// The index of the series' state, created on first sight (with its sensor).
    fn series_entry(&mut self, r: &Reading, measured: bool) -> Option<usize> {
        let idx = r.series.0 as usize;
        if idx >= self.series.len() {
            reserve_some(&mut self.series, idx + 1);
            self.series.resize_with(idx + 1, || None);
        }
        if self.series[idx].is_none() {
            let info = self.registry.info(r.series)?;
            let tags = info.group_key.tags.clone();
            let next = self.sensors.len() as u32;
            let sensor = *self.sensor_index.entry(tags.clone()).or_insert(next);
            if sensor == next {
                reserve_some(&mut self.sensors, next as usize + 1);
                let interval_ns = self.claim_interval(&tags);
                self.sensors.push(SensorHealth {
                    tags,
                    first_ts: r.ts,
                    last_ts: r.ts,
                    interval_ns,
                    up_since: r.ts,
                });
            }
            let q = &*info.quantity;
            let range = match measured {
                true => self.cfg.range(q).map_or(NO_RANGE, |r| self.range_index(r)),
                false => NO_RANGE,
            };
            self.series[idx] = Some(SeriesHealth {
                sensor,
                last: f64::NAN,
                run: 0,
                track_stuck: measured && !self.cfg.stuck_ignore.iter().any(|s| s == q),
                range,
            });
        }
        Some(idx)
    }

    /// The index of `range` in the table, added on first sight.
    fn range_index(&mut self, range: (f64, f64)) -> u32 {
        match self.ranges.iter().position(|r| *r == range) {
            Some(i) => i as u32,
            None => {
                self.ranges.push(range);
                (self.ranges.len() - 1) as u32
            }
        }
    }

    /// Expected interval of sensor `i` in ns: configured, learned, else the window length.
    fn interval_ns(&self, i: usize) -> f64 {
        if let Some(secs) = self.cfg.expected_interval_secs {
            return secs * NANOS_PER_SEC as f64;
        }
        match self.sensors.get(i).map(|s| s.interval_ns) {
            Some(learned) if learned > 0.0 => learned,
            _ => self.window_ns as f64,
        }
    }

    fn stale_ns_for(&self, i: usize) -> f64 {
        f64::from(self.cfg.stale_after_intervals) * self.interval_ns(i)
    }

    /// Health points of windows `from..to` (at most [`MAX_WINDOWS_PER_CLOSE`], the newest),
    /// judged at each window's end or `now`, whichever is earlier; updates the gauges.
    pub fn close(
        &mut self,
        from: i64,
        to: i64,
        now: TimestampNs,
        metrics: &HealthMetrics,
    ) -> Vec<HealthPoint> {
        let to = to.min(now.div_euclid(self.window_ns) + 1);
        let from = from.max(to - MAX_WINDOWS_PER_CLOSE);
        let stuck = self.stuck_per_sensor();
        let mut points = Vec::new();
        for w in from..to {
            let reference = ((w + 1) * self.window_ns).min(now);
            let mut tally = [0i64; 4];
            for (i, stuck) in stuck.iter().enumerate() {
                if let Some(p) = self.sensor_point(i, w, reference, *stuck, &mut tally) {
                    points.push(p);
                }
            }
            metrics.sensors_up.store(tally[0], Relaxed);
            metrics.sensors_stale.store(tally[1], Relaxed);
            metrics.sensors_stuck.store(tally[2], Relaxed);
            metrics.sensors_warming_up.store(tally[3], Relaxed);
        }
        self.windows.retain(|w| w.window >= to);
        points
    }

    fn stuck_per_sensor(&self) -> Vec<u32> {
        let mut stuck = vec![0u32; self.sensors.len()];
        if self.cfg.stuck_after == 0 {
            return stuck;
        }
        for s in self.series.iter().flatten() {
            if s.track_stuck && s.run >= self.cfg.stuck_after {
                if let Some(n) = stuck.get_mut(s.sensor as usize) {
                    *n += 1;
                }
            }
        }
        stuck
    }

    /// Sensor `i`'s point for window `w`; `None` if it was not known yet or is forgotten.
    fn sensor_point(
        &self,
        i: usize,
        w: i64,
        reference: TimestampNs,
        stuck: u32,
        tally: &mut [i64; 4],
    ) -> Option<HealthPoint> {
        let s = self.sensors.get(i)?;
        let forget_ns = (self.cfg.forget_after_secs as i64).saturating_mul(NANOS_PER_SEC);
        if s.first_ts >= reference || reference - s.last_ts > forget_ns {
            return None;
        }
        let age = (reference - s.last_ts).max(0);
        let up = (age as f64) <= self.stale_ns_for(i);
        let (readings, oor) = self
            .windows
            .iter()
            .find(|c| c.window == w)
            .and_then(|c| c.counts.get(i).copied())
            .unwrap_or((0, 0));
        let warmup_ns = (self.cfg.warmup_secs as i64).saturating_mul(NANOS_PER_SEC);
        let warming = up && reference - s.up_since < warmup_ns;
        tally[if up { 0 } else { 1 }] += 1;
        tally[2] += i64::from(stuck > 0);
        tally[3] += i64::from(warming);
        let secs = |ns: f64| (ns / NANOS_PER_SEC as f64 * 1000.0).round() / 1000.0;
        let mut fields = vec![
            ("sensor_up", FieldValue::Int(i64::from(up))),
            ("last_seen_s", FieldValue::Float(secs(age as f64))),
            ("interval_s", FieldValue::Float(secs(self.interval_ns(i)))),
            ("readings", FieldValue::Int(i64::from(readings))),
            ("out_of_range", FieldValue::Int(i64::from(oor))),
            ("stuck", FieldValue::Int(i64::from(stuck))),
        ];
        if warmup_ns > 0 {
            fields.push(("warming_up", FieldValue::Int(i64::from(warming))));
        }
        Some(HealthPoint {
            tags: s.tags.clone(),
            fields,
            ts: w * self.window_ns,
        })
    }

    /// One point per source: connection state and the counts since the previous call.
    pub fn source_points(
        &mut self,
        sources: &[std::sync::Arc<SourceMetrics>],
        gateway_tags: &[(String, String)],
        ts: TimestampNs,
    ) -> Vec<HealthPoint> {
        let mut points = Vec::new();
        for s in sources {
            let (messages, bad) = (s.messages.load(Relaxed), s.bad_input.load(Relaxed));
            let prev = self
                .sources_prev
                .insert(s.name.clone(), (messages, bad))
                .unwrap_or((0, 0));
            let mut tags = gateway_tags.to_vec();
            tags.push(("source".into(), s.name.clone()));
            tags.push(("source_kind".into(), s.kind.to_string()));
            let key = crate::reading::GroupKey::new("sensor_health", tags);
            points.push(HealthPoint {
                tags: key.tags,
                fields: vec![
                    ("source_up", FieldValue::Int(s.connected.load(Relaxed))),
                    (
                        "messages",
                        FieldValue::Int(messages.saturating_sub(prev.0) as i64),
                    ),
                    (
                        "bad_input",
                        FieldValue::Int(bad.saturating_sub(prev.1) as i64),
                    ),
                ],
                ts,
            });
        }
        points
    }
}

/// Room in `v` for `len` elements, growing by a quarter rather than doubling: these tables
/// have an entry per series or sensor, and doubling leaves up to half of them unused.
fn reserve_some<T>(v: &mut Vec<T>, len: usize) {
    if len > v.capacity() {
        let target = len.max(v.capacity() + v.capacity() / 4);
        v.reserve_exact(target - v.len());
    }
}

#[path = "tracker_state.rs"]
mod state;
pub use state::IntervalSnapshot;

#[path = "tracker_live.rs"]
mod live;
pub use live::{SensorLive, SensorState};

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
