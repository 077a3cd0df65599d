//! When windows are emitted, corrected and forgotten, and where readings wait while the
//! clock is unsynchronised. Pure bookkeeping for the aggregator; no I/O, no clock reads.
//!
//! Windows are tumbling and aligned to the epoch: window `w` covers `[w * len, (w + 1) * len)`.
//! All series share one timeline with two floors, both only ever moving forward:
//! - `emit_before`: windows below it have ended (plus the close delay) and were emitted once;
//!   a reading for one of them is a *correction*: the window is emitted again with the same
//!   timestamp (its start), so the store overwrites the point.
//! - `retain_before`: windows below it ended more than `grace` ago and their state is gone;
//!   a reading for one of them is *late* and dropped (counted).
//!
//! A backward clock step moves both floors to the end of the window that was current before
//! the step ([`Timeline::close_at`]): the open windows are emitted at once with what they hold,
//! and readings stamped before that point are late, so no window is emitted twice from two
//! different stretches of real time and none overlap. A forward step needs nothing special:
//! the open windows are simply due.

use std::collections::VecDeque;

use crate::reading::{Reading, TimestampNs};

/// Where a reading's window stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Not emitted yet.
    Open,
    /// Emitted, state kept: re-emitted corrected.
    Correction,
    /// State gone: dropped.
    Late,
}

/// What a tick must do: emit dirty windows below `emit_before`, then forget windows below
/// `retain_before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub emit_before: i64,
    pub retain_before: i64,
}

/// See the module doc.
#[derive(Debug, Clone)]
pub struct Timeline {
    window_ns: i64,
    delay_ns: i64,
    grace_ns: i64,
    emit_before: i64,
    retain_before: i64,
    /// Something to emit regardless of the floors: a correction or a forced close.
    pending: bool,
}

impl Timeline {
    /// The close delay is capped at `grace` (a window cannot be forgotten before it is emitted).
    pub fn new(window_ns: i64, delay_ns: i64, grace_ns: i64) -> Timeline {
        let window_ns = window_ns.max(1);
        let grace_ns = grace_ns.max(0);
        Timeline {
            window_ns,
            delay_ns: delay_ns.clamp(0, grace_ns),
            grace_ns,
            emit_before: i64::MIN,
            retain_before: i64::MIN,
            pending: false,
        }
    }

    /// Sets the floors for a run that starts at wall time `start`: windows that ended more
    /// than `grace` before it are late (they belong to an earlier run or were never ours).
    pub fn start_at(&mut self, start: TimestampNs) {
        let floor = self.window_of(start.saturating_sub(self.grace_ns));
        self.emit_before = floor;
        self.retain_before = floor;
    }

    /// Windows below this have been emitted (`i64::MIN` before the run started).
    pub fn emit_before(&self) -> i64 {
        self.emit_before
    }

    /// Windows below this are forgotten (`i64::MIN` before the run started).
    pub fn retain_before(&self) -> i64 {
        self.retain_before
    }

    /// The window index of `ts`.
    pub fn window_of(&self, ts: TimestampNs) -> i64 {
        ts.div_euclid(self.window_ns)
    }

    /// The start (point timestamp) of window `w`.
    pub fn start_of(&self, w: i64) -> TimestampNs {
        w.saturating_mul(self.window_ns)
    }

    /// Classifies a reading for `window`, noting that a correction is pending.
    pub fn place(&mut self, window: i64) -> Placement {
        if window < self.retain_before {
            Placement::Late
        } else if window < self.emit_before {
            self.pending = true;
            Placement::Correction
        } else {
            Placement::Open
        }
    }

    /// Moves the floors for wall time `now`; `Some` when something may be due.
    pub fn advance(&mut self, now: TimestampNs) -> Option<Due> {
        let emit = self.window_of(now.saturating_sub(self.delay_ns));
        let retain = self.window_of(now.saturating_sub(self.grace_ns));
        let moved = emit > self.emit_before || retain > self.retain_before;
        self.emit_before = self.emit_before.max(emit);
        self.retain_before = self.retain_before.max(retain);
        if !(moved || std::mem::take(&mut self.pending)) {
            return None;
        }
        Some(Due {
            emit_before: self.emit_before,
            retain_before: self.retain_before,
        })
    }

    /// A backward step: `before` is the wall time the clock showed just before it. Closes
    /// every window up to and including the one `before` falls in.
    pub fn close_at(&mut self, before: TimestampNs) {
        let floor = self.window_of(before).saturating_add(1);
        self.emit_before = self.emit_before.max(floor);
        self.retain_before = self.retain_before.max(floor);
        self.pending = true;
    }
}

/// Readings waiting for the clock: a bounded FIFO that drops its oldest when full. Memory
/// grows only while the clock is unsynchronised, up to `max * 24` bytes.
#[derive(Debug, Default)]
pub struct Hold {
    buf: VecDeque<Reading>,
    max: usize,
}

impl Hold {
    pub fn new(max: usize) -> Hold {
        Hold {
            buf: VecDeque::new(),
            max,
        }
    }

    /// Holds `r`; returns false if a reading (the oldest, or `r` when `max` is 0) was dropped.
    pub fn push(&mut self, r: Reading) -> bool {
        if self.max == 0 {
            return false;
        }
        let dropped = self.buf.len() >= self.max && self.buf.pop_front().is_some();
        self.buf.push_back(r);
        !dropped
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes every held reading, oldest first, releasing the memory.
    pub fn take(&mut self) -> VecDeque<Reading> {
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::SeriesId;

    const S: i64 = 1_000_000_000;

    #[test]
    fn floors_move_forward_only() {
        let mut t = Timeline::new(60 * S, S, 5 * S);
        t.start_at(600 * S);
        // Window 9 ended at 600 s, within grace: open, not late.
        assert_eq!(t.place(9), Placement::Open);
        assert_eq!(t.place(8), Placement::Late);
        assert_eq!(t.advance(600 * S + S / 2), None);
        assert_eq!(
            t.advance(601 * S),
            Some(Due {
                emit_before: 10,
                retain_before: 9
            })
        );
        assert_eq!(t.place(9), Placement::Correction);
        assert_eq!(t.advance(602 * S).map(|d| d.emit_before), Some(10));
        assert_eq!(t.advance(603 * S), None);
        assert_eq!(t.advance(605 * S).map(|d| d.retain_before), Some(10));
        assert_eq!(t.place(9), Placement::Late);
        // Time going back does not reopen anything.
        assert_eq!(t.advance(100 * S), None);
        assert_eq!(t.place(9), Placement::Late);
    }

    #[test]
    fn close_at_closes_the_current_window() {
        let mut t = Timeline::new(60 * S, S, 5 * S);
        t.start_at(600 * S);
        t.close_at(630 * S);
        assert_eq!(t.place(10), Placement::Late);
        assert_eq!(t.place(11), Placement::Open);
        assert_eq!(
            t.advance(620 * S),
            Some(Due {
                emit_before: 11,
                retain_before: 11
            })
        );
    }

    #[test]
    fn delay_is_capped_by_grace() {
        let mut t = Timeline::new(60 * S, 10 * S, 2 * S);
        t.start_at(0);
        assert_eq!(t.advance(62 * S).map(|d| d.emit_before), Some(1));
    }

    #[test]
    fn hold_drops_oldest() {
        let mut h = Hold::new(2);
        let r = |v| Reading::received(SeriesId(0), v, 0);
        assert!(h.push(r(1.0)) && h.push(r(2.0)));
        assert!(!h.push(r(3.0)));
        let values: Vec<f64> = h.take().iter().map(|r| r.value).collect();
        assert_eq!(values, vec![2.0, 3.0]);
        assert!(h.is_empty());
        assert!(!Hold::new(0).push(r(1.0)));
    }
}
