//! Test support shared by the decoder tests, and the cross-decoder properties: no input
//! panics, every `Frame`/`Skip` makes progress, the pending buffer stays bounded, and the
//! frames and errors found do not depend on how the stream was split into reads.

use proptest::prelude::*;

use super::profile::{builtin_profiles, SensorProfile};
use super::*;

/// Bytes from a hex string such as `"AA C0 D4"`.
pub(crate) fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

/// What a simulated serial task saw.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub frames: Vec<Values>,
    pub errors: Vec<DecodeError>,
    /// Bytes dropped without an error.
    pub silent_skipped: usize,
    /// Largest buffer the decoder answered `Incomplete` to.
    pub max_pending: usize,
    /// Bytes still buffered at the end.
    pub leftover: usize,
}

/// Feeds `stream` in reads of `chunk` bytes, like the serial task: append, decode until
/// `Incomplete`, drain what was consumed. Asserts that every step makes progress.
pub(crate) fn run_stream(
    decode: impl FnMut(&[u8]) -> Step,
    stream: &[u8],
    chunk: usize,
) -> Outcome {
    let sizes = std::iter::repeat(chunk.max(1));
    run_chunks(decode, stream, sizes)
}

/// [`run_stream`] with a read size per read (cycled).
pub(crate) fn run_chunks(
    mut decode: impl FnMut(&[u8]) -> Step,
    stream: &[u8],
    sizes: impl Iterator<Item = usize>,
) -> Outcome {
    let mut out = Outcome::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut rest = stream;
    let mut sizes = sizes.map(|s| s.max(1));
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(1).min(rest.len());
        let (read, tail) = rest.split_at(n);
        rest = tail;
        buf.extend_from_slice(read);
        loop {
            let consumed = match decode(&buf) {
                Step::Incomplete => {
                    out.max_pending = out.max_pending.max(buf.len());
                    break;
                }
                Step::Frame { values, consumed } => {
                    out.frames.push(values);
                    consumed
                }
                Step::Skip { consumed, error } => {
                    match error {
                        Some(e) => out.errors.push(e),
                        None => out.silent_skipped += consumed,
                    }
                    consumed
                }
            };
            assert!(
                consumed > 0 && consumed <= buf.len(),
                "consumed {consumed} of {}",
                buf.len()
            );
            buf.drain(..consumed);
        }
    }
    out.leftover = buf.len();
    out
}

fn builtin_decoders() -> Vec<(&'static str, Decoder)> {
    builtin_profiles()
        .into_iter()
        .map(|(model, text)| {
            let profile = SensorProfile::parse(text).unwrap();
            (model, Decoder::build(&profile).unwrap())
        })
        .collect()
}

/// Bytes that open or shape frames of some protocol, mixed with arbitrary ones, so random
/// input reaches past the header checks.
fn stream_strategy() -> impl Strategy<Value = Vec<u8>> {
    let special = prop::sample::select(vec![
        0x42u8, 0x4D, 0x00, 0x1C, 0x04, 0x7E, 0x7D, 0x5E, 0x03, 0x28, 0xAA, 0xC0, 0xC5, 0xAB, 0xFF,
        0x86, b'\n', b'\r', b'=', b',', b'*', b'$', b'{', b'}', b'1', b'i', b'n',
    ]);
    let byte = prop_oneof![any::<u8>(), special];
    prop::collection::vec(byte, 0..1500)
}

#[test]
fn values_is_a_bounded_list() {
    let mut v = Values::new();
    assert!(v.is_empty());
    for i in 0..MAX_VALUES {
        assert!(v.push(Value {
            slot: i as u8,
            value: i as f64
        }));
    }
    assert!(!v.push(Value {
        slot: 99,
        value: 1.0
    }));
    assert_eq!(v.len(), MAX_VALUES);
    assert_eq!(v.get(3), Some(3.0));
    assert_eq!(v.get(99), None);
    assert_eq!((&v).into_iter().count(), MAX_VALUES);
}

#[test]
fn seek_skips_to_a_header_even_a_cut_one() {
    assert_eq!(seek(&[], &[1, 2]), Some(Step::Incomplete));
    assert_eq!(seek(&[1, 2, 3], &[1, 2]), None);
    assert_eq!(seek(&[9, 1, 9, 1, 2], &[1, 2]), Some(skip(3, None)));
    assert_eq!(seek(&[9, 9, 1], &[1, 2]), Some(skip(2, None)));
    assert_eq!(seek(&[9, 9], &[1, 2]), Some(skip(2, None)));
}

#[test]
fn decoder_dispatch_reports_commands_and_quantities() {
    for (model, d) in builtin_decoders() {
        assert!(!d.quantities().is_empty(), "{model}");
        let polled = !matches!(d, Decoder::Line(_));
        assert_eq!(d.poll_command().is_some(), polled, "{model}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_any_split_never_panic_and_always_progress(
        stream in stream_strategy(),
        sizes in prop::collection::vec(1usize..80, 1..20),
    ) {
        for (model, mut d) in builtin_decoders() {
            let out = run_chunks(|b| d.decode(b), &stream, sizes.iter().copied().cycle());
            prop_assert!(out.max_pending <= sps30::MAX_FRAME, "{}: {}", model, out.max_pending);
        }
    }

    #[test]
    fn frames_and_errors_do_not_depend_on_the_split(
        stream in stream_strategy(),
        sizes in prop::collection::vec(1usize..40, 1..20),
    ) {
        for ((model, mut whole), (_, mut split)) in builtin_decoders().into_iter().zip(builtin_decoders()) {
            let a = run_stream(|b| whole.decode(b), &stream, stream.len());
            let b = run_chunks(|b| split.decode(b), &stream, sizes.iter().copied().cycle());
            // Only compare what both fully decided: a tail still pending in `a` is pending in `b`.
            prop_assert_eq!(&a.frames, &b.frames, "{}", model);
            prop_assert_eq!(&a.errors, &b.errors, "{}", model);
        }
    }

    #[test]
    fn valid_frames_survive_garbage_between_them(
        raw in prop::collection::vec(0u16..9999, 1..6),
        garbage in prop::collection::vec(any::<u8>(), 0..40),
        chunk in 1usize..50,
    ) {
        use super::profile::{PmsMode, Sds011Mode, Sps30Output};
        // (decoder with every native quantity, frame maker, header byte, slot-0 scale)
        type Case = (Decoder, fn(u16) -> Vec<u8>, u8, f64);
        let cases: Vec<Case> = vec![
            (
                Decoder::Sds011(sds011::Sds011::new(Sds011Mode::Query, Selection::all(&sds011::QUANTITIES))),
                |v| sds011::tests::frame(v, v),
                0xAA,
                0.1,
            ),
            (
                Decoder::Pms(pms::Pms::new(PmsMode::Passive, Selection::all(&pms::QUANTITIES))),
                |v| pms::tests::frame([v; 12]),
                0x42,
                1.0,
            ),
            (
                Decoder::Mhz19(mhz19::Mhz19::new(None, None, Selection::all(&mhz19::QUANTITIES))),
                |v| mhz19::tests::frame(v, 20),
                0xFF,
                1.0,
            ),
            (
                Decoder::Sps30(sps30::Sps30::new(Sps30Output::Float, Selection::all(&sps30::QUANTITIES))),
                |v| sps30::tests::float_answer([f32::from(v); 10]),
                0x7E,
                1.0,
            ),
        ];
        for (mut d, make, header, scale) in cases {
            let noise: Vec<u8> = garbage.iter().copied().filter(|b| *b != header).collect();
            let mut stream = noise.clone();
            for v in &raw {
                stream.extend(make(*v));
                stream.extend(&noise);
            }
            let out = run_stream(|b| d.decode(b), &stream, chunk);
            prop_assert_eq!(out.frames.len(), raw.len(), "header {:#04x}", header);
            prop_assert!(out.errors.is_empty(), "{:?}", out.errors);
            for (values, v) in out.frames.iter().zip(&raw) {
                let got = values.get(0).unwrap_or(f64::NAN);
                prop_assert!((got - f64::from(*v) * scale).abs() < 1e-9, "{} vs {}", got, v);
            }
        }
    }
}
