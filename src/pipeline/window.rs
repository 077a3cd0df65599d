//! Per-series window state: the sample ring plus one running accumulator per open
//! window, and the [`Stats`] a window yields when the aggregator closes it.
//!
//! The aggregator owns one [`SeriesState`] per series and does all clock work: it maps a
//! reading to `window = ts.div_euclid(window_len_ns)`, drops late readings, and calls
//! [`SeriesState::close_before`] on each tick. Nothing here allocates per reading once warm.
//!
//! Statistics, and why they are what they are:
//! - count, sum, min, max and last are exact running values in `f64`. `mean` is `sum / count`
//!   (correctly rounded whenever the sum is exact), falling back to Welford's running mean if
//!   the sum overflowed. `stddev` is the *sample* standard deviation (divides by n - 1, as
//!   Telegraf's basicstats `stdev` does) from Welford's update, and 0 for a single reading;
//!   both are kept in a power-of-two scale ([`moments`]) so readings near the ends of `f64`'s
//!   range (±1e300, ±1e-300) neither overflow nor underflow.
//! - Quantiles use the "lower" rank: the value at 0-based rank `floor(p * (n - 1))` of the sorted
//!   readings (for [1, 2, 3, 4], p50 = 2). They are exact (computed at close from the ring) while
//!   every reading of the window is still in the ring. The ring keeps values as `f32`, so exact
//!   quantiles are of `f32`-rounded readings (relative error <= 6e-8), then clamped into the
//!   window's exact [min, max]; the lowest and highest ranks are the exact min and max.
//! - Samples carry the window index truncated to `u32`, so open windows must be less than 2^32
//!   windows apart (136 years of 1 s windows); if not, their quantiles are left out.
//! - A window that outgrows the ring gets a [`Sketch`] the moment one of its samples is about to
//!   be overwritten: the sketch takes all of the window's samples still in the ring (none lost
//!   yet) and every later reading of it, and the window's quantiles come from it, within the
//!   sketch's relative error alpha (default 1%), with [`Stats::approximate`] set. With sketches
//!   disabled such a window has no quantiles at all rather than ones of the newest subset.
//!
//! Allocation: [`SeriesState::new`] allocates the ring and room for two open windows. `insert`
//! allocates only to open a third simultaneously open window, to create a window's sketch, or
//! when a sketched window's values leave the sketch's current key range. Exact quantiles sort a
//! copy in a per-thread scratch `Vec` that grows once to the largest window seen (at most the
//! ring capacity), one per worker thread the aggregator task runs on; callers that prefer to own
//! it use [`SeriesState::close_before_with`].

use super::ring::{Ring, Sample};
use super::sketch::{Sketch, DEFAULT_ALPHA};
use crate::config::{Stat, MAX_QUANTILES};
use moments::Moments;
use quantiles::{window_stats, with_scratch};

/// Default ring capacity per series.
pub const DEFAULT_RING_CAPACITY: usize = 32;
/// Open-window slots allocated up front: the current window plus one in its grace period.
const PREALLOCATED_WINDOWS: usize = 2;

/// What a closed window yields.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Window index (`ts.div_euclid(window_len_ns)`).
    pub window: i64,
    pub count: u64,
    pub sum: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// The last reading inserted (arrival order).
    pub last: f64,
    /// Sample standard deviation (n - 1); 0 for one reading.
    pub stddev: f64,
    /// `(per-mille, value)` for the first `quantile_len` entries; see [`Stats::quantiles`].
    pub quantiles: [(u16, f64); MAX_QUANTILES],
    pub quantile_len: usize,
    /// True when the quantiles came from the sketch (the window overflowed the ring).
    pub approximate: bool,
    /// True when this window was emitted before: this is a correction by late readings.
    pub reemitted: bool,
}

impl Stats {
    /// The computed quantiles, in the order requested. Empty when none were requested, or the
    /// window overflowed the ring with sketches disabled.
    pub fn quantiles(&self) -> &[(u16, f64)] {
        self.quantiles.get(..self.quantile_len).unwrap_or(&[])
    }

    /// The value of `stat`; `None` for a quantile that was not computed.
    pub fn get(&self, stat: Stat) -> Option<f64> {
        Some(match stat {
            Stat::Mean => self.mean,
            Stat::Min => self.min,
            Stat::Max => self.max,
            Stat::Count => self.count as f64,
            Stat::Sum => self.sum,
            Stat::Last => self.last,
            Stat::Stddev => self.stddev,
            Stat::Quantile(pm) => return self.quantiles().iter().find(|q| q.0 == pm).map(|q| q.1),
        })
    }
}

/// Running statistics of one open window.
#[derive(Debug)]
struct Accumulator {
    window: i64,
    /// Ring sequence number of this window's first sample: later samples with the same
    /// window index are this window's, and it has lost none while the ring still holds it.
    first_seq: u64,
    count: u64,
    sum: f64,
    /// Welford's running mean and sum of squared deviations, overflow-safe.
    moments: Moments,
    min: f64,
    max: f64,
    last: f64,
    sketch: Option<Box<Sketch>>,
    /// Emitted at least once (its state is kept for late corrections until forgotten).
    emitted: bool,
    /// Has readings not yet emitted.
    dirty: bool,
}

impl Accumulator {
    fn new(window: i64, first_seq: u64) -> Self {
        Accumulator {
            window,
            first_seq,
            count: 0,
            sum: 0.0,
            moments: Moments::new(),
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            last: f64::NAN,
            sketch: None,
            emitted: false,
            dirty: false,
        }
    }

    fn add(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.moments.add(value, self.count);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.last = value;
        self.dirty = true;
        if let Some(sketch) = &mut self.sketch {
            sketch.add(value);
        }
    }

    /// Stats without quantiles.
    fn stats(&self) -> Stats {
        let n = self.count as f64;
        let mean = if self.sum.is_finite() {
            self.sum / n
        } else {
            // Rounding must not carry it past the readings (or to infinity).
            self.moments.mean().clamp(self.min, self.max)
        };
        let stddev = self.moments.sample_stddev(self.count);
        Stats {
            window: self.window,
            count: self.count,
            sum: self.sum,
            mean,
            min: self.min,
            max: self.max,
            last: self.last,
            stddev,
            quantiles: [(0, 0.0); MAX_QUANTILES],
            quantile_len: 0,
            approximate: false,
            reemitted: self.emitted,
        }
    }

    /// This window's values still in `ring`, oldest first.
    fn samples<'a>(&self, ring: &'a Ring) -> impl Iterator<Item = f32> + 'a {
        let (window, first_seq) = (self.window as u32, self.first_seq);
        ring.iter()
            .zip(ring.oldest_seq()..)
            .filter(move |(s, seq)| *seq >= first_seq && s.window == window)
            .map(|(s, _)| s.value)
    }
}

/// One series' ring and open windows.
#[derive(Debug)]
pub struct SeriesState {
    ring: Ring,
    /// Open windows, oldest first; usually one, two during a grace period.
    open: Vec<Accumulator>,
    /// Relative accuracy of new sketches; 0 disables them. `f32` keeps the struct small.
    sketch_alpha: f32,
}

impl SeriesState {
    /// A series with a ring of `ring_capacity` samples and sketches at the default alpha.
    pub fn new(ring_capacity: usize) -> Self {
        Self::with_sketch_alpha(ring_capacity, Some(DEFAULT_ALPHA))
    }

    /// Like [`SeriesState::new`]; `alpha` is the sketches' relative accuracy (see
    /// [`Sketch::new`] for its range), `None` (or a value <= 0) disables sketches, for
    /// deployments that report no quantiles.
    pub fn with_sketch_alpha(ring_capacity: usize, alpha: Option<f64>) -> Self {
        let alpha = alpha.filter(|a| *a > 0.0).map_or(0.0, |a| a as f32);
        SeriesState {
            ring: Ring::new(ring_capacity),
            open: Vec::with_capacity(PREALLOCATED_WINDOWS),
            sketch_alpha: alpha,
        }
    }

    /// Adds a reading to window `window`, opening it if needed. The caller has already
    /// dropped readings of closed windows.
    pub fn insert(&mut self, window: i64, value: f64) {
        let slot = self.open_slot(window);
        if self.ring.is_full() {
            self.sketch_overwritten_window();
        }
        self.ring.push(Sample::new(window, value));
        if let Some(acc) = self.open.get_mut(slot) {
            acc.add(value);
        }
    }

    /// Emits every open window with index < `window`, oldest first, with the `quantiles`
    /// (per-mille, at most [`MAX_QUANTILES`]) requested, then forgets them.
    pub fn close_before(&mut self, window: i64, quantiles: &[u16], emit: &mut impl FnMut(&Stats)) {
        let closing = self.closing_before(window);
        with_scratch(|scratch| self.close_first(closing, quantiles, scratch, emit));
    }

    /// Emits and forgets every open window (shutdown flush), like [`SeriesState::close_before`].
    pub fn close_all(&mut self, quantiles: &[u16], emit: &mut impl FnMut(&Stats)) {
        let closing = self.open.len();
        with_scratch(|scratch| self.close_first(closing, quantiles, scratch, emit));
    }

    /// [`SeriesState::close_before`] with a caller-owned scratch buffer for sorting.
    pub fn close_before_with(
        &mut self,
        window: i64,
        quantiles: &[u16],
        scratch: &mut Vec<f32>,
        emit: &mut impl FnMut(&Stats),
    ) {
        let closing = self.closing_before(window);
        self.close_first(closing, quantiles, scratch, emit);
    }

    /// Emits every open window with index < `window` that has readings not emitted yet
    /// (first emission, or a correction by late readings), oldest first, and keeps them: their
    /// state stays for later corrections until [`SeriesState::forget_before`].
    pub fn emit_dirty_before(
        &mut self,
        window: i64,
        quantiles: &[u16],
        emit: &mut impl FnMut(&Stats),
    ) {
        let requested = quantiles.get(..MAX_QUANTILES).unwrap_or(quantiles);
        let closing = self.closing_before(window);
        let (ring, open) = (&self.ring, &mut self.open);
        with_scratch(|scratch| {
            for acc in open.iter_mut().take(closing).filter(|a| a.dirty) {
                emit(&window_stats(ring, acc, requested, scratch));
                acc.emitted = true;
                acc.dirty = false;
            }
        });
    }

    /// How many windows [`SeriesState::emit_dirty_before`] would emit now, so a caller can
    /// size its buffers exactly.
    pub fn dirty_before(&self, window: i64) -> usize {
        self.open
            .iter()
            .take_while(|a| a.window < window)
            .filter(|a| a.dirty)
            .count()
    }

    /// Windows below `window` that were emitted and have changed since: corrections due.
    pub fn corrections_before(&self, window: i64) -> impl Iterator<Item = i64> + '_ {
        self.open
            .iter()
            .filter(move |a| a.window < window && a.emitted && a.dirty)
            .map(|a| a.window)
    }

    /// Marks the emitted, still retained window `window` for re-emission (another series of
    /// its point was corrected); no-op otherwise.
    pub fn mark_dirty(&mut self, window: i64) {
        if let Some(a) = self
            .open
            .iter_mut()
            .find(|a| a.window == window && a.emitted)
        {
            a.dirty = true;
        }
    }

    /// Forgets, without emitting, every open window with index < `window`.
    pub fn forget_before(&mut self, window: i64) {
        let closing = self.closing_before(window);
        self.open.drain(..closing);
    }

    /// True while some window is open.
    pub fn has_open(&self) -> bool {
        !self.open.is_empty()
    }

    /// (window, sum of its readings) of every retained window, oldest first: what the state
    /// file keeps of counter series, so a window a restart cuts in two is re-emitted whole.
    pub fn window_sums(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.open.iter().map(|a| (a.window, a.sum))
    }

    /// Indices of the open windows, oldest first.
    pub fn open_windows(&self) -> impl Iterator<Item = i64> + '_ {
        self.open.iter().map(|a| a.window)
    }

    /// The most recent reading (as stored: `f32`-rounded), for status and stuck detection.
    pub fn last_value(&self) -> Option<f64> {
        self.ring.latest().map(|s| f64::from(s.value))
    }

    /// The sample ring, for sliding views and the status page.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Heap bytes owned (ring, open-window slots, sketches); add `size_of::<SeriesState>()`
    /// for the total.
    pub fn heap_bytes(&self) -> usize {
        let sketches: usize = self
            .open
            .iter()
            .filter_map(|a| a.sketch.as_deref())
            .map(|s| std::mem::size_of::<Sketch>() + s.heap_bytes())
            .sum();
        self.ring.heap_bytes()
            + self.open.capacity() * std::mem::size_of::<Accumulator>()
            + sketches
    }

    /// Number of open windows with index < `window` (they are the first ones).
    fn closing_before(&self, window: i64) -> usize {
        self.open.iter().take_while(|a| a.window < window).count()
    }

    /// Emits the `closing` oldest open windows, then forgets them.
    fn close_first(
        &mut self,
        closing: usize,
        quantiles: &[u16],
        scratch: &mut Vec<f32>,
        emit: &mut impl FnMut(&Stats),
    ) {
        let requested = quantiles.get(..MAX_QUANTILES).unwrap_or(quantiles);
        for acc in self.open.get(..closing).unwrap_or(&[]) {
            emit(&window_stats(&self.ring, acc, requested, scratch));
        }
        self.open.drain(..closing.min(self.open.len()));
    }

    /// Index of `window`'s accumulator, opened (in order) if absent.
    fn open_slot(&mut self, window: i64) -> usize {
        // Nearly every reading goes to the newest window, at the back: search from there.
        let mut at = 0;
        for (i, acc) in self.open.iter().enumerate().rev() {
            if acc.window == window {
                return i;
            }
            if acc.window < window {
                at = i + 1;
                break;
            }
        }
        self.open
            .insert(at, Accumulator::new(window, self.ring.pushed()));
        at
    }

    /// The ring is full: if the sample about to go belongs to an open window without a
    /// sketch, give that window a sketch now, while all its samples are still here.
    fn sketch_overwritten_window(&mut self) {
        if self.sketch_alpha <= 0.0 {
            return;
        }
        let (Some(victim), victim_seq) = (self.ring.oldest(), self.ring.oldest_seq()) else {
            return;
        };
        let owner = self.open.iter_mut().find(|a| {
            a.sketch.is_none() && a.window as u32 == victim.window && victim_seq >= a.first_seq
        });
        if let Some(acc) = owner {
            let mut sketch = Box::new(Sketch::new(f64::from(self.sketch_alpha)));
            acc.samples(&self.ring)
                .for_each(|v| sketch.add(f64::from(v)));
            acc.sketch = Some(sketch);
        }
    }
}

mod moments;
mod quantiles;
#[cfg(test)]
mod tests;
