//! The sink's metrics: the spool writer's and the uplink's counters and gauges, points given
//! up by reason, and the durations of the spool append and the uplink request.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;

use super::spool_drops::SpoolDrops;
use super::uplink_metrics::UplinkMetrics;
use crate::telemetry::{StageTime, StoreLatency};

/// See the module doc.
#[derive(Debug, Default)]
pub struct SinkMetrics {
    pub uplink_requests_ok: AtomicU64,
    pub uplink_requests_failed: AtomicU64,
    pub uplink_points_sent: AtomicU64,
    pub uplink_bytes_sent: AtomicU64,
    pub uplink_up: AtomicI64,
    pub spool_bytes: AtomicU64,
    pub spool_batches: AtomicU64,
    pub spool_points: AtomicU64,
    pub spool_oldest_ts: AtomicI64,
    /// `citysense_spool_dropped_points_total{reason}`.
    pub spool_dropped: SpoolDrops,
    pub spool_corrupt_records: AtomicU64,
    /// Points held in memory because the spool refuses writes (full disk, I/O error).
    pub spool_held_points: AtomicU64,
    pub spool_errors: AtomicU64,
    /// Dead-letter points by reason, splits, redirects, request size limit.
    pub uplink: UplinkMetrics,
    /// Spool append: write + fdatasync.
    pub spool_append: StageTime,
    /// Uplink request: gzip, HTTP, the store's answer.
    pub uplink_request: StageTime,
    /// Window close -> store accepted; the aggregator starts it.
    pub store_latency: Arc<StoreLatency>,
}

impl SinkMetrics {
    /// Metrics whose store latency the aggregator starts through `store_latency`.
    pub fn new(store_latency: Arc<StoreLatency>) -> SinkMetrics {
        SinkMetrics {
            store_latency,
            ..Default::default()
        }
    }

    /// The store accepted a write at `now`: completes a pending close's latency.
    pub fn store_accepted(&self, now: i64) {
        self.store_latency.store_accepted(now);
    }
}
