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

    /// Describes these metrics for `/metrics`.
    pub fn encode(&self, e: &mut expose::Encoder) -> expose::Encoded {
        expose::counters(
            e,
            "citysense_dead_letter_points",
            "Points the store refused, moved to the dead-letter file, by reason.",
            DeadReason::ALL.map(|r| ([("reason", r.label())], self.dead_letter_points(r))),
        )?;
        expose::counter(
            e,
            "citysense_uplink_splits",
            "Refused requests split in two (400/422 to isolate bad points, 413 to fit).",
            self.splits.load(Relaxed),
        )?;
        expose::counter(
            e,
            "citysense_uplink_redirects",
            "Redirects not followed (only 307/308 are); the data stays in the spool.",
            self.redirects.load(Relaxed),
        )?;
        expose::counters(
            e,
            "citysense_uplink_tls_failures",
            "Requests refused in TLS, by reason; the data stays in the spool.",
            TlsFailure::ALL.map(|f| ([("reason", f.label())], self.tls_failures(f))),
        )?;
        expose::gauge(
            e,
            "citysense_uplink_max_request_bytes",
            "Request size limit in force (halved by each 413, down to 4096).",
            self.max_request_bytes.load(Relaxed),
        )
    }
}
