//! The aggregator's share of the status page ([`crate::pipeline::status`]): each close's
//! window statistics are recorded, and at most once a second the sensors' live states and
//! latest readings are published. Off (no cost) unless [`Aggregator::with_status`] is called.

use std::sync::Arc;

use super::close::Closed;
use super::Aggregator;
use crate::config::Stat;
use crate::pipeline::status::{StatusBoard, StatusCollector, WindowStats, MAX_SENSORS};
use crate::reading::TimestampNs;

impl Aggregator {
    /// Publishes what the status page shows into `board`.
    pub fn with_status(mut self, board: Arc<StatusBoard>) -> Aggregator {
        self.status = Some(StatusCollector::new(board, self.window_ns));
        self
    }

    /// Records the statistics of `closed` (values from each entry's `first` on).
    pub(super) fn record_status(&mut self, closed: &[Closed], values: &[f64]) {
        let Some(status) = self.status.as_mut() else {
            return;
        };
        let pos = |stat| self.stats.iter().position(|s| *s == stat);
        let (min, max) = (pos(Stat::Min), pos(Stat::Max));
        for c in closed {
            let Some(slot) = self.slots.get(c.slot as usize).and_then(|s| s.as_ref()) else {
                continue;
            };
            let value = |i: Option<usize>| i.and_then(|i| values.get(c.first + i)).copied();
            let w = WindowStats {
                start: c.window * self.window_ns,
                mean: c.mean,
                min: value(min),
                max: value(max),
            };
            let tags = &slot.info.group_key.tags;
            status.record(c.slot, tags, &slot.info.quantity, w);
        }
    }

    /// Publishes the live view if a second has passed since the last one.
    pub(super) fn publish_status(&mut self, now: TimestampNs) {
        let Some(status) = self.status.as_mut() else {
            return;
        };
        if !status.due(now) {
            return;
        }
        let live = (self.hooks.health.as_ref())
            .map(|t| t.live(now, MAX_SENSORS))
            .unwrap_or_default();
        let slots = &self.slots;
        status.publish(now, live, |slot| {
            let s = slots.get(slot as usize)?.as_ref()?;
            s.state.last_value().filter(|v| v.is_finite())
        });
    }
}
