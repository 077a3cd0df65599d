//! Pure bookkeeping of the clock between ticks: whether the wall clock may be trusted yet,
//! the current offset `wall - boot`, and clock steps.
//!
//! - The clock becomes *trusted* the first time the sync check says synchronised (at once
//!   with `sync = "assume"`) and stays trusted for the rest of the run: a clock that was
//!   synchronised and then loses its NTP server free-runs with a drift of parts per million,
//!   far better than holding data without bound. Losing and regaining sync is still
//!   reported.
//! - A step is a change of the offset by more than the threshold between two observations
//!   (the aggregator observes every 200 ms, so slewing, at most 500 ppm, moves it by at most
//!   0.1 ms). Steps are only reported once the clock is trusted: before that the offset is
//!   not used for anything, and the step that usually comes with the first NTP sync is the
//!   whole point of waiting for it.

use super::Now;

/// What one observation found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observation {
    /// The sync check's answer changed (the new answer); `Some` on the first observation too.
    pub sync_changed: Option<bool>,
    /// The clock became trusted with this observation: held readings can be placed.
    pub became_trusted: bool,
    /// The trusted clock stepped by this much (ns; negative = backwards).
    pub step_ns: Option<i64>,
}

/// See the module doc.
#[derive(Debug, Clone)]
pub struct ClockTracker {
    threshold_ns: i64,
    trusted: bool,
    last_synced: Option<bool>,
    offset: Option<i64>,
}

impl ClockTracker {
    /// `threshold_ns`: smallest offset change counted as a step.
    pub fn new(threshold_ns: i64) -> ClockTracker {
        ClockTracker {
            threshold_ns: threshold_ns.max(1),
            trusted: false,
            last_synced: None,
            offset: None,
        }
    }

    /// Takes one reading of the clock.
    pub fn observe(&mut self, now: Now) -> Observation {
        let offset = now.wall.saturating_sub(now.boot);
        let mut obs = Observation::default();
        if self.last_synced != Some(now.synced) {
            obs.sync_changed = Some(now.synced);
            self.last_synced = Some(now.synced);
        }
        if self.trusted {
            if let Some(prev) = self.offset {
                let delta = offset.saturating_sub(prev);
                if delta.saturating_abs() > self.threshold_ns {
                    obs.step_ns = Some(delta);
                }
            }
        } else if now.synced {
            self.trusted = true;
            obs.became_trusted = true;
        }
        self.offset = Some(offset);
        obs
    }

    /// True once the clock has been synchronised in this run.
    pub fn trusted(&self) -> bool {
        self.trusted
    }

    /// The sync check's latest answer (false before the first observation).
    pub fn synced(&self) -> bool {
        self.last_synced == Some(true)
    }

    /// The last observed `wall - boot`; `None` before the first observation.
    pub fn offset(&self) -> Option<i64> {
        self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn now(boot: i64, offset: i64, synced: bool) -> Now {
        Now {
            wall: boot + offset,
            boot,
            synced,
        }
    }

    #[test]
    fn sync_latches_steps_and_slew() {
        let mut t = ClockTracker::new(S);
        let o = t.observe(now(10 * S, 5 * S, false));
        assert_eq!(o.sync_changed, Some(false));
        assert!(!t.trusted());
        // Before sync, a jump of days is no step: it is what NTP's first sync does.
        let o = t.observe(now(11 * S, 3 * 86_400 * S, false));
        assert_eq!(o, Observation::default());
        let o = t.observe(now(12 * S, 3 * 86_400 * S, true));
        assert!(o.became_trusted && o.sync_changed == Some(true) && o.step_ns.is_none());
        // Slewing half a second over many ticks is no step.
        let mut off = 3 * 86_400 * S;
        for i in 0..50 {
            off += S / 100;
            assert_eq!(t.observe(now(13 * S + i, off, true)).step_ns, None);
        }
        let o = t.observe(now(20 * S, off - 3600 * S, true));
        assert_eq!(o.step_ns, Some(-3600 * S));
        // Losing sync keeps the clock trusted, and steps are still seen.
        let o = t.observe(now(21 * S, off - 3600 * S, false));
        assert_eq!(o.sync_changed, Some(false));
        assert!(t.trusted());
        let o = t.observe(now(22 * S, off, false));
        assert_eq!(o.step_ns, Some(3600 * S));
    }
}
