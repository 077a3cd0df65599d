//! Points that closed windows produced but that will never reach the store because of the
//! spool, by reason: `citysense_spool_dropped_points_total{reason}`. Every path that gives
//! up on a batch counts here, through `events.rs` (which also writes its log line).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why spooled (or to-be-spooled) points were given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolDrop {
    /// The spool reached `max_bytes`: its oldest batches were dropped.
    Full,
    /// The disk refused writes (ENOSPC, EIO) long enough for the in-memory queue to
    /// overflow: its oldest batches were dropped.
    HeldOverflow,
    /// Still held in memory at stop because the disk kept refusing writes.
    UnwrittenAtStop,
    /// One batch larger than `max_bytes`.
    TooLarge,
    /// Lost to spool corruption (estimated where a damaged header is unreadable).
    Corrupt,
    /// The spool writer task failed (a bug: the batch was in flight).
    WriterFailed,
}

impl SpoolDrop {
    const ALL: [SpoolDrop; 6] = [
        SpoolDrop::Full,
        SpoolDrop::HeldOverflow,
        SpoolDrop::UnwrittenAtStop,
        SpoolDrop::TooLarge,
        SpoolDrop::Corrupt,
        SpoolDrop::WriterFailed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SpoolDrop::Full => "full",
            SpoolDrop::HeldOverflow => "held_overflow",
            SpoolDrop::UnwrittenAtStop => "unwritten_at_stop",
            SpoolDrop::TooLarge => "too_large",
            SpoolDrop::Corrupt => "corrupt",
            SpoolDrop::WriterFailed => "writer_failed",
        }
    }
}

/// The counters, one per reason.
#[derive(Debug, Default)]
pub struct SpoolDrops {
    points: [AtomicU64; 6],
}

impl SpoolDrops {
    pub fn add(&self, reason: SpoolDrop, points: u64) {
        self.points[reason as usize].fetch_add(points, Relaxed);
    }

    /// Raises the counter to `total` (for counts the spool keeps itself, e.g. corruption
    /// found since open); never lowers it.
    pub fn raise_to(&self, reason: SpoolDrop, total: u64) {
        self.points[reason as usize].fetch_max(total, Relaxed);
    }

    pub fn get(&self, reason: SpoolDrop) -> u64 {
        self.points[reason as usize].load(Relaxed)
    }

    /// All reasons together.
    pub fn total(&self) -> u64 {
        SpoolDrop::ALL.iter().map(|&r| self.get(r)).sum()
    }

    /// Describes the counters for `/metrics`.
    pub fn encode(
        &self,
        e: &mut crate::telemetry::expose::Encoder,
    ) -> crate::telemetry::expose::Encoded {
        crate::telemetry::expose::counters(
            e,
            "citysense_spool_dropped_points",
            "Points given up by the spool, by reason (full, held_overflow, unwritten_at_stop, too_large, corrupt, writer_failed).",
            SpoolDrop::ALL.map(|r| ([("reason", r.label())], self.get(r))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason() {
        let d = SpoolDrops::default();
        d.add(SpoolDrop::Full, 3);
        d.raise_to(SpoolDrop::Corrupt, 7);
        d.raise_to(SpoolDrop::Corrupt, 5);
        assert_eq!((d.get(SpoolDrop::Corrupt), d.total()), (7, 10));
    }
}
