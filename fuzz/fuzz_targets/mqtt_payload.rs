//! The MQTT payload mappers (plain, json, tasmota, ttn, line protocol) with their timestamp
//! paths and formats, as an MQTT subscription runs them.
//!
//! Input: byte 0 picks the format and the timestamp format, byte 1 holds option bits; with
//! bit 7 set, a first line `ts_path quantity=path ...` configures the paths; the rest is the
//! payload.
#![no_main]

use std::collections::BTreeMap;

use citysense::config::{PayloadFormat, TimestampFormat};
use citysense::sources::mqtt::{Mapper, TtnOptions};
use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;

const FORMATS: [PayloadFormat; 5] = [
    PayloadFormat::Plain,
    PayloadFormat::Json,
    PayloadFormat::Tasmota,
    PayloadFormat::Ttn,
    PayloadFormat::LineProtocol,
];
const TS_FORMATS: [TimestampFormat; 6] = [
    TimestampFormat::Auto,
    TimestampFormat::Rfc3339,
    TimestampFormat::UnixS,
    TimestampFormat::UnixMs,
    TimestampFormat::UnixUs,
    TimestampFormat::UnixNs,
];

fuzz_target!(|data: &[u8]| {
    let [kind, flags, rest @ ..] = data else {
        return;
    };
    let (kind, flags) = (usize::from(*kind), *flags);
    let (spec, payload) = match flags & 0x80 {
        0 => (&b"time pm2_5=pm.p25 temperature=temp"[..], rest),
        _ => common::split_at_byte(rest, b'\n'),
    };
    let spec = String::from_utf8_lossy(spec);
    let mut words = spec.split(' ');
    let ts_path = words.next().filter(|_| flags & 1 != 0);
    let fields: BTreeMap<String, String> = words
        .filter(|_| flags & 2 != 0)
        .filter_map(|w| w.split_once('='))
        .map(|(q, p)| (q.to_string(), p.to_string()))
        .collect();
    let mapper = Mapper {
        format: FORMATS[kind % FORMATS.len()],
        quantity: (flags & 0x40 != 0).then(|| "value".to_string()),
        fields,
        timestamp_path: ts_path.map(str::to_string),
        timestamp_format: TS_FORMATS[(kind / FORMATS.len()) % TS_FORMATS.len()],
        ttn: TtnOptions {
            radio: flags & 4 != 0,
            application_tag: flags & 8 != 0,
            simulated: flags & 16 != 0,
        },
        local_tz: (flags & 32 != 0)
            .then(|| jiff::tz::TimeZone::fixed(jiff::tz::Offset::constant(1))),
    };
    let topic_quantity = (kind & 0x80 != 0).then_some("pm10");
    let mut out = Vec::new();
    let _ = mapper.map(payload, topic_quantity, &mut out);
});
