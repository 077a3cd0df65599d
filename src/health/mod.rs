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
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

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
