//! Plantower PMS5003 / PMS7003 / PMSA003 (PM, laser; 9600 baud 8N1): frame decoder and
//! command builder.
//!
//! Source: Plantower "Digital universal particle concentration sensor PMS5003 series data
//! manual" (2016) and the PMS7003 data manual: their appendices on the active- and
//! passive-mode transport protocol.
//! - Frame: `42 4D`, frame length (16-bit BE, counting data and check code), data words
//!   (16-bit BE), then the check code: 16-bit sum of every byte before it, start bytes
//!   included. A data frame has length 28: PM1.0, PM2.5, PM10 "CF=1" (factory use), then
//!   PM1.0, PM2.5, PM10 "atmospheric environment" (ug/m3), particle counts per 0.1 L above
//!   0.3, 0.5, 1.0, 2.5, 5.0 and 10 um, then a reserved word (real units send version and
//!   error code, e.g. `97 00`; it is not checked).
//! - Commands: `42 4D CMD DH DL CSH CSL`, check code = sum of the first five bytes. Mode change
//!   and sleep are acknowledged with an 8-byte frame of length 4 (`42 4D 00 04 CMD DATA CS`),
//!   which the decoder checks and drops silently; the length field decides the frame size.

use super::profile::PmsMode;
use super::{seek, skip, DecodeError, Selection, Step, Values};

/// Quantities this protocol decodes, in native (wire) order.
pub const QUANTITIES: [&str; 12] = [
    "pm1_0_cf1",
    "pm2_5_cf1",
    "pm10_cf1",
    "pm1_0",
    "pm2_5",
    "pm10",
    "pc0_3",
    "pc0_5",
    "pc1_0",
    "pc2_5",
    "pc5_0",
    "pc10",
];

const HEADER: [u8; 2] = [0x42, 0x4D];
/// Length field of a data frame (13 words + check code).
const LEN_DATA: usize = 28;
/// Length field of a command acknowledgement.
const LEN_ACK: usize = 4;

const CMD_MODE: u8 = 0xE1;
const CMD_READ: u8 = 0xE2;
const CMD_SLEEP: u8 = 0xE4;

/// PMS decoder state.
#[derive(Clone, Debug)]
pub struct Pms {
    mode: PmsMode,
    selection: Selection,
}

impl Pms {
    pub fn new(mode: PmsMode, selection: Selection) -> Self {
        Pms { mode, selection }
    }

    pub fn quantities(&self) -> &[String] {
        self.selection.names()
    }

    /// Decodes one frame at the front of `buf` (see [`super::Step`]).
    pub fn decode(&mut self, buf: &[u8]) -> Step {
        if let Some(step) = seek(buf, &HEADER) {
            return step;
        }
        let Some(&[_, _, len_hi, len_lo]) = buf.get(..4) else {
            return Step::Incomplete;
        };
        let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
        if len != LEN_DATA && len != LEN_ACK {
            // Do not wait for a length we do not know: it may be a false header.
            let error = DecodeError::BadLength {
                expected: LEN_DATA,
                actual: len,
            };
            return skip(1, Some(error));
        }
        let total = 4 + len;
        let Some(frame) = buf.get(..total) else {
            return Step::Incomplete;
        };
        let (body, check) = frame.split_at(total - 2);
        let sum = body
            .iter()
            .fold(0u16, |acc, b| acc.wrapping_add(u16::from(*b)));
        let expected = match check {
            [hi, lo] => u16::from_be_bytes([*hi, *lo]),
            _ => return skip(1, None),
        };
        if sum != expected {
            let error = DecodeError::BadChecksum {
                expected,
                actual: sum,
            };
            return skip(1, Some(error));
        }
        if len == LEN_ACK {
            return skip(total, None);
        }
        let mut values = Values::new();
        let words = body.get(4..).unwrap_or(&[]).chunks_exact(2);
        for (native, word) in words.take(QUANTITIES.len()).enumerate() {
            if let [hi, lo] = word {
                let v = f64::from(u16::from_be_bytes([*hi, *lo]));
                self.selection.push(&mut values, native, v);
            }
        }
        Step::Frame {
            values,
            consumed: total,
        }
    }

    /// Wake the sensor (it may have been left asleep), then set the profile's mode.
    pub fn init_commands(&self) -> Vec<Vec<u8>> {
        vec![set_sleep(false), set_passive(self.mode == PmsMode::Passive)]
    }

    /// The passive-mode read command; `None` in active mode.
    pub fn poll_command(&self) -> Option<Vec<u8>> {
        (self.mode == PmsMode::Passive).then(read_passive)
    }
}

/// A 7-byte command frame.
pub fn command(cmd: u8, data: u16) -> Vec<u8> {
    let [dh, dl] = data.to_be_bytes();
    let mut frame = vec![HEADER[0], HEADER[1], cmd, dh, dl];
    let sum = frame
        .iter()
        .fold(0u16, |acc, b| acc.wrapping_add(u16::from(*b)));
    frame.extend_from_slice(&sum.to_be_bytes());
    frame
}

/// Switch to passive (`true`, answer read commands only) or active (free-running) mode.
pub fn set_passive(passive: bool) -> Vec<u8> {
    command(CMD_MODE, u16::from(!passive))
}

/// Request one data frame in passive mode.
pub fn read_passive() -> Vec<u8> {
    command(CMD_READ, 0)
}

/// Sleep (fan off) or wake; wake is not acknowledged and needs ~30 s before stable readings.
pub fn set_sleep(sleep: bool) -> Vec<u8> {
    command(CMD_SLEEP, u16::from(!sleep))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::decode::tests::{hex, run_stream};

    fn decoder() -> Pms {
        Pms::new(PmsMode::Passive, Selection::all(&QUANTITIES))
    }

    /// A valid 32-byte data frame with the given 12 data words and the `97 00` reserved word.
    pub(crate) fn frame(words: [u16; 12]) -> Vec<u8> {
        let mut f = vec![0x42, 0x4D, 0x00, 0x1C];
        for w in words {
            f.extend_from_slice(&w.to_be_bytes());
        }
        f.extend_from_slice(&[0x97, 0x00]);
        let sum = f.iter().fold(0u16, |s, b| s.wrapping_add(u16::from(*b)));
        f.extend_from_slice(&sum.to_be_bytes());
        f
    }

    fn words(seed: u16) -> [u16; 12] {
        std::array::from_fn(|i| seed.wrapping_mul(7).wrapping_add(i as u16 * 300))
    }

    #[test]
    fn decodes_every_word_in_wire_order() {
        let w = [4, 5, 5, 4, 5, 3, 32256, 57856, 5888, 512, 0, 151];
        let f = frame(w);
        assert_eq!(f.len(), 32);
        let Step::Frame { values, consumed } = decoder().decode(&f) else {
            panic!("no frame");
        };
        assert_eq!(consumed, 32);
        let got: Vec<f64> = values.iter().map(|v| v.value).collect();
        let want: Vec<f64> = w.iter().map(|x| f64::from(*x)).collect();
        assert_eq!(got, want);
        // Slot 4 is pm2_5 (atmospheric), not the CF=1 value.
        assert_eq!(QUANTITIES[4], "pm2_5");
        assert_eq!(values.get(4), Some(5.0));
    }

    #[test]
    fn selection_reports_only_profile_quantities_in_profile_order() {
        let wanted = vec!["pm10".to_string(), "pm2_5".to_string()];
        let sel = Selection::new("pms", &QUANTITIES, &wanted).unwrap();
        let mut d = Pms::new(PmsMode::Passive, sel);
        let Step::Frame { values, .. } = d.decode(&frame(words(9))) else {
            panic!("no frame");
        };
        assert_eq!(values.len(), 2);
        assert_eq!(values.get(0), Some(f64::from(words(9)[5])));
        assert_eq!(values.get(1), Some(f64::from(words(9)[4])));
    }

    #[test]
    fn ack_frames_are_skipped_silently_and_frames_follow() {
        let mut stream = hex("42 4D 00 04 E1 00 01 74");
        stream.extend(frame(words(1)));
        stream.extend(hex("42 4D 00 04 E4 00 01 77"));
        stream.extend(frame(words(2)));
        let out = run_stream(|b| decoder().decode(b), &stream, 1);
        assert_eq!(out.frames.len(), 2);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.silent_skipped, 16);
    }

    #[test]
    fn garbage_before_and_between_frames() {
        let mut stream = hex("4D 42 01 42 42");
        stream.extend(frame(words(3)));
        stream.extend(hex("00 FF 42"));
        stream.extend(frame(words(4)));
        for chunk in [1, 5, 64] {
            let out = run_stream(|b| decoder().decode(b), &stream, chunk);
            assert_eq!(out.frames.len(), 2, "chunk {chunk}");
            assert_eq!(out.frames[1].get(0), Some(f64::from(words(4)[0])));
        }
    }

    #[test]
    fn bad_checksum_and_bad_length_are_reported() {
        let mut bad = frame(words(5));
        bad[10] ^= 0x40;
        assert!(matches!(
            decoder().decode(&bad),
            Step::Skip {
                consumed: 1,
                error: Some(DecodeError::BadChecksum { .. })
            }
        ));
        let mut long = frame(words(5));
        long[3] = 0x20;
        assert_eq!(
            decoder().decode(&long),
            Step::Skip {
                consumed: 1,
                error: Some(DecodeError::BadLength {
                    expected: 28,
                    actual: 32
                })
            }
        );
    }

    #[test]
    fn split_frame_is_incomplete_until_whole() {
        let f = frame(words(6));
        for cut in 0..f.len() {
            assert_eq!(decoder().decode(&f[..cut]), Step::Incomplete, "cut {cut}");
        }
    }

    #[test]
    fn commands_match_the_documented_bytes() {
        assert_eq!(set_passive(true), hex("42 4D E1 00 00 01 70"));
        assert_eq!(set_passive(false), hex("42 4D E1 00 01 01 71"));
        assert_eq!(read_passive(), hex("42 4D E2 00 00 01 71"));
        assert_eq!(set_sleep(true), hex("42 4D E4 00 00 01 73"));
        assert_eq!(set_sleep(false), hex("42 4D E4 00 01 01 74"));
        let d = decoder();
        assert_eq!(d.poll_command(), Some(hex("42 4D E2 00 00 01 71")));
        assert_eq!(d.init_commands().last(), Some(&hex("42 4D E1 00 00 01 70")));
        let active = Pms::new(PmsMode::Active, Selection::all(&QUANTITIES));
        assert_eq!(active.poll_command(), None);
    }
}
