//! The sink's metrics: the spool writer's and the uplink's counters and gauges, points given
//! up by reason, and the durations of the spool append and the uplink request.
//!
//! One `SinkMetrics` per output: the first (the daemon's `Metrics::sink`) also holds the
//! spool's and lists the others ([`SinkMetrics::set_outputs`]); every uplink series and the
//! per-output spool backlog carry the label `output`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::spool_drops::SpoolDrops;
use super::uplink_metrics::UplinkMetrics;
use crate::telemetry::{expose, StageTime, StoreLatency};

/// See the module doc.
#[derive(Debug, Default)]
pub struct SinkMetrics {
    pub uplink_requests_ok: AtomicU64,
    pub uplink_requests_failed: AtomicU64,
    pub uplink_points_sent: AtomicU64,
    pub uplink_bytes_sent: AtomicU64,
    pub uplink_up: AtomicI64,
    /// Wall time (s) of the last request the store accepted / refused or failed; 0: none yet.
    /// For the status page (not rendered to `/metrics`).
    pub uplink_last_ok_s: AtomicI64,
    pub uplink_last_error_s: AtomicI64,
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
    /// This output's backlog in the spool: points, oldest window (ns, 0 = none), and the
    /// points the size bound dropped before it had them.
    pub output_backlog_points: AtomicU64,
    pub output_oldest_ts: AtomicI64,
    pub output_dropped_points: AtomicU64,
    /// This output's name (`default` until set) and the other outputs' metrics.
    outputs: Mutex<Named>,
}

/// The first output's name and the other outputs' (name, metrics).
type Named = (String, Vec<(String, Arc<SinkMetrics>)>);

impl SinkMetrics {
    /// Metrics whose store latency the aggregator starts through `store_latency`.
    pub fn new(store_latency: Arc<StoreLatency>) -> SinkMetrics {
        SinkMetrics {
            store_latency,
            ..Default::default()
        }
    }

    /// Names this (the first) output and lists the others, for the `output` label.
    pub fn set_outputs(&self, first: &str, others: Vec<(String, Arc<SinkMetrics>)>) {
        *self.outputs.lock().unwrap_or_else(|e| e.into_inner()) = (first.to_string(), others);
    }

    /// The other outputs' (name, metrics), in config order.
    pub fn other_outputs(&self) -> Vec<(String, Arc<SinkMetrics>)> {
        self.named().1
    }

    /// The first output's name (`default` until set).
    pub fn first_output_name(&self) -> String {
        self.named().0
    }

    /// This output's name and the other outputs' (name, metrics).
    fn named(&self) -> Named {
        let g = self.outputs.lock().unwrap_or_else(|e| e.into_inner());
        let first = match g.0.as_str() {
            "" => crate::spool::DEFAULT_OUTPUT.to_string(),
            n => n.to_string(),
        };
        (first, g.1.clone())
    }

    /// The store accepted a write at `now`: completes a pending close's latency.
    pub fn store_accepted(&self, now: i64) {
        self.store_latency.store_accepted(now);
    }

    /// Describes the sink's metrics for `/metrics` (its stage timings are gathered by
    /// `service` with the aggregator's).
    pub fn encode(&self, e: &mut expose::Encoder) -> expose::Encoded {
        let load = |a: &AtomicU64| a.load(Relaxed);
        let (first, others) = self.named();
        let mut outs: Vec<(&str, &SinkMetrics)> = vec![(first.as_str(), self)];
        outs.extend(others.iter().map(|(n, m)| (n.as_str(), &**m)));
        type Pick = fn(&SinkMetrics) -> &AtomicU64;
        let per_output: [(&str, &str, Pick); 5] = [
            (
                "citysense_uplink_requests_ok",
                "Write requests the store accepted.",
                |m| &m.uplink_requests_ok,
            ),
            (
                "citysense_uplink_requests_failed",
                "Write requests that failed.",
                |m| &m.uplink_requests_failed,
            ),
            (
                "citysense_uplink_points_sent",
                "Points the store accepted.",
                |m| &m.uplink_points_sent,
            ),
            (
                "citysense_uplink_bytes_sent",
                "Line-protocol bytes the store accepted (before gzip).",
                |m| &m.uplink_bytes_sent,
            ),
            (
                "citysense_spool_output_dropped_points",
                "Points the spool's size bound dropped before this output had them.",
                |m| &m.output_dropped_points,
            ),
        ];
        for (name, help, pick) in per_output {
            let rows = outs.iter().map(|&(o, m)| ([("output", o)], load(pick(m))));
            expose::counters(e, name, help, rows)?;
        }
        let counters = [
            (
                "citysense_spool_corrupt_records",
                "Unacknowledged spool records lost to corruption (at open or when read).",
                load(&self.spool_corrupt_records),
            ),
            (
                "citysense_spool_errors",
                "Spool I/O errors.",
                load(&self.spool_errors),
            ),
        ];
        for (name, help, v) in counters {
            expose::counter(e, name, help, v)?;
        }
        self.encode_gauges(e)?;
        encode_output_gauges(e, &outs)?;
        self.spool_dropped.encode(e)?;
        let uplinks: Vec<(&str, &UplinkMetrics)> =
            outs.iter().map(|&(o, m)| (o, &m.uplink)).collect();
        UplinkMetrics::encode(e, &uplinks)
    }

    fn encode_gauges(&self, e: &mut expose::Encoder) -> expose::Encoded {
        let load = |a: &AtomicU64| a.load(Relaxed);
        let oldest = self.spool_oldest_ts.load(Relaxed);
        // How far behind the store is: derived at scrape time from the oldest spooled window.
        let age = match oldest {
            0 => 0,
            t => (crate::reading::now_ns() - t).max(0) / 1_000_000_000,
        };
        let gauges = [
            (
                "citysense_spool_bytes",
                "Bytes waiting in the spool.",
                load(&self.spool_bytes) as i64,
            ),
            (
                "citysense_spool_batches",
                "Batches waiting in the spool.",
                load(&self.spool_batches) as i64,
            ),
            (
                "citysense_spool_points",
                "Points waiting in the spool.",
                load(&self.spool_points) as i64,
            ),
            (
                "citysense_spool_oldest_timestamp_seconds",
                "Window start of the oldest spooled point (0 = empty).",
                oldest / 1_000_000_000,
            ),
            (
                "citysense_spool_oldest_age_seconds",
                "Age of the oldest spooled window (0 = empty).",
                age,
            ),
            (
                "citysense_spool_held_points",
                "Points held in memory because the spool refuses writes (e.g. disk full).",
                load(&self.spool_held_points) as i64,
            ),
        ];
        for (name, help, v) in gauges {
            expose::gauge(e, name, help, v)?;
        }
        Ok(())
    }
}

/// The per-output gauges: uplink up, backlog points and its oldest window.
fn encode_output_gauges(e: &mut expose::Encoder, outs: &[(&str, &SinkMetrics)]) -> expose::Encoded {
    let help = "1 while the last write succeeded.";
    let rows = outs
        .iter()
        .map(|&(o, m)| ([("output", o)], m.uplink_up.load(Relaxed)));
    expose::gauges(e, "citysense_uplink_up", help, rows)?;
    let help = "Points in the spool this output has not acknowledged.";
    let rows = outs.iter().map(|&(o, m)| {
        (
            [("output", o)],
            m.output_backlog_points.load(Relaxed) as i64,
        )
    });
    expose::gauges(e, "citysense_spool_output_backlog_points", help, rows)?;
    let help = "Window start of the oldest point this output has not acknowledged (0 = none).";
    let rows = outs.iter().map(|&(o, m)| {
        (
            [("output", o)],
            m.output_oldest_ts.load(Relaxed) / 1_000_000_000,
        )
    });
    expose::gauges(
        e,
        "citysense_spool_output_oldest_timestamp_seconds",
        help,
        rows,
    )
}
