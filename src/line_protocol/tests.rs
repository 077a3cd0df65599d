//! Unit tests of the line-protocol encoder: escaping table, every field type, float spellings,
//! NaN dropping, refusals. Parser tests are in `parse_tests.rs`, property tests in `proptests.rs`.

use super::*;
use FieldValue::{Bool, Float, Int, Str, UInt};

fn arc_tags(tags: &[(&str, &str)]) -> Vec<(Arc<str>, Arc<str>)> {
    tags.iter()
        .map(|(k, v)| (Arc::from(*k), Arc::from(*v)))
        .collect()
}

fn encode_one(
    measurement: &str,
    tags: &[(&str, &str)],
    fields: &[(&str, FieldValue)],
    ts: Option<i64>,
) -> Result<(String, EncodeStats), EncodeError> {
    let tags = arc_tags(tags);
    let point = PointRef {
        measurement,
        tags: &tags,
        fields,
        ts,
    };
    let mut out = String::new();
    encode(&point, &mut out).map(|stats| (out, stats))
}

fn f1() -> Vec<(&'static str, FieldValue)> {
    vec![("f", Float(1.0))]
}

#[test]
fn escaping_table() {
    type Case = (
        &'static str,
        Vec<(&'static str, &'static str)>,
        Vec<(&'static str, FieldValue)>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        ("cpu", vec![], f1(), "cpu f=1\n"),
        // Measurement: comma and space escaped, '=' and quotes literal.
        ("my meas,x=y", vec![], f1(), "my\\ meas\\,x=y f=1\n"),
        ("\"q\"'s'", vec![], f1(), "\"q\"'s' f=1\n"),
        // Tag key and value: comma, equals, space.
        (
            "m",
            vec![("a b,c=d", "v 1,=")],
            f1(),
            "m,a\\ b\\,c\\=d=v\\ 1\\,\\= f=1\n",
        ),
        ("m", vec![("k", "\"quoted\"")], f1(), "m,k=\"quoted\" f=1\n"),
        // Field key: comma, equals, space.
        (
            "m",
            vec![],
            vec![("f k=,", Float(1.0))],
            "m f\\ k\\=\\,=1\n",
        ),
        // String value: quote and backslash escaped; comma, space, equals literal.
        (
            "m",
            vec![],
            vec![("s", Str(r#"he said "hi" \o/ a=b,c"#.into()))],
            "m s=\"he said \\\"hi\\\" \\\\o/ a=b,c\"\n",
        ),
        (
            "m",
            vec![],
            vec![("s", Str("ends with \\".into()))],
            "m s=\"ends with \\\\\"\n",
        ),
        ("m", vec![], vec![("s", Str(String::new()))], "m s=\"\"\n"),
        // A backslash before an ordinary character is written literally.
        (
            "a\\b",
            vec![("k\\x", "v\\y")],
            vec![("f\\z", Float(1.0))],
            "a\\b,k\\x=v\\y f\\z=1\n",
        ),
        // '#' only matters at the start of a measurement; unicode passes through.
        ("a#b", vec![("#k", "#v")], f1(), "a#b,#k=#v f=1\n"),
        (
            "🍭",
            vec![("città", "中")],
            vec![("ü", Str("Launch 🚀".into()))],
            "🍭,città=中 ü=\"Launch 🚀\"\n",
        ),
        // Tags in the order given; empty keys or values skipped.
        (
            "m",
            vec![("b", "2"), ("", "x"), ("a", "1"), ("y", "")],
            f1(),
            "m,b=2,a=1 f=1\n",
        ),
    ];
    for (measurement, tags, fields, expected) in cases {
        let (line, stats) = encode_one(measurement, &tags, &fields, None).unwrap();
        assert_eq!(line, expected, "measurement {measurement:?}");
        assert_eq!(stats.dropped_fields, 0);
    }
}

#[test]
fn field_types_and_timestamp() {
    let fields = vec![
        ("i", Int(-5)),
        ("imin", Int(i64::MIN)),
        ("u", UInt(u64::MAX)),
        ("t", Bool(true)),
        ("f", Bool(false)),
        ("s", Str("x".into())),
    ];
    let (line, _) = encode_one("m", &[], &fields, Some(1_556_813_561_098_000_000)).unwrap();
    assert_eq!(
        line,
        "m i=-5i,imin=-9223372036854775808i,u=18446744073709551615u,t=true,f=false,s=\"x\" 1556813561098000000\n"
    );
    let (line, _) = encode_one("m", &[], &f1(), Some(-1)).unwrap();
    assert_eq!(line, "m f=1 -1\n");
}

#[test]
fn float_spellings() {
    let cases: [(f64, &str); 14] = [
        (0.0, "0"),
        (-0.0, "-0"),
        (0.5, "0.5"),
        (-1.25, "-1.25"),
        (0.1 + 0.2, "0.30000000000000004"),
        (123_456.789, "123456.789"),
        (0.00001, "0.00001"),
        (1e15, "1000000000000000"),
        (1e16, "1e16"),
        (1e21, "1e21"),
        (1e-7, "1e-7"),
        (-1.5e-7, "-1.5e-7"),
        (f64::MAX, "1.7976931348623157e308"),
        (5e-324, "5e-324"),
    ];
    for (v, expected) in cases {
        let (line, _) = encode_one("m", &[], &[("v", Float(v))], None).unwrap();
        assert_eq!(line, format!("m v={expected}\n"));
        let parsed = parse_line(&line).unwrap();
        match parsed.fields.first() {
            Some((_, Float(back))) => assert_eq!(back.to_bits(), v.to_bits(), "{expected}"),
            other => panic!("{expected}: parsed {other:?}"),
        }
    }
}

#[test]
fn non_finite_floats_are_dropped_and_counted() {
    let fields = vec![
        ("a", Float(f64::NAN)),
        ("b", Float(2.5)),
        ("c", Float(f64::INFINITY)),
        ("d", Float(f64::NEG_INFINITY)),
        ("e", Int(1)),
    ];
    let (line, stats) = encode_one("m", &[], &fields, None).unwrap();
    assert_eq!(line, "m b=2.5,e=1i\n");
    assert_eq!(stats.dropped_fields, 3);

    let all_nan = vec![("a", Float(f64::NAN)), ("b", Float(f64::INFINITY))];
    assert_eq!(
        encode_one("m", &[], &all_nan, None),
        Err(EncodeError::NoFields { dropped: 2 })
    );
    assert_eq!(
        encode_one("m", &[], &[], None),
        Err(EncodeError::NoFields { dropped: 0 })
    );
}

#[test]
fn encode_errors_leave_output_untouched() {
    use Element::*;
    let bad = |element, name: &str| EncodeError::ControlChar {
        element,
        name: name.into(),
    };
    let ambiguous = |element, name: &str| EncodeError::AmbiguousBackslash {
        element,
        name: name.into(),
    };
    type Case = (
        &'static str,
        Vec<(&'static str, &'static str)>,
        Vec<(&'static str, FieldValue)>,
        EncodeError,
    );
    let cases: Vec<Case> = vec![
        ("", vec![], f1(), EncodeError::EmptyMeasurement),
        (
            "#m",
            vec![],
            f1(),
            EncodeError::CommentMeasurement("#m".into()),
        ),
        (
            "m",
            vec![],
            vec![("", Float(1.0))],
            EncodeError::EmptyFieldKey {
                measurement: "m".into(),
            },
        ),
        ("a\nb", vec![], f1(), bad(Measurement, "a\nb")),
        ("m", vec![("k\n", "v")], f1(), bad(TagKey, "k\n")),
        ("m", vec![("k", "v\r")], f1(), bad(TagValue, "v\r")),
        ("m", vec![("k", "v\t")], f1(), bad(TagValue, "v\t")),
        (
            "m",
            vec![],
            vec![("f\u{7f}", Float(1.0))],
            bad(FieldKey, "f\u{7f}"),
        ),
        (
            "m",
            vec![],
            vec![("s", Str("a\nb".into()))],
            EncodeError::LineBreakInString { field: "s".into() },
        ),
        (
            "m",
            vec![],
            vec![("s", Str("a\rb".into()))],
            EncodeError::LineBreakInString { field: "s".into() },
        ),
        ("m\\", vec![], f1(), ambiguous(Measurement, "m\\")),
        ("a\\\\b", vec![], f1(), ambiguous(Measurement, "a\\\\b")),
        ("a\\=b", vec![], f1(), ambiguous(Measurement, "a\\=b")),
        ("m", vec![("k", "v\\")], f1(), ambiguous(TagValue, "v\\")),
        ("m", vec![("k\\ x", "v")], f1(), ambiguous(TagKey, "k\\ x")),
        (
            "m",
            vec![],
            vec![("f\\,", Float(1.0))],
            ambiguous(FieldKey, "f\\,"),
        ),
        (
            "m",
            vec![],
            vec![("a\"b", Float(1.0))],
            EncodeError::QuoteInFieldKey("a\"b".into()),
        ),
    ];
    for (measurement, tags, fields, expected) in cases {
        let tags = arc_tags(&tags);
        let point = PointRef {
            measurement,
            tags: &tags,
            fields: &fields,
            ts: Some(7),
        };
        let mut out = String::from("prev f=1\n");
        assert_eq!(encode(&point, &mut out), Err(expected.clone()));
        assert_eq!(out, "prev f=1\n", "{expected}");
    }
}

#[test]
fn encode_error_messages_name_the_culprit() {
    let err = encode_one("m", &[("k", "v\\")], &f1(), None).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("tag value") && msg.contains("\"v\\\\\""),
        "{msg}"
    );
    let err = encode_one("m", &[], &[("status", Str("a\nb".into()))], None).unwrap_err();
    assert!(err.to_string().contains("\"status\""), "{err}");
}

#[test]
fn encode_appends_without_reallocating_a_reserved_buffer() {
    let tags = arc_tags(&[("node", "esp8266-1234"), ("site", "Main St,5")]);
    let fields = [
        ("SDS_P1", Float(7.9)),
        ("n", Int(3)),
        ("s", Str("ok \"x\"".into())),
    ];
    let point = PointRef {
        measurement: "feinstaub",
        tags: &tags,
        fields: &fields,
        ts: Some(1),
    };
    let mut out = String::with_capacity(4096);
    let (ptr, cap) = (out.as_ptr(), out.capacity());
    for _ in 0..20 {
        encode(&point, &mut out).unwrap();
    }
    assert_eq!((out.as_ptr(), out.capacity()), (ptr, cap));
    assert_eq!(out.lines().count(), 20);
}
