//! Reading and acknowledging the spool per output: each output peeks from its own
//! position and acknowledges it durably (its position file, see `cursors.rs`); space is
//! reclaimed only below the smallest position, so a segment goes when every output has
//! acknowledged it. The single-output calls (`peek`, `peek_many`, `ack`) act on output 0.

use std::path::Path;

use super::cursors::{self, Cursor};
use super::{recover, Batch, OutputStats, SegmentMeta, Spool, SpoolError};

impl Spool {
    /// The oldest batch output 0 has not acknowledged, left in place; the same one until
    /// it is acked.
    pub fn peek(&mut self) -> Result<Option<Batch>, SpoolError> {
        Ok(self.peek_many(0)?.into_iter().next())
    }

    /// [`Spool::peek_many_for`] output 0.
    pub fn peek_many(&mut self, max_bytes: usize) -> Result<Vec<Batch>, SpoolError> {
        self.peek_many_for(0, max_bytes)
    }

    /// [`Spool::ack_for`] output 0.
    pub fn ack(&mut self, up_to: u64) -> Result<(), SpoolError> {
        self.ack_for(0, up_to)
    }

    /// The outputs' names, in the order their numbers follow.
    pub fn outputs(&self) -> Vec<String> {
        self.outputs.iter().map(|c| c.name.clone()).collect()
    }

    /// Consecutive oldest batches output `out` has not acknowledged, whose payloads total at
    /// most `max_bytes` (always at least one when any is left for it).
    pub fn peek_many_for(
        &mut self,
        out: usize,
        max_bytes: usize,
    ) -> Result<Vec<Batch>, SpoolError> {
        let acked = self.cursor(out)?.acked;
        let mut found: Vec<Batch> = Vec::new();
        let mut ends = Vec::new();
        let mut total = 0usize;
        let (mut idx, mut offset) = self.start_of(out);
        while let Some(seg) = self.segments.get(idx).copied() {
            let mut payload = Vec::new();
            let Some((start, h)) = self.next_valid(seg, offset, Some(&mut payload))? else {
                (idx, offset) = (idx + 1, 0);
                continue;
            };
            if idx == 0 && offset == self.head {
                self.head = start; // past a corrupt region, if there was one
            }
            offset = start + h.record_len();
            if h.id <= acked {
                continue;
            }
            if !found.is_empty() && total + payload.len() > max_bytes {
                break;
            }
            total += payload.len();
            ends.push((h.id, seg.first_id, offset));
            let (id, points, min_ts, max_ts) = (h.id, h.points, h.min_ts, h.max_ts);
            found.push(Batch {
                id,
                points,
                min_ts,
                max_ts,
                payload,
            });
            if total >= max_bytes {
                break;
            }
        }
        if let Some(c) = self.outputs.get_mut(out) {
            c.peeked = ends;
        }
        Ok(found)
    }

    /// Marks every record with id <= `up_to` delivered to output `out`: persists its
    /// position, then, if that raised the smallest position, reclaims the space of the
    /// segments every output has acknowledged: older ones are deleted, the active one is
    /// truncated to zero and written on from there. Acking at or below its position is a
    /// no-op.
    pub fn ack_for(&mut self, out: usize, up_to: u64) -> Result<(), SpoolError> {
        let next_id = self.next_id;
        let (dir, fsync) = (self.dir.clone(), self.fsync);
        let c = self.cursor_mut(out)?;
        if up_to <= c.acked {
            return Ok(());
        }
        if up_to >= next_id {
            return Err(SpoolError::AckBeyondEnd { id: up_to, next_id });
        }
        recover::write_ack_file(&dir, &c.file, up_to, fsync)?;
        c.acked = up_to;
        // Start the next read after the last batch acked, not at the old position.
        if let Some(&(_, seg, end)) = c.peeked.iter().rev().find(|p| p.0 <= up_to) {
            c.hint = Some((seg, end));
        }
        let min = self.outputs.iter().map(|c| c.acked).min().unwrap_or(up_to);
        if min > self.acked {
            self.reclaim(min)?;
        }
        Ok(())
    }

    /// Each output's position, backlog and drops (no I/O).
    pub fn output_stats(&self) -> Vec<OutputStats> {
        let each = |c: &Cursor| {
            let mut s = stats_above(self.segments.iter(), &c.name, c.acked);
            (s.dropped_batches, s.dropped_points) = c.dropped;
            s
        };
        self.outputs.iter().map(each).collect()
    }

    /// Read-only [`Spool::output_stats`] of a spool directory, safe while a daemon holds it:
    /// every output with a position file (drops are not kept on disk: 0).
    pub fn inspect_outputs(dir: &Path) -> Result<Vec<OutputStats>, SpoolError> {
        let positions = cursors::peek_all(dir)?;
        let min = positions.iter().map(|p| p.1).min().unwrap_or(0);
        let found = recover::recover_dir(dir, min, false, false)?;
        let each = |(name, acked): &(String, u64)| stats_above(found.segments.iter(), name, *acked);
        Ok(positions.iter().map(each).collect())
    }

    /// Makes `min` the smallest position and reclaims what every output has acknowledged.
    fn reclaim(&mut self, min: u64) -> Result<(), SpoolError> {
        self.acked = min;
        while let Some(front) = self.segments.front() {
            if front.last_id > min {
                break;
            }
            // The active segment is emptied in place: deleting and recreating it on every
            // ack would cost a create, an unlink and a directory fsync per batch.
            let active = self.segments.len() == 1 && self.writer.is_some();
            if active && front.size < self.segment_bytes && self.empty_active() {
                return Ok(());
            }
            self.pop_front_segment()?;
        }
        self.step_head(min)
    }

    /// Where output `out` starts reading: its hint when still valid, else the start of
    /// the first segment holding ids above its position (the head in the oldest one).
    fn start_of(&self, out: usize) -> (usize, u64) {
        let Some(c) = self.outputs.get(out) else {
            return (self.segments.len(), 0);
        };
        if let Some((seg_id, off)) = c.hint {
            let at = self.segments.iter().position(|s| s.first_id == seg_id);
            if let Some(i) = at.filter(|&i| i > 0 || off >= self.head) {
                return (i, off);
            }
        }
        let i = self.segments.iter().position(|s| s.last_id > c.acked);
        let i = i.unwrap_or(self.segments.len());
        (i, if i == 0 { self.head } else { 0 })
    }

    /// Counts, per output, what dropping `seg` for the bound costs it.
    pub(super) fn count_drop(&mut self, seg: &SegmentMeta) {
        for c in &mut self.outputs {
            let (records, points) = cursors::above(seg, c.acked);
            c.dropped.0 += records;
            c.dropped.1 += points;
        }
    }

    /// Forgets every output's read hint into segment `first_id` (emptied or deleted).
    pub(super) fn forget_hints(&mut self, first_id: u64) {
        for c in &mut self.outputs {
            if c.hint.is_some_and(|h| h.0 == first_id) {
                c.hint = None;
            }
            c.peeked.retain(|p| p.1 != first_id);
        }
    }

    fn cursor(&self, out: usize) -> Result<&Cursor, SpoolError> {
        self.outputs.get(out).ok_or(SpoolError::NoOutput(out))
    }

    fn cursor_mut(&mut self, out: usize) -> Result<&mut Cursor, SpoolError> {
        self.outputs.get_mut(out).ok_or(SpoolError::NoOutput(out))
    }
}

/// An output's stats from the segments left and its position.
fn stats_above<'a>(
    segments: impl Iterator<Item = &'a SegmentMeta>,
    name: &str,
    acked: u64,
) -> OutputStats {
    let mut s = OutputStats {
        name: name.to_string(),
        acked_id: acked,
        batches: 0,
        points: 0,
        oldest_ts: None,
        dropped_batches: 0,
        dropped_points: 0,
    };
    for seg in segments {
        let (records, points) = cursors::above(seg, acked);
        if records > 0 {
            s.batches += records;
            s.points += points;
            s.oldest_ts = Some(s.oldest_ts.map_or(seg.min_ts, |t| t.min(seg.min_ts)));
        }
    }
    s
}
