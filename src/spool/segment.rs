//! One segment file of the spool: the record codec, verified reads, resync after
//! corruption, and the recovery scan. The format itself is documented in `spool/mod.rs`.
//!
//! Everything here is positional (`pread`/`pwrite` via `FileExt`) and bounded by an
//! explicit `end` offset, so a reader never trusts bytes past the length it was told
//! is valid and never allocates from an unverified length field.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::damage::{self, Lost};

/// Record magic. Little-endian bytes `E5 75 C1 F5`: 0xC1 and 0xF5 never occur in
/// UTF-8, so line-protocol payloads cannot fake a header during resync.
pub(super) const MAGIC: u32 = 0xF5C1_75E5;
/// Bytes of the fixed record header that precedes every payload.
pub(super) const HEADER_LEN: u64 = 40;
/// Segment file suffix; the stem is the zero-padded id of the segment's first record.
pub(super) const SEGMENT_SUFFIX: &str = ".seg";
/// Chunk size for streaming CRC checks and the magic search: bounds memory per read.
const CHUNK: usize = 64 * 1024;

/// The decoded fixed part of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RecordHeader {
    pub id: u64,
    pub len: u32,
    pub points: u32,
    pub min_ts: i64,
    pub max_ts: i64,
}

impl RecordHeader {
    /// Header plus payload bytes on disk.
    pub fn record_len(&self) -> u64 {
        HEADER_LEN + u64::from(self.len)
    }
}

/// In-memory summary of one segment file. Counters cover unacknowledged records only;
/// `size` is the file's valid length on disk (acked records included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SegmentMeta {
    pub first_id: u64,
    pub last_id: u64,
    pub size: u64,
    pub records: u64,
    pub points: u64,
    pub min_ts: i64,
    pub max_ts: i64,
}

impl SegmentMeta {
    /// A segment with no records yet; `last_id` sits just below `first_id` so any ack
    /// at or past the previous id covers it.
    pub fn empty(first_id: u64) -> Self {
        SegmentMeta {
            first_id,
            last_id: first_id.saturating_sub(1),
            size: 0,
            records: 0,
            points: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
        }
    }

    /// Counts one unacknowledged record that ends at `end`.
    pub fn add(&mut self, h: &RecordHeader, end: u64) {
        self.last_id = self.last_id.max(h.id);
        self.size = self.size.max(end);
        self.records += 1;
        self.points += u64::from(h.points);
        self.min_ts = self.min_ts.min(h.min_ts);
        self.max_ts = self.max_ts.max(h.max_ts);
    }

    /// Forgets one record that was acknowledged (time range stays at segment granularity).
    pub fn remove(&mut self, h: &RecordHeader) {
        self.records = self.records.saturating_sub(1);
        self.points = self.points.saturating_sub(u64::from(h.points));
    }
}

/// Path of the segment whose first record id is `first_id`.
pub(super) fn path(dir: &Path, first_id: u64) -> PathBuf {
    dir.join(format!("{first_id:020}{SEGMENT_SUFFIX}"))
}

/// Segment first ids found in `dir`, ascending. Other files are ignored.
pub(super) fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)) else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(id) = stem.parse::<u64>() {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Encodes the header of a record carrying `payload` (its CRC covers the payload).
pub(super) fn encode_header(h: &RecordHeader, payload: &[u8]) -> [u8; HEADER_LEN as usize] {
    let mut out = [0u8; HEADER_LEN as usize];
    let fields: [(usize, &[u8]); 6] = [
        (0, &MAGIC.to_le_bytes()),
        (4, &h.len.to_le_bytes()),
        (12, &h.id.to_le_bytes()),
        (20, &h.points.to_le_bytes()),
        (24, &h.min_ts.to_le_bytes()),
        (32, &h.max_ts.to_le_bytes()),
    ];
    for (at, bytes) in fields {
        if let Some(slot) = out.get_mut(at..at + bytes.len()) {
            slot.copy_from_slice(bytes);
        }
    }
    let crc = crc32c::crc32c_append(header_crc(&out), payload);
    if let Some(slot) = out.get_mut(8..12) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
    out
}

/// CRC over the covered header bytes: the length field and everything after the CRC.
fn header_crc(header: &[u8]) -> u32 {
    let len = header.get(4..8).unwrap_or_default();
    let rest = header.get(12..40).unwrap_or_default();
    crc32c::crc32c_append(crc32c::crc32c(len), rest)
}

/// Reads exactly `buf.len()` bytes at `offset`; `false` if the file ended first.
fn read_full(file: &File, buf: &mut [u8], offset: u64) -> io::Result<bool> {
    match file.read_exact_at(buf, offset) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

fn le_u32(raw: &[u8], at: usize) -> u32 {
    let bytes = raw.get(at..at + 4).and_then(|s| s.try_into().ok());
    bytes.map_or(0, u32::from_le_bytes)
}

fn le_u64(raw: &[u8], at: usize) -> u64 {
    let bytes = raw.get(at..at + 8).and_then(|s| s.try_into().ok());
    bytes.map_or(0, u64::from_le_bytes)
}

/// Reads the fixed header at `offset` and checks only its magic and that the record fits
/// inside `end`; the CRC is not checked. Returns the raw bytes for `read_record`.
pub(super) fn read_header(
    file: &File,
    offset: u64,
    end: u64,
) -> io::Result<Option<(RecordHeader, [u8; HEADER_LEN as usize])>> {
    let mut raw = [0u8; HEADER_LEN as usize];
    if end.saturating_sub(offset) < HEADER_LEN || !read_full(file, &mut raw, offset)? {
        return Ok(None);
    }
    let h = RecordHeader {
        len: le_u32(&raw, 4),
        id: le_u64(&raw, 12),
        points: le_u32(&raw, 20),
        min_ts: le_u64(&raw, 24) as i64,
        max_ts: le_u64(&raw, 32) as i64,
    };
    let fits = h.record_len() <= end - offset;
    Ok((le_u32(&raw, 0) == MAGIC && fits).then_some((h, raw)))
}

/// Reads and checks the record at `offset`. `None` when the bytes there are not a whole
/// valid record inside `end` (bad magic, length past `end`, CRC mismatch, short file).
/// With `payload`, the verified payload is left in it.
pub(super) fn read_record(
    file: &File,
    offset: u64,
    end: u64,
    payload: Option<&mut Vec<u8>>,
) -> io::Result<Option<RecordHeader>> {
    let Some((h, raw)) = read_header(file, offset, end)? else {
        return Ok(None);
    };
    let body = offset + HEADER_LEN;
    let crc = header_crc(&raw);
    let crc = match payload {
        Some(buf) => {
            buf.resize(h.len as usize, 0);
            if !read_full(file, buf, body)? {
                return Ok(None);
            }
            crc32c::crc32c_append(crc, buf)
        }
        None => match streamed_crc(file, crc, body, u64::from(h.len))? {
            Some(crc) => crc,
            None => return Ok(None),
        },
    };
    Ok((crc == le_u32(&raw, 8)).then_some(h))
}

/// Extends `crc` over `len` bytes at `offset` in fixed chunks (no payload-sized buffer).
fn streamed_crc(file: &File, mut crc: u32, offset: u64, len: u64) -> io::Result<Option<u32>> {
    let mut buf = vec![0u8; CHUNK.min(len as usize)];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK as u64) as usize;
        let chunk = &mut buf[..n];
        if !read_full(file, chunk, offset + done)? {
            return Ok(None);
        }
        crc = crc32c::crc32c_append(crc, chunk);
        done += n as u64;
    }
    Ok(Some(crc))
}

/// First offset in `[from, end)` where the record magic starts (all 4 bytes inside).
pub(super) fn find_magic(file: &File, from: u64, end: u64) -> io::Result<Option<u64>> {
    let magic = MAGIC.to_le_bytes();
    let mut buf = vec![0u8; CHUNK];
    let mut pos = from;
    while end.saturating_sub(pos) >= magic.len() as u64 {
        let n = (end - pos).min(CHUNK as u64) as usize;
        let chunk = &mut buf[..n];
        if !read_full(file, chunk, pos)? {
            return Ok(None);
        }
        if let Some(i) = chunk.windows(magic.len()).position(|w| w == magic) {
            return Ok(Some(pos + i as u64));
        }
        if n < CHUNK {
            break;
        }
        // Overlap by magic-1 bytes so a magic split across chunks is still seen.
        pos += (n - (magic.len() - 1)) as u64;
    }
    Ok(None)
}

/// First offset in `[from, end)` holding a valid record with an id above `after_id`:
/// the resync after a corrupt region.
pub(super) fn find_next(
    file: &File,
    from: u64,
    end: u64,
    after_id: u64,
) -> io::Result<Option<(u64, RecordHeader)>> {
    let mut pos = from;
    while let Some(at) = find_magic(file, pos, end)? {
        if let Some(h) = read_record(file, at, end, None)? {
            if h.id > after_id {
                return Ok(Some((at, h)));
            }
        }
        pos = at + 1;
    }
    Ok(None)
}

/// What a recovery scan found in one segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Scan {
    /// Unacknowledged records; `size` is the valid length (where an invalid tail starts).
    pub meta: SegmentMeta,
    /// Offset of the first record with an id above the ack (`size` when none).
    pub head: u64,
    /// Invalid bytes after the last valid record that are a torn write (one record cut short).
    pub torn_tail_bytes: u64,
    /// Invalid bytes after the last valid record, torn or corrupt: truncated by a repair.
    pub tail_bytes: u64,
    /// Corrupt regions `(start, end)` skipped between valid records.
    pub corrupt: Vec<(u64, u64)>,
    /// Unacknowledged records (and their points) lost in corrupt regions and a corrupt tail.
    pub lost: Lost,
}

/// Scans a whole segment of `len` bytes. Ids must rise strictly: `last_id` is the highest
/// id seen before this segment and is raised to the highest valid id in it.
pub(super) fn scan(
    file: &File,
    first_id: u64,
    len: u64,
    acked: u64,
    last_id: &mut u64,
) -> io::Result<Scan> {
    let mut out = Scan {
        meta: SegmentMeta::empty(first_id),
        head: len,
        torn_tail_bytes: 0,
        tail_bytes: 0,
        corrupt: Vec::new(),
        lost: Lost::default(),
    };
    // Valid records seen here (acked ones too): the estimate for headerless damaged ones.
    let mut seen = Seen::default();
    let mut offset = 0;
    while offset < len {
        let valid = read_record(file, offset, len, None)?.filter(|h| h.id > *last_id);
        let h = match valid {
            Some(h) => h,
            None => match find_next(file, offset + 1, len, *last_id)? {
                Some((at, h)) => {
                    let mut points = damage::records(file, offset, at, seen.avg())?;
                    // Ids inside one segment are consecutive: the gap is the exact count,
                    // unless it claims more records than the damaged bytes could hold (a
                    // record takes at least HEADER_LEN + 1 bytes): then the ids themselves
                    // are damaged and the records found stand.
                    let gap = h.id - *last_id - 1;
                    let room = (at - offset) / (HEADER_LEN + 1);
                    if seen.records > 0 && gap <= room {
                        damage::fit(&mut points, gap, seen.avg());
                    }
                    out.lost.add(damage::unacked(&points, h.id - 1, acked));
                    out.corrupt.push((offset, at));
                    offset = at;
                    h
                }
                None => {
                    out.tail_bytes = len - offset;
                    if damage::is_torn(file, offset, len)? {
                        out.torn_tail_bytes = len - offset;
                    } else {
                        let points = damage::records(file, offset, len, seen.avg())?;
                        let last = *last_id + points.len() as u64;
                        out.lost.add(damage::unacked(&points, last, acked));
                    }
                    break;
                }
            },
        };
        *last_id = h.id;
        seen.records += 1;
        seen.points += u64::from(h.points);
        let end = offset + h.record_len();
        if h.id > acked {
            out.head = out.head.min(offset);
            out.meta.add(&h, end);
        }
        offset = end;
    }
    out.meta.size = offset;
    out.head = out.head.min(offset);
    Ok(out)
}

/// Running count of valid records and their points.
#[derive(Debug, Default)]
struct Seen {
    records: u64,
    points: u64,
}

impl Seen {
    fn avg(&self) -> Option<u64> {
        self.points.checked_div(self.records)
    }
}
