//! One durable delivery position per output (its "cursor"): the id up to which that output
//! has acknowledged the spool. The output `default` keeps today's `ack` file, so a
//! single-output spool is byte for byte what it was and an upgrade moves nothing; output
//! `x` has `ack-x` in the same 16-byte format (magic, crc32c, id), replaced atomically
//! (tmp, fsync, rename, fsync dir) and validated on load like the ack file.
//!
//! At open: an output without a file starts at the oldest position any existing file holds
//! (the spool keeps exactly what some output still needs, so a new output gets the whole
//! retained backlog and nothing the spool already reclaimed; an upgraded spool's `ack` is
//! that position). Files of outputs no longer configured are deleted, logged: they no longer
//! hold segments. Segments are reclaimed only below the smallest configured position.

use std::fs;
use std::io;
use std::path::Path;

use super::recover::{self, ACK_FILE};
use super::segment::SegmentMeta;

/// Name of the output whose position is the plain `ack` file.
pub const DEFAULT_OUTPUT: &str = "default";
const PREFIX: &str = "ack-";

/// One output's delivery position.
#[derive(Debug, Clone)]
pub(super) struct Cursor {
    pub name: String,
    /// Its position file in the spool directory.
    pub file: String,
    /// Every record with an id <= this is delivered to this output.
    pub acked: u64,
    /// Where to start reading: a record boundary `(segment first id, offset)` at or before
    /// its oldest unacked record; cleared when that segment is emptied or deleted.
    pub hint: Option<(u64, u64)>,
    /// Ends `(id, segment first id, offset after it)` of the batches last peeked.
    pub peeked: Vec<(u64, u64, u64)>,
    /// Batches and points the size bound dropped before this output had them.
    pub dropped: (u64, u64),
}

/// Position file of output `name`.
pub(super) fn file_of(name: &str) -> String {
    if name == DEFAULT_OUTPUT {
        ACK_FILE.to_string()
    } else {
        format!("{PREFIX}{name}")
    }
}

/// Every position file in `dir`, as (output name, file name).
fn on_disk(dir: &Path) -> io::Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == ACK_FILE {
            found.push((DEFAULT_OUTPUT.to_string(), name.to_string()));
        } else if let Some(out) = name.strip_prefix(PREFIX).filter(|n| !n.contains('.')) {
            found.push((out.to_string(), name.to_string()));
        }
    }
    found.sort();
    Ok(found)
}

/// What [`load`] found.
pub(super) struct Loaded {
    pub cursors: Vec<Cursor>,
    /// Outputs whose position file was unreadable: they resend everything retained.
    pub reset: bool,
}

/// The positions of `outputs` (see the module doc), their files written where new or
/// unreadable, the files of other outputs deleted.
pub(super) fn load(dir: &Path, outputs: &[String], fsync: bool) -> io::Result<Loaded> {
    let mut known = Vec::new();
    for (name, file) in on_disk(dir)? {
        let pos = recover::read_ack_file(dir, &file)?;
        known.push((name, file, pos.unwrap_or((0, true))));
    }
    // The oldest retained position: where a new output starts.
    let oldest = known.iter().map(|k| k.2 .0).min().unwrap_or(0);
    let mut cursors = Vec::new();
    let mut reset = false;
    for name in outputs {
        let file = file_of(name);
        let found = known.iter().find(|k| k.1 == file).map(|k| k.2);
        let acked = match found {
            Some((id, false)) => id,
            Some((_, true)) => {
                reset = true;
                tracing::error!(output = %name, "delivery position unreadable: resending everything the spool holds");
                0
            }
            None => oldest,
        };
        if found.is_none_or(|f| f.1) {
            recover::write_ack_file(dir, &file, acked, fsync)?;
        }
        cursors.push(Cursor {
            name: name.clone(),
            file,
            acked,
            hint: None,
            peeked: Vec::new(),
            dropped: (0, 0),
        });
    }
    forget(dir, &known, &cursors, fsync)?;
    Ok(Loaded { cursors, reset })
}

/// Deletes the position files of outputs not in `cursors` (logged).
fn forget(
    dir: &Path,
    known: &[(String, String, (u64, bool))],
    cursors: &[Cursor],
    fsync: bool,
) -> io::Result<()> {
    let mut removed = false;
    for (name, file, (id, _)) in known {
        if cursors.iter().any(|c| c.file == *file) {
            continue;
        }
        tracing::warn!(output = %name, position = id, "output no longer configured: its delivery position is forgotten and holds no data");
        match fs::remove_file(dir.join(file)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => removed = true,
        }
    }
    if removed && fsync {
        recover::sync_dir(dir)?;
    }
    Ok(())
}

/// Read-only: every output with a position file and its position (0 when unreadable).
pub(super) fn peek_all(dir: &Path) -> io::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for (name, file) in on_disk(dir)? {
        let pos = recover::read_ack_file(dir, &file)?;
        out.push((name, pos.map_or(0, |p| p.0)));
    }
    Ok(out)
}

/// Records and points of `seg` above position `acked`. Ids inside a segment are
/// consecutive, so the count is exact (corruption aside); points are prorated in a segment
/// the position cuts. The segment's counters hold only records above the smallest
/// position, which is at or below `acked`.
pub(super) fn above(seg: &SegmentMeta, acked: u64) -> (u64, u64) {
    if seg.last_id <= acked || seg.records == 0 {
        return (0, 0);
    }
    let from = acked.max(seg.first_id.saturating_sub(1));
    let records = (seg.last_id - from).min(seg.records);
    let points = if records == seg.records {
        seg.points
    } else {
        let share = u128::from(seg.points) * u128::from(records) / u128::from(seg.records);
        u64::try_from(share).unwrap_or(seg.points)
    };
    (records, points)
}
