//! Running the daemon as a service: metrics, health endpoint, systemd notification, secrets.

pub mod http;
pub mod metrics;
pub mod spool_drops;
pub mod systemd;

use std::path::{Path, PathBuf};

/// Errors reading a secret file.
#[derive(Debug, thiserror::Error)]
#[error("cannot read secret {path}: {source}")]
pub struct SecretError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Reads a secret (token, password) from a file, trimming the trailing newline. A relative
/// name is looked up in `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`) first.
pub fn read_secret(path: &Path) -> Result<String, SecretError> {
    let resolved = match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) if path.is_relative() && Path::new(&dir).join(path).exists() => {
            Path::new(&dir).join(path)
        }
        _ => path.to_path_buf(),
    };
    std::fs::read_to_string(&resolved)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
        .map_err(|source| SecretError {
            path: resolved,
            source,
        })
}
