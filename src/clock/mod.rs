//! The gateway's view of time: wall time (UTC, may be wrong or jump), boot time
//! (`CLOCK_BOOTTIME`: monotonic, keeps counting in suspend) and whether the wall clock is
//! synchronised. A Raspberry Pi has no real-time clock: after a power cut it boots with the
//! time fake-hwclock saved last and keeps it until NTP syncs (see README "Time and clocks").
//!
//! - Sources stamp readings that carry no time of their own with boot time
//!   ([`boot_ns`], [`Reading::received`](crate::reading::Reading::received)); the aggregator
//!   turns boot time into wall time with the offset `wall - boot` once the clock is trusted.
//! - [`Clock`] is what the aggregator loop reads on every tick; [`Now`] is one reading of it,
//!   and everything downstream of that ([`track::ClockTracker`], the aggregator) is pure.
//! - [`sync`] asks the kernel or systemd-timesyncd whether the clock is synchronised.

pub mod metrics;
pub mod sync;
pub mod track;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
use std::sync::Arc;

use crate::reading::{now_ns, TimestampNs};

pub use crate::config::SyncMode;
pub use metrics::ClockMetrics;
pub use track::{ClockTracker, Observation};

/// One reading of the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Wall time, ns since the Unix epoch (as the system believes it).
    pub wall: TimestampNs,
    /// `CLOCK_BOOTTIME`, ns since boot.
    pub boot: i64,
    /// Whether the sync check says the wall clock is synchronised right now.
    pub synced: bool,
}

impl Now {
    /// A clock that is synchronised and whose boot time equals its wall time (pure tests
    /// that only use event-time readings).
    pub fn synced_at(wall: TimestampNs) -> Now {
        Now {
            wall,
            boot: wall,
            synced: true,
        }
    }
}

/// A clock whose wall time and sync status a test sets; boot time is the real one, so
/// sources (which call [`boot_ns`]) and the aggregator agree. A test-only seam: the daemon
/// uses it only through [`crate::run_with_clock`].
#[derive(Debug, Default)]
pub struct ManualClock {
    /// Added to the real wall time.
    shift_ns: AtomicI64,
    synced: AtomicBool,
}

impl ManualClock {
    pub fn new(shift_ns: i64, synced: bool) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            shift_ns: AtomicI64::new(shift_ns),
            synced: AtomicBool::new(synced),
        })
    }

    /// Sets the wall time to real time + `shift_ns` (a step when it changes).
    pub fn set_shift(&self, shift_ns: i64) {
        self.shift_ns.store(shift_ns, Relaxed);
    }

    pub fn set_synced(&self, synced: bool) {
        self.synced.store(synced, Relaxed);
    }
}

/// Logs at start which authority tells the daemon that the clock is synchronised, and warns
/// when it can never say so (see [`sync::describe`]).
pub fn log_sync_authority(mode: SyncMode) {
    let (authority, warning) = sync::describe(mode);
    tracing::info!(check = %authority, "clock sync check");
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
}

/// Where the aggregator reads time from.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The system clocks, with the configured sync check.
    System(SyncMode),
    /// A test's clock (see [`ManualClock`]).
    #[doc(hidden)]
    Manual(Arc<ManualClock>),
}

impl Clock {
    /// Reads wall time, boot time and sync status.
    pub fn now(&self) -> Now {
        match self {
            Clock::System(mode) => Now {
                boot: boot_ns(),
                wall: now_ns(),
                synced: sync::synced(*mode),
            },
            Clock::Manual(m) => Now {
                boot: boot_ns(),
                wall: now_ns().saturating_add(m.shift_ns.load(Relaxed)),
                synced: m.synced.load(Relaxed),
            },
        }
    }

    /// Wall time only (cheap; for the future-timestamp check of each reading).
    pub fn wall_ns(&self) -> TimestampNs {
        match self {
            Clock::System(_) => now_ns(),
            Clock::Manual(m) => now_ns().saturating_add(m.shift_ns.load(Relaxed)),
        }
    }
}

/// `CLOCK_BOOTTIME` in ns: monotonic since boot, counting time in suspend. Sources stamp
/// readings without their own time with it.
pub fn boot_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call; the call only
    // writes it. CLOCK_BOOTTIME exists on every Linux since 2.6.39; it cannot fail with a
    // valid pointer and clock id, but if it did we fall back to the monotonic Instant-based
    // clock below rather than return garbage.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return fallback_monotonic_ns();
    }
    // The casts are needed on 32-bit ARM (Pi OS armhf), where both fields may be 32-bit.
    #[allow(clippy::unnecessary_cast)]
    let (sec, nsec) = (ts.tv_sec as i64, ts.tv_nsec as i64);
    sec.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// Process-relative monotonic time, only if `CLOCK_BOOTTIME` is unavailable.
fn fallback_monotonic_ns() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    i64::try_from(start.elapsed().as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_is_monotonic_and_manual_clock_shifts_wall() {
        let a = boot_ns();
        let b = boot_ns();
        assert!(a > 0 && b >= a);
        let m = ManualClock::new(-3_600_000_000_000, false);
        let clock = Clock::Manual(m.clone());
        let n = clock.now();
        assert!(!n.synced);
        assert!((now_ns() - n.wall - 3_600_000_000_000).abs() < 1_000_000_000);
        m.set_synced(true);
        m.set_shift(0);
        let n = clock.now();
        assert!(n.synced && (now_ns() - n.wall).abs() < 1_000_000_000);
    }
}
