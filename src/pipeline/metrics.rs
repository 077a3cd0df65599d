//! The aggregator's metrics: readings aggregated and dropped, series, windows closed, points
//! encoded, its heartbeat and its close step; plus the metrics of the components it drives
//! (clock, sensor health, derived fields), which they own and count themselves.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::clock::ClockMetrics;
use crate::domain::DomainMetrics;
use crate::health::HealthMetrics;
use crate::state::StateMetrics;
use crate::telemetry::{expose, RateLimit, StageTime, StoreLatency};

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
    pub const ALL: [DropReason; 4] = [
        DropReason::Late,
        DropReason::Future,
        DropReason::NonFinite,
        DropReason::SeriesLimit,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DropReason::Late => "late",
            DropReason::Future => "future",
            DropReason::NonFinite => "non_finite",
            DropReason::SeriesLimit => "series_limit",
        }
    }
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct AggregatorMetrics {
    pub readings_aggregated: AtomicU64,
    dropped: [AtomicU64; 4],
    drop_log: RateLimit,
    pub series: AtomicU64,
    pub windows_closed: AtomicU64,
    pub points_emitted: AtomicU64,
    pub approximate_percentiles: AtomicU64,
    pub encode_errors: AtomicU64,
    /// Last time the aggregator loop went round (unix seconds): the health check's heartbeat.
    pub aggregator_heartbeat: AtomicI64,
    /// Duration of a close: statistics, derived fields, encoding.
    pub close: StageTime,
    /// Window close -> store accepted; the uplink completes it.
    pub store_latency: Arc<StoreLatency>,
    /// Clock sync, steps, held readings, late corrections.
    pub clock: ClockMetrics,
    /// Sensor health gauges of the last window close.
    pub health: HealthMetrics,
    /// Counter resets/wraps and humidity-correction events.
    pub domain: DomainMetrics,
    /// State file saves and the restore at start.
    pub state: StateMetrics,
}

impl AggregatorMetrics {
    /// Metrics whose store latency the uplink completes through `store_latency`.
    pub fn new(store_latency: Arc<StoreLatency>) -> AggregatorMetrics {
        AggregatorMetrics {
            store_latency,
            ..Default::default()
        }
    }

    /// A reading not aggregated: counted by reason, logged rate-limited.
    pub fn dropped(&self, reason: DropReason) {
        self.dropped[reason as usize].fetch_add(1, Relaxed);
        if let Some(suppressed) = self.drop_log.check() {
            tracing::warn!(reason = reason.label(), suppressed, "reading dropped");
        }
    }

    /// Readings the aggregator itself dropped for `reason` (sources count their own
    /// series-limit drops).
    pub fn dropped_here(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Relaxed)
    }

    /// The aggregator closed windows at `now` (a tick, not the shutdown flush).
    pub fn window_closed(&self, now: i64) {
        self.store_latency.window_closed(now);
    }

    /// Describes the aggregator's metrics and its components' for `/metrics` (the drop
    /// family and the stage timings are gathered by `service`, with the sources' and sink's).
    pub fn encode(&self, e: &mut expose::Encoder) -> expose::Encoded {
        let load = |a: &AtomicU64| a.load(Relaxed);
        let counters = [
            (
                "citysense_readings_aggregated",
                "Readings added to windows.",
                load(&self.readings_aggregated),
            ),
            (
                "citysense_windows_closed",
                "Series windows closed.",
                load(&self.windows_closed),
            ),
            (
                "citysense_points_emitted",
                "Line-protocol points produced.",
                load(&self.points_emitted),
            ),
            (
                "citysense_percentiles_approximate",
                "Windows whose percentiles came from the sketch.",
                load(&self.approximate_percentiles),
            ),
            (
                "citysense_encode_errors",
                "Points that could not be encoded.",
                load(&self.encode_errors),
            ),
        ];
        for (name, help, v) in counters {
            expose::counter(e, name, help, v)?;
        }
        expose::gauge(
            e,
            "citysense_series",
            "Series known to the aggregator.",
            load(&self.series),
        )?;
        expose::gauge(
            e,
            "citysense_aggregator_heartbeat_seconds",
            "Last aggregator loop time (unix seconds).",
            self.aggregator_heartbeat.load(Relaxed),
        )?;
        self.health.encode(e)?;
        self.clock.encode(e)?;
        self.domain.encode(e)?;
        self.state.encode(e)
    }
}
