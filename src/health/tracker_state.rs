//! The tracker's share of the state file (section `sensor_intervals`): each sensor's learned
//! reporting interval, so that after a restart a sensor reporting every 15 minutes is not
//! judged by the window length (and reported stale) until it has reported twice again.
//! Restored intervals wait, keyed by tag set, until their sensor's first reading.

use std::collections::HashMap;
use std::sync::Arc;

use super::Tracker;
use crate::reading::{Tags, TimestampNs, NANOS_PER_SEC};

/// One sensor's learned interval as saved.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IntervalSnapshot {
    /// The sensor's tag set (configured tags only; never a device identifier).
    pub tags: Vec<(String, String)>,
    pub interval_s: f64,
    /// Event time (ns) of the sensor's newest reading when it was saved.
    pub seen: TimestampNs,
}

/// Restored intervals not claimed by a sensor yet: tag set -> (interval ns, seen).
pub(super) type Pending = HashMap<Tags, (f64, TimestampNs)>;

impl Tracker {
    /// Learned intervals of the known sensors, then the restored ones not seen again yet, at
    /// most `max` in all.
    pub fn intervals(&self, max: usize) -> Vec<IntervalSnapshot> {
        let snap = |tags: &Tags, ns: f64, seen| IntervalSnapshot {
            tags: (tags.iter())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            interval_s: ns / NANOS_PER_SEC as f64,
            seen,
        };
        let live = (self.sensors.iter())
            .filter(|s| s.interval_ns > 0.0)
            .map(|s| snap(&s.tags, s.interval_ns, s.last_ts));
        let pending = (self.restored.iter()).map(|(tags, (ns, seen))| snap(tags, *ns, *seen));
        live.chain(pending).take(max).collect()
    }

    /// Keeps `saved` (those seen at or after `oldest`, with a usable interval) for the
    /// sensors' first readings; returns how many.
    pub fn restore_intervals(
        &mut self,
        saved: Vec<IntervalSnapshot>,
        oldest: TimestampNs,
    ) -> usize {
        for s in saved {
            let ns = s.interval_s * NANOS_PER_SEC as f64;
            if s.seen < oldest || !(ns.is_finite() && ns > 0.0) {
                continue;
            }
            let tags: Vec<(Arc<str>, Arc<str>)> = (s.tags.into_iter())
                .map(|(k, v)| (Arc::from(k), Arc::from(v)))
                .collect();
            self.restored.insert(tags.into(), (ns, s.seen));
        }
        self.restored.len()
    }

    /// The restored interval of a new sensor with `tags`, if any (claimed once).
    pub(super) fn claim_interval(&mut self, tags: &Tags) -> f64 {
        match self.restored.is_empty() {
            true => 0.0,
            false => self.restored.remove(tags).map_or(0.0, |(ns, _)| ns),
        }
    }
}
