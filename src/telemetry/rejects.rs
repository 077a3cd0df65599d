//! What a source refused beyond plain malformed input, by reason: whole MQTT messages too
//! large to take, payload keys that could not become a field of their own, and readings of
//! series past `aggregation.max_series` (those count as `series_limit` drops, not bad input).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{RateLimit, SourceMetrics};

/// Why a source rejected a message or a part of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// A whole message over the source's payload limit (acknowledged, not parsed).
    TooLarge,
    /// A payload key with no letter or digit to name a field by.
    InvalidKey,
    /// A payload key whose field name another key of the same message took.
    DuplicateKey,
}

impl Reject {
    pub const ALL: [Reject; 3] = [Reject::TooLarge, Reject::InvalidKey, Reject::DuplicateKey];

    pub fn label(self) -> &'static str {
        match self {
            Reject::TooLarge => "too_large",
            Reject::InvalidKey => "invalid_key",
            Reject::DuplicateKey => "duplicate_key",
        }
    }
}

/// A source's reject counters; part of [`SourceMetrics`].
#[derive(Debug, Default)]
pub struct Rejects {
    by_reason: [AtomicU64; 3],
    log: RateLimit,
    /// Readings refused because their series would pass `aggregation.max_series`.
    series_limit: AtomicU64,
    series_limit_log: RateLimit,
}

impl SourceMetrics {
    /// `n` rejects of `reason` in one message from `origin`: counted, logged rate-limited.
    pub fn rejected(&self, reason: Reject, n: u64, origin: &str, detail: &dyn std::fmt::Display) {
        self.rejects.by_reason[reason as usize].fetch_add(n, Relaxed);
        if let Some(suppressed) = self.rejects.log.check() {
            let reason = reason.label();
            tracing::warn!(source = %self.name, origin, reason, n, %detail, suppressed, "input rejected");
        }
    }

    pub fn rejected_count(&self, reason: Reject) -> u64 {
        self.rejects.by_reason[reason as usize].load(Relaxed)
    }

    /// A reading whose new series the registry refused (`aggregation.max_series` reached).
    pub fn series_limit(&self, origin: &str) {
        self.rejects.series_limit.fetch_add(1, Relaxed);
        if let Some(suppressed) = self.rejects.series_limit_log.check() {
            tracing::warn!(source = %self.name, origin, suppressed, "reading dropped: aggregation.max_series reached");
        }
    }

    pub fn series_limit_count(&self) -> u64 {
        self.rejects.series_limit.load(Relaxed)
    }
}
