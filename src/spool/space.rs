//! The spool's disk space: dropping the oldest segments for the size bound, reclaiming
//! acknowledged ones, and cleaning up after a failed append (a full disk is retried in
//! place, so a long ENOSPC leaves no trail of empty segments and spends no ids).

use std::fs;
use std::io;

use super::segment::{self, SegmentMeta};
use super::{recover::ACK_LEN, Spool, SpoolError};

impl Spool {
    /// Cleans up after a failed append at `offset` of the active segment. When the partial
    /// record is cut off again, the next append rewrites the same place with the same id
    /// (a full disk retried every second must not leave a trail of empty segments).
    /// Otherwise the id is spent (the record may still reach the disk), and the next append
    /// starts a new segment; bytes past `size` are never read before the next open.
    pub(super) fn write_failed(&mut self, offset: u64, e: &io::Error) {
        let cut = self.writer.as_ref().map(|f| f.set_len(offset));
        if e.kind() == io::ErrorKind::StorageFull && matches!(cut, Some(Ok(()))) {
            return;
        }
        self.next_id += 1;
        self.writer = None;
        // A segment that never got a record is removed, not left behind empty.
        if self.segments.back().is_some_and(|s| s.size == 0) {
            if let Some(back) = self.segments.pop_back() {
                self.forget(back.first_id);
                let _ = fs::remove_file(segment::path(&self.dir, back.first_id));
            }
        }
    }

    /// Truncates the wholly acked active segment to zero; false if that failed (the caller
    /// deletes it instead). Its name stays below its records' ids, which is all the format
    /// needs; no fsync: if the truncation is lost in a crash, the records reappear acked.
    pub(super) fn empty_active(&mut self) -> bool {
        let (Some(file), Some(seg)) = (self.writer.as_ref(), self.segments.front_mut()) else {
            return false;
        };
        if file.set_len(0).is_err() {
            return false;
        }
        let (first_id, last_id) = (seg.first_id, seg.last_id);
        *seg = SegmentMeta {
            last_id,
            ..SegmentMeta::empty(first_id)
        };
        self.head = 0;
        self.forget(first_id);
        true
    }

    /// Drops oldest segments until `record_len` more bytes fit, counting what they held
    /// in `pending_drops`.
    pub(super) fn make_room(&mut self, record_len: u64) -> Result<(), SpoolError> {
        while let Some(front) = self.segments.front().copied() {
            if self.disk_bytes() + ACK_LEN + record_len <= self.max_bytes {
                break;
            }
            self.pending_drops.0 += front.records;
            self.pending_drops.1 += front.points;
            self.count_drop(&front);
            self.pop_front_segment()?;
        }
        Ok(())
    }

    /// Removes the oldest segment and its file; the head moves to the next segment.
    pub(super) fn pop_front_segment(&mut self) -> Result<(), SpoolError> {
        let Some(front) = self.segments.pop_front() else {
            return Ok(());
        };
        self.head = 0;
        if self.segments.is_empty() {
            self.writer = None;
        }
        self.forget(front.first_id);
        match fs::remove_file(segment::path(&self.dir, front.first_id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Drops the cached reader and known corrupt regions of segment `first_id`.
    pub(super) fn forget(&mut self, first_id: u64) {
        if self.reader.as_ref().is_some_and(|(id, _)| *id == first_id) {
            self.reader = None;
        }
        self.skips.retain(|s| s.0 != first_id);
        self.forget_hints(first_id);
    }

    pub(super) fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }
}
