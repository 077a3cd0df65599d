//! Every observable event, counted and (where it matters) logged, in one place.
//!
//! Counters are plain atomics so the hot path pays one relaxed add. Bad input is logged at
//! most once per [`LOG_INTERVAL`] per kind, with the number suppressed since, so a flood of
//! broken payloads cannot flood the journal. Rendered as Prometheus text by [`Metrics::render`].

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use prometheus_client::registry::Registry;

pub use crate::pipeline::{AggregatorMetrics, DropReason};
use crate::privacy::PrivacyMetrics;
use crate::sinks::SinkMetrics;
use crate::telemetry::StoreLatency;
pub use crate::telemetry::{ConfigMetrics, RateLimit, Reject, SourceMetrics, LOG_INTERVAL};

mod gather;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The daemon's metrics: every component's own, gathered here to be rendered.
#[derive(Debug)]
pub struct Metrics {
    sources: Arc<Mutex<Vec<Arc<SourceMetrics>>>>,
    /// The aggregator's, with the clock's, sensor health's and derived fields'.
    pub pipeline: Arc<AggregatorMetrics>,
    /// The spool writer's and the uplink's.
    pub sink: Arc<SinkMetrics>,
    /// Privacy path counters (identifiers hashed, windows suppressed); counts only.
    pub privacy: Arc<PrivacyMetrics>,
    /// Reloads and the running config's hash.
    pub config: Arc<ConfigMetrics>,
    /// Holds the collector that reads all of the above at each scrape.
    registry: Registry,
}

impl Default for Metrics {
    /// The aggregator and the sink share the window close -> store latency clock.
    fn default() -> Self {
        let latency = Arc::new(StoreLatency::default());
        let gather = gather::Gather {
            sources: Arc::default(),
            pipeline: Arc::new(AggregatorMetrics::new(latency.clone())),
            sink: Arc::new(SinkMetrics::new(latency)),
            privacy: Arc::default(),
            config: Arc::default(),
        };
        Metrics {
            sources: gather.sources.clone(),
            pipeline: gather.pipeline.clone(),
            sink: gather.sink.clone(),
            privacy: gather.privacy.clone(),
            config: gather.config.clone(),
            registry: gather.registry(),
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
        self.add_source(m.clone());
        m
    }

    /// Registers a source's counters (once: a reload hands a replacement its predecessor's).
    pub fn add_source(&self, source: Arc<SourceMetrics>) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if !sources.iter().any(|s| Arc::ptr_eq(s, &source)) {
            sources.push(source);
        }
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

    /// Takes a stopped source's counters out of `/metrics` (a reload removed or replaced it).
    pub fn remove_source(&self, source: &Arc<SourceMetrics>) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.retain(|s| !Arc::ptr_eq(s, source));
    }

    /// Every registered source's counters.
    pub fn source_list(&self) -> Vec<Arc<SourceMetrics>> {
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The registered sources' counters.
    pub fn sources(&self) -> Vec<Arc<SourceMetrics>> {
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

    /// The OpenMetrics text of every metric (see [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Writing into a String cannot fail; a collector bug would show here.
            tracing::error!(error = %e, "metrics not rendered");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_and_stages_render_as_seconds() {
        let m = Metrics::new();
        m.pipeline.window_closed(10_000_000);
        m.sink.store_accepted(17_000_000);
        let text = m.render();
        assert!(
            text.contains("citysense_window_store_latency_max_seconds 0.007\n"),
            "{text}"
        );
        assert!(text
            .contains("citysense_window_store_latency_histogram_seconds_bucket{le=\"0.01\"} 1\n"));
        assert!(text.contains("citysense_window_store_latency_histogram_seconds_count 1\n"));
        m.sink
            .spool_append
            .record(std::time::Duration::from_micros(2500));
        m.sink
            .spool_append
            .record(std::time::Duration::from_micros(1200));
        let text = m.render();
        assert!(text.contains("citysense_stage_duration_seconds{stage=\"spool_append\"} 0.0012\n"));
        assert!(
            text.contains("citysense_stage_duration_max_seconds{stage=\"spool_append\"} 0.0025\n")
        );
        assert!(text.contains("citysense_stage_duration_max_seconds{stage=\"close\"} 0.0\n"));
        let b = "citysense_stage_duration_histogram_seconds_bucket";
        assert!(text.contains(&format!("{b}{{le=\"0.001\",stage=\"spool_append\"}} 0\n")));
        assert!(text.contains(&format!("{b}{{le=\"0.0025\",stage=\"spool_append\"}} 2\n")));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn config_reloads_and_hash_render() {
        use crate::telemetry::ReloadResult;
        let m = Metrics::new();
        let text = m.render();
        assert!(text.contains("citysense_config_reloads_total{result=\"refused\"} 0\n"));
        assert!(
            !text.contains("citysense_config_info"),
            "no hash without a file"
        );
        m.config.set_hash("0123456789abcdef");
        m.config.reloaded(ReloadResult::Invalid);
        let text = m.render();
        assert!(text.contains("citysense_config_reloads_total{result=\"invalid\"} 1\n"));
        assert!(text.contains("citysense_config_info{hash=\"0123456789abcdef\"} 1\n"));
        let s = m.source("mqtt", "a");
        m.remove_source(&s);
        assert!(m.source_list().is_empty());
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
        assert!(
            text.contains("citysense_spool_dropped_points_total{reason=\"unwritten_at_stop\"} 0\n")
        );
        assert_eq!(m.bad_input_total(), 2);
    }
}
