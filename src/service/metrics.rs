//! Every observable event, counted and (where it matters) logged, in one place.
//!
//! Counters are plain atomics so the hot path pays one relaxed add. Bad input is logged at
//! most once per [`LOG_INTERVAL`] per kind, with the number suppressed since, so a flood of
//! broken payloads cannot flood the journal. Rendered as Prometheus text by [`Metrics::render`].

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

pub use crate::pipeline::{AggregatorMetrics, DropReason};
use crate::privacy::PrivacyMetrics;
use crate::sinks::SinkMetrics;
use crate::telemetry::text::{escape_label, header, scalar};
use crate::telemetry::StoreLatency;
pub use crate::telemetry::{RateLimit, Reject, SourceMetrics, LOG_INTERVAL};

/// The daemon's metrics: every component's own, gathered here to be rendered.
#[derive(Debug)]
pub struct Metrics {
    sources: Mutex<Vec<Arc<SourceMetrics>>>,
    /// The aggregator's, with the clock's, sensor health's and derived fields'.
    pub pipeline: Arc<AggregatorMetrics>,
    /// The spool writer's and the uplink's.
    pub sink: Arc<SinkMetrics>,
    /// Privacy path counters (identifiers hashed, windows suppressed); counts only.
    pub privacy: Arc<PrivacyMetrics>,
}

impl Default for Metrics {
    /// The aggregator and the sink share the window close -> store latency clock.
    fn default() -> Self {
        let latency = Arc::new(StoreLatency::default());
        Metrics {
            sources: Mutex::default(),
            pipeline: Arc::new(AggregatorMetrics::new(latency.clone())),
            sink: Arc::new(SinkMetrics::new(latency)),
            privacy: Arc::default(),
        }
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// Registers a source and returns its counters.
    pub fn source(&self, kind: &'static str, name: &str) -> Arc<SourceMetrics> {
        let m = Arc::new(SourceMetrics::new(kind, name));
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(m.clone());
        m
    }

    pub fn dropped_count(&self, reason: DropReason) -> u64 {
        let own = self.pipeline.dropped_here(reason);
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

    fn render_stages(&self, out: &mut String) {
        let steps = [
            ("close", &self.pipeline.close),
            ("spool_append", &self.sink.spool_append),
            ("uplink_request", &self.sink.uplink_request),
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
                let _ = writeln!(out, "{name}{{stage=\"{stage}\"}} {:.6}", t.seconds(max));
            }
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
        render_rejects(&mut out, &sources);
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
                self.pipeline.readings_aggregated.load(Relaxed) as i64,
            ),
            (
                "citysense_series",
                "gauge",
                "Series known to the aggregator.",
                self.pipeline.series.load(Relaxed) as i64,
            ),
            (
                "citysense_windows_closed_total",
                "counter",
                "Series windows closed.",
                self.pipeline.windows_closed.load(Relaxed) as i64,
            ),
            (
                "citysense_points_emitted_total",
                "counter",
                "Line-protocol points produced.",
                self.pipeline.points_emitted.load(Relaxed) as i64,
            ),
            (
                "citysense_percentiles_approximate_total",
                "counter",
                "Windows whose percentiles came from the sketch.",
                self.pipeline.approximate_percentiles.load(Relaxed) as i64,
            ),
            (
                "citysense_encode_errors_total",
                "counter",
                "Points that could not be encoded.",
                self.pipeline.encode_errors.load(Relaxed) as i64,
            ),
            (
                "citysense_uplink_requests_ok_total",
                "counter",
                "Write requests the store accepted.",
                self.sink.uplink_requests_ok.load(Relaxed) as i64,
            ),
            (
                "citysense_uplink_requests_failed_total",
                "counter",
                "Write requests that failed.",
                self.sink.uplink_requests_failed.load(Relaxed) as i64,
            ),
            (
                "citysense_uplink_points_sent_total",
                "counter",
                "Points the store accepted.",
                self.sink.uplink_points_sent.load(Relaxed) as i64,
            ),
            (
                "citysense_uplink_bytes_sent_total",
                "counter",
                "Line-protocol bytes the store accepted (before gzip).",
                self.sink.uplink_bytes_sent.load(Relaxed) as i64,
            ),
            (
                "citysense_uplink_up",
                "gauge",
                "1 while the last write succeeded.",
                self.sink.uplink_up.load(Relaxed),
            ),
            (
                "citysense_spool_bytes",
                "gauge",
                "Bytes waiting in the spool.",
                self.sink.spool_bytes.load(Relaxed) as i64,
            ),
            (
                "citysense_spool_batches",
                "gauge",
                "Batches waiting in the spool.",
                self.sink.spool_batches.load(Relaxed) as i64,
            ),
            (
                "citysense_spool_points",
                "gauge",
                "Points waiting in the spool.",
                self.sink.spool_points.load(Relaxed) as i64,
            ),
            (
                "citysense_spool_oldest_timestamp_seconds",
                "gauge",
                "Window start of the oldest spooled point (0 = empty).",
                self.sink.spool_oldest_ts.load(Relaxed) / 1_000_000_000,
            ),
            (
                "citysense_spool_held_points",
                "gauge",
                "Points held in memory because the spool refuses writes (e.g. disk full).",
                self.sink.spool_held_points.load(Relaxed) as i64,
            ),
            (
                "citysense_spool_corrupt_records_total",
                "counter",
                "Unacknowledged spool records lost to corruption (at open or when read).",
                self.sink.spool_corrupt_records.load(Relaxed) as i64,
            ),
            (
                "citysense_spool_errors_total",
                "counter",
                "Spool I/O errors.",
                self.sink.spool_errors.load(Relaxed) as i64,
            ),
            (
                "citysense_aggregator_heartbeat_seconds",
                "gauge",
                "Last aggregator loop time (unix seconds).",
                self.pipeline.aggregator_heartbeat.load(Relaxed),
            ),
        ];
        for (name, kind, help, v) in scalars {
            scalar(&mut out, name, kind, help, v);
        }
        self.sink.spool_dropped.render(&mut out);
        self.privacy.render(&mut out);
        self.pipeline.health.render(&mut out);
        self.pipeline.clock.render(&mut out);
        self.pipeline.domain.render(&mut out);
        self.sink.uplink.render(&mut out);
        // How far behind the store is: derived at scrape time from the oldest spooled window.
        let oldest = self.sink.spool_oldest_ts.load(Relaxed);
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
            let seconds = format!("{:.6}", self.pipeline.store_latency.took.seconds(max));
            scalar(&mut out, name, "gauge", help, seconds);
        }
        self.render_stages(&mut out);
        out
    }
}

/// The `citysense_source_rejected_total` family.
fn render_rejects(out: &mut String, sources: &[Arc<SourceMetrics>]) {
    header(
        out,
        "citysense_source_rejected_total",
        "counter",
        "Messages (too_large) or payload keys (invalid_key, duplicate_key) a source rejected.",
    );
    for s in sources {
        for r in Reject::ALL {
            let _ = writeln!(
                out,
                "citysense_source_rejected_total{{kind=\"{}\",source=\"{}\",reason=\"{}\"}} {}",
                s.kind,
                escape_label(&s.name),
                r.label(),
                s.rejected_count(r)
            );
        }
    }
}

/// (name, type, help, value or getter)
type SourceGetter = fn(&SourceMetrics) -> i64;
type MetricDef<V> = (&'static str, &'static str, &'static str, V);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_and_stages_render_as_seconds() {
        let m = Metrics::new();
        m.pipeline.window_closed(10_000_000);
        m.sink.store_accepted(17_000_000);
        assert!(m
            .render()
            .contains("citysense_window_store_latency_max_seconds 0.007000"));
        m.sink
            .spool_append
            .record(std::time::Duration::from_micros(2500));
        m.sink
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
        m.pipeline.dropped(DropReason::Late);
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
