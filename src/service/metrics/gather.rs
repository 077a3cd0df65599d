//! The one `prometheus-client` collector of the daemon: at each scrape it reads the sources'
//! counters and asks every component to describe its own metrics. What spans owners is
//! gathered here: the drop family (the aggregator's drops plus the sources' series-limit
//! refusals) and the timings from window close to store (aggregator, spool, uplink).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use crate::pipeline::{AggregatorMetrics, DropReason};
use crate::privacy::PrivacyMetrics;
use crate::sinks::SinkMetrics;
use crate::telemetry::expose::{self, Encoded};
use crate::telemetry::{ConfigMetrics, Reject, SourceMetrics, StageTime};

/// Handles on every owner's metrics.
#[derive(Debug)]
pub(super) struct Gather {
    pub sources: Arc<Mutex<Vec<Arc<SourceMetrics>>>>,
    pub pipeline: Arc<AggregatorMetrics>,
    pub sink: Arc<SinkMetrics>,
    pub privacy: Arc<PrivacyMetrics>,
    pub config: Arc<ConfigMetrics>,
}

impl Gather {
    /// A registry whose only collector is this.
    pub fn registry(self) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        registry
    }

    fn encode_sources(&self, e: &mut DescriptorEncoder, sources: &[Arc<SourceMetrics>]) -> Encoded {
        let id = |s: &SourceMetrics| [("kind", s.kind.to_string()), ("source", s.name.clone())];
        type Get = fn(&SourceMetrics) -> &AtomicU64;
        let counters: [(&str, &str, Get); 5] = [
            (
                "citysense_source_messages",
                "Messages or frames received.",
                |s| &s.messages,
            ),
            (
                "citysense_source_readings",
                "Readings handed to the aggregator.",
                |s| &s.readings,
            ),
            (
                "citysense_source_bad_input",
                "Payloads or frames skipped as malformed.",
                |s| &s.bad_input,
            ),
            ("citysense_source_reconnects", "Reconnect attempts.", |s| {
                &s.reconnects
            }),
            (
                "citysense_source_skipped",
                "Payloads skipped on purpose (e.g. TTN simulated uplinks).",
                |s| &s.skipped,
            ),
        ];
        for (name, help, get) in counters {
            let rows = sources.iter().map(|s| (id(s), get(s).load(Relaxed)));
            expose::counters(e, name, help, rows)?;
        }
        let up = sources.iter().map(|s| (id(s), s.connected.load(Relaxed)));
        expose::gauges(
            e,
            "citysense_source_up",
            "1 while the source is connected.",
            up,
        )?;
        let with_reason = |s: &SourceMetrics, reason: &str| {
            let [kind, source] = id(s);
            [kind, source, ("reason", reason.to_string())]
        };
        let discarded = sources.iter().flat_map(|s| {
            [
                ("warmup", &s.warmup_discarded),
                ("out_of_range", &s.out_of_range),
            ]
            .map(|(r, n)| (with_reason(s, r), n.load(Relaxed)))
        });
        expose::counters(
            e,
            "citysense_source_readings_discarded",
            "Readings a source discarded, by reason (sensor warm-up, outside the valid range).",
            discarded,
        )?;
        let rejected = sources
            .iter()
            .flat_map(|s| Reject::ALL.map(|r| (with_reason(s, r.label()), s.rejected_count(r))));
        expose::counters(
            e,
            "citysense_source_rejected",
            "Messages (too_large) or payload keys (invalid_key, duplicate_key) a source rejected.",
            rejected,
        )?;
        self.encode_drops(e, sources)
    }

    /// `citysense_readings_dropped{reason}`: the aggregator's drops plus the series-limit
    /// drops the sources counted themselves.
    fn encode_drops(&self, e: &mut DescriptorEncoder, sources: &[Arc<SourceMetrics>]) -> Encoded {
        // Sources that meet the series limit when they resolve a series count it themselves.
        let series_limit: u64 = sources.iter().map(|s| s.series_limit_count()).sum();
        let drops = DropReason::ALL.map(|r| {
            let extra = if r == DropReason::SeriesLimit {
                series_limit
            } else {
                0
            };
            (
                [("reason", r.label())],
                self.pipeline.dropped_here(r) + extra,
            )
        });
        expose::counters(
            e,
            "citysense_readings_dropped",
            "Readings not aggregated, by reason.",
            drops,
        )
    }

    fn encode_timings(&self, e: &mut DescriptorEncoder) -> Encoded {
        let took = &self.pipeline.store_latency.took;
        let what = "Window close (tick) to the store's next 2xx";
        expose::gauge(
            e,
            "citysense_window_store_latency_seconds",
            &format!("{what}, last seen."),
            took.seconds(false),
        )?;
        expose::gauge(
            e,
            "citysense_window_store_latency_max_seconds",
            &format!("{what}, largest seen."),
            took.seconds(true),
        )?;
        expose::histogram(
            e,
            "citysense_window_store_latency_histogram_seconds",
            &format!("{what}, all closes."),
            &took.histogram,
        )?;
        let steps: [(&str, &StageTime); 3] = [
            ("close", &self.pipeline.close),
            ("spool_append", &self.sink.spool_append),
            ("uplink_request", &self.sink.uplink_request),
        ];
        let what = "Duration of a step from window close to store";
        for (name, help, max) in [
            ("citysense_stage_duration_seconds", "last seen.", false),
            (
                "citysense_stage_duration_max_seconds",
                "largest seen.",
                true,
            ),
        ] {
            let rows = steps.map(|(stage, t)| ([("stage", stage)], t.seconds(max)));
            expose::gauges(e, name, &format!("{what}, {help}"), rows)?;
        }
        let rows = steps.map(|(stage, t)| ([("stage", stage)], &t.histogram));
        expose::histograms(
            e,
            "citysense_stage_duration_histogram_seconds",
            &format!("{what}, every one."),
            rows,
        )
    }
}

impl Collector for Gather {
    fn encode(&self, mut e: DescriptorEncoder) -> Encoded {
        let sources = self
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.encode_sources(&mut e, &sources)?;
        self.pipeline.encode(&mut e)?;
        self.sink.encode(&mut e)?;
        self.privacy.encode(&mut e)?;
        self.config.encode(&mut e)?;
        self.encode_timings(&mut e)
    }
}
