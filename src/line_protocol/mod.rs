//! InfluxDB line protocol: the encoder that turns one closed window into one line (no allocation
//! beyond growing the output buffer), and the parser (`parse.rs`) for the MQTT line-protocol
//! mapper and for round-trip tests.
//!
//! Rules: InfluxDB docs, "Line protocol" reference
//! (<https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/>, same text for v1
//! and v3), the EBNF grammar `line-protocol.ebnf` in github.com/influxdata/line-protocol, and the
//! parsers that receive our lines: InfluxDB 1.x `models/points.go` and VictoriaMetrics
//! `lib/protoparser/influx/parser.go`.
//!
//! | element                       | escaped with `\`  |
//! |-------------------------------|-------------------|
//! | measurement                   | `,` and space     |
//! | tag key, tag value, field key | `,`, `=`, space   |
//! | string field value (quoted)   | `"` and `\`       |
//!
//! **Backslashes in names.** The docs say a backslash before any other character is literal,
//! which holds everywhere for a lone backslash before an ordinary character (`a\b`). Beyond
//! that the servers disagree: InfluxDB 1.x reads `\\` as two backslashes and `\\,` as backslash +
//! comma, VictoriaMetrics reads `\\` as one backslash, `\\,` as a backslash followed by a
//! separator and `\=` as `=` even in a measurement; a trailing backslash cannot be written at all
//! (it escapes the separator after it).
//! The encoder writes backslashes literally and refuses a name with one at its end or before
//! `\`, `,`, `=` or space ([`EncodeError::AmbiguousBackslash`]), so no point is stored under a
//! name that depends on the server. The parser follows InfluxDB (1.x and the grammar).
//!
//! **Refused, not mangled** (the whole point fails, nothing is renamed silently): ASCII control
//! characters in names (the grammar excludes them; a newline would split the line), CR or LF in
//! a string value, a measurement starting with `#` (the line would be a comment), a `"` in a
//! field key (InfluxDB ignores it, VictoriaMetrics takes it for the start of a string value and
//! mis-splits or drops the line). A tag with an empty key or value is skipped ("omit the tag",
//! say the docs).
//!
//! **Floats** are Rust's shortest digits that parse back to the same `f64`: plain decimal for
//! zero and 1e-5 <= |v| < 1e16, exponent form otherwise (`1e21`, `1.5e-7`, `5e-324`; no `+`),
//! which the docs ("supports scientific notation"), the grammar, InfluxDB 1.x and
//! VictoriaMetrics all accept. `f=1` is still a float (the default numeric type). NaN and ±inf
//! have no representation: such fields are dropped and counted in [`EncodeStats`].
//!
//! Checked by hand against influxd 1.6.7 and VictoriaMetrics 1.79.5: both store the escaped
//! names of the unit tests as intended and accept `1e21`, `1e-7`, `1.7976931348623157e308`;
//! 1.6.7 keeps `\\\\` as four backslashes and answers `f=1u` with 400 "invalid number";
//! VictoriaMetrics stores `\\\\` as two, drops the line `m,k=a\\,b f=1` and turns
//! `m a"b=1,c=2` into `a"b`=0 without `c` (answering 204 all the same).
//!
//! Server limits not enforced here: InfluxDB 1.x rejects unsigned (`123u`) fields unless built
//! with uint support, so write [`FieldValue::Int`] to a 1.x sink; InfluxDB 2.x reserves names
//! starting with `_` and 1.x rejects the key `time`; InfluxDB timestamps must lie within
//! ±9223372036854775806.

mod parse;
#[cfg(test)]
mod parse_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use parse::{parse_line, parse_lines, ParseError, Pos};

use std::fmt::{self, Write as _};
use std::sync::Arc;

/// A field value; the line-protocol type is chosen by the variant.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    /// Written as shortest round-trip digits; NaN and ±inf are dropped by the encoder.
    Float(f64),
    /// Written `123i`.
    Int(i64),
    /// Written `123u` (InfluxDB 1.x rejects these by default).
    UInt(u64),
    /// Written `true` / `false`; parsed from `t T true True TRUE` and `f F false False FALSE`.
    Bool(bool),
    /// Written in double quotes with `"` and `\` escaped; must not contain CR or LF.
    Str(String),
}

/// Borrowed view of one point, so the encoder needs no allocation.
#[derive(Clone, Copy, Debug)]
pub struct PointRef<'a> {
    pub measurement: &'a str,
    /// Written in the order given: the caller sorts by key (InfluxDB's advice).
    pub tags: &'a [(Arc<str>, Arc<str>)],
    pub fields: &'a [(&'a str, FieldValue)],
    /// Nanoseconds since the Unix epoch; `None` lets the server stamp the point.
    pub ts: Option<i64>,
}

/// Owned parsed point.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub fields: Vec<(String, FieldValue)>,
    pub ts: Option<i64>,
}

/// What the encoder left out of a line it did write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeStats {
    /// Float fields dropped because NaN or ±inf cannot be written.
    pub dropped_fields: usize,
}

/// The part of a line a name or value belongs to (for error messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Element {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
    StringValue,
}

impl Element {
    /// Characters that must be backslash-escaped inside this element.
    fn is_escaped(self, c: char) -> bool {
        match self {
            Element::Measurement => matches!(c, ',' | ' '),
            Element::TagKey | Element::TagValue | Element::FieldKey => matches!(c, ',' | '=' | ' '),
            Element::StringValue => matches!(c, '"' | '\\'),
        }
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Element::Measurement => "measurement",
            Element::TagKey => "tag key",
            Element::TagValue => "tag value",
            Element::FieldKey => "field key",
            Element::StringValue => "string field value",
        })
    }
}

/// Why a point cannot be written. The output buffer is left as it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("empty measurement name")]
    EmptyMeasurement,
    #[error("measurement {0:?} starts with '#', so the line would be read as a comment")]
    CommentMeasurement(String),
    #[error("point has no fields to write ({dropped} NaN or infinite float fields dropped)")]
    NoFields { dropped: usize },
    #[error("empty field key in measurement {measurement:?}")]
    EmptyFieldKey { measurement: String },
    #[error("{element} {name:?} contains a control character (such as a line break), which line protocol cannot carry")]
    ControlChar { element: Element, name: String },
    #[error("{element} {name:?} has a backslash at its end or before '\\', ',', '=' or space, which InfluxDB and VictoriaMetrics read differently")]
    AmbiguousBackslash { element: Element, name: String },
    #[error(
        "field key {0:?} contains '\"', which VictoriaMetrics reads as the start of a string value"
    )]
    QuoteInFieldKey(String),
    #[error(
        "string value of field {field:?} contains a line break, which line protocol cannot carry"
    )]
    LineBreakInString { field: String },
}

/// Appends one line (with trailing `'\n'`) to `out`.
///
/// Returns `Err` without changing `out` if the point cannot be encoded: empty measurement, no
/// fields left after dropping non-finite floats (dropped fields are counted in the `Ok` value),
/// empty field key, or a name or value the line cannot carry (see the module doc). Tags with an
/// empty key or value are skipped.
pub fn encode(point: &PointRef<'_>, out: &mut String) -> Result<EncodeStats, EncodeError> {
    let start = out.len();
    let result = write_point(point, out);
    if result.is_err() {
        // Checking while writing keeps this one pass; undo the partial line on failure.
        out.truncate(start);
    }
    result
}

fn write_point(point: &PointRef<'_>, out: &mut String) -> Result<EncodeStats, EncodeError> {
    let measurement = point.measurement;
    if measurement.is_empty() {
        return Err(EncodeError::EmptyMeasurement);
    }
    if measurement.starts_with('#') {
        return Err(EncodeError::CommentMeasurement(measurement.to_owned()));
    }
    let dropped = point.fields.iter().filter(|(_, v)| !is_writable(v)).count();
    if dropped == point.fields.len() {
        return Err(EncodeError::NoFields { dropped });
    }
    write_name(out, measurement, Element::Measurement)?;
    for (key, value) in point.tags {
        if key.is_empty() || value.is_empty() {
            continue;
        }
        out.push(',');
        write_name(out, key, Element::TagKey)?;
        out.push('=');
        write_name(out, value, Element::TagValue)?;
    }
    let mut separator = ' ';
    for (key, value) in point.fields.iter().filter(|(_, v)| is_writable(v)) {
        if key.is_empty() {
            return Err(EncodeError::EmptyFieldKey {
                measurement: measurement.to_owned(),
            });
        }
        out.push(separator);
        separator = ',';
        write_name(out, key, Element::FieldKey)?;
        out.push('=');
        write_value(out, key, value)?;
    }
    if let Some(ts) = point.ts {
        // fmt::Write for String cannot fail.
        let _ = write!(out, " {ts}");
    }
    out.push('\n');
    Ok(EncodeStats {
        dropped_fields: dropped,
    })
}

/// False for the values line protocol has no spelling for (NaN, ±inf).
fn is_writable(value: &FieldValue) -> bool {
    !matches!(value, FieldValue::Float(v) if !v.is_finite())
}

fn write_name(out: &mut String, name: &str, element: Element) -> Result<(), EncodeError> {
    let bytes = name.as_bytes();
    for (i, c) in name.char_indices() {
        if c.is_ascii_control() {
            return Err(EncodeError::ControlChar {
                element,
                name: name.to_owned(),
            });
        }
        if c == '\\'
            && bytes
                .get(i + 1)
                .is_none_or(|next| matches!(next, b'\\' | b',' | b'=' | b' '))
        {
            return Err(EncodeError::AmbiguousBackslash {
                element,
                name: name.to_owned(),
            });
        }
        if c == '"' && element == Element::FieldKey {
            return Err(EncodeError::QuoteInFieldKey(name.to_owned()));
        }
        if element.is_escaped(c) {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(())
}

fn write_value(out: &mut String, key: &str, value: &FieldValue) -> Result<(), EncodeError> {
    // fmt::Write for String cannot fail, so the write! results are ignored.
    match value {
        FieldValue::Float(v) => write_float(out, *v),
        FieldValue::Int(v) => {
            let _ = write!(out, "{v}i");
        }
        FieldValue::UInt(v) => {
            let _ = write!(out, "{v}u");
        }
        FieldValue::Bool(v) => out.push_str(if *v { "true" } else { "false" }),
        FieldValue::Str(s) => {
            out.push('"');
            for c in s.chars() {
                if matches!(c, '\n' | '\r') {
                    return Err(EncodeError::LineBreakInString {
                        field: key.to_owned(),
                    });
                }
                if Element::StringValue.is_escaped(c) {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
    }
    Ok(())
}

/// Shortest round-trip digits; exponent form outside [1e-5, 1e16) so that neither 1e300 nor
/// 5e-324 becomes hundreds of digits.
fn write_float(out: &mut String, v: f64) {
    let magnitude = v.abs();
    if magnitude == 0.0 || (1e-5..1e16).contains(&magnitude) {
        let _ = write!(out, "{v}");
    } else {
        let _ = write!(out, "{v:e}");
    }
}
