//! A DDSketch-style quantile sketch with relative error `alpha`, for the windows whose
//! readings no longer all fit in the series ring.
//!
//! A positive value `x` goes to bucket `k = ceil(ln x / ln gamma)` with
//! `gamma = (1 + alpha) / (1 - alpha)`; bucket `k` covers `(gamma^(k-1), gamma^k]` and is
//! reported as `2 gamma^k / (gamma + 1)`, which is within `alpha * x` of every value in it.
//! Negative values use a second store keyed by `|x|`; zero (and subnormals, `|x| <
//! f64::MIN_POSITIVE`) is counted apart and reported as 0. Non-finite values are ignored.
//!
//! A quantile is the estimate of the value at 0-based rank `floor(q * (n - 1))` of the sorted
//! values (numpy's `method="lower"`), the same definition the exact path in `window.rs` uses,
//! so exact and sketched results differ by at most `alpha` relative.
//!
//! Each sign's store is dense (one `u32` per bucket between its lowest and highest key) and
//! holds at most `max_buckets` buckets (default 2048). When a new key would exceed that, the
//! lowest keys, i.e. the values of smallest magnitude, are merged into the lowest kept bucket.
//! With alpha = 0.01, 2048 buckets span a factor gamma^2048 ≈ 6e17, so this only happens when
//! one window mixes same-sign magnitudes more than 17 decades apart (say 1e-7 and 1e11).
//! Consequence: ranks landing on those tiny-magnitude values are reported as the lowest kept
//! bucket, losing the relative-error guarantee, while their absolute error stays below
//! `2e-18 * max|x|`; all other ranks keep it.
//!
//! Memory: about 120 bytes plus 1 byte per bucket between the smallest and largest magnitude
//! seen per sign (e.g. 10..1000 at alpha 0.01 is 231 buckets), 4 bytes per bucket once some
//! bucket of that sign holds more than 255 values (see `sketch_counts.rs`). Adding a value
//! outside the current key range may reallocate the store, and so may the one widening to
//! 4 bytes; other values never allocate.

use super::sketch_counts::Counts;

/// Default relative accuracy.
pub const DEFAULT_ALPHA: f64 = 0.01;
/// Smallest accepted relative accuracy; smaller requests are raised to it.
pub const MIN_ALPHA: f64 = 1e-4;
/// Largest accepted relative accuracy; larger requests are lowered to it.
pub const MAX_ALPHA: f64 = 0.5;
/// Default bound on buckets per sign.
pub const DEFAULT_MAX_BUCKETS: usize = 2048;

/// Relative-error quantile sketch over finite `f64` values.
#[derive(Clone, Debug)]
pub struct Sketch {
    ln_gamma: f64,
    gamma: f64,
    max_buckets: usize,
    pos: Store,
    neg: Store,
    zero: u64,
    count: u64,
}

impl Sketch {
    /// An empty sketch with relative accuracy `alpha`, clamped to
    /// [`MIN_ALPHA`]..=[`MAX_ALPHA`] (NaN gives [`DEFAULT_ALPHA`]); config validation should
    /// reject values outside that range rather than rely on the clamp.
    pub fn new(alpha: f64) -> Self {
        Self::with_max_buckets(alpha, DEFAULT_MAX_BUCKETS)
    }

    /// Like [`Sketch::new`] with at most `max_buckets` (at least 1) buckets per sign.
    pub fn with_max_buckets(alpha: f64, max_buckets: usize) -> Self {
        let alpha = if alpha.is_nan() {
            DEFAULT_ALPHA
        } else {
            alpha.clamp(MIN_ALPHA, MAX_ALPHA)
        };
        let gamma = (1.0 + alpha) / (1.0 - alpha);
        Sketch {
            ln_gamma: gamma.ln(),
            gamma,
            max_buckets: max_buckets.max(1),
            pos: Store::default(),
            neg: Store::default(),
            zero: 0,
            count: 0,
        }
    }

    /// The relative accuracy in force (after clamping).
    pub fn alpha(&self) -> f64 {
        (self.gamma - 1.0) / (self.gamma + 1.0)
    }

    /// Adds one value; NaN and infinities are ignored (not counted).
    pub fn add(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        let magnitude = value.abs();
        if magnitude < f64::MIN_POSITIVE {
            self.zero += 1;
        } else if value > 0.0 {
            self.pos.add(self.key(magnitude), self.max_buckets);
        } else {
            self.neg.add(self.key(magnitude), self.max_buckets);
        }
        self.count += 1;
    }

    /// Number of values added (finite ones only).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Estimate of the `q`-quantile (0 <= q <= 1): the value at rank `floor(q * (n - 1))`.
    /// `None` when empty or `q` is outside [0, 1] or NaN.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&q) || self.count == 0 {
            return None;
        }
        // Truncation is the floor here: the product is non-negative and at most n - 1.
        let rank = (q * (self.count - 1) as f64) as u64;
        self.value_at_rank(rank)
    }

    /// Estimate of the value at 0-based `rank` in sorted order (ranks past the end give the
    /// largest value). `None` when empty.
    pub fn value_at_rank(&self, rank: u64) -> Option<f64> {
        let rank = rank.min(self.count.checked_sub(1)?);
        let mut seen = 0u64;
        // Most negative first: the negative store's highest keys.
        for (key, n) in self.neg.buckets().rev() {
            seen += u64::from(n);
            if seen > rank {
                return Some(-self.value(key));
            }
        }
        seen += self.zero;
        if seen > rank {
            return Some(0.0);
        }
        for (key, n) in self.pos.buckets() {
            seen += u64::from(n);
            if seen > rank {
                return Some(self.value(key));
            }
        }
        // Only reachable if a bucket saturated at u32::MAX (4e9 values in one bucket).
        None
    }

    /// Buckets in use (both signs, zero excluded).
    pub fn bucket_count(&self) -> usize {
        self.pos.counts.len() + self.neg.counts.len()
    }

    /// Heap bytes owned by the sketch (excluding its own struct).
    pub fn heap_bytes(&self) -> usize {
        self.pos.counts.heap_bytes() + self.neg.counts.heap_bytes()
    }

    fn key(&self, magnitude: f64) -> i64 {
        // |ln| <= 745 and ln_gamma >= 2e-4, so the key fits easily in i64.
        (magnitude.ln() / self.ln_gamma).ceil() as i64
    }

    fn value(&self, key: i64) -> f64 {
        // 2 gamma^k / (gamma + 1), in the exponent so the top bucket does not overflow to
        // infinity before scaling; capped at f64::MAX, which is within alpha of that bucket.
        let ln_scale = (2.0 / (self.gamma + 1.0)).ln();
        (key as f64 * self.ln_gamma + ln_scale).exp().min(f64::MAX)
    }
}

impl Default for Sketch {
    fn default() -> Self {
        Self::new(DEFAULT_ALPHA)
    }
}

/// Dense bucket counts for one sign: `counts[i]` is the count of key `offset + i`.
#[derive(Clone, Debug, Default)]
struct Store {
    counts: Counts,
    offset: i64,
}

impl Store {
    fn add(&mut self, key: i64, max_buckets: usize) {
        let max = max_buckets as i64;
        if self.counts.is_empty() {
            self.offset = key;
        }
        let lo = self.offset;
        let hi = lo + self.counts.len().max(1) as i64 - 1;
        let new_hi = hi.max(key);
        let mut new_lo = lo.min(key);
        if new_hi - new_lo + 1 > max {
            new_lo = new_hi - max + 1;
        }
        if new_lo > lo {
            self.collapse_below(new_lo);
        } else if new_lo < lo {
            self.extend_down(new_lo);
        }
        let len = (new_hi - self.offset + 1) as usize;
        self.counts.grow_to(len);
        // A key below the kept range (only after a collapse) lands in the lowest bucket.
        let index = (key.max(self.offset) - self.offset) as usize;
        self.counts.add(index, 1);
    }

    /// Merges every bucket below `new_lo` into bucket `new_lo`.
    fn collapse_below(&mut self, new_lo: i64) {
        let drop = usize::try_from(new_lo - self.offset).unwrap_or(usize::MAX);
        let drop = drop.min(self.counts.len());
        let merged = self.counts.drain_front(drop);
        self.offset = new_lo;
        if self.counts.is_empty() {
            self.counts.grow_to(1);
        }
        self.counts.add(0, merged);
    }

    /// Prepends empty buckets so the store starts at `new_lo`.
    fn extend_down(&mut self, new_lo: i64) {
        let extra = (self.offset - new_lo) as usize;
        self.counts.prepend_zeros(extra);
        self.offset = new_lo;
    }

    /// `(key, count)` of the non-empty buckets, lowest key first.
    fn buckets(&self) -> impl DoubleEndedIterator<Item = (i64, u32)> + '_ {
        let offset = self.offset;
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, n)| *n > 0)
            .map(move |(i, n)| (offset + i as i64, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random numbers in [0, 1) (xorshift64*), so tests need no rand.
    pub(crate) struct Rng(u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn exact_at_rank(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64) as usize]
    }

    fn assert_within(est: f64, truth: f64, alpha: f64) {
        let tol = alpha * truth.abs() + 1e-12;
        assert!(
            (est - truth).abs() <= tol * (1.0 + 1e-9),
            "estimate {est} vs true {truth}, alpha {alpha}"
        );
    }

    fn check_all_quantiles(values: &mut [f64], alpha: f64) {
        let mut sketch = Sketch::new(alpha);
        values.iter().for_each(|v| sketch.add(*v));
        values.sort_by(f64::total_cmp);
        assert_eq!(sketch.count(), values.len() as u64);
        for i in 0..=100 {
            let q = f64::from(i) / 100.0;
            let est = sketch.quantile(q).unwrap();
            assert_within(est, exact_at_rank(values, q), alpha);
        }
    }

    #[test]
    fn lognormal_like_values_within_alpha() {
        let mut rng = Rng(0x1234_5678);
        let mut values: Vec<f64> = (0..50_000)
            .map(|_| (rng.next() * 12.0 - 4.0).exp())
            .collect();
        check_all_quantiles(&mut values, 0.01);
        check_all_quantiles(&mut values, 0.05);
    }

    #[test]
    fn mixed_signs_and_zeros_within_alpha() {
        let mut rng = Rng(99);
        let mut values: Vec<f64> = (0..20_000)
            .map(|i| match i % 5 {
                0 => 0.0,
                1 => -rng.next() * 300.0,
                _ => rng.next() * 40.0 - 10.0,
            })
            .collect();
        check_all_quantiles(&mut values, 0.01);
    }

    #[test]
    fn small_known_input() {
        let mut sketch = Sketch::new(0.01);
        for v in [-5.0, 0.0, 3.0, 10.0] {
            sketch.add(v);
        }
        // ranks: q=0 -> -5, q=0.5 -> floor(1.5)=1 -> 0, q=1 -> 10
        assert_within(sketch.quantile(0.0).unwrap(), -5.0, 0.01);
        assert_eq!(sketch.quantile(0.5), Some(0.0));
        assert_within(sketch.quantile(0.9).unwrap(), 3.0, 0.01);
        assert_within(sketch.quantile(1.0).unwrap(), 10.0, 0.01);
        assert_eq!(sketch.quantile(1.5), None);
        assert_eq!(sketch.quantile(f64::NAN), None);
    }

    #[test]
    fn empty_and_non_finite() {
        let mut sketch = Sketch::new(0.01);
        assert_eq!(sketch.quantile(0.5), None);
        assert_eq!(sketch.value_at_rank(0), None);
        sketch.add(f64::NAN);
        sketch.add(f64::INFINITY);
        sketch.add(f64::NEG_INFINITY);
        assert_eq!(sketch.count(), 0);
        sketch.add(f64::MAX);
        sketch.add(-f64::MAX);
        sketch.add(f64::MIN_POSITIVE);
        sketch.add(1e-320); // subnormal: counted as zero
        assert_eq!(sketch.count(), 4);
        assert_within(sketch.value_at_rank(0).unwrap(), -f64::MAX, 0.01);
        assert_eq!(sketch.value_at_rank(1), Some(0.0));
        // MIN_POSITIVE and MAX are 617 decades apart: the small one was collapsed upwards.
        assert!(sketch.value_at_rank(2).unwrap() > 1e280);
        assert_within(sketch.value_at_rank(3).unwrap(), f64::MAX, 0.01);
    }

    #[test]
    fn alpha_is_clamped() {
        assert!((Sketch::new(0.0).alpha() - MIN_ALPHA).abs() < 1e-12);
        assert!((Sketch::new(2.0).alpha() - MAX_ALPHA).abs() < 1e-12);
        assert!((Sketch::new(f64::NAN).alpha() - DEFAULT_ALPHA).abs() < 1e-12);
        assert!((Sketch::new(0.02).alpha() - 0.02).abs() < 1e-12);
    }

    #[test]
    fn collapse_keeps_high_ranks_and_bounds_buckets() {
        let max = 16;
        let mut sketch = Sketch::with_max_buckets(0.01, max);
        // 1..=100 spans ~231 keys, far beyond 16 buckets.
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        values.iter().for_each(|v| sketch.add(*v));
        sketch.add(-1.0);
        sketch.add(-1000.0);
        assert_eq!(sketch.count(), 102);
        assert!(
            sketch.bucket_count() <= 2 * max,
            "{}",
            sketch.bucket_count()
        );
        // ln(gamma) ≈ 0.02 and key(100) = 231, so keys 216..=231 are kept: values above
        // gamma^215 ≈ 73.7 keep their own buckets.
        for rank in 75..=101u64 {
            let truth = (rank - 1) as f64; // rank 0 = -1000, 1 = -1, then 1..=100
            assert_within(sketch.value_at_rank(rank).unwrap(), truth, 0.01);
        }
        // Collapsed low values are reported as the lowest kept bucket: overestimated.
        let low = sketch.value_at_rank(2).unwrap();
        assert_within(low, sketch.value(216), 1e-12);
        assert!(low > 73.0 && low < 76.0, "{low}");
        // Negatives: keys 0 (-1) and 346 (-1000); -1 was merged up into key 331 (≈ -742).
        assert_within(sketch.value_at_rank(0).unwrap(), -1000.0, 0.01);
        let merged = sketch.value_at_rank(1).unwrap();
        assert!(merged < -700.0 && merged > -800.0, "{merged}");
    }

    #[test]
    fn default_bucket_bound_covers_17_decades() {
        let mut sketch = Sketch::new(0.01);
        for e in -8..=8 {
            sketch.add(10f64.powi(e));
        }
        assert!(sketch.bucket_count() <= DEFAULT_MAX_BUCKETS);
        for (rank, e) in (-8..=8).enumerate() {
            assert_within(
                sketch.value_at_rank(rank as u64).unwrap(),
                10f64.powi(e),
                0.01,
            );
        }
        // A value 22 decades lower is merged into the lowest kept bucket, not lost.
        sketch.add(1e-30);
        assert_eq!(sketch.count(), 18);
        assert!(sketch.bucket_count() <= DEFAULT_MAX_BUCKETS);
        let merged = sketch.value_at_rank(0).unwrap();
        assert!(merged > 1e-30 && merged < 1e-8, "{merged}");
        assert_within(sketch.value_at_rank(1).unwrap(), 1e-8, 0.01);
        assert_within(sketch.value_at_rank(17).unwrap(), 1e8, 0.01);
    }

    proptest::proptest! {
        #[test]
        fn random_values_within_alpha(
            mut values in proptest::collection::vec(
                proptest::prop_oneof![-1e6f64..1e6, proptest::strategy::Just(0.0), 1e-3f64..1.0],
                1..300),
            q in 0.0f64..=1.0,
        ) {
            let mut sketch = Sketch::new(0.01);
            values.iter().for_each(|v| sketch.add(*v));
            values.sort_by(f64::total_cmp);
            let est = sketch.quantile(q).unwrap();
            let truth = exact_at_rank(&values, q);
            proptest::prop_assert!((est - truth).abs() <= 0.01 * truth.abs() * (1.0 + 1e-9) + 1e-12);
        }
    }
}
