//! The uplink's own counters beyond requests and points sent: points dead-lettered by
//! reason, requests split after a refusal, redirects not followed, TLS refusals by reason,
//! and the request size limit in force (it shrinks after a 413). Rendered into `/metrics` by
//! `service::metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::connect::TlsFailure;
use crate::telemetry::expose;

/// Why a point went to the dead-letter file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// The store refused the point itself as bad data (400/422 to a one-point request).
    BadData,
    /// The store refused a one-point request as too large (413).
    TooLarge,
}

impl DeadReason {
    const ALL: [DeadReason; 2] = [DeadReason::BadData, DeadReason::TooLarge];

    pub fn label(self) -> &'static str {
        match self {
            DeadReason::BadData => "bad_data",
            DeadReason::TooLarge => "too_large",
        }
    }
}

#[derive(Debug, Default)]
pub struct UplinkMetrics {
    dead_letter: [AtomicU64; 2],
    /// Refused requests split in two to find the points the store rejects (or to fit a 413).
    pub splits: AtomicU64,
    /// 3xx answers that were not followed (anything but 307/308).
    pub redirects: AtomicU64,
    /// Requests refused in TLS, by [`TlsFailure`].
    tls_failures: [AtomicU64; 3],
    /// Request size limit in force, bytes (0 until the uplink starts).
    pub max_request_bytes: AtomicU64,
}

impl UplinkMetrics {
    pub fn dead_lettered(&self, reason: DeadReason, points: u64) {
        self.dead_letter[reason as usize].fetch_add(points, Relaxed);
    }

    pub fn dead_letter_points(&self, reason: DeadReason) -> u64 {
        self.dead_letter[reason as usize].load(Relaxed)
    }

    pub fn tls_failed(&self, failure: TlsFailure) {
        self.tls_failures[failure as usize].fetch_add(1, Relaxed);
    }

    pub fn tls_failures(&self, failure: TlsFailure) -> u64 {
        self.tls_failures[failure as usize].load(Relaxed)
    }

    /// Describes the uplink counters of every output, labelled `output`.
    pub fn encode(e: &mut expose::Encoder, outs: &[(&str, &UplinkMetrics)]) -> expose::Encoded {
        let load = |a: &AtomicU64| a.load(Relaxed);
        let dead = outs.iter().flat_map(|&(o, m)| {
            DeadReason::ALL.map(|r| {
                (
                    [("output", o), ("reason", r.label())],
                    m.dead_letter_points(r),
                )
            })
        });
        let help = "Points the store refused, moved to the dead-letter file, by reason.";
        expose::counters(e, "citysense_dead_letter_points", help, dead)?;
        let help = "Refused requests split in two (400/422 to isolate bad points, 413 to fit).";
        let rows = outs
            .iter()
            .map(|&(o, m)| ([("output", o)], load(&m.splits)));
        expose::counters(e, "citysense_uplink_splits", help, rows)?;
        let help = "Redirects not followed (only 307/308 are); the data stays in the spool.";
        let rows = outs
            .iter()
            .map(|&(o, m)| ([("output", o)], load(&m.redirects)));
        expose::counters(e, "citysense_uplink_redirects", help, rows)?;
        let tls = outs.iter().flat_map(|&(o, m)| {
            TlsFailure::ALL.map(|f| ([("output", o), ("reason", f.label())], m.tls_failures(f)))
        });
        let help = "Requests refused in TLS, by reason; the data stays in the spool.";
        expose::counters(e, "citysense_uplink_tls_failures", help, tls)?;
        let help = "Request size limit in force (halved by each 413, down to 4096).";
        let rows = outs
            .iter()
            .map(|&(o, m)| ([("output", o)], load(&m.max_request_bytes) as i64));
        expose::gauges(e, "citysense_uplink_max_request_bytes", help, rows)
    }
}
