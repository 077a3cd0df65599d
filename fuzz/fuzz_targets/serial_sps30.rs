//! The sps30 decoder over arbitrary serial bytes, split into reads of 1..=64 bytes.
#![no_main]

use citysense::decode::sps30::MAX_FRAME;
use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut decoder = common::builtin_decoder("sps30");
    common::drive(&mut decoder, rest, usize::from(first % 64) + 1, MAX_FRAME);
});
