//! Every observable event of the spool writer and the uplink, each one method that updates
//! its counters and writes its log line (rate-limited where a burst is possible), so a count
//! and its log line cannot drift apart. The call sites in `sinks/mod.rs` and `uplink.rs` only
//! say what happened. Metric names are in `metrics.rs`, `uplink_metrics.rs` and
//! `spool_drops.rs`; this file owns when they move and what the log says.

use std::fmt::Display;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::connect::TlsFailure;
use super::spool_drops::SpoolDrop;
use super::uplink_metrics::DeadReason;
use super::SinkMetrics;
use crate::spool::{OutputStats, Recovery, SpoolError, SpoolStats};
use crate::telemetry::RateLimit;

/// The sink's counters plus the rate limits of its log lines; shared by the spool writer
/// and the uplink.
#[derive(Debug)]
pub struct SinkEvents {
    metrics: Arc<SinkMetrics>,
    operator_log: RateLimit,
    tls_log: RateLimit,
    redirect_log: RateLimit,
    dead_log: RateLimit,
    retry_log: RateLimit,
    full_log: RateLimit,
    write_err_log: RateLimit,
    held_overflow_log: RateLimit,
}

const MINUTE: Duration = Duration::from_secs(60);

impl SinkEvents {
    pub fn new(metrics: Arc<SinkMetrics>) -> SinkEvents {
        SinkEvents {
            metrics,
            operator_log: RateLimit::new(MINUTE),
            tls_log: RateLimit::new(MINUTE),
            redirect_log: RateLimit::new(MINUTE),
            dead_log: RateLimit::new(Duration::from_secs(10)),
            retry_log: RateLimit::new(Duration::from_secs(30)),
            full_log: RateLimit::new(MINUTE),
            write_err_log: RateLimit::new(MINUTE),
            held_overflow_log: RateLimit::new(MINUTE),
        }
    }

    /// The counters, for reading (tests, the replay progress).
    pub fn metrics(&self) -> &SinkMetrics {
        &self.metrics
    }

    // ---- spool writer ----

    /// The spool was opened: what recovery found, repaired or dropped (the bound may have
    /// shrunk since). Corruption is counted from the spool's own total by [`Self::spool_stats`].
    pub fn spool_opened(&self, dir: &Path, recovery: &Recovery) {
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
                records = recovery.corrupt_records,
                points = recovery.corrupt_points,
                "corrupt spool records skipped (data lost)"
            );
        }
        if recovery.torn_tail_bytes > 0 {
            tracing::info!(
                bytes = recovery.torn_tail_bytes,
                "torn spool tail truncated: one record cut short by a crash, never reported durable"
            );
        }
        if recovery.dropped_points > 0 || recovery.dropped_batches > 0 {
            tracing::error!(
                batches = recovery.dropped_batches,
                points = recovery.dropped_points,
                "spool over max_bytes at open: oldest batches dropped (data lost)"
            );
        }
        let m = &self.metrics;
        m.spool_dropped
            .add(SpoolDrop::Full, recovery.dropped_points);
        if recovery.ack_reset {
            tracing::warn!("spool ack file unreadable: every batch on disk will be sent again (harmless: same timestamps overwrite)");
        }
    }

    /// The spool's size and the corruption it met since open (it counts that itself, at open
    /// and when a read meets it, and logs it there).
    pub fn spool_stats(&self, s: &SpoolStats) {
        let m = &self.metrics;
        m.spool_bytes.store(s.bytes, Relaxed);
        m.spool_batches.store(s.batches, Relaxed);
        m.spool_points.store(s.points, Relaxed);
        m.spool_oldest_ts.store(s.oldest_ts.unwrap_or(0), Relaxed);
        m.spool_corrupt_records
            .fetch_max(s.corrupt_records, Relaxed);
        m.spool_dropped
            .raise_to(SpoolDrop::Corrupt, s.corrupt_points);
    }

    /// This output's backlog and what the size bound dropped before it had them (the spool
    /// counts since open; the counter never goes down).
    pub fn output_stats(&self, o: &OutputStats) {
        let m = &self.metrics;
        m.output_backlog_points.store(o.points, Relaxed);
        m.output_oldest_ts.store(o.oldest_ts.unwrap_or(0), Relaxed);
        m.output_dropped_points.fetch_max(o.dropped_points, Relaxed);
    }

    /// One spool append (write + fsync) finished, whatever its result.
    pub fn spool_append_took(&self, took: Duration) {
        self.metrics.spool_append.record(took);
    }

    /// One batch is durable. Its window span is logged so that a test (or an operator at
    /// debug level) can tell which windows were acknowledged before a crash or power cut.
    pub fn batch_spooled(&self, id: u64, points: u32, min_ts: i64, max_ts: i64) {
        tracing::debug!(id, points, min_ts, max_ts, "batch spooled");
    }

    /// The spool reached `max_bytes` and dropped its oldest batches to take a new one.
    pub fn spool_full(&self, batches: u64, points: u64) {
        self.metrics.spool_dropped.add(SpoolDrop::Full, points);
        if let Some(suppressed) = self.full_log.check() {
            tracing::error!(
                batches,
                points,
                suppressed,
                "spool full: oldest batches dropped (data lost)"
            );
        }
    }

    /// A batch larger than the whole spool: lost.
    pub fn batch_too_large(&self, e: &SpoolError, points: u32) {
        let m = &self.metrics;
        m.spool_errors.fetch_add(1, Relaxed);
        m.spool_dropped.add(SpoolDrop::TooLarge, u64::from(points));
        tracing::error!(error = %e, points, "cannot write to spool: batch lost");
    }

    /// A batch the spool could not write; it is kept in memory and retried.
    pub fn spool_write_error(&self, e: &SpoolError, points: u32) {
        self.metrics.spool_errors.fetch_add(1, Relaxed);
        if let Some(suppressed) = self.write_err_log.check() {
            tracing::error!(error = %e, points, suppressed, "cannot write to spool; batch held in memory and retried");
        }
    }

    /// The spool writer task failed (a bug): the batch in flight is lost.
    pub fn spool_writer_failed(&self, e: &dyn Display, points: u32) {
        let m = &self.metrics;
        m.spool_errors.fetch_add(1, Relaxed);
        let points = u64::from(points);
        m.spool_dropped.add(SpoolDrop::WriterFailed, points);
        tracing::error!(error = %e, points, "spool writer task failed: batch lost");
    }

    /// Points held in memory because the spool refuses writes.
    pub fn held_points(&self, points: u64) {
        self.metrics.spool_held_points.store(points, Relaxed);
    }

    /// Batches the in-memory queue dropped to stay bounded while the disk refuses writes.
    pub fn held_overflow(&self, batches: u64, points: u64) {
        if batches == 0 {
            return;
        }
        self.metrics
            .spool_dropped
            .add(SpoolDrop::HeldOverflow, points);
        if let Some(suppressed) = self.held_overflow_log.check() {
            tracing::error!(
                batches,
                points,
                suppressed,
                "spool refuses writes and the in-memory queue is full: oldest held batches dropped (data lost)"
            );
        }
    }

    /// At stop, batches still held in memory after `waited`: lost.
    pub fn unwritten_at_stop(&self, batches: usize, points: u64, waited: Duration) {
        let m = &self.metrics;
        m.spool_dropped.add(SpoolDrop::UnwrittenAtStop, points);
        m.spool_held_points.store(0, Relaxed);
        tracing::error!(
            batches,
            points,
            ?waited,
            "spool still refuses writes at stop: batches held in memory are lost"
        );
    }

    pub fn uplink_stop_timed_out(&self) {
        tracing::warn!("uplink did not finish within the drain deadline");
    }

    // ---- uplink ----

    pub fn drain_deadline_reached(&self) {
        tracing::info!("drain deadline reached; the rest stays in the spool");
    }

    pub fn spool_read_failed(&self, e: &SpoolError) {
        self.metrics.spool_errors.fetch_add(1, Relaxed);
        tracing::error!(error = %e, "cannot read spool");
    }

    pub fn ack_failed(&self, e: &SpoolError) {
        self.metrics.spool_errors.fetch_add(1, Relaxed);
        tracing::error!(error = %e, "cannot record delivery in spool; batches may be re-sent (harmless: same timestamps)");
    }

    pub fn ack_task_failed(&self, e: &dyn Display) {
        tracing::error!(error = %e, "spool ack task failed");
    }

    /// The request size limit in force (the configured one at start).
    pub fn request_limit(&self, bytes: usize) {
        (self.metrics.uplink.max_request_bytes).store(bytes as u64, Relaxed);
    }

    /// The store accepted a request of `points` and `bytes` after `took`; `after_failures`
    /// failed attempts came before it.
    pub fn request_ok(&self, took: Duration, points: u64, bytes: usize, after_failures: u32) {
        let m = &self.metrics;
        m.uplink_request.record(took);
        m.uplink_requests_ok.fetch_add(1, Relaxed);
        m.uplink_points_sent.fetch_add(points, Relaxed);
        m.uplink_bytes_sent.fetch_add(bytes as u64, Relaxed);
        m.uplink_up.store(1, Relaxed);
        let now = crate::reading::now_ns();
        m.uplink_last_ok_s
            .store(now / crate::reading::NANOS_PER_SEC, Relaxed);
        m.store_accepted(now);
        if after_failures > 0 {
            tracing::info!(after_failures, "store reachable again; replaying spool");
        }
    }

    /// A request that did not end in a 2xx (how it goes on is a separate event).
    pub fn request_failed(&self, took: Duration) {
        let m = &self.metrics;
        m.uplink_request.record(took);
        m.uplink_requests_failed.fetch_add(1, Relaxed);
        m.uplink_up.store(0, Relaxed);
        let now_s = crate::reading::now_ns() / crate::reading::NANOS_PER_SEC;
        m.uplink_last_error_s.store(now_s, Relaxed);
    }

    /// A failed request (5xx, 429, timeout, connection) is retried after `wait`.
    pub fn retry(&self, url: &str, reason: &str, wait: Duration) {
        if let Some(suppressed) = self.retry_log.check() {
            tracing::warn!(url, %reason, retry_in = ?wait, suppressed, "store write failed; data kept in spool");
        }
    }

    /// A 3xx that is not followed (anything but 307/308).
    pub fn redirect_ignored(&self, url: &str, status: u16, location: &str) {
        self.metrics.uplink.redirects.fetch_add(1, Relaxed);
        if let Some(suppressed) = self.redirect_log.check() {
            tracing::error!(url, status, %location, suppressed, "store answered with a redirect that is not followed (only 307/308 are): check output.url, or a captive portal is in the way; data kept in spool");
        }
    }

    /// 401/403/404 and the like: the operator has to fix the config.
    pub fn operator_error(&self, url: &str, status: u16, body: &str) {
        if let Some(suppressed) = self.operator_log.check() {
            tracing::error!(url, status, %body, suppressed, "store refuses writes: check token/credentials, org, bucket or database; data kept in spool");
        }
    }

    /// The store's TLS front refused the connection (untrusted certificate, client
    /// certificate missing or refused): the operator has to fix the config or the store.
    pub fn tls_refused(&self, url: &str, failure: TlsFailure, detail: &str) {
        self.metrics.uplink.tls_failed(failure);
        if let Some(suppressed) = self.tls_log.check() {
            tracing::error!(url, reason = failure.label(), %detail, suppressed, "{}", failure.advice());
        }
    }

    /// A refused request was split in two (to isolate bad points, or to fit a 413).
    pub fn split(&self) {
        self.metrics.uplink.splits.fetch_add(1, Relaxed);
    }

    /// A 413 to a request of `refused_bytes` lowered the request size limit to `limit`.
    pub fn request_limit_shrunk(&self, url: &str, refused_bytes: usize, limit: usize) {
        self.request_limit(limit);
        tracing::warn!(url, refused_bytes, max_request_bytes = limit, "store refused a request as too large (HTTP 413); requests are now at most this size until restart (set output.max_request_bytes to match the store's limit)");
    }

    /// Points the store refused went to the dead-letter file; rate-limited (a schema
    /// conflict can refuse thousands of points in a row).
    pub fn dead_lettered(&self, reason: DeadReason, points: u32, why: &str) {
        (self.metrics.uplink).dead_lettered(reason, u64::from(points));
        if let Some(suppressed) = self.dead_log.check() {
            tracing::error!(reason = reason.label(), points, store_says = %why, suppressed, "store refused points; moved to dead-letter file (data lost for the store)");
        }
    }

    pub fn dead_letter_write_failed(&self, e: &dyn Display) {
        tracing::error!(error = %e, "cannot write dead-letter file");
    }

    pub fn dead_letter_task_failed(&self, e: &dyn Display) {
        tracing::error!(error = %e, "dead-letter task failed");
    }
}

/// Replay progress in the log: while a backlog of at least [`PROGRESS_MIN_POINTS`] drains,
/// one INFO line every [`PROGRESS_EVERY`] with points left and the send rate, and one when
/// it is gone.
pub struct Progress {
    since: Instant,
    sent: u64,
    reported: bool,
}

const PROGRESS_EVERY: Duration = Duration::from_secs(10);
const PROGRESS_MIN_POINTS: u64 = 10_000;

impl Progress {
    pub fn new(ev: &SinkEvents) -> Progress {
        Progress {
            since: Instant::now(),
            sent: ev.metrics.uplink_points_sent.load(Relaxed),
            reported: false,
        }
    }

    /// Called after every request: logs when a report is due.
    pub fn tick(&mut self, ev: &SinkEvents) {
        let m = &ev.metrics;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Runs `f` with a subscriber that writes into a buffer; returns what was logged.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap_or_else(|e| e.into_inner()).extend(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .finish();
        tracing::subscriber::with_default(sub, f);
        let b = buf.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&b).into_owned()
    }

    fn events() -> SinkEvents {
        SinkEvents::new(Arc::new(SinkMetrics::default()))
    }

    #[test]
    fn every_spool_full_counts_but_logs_rate_limited() {
        let ev = events();
        let log = logged(|| {
            ev.spool_full(1, 10);
            ev.spool_full(2, 20);
        });
        assert_eq!(ev.metrics().spool_dropped.get(SpoolDrop::Full), 30);
        assert_eq!(log.matches("spool full: oldest batches dropped").count(), 1);
        assert!(log.contains("ERROR"), "{log}");
    }

    #[test]
    fn request_events_count_and_log_together() {
        let ev = events();
        let log = logged(|| {
            ev.request_failed(Duration::from_millis(5));
            ev.retry("http://store", "HTTP 503", Duration::from_secs(1));
            ev.request_ok(Duration::from_millis(5), 7, 100, 1);
        });
        let m = ev.metrics();
        let ok = m.uplink_requests_ok.load(Relaxed);
        let failed = m.uplink_requests_failed.load(Relaxed);
        assert_eq!((ok, failed, m.uplink_points_sent.load(Relaxed)), (1, 1, 7));
        assert_eq!(m.uplink_up.load(Relaxed), 1);
        assert!(log.contains("WARN") && log.contains("store write failed; data kept in spool"));
        assert!(log.contains("store reachable again; replaying spool after_failures=1"));
    }

    #[test]
    fn dead_letter_and_redirect_count_by_kind() {
        let ev = events();
        let log = logged(|| {
            ev.dead_lettered(DeadReason::TooLarge, 3, "HTTP 413");
            ev.redirect_ignored("http://store", 302, "http://portal");
            ev.held_overflow(0, 0);
        });
        let m = ev.metrics();
        assert_eq!(m.uplink.dead_letter_points(DeadReason::TooLarge), 3);
        assert_eq!(m.uplink.redirects.load(Relaxed), 1);
        assert_eq!(m.spool_dropped.total(), 0);
        assert!(log.contains("reason=\"too_large\""), "{log}");
        assert!(log.contains("redirect that is not followed"), "{log}");
        assert!(!log.contains("in-memory queue is full"), "{log}");
    }
}
