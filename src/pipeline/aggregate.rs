//! The aggregator: the one task that owns every series' state. It takes readings from the
//! sources' channel, closes clock-aligned windows on a tick, and hands each close's points,
//! encoded as one line-protocol batch, downstream.
//!
//! Windows are tumbling and aligned to the epoch: window `w` covers
//! `[w * len, (w + 1) * len)` and closes once the wall clock passes its end plus `grace`.
//! All series share one clock, so one index, `closed_before`, says which windows are closed;
//! a reading for a closed window is late and dropped (counted). A point's timestamp is its
//! window's start, so re-sending a window overwrites the same point in the store.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::AggregationConfig;
use crate::line_protocol::{encode, FieldValue, PointRef};
use crate::pipeline::window::{SeriesState, Stat, Stats};
use crate::reading::{now_ns, Reading, Registry, SeriesInfo, TimestampNs, NANOS_PER_SEC};
use crate::service::metrics::{DropReason, Metrics};

/// How often the aggregator checks for windows to close.
const TICK: Duration = Duration::from_millis(200);
/// Most readings taken from the input channel per wake-up.
const RECV_BATCH: usize = 256;

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

struct Slot {
    state: SeriesState,
    info: SeriesInfo,
    /// `<quantity>_<stat>` for each configured stat, built once.
    field_keys: Vec<String>,
}

/// One series' closed window, flattened for grouping into points.
struct Closed {
    window: i64,
    group: u32,
    slot: u32,
    /// Index of its first value in the close's value buffer.
    first: usize,
}

/// Aggregation state; see the module doc.
pub struct Aggregator {
    window_ns: i64,
    grace_ns: i64,
    future_ns: i64,
    ring_capacity: usize,
    stats: Vec<Stat>,
    quantiles: Vec<u16>,
    slots: Vec<Option<Slot>>,
    closed_before: i64,
    registry: Registry,
    metrics: Arc<Metrics>,
}

impl Aggregator {
    /// `now` is the wall clock at start: windows that ended (plus grace) before it are closed.
    pub fn new(
        cfg: &AggregationConfig,
        registry: Registry,
        metrics: Arc<Metrics>,
        now: TimestampNs,
    ) -> Aggregator {
        let stats: Vec<Stat> = cfg.stats.iter().filter_map(|s| Stat::parse(s)).collect();
        let quantiles = stats
            .iter()
            .filter_map(|s| match s {
                Stat::Quantile(q) => Some(*q),
                _ => None,
            })
            .collect();
        let window_ns = (cfg.window_secs.max(1) as i64).saturating_mul(NANOS_PER_SEC);
        let grace_ns = (cfg.grace_secs as i64).saturating_mul(NANOS_PER_SEC);
        Aggregator {
            window_ns,
            grace_ns,
            future_ns: (cfg.future_tolerance_secs as i64).saturating_mul(NANOS_PER_SEC),
            ring_capacity: cfg.ring_capacity,
            stats,
            quantiles,
            slots: Vec::new(),
            closed_before: (now - grace_ns).div_euclid(window_ns),
            registry,
            metrics,
        }
    }

    /// Adds one reading; returns false (and counts why) if it was dropped.
    pub fn insert(&mut self, r: Reading, now: TimestampNs) -> bool {
        if !r.value.is_finite() {
            return self.drop(DropReason::NonFinite);
        }
        if r.ts > now.saturating_add(self.future_ns) {
            return self.drop(DropReason::Future);
        }
        let window = r.ts.div_euclid(self.window_ns);
        if window < self.closed_before {
            return self.drop(DropReason::Late);
        }
        let idx = r.series.0 as usize;
        if idx >= self.slots.len() {
            self.slots.resize_with(idx + 1, || None);
        }
        if self.slots[idx].is_none() {
            let Some(info) = self.registry.info(r.series) else {
                return self.drop(DropReason::SeriesLimit);
            };
            self.slots[idx] = Some(self.new_slot(info));
            self.metrics.series.fetch_add(1, Relaxed);
        }
        if let Some(slot) = &mut self.slots[idx] {
            slot.state.insert(window, r.value);
        }
        self.metrics.readings_aggregated.fetch_add(1, Relaxed);
        true
    }

    fn drop(&self, reason: DropReason) -> bool {
        self.metrics.dropped(reason);
        false
    }

    fn new_slot(&self, info: SeriesInfo) -> Slot {
        let field_keys = self
            .stats
            .iter()
            .map(|s| format!("{}_{}", info.quantity, s.field_suffix()))
            .collect();
        Slot {
            state: SeriesState::new(self.ring_capacity),
            info,
            field_keys,
        }
    }

    /// Closes every window whose end + grace is before `now`.
    pub fn close_due(&mut self, now: TimestampNs) -> Option<WindowBatch> {
        let due = (now - self.grace_ns).div_euclid(self.window_ns);
        if due <= self.closed_before {
            return None;
        }
        self.closed_before = due;
        self.close_before(due)
    }

    /// Closes every open window, current ones included (shutdown: partial windows).
    pub fn flush(&mut self) -> Option<WindowBatch> {
        self.close_before(i64::MAX)
    }

    fn close_before(&mut self, window: i64) -> Option<WindowBatch> {
        let mut closed: Vec<Closed> = Vec::new();
        let mut values: Vec<FieldValue> = Vec::new();
        let stats = &self.stats;
        let quantiles = &self.quantiles;
        let mut approximate = 0u64;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            if !slot.state.has_open() {
                continue;
            }
            let group = slot.info.group.0;
            slot.state
                .close_before(window, quantiles, &mut |s: &Stats| {
                    closed.push(Closed {
                        window: s.window,
                        group,
                        slot: i as u32,
                        first: values.len(),
                    });
                    approximate += u64::from(s.approximate);
                    values.extend(stats.iter().map(|st| field_value(*st, s)));
                });
        }
        if closed.is_empty() {
            return None;
        }
        self.metrics
            .windows_closed
            .fetch_add(closed.len() as u64, Relaxed);
        self.metrics
            .approximate_percentiles
            .fetch_add(approximate, Relaxed);
        closed.sort_by_key(|c| (c.window, c.group, c.slot));
        Some(self.encode(&closed, &values))
    }

    /// One point per (window, group): the fields of all its series together.
    fn encode(&self, closed: &[Closed], values: &[FieldValue]) -> WindowBatch {
        let mut batch = WindowBatch {
            payload: String::with_capacity(closed.len() * 160),
            points: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
        };
        let n = self.stats.len();
        let mut fields: Vec<(&str, FieldValue)> = Vec::new();
        for run in closed.chunk_by(|a, b| a.window == b.window && a.group == b.group) {
            fields.clear();
            let mut key = None;
            for c in run {
                let Some(slot) = self.slots.get(c.slot as usize).and_then(Option::as_ref) else {
                    continue;
                };
                key = Some(&slot.info.group_key);
                for (k, v) in slot.field_keys.iter().zip(&values[c.first..c.first + n]) {
                    fields.push((k.as_str(), v.clone()));
                }
            }
            let Some(key) = key else { continue };
            let ts = run[0].window.saturating_mul(self.window_ns);
            let point = PointRef {
                measurement: &key.measurement,
                tags: &key.tags,
                fields: &fields,
                ts: Some(ts),
            };
            match encode(&point, &mut batch.payload) {
                Ok(_) => {
                    batch.points += 1;
                    batch.min_ts = batch.min_ts.min(ts);
                    batch.max_ts = batch.max_ts.max(ts);
                }
                Err(e) => {
                    self.metrics.encode_errors.fetch_add(1, Relaxed);
                    tracing::warn!(error = %e, point = %key, "point not encodable, skipped");
                }
            }
        }
        self.metrics
            .points_emitted
            .fetch_add(u64::from(batch.points), Relaxed);
        batch
    }

    /// The task loop: readings in, batches out; flushes partial windows when the input closes.
    pub async fn run(mut self, mut input: mpsc::Receiver<Reading>, out: mpsc::Sender<WindowBatch>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Readings are taken in batches: one wake-up and one clock read per batch, not per
        // reading (the clock only bounds future timestamps; a batch is microseconds old).
        let mut batch = Vec::with_capacity(RECV_BATCH);
        loop {
            tokio::select! {
                n = input.recv_many(&mut batch, RECV_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    let now = now_ns();
                    for r in batch.drain(..) {
                        self.insert(r, now);
                    }
                }
                _ = tick.tick() => {
                    let now = now_ns();
                    self.metrics.aggregator_heartbeat.store(now / NANOS_PER_SEC, Relaxed);
                    if let Some(batch) = self.close_due(now) {
                        self.metrics.window_closed(now);
                        if out.send(batch).await.is_err() {
                            tracing::error!("window output closed; aggregator stops");
                            return;
                        }
                    }
                }
            }
        }
        if let Some(batch) = self.flush() {
            tracing::info!(points = batch.points, "flushed open windows at shutdown");
            let _ = out.send(batch).await;
        }
    }
}

fn field_value(stat: Stat, s: &Stats) -> FieldValue {
    match stat {
        Stat::Count => FieldValue::Int(i64::try_from(s.count).unwrap_or(i64::MAX)),
        // Percentiles come from f32 samples (or a 1 % sketch): print them at f32 precision,
        // `10.7` rather than the widened `10.699999809265137`.
        Stat::Quantile(_) => FieldValue::Float(s.get(stat).map_or(f64::NAN, f32_shortest)),
        other => FieldValue::Float(s.get(other).unwrap_or(f64::NAN)),
    }
}

/// `v` rounded to the nearest f32 and written back as the shortest decimal of that f32.
fn f32_shortest(v: f64) -> f64 {
    let f = v as f32;
    if !f.is_finite() {
        return v;
    }
    f.to_string().parse().unwrap_or(v)
}

#[cfg(test)]
mod tests;
