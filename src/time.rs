//! Time helpers without a calendar crate: RFC 3339 parsing and numeric epoch guessing.
//!
//! Only what payloads carry is supported: `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`.
//! A time without an offset is refused here: its zone is ambiguous, callers decide.

use crate::reading::{TimestampNs, NANOS_PER_SEC};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("not an RFC 3339 time: {0:?}")]
    Syntax(String),
    #[error("time {0:?} has no UTC offset")]
    NoOffset(String),
    #[error("time out of range")]
    Range,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn num(s: &str, range: std::ops::RangeInclusive<u32>) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|v| range.contains(v))
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (inverse of
/// [`days_from_civil`], same algorithm family).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `ts` as RFC 3339 UTC with millisecond precision, e.g. `2024-05-01T12:00:00.000Z`.
pub fn format_rfc3339(ts: TimestampNs) -> String {
    let secs = ts.div_euclid(NANOS_PER_SEC);
    let ms = ts.rem_euclid(NANOS_PER_SEC) / 1_000_000;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Parses an RFC 3339 timestamp into ns since the epoch.
pub fn parse_rfc3339(s: &str) -> Result<TimestampNs, TimeError> {
    let syntax = || TimeError::Syntax(s.chars().take(64).collect());
    let b = s.as_bytes();
    if b.len() < 19 || !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return Err(syntax());
    }
    let (date, rest) = s.split_at(10);
    let rest = &rest[1..];
    let mut dp = date.split('-');
    let y = dp
        .next()
        .and_then(|v| num(v, 0..=9999))
        .ok_or_else(syntax)?;
    let mo = dp.next().and_then(|v| num(v, 1..=12)).ok_or_else(syntax)?;
    let d = dp.next().and_then(|v| num(v, 1..=31)).ok_or_else(syntax)?;
    let clock = rest.get(..8).ok_or_else(syntax)?;
    let mut cp = clock.split(':');
    let h = cp.next().and_then(|v| num(v, 0..=23)).ok_or_else(syntax)?;
    let mi = cp.next().and_then(|v| num(v, 0..=59)).ok_or_else(syntax)?;
    let se = cp.next().and_then(|v| num(v, 0..=60)).ok_or_else(syntax)?;
    let mut tail = &rest[8..];
    let mut frac_ns: i64 = 0;
    if let Some(f) = tail.strip_prefix('.') {
        let digits = f.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(syntax());
        }
        for (i, c) in f[..digits].bytes().take(9).enumerate() {
            frac_ns += (c - b'0') as i64 * 10i64.pow(8 - i as u32);
        }
        tail = &f[digits..];
    }
    let offset_s: i64 = match tail {
        "Z" | "z" => 0,
        "" => return Err(TimeError::NoOffset(s.chars().take(64).collect())),
        t if t.len() == 6 && (t.starts_with('+') || t.starts_with('-')) => {
            let oh = num(&t[1..3], 0..=23).ok_or_else(syntax)? as i64;
            let om = num(&t[4..6], 0..=59).ok_or_else(syntax)? as i64;
            if &t[3..4] != ":" {
                return Err(syntax());
            }
            let sign = if t.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return Err(syntax()),
    };
    let days = days_from_civil(y as i64, mo, d);
    let secs = days * 86_400 + (h as i64) * 3600 + (mi as i64) * 60 + se as i64 - offset_s;
    secs.checked_mul(NANOS_PER_SEC)
        .and_then(|n| n.checked_add(frac_ns))
        .ok_or(TimeError::Range)
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
mod tests {
    use super::*;

    #[test]
    fn format_round_trips_through_parse() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339(1_795_341_600 * NANOS_PER_SEC + 7_000_000),
            "2026-11-22T10:00:00.007Z"
        );
        assert_eq!(format_rfc3339(-NANOS_PER_SEC), "1969-12-31T23:59:59.000Z");
        // Leap days and century rules over 1696..2243 (i64 ns reach +-292 years), sampled.
        for days in (-100_000i64..100_000).step_by(97) {
            let ts = days * 86_400 * NANOS_PER_SEC + 45_296_123_000_000;
            assert_eq!(parse_rfc3339(&format_rfc3339(ts)), Ok(ts), "{days}");
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn rfc3339_cases() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339("2026-11-22T10:00:00Z"),
            Ok(1_795_341_600 * NANOS_PER_SEC)
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T11:00:00+01:00"),
            Ok(1_795_341_600 * NANOS_PER_SEC)
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T10:00:00.123456789Z"),
            Ok(1_795_341_600 * NANOS_PER_SEC + 123_456_789)
        );
        // TTN writes 9 fraction digits; longer ones are truncated, not rejected.
        assert_eq!(
            parse_rfc3339("2026-11-22T10:00:00.5000000001Z"),
            Ok(1_795_341_600 * NANOS_PER_SEC + 500_000_000)
        );
        assert!(matches!(
            parse_rfc3339("2026-11-22T10:00:00"),
            Err(TimeError::NoOffset(_))
        ));
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-11-22X10:00:00Z",
            "2026-11-22T10:00:00.Z",
            "2026-11-22T10:00:00+0100",
            "ääääääääääääääääääää",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn epoch_magnitudes() {
        assert_eq!(
            epoch_auto_ns(1_700_000_000.0),
            Some(1_700_000_000 * NANOS_PER_SEC)
        );
        assert_eq!(
            epoch_auto_ns(1_700_000_000_000.0),
            Some(1_700_000_000 * NANOS_PER_SEC)
        );
        assert_eq!(epoch_auto_ns(1.7e15), Some(1_700_000_000 * NANOS_PER_SEC));
        assert_eq!(epoch_auto_ns(1.7e18), Some(1_700_000_000 * NANOS_PER_SEC));
        assert_eq!(epoch_auto_ns(-1.0), None);
        assert_eq!(epoch_auto_ns(f64::NAN), None);
    }
}
