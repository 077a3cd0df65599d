//! A window's running mean and sum of squared deviations (Welford), kept in a power-of-two
//! scale so that neither overflows nor underflows.
//!
//! Plain Welford squares deviations: readings of ±1e300 give a sum of squares of 1e600,
//! which is `inf` in `f64`, and ±1e-300 give 1e-600, which is 0. Here every reading is
//! multiplied by `2^-exp` first, `exp` being the binary exponent of the largest reading so far
//! (so scaled readings are below 1 in magnitude), and the state is rescaled when a larger one
//! arrives. Multiplying by a power of two is exact in `f64` (short of subnormal results), so
//! for ordinary readings the result is bit-for-bit plain Welford's; at the extremes it stays
//! right. A standard deviation beyond `f64::MAX` (only for readings beyond about ±1.3e308)
//! saturates there instead of becoming `inf`.

/// Exponents are kept within this range so `2^±exp` is a normal `f64`.
const EXP_LIMIT: i32 = 960;

/// Welford's state in units of `2^exp`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Moments {
    mean: f64,
    m2: f64,
    exp: i32,
}

impl Moments {
    pub(super) const fn new() -> Self {
        Moments {
            mean: 0.0,
            m2: 0.0,
            exp: -EXP_LIMIT,
        }
    }

    /// Adds `value` (finite), the `n`th reading (`n >= 1`).
    pub(super) fn add(&mut self, value: f64, n: u64) {
        let e = exponent(value);
        if e > self.exp {
            // Old state is at most ~1 in the old unit: in the new one it shrinks, exactly
            // unless it falls below the subnormal range, where it no longer matters.
            let f = pow2(self.exp - e);
            self.mean *= f;
            self.m2 = self.m2 * f * f;
            self.exp = e;
        }
        let x = value * pow2(-self.exp);
        let delta = x - self.mean;
        self.mean += delta / n as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// The running mean (used where the plain sum overflowed).
    pub(super) fn mean(&self) -> f64 {
        self.mean * pow2(self.exp)
    }

    /// Sample standard deviation (divides by `n - 1`) of `n` readings; 0 for one.
    pub(super) fn sample_stddev(&self, n: u64) -> f64 {
        if n < 2 {
            return 0.0;
        }
        let scaled = (self.m2 / (n - 1) as f64).max(0.0).sqrt();
        (scaled * pow2(self.exp)).min(f64::MAX)
    }
}

/// `e` with `|value| < 2^e`, clamped to `±EXP_LIMIT` (zero and subnormals get the minimum).
fn exponent(value: f64) -> i32 {
    let biased = ((value.to_bits() >> 52) & 0x7ff) as i32;
    (biased - 1022).clamp(-EXP_LIMIT, EXP_LIMIT)
}

/// `2^k`; 0 below the normal range (only reached by rescaling, see [`Moments::add`]).
fn pow2(k: i32) -> f64 {
    if k < -1022 {
        return 0.0;
    }
    f64::from_bits(((k.min(1023) + 1023) as u64) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stddev(values: &[f64]) -> f64 {
        let mut m = Moments::new();
        for (i, v) in values.iter().enumerate() {
            m.add(*v, i as u64 + 1);
        }
        m.sample_stddev(values.len() as u64)
    }

    #[test]
    fn powers_of_two() {
        assert_eq!(pow2(0), 1.0);
        assert_eq!(pow2(-3), 0.125);
        assert_eq!(pow2(960), 2f64.powi(960));
        assert_eq!(pow2(-1022), f64::MIN_POSITIVE);
        assert_eq!(pow2(-1500), 0.0);
        assert_eq!(exponent(1.0), 1);
        assert_eq!(exponent(0.75), 0);
        assert_eq!(exponent(-4.0), 3);
        assert_eq!(exponent(0.0), -EXP_LIMIT);
        assert_eq!(exponent(f64::MAX), EXP_LIMIT);
    }

    #[test]
    fn ordinary_readings_match_plain_welford_bit_for_bit() {
        let values = [21.3, 21.7, 20.9, 22.4, 21.1, 0.0, -3.5, 1e9 + 4.0];
        let (mut mean, mut m2) = (0.0f64, 0.0f64);
        for (i, v) in values.iter().enumerate() {
            let delta = v - mean;
            mean += delta / (i + 1) as f64;
            m2 += delta * (v - mean);
        }
        let plain = (m2 / (values.len() - 1) as f64).sqrt();
        assert_eq!(stddev(&values), plain);
    }
}
