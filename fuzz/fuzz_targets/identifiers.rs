//! Identifier extraction of privacy (Wi-Fi/BLE scanner) subscriptions: the JSON walk along
//! the configured path and the normalisation of each identifier.
//!
//! Input: `path \n payload`.
#![no_main]

use citysense::privacy::identify::{for_each, normalise, MAX_LEN, MAX_PER_MESSAGE};
use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (path, payload) = common::split_at_byte(data, b'\n');
    let path = String::from_utf8_lossy(path);
    if let Ok(text) = std::str::from_utf8(payload) {
        let mut buf = [0u8; MAX_LEN];
        if let Some(n) = normalise(text, &mut buf) {
            assert!((1..=MAX_LEN).contains(&n));
        }
    }
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return;
    };
    let mut seen = 0usize;
    let found = for_each(&doc, &path, &mut |id| {
        assert!((1..=MAX_LEN).contains(&id.len()));
        seen += 1;
    });
    if let Ok(n) = found {
        assert_eq!(n, seen);
        assert!(n <= MAX_PER_MESSAGE);
    }
});
