//! The state file: what the aggregation remembers across restarts (counter totals, occupancy
//! per zone, learned sensor intervals, and later any running aggregate), as one versioned
//! JSON document written atomically. This module owns the format, the atomic write and the
//! bounded read; what goes into each section is its owner's business (`crate::domain`,
//! `crate::health`), and when it is written and restored is the aggregator's.
//!
//! Format (`version` 1):
//!
//! ```json
//! {"version": 1, "saved_at": 1767225600000000000, "gateway": "gw-1",
//!  "sections": {"counters": [...], "occupancy": [...], "sensor_intervals": [...]}}
//! ```
//!
//! - `saved_at`: ns since the epoch (UTC) of the synchronised clock at the save.
//! - `sections`: named, each an owner's JSON value. A reader skips sections it does not know
//!   (a newer daemon's) and a section it cannot parse, alone, with a warning; a new kind of
//!   state is a new section, not a new version. `version` changes only if the envelope does.
//! - Bounded: every section holds at most [`MAX_ENTRIES`] entries and a file larger than
//!   [`MAX_STATE_BYTES`] is refused.
//!
//! Atomic write ([`write_atomic`]): the bytes go to `<file>.tmp`, which is fsynced and renamed
//! over the file, then the directory is fsynced. A crash leaves either the old or the new
//! document, never a torn one; a torn `.tmp` is overwritten by the next save.
//!
//! No device identifier is ever in here: identifier readings are consumed by the privacy path
//! before they reach a series (`crate::privacy`), so sections see only configured tags.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::fs_limits::{self, FileError};
use crate::telemetry::expose;

/// The envelope's format version.
pub const VERSION: u32 = 1;
/// Most entries one section holds (counters, zones, sensors); more are left out, logged.
pub const MAX_ENTRIES: usize = 4096;
/// Largest state file read. At [`MAX_ENTRIES`] in every section a file is a few MiB; a
/// typical gateway's is a few KiB.
pub const MAX_STATE_BYTES: u64 = 8 << 20;

/// One state document; see the module doc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateDoc {
    pub version: u32,
    /// ns since the epoch (UTC).
    pub saved_at: i64,
    pub gateway: String,
    #[serde(default)]
    pub sections: BTreeMap<String, serde_json::Value>,
}

/// Why a state file was not used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("unreadable: {0}")]
    Read(#[from] FileError),
    #[error("not a state document (corrupt or truncated?): {0}")]
    Parse(#[from] serde_json::Error),
    #[error("format version {0}, this daemon reads {VERSION}")]
    Version(u32),
}

impl StateDoc {
    pub fn new(gateway: &str, saved_at: i64) -> StateDoc {
        StateDoc {
            version: VERSION,
            saved_at,
            gateway: gateway.to_string(),
            sections: BTreeMap::new(),
        }
    }

    /// Sets section `name` to `value`.
    pub fn put<T: Serialize>(&mut self, name: &str, value: &T) -> Result<(), serde_json::Error> {
        self.sections
            .insert(name.to_string(), serde_json::to_value(value)?);
        Ok(())
    }

    /// Takes section `name` out as a `T`: `Ok(None)` if absent, `Err` if it does not parse.
    pub fn take<T: DeserializeOwned>(
        &mut self,
        name: &str,
    ) -> Result<Option<T>, serde_json::Error> {
        match self.sections.remove(name) {
            Some(v) => serde_json::from_value(v).map(Some),
            None => Ok(None),
        }
    }

    /// The document as JSON bytes.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Parses `bytes`; refuses other versions.
    pub fn decode(bytes: &[u8]) -> Result<StateDoc, StateError> {
        let doc: StateDoc = serde_json::from_slice(bytes)?;
        if doc.version != VERSION {
            return Err(StateError::Version(doc.version));
        }
        Ok(doc)
    }
}

/// Reads the state file at `path`: `Ok(None)` if there is none.
pub fn load(path: &Path) -> Result<Option<StateDoc>, StateError> {
    match fs_limits::read(path, MAX_STATE_BYTES, "a state file") {
        Ok(bytes) => StateDoc::decode(&bytes).map(Some),
        Err(FileError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The temp file [`write_atomic`] writes before the rename.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces `path` with `bytes` atomically and durably; see the module doc.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// What became of the state file at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restore {
    /// Used.
    Restored,
    /// No file.
    Missing,
    /// Older than `max_age`, saved in the future, or by another gateway: discarded.
    Discarded,
    /// Unreadable, corrupt, truncated or of another version: ignored.
    Invalid,
}

impl Restore {
    const ALL: [Restore; 4] = [
        Restore::Restored,
        Restore::Missing,
        Restore::Discarded,
        Restore::Invalid,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Restore::Restored => "restored",
            Restore::Missing => "missing",
            Restore::Discarded => "discarded",
            Restore::Invalid => "invalid",
        }
    }
}

/// Saves and restores, for `/metrics`.
#[derive(Debug, Default)]
pub struct StateMetrics {
    pub saves: AtomicU64,
    pub save_errors: AtomicU64,
    restores: [AtomicU64; 4],
}

impl StateMetrics {
    pub fn restore(&self, r: Restore) {
        self.restores[r as usize].fetch_add(1, Relaxed);
    }

    pub fn restores(&self, r: Restore) -> u64 {
        self.restores[r as usize].load(Relaxed)
    }

    /// Describes these counters for `/metrics`.
    pub fn encode(&self, e: &mut expose::Encoder) -> expose::Encoded {
        expose::counter(
            e,
            "citysense_state_saves",
            "State file saves (at every window close and at stop).",
            self.saves.load(Relaxed),
        )?;
        expose::counter(
            e,
            "citysense_state_save_errors",
            "State file saves that failed (the previous file stays).",
            self.save_errors.load(Relaxed),
        )?;
        expose::counters(
            e,
            "citysense_state_restores",
            "State file at start, by result.",
            Restore::ALL.map(|r| ([("result", r.label())], self.restores(r))),
        )
    }
}

#[cfg(test)]
mod tests;
