//! The per-series sample ring: a fixed-capacity, overwrite-oldest buffer of compact
//! [`Sample`]s, allocated once when the series is first seen and never grown.
//!
//! Besides the samples it counts every push ever made, so each sample has a sequence number
//! (`oldest_seq() + position`). The window code uses it to tell "all of this window's samples
//! are still here" from "some were overwritten" without scanning.

/// One reading as the ring keeps it: 8 bytes.
///
/// `window` is the window index truncated to `u32` (`i64 as u32`); two windows collide only
/// when they are 2^32 windows apart, which the window code never has open at once.
/// `value` is rounded to `f32` (about 7 significant digits, relative error <= 6e-8), which is
/// far below any sensor's resolution; values beyond the `f32` range become infinite.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    pub window: u32,
    pub value: f32,
}

impl Sample {
    /// Packs a reading: truncates the window index and rounds the value to `f32`.
    pub fn new(window: i64, value: f64) -> Self {
        Sample {
            window: window as u32,
            value: value as f32,
        }
    }
}

/// Fixed-capacity ring of samples that overwrites the oldest one when full.
#[derive(Clone, Debug)]
pub struct Ring {
    buf: Box<[Sample]>,
    /// Pushes ever made. The next write position is `pushed % capacity`, the length is
    /// `min(pushed, capacity)`: one counter, so head and length can never disagree.
    pushed: u64,
}

impl Ring {
    /// A ring holding up to `capacity` samples (at least 1), allocated here once.
    pub fn new(capacity: usize) -> Self {
        Ring {
            buf: vec![Sample::default(); capacity.max(1)].into_boxed_slice(),
            pushed: 0,
        }
    }

    /// Appends `sample`; when the ring is full, returns the oldest sample it overwrote.
    pub fn push(&mut self, sample: Sample) -> Option<Sample> {
        let full = self.is_full();
        let old = self
            .buf
            .get_mut(self.head())
            .map(|slot| std::mem::replace(slot, sample));
        self.pushed += 1;
        old.filter(|_| full)
    }

    /// Samples held, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Sample> + '_ {
        // Until the first wrap the samples sit in buf[..len] in order; after it the oldest
        // one is at the write position.
        let split = if self.is_full() { self.head() } else { 0 };
        let (newer, older) = self.buf.split_at_checked(split).unwrap_or((&[], &[]));
        let older = older
            .get(..self.len().saturating_sub(newer.len()))
            .unwrap_or(&[]);
        older.iter().chain(newer.iter())
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        usize::try_from(self.pushed).map_or(self.capacity(), |p| p.min(self.capacity()))
    }

    pub fn is_empty(&self) -> bool {
        self.pushed == 0
    }

    /// True when the next push overwrites the oldest sample.
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// The most recently pushed sample.
    pub fn latest(&self) -> Option<Sample> {
        self.iter().next_back().copied()
    }

    /// The sample the next push would overwrite when full (the oldest one).
    pub fn oldest(&self) -> Option<Sample> {
        self.iter().next().copied()
    }

    /// Number of pushes ever made: the sequence number the next pushed sample gets.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Sequence number of the oldest sample held (equals `pushed()` when empty).
    pub fn oldest_seq(&self) -> u64 {
        self.pushed - self.len() as u64
    }

    /// Heap bytes owned by the ring.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val::<[Sample]>(&self.buf)
    }

    fn head(&self) -> usize {
        // `capacity` >= 1, so the remainder is below it and fits usize.
        (self.pushed % self.capacity() as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(ring: &Ring) -> Vec<f32> {
        ring.iter().map(|s| s.value).collect()
    }

    fn s(v: f32) -> Sample {
        Sample {
            window: 7,
            value: v,
        }
    }

    #[test]
    fn fills_then_overwrites_oldest() {
        let mut ring = Ring::new(3);
        assert!(ring.is_empty());
        assert_eq!(ring.latest(), None);
        assert_eq!(ring.push(s(1.0)), None);
        assert_eq!(ring.push(s(2.0)), None);
        assert_eq!(values(&ring), vec![1.0, 2.0]);
        assert!(!ring.is_full());
        assert_eq!(ring.push(s(3.0)), None);
        assert!(ring.is_full());
        assert_eq!(ring.oldest(), Some(s(1.0)));
        assert_eq!(ring.push(s(4.0)), Some(s(1.0)));
        assert_eq!(ring.push(s(5.0)), Some(s(2.0)));
        assert_eq!(values(&ring), vec![3.0, 4.0, 5.0]);
        assert_eq!(ring.latest(), Some(s(5.0)));
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.capacity(), 3);
        assert_eq!(ring.pushed(), 5);
        assert_eq!(ring.oldest_seq(), 2);
    }

    #[test]
    fn zero_capacity_is_raised_to_one() {
        let mut ring = Ring::new(0);
        assert_eq!(ring.capacity(), 1);
        assert_eq!(ring.push(s(1.0)), None);
        assert_eq!(ring.push(s(2.0)), Some(s(1.0)));
        assert_eq!(values(&ring), vec![2.0]);
    }

    #[test]
    fn sample_packs_window_and_value() {
        let sample = Sample::new(-1, 0.1);
        assert_eq!(sample.window, u32::MAX);
        assert_eq!(sample.value, 0.1f32);
        assert_eq!(std::mem::size_of::<Sample>(), 8);
    }

    proptest::proptest! {
        #[test]
        fn matches_a_model(cap in 1usize..10, pushes in proptest::collection::vec(-100.0f32..100.0, 0..40)) {
            let mut ring = Ring::new(cap);
            let mut model: std::collections::VecDeque<f32> = Default::default();
            for v in pushes {
                let evicted = if model.len() == cap { model.pop_front() } else { None };
                model.push_back(v);
                proptest::prop_assert_eq!(ring.push(s(v)).map(|x| x.value), evicted);
                proptest::prop_assert_eq!(values(&ring), model.iter().copied().collect::<Vec<_>>());
                proptest::prop_assert_eq!(ring.capacity(), cap);
            }
        }
    }
}
