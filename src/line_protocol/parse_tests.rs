//! Unit tests of the line-protocol parser: escapes and layout, every field type and spelling,
//! rejected values, error positions and messages, multi-line input.

use super::*;
use FieldValue::{Bool, Float, Int, Str, UInt};

fn point(
    measurement: &str,
    tags: &[(&str, &str)],
    fields: Vec<(&str, FieldValue)>,
    ts: Option<i64>,
) -> Point {
    Point {
        measurement: measurement.into(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        fields: fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        ts,
    }
}

#[test]
fn parse_escapes_and_layout() {
    let cases = [
        ("cpu f=1", point("cpu", &[], vec![("f", Float(1.0))], None)),
        (
            "my\\ m\\,x=y,t\\ k\\=\\,=v\\ \\,\\= f\\ \\=\\,=1i",
            point(
                "my m,x=y",
                &[("t k=,", "v ,=")],
                vec![("f =,", Int(1))],
                None,
            ),
        ),
        // A backslash before a character that is not escaped there is literal.
        (
            "a\\b,k\\x=v\\=\\y f=1",
            point("a\\b", &[("k\\x", "v=\\y")], vec![("f", Float(1.0))], None),
        ),
        (
            "a\\=b f=1",
            point("a\\=b", &[], vec![("f", Float(1.0))], None),
        ),
        // InfluxDB 1.x reading of a backslash before an escaped separator.
        (
            "m,k=a\\\\,b f=1",
            point("m", &[("k", "a\\,b")], vec![("f", Float(1.0))], None),
        ),
        (
            "m s=\"a\\\"b\\\\c\\nd, e=f\"",
            point("m", &[], vec![("s", Str("a\"b\\c\\nd, e=f".into()))], None),
        ),
        (
            "  m   f=1,g=\"x y\"   -5  ",
            point(
                "m",
                &[],
                vec![("f", Float(1.0)), ("g", Str("x y".into()))],
                Some(-5),
            ),
        ),
        (
            "m f=1 123\r\n",
            point("m", &[], vec![("f", Float(1.0))], Some(123)),
        ),
        (
            "m,a=1,a=2 f=1,f=2",
            point(
                "m",
                &[("a", "1"), ("a", "2")],
                vec![("f", Float(1.0)), ("f", Float(2.0))],
                None,
            ),
        ),
        (
            "🍭,tagKey=🍭 fieldKey=\"Launch 🚀\" 1556813561098000000",
            point(
                "🍭",
                &[("tagKey", "🍭")],
                vec![("fieldKey", Str("Launch 🚀".into()))],
                Some(1_556_813_561_098_000_000),
            ),
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(parse_line(line), Ok(expected), "{line:?}");
    }
}

#[test]
fn parse_field_types() {
    let cases: Vec<(&str, FieldValue)> = vec![
        ("t", Bool(true)),
        ("T", Bool(true)),
        ("true", Bool(true)),
        ("True", Bool(true)),
        ("TRUE", Bool(true)),
        ("f", Bool(false)),
        ("F", Bool(false)),
        ("false", Bool(false)),
        ("False", Bool(false)),
        ("FALSE", Bool(false)),
        ("0i", Int(0)),
        ("-12485903i", Int(-12_485_903)),
        ("9223372036854775807i", Int(i64::MAX)),
        ("-9223372036854775808i", Int(i64::MIN)),
        ("0u", UInt(0)),
        ("18446744073709551615u", UInt(u64::MAX)),
        ("1", Float(1.0)),
        ("-1.5", Float(-1.5)),
        ("1.", Float(1.0)),
        (".5", Float(0.5)),
        ("1e3", Float(1000.0)),
        ("1E+3", Float(1000.0)),
        ("2.5e-3", Float(0.0025)),
        ("-1.234456e+78", Float(-1.234456e78)),
        ("1.e2", Float(100.0)),
    ];
    for (text, expected) in cases {
        let parsed = parse_line(&format!("m v={text}")).map(|p| p.fields);
        assert_eq!(parsed, Ok(vec![("v".to_string(), expected)]), "{text}");
    }
}

#[test]
fn parse_rejects_bad_values() {
    let invalid = [
        "tRUE", "yes", "NaN", "nan", "inf", "-inf", "infinity", "+1", "1e", "1e+", ".", "-",
        "1.2.3", "0x10", "1_0", "1.5i", "+1i", "i", "-1u", "1.0u", "u", "1iu", "abc\"", "--1",
    ];
    for text in invalid {
        let err = parse_line(&format!("m v={text}")).unwrap_err();
        assert!(
            matches!(
                err,
                ParseError::InvalidFieldValue { .. } | ParseError::Unexpected { .. }
            ),
            "{text}: {err:?}"
        );
    }
    for text in [
        "9223372036854775808i",
        "-9223372036854775809i",
        "18446744073709551616u",
        "1e400",
        "-1e309",
    ] {
        let err = parse_line(&format!("m v={text}")).unwrap_err();
        assert!(
            matches!(err, ParseError::OutOfRange { .. }),
            "{text}: {err:?}"
        );
    }
}

#[test]
fn parse_errors_report_the_column() {
    let at = |col| Pos { line: 1, col };
    let cases = [
        ("", ParseError::Empty { at: at(1) }),
        ("  # comment", ParseError::Empty { at: at(3) }),
        (",t=v f=1", ParseError::MissingMeasurement { at: at(1) }),
        ("cpu", ParseError::MissingFields { at: at(4) }),
        ("cpu,t=v  ", ParseError::MissingFields { at: at(10) }),
        ("cpu,", ParseError::MissingTagKey { at: at(5) }),
        ("cpu,=v f=1", ParseError::MissingTagKey { at: at(5) }),
        ("cpu,host f=1", ParseError::MissingTagValue { at: at(9) }),
        ("cpu,host= f=1", ParseError::MissingTagValue { at: at(10) }),
        ("cpu,a=b=c f=1", ParseError::UnescapedEquals { at: at(8) }),
        (
            "cpu,a=b\tc f=1",
            ParseError::ControlChar {
                at: at(8),
                element: Element::TagValue,
            },
        ),
        ("cpu f", ParseError::MissingFieldValue { at: at(6) }),
        ("cpu f=", ParseError::MissingFieldValue { at: at(7) }),
        ("cpu f=,g=1", ParseError::MissingFieldValue { at: at(7) }),
        ("cpu =1", ParseError::EmptyFieldKey { at: at(5) }),
        ("cpu f=1,", ParseError::EmptyFieldKey { at: at(9) }),
        ("cpu f=1, g=2", ParseError::EmptyFieldKey { at: at(9) }),
        ("cpu f=\"abc", ParseError::UnterminatedString { at: at(7) }),
        (
            "cpu f=\"abc\\\"",
            ParseError::UnterminatedString { at: at(7) },
        ),
        (
            "cpu f=\"a\nb\"",
            ParseError::ControlChar {
                at: at(9),
                element: Element::StringValue,
            },
        ),
        (
            "cpu f=\"x\"y",
            ParseError::Unexpected {
                at: at(10),
                found: 'y',
                expected: "',' or ' ' after a string value",
            },
        ),
        (
            "cpu f=1 12x",
            ParseError::InvalidTimestamp {
                at: at(9),
                value: "12x".into(),
            },
        ),
        (
            "cpu f=1 9223372036854775808",
            ParseError::InvalidTimestamp {
                at: at(9),
                value: "9223372036854775808".into(),
            },
        ),
        (
            "cpu f=1 +5",
            ParseError::InvalidTimestamp {
                at: at(9),
                value: "+5".into(),
            },
        ),
        (
            "cpu f=1 1 2",
            ParseError::Unexpected {
                at: at(11),
                found: '2',
                expected: "end of line after the timestamp",
            },
        ),
        (
            "città,x=ü f=bad",
            ParseError::InvalidFieldValue {
                at: at(13),
                value: "bad".into(),
            },
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(parse_line(line), Err(expected), "{line:?}");
    }
}

#[test]
fn parse_error_messages() {
    let err = parse_line("cpu,a=b=c f=1").unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 1, column 8: unescaped '=' in tag value"
    );
    let long = format!("m v={}", "x".repeat(1000));
    let msg = parse_line(&long).unwrap_err().to_string();
    assert!(msg.len() < 200 && msg.contains('…'), "{msg}");
}

#[test]
fn parse_lines_skips_blanks_and_comments_and_numbers_errors() {
    let text = "# header\r\n\na f=1\r\n   \n  # indented comment\nb g=2i 5\nbad\n\t\nc h=t\n";
    let results: Vec<_> = parse_lines(text).collect();
    assert_eq!(results.len(), 4);
    assert_eq!(
        results[0],
        Ok(point("a", &[], vec![("f", Float(1.0))], None))
    );
    assert_eq!(
        results[1],
        Ok(point("b", &[], vec![("g", Int(2))], Some(5)))
    );
    assert_eq!(
        results[2],
        Err(ParseError::MissingFields {
            at: Pos { line: 7, col: 4 }
        })
    );
    assert_eq!(
        results[3],
        Ok(point("c", &[], vec![("h", Bool(true))], None))
    );
    assert_eq!(parse_lines("").count(), 0);
}
