//! The dead-letter file: points the store refused one by one (400/422 as bad data, 413 as
//! too large; the uplink splits refused requests down to the points at fault) are moved here
//! for an operator instead of being retried forever. Line protocol with one `#` comment
//! line per entry, so a fixed file can be replayed with `influx write`. Bounded: the file
//! is rotated to `dead-letter.lp.1` (replacing it) before it would pass 16 MiB.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;

use super::{Batch, SpoolError};

/// File name of the current dead-letter file.
pub const DEAD_LETTER_FILE: &str = "dead-letter.lp";
/// Size at which the dead-letter file is rotated (one older generation is kept).
pub const DEAD_LETTER_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Appends `batch` to `dir/dead-letter.lp`, preceded by `# <reason> (batch <id>, <n> points)`.
pub fn dead_letter(dir: &Path, batch: &Batch, reason: &str) -> Result<(), SpoolError> {
    fs::create_dir_all(dir)?;
    // A reason with a line break would end the comment and corrupt the file.
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let header = format!("# {reason} (batch {}, {} points)\n", batch.id, batch.points);
    let mut entry = header.into_bytes();
    entry.extend_from_slice(&batch.payload);
    if !entry.ends_with(b"\n") {
        entry.push(b'\n');
    }
    let path = dir.join(DEAD_LETTER_FILE);
    let size = match fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e.into()),
    };
    if size > 0 && size + entry.len() as u64 > DEAD_LETTER_MAX_BYTES {
        fs::rename(&path, dir.join(format!("{DEAD_LETTER_FILE}.1")))?;
    }
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    file.write_all(&entry)?;
    file.sync_data()?;
    Ok(())
}
