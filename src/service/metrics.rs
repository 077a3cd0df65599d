//! Every observable event, counted and (where it matters) logged, in one place.
//!
//! Counters are plain atomics so the hot path pays one relaxed add. Bad input is logged at
//! most once per [`LOG_INTERVAL`] per kind, with the number suppressed since, so a flood of
//! broken payloads cannot flood the journal. Rendered as Prometheus text by [`Metrics::render`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod rejects;
pub use rejects::{Reject, Rejects};

/// Shortest gap between two log lines about the same kind of bad input.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Logs at most once per interval; counts what it held back.
#[derive(Debug)]
pub struct RateLimit {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
    interval: Duration,
}

impl RateLimit {
    pub const fn new(interval: Duration) -> Self {
        RateLimit {
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
            interval,
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were suppressed before it.
    pub fn check(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(t) if now.duration_since(t) < self.interval => {
                self.suppressed.fetch_add(1, Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.suppressed.swap(0, Relaxed))
            }
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::new(LOG_INTERVAL)
    }
}

/// Counters of one source (an MQTT broker, a serial port, the simulator).
#[derive(Debug, Default)]
pub struct SourceMetrics {
    pub name: String,
    pub kind: &'static str,
    pub messages: AtomicU64,
    pub readings: AtomicU64,
    pub bad_input: AtomicU64,
    pub connected: AtomicI64,
    pub reconnects: AtomicU64,
    /// Payloads skipped on purpose (TTN console-simulated uplinks).
    pub skipped: AtomicU64,
    bad_input_log: RateLimit,
    /// Serial: readings discarded while the sensor warmed up after its port (re)opened.
    pub warmup_discarded: AtomicU64,
    /// Serial: readings outside the sensor profile's valid range.
    pub out_of_range: AtomicU64,
    out_of_range_log: RateLimit,
    /// Too-large messages, unusable keys, series-limit drops: see `rejects.rs`.
    pub rejects: Rejects,
}

impl SourceMetrics {
    /// A payload or frame that could not be used: counted, logged rate-limited.
    pub fn bad_input(&self, origin: &str, error: &dyn std::fmt::Display) {
        self.bad_input.fetch_add(1, Relaxed);
        if let Some(suppressed) = self.bad_input_log.check() {
            tracing::warn!(source = %self.name, origin, %error, suppressed, "bad input skipped");
        }
    }

    /// A reading outside its profile's valid range: counted, logged rate-limited.
    pub fn out_of_range(&self, quantity: &str, value: f64) {
        self.out_of_range.fetch_add(1, Relaxed);
        if let Some(suppressed) = self.out_of_range_log.check() {
            tracing::warn!(source = %self.name, quantity, value, suppressed, "reading outside the valid range dropped");
        }
    }

    pub fn set_connected(&self, up: bool) {
        self.connected.store(i64::from(up), Relaxed);
    }
}

/// Why a reading was not aggregated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its window had closed (event time older than window end + grace).
    Late,
    /// Event time too far in the future.
    Future,
    /// NaN or infinite.
    NonFinite,
    /// More series than `aggregation.max_series`.
    SeriesLimit,
}

impl DropReason {
    const ALL: [DropReason; 4] = [
        DropReason::Late,
        DropReason::Future,
        DropReason::NonFinite,
        DropReason::SeriesLimit,
    ];

    fn label(self) -> &'static str {
        match self {
            DropReason::Late => "late",
            DropReason::Future => "future",
            DropReason::NonFinite => "non_finite",
            DropReason::SeriesLimit => "series_limit",
        }
    }
}

/// The daemon's metrics registry.
#[derive(Debug, Default)]
pub struct Metrics {
    sources: Mutex<Vec<Arc<SourceMetrics>>>,
    pub readings_aggregated: AtomicU64,
    dropped: [AtomicU64; 4],
    drop_log: RateLimit,
    pub series: AtomicU64,
    pub windows_closed: AtomicU64,
    pub points_emitted: AtomicU64,
    pub approximate_percentiles: AtomicU64,
    pub encode_errors: AtomicU64,
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
    pub spool_dropped: super::spool_drops::SpoolDrops,
    pub spool_corrupt_records: AtomicU64,
    /// Points held in memory because the spool refuses writes (full disk, I/O error).
    pub spool_held_points: AtomicU64,
    pub spool_errors: AtomicU64,
    /// Last time the aggregator loop went round (unix seconds): the health check's heartbeat.
    pub aggregator_heartbeat: AtomicI64,
    /// Privacy path counters (identifiers hashed, windows suppressed); counts only.
    pub privacy: crate::privacy::PrivacyMetrics,
    /// Sensor health gauges of the last window close.
    pub health: crate::health::HealthMetrics,
    /// Clock sync, steps, held readings, late corrections.
    pub clock: crate::clock::ClockMetrics,
    /// Counter resets/wraps and humidity-correction events (`crate::domain`).
    pub domain: crate::domain::DomainMetrics,
    /// Dead-letter points by reason, splits, redirects, request size limit.
    pub uplink: crate::sinks::UplinkMetrics,
    /// Window close -> store accepted: see [`Metrics::window_closed`].
    pub store_latency: StoreLatency,
    /// What that latency is made of, step by step.
    pub stages: Stages,
}

/// Duration of each step a close goes through on its way to the store: the aggregator's
/// close (statistics, derived fields, encoding), the spool append (write + fdatasync) and
/// the uplink's request (gzip, HTTP, the store's answer). Together with the store latency
/// they tell an operator whether the gateway or the store is slow.
#[derive(Debug, Default)]
pub struct Stages {
    pub close: StageTime,
    pub spool_append: StageTime,
    pub uplink_request: StageTime,
}

/// The last and the largest duration of one step, in microseconds.
#[derive(Debug, Default)]
pub struct StageTime {
    pub last_us: AtomicI64,
    pub max_us: AtomicI64,
}

impl StageTime {
    pub fn record(&self, took: std::time::Duration) {
        let us = i64::try_from(took.as_micros()).unwrap_or(i64::MAX);
        self.last_us.store(us, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
    }

    /// The last (or the largest) duration in seconds, as exposed.
    fn seconds(&self, max: bool) -> String {
        let us = if max { &self.max_us } else { &self.last_us };
        format!("{:.6}", us.load(Relaxed) as f64 / 1e6)
    }
}

impl Stages {
    fn render(&self, out: &mut String) {
        let steps = [
            ("close", &self.close),
            ("spool_append", &self.spool_append),
            ("uplink_request", &self.uplink_request),
        ];
        for (name, help, max) in [
            (
                "citysense_stage_duration_seconds",
                "Duration of a step from window close to store, last seen.",
                false,
            ),
            (
                "citysense_stage_duration_max_seconds",
                "Duration of a step from window close to store, largest seen.",
                true,
            ),
        ] {
            header(out, name, "gauge", help);
            for (stage, t) in steps {
                let _ = writeln!(out, "{name}{{stage=\"{stage}\"}} {}", t.seconds(max));
            }
        }
    }
}

/// Time from a tick closing windows to the store's next 2xx (which carries them when the
/// uplink is idle): the last one and the largest, in microseconds.
#[derive(Debug, Default)]
pub struct StoreLatency {
    /// When the last close not yet followed by a 2xx happened (ns since the epoch; 0 = none).
    pending_close_ns: AtomicI64,
    pub took: StageTime,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// Registers a source and returns its counters.
    pub fn source(&self, kind: &'static str, name: &str) -> Arc<SourceMetrics> {
        let m = Arc::new(SourceMetrics {
            name: name.to_string(),
            kind,
            ..Default::default()
        });
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(m.clone());
        m
    }

    pub fn dropped(&self, reason: DropReason) {
        self.dropped[reason as usize].fetch_add(1, Relaxed);
        if let Some(suppressed) = self.drop_log.check() {
            tracing::warn!(reason = reason.label(), suppressed, "reading dropped");
        }
    }

    pub fn dropped_count(&self, reason: DropReason) -> u64 {
        let own = self.dropped[reason as usize].load(Relaxed);
        if reason != DropReason::SeriesLimit {
            return own;
        }
        // Sources that meet the limit when they resolve a series count it themselves.
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        own + sources.iter().map(|s| s.series_limit_count()).sum::<u64>()
    }

    /// Every registered source's counters.
    pub fn source_list(&self) -> Vec<Arc<SourceMetrics>> {
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sum of bad input over all sources.
    pub fn bad_input_total(&self) -> u64 {
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.iter().map(|s| s.bad_input.load(Relaxed)).sum()
    }

    /// Number of sources currently connected (MQTT brokers with a live session).
    pub fn sources_connected(&self) -> usize {
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources
            .iter()
            .filter(|s| s.connected.load(Relaxed) == 1)
            .count()
    }

    /// The aggregator closed windows at `now` (a tick, not the shutdown flush).
    pub fn window_closed(&self, now: i64) {
        let _ = self
            .store_latency
            .pending_close_ns
            .compare_exchange(0, now, Relaxed, Relaxed);
    }

    /// The store accepted a write at `now`: completes a pending close's latency.
    pub fn store_accepted(&self, now: i64) {
        let closed = self.store_latency.pending_close_ns.swap(0, Relaxed);
        if closed > 0 {
            let ns = u64::try_from(now - closed).unwrap_or(0);
            (self.store_latency.took).record(std::time::Duration::from_nanos(ns));
        }
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let sources = self
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let per_source: [MetricDef<SourceGetter>; 6] = [
            (
                "citysense_source_messages_total",
                "counter",
                "Messages or frames received.",
                |s| s.messages.load(Relaxed) as i64,
            ),
            (
                "citysense_source_readings_total",
                "counter",
                "Readings handed to the aggregator.",
                |s| s.readings.load(Relaxed) as i64,
            ),
            (
                "citysense_source_bad_input_total",
                "counter",
                "Payloads or frames skipped as malformed.",
                |s| s.bad_input.load(Relaxed) as i64,
            ),
            (
                "citysense_source_up",
                "gauge",
                "1 while the source is connected.",
                |s| s.connected.load(Relaxed),
            ),
            (
                "citysense_source_reconnects_total",
                "counter",
                "Reconnect attempts.",
                |s| s.reconnects.load(Relaxed) as i64,
            ),
            (
                "citysense_source_skipped_total",
                "counter",
                "Payloads skipped on purpose (e.g. TTN simulated uplinks).",
                |s| s.skipped.load(Relaxed) as i64,
            ),
        ];
        for (name, kind, help, get) in per_source {
            header(&mut out, name, kind, help);
            for s in &sources {
                let _ = writeln!(
                    out,
                    "{name}{{kind=\"{}\",source=\"{}\"}} {}",
                    s.kind,
                    escape_label(&s.name),
                    get(s)
                );
            }
        }
        header(
            &mut out,
            "citysense_source_readings_discarded_total",
            "counter",
            "Readings a source discarded, by reason (sensor warm-up, outside the valid range).",
        );
        for s in &sources {
            for (reason, n) in [
                ("warmup", &s.warmup_discarded),
                ("out_of_range", &s.out_of_range),
            ] {
                let _ = writeln!(
                    out,
                    "citysense_source_readings_discarded_total{{kind=\"{}\",source=\"{}\",reason=\"{reason}\"}} {}",
                    s.kind,
                    escape_label(&s.name),
                    n.load(Relaxed)
                );
            }
        }
        rejects::render(&mut out, &sources);
        header(
            &mut out,
            "citysense_readings_dropped_total",
            "counter",
            "Readings not aggregated, by reason.",
        );
        for r in DropReason::ALL {
            let _ = writeln!(
                out,
                "citysense_readings_dropped_total{{reason=\"{}\"}} {}",
                r.label(),
                self.dropped_count(r)
            );
        }
        let scalars: [MetricDef<i64>; 19] = [
            (
                "citysense_readings_aggregated_total",
                "counter",
                "Readings added to windows.",
                self.readings_aggregated.load(Relaxed) as i64,
            ),
            (
                "citysense_series",
                "gauge",
                "Series known to the aggregator.",
                self.series.load(Relaxed) as i64,
            ),
            (
                "citysense_windows_closed_total",
                "counter",
                "Series windows closed.",
                self.windows_closed.load(Relaxed) as i64,
            ),
            (
                "citysense_points_emitted_total",
                "counter",
                "Line-protocol points produced.",
                self.points_emitted.load(Relaxed) as i64,
            ),
            (
                "citysense_percentiles_approximate_total",
                "counter",
                "Windows whose percentiles came from the sketch.",
                self.approximate_percentiles.load(Relaxed) as i64,
            ),
            (
                "citysense_encode_errors_total",
                "counter",
                "Points that could not be encoded.",
                self.encode_errors.load(Relaxed) as i64,
            ),
            (
                "citysense_uplink_requests_ok_total",
                "counter",
                "Write requests the store accepted.",
                self.uplink_requests_ok.load(Relaxed) as i64,
            ),
            (
                "citysense_uplink_requests_failed_total",
                "counter",
                "Write requests that failed.",
                self.uplink_requests_failed.load(Relaxed) as i64,
            ),
            (
                "citysense_uplink_points_sent_total",
                "counter",
                "Points the store accepted.",
                self.uplink_points_sent.load(Relaxed) as i64,
            ),
            (
                "citysense_uplink_bytes_sent_total",
                "counter",
                "Line-protocol bytes the store accepted (before gzip).",
                self.uplink_bytes_sent.load(Relaxed) as i64,
            ),
            (
                "citysense_uplink_up",
                "gauge",
                "1 while the last write succeeded.",
                self.uplink_up.load(Relaxed),
            ),
            (
                "citysense_spool_bytes",
                "gauge",
                "Bytes waiting in the spool.",
                self.spool_bytes.load(Relaxed) as i64,
            ),
            (
                "citysense_spool_batches",
                "gauge",
                "Batches waiting in the spool.",
                self.spool_batches.load(Relaxed) as i64,
            ),
            (
                "citysense_spool_points",
                "gauge",
                "Points waiting in the spool.",
                self.spool_points.load(Relaxed) as i64,
            ),
            (
                "citysense_spool_oldest_timestamp_seconds",
                "gauge",
                "Window start of the oldest spooled point (0 = empty).",
                self.spool_oldest_ts.load(Relaxed) / 1_000_000_000,
            ),
            (
                "citysense_spool_held_points",
                "gauge",
                "Points held in memory because the spool refuses writes (e.g. disk full).",
                self.spool_held_points.load(Relaxed) as i64,
            ),
            (
                "citysense_spool_corrupt_records_total",
                "counter",
                "Unacknowledged spool records lost to corruption (at open or when read).",
                self.spool_corrupt_records.load(Relaxed) as i64,
            ),
            (
                "citysense_spool_errors_total",
                "counter",
                "Spool I/O errors.",
                self.spool_errors.load(Relaxed) as i64,
            ),
            (
                "citysense_aggregator_heartbeat_seconds",
                "gauge",
                "Last aggregator loop time (unix seconds).",
                self.aggregator_heartbeat.load(Relaxed),
            ),
        ];
        for (name, kind, help, v) in scalars {
            scalar(&mut out, name, kind, help, v);
        }
        self.spool_dropped.render(&mut out);
        self.privacy.render(&mut out);
        self.health.render(&mut out);
        self.clock.render(&mut out);
        self.domain.render(&mut out);
        self.uplink.render(&mut out);
        // How far behind the store is: derived at scrape time from the oldest spooled window.
        let oldest = self.spool_oldest_ts.load(Relaxed);
        let age = match oldest {
            0 => 0,
            t => (crate::reading::now_ns() - t).max(0) / 1_000_000_000,
        };
        scalar(
            &mut out,
            "citysense_spool_oldest_age_seconds",
            "gauge",
            "Age of the oldest spooled window (0 = empty).",
            age,
        );
        for (name, help, max) in [
            (
                "citysense_window_store_latency_seconds",
                "Window close (tick) to the store's next 2xx, last seen.",
                false,
            ),
            (
                "citysense_window_store_latency_max_seconds",
                "Window close (tick) to the store's next 2xx, largest seen.",
                true,
            ),
        ] {
            let seconds = self.store_latency.took.seconds(max);
            scalar(&mut out, name, "gauge", help, seconds);
        }
        self.stages.render(&mut out);
        out
    }
}

/// (name, type, help, value or getter)
type SourceGetter = fn(&SourceMetrics) -> i64;
type MetricDef<V> = (&'static str, &'static str, &'static str, V);

/// `# HELP` and `# TYPE` lines of metric `name`; the samples follow.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A metric with one unlabelled sample: header and value.
pub fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_counts_suppressed() {
        let rl = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(rl.check(), Some(0));
        assert_eq!(rl.check(), None);
        assert_eq!(rl.check(), None);
        let rl0 = RateLimit::new(Duration::ZERO);
        assert_eq!(rl0.check(), Some(0));
        assert_eq!(rl0.check(), Some(0));
    }

    #[test]
    fn store_latency_counts_from_the_first_close_to_the_next_accept() {
        let m = Metrics::new();
        m.store_accepted(1_000_000); // no close pending: nothing to measure
        assert_eq!(m.store_latency.took.last_us.load(Relaxed), 0);
        m.window_closed(10_000_000);
        m.window_closed(12_000_000); // a later close does not restart the clock
        m.store_accepted(17_000_000);
        m.store_accepted(90_000_000); // already reported
        assert_eq!(m.store_latency.took.last_us.load(Relaxed), 7_000);
        m.window_closed(100_000_000);
        m.store_accepted(102_000_000);
        assert_eq!(m.store_latency.took.last_us.load(Relaxed), 2_000);
        assert_eq!(m.store_latency.took.max_us.load(Relaxed), 7_000);
        assert!(m
            .render()
            .contains("citysense_window_store_latency_max_seconds 0.007000"));
        m.stages
            .spool_append
            .record(std::time::Duration::from_micros(2500));
        m.stages
            .spool_append
            .record(std::time::Duration::from_micros(1200));
        let text = m.render();
        assert!(text.contains("citysense_stage_duration_seconds{stage=\"spool_append\"} 0.001200"));
        assert!(
            text.contains("citysense_stage_duration_max_seconds{stage=\"spool_append\"} 0.002500")
        );
        assert!(text.contains("citysense_stage_duration_max_seconds{stage=\"close\"} 0.000000"));
    }

    #[test]
    fn render_has_sources_and_drops() {
        let m = Metrics::new();
        let s = m.source("mqtt", "local \"x\"");
        s.bad_input("t", &"oops");
        s.bad_input("t", &"oops");
        m.dropped(DropReason::Late);
        let text = m.render();
        assert!(
            text.contains(
                "citysense_source_bad_input_total{kind=\"mqtt\",source=\"local \\\"x\\\"\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("citysense_readings_dropped_total{reason=\"late\"} 1"));
        assert!(text.contains("# TYPE citysense_spool_bytes gauge"));
        assert_eq!(m.bad_input_total(), 2);
    }
}
