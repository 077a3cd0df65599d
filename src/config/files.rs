//! The checks of the files and directories a configuration names, run by [`Config::load`]
//! (so by `validate` and `run` alike): secrets, TLS certificates and keys, the spool
//! directory. Each is opened the way the daemon opens it, with the same code where there is
//! one (secret lookup, the rustls config), so `validate` refuses what `run` would refuse.
//! Sensor profile files are read by the semantic checks already ([`super::SerialConfig`]).
//!
//! Nothing here creates or changes a file: `validate` must be free of side effects.

use std::ffi::CString;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{Config, OutputApi, OutputConfig};
use crate::fs_limits;

/// File problems of `cfg`, as (key path, message).
pub(super) fn check(cfg: &Config) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    for (i, out) in cfg.output.all().iter().enumerate() {
        output_files(out, &cfg.output.key(i), &mut errs);
    }
    // One spool for all outputs.
    if !cfg.output.is_stdout() {
        spool_dir(cfg, &mut errs);
    }
    if let Some(f) = &cfg.metrics.token_file {
        match fs_limits::read_secret(f) {
            Ok(t) if t.trim().is_empty() => errs.push((
                "metrics.token_file".into(),
                format!("{}: is empty", f.display()),
            )),
            _ => secret(f, "metrics.token_file", true, &mut errs),
        }
    }
    if let Some(tls) = &cfg.metrics.tls {
        if let Err(p) = tls.server_config() {
            errs.push((format!("metrics.tls.{}", p.key), p.message));
        }
    }
    for (i, m) in cfg.mqtt.iter().enumerate() {
        // The source reads the password file only to go with a user name.
        if let (Some(_), None, Some(f)) = (&m.username, &m.password, &m.password_file) {
            secret(f, &format!("mqtt[{i}].password_file"), false, &mut errs);
        }
        if let Some(tls) = &m.tls {
            if let Err(p) = tls.client_config() {
                errs.push((format!("mqtt[{i}].tls.{}", p.key), p.message));
            }
        }
    }
    errs
}

/// File problems of one output whose key path is `at`.
fn output_files(out: &OutputConfig, at: &str, errs: &mut Vec<(String, String)>) {
    match out.api {
        OutputApi::Stdout => {}
        OutputApi::Mqtt => {
            if let (Some(_), None, Some(f)) = (&out.username, &out.password, &out.password_file) {
                secret(f, &format!("{at}.password_file"), false, errs);
            }
        }
        OutputApi::V2 => {
            // The token goes into an HTTP header: the writer refuses control characters.
            if out.token.as_deref().is_some_and(|t| !header_safe(t)) {
                errs.push((format!("{at}.token"), CONTROL_CHARS.into()));
            }
            if let (None, Some(f)) = (&out.token, &out.token_file) {
                secret(f, &format!("{at}.token_file"), true, errs);
            }
        }
        OutputApi::V1 => {
            // Read whether or not `username` is set, as the writer does.
            if let (None, Some(f)) = (&out.password, &out.password_file) {
                secret(f, &format!("{at}.password_file"), false, errs);
            }
        }
    }
    if out.api != OutputApi::Stdout {
        if let Some(tls) = &out.tls {
            if let Err(p) = tls.client_config() {
                errs.push((format!("{at}.tls.{}", p.key), p.message));
            }
        }
    }
}

const CONTROL_CHARS: &str = "contains control characters (a token is one line of printable text)";

/// What `HeaderValue::from_str` accepts: no control characters except tab.
fn header_safe(s: &str) -> bool {
    !s.chars().any(|c| c.is_ascii_control() && c != '\t')
}

/// Reads the secret at `file` as the daemon will (lookup rule, size bound, UTF-8).
fn secret(file: &Path, key: &str, header: bool, errs: &mut Vec<(String, String)>) {
    match fs_limits::read_secret(file) {
        Ok(s) if header && !header_safe(&s) => {
            errs.push((key.into(), format!("{}: {CONTROL_CHARS}", file.display())));
        }
        Ok(_) => {}
        Err((read, e)) => {
            let mut msg = format!("cannot read secret {}: {e}", read.display());
            if read == file && file.is_relative() {
                msg.push_str(match std::env::var_os("CREDENTIALS_DIRECTORY") {
                    Some(_) => " (not in $CREDENTIALS_DIRECTORY either)",
                    None => {
                        " (relative to the working directory: $CREDENTIALS_DIRECTORY is not set)"
                    }
                });
            }
            errs.push((key.into(), msg));
        }
    }
}

/// The spool directory must be a writable directory, or creatable: its nearest existing
/// ancestor a writable directory.
fn spool_dir(cfg: &Config, errs: &mut Vec<(String, String)>) {
    let dir = cfg.spool.dir();
    let shown = if cfg.spool.dir.is_some() {
        format!("{}", dir.display())
    } else {
        format!("{} (the default)", dir.display())
    };
    let problem = match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => writable(&dir).err(),
        Ok(_) => Some("exists and is not a directory".to_string()),
        // ENOTDIR: a parent is a file; `creatable` says which.
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            creatable(&dir).err()
        }
        Err(e) => Some(e.to_string()),
    };
    if let Some(p) = problem {
        errs.push(("spool.dir".into(), format!("spool directory {shown}: {p}")));
    }
}

/// `Ok` when `create_dir_all(dir)` can succeed, judged from its nearest existing ancestor.
fn creatable(dir: &Path) -> Result<(), String> {
    for ancestor in dir.ancestors().skip(1) {
        let at = if ancestor.as_os_str().is_empty() {
            Path::new(".")
        } else {
            ancestor
        };
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => {
                return writable(at).map_err(|e| format!("cannot be created: {e}"));
            }
            Ok(_) => {
                return Err(format!(
                    "cannot be created: {} is not a directory",
                    at.display()
                ))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot be created: {}: {e}", at.display())),
        }
    }
    Err("cannot be created: no existing parent directory".into())
}

/// `Ok` when this process may create entries in the directory `dir`.
fn writable(dir: &Path) -> Result<(), String> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", dir.display()))?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    Err(format!("{} is not writable: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_safety_matches_the_writer() {
        assert!(header_safe("abc\tdef"));
        assert!(!header_safe("abc\ndef"));
        assert!(!header_safe("a\u{0}"));
        assert!(header_safe("tökén"));
    }

    #[test]
    fn a_missing_directory_is_creatable_under_a_writable_one() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(creatable(&tmp.path().join("a/b/c")), Ok(()));
        let file = tmp.path().join("f");
        std::fs::write(&file, "").unwrap();
        let err = creatable(&file.join("spool")).unwrap_err();
        assert!(err.ends_with("is not a directory"), "{err}");
    }
}
