//! The uplink task: sends the spool's oldest batches to the store, oldest first, and
//! acknowledges them only after a 2xx. The retry policy per answer is in
//! [`classify`](super::influx::classify); the waits are here.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::influx::{Outcome, Writer};
use super::{lock, SharedSpool, DRAIN_DEADLINE};
use crate::service::metrics::{Metrics, RateLimit};
use crate::spool::{dead_letter, Batch};

/// Sends spooled batches; cheap to clone (shared state behind `Arc`).
#[derive(Clone)]
pub struct Uplink {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Writer,
    spool: SharedSpool,
    metrics: Arc<Metrics>,
    max_backoff: Duration,
    max_request_bytes: usize,
    dir: PathBuf,
    operator_log: RateLimit,
    retry_log: RateLimit,
    full_log: RateLimit,
    write_err_log: RateLimit,
}

/// Shortest wait after a failed attempt; doubles up to `max_backoff`.
const BASE_BACKOFF: Duration = Duration::from_millis(500);

impl Uplink {
    pub fn new(
        writer: Writer,
        spool: SharedSpool,
        metrics: Arc<Metrics>,
        max_backoff: Duration,
        max_request_bytes: usize,
        dir: PathBuf,
    ) -> Uplink {
        Uplink {
            inner: Arc::new(Inner {
                writer,
                spool,
                metrics,
                max_backoff,
                max_request_bytes,
                dir,
                operator_log: RateLimit::new(Duration::from_secs(60)),
                retry_log: RateLimit::new(Duration::from_secs(30)),
                full_log: RateLimit::new(Duration::from_secs(60)),
                write_err_log: RateLimit::new(Duration::from_secs(60)),
            }),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Copies the spool's size into the metrics.
    pub fn publish_stats(&self) {
        let s = lock(&self.inner.spool).stats();
        let m = &self.inner.metrics;
        m.spool_bytes.store(s.bytes, Relaxed);
        m.spool_batches.store(s.batches, Relaxed);
        m.spool_points.store(s.points, Relaxed);
        m.spool_oldest_ts.store(s.oldest_ts.unwrap_or(0), Relaxed);
        // Corruption is counted by the spool (at open and when a read meets it).
        m.spool_corrupt_records
            .fetch_max(s.corrupt_records, Relaxed);
        let corrupt = crate::service::spool_drops::SpoolDrop::Corrupt;
        m.spool_dropped.raise_to(corrupt, s.corrupt_points);
    }

    pub fn log_spool_full(&self, batches: u64, points: u64) {
        if let Some(suppressed) = self.inner.full_log.check() {
            tracing::error!(
                batches,
                points,
                suppressed,
                "spool full: oldest batches dropped (data lost)"
            );
        }
    }

    /// A batch the spool could not write; it is kept in memory and retried.
    pub fn log_spool_write_error(&self, e: &crate::spool::SpoolError, points: u32) {
        if let Some(suppressed) = self.inner.write_err_log.check() {
            tracing::error!(error = %e, points, suppressed, "cannot write to spool; batch held in memory and retried");
        }
    }

    /// Runs until `stop`, then keeps sending for at most [`DRAIN_DEADLINE`] while there is
    /// something to send, leaving the rest in the spool for the next start.
    pub async fn run(self, wake: Arc<Notify>, stop: CancellationToken) {
        let mut failures: u32 = 0;
        let mut deadline: Option<Instant> = None;
        let mut single = false;
        let mut progress = Progress::new(&self.inner.metrics);
        loop {
            if deadline.is_none() && stop.is_cancelled() {
                deadline = Some(Instant::now() + DRAIN_DEADLINE);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                tracing::info!("drain deadline reached; the rest stays in the spool");
                return;
            }
            let batches = match self.peek(single).await {
                Some(b) if !b.is_empty() => b,
                _ => {
                    if deadline.is_some() {
                        return;
                    }
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = stop.cancelled() => {}
                        // The spool may have been filled while a notification was missed.
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                    continue;
                }
            };
            let wait = self.send(&batches, &mut single, &mut failures).await;
            progress.tick(&self.inner.metrics);
            if let Some(wait) = wait {
                let wait = match deadline {
                    Some(d) => wait.min(d.saturating_duration_since(Instant::now())),
                    None => wait,
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled(), if deadline.is_none() => {}
                }
            }
        }
    }

    async fn peek(&self, single: bool) -> Option<Vec<Batch>> {
        let spool = self.inner.spool.clone();
        let max = if single {
            1
        } else {
            self.inner.max_request_bytes
        };
        let res = tokio::task::spawn_blocking(move || lock(&spool).peek_many(max)).await;
        match res {
            Ok(Ok(b)) => Some(b),
            Ok(Err(e)) => {
                self.inner.metrics.spool_errors.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "cannot read spool");
                tokio::time::sleep(Duration::from_secs(1)).await;
                None
            }
            Err(_) => None,
        }
    }

    /// One attempt; returns how long to wait before the next, if at all.
    async fn send(
        &self,
        batches: &[Batch],
        single: &mut bool,
        failures: &mut u32,
    ) -> Option<Duration> {
        let inner = &self.inner;
        let m = &inner.metrics;
        let parts: Vec<&[u8]> = batches.iter().map(|b| b.payload.as_slice()).collect();
        let bytes: usize = parts.iter().map(|p| p.len()).sum();
        let points: u64 = batches.iter().map(|b| u64::from(b.points)).sum();
        let started = std::time::Instant::now();
        let outcome = inner.writer.write(&parts).await;
        m.stages.uplink_request.record(started.elapsed());
        if outcome != Outcome::Written {
            m.uplink_requests_failed.fetch_add(1, Relaxed);
            m.uplink_up.store(0, Relaxed);
        }
        let backoff = |failures: &mut u32| {
            *failures = failures.saturating_add(1);
            crate::sources::backoff::backoff(
                *failures - 1,
                BASE_BACKOFF,
                inner.max_backoff,
                fastrand::f64(),
            )
        };
        match outcome {
            Outcome::Written => {
                m.uplink_requests_ok.fetch_add(1, Relaxed);
                m.uplink_points_sent.fetch_add(points, Relaxed);
                m.uplink_bytes_sent.fetch_add(bytes as u64, Relaxed);
                m.uplink_up.store(1, Relaxed);
                m.store_accepted(crate::reading::now_ns());
                if *failures > 0 {
                    tracing::info!(
                        after_failures = *failures,
                        "store reachable again; replaying spool"
                    );
                }
                *failures = 0;
                *single = false;
                self.ack(batches).await;
                None
            }
            Outcome::Retry { after, reason } => {
                // max(backoff, Retry-After), capped so a silly header cannot stall us for hours.
                let wait = backoff(failures)
                    .max(after.unwrap_or_default())
                    .min(inner.max_backoff);
                if let Some(suppressed) = inner.retry_log.check() {
                    tracing::warn!(url = inner.writer.url(), %reason, retry_in = ?wait, suppressed, "store write failed; data kept in spool");
                }
                Some(wait)
            }
            Outcome::TooLarge | Outcome::BadData { .. } if batches.len() > 1 => {
                // Find the culprit: resend batch by batch.
                *single = true;
                None
            }
            Outcome::TooLarge => {
                self.dead_letter(&batches[0], "HTTP 413: batch too large for the store")
                    .await;
                None
            }
            Outcome::BadData { status, body } => {
                self.dead_letter(&batches[0], &format!("HTTP {status}: {body}"))
                    .await;
                None
            }
            Outcome::Operator { status, body } => {
                if let Some(suppressed) = inner.operator_log.check() {
                    tracing::error!(url = inner.writer.url(), status, %body, suppressed, "store refuses writes: check token/credentials, org, bucket or database; data kept in spool");
                }
                *failures = failures.saturating_add(1);
                Some(inner.max_backoff)
            }
        }
    }

    async fn ack(&self, batches: &[Batch]) {
        let Some(last) = batches.last().map(|b| b.id) else {
            return;
        };
        let spool = self.inner.spool.clone();
        match tokio::task::spawn_blocking(move || lock(&spool).ack(last)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.inner.metrics.spool_errors.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "cannot record delivery in spool; batches may be re-sent (harmless: same timestamps)");
            }
            Err(e) => tracing::error!(error = %e, "spool ack task failed"),
        }
        self.publish_stats();
    }

    async fn dead_letter(&self, batch: &Batch, reason: &str) {
        let m = &self.inner.metrics;
        m.dead_letter_points
            .fetch_add(u64::from(batch.points), Relaxed);
        tracing::error!(points = batch.points, %reason, "store rejected batch as bad data; moved to dead-letter file");
        let dir = self.inner.dir.clone();
        let (b, r) = (batch.clone(), reason.to_string());
        match tokio::task::spawn_blocking(move || dead_letter(&dir, &b, &r)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot write dead-letter file"),
            Err(e) => tracing::error!(error = %e, "dead-letter task failed"),
        }
        self.ack(std::slice::from_ref(batch)).await;
    }
}

/// Replay progress in the log: while a backlog of at least [`PROGRESS_MIN_POINTS`] drains,
/// one INFO line every [`PROGRESS_EVERY`] with points left and the send rate, and one when
/// it is gone.
struct Progress {
    since: Instant,
    sent: u64,
    reported: bool,
}

const PROGRESS_EVERY: Duration = Duration::from_secs(10);
const PROGRESS_MIN_POINTS: u64 = 10_000;

impl Progress {
    fn new(m: &Metrics) -> Progress {
        Progress {
            since: Instant::now(),
            sent: m.uplink_points_sent.load(Relaxed),
            reported: false,
        }
    }

    fn tick(&mut self, m: &Metrics) {
        let left = m.spool_points.load(Relaxed);
        if left == 0 && self.reported {
            tracing::info!("spool replay done");
            self.reported = false;
        }
        let elapsed = self.since.elapsed();
        if elapsed < PROGRESS_EVERY {
            return;
        }
        let sent = m.uplink_points_sent.load(Relaxed);
        if left >= PROGRESS_MIN_POINTS {
            let rate = (sent - self.sent) as f64 / elapsed.as_secs_f64();
            let eta_s = if rate > 0.0 {
                (left as f64 / rate).round()
            } else {
                f64::INFINITY
            };
            tracing::info!(
                points_left = left,
                rate_points_per_s = rate.round(),
                eta_s,
                "replaying spool"
            );
            self.reported = true;
        }
        self.since = Instant::now();
        self.sent = sent;
    }
}
