//! Which windows close, and when: on each tick the ones the [`Timeline`] says are due
//! ([`Aggregator::close_due`]), at shutdown every open one ([`Aggregator::flush`]), and again
//! any window late readings corrected, widened to its whole point. A close flattens the due
//! windows of every series into [`Closed`] entries plus one buffer of stat values, sorted by
//! point, for `encode.rs`.
//!
//! Both closes take their time from the injected clock, never from the system's: a clock
//! that was never synchronised closes nothing and stamps nothing.
//!
//! [`Timeline`]: crate::pipeline::timeline::Timeline

use std::sync::atomic::Ordering::Relaxed;

use super::{Aggregator, WindowBatch};
use crate::clock::Now;
use crate::config::Stat;
use crate::pipeline::window::Stats;
use crate::reading::TimestampNs;

/// One series' closed window, flattened for grouping into points.
pub(super) struct Closed {
    pub(super) window: i64,
    pub(super) group: u32,
    pub(super) slot: u32,
    /// Index of its first value in the close's value buffer.
    pub(super) first: usize,
    /// For the domain step, whatever stats are configured.
    pub(super) mean: f64,
    pub(super) sum: f64,
    pub(super) count: u64,
    /// The mean before calibration (NaN if not calibrated) and the rule's index.
    pub(super) raw_mean: f64,
    pub(super) calibration: Option<u16>,
}

impl Aggregator {
    /// One clock reading per tick: follows sync and steps, then emits what is due.
    pub fn tick(&mut self, now: Now) -> Option<WindowBatch> {
        self.observe(now);
        let batch = self.close_due(now.wall);
        if batch.is_some() {
            self.save_state(now.wall);
        }
        batch
    }

    /// Emits every window whose end + close delay is before `now` (and corrections), and
    /// forgets those whose end + grace is. Nothing while the clock was never synchronised.
    pub fn close_due(&mut self, now: TimestampNs) -> Option<WindowBatch> {
        if !self.tracker.trusted() {
            return None;
        }
        let from = self.hooks_floor();
        let due = self.timeline.advance(now)?;
        let batch = self.close_before(due.emit_before);
        for slot in self.slots.iter_mut().flatten() {
            slot.state.forget_before(due.retain_before);
        }
        // Hours whose windows are all forgotten are final.
        let batch = self.close_hours(batch, due.retain_before.saturating_mul(self.window_ns));
        if due.emit_before <= from {
            return batch;
        }
        self.hooks.closed_before = due.emit_before;
        self.close_hooks(batch, from, due.emit_before, now)
    }

    /// Shutdown: emits every open window with unsent readings, current ones included
    /// (partial windows), and the hooks' points up to `now`, the clock's last reading. A
    /// clock that synchronised since the last tick still places what it held. One that never
    /// did writes nothing: its held readings have no trustworthy time, so they are lost,
    /// counted and logged, and no point is stamped by it.
    pub fn flush(&mut self, now: Now) -> Option<WindowBatch> {
        self.observe(now);
        if !self.tracker.trusted() {
            self.metrics.clock.held_lost_at_stop(self.hold.take().len());
            self.metrics.clock.held_readings.store(0, Relaxed);
            self.retire_hooks();
            return None;
        }
        let batch = self.close_before(i64::MAX);
        // Before the windows are forgotten: their counter sums are part of the state.
        self.save_state(now.wall);
        for slot in self.slots.iter_mut().flatten() {
            slot.state.forget_before(i64::MAX);
        }
        let from = self.hooks_floor();
        self.close_hooks(batch, from, i64::MAX, now.wall)
    }

    /// Windows below this were handed to privacy and health already: the last emit floor,
    /// or where the timeline started.
    pub(super) fn hooks_floor(&self) -> i64 {
        match self.hooks.closed_before {
            i64::MIN => self.timeline.emit_before(),
            floor => floor,
        }
    }

    /// Emits every window below `window` with readings not emitted yet, corrections
    /// included, as one batch; `None` if there are none.
    fn close_before(&mut self, window: i64) -> Option<WindowBatch> {
        self.widen_corrections(window);
        // Sized exactly: at 10k series these are megabytes, and doubling growth would make
        // the close's peak (VmHWM) up to twice that.
        let due: usize = (self.slots.iter().flatten())
            .map(|s| s.state.dirty_before(window))
            .sum();
        let mut closed: Vec<Closed> = Vec::with_capacity(due);
        let mut values: Vec<f64> = Vec::with_capacity(due * self.stats.len());
        let (approximate, reemitted) = self.collect_dirty(window, &mut closed, &mut values);
        if closed.is_empty() {
            return None;
        }
        let m = &self.metrics;
        m.windows_closed.fetch_add(closed.len() as u64, Relaxed);
        m.approximate_percentiles.fetch_add(approximate, Relaxed);
        m.clock.windows_reemitted.fetch_add(reemitted, Relaxed);
        // (window, group, slot) is unique: the unstable sort gives the same order without the
        // stable sort's scratch buffer of half the close.
        closed.sort_unstable_by_key(|c| (c.window, c.group, c.slot));
        self.calibrate(&mut closed, &mut values);
        self.record_status(&closed, &values);
        Some(self.encode(&closed, &values))
    }

    /// Emits the dirty windows below `window` of every series into `closed` and `values`;
    /// returns how many had approximate percentiles and how many were re-emitted.
    fn collect_dirty(
        &mut self,
        window: i64,
        closed: &mut Vec<Closed>,
        values: &mut Vec<f64>,
    ) -> (u64, u64) {
        let (stats, quantiles) = (&self.stats, &self.quantiles);
        let (mut approximate, mut reemitted) = (0u64, 0u64);
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            if !slot.state.has_open() {
                continue;
            }
            let group = slot.info.group.0;
            slot.state
                .emit_dirty_before(window, quantiles, &mut |s: &Stats| {
                    closed.push(Closed {
                        window: s.window,
                        group,
                        slot: i as u32,
                        first: values.len(),
                        mean: s.mean,
                        sum: s.sum,
                        count: s.count,
                        raw_mean: f64::NAN,
                        calibration: None,
                    });
                    approximate += u64::from(s.approximate);
                    reemitted += u64::from(s.reemitted);
                    values.extend(stats.iter().map(|st| stat_value(*st, s)));
                });
        }
        (approximate, reemitted)
    }

    /// A correction re-emits its whole point, not just the corrected series: the store
    /// overwrites field by field, and derived fields (indices, humidity correction) need every
    /// series of the group, or a late PM10 reading would rewrite `eaqi` from PM10 alone.
    fn widen_corrections(&mut self, window: i64) {
        let mut corrected: Vec<(u32, i64)> = Vec::new();
        for slot in self.slots.iter().flatten() {
            let group = slot.info.group.0;
            corrected.extend(slot.state.corrections_before(window).map(|w| (group, w)));
        }
        if corrected.is_empty() {
            return;
        }
        corrected.sort_unstable();
        corrected.dedup();
        for slot in self.slots.iter_mut().flatten() {
            let group = slot.info.group.0;
            let from = corrected.partition_point(|(g, _)| *g < group);
            for (_, w) in corrected[from..].iter().take_while(|(g, _)| *g == group) {
                slot.state.mark_dirty(*w);
            }
        }
    }
}

/// A stat's value as kept in the close's flat buffer: 8 bytes, the count included (exact
/// below 2^53), rather than a 32-byte field value per field.
fn stat_value(stat: Stat, s: &Stats) -> f64 {
    match stat {
        Stat::Count => s.count as f64,
        // Percentiles come from f32 samples (or a 1 % sketch): print them at f32 precision,
        // `10.7` rather than the widened `10.699999809265137`.
        Stat::Quantile(_) => s.get(stat).map_or(f64::NAN, f32_shortest),
        other => s.get(other).unwrap_or(f64::NAN),
    }
}

/// `v` rounded to the nearest f32 and written back as the shortest decimal of that f32.
fn f32_shortest(v: f64) -> f64 {
    let f = v as f32;
    if !f.is_finite() {
        return v;
    }
    f.to_string().parse().unwrap_or(v)
}
