//! What invalid bytes in a segment cost, and the resync over them when a read meets them
//! after open (`Spool::next_valid`). Decides whether the invalid end of a segment is a
//! torn write (a prefix of the one record being written when the process died: that batch
//! was never reported durable, nothing is lost) or corruption, and estimates how many
//! records and points a corrupt region held, as far as its bytes still tell.
//!
//! Counting: every intact-looking header in the region (magic, and a record that stays
//! inside the region) is one lost record with its own point count; every stretch without
//! one is one record whose header is gone, estimated at the segment's mean points per
//! record. Between two valid records of one segment the id gap is exact (ids inside a
//! segment are consecutive) and overrides the walk.

use std::fs::File;
use std::io;

use super::segment::{self, RecordHeader, SegmentMeta, HEADER_LEN};
use super::Spool;

/// Records and points lost to corruption.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lost {
    pub records: u64,
    pub points: u64,
}

impl Lost {
    pub fn add(&mut self, other: Lost) {
        self.records += other.records;
        self.points += other.points;
    }
}

/// True when the invalid bytes `[start, len)` at a segment's end can be one record cut
/// short: fewer bytes than a header, or a header declaring a record longer than what is
/// there with no other header after it. A full-length record with a bad CRC, a second
/// header or no header at all is corruption.
pub(super) fn is_torn(file: &File, start: u64, len: u64) -> io::Result<bool> {
    if len.saturating_sub(start) < HEADER_LEN {
        return Ok(true);
    }
    let Some((h, _)) = segment::read_header(file, start, u64::MAX)? else {
        return Ok(false);
    };
    let cut_short = start.saturating_add(h.record_len()) > len;
    Ok(cut_short && segment::find_magic(file, start + 1, len)?.is_none())
}

/// Points of each record whose remains lie in `[start, end)`, oldest first. Headerless
/// stretches count `avg` points, or the mean of the readable headers when `avg` is unknown.
pub(super) fn records(file: &File, start: u64, end: u64, avg: Option<u64>) -> io::Result<Vec<u64>> {
    let mut found: Vec<Option<u64>> = Vec::new();
    let mut at = start;
    while at < end {
        if let Some((h, _)) = segment::read_header(file, at, end)? {
            // A damaged count cannot exceed the payload bytes (a point is longer than 1 byte).
            found.push(Some(u64::from(h.points).min(u64::from(h.len))));
            at += h.record_len();
            continue;
        }
        found.push(None);
        at = segment::find_magic(file, at + 1, end)?.unwrap_or(end);
    }
    let known: Vec<u64> = found.iter().flatten().copied().collect();
    let mean = known.iter().sum::<u64>().checked_div(known.len() as u64);
    let guess = avg.or(mean).unwrap_or(0);
    Ok(found.into_iter().map(|p| p.unwrap_or(guess)).collect())
}

/// Makes `points` hold exactly `count` records (the id gap): missing ones are headerless
/// records at the front estimated at `avg`; extra ones (a stray count) go from the front.
pub(super) fn fit(points: &mut Vec<u64>, count: u64, avg: Option<u64>) {
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    if points.len() > count {
        points.drain(..points.len() - count);
    } else if points.len() < count {
        let missing = count - points.len();
        let guess = avg.unwrap_or(0);
        points.splice(0..0, std::iter::repeat_n(guess, missing));
    }
}

/// The loss of a damaged run of records whose ids end at `last`: the ones above `acked`
/// (already delivered records are no loss).
pub(super) fn unacked(points: &[u64], last: u64, acked: u64) -> Lost {
    let above = usize::try_from(last.saturating_sub(acked)).unwrap_or(usize::MAX);
    let k = above.min(points.len());
    let lost = points.get(points.len() - k..).unwrap_or_default();
    Lost {
        records: k as u64,
        points: lost.iter().sum(),
    }
}

impl Spool {
    /// The first valid record at or after `offset` in `seg`, with its start. Corrupt
    /// bytes are skipped: known regions directly, new ones found by resync and counted.
    pub(super) fn next_valid(
        &mut self,
        seg: SegmentMeta,
        offset: u64,
        mut payload: Option<&mut Vec<u8>>,
    ) -> io::Result<Option<(u64, RecordHeader)>> {
        let mut at = offset;
        while at < seg.size {
            if let Some(h) = self.read_at(seg.first_id, at, seg.size, payload.as_deref_mut())? {
                return Ok(Some((at, h)));
            }
            let known = self.skips.iter().find(|s| s.0 == seg.first_id && s.1 == at);
            at = match known {
                Some(&(_, _, end)) => end,
                None => self.new_damage(seg, at)?,
            };
        }
        Ok(None)
    }

    /// Records a corrupt region found after open starting at `at` (bit rot: every record
    /// in it was reported durable and is unacked, so all are lost); returns its end.
    pub(super) fn new_damage(&mut self, seg: SegmentMeta, at: u64) -> io::Result<u64> {
        let file = self.reader(seg.first_id)?;
        let next = segment::find_next(file, at + 1, seg.size, 0)?;
        let end = next.map_or(seg.size, |(start, _)| start);
        let avg = seg.points.checked_div(seg.records);
        let points = records(file, at, end, avg)?;
        let lost = unacked(&points, u64::MAX, 0);
        self.skips.push((seg.first_id, at, end));
        self.lost.add(lost);
        tracing::error!(
            segment = seg.first_id,
            offset = at,
            bytes = end - at,
            records = lost.records,
            points = lost.points,
            "corrupt spool records skipped (data lost)"
        );
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_pads_and_trims_at_the_front() {
        let mut p = vec![5, 6];
        fit(&mut p, 4, Some(3));
        assert_eq!(p, [3, 3, 5, 6]);
        fit(&mut p, 1, Some(3));
        assert_eq!(p, [6]);
    }

    #[test]
    fn only_unacked_records_are_lost() {
        assert_eq!(
            unacked(&[1, 2, 3], 10, 8),
            Lost {
                records: 2,
                points: 5
            }
        );
        assert_eq!(unacked(&[1, 2, 3], 10, 10), Lost::default());
        assert_eq!(unacked(&[1, 2, 3], 10, 0).records, 3);
    }
}
