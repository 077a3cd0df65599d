//! The topic cache's entry: what one topic resolved to, kept small because a gateway has one
//! per sensor topic (tens of thousands).
//!
//! An entry holds its subscription's index, the quantity its topic names (an id in the
//! source's key table) and its series as `(key id, series id)` pairs sorted by key id. A key is
//! a quantity, or a quantity plus payload tag values (`series_cache_key`); the source interns
//! each distinct key once, so two quantities per topic cost 16 bytes, not a hash table and
//! two strings. Topic tags are not kept: they are captured again from the topic on the rare
//! series miss that needs them.

use crate::reading::SeriesId;

/// `quantity` of an entry whose topic names none.
const NO_QUANTITY: u32 = u32::MAX;

/// What one topic resolves to.
pub(super) struct TopicEntry {
    sub: u32,
    quantity: u32,
    series: Box<[(u32, SeriesId)]>,
}

impl TopicEntry {
    pub(super) fn new(sub: usize, quantity: Option<u32>) -> TopicEntry {
        TopicEntry {
            sub: sub as u32,
            quantity: quantity.unwrap_or(NO_QUANTITY),
            series: Box::default(),
        }
    }

    /// Index of the subscription the topic matched.
    pub(super) fn sub(&self) -> usize {
        self.sub as usize
    }

    /// Key id of the quantity the topic names, if it names one.
    pub(super) fn quantity(&self) -> Option<u32> {
        (self.quantity != NO_QUANTITY).then_some(self.quantity)
    }

    /// The series cached under key `key`.
    pub(super) fn series(&self, key: u32) -> Option<SeriesId> {
        let i = self.series.binary_search_by_key(&key, |e| e.0).ok()?;
        Some(self.series[i].1)
    }

    /// Caches `id` under `key` (a miss only: the slice is rebuilt exactly, no spare room).
    pub(super) fn add_series(&mut self, key: u32, id: SeriesId) {
        let Err(at) = self.series.binary_search_by_key(&key, |e| e.0) else {
            return;
        };
        let mut series = Vec::with_capacity(self.series.len() + 1);
        series.extend_from_slice(&self.series[..at]);
        series.push((key, id));
        series.extend_from_slice(&self.series[at..]);
        self.series = series.into_boxed_slice();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_found_by_key_in_any_insertion_order() {
        let mut e = TopicEntry::new(3, None);
        assert_eq!((e.sub(), e.quantity()), (3, None));
        for (k, s) in [(7, 70), (2, 20), (9, 90), (5, 50)] {
            e.add_series(k, SeriesId(s));
        }
        e.add_series(2, SeriesId(99)); // a second add keeps the first id
        for (k, s) in [(7, 70), (2, 20), (9, 90), (5, 50)] {
            assert_eq!(e.series(k), Some(SeriesId(s)));
        }
        assert_eq!(e.series(4), None);
        assert_eq!(e.series.len(), 4);
        assert_eq!(TopicEntry::new(0, Some(4)).quantity(), Some(4));
    }

    #[test]
    fn an_entry_is_small() {
        assert_eq!(std::mem::size_of::<TopicEntry>(), 24);
    }
}
