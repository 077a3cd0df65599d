//! A reading into the aggregator: the checks that drop it (counted by reason), the hold
//! while the clock has never been synchronised, the clock observation that ends the hold,
//! and the series slot it lands in (a `counter_total` becomes its increment here).

use std::sync::atomic::Ordering::Relaxed;

use super::{Aggregator, Slot};
use crate::clock::Now;
use crate::domain::footfall::{Step, TotalCounter};
use crate::pipeline::timeline::Placement;
use crate::pipeline::window::SeriesState;
use crate::pipeline::DropReason;
use crate::reading::{QuantityKind, Reading, SeriesInfo, TimeBase, TimestampNs};

impl Aggregator {
    /// Adds one reading (`now`: the wall clock); returns false (and counts why) if it was
    /// dropped. Before the clock was ever synchronised the reading is held instead.
    pub fn insert(&mut self, r: Reading, now: TimestampNs) -> bool {
        if !r.value.is_finite() {
            return self.drop(DropReason::NonFinite);
        }
        if !self.tracker.trusted() {
            self.hold(r);
            return true;
        }
        let ts = match r.base {
            TimeBase::Wall => r.ts,
            TimeBase::Boot => r.ts.saturating_add(self.tracker.offset().unwrap_or(0)),
        };
        // Judged against a synchronised clock only: held readings come here once it is.
        if ts > now.saturating_add(self.future_ns) {
            return self.drop(DropReason::Future);
        }
        let window = self.timeline.window_of(ts);
        if self.timeline.place(window) == Placement::Late {
            return self.drop(DropReason::Late);
        }
        // Health keeps last-seen times against the wall clock: hand it the wall time, not
        // the boot-clock stamp of a reading stamped at receipt.
        let wall = Reading {
            ts,
            base: TimeBase::Wall,
            ..r
        };
        if self.observe_hooks(&wall, window) {
            return true;
        }
        if !self.add_to_series(&r, window) {
            return self.drop(DropReason::SeriesLimit);
        }
        self.metrics.readings_aggregated.fetch_add(1, Relaxed);
        true
    }

    fn drop(&self, reason: DropReason) -> bool {
        self.metrics.dropped(reason);
        false
    }

    /// Keeps `r` until the clock is synchronised; a full hold drops its oldest (counted).
    fn hold(&mut self, r: Reading) {
        if !self.hold.push(r) {
            self.metrics.clock.hold_dropped(self.hold.len());
        }
        self.metrics
            .clock
            .held_readings
            .store(self.hold.len() as i64, Relaxed);
    }

    /// Adds `r` to `window` of its series, creating the slot on first sight; false if the
    /// series is unknown to the registry (over `max_series`).
    fn add_to_series(&mut self, r: &Reading, window: i64) -> bool {
        let idx = r.series.0 as usize;
        let mut restored = false;
        if idx >= self.slots.len() {
            self.slots.resize_with(idx + 1, || None);
        }
        if self.slots[idx].is_none() {
            let Some(info) = self.registry.info(r.series) else {
                return false;
            };
            self.slots[idx] = Some(Box::new(self.new_slot(info)));
            self.metrics.series.fetch_add(1, Relaxed);
            restored = self.seed_slot(idx);
        }
        if let Some(slot) = &mut self.slots[idx] {
            let mut value = r.value;
            if slot.info.kind.kind == QuantityKind::CounterTotal {
                let step;
                (value, step) = slot.total.step(r.value, slot.info.kind.wrap);
                let m = &self.metrics.domain;
                if restored && step == Step::Reset {
                    tracing::info!(series = %slot.info.group_key, quantity = %slot.info.quantity,
                        "counter reset while the daemon was down: saved total discarded");
                }
                match step {
                    Step::Reset => m.counter_resets.fetch_add(1, Relaxed),
                    Step::Wrap => m.counter_wraps.fetch_add(1, Relaxed),
                    Step::First | Step::Up => 0,
                };
            }
            slot.state.insert(window, value);
        }
        true
    }

    fn new_slot(&mut self, info: SeriesInfo) -> Slot {
        let field_keys = match info.kind.kind {
            QuantityKind::Gauge => self.field_names.gauge(&info.quantity, &self.stats),
            QuantityKind::Counter | QuantityKind::CounterTotal => self.field_names.none(),
        };
        // Samples serve percentiles only (every other stat is a running value): a series
        // that reports none, counters included, keeps a one-sample ring and no sketch,
        // saving ~250 B of ring and, for busy series, a sketch per window.
        let percentiles = !self.quantiles.is_empty() && info.kind.kind == QuantityKind::Gauge;
        let state = match percentiles {
            true => SeriesState::new(self.ring_capacity),
            false => SeriesState::with_sketch_alpha(1, None),
        };
        Slot {
            state,
            info,
            field_keys,
            total: TotalCounter::default(),
        }
    }

    /// Takes one reading of the clock: follows sync and steps, and places the held readings
    /// the first time the clock is synchronised.
    pub(super) fn observe(&mut self, now: Now) {
        let obs = self.tracker.observe(now);
        if let Some(synced) = obs.sync_changed {
            self.metrics
                .clock
                .sync_changed(synced, self.sync_mode, self.hold.len());
        }
        if obs.became_trusted {
            self.apply_state(now.wall);
            self.place_held(now);
        }
        if let Some(delta) = obs.step_ns {
            self.metrics.clock.step(delta);
            if delta < 0 {
                self.timeline.close_at(now.wall.saturating_sub(delta));
            }
        }
    }

    /// The clock is synchronised for the first time: start the timeline where the run
    /// started and place what was held, each reading as if it had arrived just now.
    fn place_held(&mut self, now: Now) {
        self.metrics.clock.trusted();
        let offset = now.wall.saturating_sub(now.boot);
        self.timeline
            .start_at(self.start_boot.saturating_add(offset));
        let held = self.hold.take();
        if !held.is_empty() {
            tracing::info!(
                readings = held.len(),
                "placing readings held until clock sync"
            );
        }
        for r in held {
            self.insert(r, now.wall);
        }
        self.metrics.clock.held_readings.store(0, Relaxed);
    }
}
