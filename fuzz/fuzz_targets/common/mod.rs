//! Helpers shared by the fuzz targets: the serial read loop and input splitting.
#![allow(dead_code)]

use std::sync::{Mutex, OnceLock};

use citysense::decode::{profile::builtin_profile, Decoder, Step};

/// The decoder of a built-in sensor profile, parsed once per process (the profile TOML
/// would otherwise dominate every run).
pub fn builtin_decoder(model: &str) -> Decoder {
    static BUILT: OnceLock<Mutex<Vec<(String, Decoder)>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().expect("lock");
    if let Some((_, d)) = built.iter().find(|(m, _)| m == model) {
        return d.clone();
    }
    let profile = builtin_profile(model)
        .expect("built-in profile exists")
        .expect("built-in profile parses");
    let decoder = Decoder::build(&profile).expect("built-in profile builds");
    built.push((model.to_string(), decoder.clone()));
    decoder
}

/// Feeds `data` to `decoder` the way the serial task does (reads of `chunk` bytes appended to
/// one buffer, decoded until `Incomplete`) and checks the decoder contract of
/// `citysense::decode`: `Frame`/`Skip` consume 1..=len bytes, `Incomplete` only on a buffer no
/// longer than `max_incomplete`, every value's slot names a quantity.
pub fn drive(decoder: &mut Decoder, data: &[u8], chunk: usize, max_incomplete: usize) {
    let slots = decoder.quantities().len();
    let mut buf: Vec<u8> = Vec::new();
    for read in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(read);
        while !buf.is_empty() {
            let consumed = match decoder.decode(&buf) {
                Step::Incomplete => {
                    assert!(
                        buf.len() <= max_incomplete,
                        "Incomplete on {} bytes (max {max_incomplete})",
                        buf.len()
                    );
                    break;
                }
                Step::Frame { values, consumed } => {
                    for v in &values {
                        assert!(usize::from(v.slot) < slots, "slot {} of {slots}", v.slot);
                    }
                    consumed
                }
                Step::Skip { consumed, .. } => consumed,
            };
            assert!(
                (1..=buf.len()).contains(&consumed),
                "consumed {consumed} of {}",
                buf.len()
            );
            buf.drain(..consumed);
        }
    }
}

/// Splits `data` at the first `sep`: (before, after); all of it is `before` when absent.
pub fn split_at_byte(data: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == sep) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}
