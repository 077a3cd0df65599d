//! Turns serde/TOML errors and semantic check failures into `file:line:column: key: message`.
//!
//! serde stops at the first error. To report every error in one `validate` run, the offending
//! line is blanked out (line numbers stay put) and the text parsed again, up to a limit.
//! "missing field" errors caused by a line we blanked ourselves are not reported twice.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

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
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut blanked: Vec<String> = Vec::new();
    loop {
        let current = lines.join("\n");
        let err = match toml::from_str::<T>(&current) {
            Ok(v) if errors.is_empty() => return Ok(v),
            Ok(_) => return Err(ConfigErrors(errors)),
            Err(e) => e,
        };
        let message = err.message().to_string();
        let line = err.span().map(|s| line_of(&current, s.start)).unwrap_or(0);
        let key = if line > 0 {
            key_at(&lines, line)
        } else {
            String::new()
        };
        let repeat = missing_field(&message)
            .map(|f| blanked.iter().any(|b| b.rsplit('.').next() == Some(f)))
            .unwrap_or(false);
        if !repeat {
            errors.push(ConfigError::new(origin, line, &key, message));
        }
        // Blank the line and retry, unless that cannot make progress.
        let idx = line.wrapping_sub(1);
        let blankable = line > 0 && idx < lines.len() && !lines[idx].trim().is_empty();
        if !blankable || errors.len() >= MAX_ERRORS || is_header(&lines[idx]) {
            return Err(ConfigErrors(errors));
        }
        blanked.push(key);
        lines[idx] = String::new();
    }
}

/// A semantic error on `key` (dotted path with `[i]` for array-of-tables), located in `text`.
pub fn semantic(text: &str, origin: &Path, key: &str, message: String) -> ConfigError {
    ConfigError::new(origin, find_key(text, key), key, message)
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

fn is_header(line: &str) -> bool {
    line.trim_start().starts_with('[')
}

/// 1-based line number of byte offset `pos`.
fn line_of(text: &str, pos: usize) -> usize {
    text.get(..pos.min(text.len()))
        .map(|t| t.matches('\n').count() + 1)
        .unwrap_or(0)
}

/// Table path in effect at each line: `[a.b]` -> "a.b", `[[mqtt]]` -> "mqtt[N]".
struct TableTracker {
    counts: std::collections::HashMap<String, usize>,
    current: String,
}

impl TableTracker {
    fn new() -> Self {
        TableTracker {
            counts: Default::default(),
            current: String::new(),
        }
    }

    fn feed(&mut self, line: &str) {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            // `[[mqtt.subscription]]`: the parent resolves to its latest element
            // (`mqtt[1]`), the array itself is counted per parent element.
            let name = name.trim();
            let path = match name.rsplit_once('.') {
                Some((parent, last)) => format!("{}.{}", self.resolve_parent(parent), last.trim()),
                None => name.to_string(),
            };
            let n = self.counts.entry(path.clone()).or_insert(0);
            self.current = format!("{path}[{n}]");
            *n += 1;
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            self.current = self.resolve_parent(name.trim());
        }
    }

    /// Rewrites `mqtt.subscription` as `mqtt[k].subscription` when `mqtt` is an array.
    fn resolve_parent(&self, name: &str) -> String {
        let mut out = String::new();
        for part in name.split('.') {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part.trim());
            if let Some(n) = self.counts.get(&out) {
                out = format!("{out}[{}]", n.saturating_sub(1));
            }
        }
        out
    }
}

/// Dotted key path of the `key = value` at 1-based `line`.
fn key_at(lines: &[String], line: usize) -> String {
    let mut tracker = TableTracker::new();
    for l in lines.iter().take(line.saturating_sub(1)) {
        tracker.feed(l);
    }
    let Some(l) = lines.get(line.saturating_sub(1)) else {
        return tracker.current;
    };
    if is_header(l) {
        let mut t = tracker;
        t.feed(l);
        return t.current;
    }
    let key = l.split('=').next().unwrap_or("").trim().trim_matches('"');
    join(&tracker.current, key)
}

fn join(table: &str, key: &str) -> String {
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (_, true) => table.to_string(),
        _ => format!("{table}.{key}"),
    }
}

/// 1-based line where `key` (as produced by the checks) is set, or where its table starts;
/// 0 if neither is in the file (a default value is wrong).
fn find_key(text: &str, key: &str) -> usize {
    let mut tracker = TableTracker::new();
    let mut table_line = 0;
    for (i, l) in text.lines().enumerate() {
        if is_header(l) {
            tracker.feed(l);
            if tracker.current == key {
                return i + 1;
            }
            if key.starts_with(&format!("{}.", tracker.current)) {
                table_line = i + 1;
            }
            continue;
        }
        let k = l.split('=').next().unwrap_or("").trim().trim_matches('"');
        if !k.is_empty() && !k.starts_with('#') && join(&tracker.current, k) == key {
            return i + 1;
        }
    }
    table_line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_follow_array_tables() {
        let text = "[gateway]\nid = \"x\"\n[[mqtt]]\nhost = \"a\"\n[[mqtt]]\nhost = \"b\"\n[[mqtt.subscription]]\ntopic = \"t\"\n";
        let lines: Vec<String> = text.lines().map(String::from).collect();
        assert_eq!(key_at(&lines, 2), "gateway.id");
        assert_eq!(key_at(&lines, 4), "mqtt[0].host");
        assert_eq!(key_at(&lines, 6), "mqtt[1].host");
        assert_eq!(key_at(&lines, 8), "mqtt[1].subscription[0].topic");
        assert_eq!(find_key(text, "mqtt[1].host"), 6);
        assert_eq!(find_key(text, "mqtt[1].subscription[0].topic"), 8);
        assert_eq!(find_key(text, "mqtt[1].port"), 5);
        assert_eq!(find_key(text, "spool.max_bytes"), 0);
    }

    #[test]
    fn line_of_counts_newlines() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
    }
}
