//! Running the daemon as a service: metrics, health endpoint, systemd notification, secrets.

pub mod http;
pub mod metrics;
pub mod spool_drops;
pub mod systemd;

use std::path::{Path, PathBuf};

use crate::fs_limits::FileError;

/// A heartbeat of the aggregator loop older than this means the loop is stuck: `/healthz`
/// answers 503 and the systemd watchdog is no longer pinged.
pub const STALE_AFTER_SECS: i64 = 10;

/// Errors reading a secret file.
#[derive(Debug, thiserror::Error)]
#[error("cannot read secret {path}: {source}")]
pub struct SecretError {
    pub path: PathBuf,
    #[source]
    pub source: FileError,
}

/// Reads a secret (token, password) from a file, trimming the trailing newline. A relative
/// name is looked up in `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`) first; the read
/// is bounded (see [`crate::fs_limits`]).
pub fn read_secret(path: &Path) -> Result<String, SecretError> {
    crate::fs_limits::read_secret(path).map_err(|(path, source)| SecretError { path, source })
}
