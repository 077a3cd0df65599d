//! A closing window's quantiles: exact from the ring while it holds all of the window's
//! readings, else from the window's sketch (see the parent module's doc for the rank rule).

use super::{Accumulator, Ring, Stats};

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
