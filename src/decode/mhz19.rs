//! Winsen MH-Z19B (NDIR CO2; 9600 baud 8N1, polled): answer decoder and command builder.
//!
//! Source: Winsen "Intelligent Infrared CO2 Module (Model: MH-Z19B) User's Manual",
//! "Communication protocol" (commands 0x86, 0x87, 0x79, 0x99 and the checksum section).
//! - Read: `FF 01 86 00 00 00 00 00 79`; answer `FF 86 HH LL b4 b5 b6 b7 CS`,
//!   CO2 = HH*256+LL ppm (manual example `FF 86 02 20 00 00 00 00 58` = 544 ppm).
//! - Checksum of bytes 1..=7: (0xFF - low byte of their sum) + 1, modulo 256, i.e. the
//!   two's-complement negation of the low byte.
//! - Bytes 4-7 are undocumented. Open-source drivers read byte 4 as temperature + 40 degC;
//!   it is reported as the diagnostic `temperature` quantity, not a calibrated reading.
//! - Only `FF 86` answers are frames; any other byte is resync noise (the 0x79 and 0x87
//!   commands send no answer; other answers are skipped silently).

use super::{seek, skip, DecodeError, Selection, Step, Values};

/// Quantities this protocol decodes, in native order.
pub const QUANTITIES: [&str; 2] = ["co2", "temperature"];

const START: u8 = 0xFF;
const SENSOR: u8 = 0x01;
const CMD_READ: u8 = 0x86;
const CMD_ZERO: u8 = 0x87;
const CMD_ABC: u8 = 0x79;
const CMD_RANGE: u8 = 0x99;
const FRAME_LEN: usize = 9;
/// Offset of the temperature byte (degC + 40).
const TEMPERATURE_OFFSET: f64 = 40.0;

/// MH-Z19B decoder state.
#[derive(Clone, Debug)]
pub struct Mhz19 {
    abc: Option<bool>,
    range_ppm: Option<u32>,
    selection: Selection,
}

impl Mhz19 {
    pub fn new(abc: Option<bool>, range_ppm: Option<u32>, selection: Selection) -> Self {
        Mhz19 {
            abc,
            range_ppm,
            selection,
        }
    }

    pub fn quantities(&self) -> &[String] {
        self.selection.names()
    }

    /// Decodes one answer at the front of `buf` (see [`super::Step`]).
    pub fn decode(&mut self, buf: &[u8]) -> Step {
        if let Some(step) = seek(buf, &[START, CMD_READ]) {
            return step;
        }
        let Some(&[_, cmd, hi, lo, b4, b5, b6, b7, cs]) = buf.get(..FRAME_LEN) else {
            return Step::Incomplete;
        };
        let sum = checksum(&[cmd, hi, lo, b4, b5, b6, b7]);
        if sum != cs {
            let error = DecodeError::BadChecksum {
                expected: u16::from(cs),
                actual: u16::from(sum),
            };
            return skip(1, Some(error));
        }
        let mut values = Values::new();
        self.selection
            .push(&mut values, 0, f64::from(u16::from_be_bytes([hi, lo])));
        self.selection
            .push(&mut values, 1, f64::from(b4) - TEMPERATURE_OFFSET);
        Step::Frame {
            values,
            consumed: FRAME_LEN,
        }
    }

    /// Range and ABC settings the profile asks for (none of them is answered).
    pub fn init_commands(&self) -> Vec<Vec<u8>> {
        let mut cmds = Vec::new();
        if let Some(ppm) = self.range_ppm {
            cmds.push(set_range(ppm));
        }
        if let Some(on) = self.abc {
            cmds.push(set_abc(on));
        }
        cmds
    }
}

/// Checksum over bytes 1..=7 of a frame.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}

/// A 9-byte command to sensor 1 with bytes 3..=7 set.
pub fn command(cmd: u8, data: [u8; 5]) -> Vec<u8> {
    let mut frame = vec![START, SENSOR, cmd];
    frame.extend_from_slice(&data);
    let cs = checksum(frame.get(1..).unwrap_or(&[]));
    frame.push(cs);
    frame
}

/// Read the CO2 concentration (command 0x86).
pub fn read_co2() -> Vec<u8> {
    command(CMD_READ, [0; 5])
}

/// Automatic baseline correction on or off (command 0x79).
pub fn set_abc(on: bool) -> Vec<u8> {
    command(CMD_ABC, [if on { 0xA0 } else { 0x00 }, 0, 0, 0, 0])
}

/// Zero-point calibration (command 0x87): only after 20+ minutes in 400 ppm air.
pub fn calibrate_zero() -> Vec<u8> {
    command(CMD_ZERO, [0; 5])
}

/// Detection range in ppm (command 0x99, range as 32-bit BE in bytes 4-7).
pub fn set_range(ppm: u32) -> Vec<u8> {
    let [a, b, c, d] = ppm.to_be_bytes();
    command(CMD_RANGE, [0, a, b, c, d])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::decode::tests::{hex, run_stream};

    fn decoder() -> Mhz19 {
        Mhz19::new(None, None, Selection::all(&QUANTITIES))
    }

    /// A valid read answer.
    pub(crate) fn frame(ppm: u16, temp_c: u8) -> Vec<u8> {
        let [hi, lo] = ppm.to_be_bytes();
        let body = [CMD_READ, hi, lo, temp_c + 40, 0, 0, 0];
        let mut f = vec![START];
        f.extend_from_slice(&body);
        f.push(
            body.iter()
                .fold(0u8, |s, b| s.wrapping_add(*b))
                .wrapping_neg(),
        );
        f
    }

    #[test]
    fn decodes_the_manual_example() {
        let Step::Frame { values, consumed } = decoder().decode(&hex("FF 86 02 20 00 00 00 00 58"))
        else {
            panic!("no frame");
        };
        assert_eq!(consumed, 9);
        assert_eq!(values.get(0), Some(544.0));
        assert_eq!(values.get(1), Some(-40.0));
    }

    #[test]
    fn decodes_temperature_byte() {
        let Step::Frame { values, .. } = decoder().decode(&frame(1234, 23)) else {
            panic!("no frame");
        };
        assert_eq!(values.get(0), Some(1234.0));
        assert_eq!(values.get(1), Some(23.0));
    }

    #[test]
    fn checksum_with_zero_low_byte_of_sum() {
        // Bytes 1..=7 summing to 0x100: checksum must be 0x00, not 0x100.
        assert_eq!(checksum(&[0x86, 0x7A, 0, 0, 0, 0, 0]), 0x00);
        let f = hex("FF 86 00 7A 00 00 00 00 00");
        assert!(matches!(decoder().decode(&f), Step::Frame { .. }));
    }

    #[test]
    fn garbage_split_and_bad_checksum() {
        let mut bad = frame(800, 20);
        bad[3] ^= 1;
        let mut stream = hex("FF FF 01 86 99");
        stream.extend(frame(600, 20));
        stream.extend(bad);
        stream.extend(hex("FF 99 01 00 00 00 00 00 66"));
        stream.extend(frame(700, 21));
        let out = run_stream(|b| decoder().decode(b), &stream, 1);
        let co2: Vec<_> = out.frames.iter().map(|v| v.get(0)).collect();
        assert_eq!(co2, vec![Some(600.0), Some(700.0)]);
        assert!(matches!(
            out.errors.as_slice(),
            [DecodeError::BadChecksum { .. }]
        ));
    }

    #[test]
    fn split_frame_is_incomplete_until_whole() {
        let f = frame(410, 19);
        for cut in 0..f.len() {
            assert_eq!(decoder().decode(&f[..cut]), Step::Incomplete, "cut {cut}");
        }
    }

    #[test]
    fn commands_match_the_documented_bytes() {
        assert_eq!(read_co2(), hex("FF 01 86 00 00 00 00 00 79"));
        assert_eq!(set_abc(true), hex("FF 01 79 A0 00 00 00 00 E6"));
        assert_eq!(set_abc(false), hex("FF 01 79 00 00 00 00 00 86"));
        assert_eq!(calibrate_zero(), hex("FF 01 87 00 00 00 00 00 78"));
        assert_eq!(set_range(2000), hex("FF 01 99 00 00 00 07 D0 8F"));
        let d = Mhz19::new(Some(false), Some(2000), Selection::all(&QUANTITIES));
        assert_eq!(
            d.init_commands(),
            vec![
                hex("FF 01 99 00 00 00 07 D0 8F"),
                hex("FF 01 79 00 00 00 00 00 86")
            ]
        );
        assert!(decoder().init_commands().is_empty());
    }
}
