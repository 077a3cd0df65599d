//! Closed windows to line protocol: one point per (window, group), with the stat fields of
//! all its series (`<quantity>_<stat>`) and then the fields the domain step derives from
//! them, stamped with the window's start. The result of a close is one [`WindowBatch`].
//!
//! Point by point, so that a close holds the payload and the flat value buffer of
//! `close.rs`, never every derived field at once.

use std::sync::atomic::Ordering::Relaxed;

use super::close::Closed;
use super::{Aggregator, Slot};
use crate::config::Stat;
use crate::domain::{DerivedField, Domain, WindowValue};
use crate::line_protocol::{encode, EncodeError, FieldValue, PointRef};
use crate::pipeline::AggregatorMetrics;
use crate::reading::{GroupKey, TimestampNs};

/// The points of one or more closed windows, encoded, ready for the spool.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowBatch {
    /// Line protocol, one point per line.
    pub payload: String,
    pub points: u32,
    /// Smallest and largest point timestamp in the batch.
    pub min_ts: TimestampNs,
    pub max_ts: TimestampNs,
}

impl WindowBatch {
    /// No points yet.
    pub(super) fn empty() -> WindowBatch {
        WindowBatch {
            payload: String::new(),
            points: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
        }
    }

    /// Appends `point` (its timestamp is required); on error the batch is unchanged and the
    /// caller counts and logs the point it skips.
    pub(super) fn push(&mut self, point: &PointRef<'_>) -> Result<(), EncodeError> {
        encode(point, &mut self.payload)?;
        let ts = point.ts.unwrap_or_default();
        self.points += 1;
        self.min_ts = self.min_ts.min(ts);
        self.max_ts = self.max_ts.max(ts);
        Ok(())
    }
}

/// What encoding one close reads: its value buffer and the aggregator's series.
struct Encoder<'a> {
    values: &'a [f64],
    stats: &'a [Stat],
    slots: &'a [Option<Box<Slot>>],
    window_ns: i64,
    metrics: &'a AggregatorMetrics,
    /// Points the close will have: the payload is sized from the first one.
    points: usize,
}

impl Aggregator {
    /// One point per (window, group) of `closed` (sorted by point), its stat values in
    /// `values` from each entry's `first` on.
    pub(super) fn encode(&mut self, closed: &[Closed], values: &[f64]) -> WindowBatch {
        let enc = Encoder {
            values,
            stats: &self.stats,
            slots: &self.slots,
            window_ns: self.window_ns,
            metrics: &self.metrics,
            points: closed
                .chunk_by(|a, b| a.window == b.window && a.group == b.group)
                .count(),
        };
        let mut batch = WindowBatch::empty();
        let mut run_values: Vec<WindowValue<'_>> = Vec::new();
        let mut derived: Vec<DerivedField> = Vec::new();
        for same_window in closed.chunk_by(|a, b| a.window == b.window) {
            // Humidity corrects PM of other points (same site): gather it before the points.
            let humidity: Vec<WindowValue<'_>> = (same_window.iter())
                .filter_map(|c| enc.window_value(c))
                .filter(Domain::is_humidity)
                .collect();
            for run in same_window.chunk_by(|a, b| a.group == b.group) {
                run_values.clear();
                run_values.extend(run.iter().filter_map(|c| enc.window_value(c)));
                let Some(key) = run_values.first().map(|v| v.key) else {
                    continue;
                };
                derived.clear();
                self.derive.derive_point(
                    &run_values,
                    &humidity,
                    enc.stats,
                    enc.window_ns,
                    &enc.metrics.domain,
                    &mut derived,
                );
                enc.point(run, key, &derived, &mut batch);
            }
        }
        (enc.metrics.points_emitted).fetch_add(u64::from(batch.points), Relaxed);
        batch
    }

    /// Appends the `air_quality_hourly` and `air_quality_daily` points of the hours and days
    /// that ended by `until_ns` ([`crate::domain::hourly`], `daily`) to `batch`.
    pub(super) fn close_hours(
        &mut self,
        batch: Option<WindowBatch>,
        until_ns: TimestampNs,
    ) -> Option<WindowBatch> {
        let points = self.derive.period_points(until_ns);
        if points.is_empty() {
            return batch;
        }
        let mut batch = batch.unwrap_or_else(WindowBatch::empty);
        let before = batch.points;
        for p in &points {
            let fields: Vec<(&str, FieldValue)> = (p.fields.iter())
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            let (m, tags) = (p.measurement, &p.key.tags);
            super::hooks::append(&mut batch, m, tags, &fields, p.ts, &self.metrics);
        }
        let added = u64::from(batch.points - before);
        self.metrics.points_emitted.fetch_add(added, Relaxed);
        (batch.points > 0).then_some(batch)
    }
}

impl<'a> Encoder<'a> {
    /// The domain step's view of one closed series window.
    fn window_value(&self, c: &Closed) -> Option<WindowValue<'a>> {
        let slot = self.slots.get(c.slot as usize)?.as_ref()?;
        Some(WindowValue {
            window: c.window,
            group: c.group,
            key: &slot.info.group_key,
            quantity: &slot.info.quantity,
            kind: slot.info.kind.kind,
            mean: c.mean,
            sum: c.sum,
            count: c.count,
            raw_mean: c.calibration.map(|_| c.raw_mean),
            calibration: c.calibration,
            values: self.values.get(c.first..c.first + self.stats.len())?,
        })
    }

    /// Encodes the point of `run` (one window and group) with its `derived` fields onto
    /// `batch`; a point without fields is left out, an unencodable one counted and skipped.
    fn point(
        &self,
        run: &[Closed],
        key: &GroupKey,
        derived: &[DerivedField],
        batch: &mut WindowBatch,
    ) {
        let mut fields: Vec<(&str, FieldValue)> =
            Vec::with_capacity(run.len() * self.stats.len() + derived.len());
        for c in run {
            let Some(slot) = self.slots.get(c.slot as usize).and_then(Option::as_ref) else {
                continue;
            };
            let own = self.values.get(c.first..).unwrap_or_default();
            let named = slot.field_keys.iter().zip(self.stats).zip(own);
            fields.extend(named.map(|((k, st), x)| (&**k, field_value(*st, *x))));
        }
        fields.extend(derived.iter().map(|d| (d.key.as_str(), d.value.clone())));
        let Some(first) = run.first().filter(|_| !fields.is_empty()) else {
            return;
        };
        let point = PointRef {
            measurement: &key.measurement,
            tags: &key.tags,
            fields: &fields,
            ts: Some(first.window.saturating_mul(self.window_ns)),
        };
        let was_empty = batch.points == 0;
        match batch.push(&point) {
            // Points of a close look alike: the payload is sized from the first one (plus
            // 1/16) rather than grown by doubling, which would leave up to half of it unused.
            Ok(()) if was_empty => {
                let each = batch.payload.len();
                let want = each.saturating_mul(self.points);
                (batch.payload).reserve_exact((want + want / 16).saturating_sub(each));
            }
            Ok(()) => {}
            Err(e) => {
                self.metrics.encode_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, point = %key, "point not encodable, skipped");
            }
        }
    }
}

/// The field of a stat value from the close's buffer: the count is written as an integer.
fn field_value(stat: Stat, v: f64) -> FieldValue {
    match stat {
        // `as` saturates; a count is never negative or NaN.
        Stat::Count => FieldValue::Int(v as i64),
        _ => FieldValue::Float(v),
    }
}
