//! The line-protocol parser (MQTT `line_protocol` payloads) over arbitrary text, and the
//! round trip: every parsed point the encoder accepts parses back to the same point.
#![no_main]

use std::sync::Arc;

use citysense::line_protocol::{encode, parse_line, parse_lines, FieldValue, Point, PointRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for parsed in parse_lines(&text).chain([parse_line(&text)]).flatten() {
        round_trip(&parsed);
    }
});

fn round_trip(p: &Point) {
    let tags: Vec<(Arc<str>, Arc<str>)> = (p.tags.iter())
        .map(|(k, v)| (Arc::from(k.as_str()), Arc::from(v.as_str())))
        .collect();
    let fields: Vec<(&str, FieldValue)> = (p.fields.iter())
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let point = PointRef {
        measurement: &p.measurement,
        tags: &tags,
        fields: &fields,
        ts: p.ts,
    };
    let mut out = String::new();
    if encode(&point, &mut out).is_err() {
        return;
    }
    let back = parse_line(&out).unwrap_or_else(|e| panic!("{e}: {out:?} from {p:?}"));
    assert!(same(&back, p), "{out:?}\nparsed {back:?}\nfrom   {p:?}");
}

/// Equal, floats by bits.
fn same(a: &Point, b: &Point) -> bool {
    let value = |x: &FieldValue, y: &FieldValue| match (x, y) {
        (FieldValue::Float(x), FieldValue::Float(y)) => x.to_bits() == y.to_bits(),
        _ => x == y,
    };
    a.measurement == b.measurement
        && a.ts == b.ts
        && a.fields.len() == b.fields.len()
        && a.fields
            .iter()
            .zip(&b.fields)
            .all(|(x, y)| x.0 == y.0 && value(&x.1, &y.1))
        && a.tags
            == (b.tags.iter())
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .cloned()
                .collect::<Vec<_>>()
}
