//! Generic text-line protocol for counters and home-made devices, configured by the profile's
//! [`LineOptions`]: one reading per line, ended by `\n` (a trailing `\r` is stripped).
//!
//! Formats:
//! - `kv`: `in=3,out=1` or `in=3 out=1`; keys map to quantities (by name or `mapping`),
//!   unknown keys are ignored.
//! - `csv`: columns map to quantities by position (`columns`, `""` = ignore); a line must
//!   have exactly that many columns; an empty mapped column means "no value".
//! - `json`: one object per line; dotted paths (`counts.in`, `list.0`) map to quantities;
//!   a missing field or `null` means "no value".
//!
//! Values must be finite numbers, else the line is dropped with [`DecodeError::Malformed`].
//! Optional NMEA 0183-style checksum (`checksum = "nmea"`): the line ends in `*XX`, two hex
//! digits equal to the XOR of the bytes between an optional leading `$` and the `*`
//! (the NMEA 0183 sentence checksum rule, applied to any line).
//! Lines longer than `max_line_len` are dropped with [`DecodeError::TooLong`]; a buffer that
//! holds that many bytes without a newline is dropped at once and the rest of that line is
//! discarded silently up to its newline, so a stream without newlines cannot grow the buffer.

use std::collections::BTreeMap;

use super::profile::{invalid, LineChecksum, LineFormat, LineOptions, ProfileError};
use super::{skip, DecodeError, Step, Value, Values, MAX_VALUES};

/// Largest `max_line_len` a profile may set (keeps the serial buffer small).
pub const MAX_LINE_LEN_LIMIT: usize = 65_536;

/// A configured line decoder.
#[derive(Clone, Debug)]
pub struct LineDecoder {
    names: Vec<String>,
    format: LineFormat,
    separator: Option<String>,
    /// csv: slot per column; kv/json: key or path -> slot.
    columns: Vec<Option<u8>>,
    keys: BTreeMap<String, u8>,
    checksum: LineChecksum,
    max_len: usize,
    /// Dropping the rest of an overlong line up to its newline.
    discarding: bool,
}

impl LineDecoder {
    /// Builds a decoder for `options` reporting `quantities` (profile order = slot order).
    pub fn new(options: &LineOptions, quantities: &[String]) -> Result<Self, ProfileError> {
        let slot = |name: &str| -> Result<u8, ProfileError> {
            let pos = quantities
                .iter()
                .position(|q| q == name)
                .ok_or_else(|| invalid("mapping", format!("{name:?} is not in `quantities`")))?;
            u8::try_from(pos).map_err(|_| invalid("quantities", "too many"))
        };
        if !(1..=MAX_LINE_LEN_LIMIT).contains(&options.max_line_len) {
            let reason = format!("must be 1..={MAX_LINE_LEN_LIMIT}");
            return Err(invalid("max_line_len", reason));
        }
        if options.separator.as_deref() == Some("") {
            return Err(invalid("separator", "must not be empty"));
        }
        let mut columns = Vec::new();
        let mut keys = BTreeMap::new();
        match options.format {
            LineFormat::Csv => {
                if options.columns.is_empty() || !options.mapping.is_empty() {
                    return Err(invalid("columns", "csv needs `columns` and no `mapping`"));
                }
                for name in &options.columns {
                    columns.push(if name.is_empty() {
                        None
                    } else {
                        Some(slot(name)?)
                    });
                }
            }
            LineFormat::Kv | LineFormat::Json => {
                if !options.columns.is_empty() {
                    return Err(invalid("columns", "only csv uses `columns`"));
                }
                if options.mapping.is_empty() {
                    for name in quantities {
                        keys.insert(name.clone(), slot(name)?);
                    }
                }
                for (key, name) in &options.mapping {
                    keys.insert(key.clone(), slot(name)?);
                }
            }
        }
        check_unique(&columns, &keys, quantities)?;
        Ok(LineDecoder {
            names: quantities.to_vec(),
            format: options.format,
            separator: options.separator.clone(),
            columns,
            keys,
            checksum: options.checksum,
            max_len: options.max_line_len,
            discarding: false,
        })
    }

    pub fn quantities(&self) -> &[String] {
        &self.names
    }

    /// Stops discarding the rest of an overlong line (the buffer was cleared).
    pub fn reset(&mut self) {
        self.discarding = false;
    }

    /// Decodes one line at the front of `buf` (see [`super::Step`]).
    pub fn decode(&mut self, buf: &[u8]) -> Step {
        if buf.is_empty() {
            return Step::Incomplete;
        }
        // Only look as far as a line may reach: the line, an optional `\r` and the `\n`.
        let window = buf
            .get(..buf.len().min(self.max_len.saturating_add(2)))
            .unwrap_or(buf);
        let newline = window.iter().position(|b| *b == b'\n');
        if self.discarding {
            return match newline {
                Some(i) => {
                    self.discarding = false;
                    skip(i + 1, None)
                }
                None => skip(window.len(), None),
            };
        }
        let Some(i) = newline else {
            if window.len() > self.max_len.saturating_add(1) {
                self.discarding = true;
                let error = DecodeError::TooLong { max: self.max_len };
                return skip(window.len(), Some(error));
            }
            return Step::Incomplete;
        };
        let line = window.get(..i).unwrap_or(&[]);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.max_len {
            return skip(i + 1, Some(DecodeError::TooLong { max: self.max_len }));
        }
        match self.parse_line(line) {
            Ok(Some(values)) => Step::Frame {
                values,
                consumed: i + 1,
            },
            Ok(None) => skip(i + 1, None),
            Err(error) => skip(i + 1, Some(error)),
        }
    }

    /// Parses one line without its line end; `Ok(None)` for a blank line.
    fn parse_line(&self, line: &[u8]) -> Result<Option<Values>, DecodeError> {
        let text = std::str::from_utf8(line).map_err(|_| malformed("not UTF-8"))?;
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let body = match self.checksum {
            LineChecksum::None => text,
            LineChecksum::Nmea => check_nmea(text)?,
        };
        let mut values = Values::new();
        match self.format {
            LineFormat::Kv => self.parse_kv(body, &mut values)?,
            LineFormat::Csv => self.parse_csv(body, &mut values)?,
            LineFormat::Json => self.parse_json(body, &mut values)?,
        }
        Ok(Some(values))
    }

    fn parse_kv(&self, body: &str, values: &mut Values) -> Result<(), DecodeError> {
        // Default separator: commas and/or whitespace, so `key = value` must be tightened
        // to `key=value` first.
        let tight: String;
        let pairs: Vec<&str> = match &self.separator {
            Some(sep) => body.split(sep.as_str()).collect(),
            None => {
                tight = body.split('=').map(str::trim).collect::<Vec<_>>().join("=");
                tight
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .collect()
            }
        };
        for pair in pairs.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
            let (key, raw) = pair
                .split_once('=')
                .ok_or_else(|| malformed(format!("{pair:?} is not key=value")))?;
            if let Some(&slot) = self.keys.get(key.trim()) {
                if values.get(slot).is_some() {
                    return Err(malformed(format!("{key:?} given twice")));
                }
                push(values, slot, parse_number(key, raw.trim())?);
            }
        }
        Ok(())
    }

    fn parse_csv(&self, body: &str, values: &mut Values) -> Result<(), DecodeError> {
        let sep = self.separator.as_deref().unwrap_or(",");
        let fields: Vec<&str> = body.split(sep).map(str::trim).collect();
        if fields.len() != self.columns.len() {
            return Err(malformed(format!(
                "{} columns, expected {}",
                fields.len(),
                self.columns.len()
            )));
        }
        for (field, column) in fields.iter().zip(&self.columns) {
            if let (Some(slot), false) = (column, field.is_empty()) {
                let name = self.name(*slot);
                push(values, *slot, parse_number(name, field)?);
            }
        }
        Ok(())
    }

    fn parse_json(&self, body: &str, values: &mut Values) -> Result<(), DecodeError> {
        let doc: serde_json::Value =
            serde_json::from_str(body).map_err(|e| malformed(format!("JSON: {e}")))?;
        if !doc.is_object() {
            return Err(malformed("JSON line is not an object"));
        }
        for (path, &slot) in &self.keys {
            match lookup(&doc, path) {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::Number(n)) => {
                    let v = n
                        .as_f64()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| malformed(format!("{path}: number out of range")))?;
                    push(values, slot, v);
                }
                Some(other) => {
                    return Err(malformed(format!("{path}: {other} is not a number")));
                }
            }
        }
        Ok(())
    }

    fn name(&self, slot: u8) -> &str {
        self.names
            .get(usize::from(slot))
            .map_or("?", String::as_str)
    }
}

/// Rejects two columns or keys feeding the same quantity.
fn check_unique(
    columns: &[Option<u8>],
    keys: &BTreeMap<String, u8>,
    quantities: &[String],
) -> Result<(), ProfileError> {
    let mut seen = [false; MAX_VALUES];
    for &slot in columns.iter().flatten().chain(keys.values()) {
        match seen.get_mut(usize::from(slot)) {
            Some(s) if !*s => *s = true,
            _ => {
                let name = quantities.get(usize::from(slot)).cloned();
                let reason = format!("{:?} is mapped twice", name.unwrap_or_default());
                return Err(invalid("mapping", reason));
            }
        }
    }
    Ok(())
}

/// Checks and strips an NMEA-style `*XX` checksum and an optional leading `$`.
fn check_nmea(text: &str) -> Result<&str, DecodeError> {
    let (body, hex) = text
        .rsplit_once('*')
        .ok_or_else(|| malformed("no *XX checksum"))?;
    let expected = u8::from_str_radix(hex.trim(), 16)
        .ok()
        .filter(|_| hex.trim().len() == 2)
        .ok_or_else(|| malformed(format!("checksum {hex:?} is not two hex digits")))?;
    let body = body.strip_prefix('$').unwrap_or(body);
    let actual = body.bytes().fold(0u8, |acc, b| acc ^ b);
    if actual != expected {
        return Err(DecodeError::BadChecksum {
            expected: u16::from(expected),
            actual: u16::from(actual),
        });
    }
    Ok(body)
}

/// Follows a dotted path through objects (by key) and arrays (by index).
fn lookup<'a>(doc: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(doc, |node, part| match node {
        serde_json::Value::Object(map) => map.get(part),
        serde_json::Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn parse_number(name: &str, raw: &str) -> Result<f64, DecodeError> {
    raw.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| malformed(format!("{name}: {raw:?} is not a number")))
}

fn push(values: &mut Values, slot: u8, value: f64) {
    values.push(Value { slot, value });
}

fn malformed(reason: impl Into<String>) -> DecodeError {
    DecodeError::Malformed(reason.into())
}

#[cfg(test)]
#[path = "line_tests.rs"]
mod tests;
