//! The metrics endpoint's request-head reader and router over arbitrary bytes, delivered in
//! reads whose sizes the first byte picks.
#![no_main]

use citysense::service::http::{HeadState, RequestHead, MAX_HEAD_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut head = RequestHead::new();
    let mut given = 0;
    for read in rest.chunks(usize::from(first % 128) + 1) {
        match head.state() {
            HeadState::Incomplete => {}
            _ => break,
        }
        let space = head.space();
        assert!(!space.is_empty());
        let n = read.len().min(space.len());
        space[..n].copy_from_slice(&read[..n]);
        head.filled(n);
        given += n;
    }
    let state = head.state();
    if state == HeadState::TooLarge {
        assert_eq!(given, MAX_HEAD_BYTES);
    }
});
