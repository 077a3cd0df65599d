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
//!
//! Read bottom-up, one file per step:
//! - this file: the state ([`Aggregator`], one slot per series) and how it is built;
//! - `ingest.rs`: a reading in: checks, the hold until the clock syncs, counter totals;
//! - `calibrate.rs`: per-sensor calibration of the closed windows, before anything reads them;
//! - `close.rs`: which windows are due (tick, [`Aggregator::close_due`],
//!   [`Aggregator::flush`]) and their re-emission when late readings correct them;
//! - `encode.rs`: closed windows to points, one [`WindowBatch`] per close;
//! - `hooks.rs`: the privacy path's and sensor health's share of readings and closes;
//! - `reconfigure.rs`: a reload's new settings, taken between closes;
//! - `publish.rs`: closes and live sensor states for the status page ([`crate::pipeline::status`]);
//! - `state.rs`: what survives a restart (counter totals, occupancy, sensor intervals);
//! - `task.rs`: the task loop ([`Aggregator::run`]): input, tick, flush at the end.

use std::sync::Arc;

use crate::clock::{ClockTracker, Now};
use crate::config::{AggregationConfig, ClockConfig, Stat, SyncMode};
use crate::domain::footfall::TotalCounter;
use crate::domain::Domain;
use crate::pipeline::field_names::{FieldKeys, FieldNames};
use crate::pipeline::timeline::{Hold, Timeline};
use crate::pipeline::window::SeriesState;
use crate::pipeline::AggregatorMetrics;
use crate::reading::{Registry, SeriesInfo, TimestampNs, NANOS_PER_SEC};

mod calibrate;
mod close;
mod encode;
mod hooks;
mod ingest;
mod publish;
mod reconfigure;
mod state;
mod task;

pub use encode::WindowBatch;
pub use reconfigure::Reconfigure;
pub(crate) use task::TICK;

/// One series' state.
struct Slot {
    state: SeriesState,
    info: SeriesInfo,
    /// `<quantity>_<stat>` for each configured stat, shared per quantity; empty for counters.
    field_keys: FieldKeys,
    /// Last total of a `counter_total` series.
    total: TotalCounter,
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
    metrics: Arc<AggregatorMetrics>,
    /// Privacy sketches and sensor health (`hooks.rs`); off unless `with_hooks` is called.
    hooks: hooks::Hooks,
    /// Derived fields: indices, humidity correction, footfall (`crate::domain`).
    derive: Domain,
    /// Settings a reload sends (`reconfigure.rs`); none unless `with_updates` is called.
    updates: Option<tokio::sync::mpsc::Receiver<Reconfigure>>,
    /// The state file: restore at start, snapshots after closes (`state.rs`).
    persist: state::Persist,
    /// What the status page shows (`publish.rs`); none unless `with_status` is called.
    status: Option<crate::pipeline::status::StatusCollector>,
}

impl Aggregator {
    /// `now` is the wall clock at start: windows that ended (plus grace) before it are closed.
    /// The clock is taken as synchronised, with boot time equal to wall time.
    pub fn new(
        cfg: &AggregationConfig,
        registry: Registry,
        metrics: Arc<AggregatorMetrics>,
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
        metrics: Arc<AggregatorMetrics>,
        now: Now,
    ) -> Aggregator {
        let (stats, quantiles) = parse_stats(&cfg.stats);
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
            hooks: hooks::Hooks::default(),
            derive: Domain::default(),
            updates: None,
            persist: state::Persist::default(),
            status: None,
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
}

/// The configured statistics, and the percentiles among them.
fn parse_stats(names: &[String]) -> (Vec<Stat>, Vec<u16>) {
    let stats: Vec<Stat> = names.iter().filter_map(|s| Stat::parse(s)).collect();
    let quantiles = stats
        .iter()
        .filter_map(|s| match s {
            Stat::Quantile(q) => Some(*q),
            _ => None,
        })
        .collect();
    (stats, quantiles)
}

#[cfg(test)]
mod clock_tests;
#[cfg(test)]
mod tests;
