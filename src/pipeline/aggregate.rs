//! The aggregator: the one task that owns every series' state. It takes readings from the
//! sources' channel, closes clock-aligned windows on a tick, and hands each close's points,
//! encoded as one line-protocol batch, downstream.
//!
//! Windows are tumbling and aligned to the epoch: window `w` covers
//! `[w * len, (w + 1) * len)`. It is emitted once the wall clock passes its end plus the close
//! delay, and its state is kept until its end plus `grace`: a reading arriving in between
//! re-emits it corrected; later ones are late and dropped (counted). When and which windows
//! close is the [`Timeline`]'s business; which clock to believe is [`crate::clock`]'s: while
//! the clock has never been synchronised, readings are held, not placed. A point's timestamp
//! is its window's start, so re-sending a window overwrites the same point in the store.
//!
//! Counter series (kind `counter` / `counter_total`, see [`crate::reading::QuantityKind`]) get
//! no statistics fields: a `counter_total` reading becomes its increment on insert (the last
//! total per series lives in the slot), and at close [`Domain::derive`] turns each window's
//! sum into field `<quantity>` and adds the domain fields (indices, humidity correction,
//! footfall) to the points.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::clock::{Clock, ClockConfig, ClockTracker, Now, SyncMode};
use crate::config::AggregationConfig;
use crate::domain::footfall::{Step, TotalCounter};
use crate::domain::{DerivedField, Domain, WindowValue};
use crate::line_protocol::{encode, FieldValue, PointRef};
use crate::pipeline::field_names::{FieldKeys, FieldNames};
use crate::pipeline::timeline::{Hold, Placement, Timeline};
use crate::pipeline::window::{SeriesState, Stat, Stats};
use crate::reading::{
    now_ns, QuantityKind, Reading, Registry, SeriesInfo, TimeBase, TimestampNs, NANOS_PER_SEC,
};
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
    /// `<quantity>_<stat>` for each configured stat, shared per quantity; empty for counters.
    field_keys: FieldKeys,
    /// Last total of a `counter_total` series.
    total: TotalCounter,
}

/// One series' closed window, flattened for grouping into points.
struct Closed {
    window: i64,
    group: u32,
    slot: u32,
    /// Index of its first value in the close's value buffer.
    first: usize,
    /// For the domain step, whatever stats are configured.
    mean: f64,
    sum: f64,
}

/// Aggregation state; see the module doc.
pub struct Aggregator {
    window_ns: i64,
    future_ns: i64,
    ring_capacity: usize,
    stats: Vec<Stat>,
    quantiles: Vec<u16>,
    /// Boxed: the vector grows by doubling, and its spare capacity then costs a pointer per
    /// entry rather than a whole slot.
    slots: Vec<Option<Box<Slot>>>,
    field_names: FieldNames,
    timeline: Timeline,
    tracker: ClockTracker,
    sync_mode: SyncMode,
    /// Readings waiting for the clock's first synchronisation.
    hold: Hold,
    /// Boot time when the aggregator started: where the timeline starts once the clock is
    /// known.
    start_boot: i64,
    registry: Registry,
    metrics: Arc<Metrics>,
    /// Privacy sketches and sensor health (see `domain.rs`); off unless `with_domain` is called.
    domain: domain::Domain,
    /// Derived fields: indices, humidity correction, footfall (`crate::domain`).
    derive: Domain,
}

impl Aggregator {
    /// `now` is the wall clock at start: windows that ended (plus grace) before it are closed.
    /// The clock is taken as synchronised, with boot time equal to wall time.
    pub fn new(
        cfg: &AggregationConfig,
        registry: Registry,
        metrics: Arc<Metrics>,
        now: TimestampNs,
    ) -> Aggregator {
        let clock = ClockConfig {
            sync: SyncMode::Assume,
            ..ClockConfig::default()
        };
        Aggregator::with_clock(cfg, &clock, registry, metrics, Now::synced_at(now))
    }

    /// Like [`Aggregator::new`], starting from the clock reading `now`: if it is not
    /// synchronised, readings are held until a [`Aggregator::tick`] sees that it is.
    pub fn with_clock(
        cfg: &AggregationConfig,
        clock: &ClockConfig,
        registry: Registry,
        metrics: Arc<Metrics>,
        now: Now,
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
        let delay_ns = (cfg.close_delay_secs as i64).saturating_mul(NANOS_PER_SEC);
        let mut agg = Aggregator {
            window_ns,
            future_ns: (cfg.future_tolerance_secs as i64).saturating_mul(NANOS_PER_SEC),
            ring_capacity: cfg.ring_capacity,
            stats,
            quantiles,
            slots: Vec::new(),
            field_names: FieldNames::default(),
            timeline: Timeline::new(window_ns, delay_ns, grace_ns),
            tracker: ClockTracker::new(clock.step_threshold_ns()),
            sync_mode: clock.sync,
            hold: Hold::new(clock.hold_max_readings),
            start_boot: now.boot,
            registry,
            metrics,
            domain: domain::Domain::default(),
            derive: Domain::default(),
        };
        agg.observe(now);
        agg
    }

    /// Sets the derived-field layer (indices, humidity correction, footfall); the default has
    /// only the counter fields.
    pub fn with_derive(mut self, derive: Domain) -> Aggregator {
        self.derive = derive;
        self
    }

    /// Adds one reading (`now`: the wall clock); returns false (and counts why) if it was
    /// dropped. Before the clock was ever synchronised the reading is held instead.
    pub fn insert(&mut self, r: Reading, now: TimestampNs) -> bool {
        if !r.value.is_finite() {
            return self.drop(DropReason::NonFinite);
        }
        if !self.tracker.trusted() {
            if !self.hold.push(r) {
                self.metrics.clock.hold_dropped(self.hold.len());
            }
            self.metrics
                .clock
                .held_readings
                .store(self.hold.len() as i64, Relaxed);
            return true;
        }
        let ts = match r.base {
            TimeBase::Wall => r.ts,
            TimeBase::Boot => r.ts.saturating_add(self.tracker.offset().unwrap_or(0)),
        };
        // Judged against a synchronised clock only: held readings come here once it is.
        if ts > now.saturating_add(self.future_ns) {
            return self.drop(DropReason::Future);
        }
        let window = self.timeline.window_of(ts);
        if self.timeline.place(window) == Placement::Late {
            return self.drop(DropReason::Late);
        }
        // Health keeps last-seen times against the wall clock: hand it the wall time, not
        // the boot-clock stamp of a reading stamped at receipt.
        let wall = Reading {
            ts,
            base: TimeBase::Wall,
            ..r
        };
        if self.observe_domain(&wall, window) {
            return true;
        }
        let idx = r.series.0 as usize;
        if idx >= self.slots.len() {
            self.slots.resize_with(idx + 1, || None);
        }
        if self.slots[idx].is_none() {
            let Some(info) = self.registry.info(r.series) else {
                return self.drop(DropReason::SeriesLimit);
            };
            self.slots[idx] = Some(Box::new(self.new_slot(info)));
            self.metrics.series.fetch_add(1, Relaxed);
        }
        if let Some(slot) = &mut self.slots[idx] {
            let mut value = r.value;
            if slot.info.kind.kind == QuantityKind::CounterTotal {
                let step;
                (value, step) = slot.total.step(r.value, slot.info.kind.wrap);
                let m = &self.metrics.domain;
                match step {
                    Step::Reset => m.counter_resets.fetch_add(1, Relaxed),
                    Step::Wrap => m.counter_wraps.fetch_add(1, Relaxed),
                    Step::First | Step::Up => 0,
                };
            }
            slot.state.insert(window, value);
        }
        self.metrics.readings_aggregated.fetch_add(1, Relaxed);
        true
    }

    fn drop(&self, reason: DropReason) -> bool {
        self.metrics.dropped(reason);
        false
    }

    fn new_slot(&mut self, info: SeriesInfo) -> Slot {
        let field_keys = match info.kind.kind {
            QuantityKind::Gauge => self.field_names.gauge(&info.quantity, &self.stats),
            QuantityKind::Counter | QuantityKind::CounterTotal => self.field_names.none(),
        };
        // Samples serve percentiles only (every other stat is a running value): a series
        // that reports none, counters included, keeps a one-sample ring and no sketch,
        // saving ~250 B of ring and, for busy series, a sketch per window.
        let percentiles = !self.quantiles.is_empty() && info.kind.kind == QuantityKind::Gauge;
        let state = match percentiles {
            true => SeriesState::new(self.ring_capacity),
            false => SeriesState::with_sketch_alpha(1, None),
        };
        Slot {
            state,
            info,
            field_keys,
            total: TotalCounter::default(),
        }
    }

    /// One clock reading per tick: follows sync and steps, then emits what is due.
    pub fn tick(&mut self, now: Now) -> Option<WindowBatch> {
        self.observe(now);
        self.close_due(now.wall)
    }

    fn observe(&mut self, now: Now) {
        let obs = self.tracker.observe(now);
        if let Some(synced) = obs.sync_changed {
            self.metrics
                .clock
                .sync_changed(synced, self.sync_mode, self.hold.len());
        }
        if obs.became_trusted {
            self.place_held(now);
        }
        if let Some(delta) = obs.step_ns {
            self.metrics.clock.step(delta);
            if delta < 0 {
                self.timeline.close_at(now.wall.saturating_sub(delta));
            }
        }
    }

    /// The clock is synchronised for the first time: start the timeline where the run
    /// started and place what was held, each reading as if it had arrived just now.
    fn place_held(&mut self, now: Now) {
        self.metrics.clock.trusted();
        let offset = now.wall.saturating_sub(now.boot);
        self.timeline
            .start_at(self.start_boot.saturating_add(offset));
        let held = self.hold.take();
        if !held.is_empty() {
            tracing::info!(
                readings = held.len(),
                "placing readings held until clock sync"
            );
        }
        for r in held {
            self.insert(r, now.wall);
        }
        self.metrics.clock.held_readings.store(0, Relaxed);
    }

    /// Emits every window whose end + close delay is before `now` (and corrections), and
    /// forgets those whose end + grace is. Nothing while the clock was never synchronised.
    pub fn close_due(&mut self, now: TimestampNs) -> Option<WindowBatch> {
        if !self.tracker.trusted() {
            return None;
        }
        let from = self.domain_floor();
        let due = self.timeline.advance(now)?;
        let batch = self.close_before(due.emit_before);
        for slot in self.slots.iter_mut().flatten() {
            slot.state.forget_before(due.retain_before);
        }
        if due.emit_before <= from {
            return batch;
        }
        self.domain.closed_before = due.emit_before;
        self.close_domain(batch, from, due.emit_before, now)
    }

    /// Windows below this were handed to privacy and health already: the last emit floor,
    /// or where the timeline started.
    fn domain_floor(&self) -> i64 {
        match self.domain.closed_before {
            i64::MIN => self.timeline.emit_before(),
            floor => floor,
        }
    }

    /// Emits every open window with unsent readings, current ones included (shutdown:
    /// partial windows). Held readings cannot be placed: they are lost, and logged.
    pub fn flush(&mut self) -> Option<WindowBatch> {
        if !self.hold.is_empty() {
            tracing::error!(
                readings = self.hold.len(),
                "clock never synchronized: held readings lost at shutdown"
            );
        }
        let batch = self.close_before(i64::MAX);
        for slot in self.slots.iter_mut().flatten() {
            slot.state.forget_before(i64::MAX);
        }
        let from = self.domain_floor();
        self.close_domain(batch, from, i64::MAX, now_ns())
    }

    fn close_before(&mut self, window: i64) -> Option<WindowBatch> {
        self.widen_corrections(window);
        // Sized exactly: at 10k series these are megabytes, and doubling growth would make
        // the close's peak (VmHWM) up to twice that.
        let due: usize = (self.slots.iter().flatten())
            .map(|s| s.state.dirty_before(window))
            .sum();
        let mut closed: Vec<Closed> = Vec::with_capacity(due);
        let mut values: Vec<f64> = Vec::with_capacity(due * self.stats.len());
        let stats = &self.stats;
        let quantiles = &self.quantiles;
        let mut approximate = 0u64;
        let mut reemitted = 0u64;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            if !slot.state.has_open() {
                continue;
            }
            let group = slot.info.group.0;
            slot.state
                .emit_dirty_before(window, quantiles, &mut |s: &Stats| {
                    closed.push(Closed {
                        window: s.window,
                        group,
                        slot: i as u32,
                        first: values.len(),
                        mean: s.mean,
                        sum: s.sum,
                    });
                    approximate += u64::from(s.approximate);
                    reemitted += u64::from(s.reemitted);
                    values.extend(stats.iter().map(|st| stat_value(*st, s)));
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
        self.metrics
            .clock
            .windows_reemitted
            .fetch_add(reemitted, Relaxed);
        // (window, group, slot) is unique: the unstable sort gives the same order without the
        // stable sort's scratch buffer of half the close.
        closed.sort_unstable_by_key(|c| (c.window, c.group, c.slot));
        Some(self.encode(&closed, &values))
    }

    /// A correction re-emits its whole point, not just the corrected series: the store
    /// overwrites field by field, and derived fields (indices, humidity correction) need every
    /// series of the group, or a late PM10 reading would rewrite `eaqi` from PM10 alone.
    fn widen_corrections(&mut self, window: i64) {
        let mut corrected: Vec<(u32, i64)> = Vec::new();
        for slot in self.slots.iter().flatten() {
            let group = slot.info.group.0;
            corrected.extend(slot.state.corrections_before(window).map(|w| (group, w)));
        }
        if corrected.is_empty() {
            return;
        }
        corrected.sort_unstable();
        corrected.dedup();
        for slot in self.slots.iter_mut().flatten() {
            let group = slot.info.group.0;
            let from = corrected.partition_point(|(g, _)| *g < group);
            for (_, w) in corrected[from..].iter().take_while(|(g, _)| *g == group) {
                slot.state.mark_dirty(*w);
            }
        }
    }

    /// One point per (window, group): the fields of all its series together, then the fields
    /// the domain step derives from them. Point by point, so that the close holds the payload
    /// and the flat value buffer, never every derived field at once.
    fn encode(&mut self, closed: &[Closed], values: &[f64]) -> WindowBatch {
        // Points of a close look alike: the payload is sized from the first one (plus 1/16)
        // rather than grown by doubling, which would leave up to half of it unused (MiBs).
        let points = closed
            .chunk_by(|a, b| a.window == b.window && a.group == b.group)
            .count();
        let mut batch = WindowBatch {
            payload: String::new(),
            points: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
        };
        let (stats, slots, metrics) = (&self.stats, &self.slots, &self.metrics);
        let n = stats.len();
        let window_value = |c: &Closed| {
            let slot = slots.get(c.slot as usize)?.as_ref()?;
            Some(WindowValue {
                window: c.window,
                group: c.group,
                key: &slot.info.group_key,
                quantity: &slot.info.quantity,
                kind: slot.info.kind.kind,
                mean: c.mean,
                sum: c.sum,
                values: values.get(c.first..c.first + n)?,
            })
        };
        let mut run_values: Vec<WindowValue<'_>> = Vec::new();
        let mut derived: Vec<DerivedField> = Vec::new();
        for same_window in closed.chunk_by(|a, b| a.window == b.window) {
            // Humidity corrects PM of other points (same site): gather it before the points.
            let humidity: Vec<WindowValue<'_>> = (same_window.iter())
                .filter_map(window_value)
                .filter(Domain::is_humidity)
                .collect();
            for run in same_window.chunk_by(|a, b| a.group == b.group) {
                run_values.clear();
                run_values.extend(run.iter().filter_map(window_value));
                let Some(first) = run_values.first() else {
                    continue;
                };
                let key = first.key;
                derived.clear();
                self.derive.derive_point(
                    &run_values,
                    &humidity,
                    stats,
                    self.window_ns,
                    &metrics.domain,
                    &mut derived,
                );
                let mut fields: Vec<(&str, FieldValue)> =
                    Vec::with_capacity(run_values.len() * n + derived.len());
                for c in run {
                    let Some(slot) = slots.get(c.slot as usize).and_then(Option::as_ref) else {
                        continue;
                    };
                    let own = values.get(c.first..).unwrap_or_default();
                    let named = slot.field_keys.iter().zip(stats).zip(own);
                    fields.extend(named.map(|((k, st), x)| (&**k, field_value(*st, *x))));
                }
                fields.extend(derived.iter().map(|d| (d.key.as_str(), d.value.clone())));
                if fields.is_empty() {
                    continue;
                }
                let ts = run[0].window.saturating_mul(self.window_ns);
                let point = PointRef {
                    measurement: &key.measurement,
                    tags: &key.tags,
                    fields: &fields,
                    ts: Some(ts),
                };
                match encode(&point, &mut batch.payload) {
                    Ok(_) => {
                        if batch.points == 0 {
                            let each = batch.payload.len();
                            let want = each.saturating_mul(points);
                            batch
                                .payload
                                .reserve_exact((want + want / 16).saturating_sub(each));
                        }
                        batch.points += 1;
                        batch.min_ts = batch.min_ts.min(ts);
                        batch.max_ts = batch.max_ts.max(ts);
                    }
                    Err(e) => {
                        metrics.encode_errors.fetch_add(1, Relaxed);
                        tracing::warn!(error = %e, point = %key, "point not encodable, skipped");
                    }
                }
            }
        }
        metrics
            .points_emitted
            .fetch_add(u64::from(batch.points), Relaxed);
        batch
    }

    /// The task loop: readings in, batches out; flushes partial windows when the input closes.
    pub async fn run(
        mut self,
        clock: Clock,
        mut input: mpsc::Receiver<Reading>,
        out: mpsc::Sender<WindowBatch>,
    ) {
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
                    let now = clock.wall_ns();
                    for r in batch.drain(..) {
                        self.insert(r, now);
                    }
                }
                _ = tick.tick() => {
                    let now = clock.now();
                    let started = (now_ns(), std::time::Instant::now());
                    self.metrics.aggregator_heartbeat.store(started.0 / NANOS_PER_SEC, Relaxed);
                    if let Some(batch) = self.tick(now) {
                        // From the tick's start: the close's own work is part of the latency.
                        self.metrics.window_closed(started.0);
                        self.metrics.stages.close.record(started.1.elapsed());
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

/// A stat's value as kept in the close's flat buffer: 8 bytes, the count included (exact
/// below 2^53), rather than a 32-byte [`FieldValue`] per field.
fn stat_value(stat: Stat, s: &Stats) -> f64 {
    match stat {
        Stat::Count => s.count as f64,
        // Percentiles come from f32 samples (or a 1 % sketch): print them at f32 precision,
        // `10.7` rather than the widened `10.699999809265137`.
        Stat::Quantile(_) => s.get(stat).map_or(f64::NAN, f32_shortest),
        other => s.get(other).unwrap_or(f64::NAN),
    }
}

/// The field for a [`stat_value`]: the count is written as an integer.
fn field_value(stat: Stat, v: f64) -> FieldValue {
    match stat {
        // `as` saturates; a count is never negative or NaN.
        Stat::Count => FieldValue::Int(v as i64),
        _ => FieldValue::Float(v),
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
mod clock_tests;
mod domain;
#[cfg(test)]
mod tests;
