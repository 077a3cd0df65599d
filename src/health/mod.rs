//! Sensor health: is each sensor still reporting, are its values plausible, is it stuck?
//!
//! Computed in the aggregator, which sees every reading with its event time and series
//! ([`tracker::Tracker`]); per-source error counts come from the sources' counters in
//! [`SourceMetrics`](crate::telemetry::SourceMetrics). At every window close the
//! aggregator writes one `sensor_health` point per sensor (a sensor is a tag set: the tags of
//! its points, measurement aside) and one per source, with the window's start as timestamp:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `sensor_up` | int 0/1 | 0 when stale: no reading for `stale_after_intervals` x the expected interval at the window's end |
//! | `last_seen_s` | float | seconds from the sensor's newest reading to the window's end (0 if it reported after it) |
//! | `interval_s` | float | expected reporting interval: configured, else learned (moving average of gaps), else the window length |
//! | `readings` | int | readings in this window, all quantities |
//! | `out_of_range` | int | readings in this window outside the quantity's plausible range |
//! | `stuck` | int | quantities whose last `stuck_after` readings were identical |
//! | `warming_up` | int 0/1 | only with `warmup_secs`: within that time of first reading or of coming back from stale |
//!
//! Per source (tags `source`, `source_kind`): `source_up` (connected), `messages` and
//! `bad_input` (malformed payloads, checksum errors) counted since the previous close.

pub mod tracker;

use crate::telemetry::expose;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use serde::Deserialize;

/// `[health]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Write `sensor_health` points. Default: true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A sensor is stale (`sensor_up = 0`) after this many expected intervals without a
    /// reading. Default: 3.
    #[serde(default = "default_stale_after")]
    pub stale_after_intervals: u32,
    /// Expected seconds between a sensor's readings. Default: learned per sensor.
    #[serde(default)]
    pub expected_interval_secs: Option<f64>,
    /// A quantity is stuck after this many identical consecutive readings; 0 disables.
    /// Default: 10.
    #[serde(default = "default_stuck_after")]
    pub stuck_after: u32,
    /// Quantities for which repeated values are normal (counters at night). Default: in, out,
    /// count, people, occupancy, passersby, unique_devices.
    #[serde(default = "default_stuck_ignore")]
    pub stuck_ignore: Vec<String>,
    /// Seconds a sensor needs after power-up before its readings are good (PMS5003: 30,
    /// MH-Z19B: 180); 0 = unknown, no `warming_up` field. Default: 0.
    #[serde(default)]
    pub warmup_secs: u64,
    /// Sensors silent this long are no longer reported. Default: 86400.
    #[serde(default = "default_forget_after")]
    pub forget_after_secs: u64,
    /// Plausible range per quantity, `pm2_5 = [0, 1000]`; merged over the built-in ones
    /// (particulate matter 0-1000 ug/m3, temperature -40-85 C, humidity 0-100 %, pressure
    /// 300-1100 hPa, CO2 0-10000 ppm). Default: the built-in ones.
    #[serde(default)]
    pub ranges: BTreeMap<String, [f64; 2]>,
}

const fn default_true() -> bool {
    true
}
const fn default_stale_after() -> u32 {
    3
}
const fn default_stuck_after() -> u32 {
    10
}
const fn default_forget_after() -> u64 {
    86_400
}
fn default_stuck_ignore() -> Vec<String> {
    [
        "in",
        "out",
        "count",
        "people",
        "occupancy",
        "passersby",
        "unique_devices",
    ]
    .map(String::from)
    .to_vec()
}

/// Built-in plausible ranges: the measuring ranges of common sensors, widened a little
/// (SDS011 0-999.9 ug/m3, BME280 -40-85 C and 300-1100 hPa, MH-Z19B up to 10000 ppm).
pub const DEFAULT_RANGES: &[(&str, f64, f64)] = &[
    ("pm1_0", 0.0, 1000.0),
    ("pm2_5", 0.0, 1000.0),
    ("pm4_0", 0.0, 1000.0),
    ("pm10", 0.0, 1000.0),
    ("temperature", -40.0, 85.0),
    ("humidity", 0.0, 100.0),
    ("pressure", 300.0, 1100.0),
    ("co2", 0.0, 10_000.0),
];

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            enabled: true,
            stale_after_intervals: default_stale_after(),
            expected_interval_secs: None,
            stuck_after: default_stuck_after(),
            stuck_ignore: default_stuck_ignore(),
            warmup_secs: 0,
            forget_after_secs: default_forget_after(),
            ranges: BTreeMap::new(),
        }
    }
}

impl HealthConfig {
    pub(crate) fn check(&self, errs: &mut Vec<(String, String)>) {
        if self.stale_after_intervals == 0 {
            errs.push(("health.stale_after_intervals".into(), "must be > 0".into()));
        }
        if let Some(i) = self.expected_interval_secs {
            if !(i.is_finite() && i > 0.0) {
                errs.push((
                    "health.expected_interval_secs".into(),
                    "must be a positive number of seconds".into(),
                ));
            }
        }
        for (q, [lo, hi]) in &self.ranges {
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                errs.push((
                    format!("health.ranges.{q}"),
                    "must be [min, max] with min < max".into(),
                ));
            }
        }
    }

    /// The range in effect for `quantity`.
    pub fn range(&self, quantity: &str) -> Option<(f64, f64)> {
        if let Some([lo, hi]) = self.ranges.get(quantity) {
            return Some((*lo, *hi));
        }
        DEFAULT_RANGES
            .iter()
            .find(|(q, _, _)| *q == quantity)
            .map(|(_, lo, hi)| (*lo, *hi))
    }
}

/// Gauges of the last window closed, and counters; sensor-level detail is in the store.
#[derive(Debug, Default)]
pub struct HealthMetrics {
    pub sensors_up: AtomicI64,
    pub sensors_stale: AtomicI64,
    pub sensors_stuck: AtomicI64,
    pub sensors_warming_up: AtomicI64,
    pub out_of_range: AtomicU64,
}

impl HealthMetrics {
    /// Describes these metrics for `/metrics`.
    pub fn encode(&self, e: &mut expose::Encoder) -> expose::Encoded {
        let states = [
            ("up", &self.sensors_up),
            ("stale", &self.sensors_stale),
            ("stuck", &self.sensors_stuck),
            ("warming_up", &self.sensors_warming_up),
        ];
        expose::gauges(
            e,
            "citysense_sensors",
            "Sensors by health at the last window close.",
            states.map(|(state, v)| ([("state", state)], v.load(Relaxed))),
        )?;
        expose::counter(
            e,
            "citysense_readings_out_of_range",
            "Readings outside their quantity's plausible range (kept, flagged).",
            self.out_of_range.load(Relaxed),
        )
    }
}
