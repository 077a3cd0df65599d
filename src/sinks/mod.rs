//! Where closed windows go: standard output (demo), or the disk spool and from there the
//! store (the uplink task).
//!
//! Data flow: aggregator -> [`WindowBatch`] channel -> spool writer (one fsync per batch)
//! -> spool on disk -> uplink (peek, send, ack). A batch is acknowledged, and so deleted,
//! only after the store answered 2xx.

pub mod influx;
mod uplink;

use std::io::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, OutputApi};
use crate::pipeline::aggregate::WindowBatch;
use crate::service::metrics::Metrics;
use crate::spool::{Spool, SpoolConfig as DiskConfig, SpoolError};

pub use influx::{classify, Outcome, SinkError, Writer};
pub use uplink::Uplink;

/// The spool as shared by its writer and the uplink.
pub type SharedSpool = Arc<Mutex<Spool>>;

/// Locks the spool; a panic in another holder cannot leave it half-written on disk (every
/// write is one append + fsync, recovery handles the rest), so poisoning is ignored.
pub fn lock(spool: &SharedSpool) -> std::sync::MutexGuard<'_, Spool> {
    spool.lock().unwrap_or_else(|e| e.into_inner())
}

/// The configured destination.
pub enum Sink {
    Stdout,
    Store { spool: SharedSpool, uplink: Uplink },
}

/// How long the uplink may keep sending at shutdown before leaving the rest in the spool.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

impl Sink {
    /// Opens the spool (recovering it) and builds the writer.
    pub fn build(cfg: &Config, metrics: Arc<Metrics>) -> Result<Sink, SinkError> {
        if cfg.output.api == OutputApi::Stdout {
            return Ok(Sink::Stdout);
        }
        let writer = Writer::build(&cfg.output)?;
        let dir = cfg.spool.dir();
        let (spool, recovery) = Spool::open(DiskConfig {
            dir: dir.clone(),
            max_bytes: cfg.spool.max_bytes,
            segment_bytes: (cfg.spool.max_bytes / 8).clamp(64 << 10, 8 << 20),
            fsync: cfg.spool.fsync,
        })
        .map_err(|e| SinkError::Config(format!("spool {}: {e}", dir.display())))?;
        tracing::info!(
            dir = %dir.display(),
            batches = recovery.records,
            points = recovery.points,
            bytes = recovery.bytes,
            torn_tail_bytes = recovery.torn_tail_bytes,
            corrupt_records = recovery.corrupt_records,
            "spool opened"
        );
        if recovery.corrupt_records > 0 {
            tracing::error!(
                corrupt = recovery.corrupt_records,
                "corrupt spool records skipped (data lost)"
            );
        }
        metrics
            .spool_corrupt_records
            .fetch_add(recovery.corrupt_records, Relaxed);
        let spool = Arc::new(Mutex::new(spool));
        let uplink = Uplink::new(
            writer,
            spool.clone(),
            metrics,
            Duration::from_secs(cfg.output.max_backoff_secs.max(1)),
            cfg.output.max_request_bytes,
            dir,
        );
        uplink.publish_stats();
        Ok(Sink::Store { spool, uplink })
    }

    /// Consumes window batches until the channel closes, then lets the uplink drain.
    pub async fn run(self, mut input: mpsc::Receiver<WindowBatch>) {
        match self {
            Sink::Stdout => {
                while let Some(batch) = input.recv().await {
                    let mut out = std::io::stdout().lock();
                    // A closed stdout (demo piped into `head`) is not an error worth a panic.
                    if out
                        .write_all(batch.payload.as_bytes())
                        .and_then(|_| out.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            }
            Sink::Store { spool, uplink } => {
                let wake = Arc::new(Notify::new());
                let stop = CancellationToken::new();
                let up = tokio::spawn(uplink.clone().run(wake.clone(), stop.clone()));
                while let Some(batch) = input.recv().await {
                    append(&spool, batch, &uplink).await;
                    wake.notify_one();
                }
                // Input closed: shutdown. Give the uplink a deadline to send what is left.
                stop.cancel();
                if tokio::time::timeout(DRAIN_DEADLINE + Duration::from_secs(1), up)
                    .await
                    .is_err()
                {
                    tracing::warn!("uplink did not finish within the drain deadline");
                }
            }
        }
    }
}

/// Appends one batch to the spool (blocking I/O off the async threads).
async fn append(spool: &SharedSpool, batch: WindowBatch, uplink: &Uplink) {
    let spool = spool.clone();
    let points = batch.points;
    let res = tokio::task::spawn_blocking(move || {
        lock(&spool).append(
            batch.payload.as_bytes(),
            batch.points,
            batch.min_ts,
            batch.max_ts,
        )
    })
    .await;
    let metrics = uplink.metrics();
    match res {
        Ok(Ok(appended)) => {
            if appended.dropped_points > 0 {
                metrics
                    .spool_dropped_points
                    .fetch_add(appended.dropped_points, Relaxed);
                uplink.log_spool_full(appended.dropped_batches, appended.dropped_points);
            }
        }
        Ok(Err(e)) => spool_error(metrics, points, &e),
        Err(e) => tracing::error!(error = %e, "spool writer task failed"),
    }
    uplink.publish_stats();
}

fn spool_error(metrics: &Metrics, points: u32, e: &SpoolError) {
    metrics.spool_errors.fetch_add(1, Relaxed);
    metrics
        .spool_dropped_points
        .fetch_add(u64::from(points), Relaxed);
    tracing::error!(error = %e, points, "cannot write to spool: batch lost");
}
