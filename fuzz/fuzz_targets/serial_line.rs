//! The generic line decoder (kv, csv, json; NMEA checksum or none) over arbitrary serial
//! bytes. The first byte picks the options, the second the read size; the built-in counter
//! profiles are among the choices.
#![no_main]

use std::collections::BTreeMap;

use citysense::decode::line::LineDecoder;
use citysense::decode::profile::{LineChecksum, LineFormat, LineOptions};
use citysense::decode::Decoder;
use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;

const PROFILES: [&str; 3] = ["counter-kv", "counter-csv", "counter-json"];

fuzz_target!(|data: &[u8]| {
    let [pick, chunk, rest @ ..] = data else {
        return;
    };
    let chunk = usize::from(chunk % 64) + 1;
    let (mut decoder, max_line_len) = match usize::from(*pick) {
        p if p < PROFILES.len() => (common::builtin_decoder(PROFILES[p]), 512),
        p => {
            let options = options(p);
            let max = options.max_line_len;
            let wanted = ["in".to_string(), "out".to_string(), "t".to_string()];
            match LineDecoder::new(&options, &wanted) {
                Ok(d) => (Decoder::Line(d), max),
                Err(_) => return,
            }
        }
    };
    common::drive(&mut decoder, rest, chunk, max_line_len + 1);
});

/// Line options from the bits of `p`: format, checksum, separator, a short line limit.
fn options(p: usize) -> LineOptions {
    let format = [LineFormat::Kv, LineFormat::Csv, LineFormat::Json][p % 3];
    let checksum = [LineChecksum::None, LineChecksum::Nmea][(p / 3) % 2];
    let separator = [None, Some(","), Some(";"), Some("é")][(p / 6) % 4].map(str::to_string);
    let max_line_len = [512, 16, 1][(p / 24) % 3];
    let mut mapping = BTreeMap::new();
    if format == LineFormat::Json {
        mapping.insert("counts.in".to_string(), "in".to_string());
        mapping.insert("list.1".to_string(), "out".to_string());
    } else if p % 2 == 0 {
        mapping.insert("IN".to_string(), "in".to_string());
    }
    let columns = match format {
        LineFormat::Csv => vec![String::new(), "in".into(), "out".into()],
        _ => Vec::new(),
    };
    LineOptions {
        format,
        separator,
        columns,
        mapping,
        checksum,
        max_line_len,
    }
}
