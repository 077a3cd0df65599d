//! The crash-safe, bounded, on-disk spool between the line-protocol encoder and the HTTP
//! uplink (store-and-forward, at-least-once). Sync `std::fs` code: the caller wraps it in
//! a mutex and calls it from tasks (`spawn_blocking` or directly; every call is short).
//!
//! # On-disk format
//!
//! One directory holds:
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: segment files, named by a 20-digit zero-padded id at or
//!   below the id of their first record (equal unless the segment was emptied in place,
//!   see 4), a plain concatenation of records (no file header);
//! - `ack`: 16 bytes, little-endian: magic `0xF5C1ACC0` u32, crc32c of the id bytes u32,
//!   last acknowledged record id u64 (0 = nothing acked yet) of the output `default`;
//!   `ack-<name>`: the same for output `<name>` (one delivery position per output, see
//!   `cursors.rs`); created at open. `<file>.tmp` exists only between its write and its
//!   rename, and is removed at open;
//! - `lock`: empty; `open` holds an exclusive `flock` on it, which the kernel drops when
//!   the process dies, so `kill -9` never leaves a stale lock.
//!
//! Other files are ignored (the dead-letter file may live here; it is not counted in
//! `max_bytes`). A record is a 40-byte header and the payload, all little-endian:
//!
//! | off | field   | type | meaning                                                  |
//! |----:|---------|------|----------------------------------------------------------|
//! | 0   | magic   | u32  | `0xF5C175E5` (bytes E5 75 C1 F5: 0xC1/0xF5 never in UTF-8) |
//! | 4   | length  | u32  | payload bytes                                            |
//! | 8   | crc     | u32  | crc32c over bytes 4..8, 12..40 and the payload            |
//! | 12  | id      | u64  | record id                                                |
//! | 20  | points  | u32  | line-protocol points in the payload                      |
//! | 24  | min_ts  | i64  | smallest point timestamp (ns)                            |
//! | 32  | max_ts  | i64  | largest point timestamp (ns)                             |
//! | 40  | payload | [u8] | one batch of line protocol                               |
//!
//! Overhead is 40 bytes per record, plus the 16-byte ack file.
//!
//! # Invariants
//!
//! 1. Ids rise strictly through the whole spool, by 1 inside a segment (a failed append
//!    on a full disk is retried at the same place with the same id; any other failed
//!    append spends its id and the next one starts a new segment). Every record of a
//!    segment has an id below the next segment's name.
//! 2. Only the newest segment is written, only at its valid end: header and payload by
//!    two adjacent `pwrite`s, then one `fdatasync`. `append` returning `Ok` means the
//!    record is durable. A new segment's directory entry is fsynced before its first
//!    record.
//! 3. An output's ack is replaced atomically (tmp, fsync, rename, fsync dir) before any
//!    segment it covers is deleted; a segment is deleted only when every output's durable
//!    ack covers it ("the ack" below is the smallest of them). On a full disk (no block for `ack.tmp`) the ack file is
//!    overwritten in place: 16 bytes in one sector, guarded by its CRC. Records with
//!    id <= ack are never returned again.
//! 4. Acknowledged space is reclaimed at the ack: a segment is deleted when every record
//!    in it is acked, except the one being appended to, which is truncated to zero and
//!    written on (no create, unlink and directory fsync per batch); if the truncation is
//!    lost in a crash its records reappear, acked. A segment is also deleted when the size
//!    bound drops it (oldest first, whole segments, counted), or at open when it holds no
//!    valid unacked record.
//! 5. After every `append`: sum of segment sizes + 16 <= `max_bytes`. A record that
//!    cannot fit even into an empty spool is rejected (`TooLarge`).
//! 6. Recovery (open): invalid bytes after the last valid record of a segment are
//!    truncated. They are a torn tail (a crash mid-write, no loss) only if they can be
//!    one record cut short: fewer than 40 bytes, or a header declaring more bytes than
//!    are there and no other header after it. Anything else is corruption, like an
//!    invalid region followed by a valid record, which is skipped. Resync searches
//!    forward for the magic (it never occurs in line protocol) and checks each candidate:
//!    magic, length inside the file, matching CRC, id above every earlier id, so every
//!    intact record after damage is kept. The records a corrupt region held are counted
//!    from the damaged headers still readable, and exactly from the id gap between two
//!    valid records of a segment (see `damage.rs`); records at or below the ack are no
//!    loss. Segments wholly below the ack are deleted without being read. Later reads
//!    jump over the regions found; damage appearing after open (bit rot) is resynced the
//!    same way when a read meets it, counted once and logged at ERROR.
//!
//! A full disk (ENOSPC) fails the append without losing anything: the caller keeps the
//! batch and retries, and space comes back as soon as the uplink acks (by 3 and 4).
//!
//! Crash windows: during a record write the tail is torn (recovered by 6); between ack
//! rename and segment deletion the segments are deleted at the next open (by 3); a drop
//! for the bound whose deletion was not yet durable reappears and is dropped again at
//! open. SD-card wear: one write + one fdatasync per batch (the caller group-commits a
//! whole window close), two fsyncs per ack (plus an unsynced truncate when it empties the
//! active segment), one directory fsync per new segment.

mod cursors;
mod damage;
mod dead_letter;
mod deliver;
#[cfg(test)]
mod outputs_tests;
mod recover;
mod segment;
mod space;
#[cfg(test)]
mod tests;
mod types;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub use cursors::DEFAULT_OUTPUT;
pub use dead_letter::{dead_letter, DEAD_LETTER_FILE, DEAD_LETTER_MAX_BYTES};
use recover::ACK_LEN;
use segment::{RecordHeader, SegmentMeta, HEADER_LEN};
pub use types::{
    Appended, Batch, OutputStats, Recovery, SpoolError, SpoolOptions, SpoolStats,
    DEFAULT_MAX_BYTES, DEFAULT_SEGMENT_BYTES,
};

/// An open spool. Holds the directory lock until dropped.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    fsync: bool,
    _lock: File,
    /// Segments with unacked records (or the active one), oldest first.
    segments: VecDeque<SegmentMeta>,
    /// Append handle on `segments.back()`; `None` rolls a new segment at the next append.
    writer: Option<File>,
    /// Cached read handle and the first id of the segment it belongs to.
    reader: Option<(u64, File)>,
    /// Offset in `segments[0]` of the oldest unacknowledged record.
    head: u64,
    /// Known corrupt regions `(segment first id, start, end)`, jumped over when read.
    skips: Vec<(u64, u64, u64)>,
    /// The smallest delivery position: every output has every record with id <= this.
    acked: u64,
    /// One delivery position per output, in config order (see `cursors.rs`).
    outputs: Vec<cursors::Cursor>,
    next_id: u64,
    /// Unacked records and points lost to corruption since open (recovery included).
    lost: damage::Lost,
    /// (batches, points) dropped by the bound and not yet reported: reported by the next
    /// successful append (or `open`), so a failed write does not lose the count.
    pending_drops: (u64, u64),
}

impl Spool {
    /// Opens (creating) and locks the directory, then recovers it (see the module doc), with
    /// one output named `default` (the `ack` file).
    pub fn open(cfg: SpoolOptions) -> Result<(Spool, Recovery), SpoolError> {
        Spool::open_for(cfg, &[DEFAULT_OUTPUT.to_string()])
    }

    /// [`Spool::open`] with one delivery position per output in `outputs` (names; an empty
    /// list means `default`): see `cursors.rs` for where a new output starts.
    pub fn open_for(
        cfg: SpoolOptions,
        outputs: &[String],
    ) -> Result<(Spool, Recovery), SpoolError> {
        let dir_err = |source| SpoolError::Dir {
            dir: cfg.dir.clone(),
            source,
        };
        fs::create_dir_all(&cfg.dir).map_err(dir_err)?;
        let lock = recover::lock_dir(&cfg.dir).map_err(dir_err)?;
        let lock = lock.ok_or_else(|| SpoolError::Locked {
            dir: cfg.dir.clone(),
        })?;
        recover::remove_stale_tmp(&cfg.dir)?;
        let default = [DEFAULT_OUTPUT.to_string()];
        let outputs = if outputs.is_empty() {
            &default[..]
        } else {
            outputs
        };
        let loaded = cursors::load(&cfg.dir, outputs, cfg.fsync)?;
        let ack_reset = loaded.reset;
        let acked = loaded.cursors.iter().map(|c| c.acked).min().unwrap_or(0);
        let newest = loaded.cursors.iter().map(|c| c.acked).max().unwrap_or(0);
        let found = recover::recover_dir(&cfg.dir, acked, true, cfg.fsync)?;
        let mut spool = Spool {
            segment_bytes: cfg.segment_bytes.min(cfg.max_bytes / 4),
            max_bytes: cfg.max_bytes,
            fsync: cfg.fsync,
            dir: cfg.dir,
            _lock: lock,
            segments: found.segments,
            writer: None,
            reader: None,
            head: found.head,
            skips: found.skips,
            acked,
            outputs: loaded.cursors,
            next_id: next_id(found.last_id, newest),
            lost: found.lost,
            pending_drops: (0, 0),
        };
        spool.make_room(0)?;
        let (dropped_batches, dropped_points) = std::mem::take(&mut spool.pending_drops);
        if let Some(back) = spool
            .segments
            .back()
            .filter(|s| s.size < spool.segment_bytes)
        {
            let path = segment::path(&spool.dir, back.first_id);
            spool.writer = Some(OpenOptions::new().write(true).open(path)?);
        }
        let stats = spool.stats();
        let recovery = Recovery {
            records: stats.batches,
            points: stats.points,
            bytes: stats.bytes,
            torn_tail_bytes: found.torn_tail_bytes,
            corrupt_records: found.lost.records,
            corrupt_points: found.lost.points,
            dropped_batches,
            dropped_points,
            ack_reset,
        };
        Ok((spool, recovery))
    }

    /// Appends one batch durably (one write + one fdatasync). Drops the oldest segments
    /// first when the record would not fit under `max_bytes`.
    pub fn append(
        &mut self,
        payload: &[u8],
        points: u32,
        min_ts: i64,
        max_ts: i64,
    ) -> Result<Appended, SpoolError> {
        let record_len = HEADER_LEN + payload.len() as u64;
        let len = u32::try_from(payload.len()).ok();
        let Some(len) = len.filter(|_| record_len + ACK_LEN <= self.max_bytes) else {
            let max_bytes = self.max_bytes;
            return Err(SpoolError::TooLarge {
                bytes: record_len,
                max_bytes,
            });
        };
        self.make_room(record_len)?;
        self.roll_if_needed()?;
        let id = self.next_id;
        let h = RecordHeader {
            id,
            len,
            points,
            min_ts,
            max_ts,
        };
        let header = segment::encode_header(&h, payload);
        let (Some(file), Some(seg)) = (self.writer.as_ref(), self.segments.back()) else {
            return Err(io::Error::other("spool has no active segment after roll").into());
        };
        let offset = seg.size;
        // Two adjacent pwrites (no copy of the payload), one fdatasync for both.
        let mut written = file.write_all_at(&header, offset);
        if written.is_ok() {
            written = file.write_all_at(payload, offset + HEADER_LEN);
        }
        if written.is_ok() && self.fsync {
            written = file.sync_data();
        }
        if let Err(e) = written {
            self.write_failed(offset, &e);
            return Err(e.into());
        }
        self.next_id += 1;
        let Some(seg) = self.segments.back_mut() else {
            return Err(io::Error::other("spool lost its active segment").into());
        };
        seg.add(&h, offset + record_len);
        let (dropped_batches, dropped_points) = std::mem::take(&mut self.pending_drops);
        Ok(Appended {
            id,
            dropped_batches,
            dropped_points,
        })
    }

    /// Current counters (no I/O).
    pub fn stats(&self) -> SpoolStats {
        stats_of(&self.segments, self.acked, self.next_id, self.lost)
    }

    /// Read-only view of a spool directory, safe while a daemon holds it: no lock, no
    /// truncation, no deletion (a record being written shows up as a torn tail, ignored).
    pub fn inspect(dir: &Path) -> Result<SpoolStats, SpoolError> {
        let positions = cursors::peek_all(dir)?;
        let acked = positions.iter().map(|p| p.1).min().unwrap_or(0);
        let newest = positions.iter().map(|p| p.1).max().unwrap_or(0);
        let found = recover::recover_dir(dir, acked, false, false)?;
        let next = next_id(found.last_id, newest);
        let mut stats = stats_of(&found.segments, acked, next, found.lost);
        // Every segment file counts, also one wholly acked but not yet deleted.
        stats.bytes = found.file_bytes;
        Ok(stats)
    }

    /// Moves the head over the records <= `up_to` of the partly acked oldest segment.
    fn step_head(&mut self, up_to: u64) -> Result<(), SpoolError> {
        while let Some(front) = self.segments.front().copied() {
            let head = self.head;
            let file = self.reader(front.first_id)?;
            // Cheap stop without reading the payload: the head record is not acked yet.
            if segment::read_header(file, head, front.size)?.is_some_and(|(h, _)| h.id > up_to) {
                break;
            }
            let Some((start, h)) = self.next_valid(front, head, None)? else {
                break;
            };
            if h.id > up_to {
                self.head = start;
                break;
            }
            self.head = start + h.record_len();
            if let Some(f) = self.segments.front_mut() {
                f.remove(&h);
            }
            if h.id == up_to {
                break;
            }
        }
        Ok(())
    }

    /// Starts a new segment when there is no writer or the current one is full.
    fn roll_if_needed(&mut self) -> Result<(), SpoolError> {
        let full = self
            .segments
            .back()
            .is_none_or(|s| s.size >= self.segment_bytes);
        if self.writer.is_some() && !full {
            return Ok(());
        }
        // No tracked segment can have this name: every tracked id is below next_id.
        let path = segment::path(&self.dir, self.next_id);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        if self.fsync {
            recover::sync_dir(&self.dir)?;
        }
        self.segments.push_back(SegmentMeta::empty(self.next_id));
        self.writer = Some(file);
        Ok(())
    }

    /// Read handle on segment `first_id`, reused across calls.
    fn reader(&mut self, first_id: u64) -> io::Result<&File> {
        let file = match self.reader.take() {
            Some((id, f)) if id == first_id => f,
            _ => File::open(segment::path(&self.dir, first_id))?,
        };
        Ok(&self.reader.insert((first_id, file)).1)
    }

    fn read_at(
        &mut self,
        first_id: u64,
        offset: u64,
        end: u64,
        payload: Option<&mut Vec<u8>>,
    ) -> io::Result<Option<RecordHeader>> {
        let file = self.reader(first_id)?;
        segment::read_record(file, offset, end, payload)
    }
}

/// The id after everything seen on disk and everything acked.
fn next_id(last_id: u64, acked: u64) -> u64 {
    last_id.max(acked).saturating_add(1)
}

fn stats_of(
    segments: &VecDeque<SegmentMeta>,
    acked: u64,
    next_id: u64,
    lost: damage::Lost,
) -> SpoolStats {
    let live = || segments.iter().filter(|s| s.records > 0);
    SpoolStats {
        bytes: segments.iter().map(|s| s.size).sum(),
        batches: segments.iter().map(|s| s.records).sum(),
        points: segments.iter().map(|s| s.points).sum(),
        oldest_ts: live().map(|s| s.min_ts).min(),
        newest_ts: live().map(|s| s.max_ts).max(),
        acked_id: acked,
        next_id,
        corrupt_records: lost.records,
        corrupt_points: lost.points,
    }
}
