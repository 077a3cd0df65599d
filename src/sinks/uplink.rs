//! The uplink task: sends the spool's oldest batches to the store, oldest first, and
//! acknowledges them only after a 2xx (or after their refused points went to the
//! dead-letter file). The retry policy per answer is in [`classify`](super::influx::classify);
//! the waits, the splitting of refused requests ([`Plan`]) and the request size limit
//! (halved by each 413, see [`Uplink::shrink`]) are here.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::bisect::Plan;
use super::influx::{Outcome, Writer};
use super::SinkMetrics;
use super::{lock, DeadReason, SharedSpool, DRAIN_DEADLINE};
use crate::spool::{dead_letter, Batch};
use crate::telemetry::RateLimit;

/// Sends spooled batches; cheap to clone (shared state behind `Arc`).
#[derive(Clone)]
pub struct Uplink {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Writer,
    spool: SharedSpool,
    metrics: Arc<SinkMetrics>,
    max_backoff: Duration,
    /// Starts at the configured size; halved by a 413 (see [`Uplink::shrink`]).
    max_request_bytes: AtomicUsize,
    dir: PathBuf,
    operator_log: RateLimit,
    redirect_log: RateLimit,
    dead_log: RateLimit,
    retry_log: RateLimit,
    full_log: RateLimit,
    write_err_log: RateLimit,
}

/// Shortest wait after a failed attempt; doubles up to `max_backoff`.
const BASE_BACKOFF: Duration = Duration::from_millis(500);
/// Floor of the request size a 413 can shrink it to (also the smallest configurable).
pub const MIN_REQUEST_BYTES: usize = 4096;

impl Uplink {
    pub fn new(
        writer: Writer,
        spool: SharedSpool,
        metrics: Arc<SinkMetrics>,
        max_backoff: Duration,
        max_request_bytes: usize,
        dir: PathBuf,
    ) -> Uplink {
        let max_request_bytes = max_request_bytes.max(MIN_REQUEST_BYTES);
        (metrics.uplink.max_request_bytes).store(max_request_bytes as u64, Relaxed);
        Uplink {
            inner: Arc::new(Inner {
                writer,
                spool,
                metrics,
                max_backoff,
                max_request_bytes: AtomicUsize::new(max_request_bytes),
                dir,
                operator_log: RateLimit::new(Duration::from_secs(60)),
                redirect_log: RateLimit::new(Duration::from_secs(60)),
                dead_log: RateLimit::new(Duration::from_secs(10)),
                retry_log: RateLimit::new(Duration::from_secs(30)),
                full_log: RateLimit::new(Duration::from_secs(60)),
                write_err_log: RateLimit::new(Duration::from_secs(60)),
            }),
        }
    }

    pub fn metrics(&self) -> &SinkMetrics {
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
        let corrupt = super::spool_drops::SpoolDrop::Corrupt;
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
        let mut plan: Option<Plan> = None;
        let mut progress = Progress::new(&self.inner.metrics);
        loop {
            if deadline.is_none() && stop.is_cancelled() {
                deadline = Some(Instant::now() + DRAIN_DEADLINE);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                tracing::info!("drain deadline reached; the rest stays in the spool");
                return;
            }
            let p = match plan.as_mut() {
                Some(p) => p,
                None => match self.peek().await {
                    Some(b) if !b.is_empty() => plan.insert(Plan::new(b, self.max_bytes())),
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
                },
            };
            let wait = self.send(p, &mut failures).await;
            if let Some(id) = p.ackable() {
                self.ack(id).await;
            }
            // A request that failed as a whole is peeked again next time, so newer batches
            // join it and batches the full spool dropped meanwhile are not re-sent.
            if p.is_done() || (wait.is_some() && p.untouched()) {
                plan = None;
            }
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

    /// The request size limit in force (the configured one until a 413 halves it).
    fn max_bytes(&self) -> usize {
        self.inner.max_request_bytes.load(Relaxed)
    }

    async fn peek(&self) -> Option<Vec<Batch>> {
        let spool = self.inner.spool.clone();
        let max = self.max_bytes();
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

    /// Sends the plan's next request and moves the plan on; returns how long to wait before
    /// the next attempt, if at all.
    async fn send(&self, plan: &mut Plan, failures: &mut u32) -> Option<Duration> {
        let inner = &self.inner;
        let m = &inner.metrics;
        let started = std::time::Instant::now();
        let (outcome, points, bytes) = match plan.next() {
            Some(c) => (inner.writer.write(&c.parts).await, c.points, c.bytes),
            None => return None,
        };
        m.uplink_request.record(started.elapsed());
        if outcome != Outcome::Written {
            m.uplink_requests_failed.fetch_add(1, Relaxed);
            m.uplink_up.store(0, Relaxed);
        }
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
                plan.resolved();
                None
            }
            Outcome::BadData {
                status,
                body,
                dropped,
            } => {
                let why = format!("HTTP {status}: {body}");
                // The store says it refused every point: no need to look for the bad ones.
                if dropped == Some(points) && points > 1 {
                    self.dead_letter_all(plan, &why).await;
                } else {
                    self.refused(plan, DeadReason::BadData, &why).await;
                }
                None
            }
            Outcome::TooLarge => {
                // A lone point tells nothing about the limit; a bigger request does.
                if plan.single().is_none() {
                    self.shrink(bytes);
                    if plan.fit(self.max_bytes()) {
                        m.uplink.splits.fetch_add(1, Relaxed);
                        return None;
                    }
                }
                let why = "HTTP 413: point too large for the store";
                self.refused(plan, DeadReason::TooLarge, why).await;
                None
            }
            other => Some(self.wait_after(other, failures)),
        }
    }

    /// The wait after an answer that keeps the request as it is (retry or operator error).
    fn wait_after(&self, outcome: Outcome, failures: &mut u32) -> Duration {
        let inner = &self.inner;
        let url = inner.writer.url();
        *failures = failures.saturating_add(1);
        match outcome {
            Outcome::Retry { after, reason } => {
                let backoff = crate::backoff::backoff(
                    *failures - 1,
                    BASE_BACKOFF,
                    inner.max_backoff,
                    fastrand::f64(),
                );
                // max(backoff, Retry-After), capped so a silly header cannot stall us for hours.
                let wait = backoff
                    .max(after.unwrap_or_default())
                    .min(inner.max_backoff);
                if let Some(suppressed) = inner.retry_log.check() {
                    tracing::warn!(url, %reason, retry_in = ?wait, suppressed, "store write failed; data kept in spool");
                }
                wait
            }
            Outcome::Redirect { status, location } => {
                inner.metrics.uplink.redirects.fetch_add(1, Relaxed);
                if let Some(suppressed) = inner.redirect_log.check() {
                    tracing::error!(url, status, %location, suppressed, "store answered with a redirect that is not followed (only 307/308 are): check output.url, or a captive portal is in the way; data kept in spool");
                }
                inner.max_backoff
            }
            Outcome::Operator { status, body } => {
                if let Some(suppressed) = inner.operator_log.check() {
                    tracing::error!(url, status, %body, suppressed, "store refuses writes: check token/credentials, org, bucket or database; data kept in spool");
                }
                inner.max_backoff
            }
            Outcome::Written | Outcome::BadData { .. } | Outcome::TooLarge => BASE_BACKOFF,
        }
    }

    /// The store refused the plan's next request: split it, or dead-letter its one point.
    async fn refused(&self, plan: &mut Plan, reason: DeadReason, why: &str) {
        if plan.split() {
            self.inner.metrics.uplink.splits.fetch_add(1, Relaxed);
            return;
        }
        if let Some((id, line)) = plan.single() {
            let batch = Batch {
                id,
                points: 1,
                min_ts: 0,
                max_ts: 0,
                payload: line.to_vec(),
            };
            self.dead_letter(batch, reason, why).await;
        }
        plan.resolved();
    }

    /// Dead-letters every point of the plan's next request (the store refused them all).
    async fn dead_letter_all(&self, plan: &mut Plan, why: &str) {
        if let (Some(chunk), Some(id)) = (plan.next(), plan.first_batch_id()) {
            let batch = Batch {
                id,
                points: u32::try_from(chunk.points).unwrap_or(u32::MAX),
                min_ts: 0,
                max_ts: 0,
                payload: chunk.parts.concat(),
            };
            self.dead_letter(batch, DeadReason::BadData, why).await;
        }
        plan.resolved();
    }

    /// After a 413 to a request of `bytes` (two points or more): later requests stay below half
    /// of it (not below [`MIN_REQUEST_BYTES`]) for the rest of the run. A body limit is a fixed setting of the
    /// store or a proxy, so probing upwards again would only earn more 413s.
    fn shrink(&self, bytes: usize) {
        let cur = self.max_bytes();
        let new = (bytes / 2).max(MIN_REQUEST_BYTES);
        if new < cur {
            self.inner.max_request_bytes.store(new, Relaxed);
            let m = &self.inner.metrics.uplink;
            m.max_request_bytes.store(new as u64, Relaxed);
            tracing::warn!(url = self.inner.writer.url(), refused_bytes = bytes, max_request_bytes = new, "store refused a request as too large (HTTP 413); requests are now at most this size until restart (set output.max_request_bytes to match the store's limit)");
        }
    }

    async fn ack(&self, last: u64) {
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

    /// Moves points the store refused to the dead-letter file; counted by reason, logged
    /// rate-limited (a schema conflict can refuse thousands of points in a row).
    async fn dead_letter(&self, batch: Batch, reason: DeadReason, why: &str) {
        let inner = &self.inner;
        inner
            .metrics
            .uplink
            .dead_lettered(reason, u64::from(batch.points));
        if let Some(suppressed) = inner.dead_log.check() {
            tracing::error!(reason = reason.label(), points = batch.points, store_says = %why, suppressed, "store refused points; moved to dead-letter file (data lost for the store)");
        }
        let dir = inner.dir.clone();
        let why = why.to_string();
        match tokio::task::spawn_blocking(move || dead_letter(&dir, &batch, &why)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot write dead-letter file"),
            Err(e) => tracing::error!(error = %e, "dead-letter task failed"),
        }
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
    fn new(m: &SinkMetrics) -> Progress {
        Progress {
            since: Instant::now(),
            sent: m.uplink_points_sent.load(Relaxed),
            reported: false,
        }
    }

    fn tick(&mut self, m: &SinkMetrics) {
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
