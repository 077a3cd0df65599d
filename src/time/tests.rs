use super::*;
use crate::reading::NANOS_PER_SEC;

const NOV_22: i64 = 1_795_341_600 * NANOS_PER_SEC;

#[test]
fn format_round_trips_through_parse() {
    assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        format_rfc3339(NOV_22 + 7_000_000),
        "2026-11-22T10:00:00.007Z"
    );
    assert_eq!(format_rfc3339(-NANOS_PER_SEC), "1969-12-31T23:59:59.000Z");
    assert_eq!(format_rfc3339(i64::MIN).len(), 24);
    assert_eq!(format_rfc3339(i64::MAX), "2262-04-11T23:47:16.854Z");
    // Leap days and century rules over 1696..2243 (i64 ns reach +-292 years), sampled.
    for days in (-100_000i64..100_000).step_by(97) {
        let ts = days * 86_400 * NANOS_PER_SEC + 45_296_123_000_000;
        assert_eq!(parse_rfc3339(&format_rfc3339(ts)), Ok(ts), "{days}");
    }
    let mut s = String::from("at ");
    write_rfc3339(&mut s, 951_827_696_007_000_000);
    assert_eq!(s, "at 2000-02-29T12:34:56.007Z");
}

#[test]
fn rfc3339_cases() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
    assert_eq!(parse_rfc3339("2026-11-22T10:00:00Z"), Ok(NOV_22));
    assert_eq!(parse_rfc3339("2026-11-22T11:00:00+01:00"), Ok(NOV_22));
    assert_eq!(parse_rfc3339("2026-11-22T04:30:00-05:30"), Ok(NOV_22));
    // RFC 3339 allows lowercase `t`/`z` and a space between date and time.
    assert_eq!(parse_rfc3339("2026-11-22t10:00:00z"), Ok(NOV_22));
    assert_eq!(parse_rfc3339("2026-11-22 10:00:00Z"), Ok(NOV_22));
    assert_eq!(
        parse_rfc3339("2026-11-22T10:00:00.123456789Z"),
        Ok(NOV_22 + 123_456_789)
    );
    assert_eq!(
        parse_rfc3339("2026-11-22T10:00:00.5Z"),
        Ok(NOV_22 + 500_000_000)
    );
    // TTN writes 9 fraction digits; longer ones are truncated, not rejected.
    assert_eq!(
        parse_rfc3339("2026-11-22T10:00:00.5000000001+00:00"),
        Ok(NOV_22 + 500_000_000)
    );
    // A leap second is held at :59 (the instant has no other i64 ns name).
    assert_eq!(
        parse_rfc3339("2016-12-31T23:59:60Z"),
        parse_rfc3339("2016-12-31T23:59:59Z")
    );
    assert!(matches!(
        parse_rfc3339("2026-11-22T10:00:00"),
        Err(TimeError::NoOffset(_))
    ));
    assert!(matches!(
        parse_rfc3339("2026-11-22T10:00:00.25"),
        Err(TimeError::NoOffset(_))
    ));
    assert_eq!(parse_rfc3339("3000-01-01T00:00:00Z"), Err(TimeError::Range));
    assert!(parse_rfc3339("9999-12-31T23:59:59Z").is_err());
    for bad in [
        "",
        "2026-13-01T00:00:00Z",
        "2026-11-22X10:00:00Z",
        "2026-11-22T10:00:00.Z",
        "2026-11-22T10:00:00+0100",
        "2026-11-22T10:00:00+01",
        "2026-11-22T10:00:00+24:00",
        "2026-11-22T10:00:00+01:60",
        "2026-11-22T10:00:00Z[Europe/Paris]",
        "20261122T100000Z",
        "2026-11-22T24:00:00Z",
        "2026-11-22T10:60:00Z",
        "ääääääääääääääääääää",
    ] {
        assert!(parse_rfc3339(bad).is_err(), "{bad}");
    }
}

#[test]
fn impossible_dates_are_errors() {
    for bad in [
        "2026-02-31T00:00:00Z",
        "2026-02-29T00:00:00Z", // not a leap year
        "1900-02-29T00:00:00Z", // century, not a leap year
        "2026-04-31T12:00:00+02:00",
        "2026-00-10T00:00:00Z",
        "2026-01-00T00:00:00Z",
        "2026-01-32T00:00:00Z",
    ] {
        assert!(
            matches!(parse_rfc3339(bad), Err(TimeError::Syntax(_))),
            "{bad}"
        );
    }
    assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_ok());
    assert!(parse_rfc3339("2000-02-29T00:00:00Z").is_ok());
}

/// A non-ASCII character anywhere (the offset especially) is a syntax error, never a panic.
#[test]
fn non_ascii_never_panics() {
    let base = "2026-11-22T10:00:00+01:00";
    for cut in 0..=base.len() {
        for insert in ["ä", "€", "🍭", "\u{85}"] {
            let s = format!("{}{insert}{}", &base[..cut], &base[cut..]);
            assert!(parse_rfc3339(&s).is_err(), "{s}");
            let s = format!("{}{insert}", &base[..cut]);
            assert!(parse_rfc3339(&s).is_err(), "{s}");
        }
    }
    for s in [
        "2026-11-22T10:00:00+ä:0",
        "2026-11-22T10:00:00+0ä00",
        "2026-11-22T10:00:00+01ä0",
        "2026-11-22T10:00:00.1ä",
        "2026-11-22T10:00:00Zä",
    ] {
        assert!(matches!(parse_rfc3339(s), Err(TimeError::Syntax(_))), "{s}");
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
