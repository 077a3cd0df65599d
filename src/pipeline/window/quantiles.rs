//! A closing window's quantiles: exact ones from its samples still in the ring, sorted in a
//! per-thread scratch buffer, else the sketch's, else none (see the parent module's doc for
//! the rank rule and the clamping into [min, max]).

use std::cell::RefCell;

use super::{Accumulator, Stats};
use crate::pipeline::ring::Ring;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with the per-thread scratch buffer. The buffer is busy only if an `emit`
/// callback re-enters; then (or during thread teardown) `f` gets a fresh `Vec`.
pub(super) fn with_scratch(f: impl FnOnce(&mut Vec<f32>)) {
    let mut f = Some(f);
    let _ = SCRATCH.try_with(|cell| {
        if let Ok(mut scratch) = cell.try_borrow_mut() {
            if let Some(f) = f.take() {
                f(&mut scratch);
            }
        }
    });
    if let Some(f) = f.take() {
        f(&mut Vec::new());
    }
}

/// The stats of `acc`, with exact quantiles if none of its samples left the ring, else
/// sketched ones, else none.
pub(super) fn window_stats(
    ring: &Ring,
    acc: &Accumulator,
    requested: &[u16],
    scratch: &mut Vec<f32>,
) -> Stats {
    let mut stats = acc.stats();
    if requested.is_empty() {
        return stats;
    }
    let complete = ring.oldest_seq() <= acc.first_seq && {
        scratch.clear();
        scratch.extend(acc.samples(ring));
        // Differs only if two open windows share a truncated index (2^32 windows apart).
        scratch.len() as u64 == acc.count
    };
    if complete {
        scratch.sort_unstable_by(f32::total_cmp);
        let n = scratch.len() as u64;
        fill_quantiles(&mut stats, requested, n, |rank| {
            let rank = usize::try_from(rank).ok()?;
            scratch.get(rank).map(|v| f64::from(*v))
        });
    } else if let Some(sketch) = &acc.sketch {
        stats.approximate = true;
        fill_quantiles(&mut stats, requested, sketch.count(), |rank| {
            sketch.value_at_rank(rank)
        });
    }
    stats
}

/// Fills `stats.quantiles` from `at_rank` over `n` sorted values, clamped into [min, max]
/// (never further from the truth); the lowest and highest ranks are the exact min and max.
fn fill_quantiles(
    stats: &mut Stats,
    requested: &[u16],
    n: u64,
    at_rank: impl Fn(u64) -> Option<f64>,
) {
    let Some(last_rank) = n.checked_sub(1) else {
        return;
    };
    for &pm in requested {
        // floor(p * (n - 1)) in integers, so p95 of 21 values is rank 19, not 18.999...
        let rank = (u128::from(pm.min(1000)) * u128::from(last_rank) / 1000) as u64;
        // The extremes are known exactly from the accumulators.
        let value = match rank {
            0 => Some(stats.min),
            r if r == last_rank => Some(stats.max),
            r => at_rank(r),
        };
        let Some(value) = value else {
            continue;
        };
        if let Some(slot) = stats.quantiles.get_mut(stats.quantile_len) {
            *slot = (pm, value.max(stats.min).min(stats.max));
            stats.quantile_len += 1;
        }
    }
}
