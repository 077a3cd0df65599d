//! The aggregator's hooks for the privacy path ([`crate::privacy`]), sensor health
//! ([`crate::health`]) and the gateway's board health ([`crate::health::board`]): which
//! readings they take, and the extra points they add at a close.
//! Kept apart from the window code so that both stay small; the aggregator calls
//! [`Aggregator::observe_hooks`] per accepted reading and [`Aggregator::close_hooks`] after
//! each close. (Not to be confused with [`crate::domain::Domain`], the derived fields
//! `encode.rs` adds to each point.)

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::{Aggregator, WindowBatch};
use crate::config::HealthConfig;
use crate::health::board::BoardReader;
use crate::health::tracker::Tracker;
use crate::line_protocol::{FieldValue, PointRef};
use crate::pipeline::AggregatorMetrics;
use crate::privacy::{windows::WindowSketches, Privacy};
use crate::reading::{GroupKey, Reading, TimestampNs};
use crate::telemetry::SourceMetrics;

/// Optional state; both parts are off by default (unit tests of the window code).
pub(super) struct Hooks {
    privacy: Option<WindowSketches>,
    pub(super) health: Option<Tracker>,
    gateway_tags: Vec<(String, String)>,
    /// The sources' own counters, for the per-source `sensor_health` points.
    pub(super) sources: Vec<Arc<SourceMetrics>>,
    /// The gateway's board health: one `gateway_health` point per close.
    board: Option<BoardReader>,
    /// Windows below this were closed for privacy and health; `i64::MIN` until the first.
    pub(super) closed_before: i64,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            privacy: None,
            health: None,
            gateway_tags: Vec::new(),
            sources: Vec::new(),
            board: None,
            closed_before: i64::MIN,
        }
    }
}

impl Aggregator {
    /// Turns on the privacy sketches (`privacy`) and sensor health (`health`, if enabled).
    /// The hub's keys of windows already closed are retired at once.
    pub fn with_hooks(
        mut self,
        privacy: Option<Arc<Privacy>>,
        health: &HealthConfig,
        gateway_tags: Vec<(String, String)>,
    ) -> Aggregator {
        if let Some(hub) = privacy {
            hub.retire_before(self.hooks_floor());
            self.hooks.privacy = Some(WindowSketches::new(hub));
        }
        if health.enabled {
            let tracker = Tracker::new(health.clone(), self.window_ns, self.registry.clone());
            self.hooks.health = Some(tracker);
        }
        self.hooks.gateway_tags = gateway_tags;
        self
    }

    /// The counters of the sources feeding this aggregator: sensor health reports them as
    /// per-source points at each close.
    pub fn with_sources(mut self, sources: Vec<Arc<SourceMetrics>>) -> Aggregator {
        self.hooks.sources = sources;
        self
    }

    /// Turns on the `gateway_health` point (tags: the gateway's) at every close.
    pub fn with_board(mut self, board: Option<BoardReader>) -> Aggregator {
        self.hooks.board = board;
        self
    }

    /// Sees every reading the window checks accepted. True if the privacy path consumed it
    /// (a register update of an identifier series: not a value to aggregate).
    pub(super) fn observe_hooks(&mut self, r: &Reading, window: i64) -> bool {
        let identifier = match &mut self.hooks.privacy {
            Some(p) => p.absorb(r, window),
            None => false,
        };
        // Identifier series stay out of health: a scanner's reading count or liveness would
        // tell how many probes it heard, also in windows whose estimate is suppressed.
        if let (Some(h), false) = (&mut self.hooks.health, identifier) {
            h.observe(r, window, true, &self.metrics.health);
        }
        if identifier {
            self.metrics.readings_aggregated.fetch_add(1, Relaxed);
        }
        identifier
    }

    /// Shutdown on a clock that never synchronised: retires every privacy key without
    /// writing anything (no reading was placed, so there is no estimate to lose).
    pub(super) fn retire_hooks(&mut self) {
        if let Some(p) = &mut self.hooks.privacy {
            p.close_before(i64::MAX);
        }
    }

    /// Adds the `unique_devices` estimates, `sensor_health` points of windows `from..to`
    /// and the `gateway_health` point to `batch` (creating it if the close had no other
    /// points).
    pub(super) fn close_hooks(
        &mut self,
        batch: Option<WindowBatch>,
        from: i64,
        to: i64,
        now: TimestampNs,
    ) -> Option<WindowBatch> {
        let h = &self.hooks;
        if h.privacy.is_none() && h.health.is_none() && h.board.is_none() {
            return batch;
        }
        let mut batch = batch.unwrap_or_else(WindowBatch::empty);
        let before = batch.points;
        if let Some(p) = &mut self.hooks.privacy {
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
        // The newest window closed (or, at shutdown, the current one).
        let last = to.min(now.div_euclid(self.window_ns) + 1) - 1;
        if let Some(h) = &mut self.hooks.health {
            let mut points = h.close(from, to, now, &self.metrics.health);
            let (sources, gateway) = (&self.hooks.sources, &self.hooks.gateway_tags);
            points.extend(h.source_points(sources, gateway, last * self.window_ns));
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
        if let Some(board) = &self.hooks.board {
            let sample = board.sample(&self.metrics.health);
            let fields = sample.fields(self.tracker.synced());
            if let Some(status) = &mut self.status {
                status.record_board(fields.iter().filter_map(numeric).collect());
            }
            let key = GroupKey::new("gateway_health", self.hooks.gateway_tags.clone());
            let ts = last.saturating_mul(self.window_ns);
            append(
                &mut batch,
                "gateway_health",
                &key.tags,
                &fields,
                ts,
                &self.metrics,
            );
        }
        let added = batch.points - before;
        self.metrics
            .points_emitted
            .fetch_add(u64::from(added), Relaxed);
        (batch.points > 0).then_some(batch)
    }
}

/// A field as a number for the status page; text fields are left out.
fn numeric((k, v): &(&'static str, FieldValue)) -> Option<(&'static str, f64)> {
    match v {
        FieldValue::Float(f) => Some((k, *f)),
        FieldValue::Int(i) => Some((k, *i as f64)),
        FieldValue::UInt(u) => Some((k, *u as f64)),
        FieldValue::Bool(b) => Some((k, f64::from(u8::from(*b)))),
        _ => None,
    }
}

/// Encodes one point onto `batch`; an unencodable one is counted and skipped, as in
/// `encode.rs`.
pub(super) fn append(
    batch: &mut WindowBatch,
    measurement: &str,
    tags: &[(Arc<str>, Arc<str>)],
    fields: &[(&str, FieldValue)],
    ts: TimestampNs,
    metrics: &AggregatorMetrics,
) {
    let point = PointRef {
        measurement,
        tags,
        fields,
        ts: Some(ts),
    };
    if let Err(e) = batch.push(&point) {
        metrics.encode_errors.fetch_add(1, Relaxed);
        tracing::warn!(error = %e, measurement, "point not encodable, skipped");
    }
}

#[cfg(test)]
#[path = "hooks_tests.rs"]
mod tests;
