//! Bounded reads of the small files the daemon and `validate` open: the configuration,
//! secrets (tokens, passwords), sensor profiles and TLS certificates and keys.
//!
//! Every such read goes through [`read`] or [`read_text`], which refuse anything that is not
//! a regular file (after following symlinks, so a systemd credential or a config under
//! `/etc` may be a link to one) and anything larger than the kind's limit, reading at most
//! `limit + 1` bytes. Without this, `-c /dev/zero` or `token_file = "/dev/zero"` reads until
//! the kernel kills the process. Files are opened non-blocking, so a FIFO named by mistake is
//! refused instead of hanging `validate` until something writes to it.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Largest configuration file accepted (the example is about 10 KiB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Largest secret (token, password) file accepted.
pub const MAX_SECRET_BYTES: u64 = 64 << 10;
/// Largest PEM file (CA bundle, client certificate or key) accepted; the Mozilla bundle of
/// about 150 roots is about 220 KiB.
pub const MAX_PEM_BYTES: u64 = 1 << 20;
/// Largest sensor profile file accepted (the shipped ones are under 4 KiB).
pub const MAX_PROFILE_BYTES: u64 = 256 << 10;

/// Why a file could not be read. The message leaves out the path: callers name it.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file ({0})")]
    NotRegular(&'static str),
    #[error("larger than the limit of {} for {what}", human(*.limit))]
    TooLarge { limit: u64, what: &'static str },
    #[error("not UTF-8 text")]
    NotText,
}

/// Reads all of `path`, a regular file of at most `limit` bytes; `what` names the kind of
/// file in the too-large error ("a configuration file").
pub fn read(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, FileError> {
    let file = open_regular(path)?;
    let too_large = FileError::TooLarge { limit, what };
    let len = file.metadata()?.len();
    if len > limit {
        return Err(too_large);
    }
    // The size can change after the check (a growing log, a procfs file reporting 0):
    // the read itself is bounded too.
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(too_large);
    }
    Ok(buf)
}

/// [`read`], as UTF-8 text.
pub fn read_text(path: &Path, limit: u64, what: &'static str) -> Result<String, FileError> {
    String::from_utf8(read(path, limit, what)?).map_err(|_| FileError::NotText)
}

/// Opens `path` for reading and checks that what was opened is a regular file.
fn open_regular(path: &Path) -> Result<File, FileError> {
    let file = OpenOptions::new()
        .read(true)
        // O_NONBLOCK: opening a FIFO without a writer returns at once (it is then refused);
        // O_NOCTTY: opening a terminal by mistake does not make it ours. Neither changes
        // how a regular file reads.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    Err(FileError::NotRegular(if kind.is_dir() {
        "a directory"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }))
}

/// Where a secret file named `path` is read from: a relative name is looked up in
/// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`) first, then in the working directory.
/// An entry that exists there at all (even a dangling link) wins, so its error is the one
/// reported.
pub fn credential_path(path: &Path) -> PathBuf {
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) if path.is_relative() => {
            let candidate = Path::new(&dir).join(path);
            if candidate.symlink_metadata().is_ok() {
                candidate
            } else {
                path.to_path_buf()
            }
        }
        _ => path.to_path_buf(),
    }
}

/// Reads the secret named `path` (see [`credential_path`]), without its trailing newline.
/// Returns the path actually read, for errors.
pub fn read_secret(path: &Path) -> Result<String, (PathBuf, FileError)> {
    let resolved = credential_path(path);
    match read_text(&resolved, MAX_SECRET_BYTES, "a secret") {
        Ok(s) => Ok(s.trim_end_matches(['\r', '\n']).to_string()),
        Err(e) => Err((resolved, e)),
    }
}

/// Errors reading a secret file.
#[derive(Debug, thiserror::Error)]
#[error("cannot read secret {path}: {source}")]
pub struct SecretError {
    pub path: PathBuf,
    #[source]
    pub source: FileError,
}

/// [`read_secret`] with the path in the error: what the sources and the uplink report.
pub fn read_secret_file(path: &Path) -> Result<String, SecretError> {
    read_secret(path).map_err(|(path, source)| SecretError { path, source })
}

/// `1048576` as "1 MiB", `65536` as "64 KiB", other sizes in bytes.
fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_file_at_the_limit_and_refuses_one_byte_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [b'x'; 16]).unwrap();
        assert_eq!(read(&path, 16, "a test file").unwrap().len(), 16);
        let err = read(&path, 15, "a test file").unwrap_err();
        assert_eq!(
            err.to_string(),
            "larger than the limit of 15 bytes for a test file"
        );
    }

    #[test]
    fn refuses_devices_directories_and_fifos_without_blocking() {
        let err = read(Path::new("/dev/zero"), MAX_CONFIG_BYTES, "x").unwrap_err();
        assert_eq!(err.to_string(), "not a regular file (a character device)");
        let dir = tempfile::tempdir().unwrap();
        let err = read(dir.path(), MAX_CONFIG_BYTES, "x").unwrap_err();
        assert_eq!(err.to_string(), "not a regular file (a directory)");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read(&fifo, MAX_CONFIG_BYTES, "x").unwrap_err();
        assert_eq!(err.to_string(), "not a regular file (a FIFO)");
    }

    #[test]
    fn follows_a_symlink_to_a_regular_file_and_reports_a_loop() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "s3cret\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(read_secret(&link).unwrap(), "s3cret");
        let a = dir.path().join("a");
        std::os::unix::fs::symlink(dir.path().join("b"), &a).unwrap();
        std::os::unix::fs::symlink(&a, dir.path().join("b")).unwrap();
        let (path, err) = read_secret(&a).unwrap_err();
        assert_eq!(path, a);
        assert!(matches!(err, FileError::Io(ref e) if e.raw_os_error() == Some(libc::ELOOP)));
    }

    #[test]
    fn sizes_read_as_units() {
        assert_eq!(human(MAX_CONFIG_BYTES), "1 MiB");
        assert_eq!(human(MAX_SECRET_BYTES), "64 KiB");
        assert_eq!(human(1000), "1000 bytes");
    }
}
