//! The mhz19b decoder over arbitrary serial bytes, split into reads of 1..=64 bytes.
#![no_main]

use citysense::decode::sps30::MAX_FRAME;
use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut decoder = common::builtin_decoder("mhz19b");
    common::drive(&mut decoder, rest, usize::from(first % 64) + 1, MAX_FRAME);
});
