//! Tests of the generic line decoder (kept apart from `line.rs` for length).

use super::*;
use crate::decode::tests::run_stream;

/// A decoder from the TOML of a `[protocol]` table (without `type`) and quantity names.
fn decoder(options: &str, quantities: &[&str]) -> LineDecoder {
    let options: LineOptions = toml::from_str(options).unwrap();
    let names: Vec<String> = quantities.iter().map(|q| q.to_string()).collect();
    LineDecoder::new(&options, &names).unwrap()
}

fn build_error(options: &str, quantities: &[&str]) -> ProfileError {
    let options: LineOptions = toml::from_str(options).unwrap();
    let names: Vec<String> = quantities.iter().map(|q| q.to_string()).collect();
    LineDecoder::new(&options, &names).unwrap_err()
}

fn frame(d: &mut LineDecoder, line: &str) -> Values {
    match d.decode(line.as_bytes()) {
        Step::Frame { values, consumed } => {
            assert_eq!(consumed, line.len());
            values
        }
        other => panic!("{line:?}: {other:?}"),
    }
}

fn error(d: &mut LineDecoder, line: &str) -> DecodeError {
    match d.decode(line.as_bytes()) {
        Step::Skip {
            consumed,
            error: Some(e),
        } => {
            assert_eq!(consumed, line.len());
            e
        }
        other => panic!("{line:?}: {other:?}"),
    }
}

#[test]
fn kv_with_commas_or_spaces_and_unknown_keys() {
    let mut d = decoder(r#"format = "kv""#, &["in", "out"]);
    for line in [
        "in=3,out=1\n",
        "in=3 out=1\r\n",
        " out = 1 , in=3, battery=3.7\n",
    ] {
        let v = frame(&mut d, line);
        assert_eq!(
            (v.get(0), v.get(1), v.len()),
            (Some(3.0), Some(1.0), 2),
            "{line}"
        );
    }
    let v = frame(&mut d, "out=2\n");
    assert_eq!((v.get(0), v.get(1)), (None, Some(2.0)));
}

#[test]
fn kv_mapping_and_custom_separator() {
    let opts = "format = \"kv\"\nseparator = \";\"\nmapping = { IN = \"in\", OUT = \"out\" }";
    let mut d = decoder(opts, &["in", "out"]);
    let v = frame(&mut d, "IN=4; OUT=5;in=9\n");
    assert_eq!((v.get(0), v.get(1), v.len()), (Some(4.0), Some(5.0), 2));
}

#[test]
fn kv_errors() {
    let mut d = decoder(r#"format = "kv""#, &["in", "out"]);
    for line in [
        "in=three\n",
        "in=3,out\n",
        "in=3,in=4\n",
        "in=NaN\n",
        "in=inf\n",
    ] {
        assert!(
            matches!(error(&mut d, line), DecodeError::Malformed(_)),
            "{line}"
        );
    }
    // The next good line still decodes.
    assert_eq!(frame(&mut d, "in=1\n").get(0), Some(1.0));
}

#[test]
fn csv_columns_by_position() {
    let opts = r#"format = "csv"
columns = ["", "in", "out"]"#;
    let mut d = decoder(opts, &["in", "out"]);
    let v = frame(&mut d, "gate7, 12, 7\n");
    assert_eq!((v.get(0), v.get(1)), (Some(12.0), Some(7.0)));
    let v = frame(&mut d, "gate7,,7\n");
    assert_eq!((v.get(0), v.get(1)), (None, Some(7.0)));
    assert!(matches!(
        error(&mut d, "gate7,12\n"),
        DecodeError::Malformed(_)
    ));
    assert!(matches!(
        error(&mut d, "gate7,12,7,1\n"),
        DecodeError::Malformed(_)
    ));
    assert!(matches!(
        error(&mut d, "gate7,x,7\n"),
        DecodeError::Malformed(_)
    ));
}

#[test]
fn json_paths_arrays_and_types() {
    let opts = r#"format = "json"
mapping = { "counts.in" = "in", "counts.out" = "out", "env.0" = "temperature" }"#;
    let mut d = decoder(opts, &["in", "out", "temperature"]);
    let v = frame(
        &mut d,
        "{\"counts\":{\"in\":3,\"out\":1.5},\"env\":[21.5],\"id\":\"x\"}\n",
    );
    assert_eq!(
        (v.get(0), v.get(1), v.get(2)),
        (Some(3.0), Some(1.5), Some(21.5))
    );
    let v = frame(&mut d, "{\"counts\":{\"in\":null}}\n");
    assert!(v.is_empty());
    for line in ["{\"counts\":{\"in\":\"3\"}}\n", "[1,2]\n", "{\"counts\":\n"] {
        assert!(
            matches!(error(&mut d, line), DecodeError::Malformed(_)),
            "{line}"
        );
    }
}

#[test]
fn json_default_mapping_uses_quantity_names() {
    let mut d = decoder(r#"format = "json""#, &["in", "out"]);
    let v = frame(&mut d, "{\"in\": 2, \"out\": 3e0}\n");
    assert_eq!((v.get(0), v.get(1)), (Some(2.0), Some(3.0)));
}

#[test]
fn nmea_checksum_on_a_real_sentence() {
    // The classic GGA example sentence, whose published checksum is 47.
    let opts = r#"format = "csv"
checksum = "nmea"
columns = ["", "", "lat", "", "lon", "", "", "sats", "", "alt", "", "", "", "", ""]"#;
    let mut d = decoder(opts, &["lat", "lon", "sats", "alt"]);
    let good = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n";
    let v = frame(&mut d, good);
    assert_eq!(
        (v.get(0), v.get(2), v.get(3)),
        (Some(4807.038), Some(8.0), Some(545.4))
    );
    let bad = good.replace("*47", "*48");
    assert_eq!(
        error(&mut d, &bad),
        DecodeError::BadChecksum {
            expected: 0x48,
            actual: 0x47
        }
    );
    let missing = good.replace("*47", "");
    assert!(matches!(error(&mut d, &missing), DecodeError::Malformed(_)));
}

#[test]
fn nmea_without_dollar_and_lowercase_hex() {
    let opts = "format = \"csv\"\nchecksum = \"nmea\"\ncolumns = [\"\", \"in\", \"out\"]";
    let mut d = decoder(opts, &["in", "out"]);
    let v = frame(&mut d, "CNT,12,7*6d\n");
    assert_eq!((v.get(0), v.get(1)), (Some(12.0), Some(7.0)));
}

#[test]
fn blank_lines_are_silent() {
    let mut d = decoder(r#"format = "kv""#, &["in"]);
    assert_eq!(
        d.decode(b"\r\n"),
        Step::Skip {
            consumed: 2,
            error: None
        }
    );
    assert_eq!(d.decode(b"in=1"), Step::Incomplete);
}

#[test]
fn overlong_lines_are_dropped_and_the_buffer_stays_bounded() {
    let mut d = decoder("format = \"kv\"\nmax_line_len = 16", &["in"]);
    let long = format!("in={}\n", "1".repeat(14));
    assert_eq!(error(&mut d, &long), DecodeError::TooLong { max: 16 });
    // A stream with no newline for a long time, then a good line.
    let mut stream = vec![b'x'; 100];
    stream.extend_from_slice(b"\nin=5\n");
    for chunk in [1, 3, 50] {
        let mut d = decoder("format = \"kv\"\nmax_line_len = 16", &["in"]);
        let out = run_stream(|b| d.decode(b), &stream, chunk);
        assert!(out.max_pending <= 17, "chunk {chunk}: {}", out.max_pending);
        assert_eq!(out.errors, vec![DecodeError::TooLong { max: 16 }]);
        assert_eq!(out.frames.len(), 1);
        assert_eq!(out.frames[0].get(0), Some(5.0));
    }
}

#[test]
fn line_of_exactly_max_len_with_crlf_is_accepted() {
    let mut d = decoder("format = \"kv\"\nmax_line_len = 8", &["in"]);
    let line = "in=12345\r\n";
    let mut buf = Vec::new();
    for b in line.bytes() {
        buf.push(b);
        match d.decode(&buf) {
            Step::Incomplete => {}
            Step::Frame { values, consumed } => {
                assert_eq!(consumed, line.len());
                assert_eq!(values.get(0), Some(12345.0));
                return;
            }
            other => panic!("{other:?}"),
        }
    }
    panic!("no frame");
}

#[test]
fn build_rejects_bad_options() {
    let csv_without_columns = build_error(r#"format = "csv""#, &["in"]);
    assert!(matches!(csv_without_columns, ProfileError::Invalid { .. }));
    let unknown_target = build_error("format = \"json\"\nmapping = { a = \"nope\" }", &["in"]);
    assert!(unknown_target.to_string().contains("nope"));
    let twice = build_error("format = \"csv\"\ncolumns = [\"in\", \"in\"]", &["in"]);
    assert!(twice.to_string().contains("twice"));
    let columns_for_kv = build_error("format = \"kv\"\ncolumns = [\"in\"]", &["in"]);
    assert!(matches!(columns_for_kv, ProfileError::Invalid { .. }));
    for len in ["0", "65537"] {
        let err = build_error(&format!("format = \"kv\"\nmax_line_len = {len}"), &["in"]);
        assert!(err.to_string().contains("max_line_len"), "{err}");
    }
}

#[test]
fn reset_forgets_the_overlong_line() {
    let mut d = decoder("format = \"kv\"\nmax_line_len = 4", &["in"]);
    assert!(matches!(
        d.decode(b"in=123456"),
        Step::Skip {
            error: Some(DecodeError::TooLong { max: 4 }),
            ..
        }
    ));
    // Without a reset the next line would be taken as the overlong line's tail.
    d.reset();
    assert_eq!(frame(&mut d, "in=1\n").get(0), Some(1.0));
}
