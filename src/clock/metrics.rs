//! Counters and gauges about time: clock sync, steps, readings held while unsynchronised,
//! and late-data corrections. The aggregator, which drives the clock, carries them; each
//! event is logged and counted here, in one place.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use super::SyncMode;
use crate::telemetry::{expose, RateLimit};

/// See the module doc.
#[derive(Debug, Default)]
pub struct ClockMetrics {
    /// 1 while the sync check says synchronised.
    pub synchronized: AtomicI64,
    /// 1 once the clock was synchronised in this run (windows are being emitted).
    pub trusted: AtomicI64,
    pub steps: AtomicU64,
    /// Readings waiting for the clock.
    pub held_readings: AtomicI64,
    /// Held readings dropped because the hold was full.
    pub held_dropped: AtomicU64,
    /// Held readings lost because the daemon stopped before the clock was ever synchronised.
    pub held_lost: AtomicU64,
    /// Windows emitted again because late readings corrected them.
    pub windows_reemitted: AtomicU64,
    hold_full_log: RateLimit,
}

impl ClockMetrics {
    /// The sync check's answer changed.
    pub fn sync_changed(&self, synced: bool, mode: SyncMode, held: usize) {
        self.synchronized.store(i64::from(synced), Relaxed);
        if synced {
            tracing::info!(check = mode.label(), held, "clock synchronized");
        } else if self.trusted.load(Relaxed) == 1 {
            tracing::warn!(
                check = mode.label(),
                "clock lost synchronization; it free-runs and windows keep being emitted"
            );
        } else {
            tracing::warn!(
                check = mode.label(),
                "clock not synchronized: readings without their own timestamp are held until it is"
            );
        }
    }

    pub fn trusted(&self) {
        self.trusted.store(1, Relaxed);
    }

    /// A step of the trusted clock, logged once per step.
    pub fn step(&self, delta_ns: i64) {
        self.steps.fetch_add(1, Relaxed);
        tracing::warn!(
            delta_secs = delta_ns as f64 / 1e9,
            "wall clock stepped: open windows closed at their boundaries"
        );
    }

    /// A held reading was dropped because the hold was full.
    pub fn hold_dropped(&self, limit: usize) {
        self.held_dropped.fetch_add(1, Relaxed);
        if let Some(suppressed) = self.hold_full_log.check() {
            tracing::error!(
                limit,
                suppressed,
                "clock still unsynchronized and hold full: oldest held readings dropped"
            );
        }
    }

    /// The daemon stops before the clock was ever synchronised: the `held` readings it
    /// still held have no trustworthy time and are lost.
    pub fn held_lost_at_stop(&self, held: usize) {
        if held == 0 {
            return;
        }
        self.held_lost.fetch_add(held as u64, Relaxed);
        tracing::error!(
            readings = held,
            "clock never synchronized: held readings lost at shutdown"
        );
    }

    /// Describes these metrics for `/metrics`.
    pub fn encode(&self, e: &mut expose::Encoder) -> expose::Encoded {
        let gauges = [
            (
                "citysense_clock_synchronized",
                "1 while the wall clock is synchronised (per clock.sync).",
                &self.synchronized,
            ),
            (
                "citysense_clock_trusted",
                "1 once the clock was synchronised in this run (windows are emitted).",
                &self.trusted,
            ),
            (
                "citysense_clock_held_readings",
                "Readings held until the clock is synchronised.",
                &self.held_readings,
            ),
        ];
        for (name, help, v) in gauges {
            expose::gauge(e, name, help, v.load(Relaxed))?;
        }
        let counters = [
            (
                "citysense_clock_steps",
                "Steps of the synchronised wall clock.",
                &self.steps,
            ),
            (
                "citysense_windows_reemitted",
                "Series windows emitted again, corrected by late readings.",
                &self.windows_reemitted,
            ),
        ];
        for (name, help, v) in counters {
            expose::counter(e, name, help, v.load(Relaxed))?;
        }
        let reasons = [
            ("hold_full", &self.held_dropped),
            ("never_synchronized", &self.held_lost),
        ];
        expose::counters(
            e,
            "citysense_clock_held_dropped",
            "Held readings dropped: the hold was full, or the daemon stopped before the clock was ever synchronised.",
            reasons.map(|(reason, n)| ([("reason", reason)], n.load(Relaxed))),
        )
    }
}
