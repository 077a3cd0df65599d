//! Line-protocol parser: the inverse of the encoder in the parent module, for the MQTT
//! line-protocol mapper and for round-trip tests.
//!
//! Follows the grammar `line-protocol.ebnf` (github.com/influxdata/line-protocol) and InfluxDB's
//! reading of escapes: in names a backslash before a character that is escaped there yields that
//! character, any other backslash is literal; in string values only `\"` and `\\` are escapes.
//! Accepts leading, repeated and trailing spaces and a CR before the line end, as the grammar
//! does. Rejects what the encoder refuses to write (control characters in names, line breaks in
//! strings) and what has no `f64` (`NaN`, `inf`, overflowing exponents). Never panics: the input
//! is only read through `str::get` and `chars`.

use super::{Element, FieldValue, Point};
use std::fmt;

/// Where a parse failed: 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.col)
    }
}

/// Why a line is not valid line protocol.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{at}: blank line or comment, no point")]
    Empty { at: Pos },
    #[error("{at}: missing measurement")]
    MissingMeasurement { at: Pos },
    #[error("{at}: missing tag key")]
    MissingTagKey { at: Pos },
    #[error("{at}: missing tag value")]
    MissingTagValue { at: Pos },
    #[error("{at}: unescaped '=' in tag value")]
    UnescapedEquals { at: Pos },
    #[error("{at}: control character in {element}")]
    ControlChar { at: Pos, element: Element },
    #[error("{at}: missing field set")]
    MissingFields { at: Pos },
    #[error("{at}: empty field key")]
    EmptyFieldKey { at: Pos },
    #[error("{at}: missing field value")]
    MissingFieldValue { at: Pos },
    #[error("{at}: invalid field value `{value}`: not a float, integer (`i`), unsigned (`u`), boolean or quoted string")]
    InvalidFieldValue { at: Pos, value: String },
    #[error("{at}: number `{value}` is out of range")]
    OutOfRange { at: Pos, value: String },
    #[error("{at}: string field value has no closing quote")]
    UnterminatedString { at: Pos },
    #[error("{at}: invalid timestamp `{value}`: expected a 64-bit integer")]
    InvalidTimestamp { at: Pos, value: String },
    #[error("{at}: unexpected {found:?}, expected {expected}")]
    Unexpected {
        at: Pos,
        found: char,
        expected: &'static str,
    },
}

/// Parses one line; a trailing `"\n"` or `"\r\n"` is allowed.
pub fn parse_line(line: &str) -> Result<Point, ParseError> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    parse_at(line.strip_suffix('\r').unwrap_or(line), 1)
}

/// Parses every line of `text`, skipping blank lines and `#` comments; errors carry the line
/// number.
pub fn parse_lines(text: &str) -> impl Iterator<Item = Result<Point, ParseError>> + '_ {
    text.split('\n').enumerate().filter_map(|(i, raw)| {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let content = line.trim_start_matches(' ');
        let blank = content
            .trim_matches(|c: char| c.is_ascii_whitespace())
            .is_empty();
        (!blank && !content.starts_with('#')).then(|| parse_at(line, i + 1))
    })
}

fn parse_at(line: &str, line_no: usize) -> Result<Point, ParseError> {
    let mut cur = Cursor {
        s: line,
        pos: 0,
        line: line_no,
    };
    cur.skip_spaces();
    if matches!(cur.peek(), None | Some('#')) {
        return Err(ParseError::Empty { at: cur.at() });
    }
    let measurement = read_name(&mut cur, Element::Measurement)?;
    if measurement.is_empty() {
        return Err(ParseError::MissingMeasurement { at: cur.at() });
    }
    let tags = read_tags(&mut cur)?;
    cur.skip_spaces();
    if cur.peek().is_none() {
        return Err(ParseError::MissingFields { at: cur.at() });
    }
    let mut fields = Vec::new();
    loop {
        fields.push(read_field(&mut cur)?);
        if !cur.eat(',') {
            break;
        }
    }
    let ts = if cur.skip_spaces() > 0 && cur.peek().is_some() {
        Some(read_timestamp(&mut cur)?)
    } else {
        None
    };
    cur.skip_spaces();
    if let Some(found) = cur.peek() {
        return Err(ParseError::Unexpected {
            at: cur.at(),
            found,
            expected: "end of line after the timestamp",
        });
    }
    Ok(Point {
        measurement,
        tags,
        fields,
        ts,
    })
}

/// Reads `,key=value` pairs up to the space before the fields (or the end of the line).
fn read_tags(cur: &mut Cursor<'_>) -> Result<Vec<(String, String)>, ParseError> {
    let mut tags = Vec::new();
    while cur.eat(',') {
        let key_at = cur.at();
        let key = read_name(cur, Element::TagKey)?;
        if key.is_empty() {
            return Err(ParseError::MissingTagKey { at: key_at });
        }
        if !cur.eat('=') {
            return Err(ParseError::MissingTagValue { at: cur.at() });
        }
        let value = read_name(cur, Element::TagValue)?;
        if cur.peek() == Some('=') {
            return Err(ParseError::UnescapedEquals { at: cur.at() });
        }
        if value.is_empty() {
            return Err(ParseError::MissingTagValue { at: cur.at() });
        }
        tags.push((key, value));
    }
    Ok(tags)
}

/// Reads a name up to the first unescaped separator of `element`, undoing escapes.
fn read_name(cur: &mut Cursor<'_>, element: Element) -> Result<String, ParseError> {
    let mut name = String::new();
    while let Some(c) = cur.peek() {
        if c == '\\' {
            if let Some(next) = cur.peek_second().filter(|&n| element.is_escaped(n)) {
                cur.bump();
                cur.bump();
                name.push(next);
                continue;
            }
        } else if ends_name(element, c) {
            break;
        } else if c.is_ascii_control() {
            return Err(ParseError::ControlChar {
                at: cur.at(),
                element,
            });
        }
        name.push(c);
        cur.bump();
    }
    Ok(name)
}

/// Unescaped characters that end a name (tag values end at `=` too, which the caller rejects).
fn ends_name(element: Element, c: char) -> bool {
    match element {
        Element::Measurement => matches!(c, ',' | ' '),
        _ => matches!(c, ',' | '=' | ' '),
    }
}

fn read_field(cur: &mut Cursor<'_>) -> Result<(String, FieldValue), ParseError> {
    let key_at = cur.at();
    let key = read_name(cur, Element::FieldKey)?;
    if key.is_empty() {
        return Err(ParseError::EmptyFieldKey { at: key_at });
    }
    if !cur.eat('=') {
        return Err(ParseError::MissingFieldValue { at: cur.at() });
    }
    let value = if cur.peek() == Some('"') {
        read_string(cur)?
    } else {
        read_scalar(cur)?
    };
    Ok((key, value))
}

/// Reads a quoted string value; the cursor is on the opening quote.
fn read_string(cur: &mut Cursor<'_>) -> Result<FieldValue, ParseError> {
    let open_at = cur.at();
    cur.bump();
    let mut value = String::new();
    loop {
        let here = cur.pos;
        match cur.bump() {
            None => return Err(ParseError::UnterminatedString { at: open_at }),
            Some('"') => break,
            Some('\\') => match cur.peek() {
                Some(c @ ('"' | '\\')) => {
                    cur.bump();
                    value.push(c);
                }
                _ => value.push('\\'),
            },
            Some('\n' | '\r') => {
                return Err(ParseError::ControlChar {
                    at: cur.pos_at(here),
                    element: Element::StringValue,
                })
            }
            Some(c) => value.push(c),
        }
    }
    match cur.peek() {
        None | Some(',' | ' ') => Ok(FieldValue::Str(value)),
        Some(found) => Err(ParseError::Unexpected {
            at: cur.at(),
            found,
            expected: "',' or ' ' after a string value",
        }),
    }
}

/// Reads an unquoted value (number or boolean) up to the next `,`, space or line end.
fn read_scalar(cur: &mut Cursor<'_>) -> Result<FieldValue, ParseError> {
    let at = cur.at();
    let token = cur.take_until(|c| c == ',' || c == ' ');
    if token.is_empty() {
        return Err(ParseError::MissingFieldValue { at });
    }
    classify(token).map_err(|bad| match bad {
        Bad::Invalid => ParseError::InvalidFieldValue {
            at,
            value: snippet(token),
        },
        Bad::OutOfRange => ParseError::OutOfRange {
            at,
            value: snippet(token),
        },
    })
}

enum Bad {
    Invalid,
    OutOfRange,
}

/// Types an unquoted value by its spelling, as the grammar does.
fn classify(token: &str) -> Result<FieldValue, Bad> {
    match token {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(FieldValue::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(FieldValue::Bool(false)),
        _ => {}
    }
    if let Some(digits) = token.strip_suffix('i') {
        if !is_digits(digits.strip_prefix('-').unwrap_or(digits)) {
            return Err(Bad::Invalid);
        }
        return digits
            .parse()
            .map(FieldValue::Int)
            .map_err(|_| Bad::OutOfRange);
    }
    if let Some(digits) = token.strip_suffix('u') {
        if !is_digits(digits) {
            return Err(Bad::Invalid);
        }
        return digits
            .parse()
            .map(FieldValue::UInt)
            .map_err(|_| Bad::OutOfRange);
    }
    // Rust's parser also takes "+1", "inf" and "NaN": check the grammar first.
    if !is_float(token) {
        return Err(Bad::Invalid);
    }
    match token.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(FieldValue::Float(v)),
        Ok(_) => Err(Bad::OutOfRange),
        Err(_) => Err(Bad::Invalid),
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `[-] (digits ["." [digits]] | "." digits) [("e"|"E") ["+"|"-"] digits]`, per the grammar.
fn is_float(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (mantissa, exponent) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (int.is_empty() || is_digits(int))
                && (frac.is_empty() || is_digits(frac))
                && !(int.is_empty() && frac.is_empty())
        }
        None => is_digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        is_digits(
            e.strip_prefix('+')
                .or_else(|| e.strip_prefix('-'))
                .unwrap_or(e),
        )
    });
    mantissa_ok && exponent_ok
}

fn read_timestamp(cur: &mut Cursor<'_>) -> Result<i64, ParseError> {
    let at = cur.at();
    let token = cur.take_until(|c| c == ' ');
    let digits = token.strip_prefix('-').unwrap_or(token);
    match token.parse() {
        Ok(ts) if is_digits(digits) => Ok(ts),
        _ => Err(ParseError::InvalidTimestamp {
            at,
            value: snippet(token),
        }),
    }
}

/// At most 40 characters of offending input, so a hostile payload cannot bloat a log line.
fn snippet(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", s.get(..end).unwrap_or_default()),
        None => s.to_owned(),
    }
}

/// Read position in one line; `pos` is a byte offset that always sits on a char boundary.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or_default()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, expected: char) -> bool {
        let hit = self.peek() == Some(expected);
        if hit {
            self.bump();
        }
        hit
    }

    /// Skips spaces and returns how many there were.
    fn skip_spaces(&mut self) -> usize {
        let n = self.rest().len() - self.rest().trim_start_matches(' ').len();
        self.pos += n;
        n
    }

    /// Consumes and returns everything before the first char matching `stop` (or the rest).
    fn take_until(&mut self, stop: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let end = rest.find(stop).unwrap_or(rest.len());
        self.pos += end;
        rest.get(..end).unwrap_or_default()
    }

    fn at(&self) -> Pos {
        self.pos_at(self.pos)
    }

    fn pos_at(&self, byte: usize) -> Pos {
        let before = self.s.get(..byte).map_or(0, |p| p.chars().count());
        Pos {
            line: self.line,
            col: before + 1,
        }
    }
}
