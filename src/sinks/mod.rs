//! Where closed windows go: standard output (demo), or the disk spool and from there the
//! store (the uplink task).
//!
//! Data flow: aggregator -> [`WindowBatch`] channel -> spool writer (one fsync per batch)
//! -> spool on disk -> uplink (peek, send, ack). A batch is acknowledged, and so deleted,
//! only after the store answered 2xx.

mod bisect;
pub mod influx;
mod pending;
mod uplink;
mod uplink_metrics;

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
use pending::{Pending, PENDING_MAX_BYTES};
pub use uplink::Uplink;
pub use uplink_metrics::{DeadReason, UplinkMetrics};

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
        report_recovery(&metrics, &recovery);
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
                let mut pending = Pending::new(PENDING_MAX_BYTES);
                let mut retry = tokio::time::interval(PENDING_RETRY);
                retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        batch = input.recv() => match batch {
                            Some(batch) => {
                                let (b, p) = pending.push(batch);
                                report_memory_drop(&uplink, b, p);
                            }
                            None => break,
                        },
                        _ = retry.tick(), if !pending.is_empty() => {}
                    }
                    if append_pending(&spool, &mut pending, &uplink).await {
                        wake.notify_one();
                    }
                }
                // Input closed: shutdown. One last try for batches held in memory.
                append_pending(&spool, &mut pending, &uplink).await;
                if !pending.is_empty() {
                    let points = pending.points();
                    uplink
                        .metrics()
                        .spool_dropped_points
                        .fetch_add(points, Relaxed);
                    tracing::error!(
                        batches = pending.len(),
                        points,
                        "spool still failing at shutdown: batches held in memory are lost"
                    );
                }
                wake.notify_one();
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

/// Counts and logs what `open` repaired or dropped (the bound may have shrunk since).
fn report_recovery(metrics: &Metrics, recovery: &crate::spool::Recovery) {
    if recovery.corrupt_records > 0 {
        tracing::error!(
            corrupt = recovery.corrupt_records,
            "corrupt spool records skipped (data lost)"
        );
    }
    metrics
        .spool_corrupt_records
        .fetch_add(recovery.corrupt_records, Relaxed);
    if recovery.dropped_points > 0 || recovery.dropped_batches > 0 {
        tracing::error!(
            batches = recovery.dropped_batches,
            points = recovery.dropped_points,
            "spool over max_bytes at open: oldest batches dropped (data lost)"
        );
    }
    metrics
        .spool_dropped_points
        .fetch_add(recovery.dropped_points, Relaxed);
    if recovery.ack_reset {
        tracing::warn!("spool ack file unreadable: every batch on disk will be sent again (harmless: same timestamps overwrite)");
    }
}

/// How often batches held in memory after a spool write error are tried again.
const PENDING_RETRY: Duration = Duration::from_secs(1);

/// Appends the batches held in memory, oldest first, until one fails (it stays, in place).
/// Returns true if anything reached the spool.
async fn append_pending(spool: &SharedSpool, pending: &mut Pending, uplink: &Uplink) -> bool {
    let mut any = false;
    while let Some(batch) = pending.pop() {
        match append(spool, batch, uplink).await {
            Ok(()) => any = true,
            Err(Some(batch)) => {
                pending.push_front(batch);
                break;
            }
            Err(None) => {}
        }
    }
    if any {
        uplink.publish_stats();
    }
    any
}

/// Appends one batch to the spool (blocking I/O off the async threads). On an I/O error the
/// batch comes back (`Err(Some)`) to be retried; a batch that can never fit is lost
/// (`Err(None)`, counted).
async fn append(
    spool: &SharedSpool,
    batch: WindowBatch,
    uplink: &Uplink,
) -> Result<(), Option<WindowBatch>> {
    let spool = spool.clone();
    let started = std::time::Instant::now();
    let res = tokio::task::spawn_blocking(move || {
        let r = lock(&spool).append(
            batch.payload.as_bytes(),
            batch.points,
            batch.min_ts,
            batch.max_ts,
        );
        (batch, r)
    })
    .await;
    let metrics = uplink.metrics();
    metrics.stages.spool_append.record(started.elapsed());
    match res {
        Ok((batch, Ok(appended))) => {
            tracing::debug!(id = appended.id, points = batch.points, "batch spooled");
            if appended.dropped_points > 0 {
                metrics
                    .spool_dropped_points
                    .fetch_add(appended.dropped_points, Relaxed);
                uplink.log_spool_full(appended.dropped_batches, appended.dropped_points);
            }
            Ok(())
        }
        Ok((batch, Err(e @ SpoolError::TooLarge { .. }))) => {
            spool_error(metrics, batch.points, &e);
            Err(None)
        }
        Ok((batch, Err(e))) => {
            metrics.spool_errors.fetch_add(1, Relaxed);
            uplink.log_spool_write_error(&e, batch.points);
            Err(Some(batch))
        }
        Err(e) => {
            metrics.spool_errors.fetch_add(1, Relaxed);
            tracing::error!(error = %e, "spool writer task failed: batch lost");
            Err(None)
        }
    }
}

/// Batches the in-memory queue dropped to stay bounded: lost, counted like a full spool.
fn report_memory_drop(uplink: &Uplink, batches: u64, points: u64) {
    if batches > 0 {
        uplink
            .metrics()
            .spool_dropped_points
            .fetch_add(points, Relaxed);
        uplink.log_spool_full(batches, points);
    }
}

fn spool_error(metrics: &Metrics, points: u32, e: &SpoolError) {
    metrics.spool_errors.fetch_add(1, Relaxed);
    metrics
        .spool_dropped_points
        .fetch_add(u64::from(points), Relaxed);
    tracing::error!(error = %e, points, "cannot write to spool: batch lost");
}
