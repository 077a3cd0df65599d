//! A small HyperLogLog sketch (Flajolet et al. 2007) with the linear-counting switch of
//! HyperLogLog++ (Heule, Nunkesser, Hall 2013, "HyperLogLog in Practice", section 5.2), fed with
//! register updates rather than items.
//!
//! Why our own: the privacy design splits the sketch in two. The source hashes an identifier
//! and keeps only the register update `(index, rank)` it implies ([`Update::of_hash`]); the
//! aggregator, which never sees identifiers or hashes, applies updates ([`Hll::apply`]). The
//! HLL crates on crates.io take items (`impl Hash`) and hash them themselves, so they cannot be
//! fed that split; the whole algorithm is 100 lines here, with tests against known cardinalities.
//!
//! Precision p = 12: m = 4096 one-byte registers (4 KiB per sketch), standard error
//! 1.04 / sqrt(m) = 1.6 %. Below the HLL++ threshold for p = 12 (3100) the estimate is linear
//! counting, which is near exact for the tens to hundreds of devices a street scanner sees in a
//! window. Between that and about 5m (20,000) raw HLL has a small upward bias (a few percent at
//! most) that HLL++ corrects with an empirical table; we do not carry that table.

/// Register index bits.
pub const PRECISION: u32 = 12;
/// Number of registers.
pub const REGISTERS: usize = 1 << PRECISION;
/// HLL++ switch-over from linear counting to the raw estimate for p = 12 (Heule et al., Table).
const LINEAR_COUNTING_THRESHOLD: f64 = 3100.0;

/// One register update: which register, and the rank (position of the first 1 bit, from 1)
/// of the remaining hash bits. It carries 12 + 6 bits: not enough to tell which identifier
/// produced it, the more so as the hash is keyed with a per-window random key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    pub index: u16,
    pub rank: u8,
}

impl Update {
    /// The update a 64-bit hash implies: the top [`PRECISION`] bits pick the register, the
    /// rank is counted in the remaining 52 bits (1..=53).
    pub fn of_hash(hash: u64) -> Update {
        let index = (hash >> (64 - PRECISION)) as u16;
        let rest = hash << PRECISION;
        let max_rank = 64 - PRECISION + 1;
        let rank = (rest.leading_zeros() + 1).min(max_rank) as u8;
        Update { index, rank }
    }

    /// Packs the update into a reading value (exact in `f64`).
    pub fn to_value(self) -> f64 {
        f64::from((u32::from(self.index) << 8) | u32::from(self.rank))
    }

    /// Unpacks [`Update::to_value`]; `None` for anything that is not a valid update.
    pub fn from_value(v: f64) -> Option<Update> {
        if !(0.0..=f64::from(u32::MAX)).contains(&v) || v.fract() != 0.0 {
            return None;
        }
        let packed = v as u32;
        let (index, rank) = (packed >> 8, (packed & 0xff) as u8);
        let valid =
            (index as usize) < REGISTERS && (1..=(64 - PRECISION + 1) as u8).contains(&rank);
        valid.then_some(Update {
            index: index as u16,
            rank,
        })
    }
}

/// The registers of one sketch.
#[derive(Clone)]
pub struct Hll {
    registers: Box<[u8; REGISTERS]>,
}

impl Default for Hll {
    fn default() -> Self {
        Hll::new()
    }
}

impl std::fmt::Debug for Hll {
    /// Registers are not printed: a sketch is summarised by its estimate only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hll {{ estimate: {:.1} }}", self.estimate())
    }
}

impl Hll {
    pub fn new() -> Hll {
        Hll {
            registers: Box::new([0; REGISTERS]),
        }
    }

    pub fn apply(&mut self, u: Update) {
        if let Some(r) = self.registers.get_mut(usize::from(u.index)) {
            *r = (*r).max(u.rank);
        }
    }

    /// Estimated number of distinct items.
    pub fn estimate(&self) -> f64 {
        let m = REGISTERS as f64;
        let mut zeros = 0u32;
        let mut sum = 0.0f64;
        for &r in self.registers.iter() {
            if r == 0 {
                zeros += 1;
            }
            sum += f64::from(-i32::from(r)).exp2();
        }
        if zeros > 0 {
            let linear = m * (m / f64::from(zeros)).ln();
            if linear <= LINEAR_COUNTING_THRESHOLD {
                return linear;
            }
        }
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        alpha * m * m / sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hasher;

    fn hash(i: u64) -> u64 {
        let mut h = siphasher::sip::SipHasher13::new_with_keys(7, 11);
        h.write_u64(i);
        h.finish()
    }

    fn sketch(n: u64, repeats: u64) -> Hll {
        let mut s = Hll::new();
        for _ in 0..repeats {
            for i in 0..n {
                s.apply(Update::of_hash(hash(i)));
            }
        }
        s
    }

    #[test]
    fn empty_is_zero_and_small_counts_are_near_exact() {
        assert_eq!(Hll::new().estimate(), 0.0);
        for n in [1, 5, 50, 200] {
            let e = sketch(n, 3).estimate();
            assert!(
                (e - n as f64).abs() <= (n as f64 * 0.02).max(1.0),
                "{n}: {e}"
            );
        }
    }

    #[test]
    fn large_counts_within_three_standard_errors() {
        for n in [2_000u64, 10_000, 100_000] {
            let e = sketch(n, 1).estimate();
            let rel = (e - n as f64).abs() / n as f64;
            assert!(rel < 3.0 * 0.0163, "{n}: {e} ({rel})");
        }
    }

    #[test]
    fn updates_round_trip_through_reading_values() {
        for h in [0u64, u64::MAX, 1, 1 << 52, 0xdead_beef_0000_0001] {
            let u = Update::of_hash(h);
            assert!(usize::from(u.index) < REGISTERS && (1..=53).contains(&u.rank));
            assert_eq!(Update::from_value(u.to_value()), Some(u));
        }
        assert_eq!(Update::of_hash(0).rank, 53);
        assert_eq!(Update::of_hash(u64::MAX).index, 4095);
        for bad in [
            -1.0,
            0.5,
            0.0,
            f64::from(4096u32 << 8 | 1),
            f64::from(54u32),
        ] {
            assert_eq!(Update::from_value(bad), None, "{bad}");
        }
    }
}
