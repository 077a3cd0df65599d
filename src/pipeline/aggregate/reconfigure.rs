//! A reload's share of the aggregator: new statistics, future tolerance, domain rules and the
//! list of sources, taken by the task loop between two closes. The series' state (open
//! windows, rings, counter totals, occupancy) stays as it is: the next close writes its
//! windows with the new settings. Settings that shape that state (window length, grace, ring
//! size) need a restart; [`crate::config::restart_keys`] refuses them before this is built.

use std::sync::Arc;

use super::{parse_stats, Aggregator};
use crate::config::AggregationConfig;
use crate::domain::Domain;
use crate::reading::{QuantityKind, NANOS_PER_SEC};
use crate::telemetry::SourceMetrics;

/// What a reload hands the running aggregator.
pub struct Reconfigure {
    pub aggregation: AggregationConfig,
    pub domain: Domain,
    /// The counters of the sources running after the reload (for their `sensor_health`).
    pub sources: Vec<Arc<SourceMetrics>>,
}

impl Aggregator {
    /// Lets the task loop take reloads from `updates`.
    pub fn with_updates(mut self, updates: tokio::sync::mpsc::Receiver<Reconfigure>) -> Self {
        self.updates = Some(updates);
        self
    }

    /// Applies a reload's settings; open windows keep their readings.
    pub fn reconfigure(&mut self, new: Reconfigure) {
        let cfg = &new.aggregation;
        (self.stats, self.quantiles) = parse_stats(&cfg.stats);
        self.future_ns = (cfg.future_tolerance_secs as i64).saturating_mul(NANOS_PER_SEC);
        // Field names are interned per quantity for one list of statistics: start over.
        self.field_names = Default::default();
        for slot in self.slots.iter_mut().flatten() {
            slot.field_keys = match slot.info.kind.kind {
                QuantityKind::Gauge => self.field_names.gauge(&slot.info.quantity, &self.stats),
                QuantityKind::Counter | QuantityKind::CounterTotal => self.field_names.none(),
            };
        }
        self.derive.reconfigure(new.domain);
        self.hooks.sources = new.sources;
        tracing::info!(stats = ?cfg.stats, "aggregator took the reloaded settings");
    }

    /// The next reload, if any; never completes once the sender is gone (no reloads).
    pub(super) async fn next_update(
        updates: &mut Option<tokio::sync::mpsc::Receiver<Reconfigure>>,
    ) -> Reconfigure {
        if let Some(rx) = updates {
            if let Some(u) = rx.recv().await {
                return u;
            }
        }
        std::future::pending().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{GroupKey, Reading, Registry};
    use crate::service::metrics::Metrics;

    /// A window open during a reload keeps its readings and closes with the new statistics.
    #[test]
    fn open_window_survives_a_stats_change() {
        let reg = Registry::new();
        let g = reg.group(GroupKey::new("air", [("sensor".into(), "s1".into())]));
        let id = reg.series(g, "pm2_5").expect("series");
        let mut cfg = AggregationConfig {
            window_secs: 10,
            grace_secs: 0,
            close_delay_secs: 0,
            stats: vec!["count".into(), "mean".into(), "p95".into()],
            ..Default::default()
        };
        let t0 = 1_800_000_000 * NANOS_PER_SEC;
        let metrics = Metrics::new();
        let mut agg = Aggregator::new(&cfg, reg, metrics.pipeline.clone(), t0);
        for (i, v) in [1.0, 2.0, 3.0].into_iter().enumerate() {
            agg.insert(Reading::new(id, v, t0 + i as i64), t0);
        }
        cfg.stats = vec!["count".into(), "max".into(), "p50".into()];
        agg.reconfigure(Reconfigure {
            aggregation: cfg,
            domain: Domain::default(),
            sources: Vec::new(),
        });
        agg.insert(Reading::new(id, 9.0, t0 + 5), t0);
        let batch = agg.close_due(t0 + 11 * NANOS_PER_SEC).expect("closed");
        let line = batch.payload.trim_end();
        assert!(line.contains("pm2_5_count=4i"), "{line}");
        assert!(line.contains("pm2_5_max=9"), "{line}");
        assert!(line.contains("pm2_5_p50="), "{line}");
        assert!(!line.contains("pm2_5_mean"), "{line}");
    }
}
