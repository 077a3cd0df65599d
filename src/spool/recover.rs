//! Directory-level pieces of the spool: the exclusive lock, the atomic ack file, and the
//! recovery scan over all segment files shared by `Spool::open` (repairing) and
//! `Spool::inspect` (read-only).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::damage::Lost;
use super::segment::{self, SegmentMeta};

/// Lock file name; its `flock` dies with the process, so `kill -9` never leaves it stale.
pub(super) const LOCK_FILE: &str = "lock";
/// Ack file name (the delivery position of the output `default`, see `cursors.rs`); each
/// position file has a `.tmp` sibling for the atomic replace.
pub(super) const ACK_FILE: &str = "ack";
const TMP_SUFFIX: &str = ".tmp";
/// Ack file magic, little-endian on disk.
const ACK_MAGIC: u32 = 0xF5C1_ACC0;
/// Size of the ack file: magic u32, crc32c u32 (over the id bytes), acked id u64.
pub(super) const ACK_LEN: u64 = 16;

/// Attempts to take the lock, 10 ms apart. A lock can be held for a moment by a forked
/// child that has not yet reached `exec` (which closes our `O_CLOEXEC` descriptor).
const LOCK_ATTEMPTS: u32 = 50;

/// Takes the exclusive `flock` on `dir/lock`. `Ok(None)` when another open file
/// description (another process, or another `Spool` here) keeps holding it.
pub(super) fn lock_dir(dir: &Path) -> io::Result<Option<File>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))?;
    for attempt in 1..=LOCK_ATTEMPTS {
        // SAFETY: flock(2) only reads the descriptor number; `file` owns that descriptor
        // and keeps it open for the whole call. No memory is passed or aliased.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(file));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::WouldBlock {
            return Err(err);
        }
        if attempt < LOCK_ATTEMPTS {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    Ok(None)
}

/// The position held by ack file `file` (0 when none yet): `None` when there is no such
/// file, the flag set (and id 0) when it is unreadable; then everything still on disk is
/// resent to that output (replays are idempotent).
pub(super) fn read_ack_file(dir: &Path, file: &str) -> io::Result<Option<(u64, bool)>> {
    let bytes = match fs::read(dir.join(file)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let field = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
    };
    let id = bytes.get(8..16).and_then(|s| <[u8; 8]>::try_from(s).ok());
    match (field(0), field(4), id) {
        (Some(m), Some(crc), Some(id))
            if bytes.len() as u64 == ACK_LEN
                && u32::from_le_bytes(m) == ACK_MAGIC
                && u32::from_le_bytes(crc) == crc32c::crc32c(&id) =>
        {
            Ok(Some((u64::from_le_bytes(id), false)))
        }
        _ => Ok(Some((0, true))),
    }
}

/// Replaces the ack file atomically: write tmp, fsync, rename, fsync the directory. On a
/// full disk (no block for the tmp file) the existing ack is overwritten in place instead:
/// its block is already allocated, a 16-byte write inside one sector does not tear in
/// practice, and if it did the CRC would catch it (everything is then resent, harmless).
/// Without that, a full disk could never be freed: space comes back only after an ack.
#[cfg(test)]
pub(super) fn write_ack(dir: &Path, id: u64, fsync: bool) -> io::Result<()> {
    write_ack_file(dir, ACK_FILE, id, fsync)
}

/// [`write_ack`] of the position file `file`.
pub(super) fn write_ack_file(dir: &Path, file: &str, id: u64, fsync: bool) -> io::Result<()> {
    let id_bytes = id.to_le_bytes();
    let mut buf = [0u8; ACK_LEN as usize];
    buf[..4].copy_from_slice(&ACK_MAGIC.to_le_bytes());
    buf[4..8].copy_from_slice(&crc32c::crc32c(&id_bytes).to_le_bytes());
    buf[8..].copy_from_slice(&id_bytes);
    let tmp = dir.join(format!("{file}{TMP_SUFFIX}"));
    let written = File::create(&tmp).and_then(|mut file| {
        file.write_all(&buf)?;
        if fsync {
            file.sync_data()?;
        }
        Ok(())
    });
    match written {
        Err(e) if e.kind() == io::ErrorKind::StorageFull => {
            let _ = fs::remove_file(&tmp);
            let f = OpenOptions::new().write(true).open(dir.join(file))?;
            f.write_all_at(&buf, 0)?;
            return if fsync { f.sync_data() } else { Ok(()) };
        }
        other => other?,
    }
    fs::rename(&tmp, dir.join(file))?;
    if fsync {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Removes temporary position files left by a crash before their rename (the old
/// position still holds).
pub(super) fn remove_stale_tmp(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(ACK_FILE) && name.ends_with(TMP_SUFFIX) {
            match fs::remove_file(dir.join(name)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Makes renames, creations and deletions in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Result of scanning every segment in the directory.
#[derive(Debug, Default)]
pub(super) struct Recovered {
    /// Segments holding unacknowledged records, oldest first.
    pub segments: VecDeque<SegmentMeta>,
    /// Offset of the oldest unacknowledged record in `segments[0]`.
    pub head: u64,
    /// Highest valid record id seen (acked or not).
    pub last_id: u64,
    pub torn_tail_bytes: u64,
    /// Unacknowledged records and points lost to corruption (middle regions and tails).
    pub lost: Lost,
    /// Bytes of every segment file as found, wholly acknowledged ones included.
    pub file_bytes: u64,
    /// Corrupt regions `(segment first id, start, end)` inside kept segments.
    pub skips: Vec<(u64, u64, u64)>,
}

/// Scans all segments of `dir`. With `repair`, torn tails are truncated and segments
/// without unacknowledged records are deleted; without it nothing is written, and
/// segments vanishing under a running daemon are skipped.
pub(super) fn recover_dir(
    dir: &Path,
    acked: u64,
    repair: bool,
    fsync: bool,
) -> io::Result<Recovered> {
    let ids = segment::list(dir)?;
    let mut out = Recovered::default();
    let mut removed = false;
    for (i, &first_id) in ids.iter().enumerate() {
        let path = segment::path(dir, first_id);
        // A segment holds ids below the next segment's first id: if that is <= ack+1,
        // every record in it was delivered and it need not even be read.
        let wholly_acked = ids
            .get(i + 1)
            .is_some_and(|&next| next <= acked.saturating_add(1));
        if !wholly_acked {
            let file = match OpenOptions::new().read(true).write(repair).open(&path) {
                Ok(f) => f,
                Err(e) if !repair && e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let len = file.metadata()?.len();
            out.file_bytes += len;
            let scan = segment::scan(&file, first_id, len, acked, &mut out.last_id)?;
            out.torn_tail_bytes += scan.torn_tail_bytes;
            out.lost.add(scan.lost);
            if scan.meta.records > 0 {
                let regions = scan
                    .corrupt
                    .iter()
                    .map(|&(start, end)| (first_id, start, end));
                out.skips.extend(regions);
                if repair && scan.tail_bytes > 0 {
                    file.set_len(scan.meta.size)?;
                    if fsync {
                        file.sync_all()?;
                    }
                }
                if out.segments.is_empty() {
                    out.head = scan.head;
                }
                out.segments.push_back(scan.meta);
                continue;
            }
        } else if !repair {
            out.file_bytes += fs::metadata(&path).map_or(0, |m| m.len());
        }
        if repair {
            fs::remove_file(&path)?;
            removed = true;
        }
    }
    if removed && fsync {
        sync_dir(dir)?;
    }
    Ok(out)
}
