//! The bucket counts of one sketch store: one byte per bucket until some bucket passes 255,
//! then four bytes per bucket (`u32`, saturating, as before).
//!
//! Why: every busy series whose window outgrows its ring holds a sketch, each a few hundred
//! buckets wide; at 10k series those counts were the largest heap owner (about 8 MiB as
//! `u32`). A window with at most 255 readings in any one bucket, the common case, needs a
//! quarter of that. Widening keeps every count exact, so results do not change.

/// Dense counts; index `i` is the store's key `offset + i`.
#[derive(Clone, Debug)]
pub(crate) enum Counts {
    Narrow(Vec<u8>),
    Wide(Vec<u32>),
}

impl Default for Counts {
    fn default() -> Self {
        Counts::Narrow(Vec::new())
    }
}

impl Counts {
    pub(crate) fn len(&self) -> usize {
        match self {
            Counts::Narrow(v) => v.len(),
            Counts::Wide(v) => v.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held (capacity times width).
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Counts::Narrow(v) => v.capacity(),
            Counts::Wide(v) => v.capacity() * std::mem::size_of::<u32>(),
        }
    }

    pub(crate) fn get(&self, i: usize) -> u32 {
        match self {
            Counts::Narrow(v) => v.get(i).map_or(0, |n| u32::from(*n)),
            Counts::Wide(v) => v.get(i).copied().unwrap_or(0),
        }
    }

    /// Adds `n` to bucket `i` (saturating at `u32::MAX`), widening first if it would not fit.
    pub(crate) fn add(&mut self, i: usize, n: u32) {
        if let Counts::Narrow(v) = self {
            match v.get_mut(i) {
                Some(c) if u32::from(*c) + n <= u32::from(u8::MAX) => {
                    *c += n as u8;
                    return;
                }
                Some(_) => self.widen(),
                None => return,
            }
        }
        if let Counts::Wide(v) = self {
            if let Some(c) = v.get_mut(i) {
                *c = c.saturating_add(n);
            }
        }
    }

    /// Grows to `len` buckets (new ones zero), allocating exactly.
    pub(crate) fn grow_to(&mut self, len: usize) {
        match self {
            Counts::Narrow(v) => grow_exact(v, len),
            Counts::Wide(v) => grow_exact(v, len),
        }
    }

    /// Prepends `extra` zero buckets.
    pub(crate) fn prepend_zeros(&mut self, extra: usize) {
        let len = self.len() + extra;
        self.grow_to(len);
        match self {
            Counts::Narrow(v) => v.rotate_right(extra),
            Counts::Wide(v) => v.rotate_right(extra),
        }
    }

    /// Removes the first `n` buckets (at most all) and returns their sum (saturating).
    pub(crate) fn drain_front(&mut self, n: usize) -> u32 {
        let n = n.min(self.len());
        match self {
            Counts::Narrow(v) => v.drain(..n).fold(0u32, |acc, c| acc + u32::from(c)),
            Counts::Wide(v) => v.drain(..n).fold(0u32, |acc, c| acc.saturating_add(c)),
        }
    }

    /// The counts, lowest key first.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = u32> + ExactSizeIterator + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    fn widen(&mut self) {
        if let Counts::Narrow(v) = self {
            let mut wide = Vec::with_capacity(v.len());
            wide.extend(v.iter().map(|c| u32::from(*c)));
            *self = Counts::Wide(wide);
        }
    }
}

fn grow_exact<T: Clone + Default>(v: &mut Vec<T>, len: usize) {
    if v.len() < len {
        // Exact growth: a sketch's range settles after a few readings, and thousands of
        // busy series may hold one, so slack would cost more than the rare reallocation.
        v.reserve_exact(len - v.len());
        v.resize(len, T::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_until_a_bucket_passes_255_then_exact() {
        let mut c = Counts::default();
        c.grow_to(3);
        for _ in 0..255 {
            c.add(1, 1);
        }
        assert!(matches!(c, Counts::Narrow(_)));
        assert_eq!(c.heap_bytes(), 3);
        c.add(1, 1);
        c.add(2, 7);
        assert!(matches!(c, Counts::Wide(_)));
        assert_eq!(c.iter().collect::<Vec<_>>(), [0, 256, 7]);
        c.prepend_zeros(2);
        assert_eq!(c.iter().collect::<Vec<_>>(), [0, 0, 0, 256, 7]);
        assert_eq!(c.drain_front(4), 256);
        c.add(0, u32::MAX);
        assert_eq!(c.get(0), u32::MAX);
    }

    #[test]
    fn merging_into_a_narrow_bucket_widens_when_needed() {
        let mut c = Counts::default();
        c.grow_to(2);
        c.add(0, 200);
        c.add(1, 100);
        let merged = c.drain_front(1);
        c.add(0, merged);
        assert_eq!(c.get(0), 300);
        assert_eq!(c.len(), 1);
    }
}
