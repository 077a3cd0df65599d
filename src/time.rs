//! Time helpers: RFC 3339 parsing and printing (calendar work done by `jiff`) and numeric
//! epoch guessing.
//!
//! Accepted: `YYYY-MM-DD(T|t| )HH:MM:SS[.frac](Z|z|+HH:MM|-HH:MM)`. The shape is checked on
//! bytes first so that only RFC 3339 passes (jiff's own grammar is the wider ISO 8601 /
//! Temporal one: basic formats, `+0100`, `[zone]` annotations); jiff then checks the
//! calendar, so an impossible date such as 2026-02-31 is an error, not another day. A time
//! without an offset is refused here: its zone is ambiguous, callers decide.

use jiff::fmt::temporal::{DateTimeParser, DateTimePrinter};

use crate::reading::TimestampNs;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("not an RFC 3339 time: {0:?}")]
    Syntax(String),
    #[error("time {0:?} has no UTC offset")]
    NoOffset(String),
    #[error("time out of range")]
    Range,
}

/// Fraction digits kept; payloads with more (some loggers write 10+) are truncated to ns.
const MAX_FRACTION_DIGITS: usize = 9;
/// `YYYY-MM-DDTHH:MM:SS`: the part before the optional fraction.
const DATE_TIME_LEN: usize = 19;

static PARSER: DateTimeParser = DateTimeParser::new();
static PRINTER: DateTimePrinter = DateTimePrinter::new().precision(Some(3));

/// Writes `ts` as RFC 3339 UTC with millisecond precision, e.g. `2024-05-01T12:00:00.000Z`.
pub fn write_rfc3339(out: &mut String, ts: TimestampNs) {
    // Every i64 of ns (about +-292 years) lies inside jiff's range; the fallback is for form.
    let t = jiff::Timestamp::from_nanosecond(i128::from(ts)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let _ = PRINTER.print_timestamp(&t, out);
}

/// `ts` as RFC 3339 UTC with millisecond precision, e.g. `2024-05-01T12:00:00.000Z`.
pub fn format_rfc3339(ts: TimestampNs) -> String {
    let mut s = String::with_capacity(24);
    write_rfc3339(&mut s, ts);
    s
}

/// Parses an RFC 3339 timestamp into ns since the epoch.
pub fn parse_rfc3339(s: &str) -> Result<TimestampNs, TimeError> {
    let syntax = || TimeError::Syntax(s.chars().take(64).collect());
    let b = s.as_bytes();
    let frac_end = shape(b).ok_or_else(syntax)?;
    if frac_end == b.len() {
        return Err(TimeError::NoOffset(s.chars().take(64).collect()));
    }
    if !offset_shape(&b[frac_end..]) {
        return Err(syntax());
    }
    // The shape checks passed, so `s` is ASCII up to `frac_end`: these are char boundaries.
    let keep = (DATE_TIME_LEN + 1 + MAX_FRACTION_DIGITS).min(frac_end);
    let text = match s.get(..keep).zip(s.get(frac_end..)) {
        Some((head, offset)) if keep < frac_end => {
            std::borrow::Cow::Owned(format!("{head}{offset}"))
        }
        _ => std::borrow::Cow::Borrowed(s),
    };
    let t = PARSER
        .parse_timestamp(text.as_ref())
        .map_err(|_| syntax())?;
    i64::try_from(t.as_nanosecond()).map_err(|_| TimeError::Range)
}

/// Checks `YYYY-MM-DD?HH:MM:SS[.d+]` on bytes; returns where the offset starts.
fn shape(b: &[u8]) -> Option<usize> {
    const PATTERN: &[u8; DATE_TIME_LEN] = b"dddd-dd-dd_dd:dd:dd";
    let head = b.get(..DATE_TIME_LEN)?;
    let fits = PATTERN.iter().zip(head).all(|(p, c)| match p {
        b'd' => c.is_ascii_digit(),
        b'_' => matches!(c, b'T' | b't' | b' '),
        p => p == c,
    });
    if !fits {
        return None;
    }
    match b.get(DATE_TIME_LEN) {
        Some(b'.') => {
            let from = DATE_TIME_LEN + 1;
            let digits = b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
            (digits > 0).then_some(from + digits)
        }
        _ => Some(DATE_TIME_LEN),
    }
}

/// `Z`, `z`, `+HH:MM` or `-HH:MM`, and nothing after it.
fn offset_shape(b: &[u8]) -> bool {
    match b {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let digits = [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit());
            // RFC 3339's time-numoffset: hours 00-23, minutes 00-59.
            digits && (*h1, *h2) <= (b'2', b'3') && *m1 <= b'5'
        }
        _ => false,
    }
}

/// Interprets a numeric epoch timestamp by magnitude: seconds (< 1e11, i.e. before year
/// 5138), milliseconds (< 1e14), microseconds (< 1e17), else nanoseconds.
pub fn epoch_auto_ns(v: f64) -> Option<TimestampNs> {
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    let ns = if v < 1e11 {
        v * 1e9
    } else if v < 1e14 {
        v * 1e6
    } else if v < 1e17 {
        v * 1e3
    } else {
        v
    };
    (ns < i64::MAX as f64).then_some(ns as i64)
}

#[cfg(test)]
mod tests;
