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

//!
//! The gateway's own health (`gateway_health`, one point per window) is read by
//! [`board::BoardReader`].

pub mod board;
pub mod tracker;

use crate::telemetry::{expose, RateLimit};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// A `gateway_health` source, for the count of read failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoardSource {
    Thermal,
    Throttled,
    Loadavg,
    Meminfo,
    Uptime,
    Rss,
    Disk,
    Spool,
}

impl BoardSource {
    pub const ALL: [BoardSource; 8] = [
        BoardSource::Thermal,
        BoardSource::Throttled,
        BoardSource::Loadavg,
        BoardSource::Meminfo,
        BoardSource::Uptime,
        BoardSource::Rss,
        BoardSource::Disk,
        BoardSource::Spool,
    ];

    pub fn label(self) -> &'static str {
        match self {
            BoardSource::Thermal => "thermal",
            BoardSource::Throttled => "throttled",
            BoardSource::Loadavg => "loadavg",
            BoardSource::Meminfo => "meminfo",
            BoardSource::Uptime => "uptime",
            BoardSource::Rss => "rss",
            BoardSource::Disk => "disk",
            BoardSource::Spool => "spool",
        }
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
    /// `gateway_health` sources present but unreadable, by [`BoardSource`].
    pub board_read_errors: [AtomicU64; BoardSource::ALL.len()],
    pub(crate) board_log: RateLimit,
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
        )?;
        expose::counters(
            e,
            "citysense_gateway_health_read_errors",
            "Gateway health sources present but unreadable (left out of the point).",
            BoardSource::ALL.map(|s| {
                let n = self.board_read_errors[s as usize].load(Relaxed);
                ([("source", s.label())], n)
            }),
        )
    }
}
