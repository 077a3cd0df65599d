//! The spool's public data types: its runtime options, what open/append/stats report, and its
//! error enum.

use std::io;
use std::path::PathBuf;

/// Default bound on the spool's on-disk size: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Default segment size: 4 MiB (the unit of deletion and of dropping when full).
pub const DEFAULT_SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

/// Runtime settings of a spool (the daemon builds them from the `[spool]` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolOptions {
    /// Spool directory, created if missing.
    pub dir: PathBuf,
    /// Bound on segment bytes + ack file; default 256 MiB (the caller enforces >= 1 MiB).
    pub max_bytes: u64,
    /// A segment is closed once it reaches this size; default 4 MiB, clamped to max_bytes/4.
    pub segment_bytes: u64,
    /// fdatasync every append and ack; default true (only tests turn it off).
    pub fsync: bool,
}

impl SpoolOptions {
    /// A config for `dir` with the defaults.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SpoolOptions {
            dir: dir.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            fsync: true,
        }
    }
}

/// What `open` found and repaired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Unacknowledged batches ready to send.
    pub records: u64,
    /// Points in those batches.
    pub points: u64,
    /// Segment bytes on disk after recovery.
    pub bytes: u64,
    /// Bytes of torn segment tails truncated (one record cut short by a crash: no loss).
    pub torn_tail_bytes: u64,
    /// Unacknowledged records lost to corruption (skipped regions and corrupt tails).
    pub corrupt_records: u64,
    /// Points in those records (estimated where a damaged header is unreadable).
    pub corrupt_points: u64,
    /// Batches dropped because the spool was over `max_bytes` (e.g. the bound shrank).
    pub dropped_batches: u64,
    /// Points in those batches.
    pub dropped_points: u64,
    /// The ack file was unreadable: everything on disk will be sent again.
    pub ack_reset: bool,
}

/// One spooled batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub id: u64,
    pub points: u32,
    pub min_ts: i64,
    pub max_ts: i64,
    pub payload: Vec<u8>,
}

/// Result of an append: the new id and what the size bound dropped to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub id: u64,
    pub dropped_batches: u64,
    pub dropped_points: u64,
}

/// A snapshot for metrics and `citysensed spool inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolStats {
    /// Segment bytes on disk (acked records of the oldest segment included; for `inspect`
    /// every segment file, so a disk filled by segments not yet reclaimed shows).
    pub bytes: u64,
    /// Unacknowledged batches.
    pub batches: u64,
    /// Points in unacknowledged batches.
    pub points: u64,
    /// Smallest point timestamp among segments with unacked batches (segment granularity).
    pub oldest_ts: Option<i64>,
    /// Largest point timestamp among segments with unacked batches.
    pub newest_ts: Option<i64>,
    pub acked_id: u64,
    /// Id the next append gets.
    pub next_id: u64,
    /// Unacknowledged records lost to corruption since open (recovery included).
    pub corrupt_records: u64,
    /// Points in those records (estimated where a damaged header is unreadable).
    pub corrupt_points: u64,
}

/// One output's view of the spool: its position, its backlog and what the bound dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputStats {
    pub name: String,
    /// Every record with an id <= this is delivered to the output.
    pub acked_id: u64,
    /// Batches not yet delivered to it (exact unless corruption took some).
    pub batches: u64,
    /// Points in them (prorated in the segment its position cuts).
    pub points: u64,
    /// Smallest point timestamp of its undelivered batches (segment granularity).
    pub oldest_ts: Option<i64>,
    /// Batches the size bound dropped before it had them, since open.
    pub dropped_batches: u64,
    /// Points in them.
    pub dropped_points: u64,
}

#[derive(thiserror::Error, Debug)]
pub enum SpoolError {
    #[error("spool I/O: {0}")]
    Io(#[from] io::Error),
    #[error("spool directory {dir}: {source}")]
    Dir { dir: PathBuf, source: io::Error },
    #[error("batch record of {bytes} bytes cannot fit in spool max_bytes {max_bytes}")]
    TooLarge { bytes: u64, max_bytes: u64 },
    #[error("spool directory {dir} is locked by another process")]
    Locked { dir: PathBuf },
    #[error("ack of id {id}, but the next id to be appended is {next_id}")]
    AckBeyondEnd { id: u64, next_id: u64 },
    #[error("no output number {0} in this spool")]
    NoOutput(usize),
}
