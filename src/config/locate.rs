//! Turns serde/TOML errors and semantic check failures into ``file:line: key `a.b[0].c`: message``.
//! Key paths and lines come from `toml_edit`'s spans ([`super::spans`]), so an error inside a
//! multi-line array or an inline table names the element or key it is about.
//!
//! serde stops at the first error. To report every error in one `validate` run, the offending
//! `key = value` is blanked out with spaces (byte offsets and line numbers stay put) and the
//! text parsed again, up to a limit. "missing field" errors caused by an entry we blanked
//! ourselves are not reported twice.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::spans;

/// Most errors collected from one file before giving up.
const MAX_ERRORS: usize = 50;

/// One configuration error, located.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line, 0 when the error is about the whole file.
    pub line: usize,
    /// Dotted key path, e.g. `mqtt[0].port`; empty when unknown.
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &Path, line: usize, key: &str, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line,
            key: key.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every error found in one configuration file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn single(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Deserializes `text`, collecting every error (see module doc).
pub fn deserialize_all<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T, ConfigErrors> {
    let mut current = text.to_string();
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut blanked: Vec<String> = Vec::new();
    loop {
        let err = match toml::from_str::<T>(&current) {
            Ok(v) if errors.is_empty() => return Ok(v),
            Ok(_) => return Err(ConfigErrors(errors)),
            Err(e) => e,
        };
        let message = err.message().to_string();
        let span = err.span();
        let pos = span.as_ref().map(|s| s.start);
        let found = span.and_then(|s| spans::entry_at(&current, s));
        let key = found.as_ref().map(|f| f.path.clone()).unwrap_or_default();
        let whole_file = found.as_ref().is_some_and(|f| f.path.is_empty());
        let line = match pos {
            Some(p) if !whole_file => line_of(&current, p),
            _ => 0,
        };
        let repeat = missing_field(&message).is_some_and(|f| {
            // A required key whose value (or something inside it) we blanked ourselves.
            blanked
                .iter()
                .any(|b| b.split(['.', '[']).any(|part| part == f))
        });
        if !repeat {
            errors.push(ConfigError::new(origin, line, &key, message));
        }
        // Blank the entry (or, for a syntax error, the line) and retry, unless that cannot
        // make progress.
        let range = match found {
            Some(f) => f.entry,
            None => pos.and_then(|p| syntax_error_line(&current, p)),
        };
        let Some(range) = range else {
            return Err(ConfigErrors(errors));
        };
        if errors.len() >= MAX_ERRORS || !blank(&mut current, range) {
            return Err(ConfigErrors(errors));
        }
        blanked.push(key);
    }
}

/// A semantic error on `key` (dotted path with `[i]` for array elements), located in `text`.
pub fn semantic(text: &str, origin: &Path, key: &str, message: String) -> ConfigError {
    let line = spans::position_of(text, key).map_or(0, |p| line_of(text, p));
    ConfigError::new(origin, line, key, message)
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// The line holding a syntax error at `pos`, unless it is a table header: without its header
/// a table's keys would land in the previous table and report errors that are not there.
fn syntax_error_line(text: &str, pos: usize) -> Option<std::ops::Range<usize>> {
    let start = text.get(..pos)?.rfind('\n').map_or(0, |i| i + 1);
    let end = text.get(pos..)?.find('\n').map_or(text.len(), |i| pos + i);
    let line = text.get(start..end)?;
    (!line.trim_start().starts_with('[')).then_some(start..end)
}

/// Replaces `range` of `text` with spaces, keeping newlines; false if nothing was left to blank.
fn blank(text: &mut String, range: std::ops::Range<usize>) -> bool {
    let Some(part) = text.get(range.clone()) else {
        return false;
    };
    if part.trim().is_empty() {
        return false;
    }
    // One space per byte, so every later offset stays valid.
    let spaces: String = part
        .bytes()
        .map(|b| if b == b'\n' { '\n' } else { ' ' })
        .collect();
    text.replace_range(range, &spaces);
    true
}

/// 1-based line number of byte offset `pos`.
fn line_of(text: &str, pos: usize) -> usize {
    text.get(..pos.min(text.len()))
        .map(|t| t.matches('\n').count() + 1)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_counts_newlines() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
    }

    #[test]
    fn blanking_keeps_lines_and_offsets() {
        let mut t = "a = [\n  1,\n  \"é\",\n]\nb = 2\n".to_string();
        let (end, b) = (t.find(']').unwrap() + 1, t.find('b').unwrap());
        assert!(blank(&mut t, 0..end));
        assert_eq!(t.lines().count(), 5);
        assert_eq!(t.find('b'), Some(b));
        assert!(!blank(&mut t, 0..3), "nothing left there");
    }
}
