//! The tracker's answer to "how is each sensor right now" for the status page: the same
//! judgement as a window close's `sensor_health` point (stale, stuck, warming up), taken at
//! `now` instead of at a window's end. Read-only and allocation-light: called at most once a
//! second by the aggregator.

use super::Tracker;
use crate::reading::{Tags, TimestampNs, NANOS_PER_SEC};

/// A sensor's state in words, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorState {
    /// No reading for `stale_after_intervals` x its interval.
    Stale,
    /// A quantity repeated the same value `stuck_after` times.
    Stuck,
    /// Within `warmup_secs` of its first reading or of coming back from stale.
    Warming,
    Up,
}

impl SensorState {
    pub fn label(self) -> &'static str {
        match self {
            SensorState::Stale => "stale",
            SensorState::Stuck => "stuck",
            SensorState::Warming => "warming",
            SensorState::Up => "up",
        }
    }
}

/// One sensor at a moment.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorLive {
    /// Its tag set (configured tags; never a device identifier).
    pub tags: Tags,
    pub state: SensorState,
    /// Seconds from its newest reading to `now` (0 if that reading is in the future).
    pub age_s: f64,
}

impl Tracker {
    /// The first `max` known sensors as of `now` (wall ns), in the order they appeared.
    pub fn live(&self, now: TimestampNs, max: usize) -> Vec<SensorLive> {
        let stuck = self.stuck_per_sensor();
        let warmup_ns = (self.cfg.warmup_secs as i64).saturating_mul(NANOS_PER_SEC);
        (self.sensors.iter().enumerate().take(max))
            .map(|(i, s)| {
                let age = (now - s.last_ts).max(0);
                let state = if age as f64 > self.stale_ns_for(i) {
                    SensorState::Stale
                } else if stuck.get(i).is_some_and(|n| *n > 0) {
                    SensorState::Stuck
                } else if now - s.up_since < warmup_ns {
                    SensorState::Warming
                } else {
                    SensorState::Up
                };
                SensorLive {
                    tags: s.tags.clone(),
                    state,
                    age_s: age as f64 / NANOS_PER_SEC as f64,
                }
            })
            .collect()
    }
}
