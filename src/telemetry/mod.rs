//! Telemetry primitives every layer may use: the log rate limit, step timings, the store
//! latency clock shared by the aggregator and the uplink, and the per-source counters the
//! sources fill and the aggregator reads. A leaf: it knows no component; each component owns
//! its metrics built from these, and `service` only gathers and renders them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;

pub mod expose;
pub mod log_ring;
mod rejects;
mod reloads;
mod source;
pub use rejects::{Reject, Rejects};
pub use reloads::{ConfigMetrics, ReloadResult};
pub use source::SourceMetrics;

/// Shortest gap between two log lines about the same kind of bad input.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Logs at most once per interval; counts what it held back.
#[derive(Debug)]
pub struct RateLimit {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
    interval: Duration,
}

impl RateLimit {
    pub const fn new(interval: Duration) -> Self {
        RateLimit {
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
            interval,
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were suppressed before it.
    pub fn check(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(t) if now.duration_since(t) < self.interval => {
                self.suppressed.fetch_add(1, Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.suppressed.swap(0, Relaxed))
            }
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::new(LOG_INTERVAL)
    }
}

/// Histogram bucket bounds for step and store latencies, seconds: 1 ms to 60 s (a close or
/// an fsync takes milliseconds; a store outage holds windows for many seconds).
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The last and the largest duration of one step, in microseconds, and the distribution of
/// all of them.
#[derive(Debug)]
pub struct StageTime {
    pub last_us: AtomicI64,
    pub max_us: AtomicI64,
    pub histogram: Histogram,
}

impl Default for StageTime {
    fn default() -> Self {
        StageTime {
            last_us: AtomicI64::new(0),
            max_us: AtomicI64::new(0),
            histogram: Histogram::new(LATENCY_BUCKETS),
        }
    }
}

impl StageTime {
    pub fn record(&self, took: Duration) {
        let us = i64::try_from(took.as_micros()).unwrap_or(i64::MAX);
        self.last_us.store(us, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
        self.histogram.observe(took.as_secs_f64());
    }

    /// The last (or the largest) duration in seconds.
    pub fn seconds(&self, max: bool) -> f64 {
        let us = if max { &self.max_us } else { &self.last_us };
        us.load(Relaxed) as f64 / 1e6
    }
}

/// Time from a tick closing windows (the aggregator) to the store's next 2xx (the uplink),
/// which carries them when the uplink is idle. Shared by both through an `Arc`.
#[derive(Debug, Default)]
pub struct StoreLatency {
    /// When the last close not yet followed by a 2xx happened (ns since the epoch; 0 = none).
    pending_close_ns: AtomicI64,
    pub took: StageTime,
}

impl StoreLatency {
    /// Windows closed at `now` (a tick, not the shutdown flush).
    pub fn window_closed(&self, now: i64) {
        let _ = self
            .pending_close_ns
            .compare_exchange(0, now, Relaxed, Relaxed);
    }

    /// The store accepted a write at `now`: completes a pending close's latency.
    pub fn store_accepted(&self, now: i64) {
        let closed = self.pending_close_ns.swap(0, Relaxed);
        if closed > 0 {
            let ns = u64::try_from(now - closed).unwrap_or(0);
            self.took.record(Duration::from_nanos(ns));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_counts_suppressed() {
        let rl = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(rl.check(), Some(0));
        assert_eq!(rl.check(), None);
        assert_eq!(rl.check(), None);
        let rl0 = RateLimit::new(Duration::ZERO);
        assert_eq!(rl0.check(), Some(0));
        assert_eq!(rl0.check(), Some(0));
    }

    #[test]
    fn store_latency_counts_from_the_first_close_to_the_next_accept() {
        let l = StoreLatency::default();
        l.store_accepted(1_000_000); // no close pending: nothing to measure
        assert_eq!(l.took.last_us.load(Relaxed), 0);
        l.window_closed(10_000_000);
        l.window_closed(12_000_000); // a later close does not restart the clock
        l.store_accepted(17_000_000);
        l.store_accepted(90_000_000); // already reported
        assert_eq!(l.took.last_us.load(Relaxed), 7_000);
        l.window_closed(100_000_000);
        l.store_accepted(102_000_000);
        assert_eq!(l.took.last_us.load(Relaxed), 2_000);
        assert_eq!(l.took.max_us.load(Relaxed), 7_000);
    }
}
