//! The aggregator's hooks for the privacy path ([`crate::privacy`]) and sensor health
//! ([`crate::health`]): which readings they take, and the extra points they add at a close.
//! Kept apart from the window code so that both stay small; the aggregator calls
//! [`Aggregator::observe_domain`] per accepted reading and [`Aggregator::close_domain`] after
//! each close.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::{Aggregator, WindowBatch};
use crate::health::{tracker::Tracker, HealthConfig};
use crate::line_protocol::{encode, FieldValue, PointRef};
use crate::privacy::{windows::WindowSketches, Privacy};
use crate::reading::{Reading, TimestampNs};

/// Optional state; both parts are off by default (unit tests of the window code).
pub(super) struct Domain {
    privacy: Option<WindowSketches>,
    health: Option<Tracker>,
    gateway_tags: Vec<(String, String)>,
    /// Windows below this were closed for privacy and health; `i64::MIN` until the first.
    pub(super) closed_before: i64,
}

impl Default for Domain {
    fn default() -> Self {
        Domain {
            privacy: None,
            health: None,
            gateway_tags: Vec::new(),
            closed_before: i64::MIN,
        }
    }
}

impl Aggregator {
    /// Turns on the privacy sketches (`privacy`) and sensor health (`health`, if enabled).
    /// The hub's keys of windows already closed are retired at once.
    pub fn with_domain(
        mut self,
        privacy: Option<Arc<Privacy>>,
        health: &HealthConfig,
        gateway_tags: Vec<(String, String)>,
    ) -> Aggregator {
        if let Some(hub) = privacy {
            hub.retire_before(self.domain_floor());
            self.domain.privacy = Some(WindowSketches::new(hub));
        }
        if health.enabled {
            let tracker = Tracker::new(health.clone(), self.window_ns, self.registry.clone());
            self.domain.health = Some(tracker);
        }
        self.domain.gateway_tags = gateway_tags;
        self
    }

    /// Sees every reading the window checks accepted. True if the privacy path consumed it
    /// (a register update of an identifier series: not a value to aggregate).
    pub(super) fn observe_domain(&mut self, r: &Reading, window: i64) -> bool {
        let identifier = match &mut self.domain.privacy {
            Some(p) => p.absorb(r, window),
            None => false,
        };
        // Identifier series stay out of health: a scanner's reading count or liveness would
        // tell how many probes it heard, also in windows whose estimate is suppressed.
        if let (Some(h), false) = (&mut self.domain.health, identifier) {
            h.observe(r, window, true, &self.metrics.health);
        }
        if identifier {
            self.metrics.readings_aggregated.fetch_add(1, Relaxed);
        }
        identifier
    }

    /// Adds the `unique_devices` estimates and `sensor_health` points of windows
    /// `from..to` to `batch` (creating it if the close had no other points).
    pub(super) fn close_domain(
        &mut self,
        batch: Option<WindowBatch>,
        from: i64,
        to: i64,
        now: TimestampNs,
    ) -> Option<WindowBatch> {
        if self.domain.privacy.is_none() && self.domain.health.is_none() {
            return batch;
        }
        let mut batch = batch.unwrap_or(WindowBatch {
            payload: String::new(),
            points: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
        });
        let before = batch.points;
        if let Some(p) = &mut self.domain.privacy {
            for e in p.close_before(to) {
                let Some(info) = self.registry.info(e.series) else {
                    continue;
                };
                let fields = [(&*info.quantity, FieldValue::Int(e.unique_devices))];
                let (m, tags) = (&info.group_key.measurement, &info.group_key.tags);
                let ts = e.window.saturating_mul(self.window_ns);
                append(&mut batch, m, tags, &fields, ts, &self.metrics);
            }
        }
        if let Some(h) = &mut self.domain.health {
            let mut points = h.close(from, to, now, &self.metrics.health);
            let last = to.min(now.div_euclid(self.window_ns) + 1) - 1;
            let sources = self.metrics.source_list();
            let gateway = &self.domain.gateway_tags;
            points.extend(h.source_points(&sources, gateway, last * self.window_ns));
            for p in &points {
                let fields: Vec<(&str, FieldValue)> =
                    p.fields.iter().map(|(k, v)| (*k, v.clone())).collect();
                append(
                    &mut batch,
                    "sensor_health",
                    &p.tags,
                    &fields,
                    p.ts,
                    &self.metrics,
                );
            }
        }
        let added = batch.points - before;
        self.metrics
            .points_emitted
            .fetch_add(u64::from(added), Relaxed);
        (batch.points > 0).then_some(batch)
    }
}

/// Encodes one point onto `batch`; an unencodable one is counted and skipped, as in `encode`.
fn append(
    batch: &mut WindowBatch,
    measurement: &str,
    tags: &[(Arc<str>, Arc<str>)],
    fields: &[(&str, FieldValue)],
    ts: TimestampNs,
    metrics: &crate::service::metrics::Metrics,
) {
    let point = PointRef {
        measurement,
        tags,
        fields,
        ts: Some(ts),
    };
    match encode(&point, &mut batch.payload) {
        Ok(_) => {
            batch.points += 1;
            batch.min_ts = batch.min_ts.min(ts);
            batch.max_ts = batch.max_ts.max(ts);
        }
        Err(e) => {
            metrics.encode_errors.fetch_add(1, Relaxed);
            tracing::warn!(error = %e, measurement, "point not encodable, skipped");
        }
    }
}

#[cfg(test)]
#[path = "domain_tests.rs"]
mod tests;
