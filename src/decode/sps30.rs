//! Sensirion SPS30 over UART (115200 baud 8N1, SHDLC): answer decoder and command builder.
//!
//! Source: Sensirion "Datasheet SPS30 Particulate Matter Sensor for Air Quality Monitoring
//! and Control" (version 1.0, March 2020), section 5 "Operation and Communication through the
//! UART Interface" (SHDLC frame layer, byte stuffing, checksum, state byte, commands 0x00,
//! 0x01, 0x03, 0x10, 0x11).
//! - Frame: `7E ADR CMD [STATE] LEN DATA.. CHK 7E`; host frames (MOSI) have no STATE, sensor
//!   answers (MISO) have it. CHK = bitwise NOT of the low byte of the sum of the bytes
//!   between the delimiters, before stuffing.
//! - Byte stuffing between the delimiters: `7E`->`7D 5E`, `7D`->`7D 5D`, `11`->`7D 31`,
//!   `13`->`7D 33`.
//! - STATE: bit 7 = device error flag, bits 0-6 = execution error. Any non-zero STATE is
//!   reported as [`DecodeError::DeviceError`] and the frame's data is not used.
//! - Read measured values (0x03) answers with 40 bytes (10 BE IEEE-754 floats: mass PM1.0,
//!   PM2.5, PM4.0, PM10 in ug/m3; number PM0.5, PM1.0, PM2.5, PM4.0, PM10 in #/cm3; typical
//!   particle size in um) or 20 bytes (the same as BE uint16, size in nm, firmware >= 2.0),
//!   depending on the format chosen at start. Both are decoded (by length); the size is always
//!   reported in um. LEN 0 means "no new data yet" and is skipped silently, as are the
//!   answers to other commands.

use super::profile::Sps30Output;
use super::{seek, skip, DecodeError, Selection, Step, Values};

/// Quantities this protocol decodes, in native (wire) order.
pub const QUANTITIES: [&str; 10] = [
    "pm1_0",
    "pm2_5",
    "pm4_0",
    "pm10",
    "nc0_5",
    "nc1_0",
    "nc2_5",
    "nc4_0",
    "nc10",
    "typical_particle_size",
];

const DELIMITER: u8 = 0x7E;
const ESCAPE: u8 = 0x7D;
const ADDRESS: u8 = 0x00;
/// ADR CMD STATE LEN .. CHK: the shortest answer has no data.
const MIN_ANSWER: usize = 5;
/// Longest unstuffed answer: header (4) + 255 data bytes + CHK.
const MAX_ANSWER: usize = 4 + 255 + 1;
/// Longest frame on the wire: every byte stuffed, plus both delimiters.
pub const MAX_FRAME: usize = 2 * MAX_ANSWER + 2;

const CMD_START: u8 = 0x00;
const CMD_STOP: u8 = 0x01;
const CMD_READ: u8 = 0x03;
const CMD_SLEEP: u8 = 0x10;
const CMD_WAKE: u8 = 0x11;

/// Data lengths of a read-values answer.
const LEN_FLOAT: usize = 40;
const LEN_UINT16: usize = 20;
const NM_PER_UM: f64 = 1000.0;

/// SPS30 decoder state.
#[derive(Clone, Debug)]
pub struct Sps30 {
    output: Sps30Output,
    selection: Selection,
}

impl Sps30 {
    pub fn new(output: Sps30Output, selection: Selection) -> Self {
        Sps30 { output, selection }
    }

    pub fn quantities(&self) -> &[String] {
        self.selection.names()
    }

    /// Decodes one frame at the front of `buf` (see [`super::Step`]).
    pub fn decode(&mut self, buf: &[u8]) -> Step {
        if let Some(step) = seek(buf, &[DELIMITER]) {
            return step;
        }
        // Only look as far as the longest frame reaches, so the outcome does not depend on
        // how the bytes were split into reads.
        let rest = buf.get(1..buf.len().min(MAX_FRAME)).unwrap_or(&[]);
        let Some(end) = rest.iter().position(|b| *b == DELIMITER) else {
            if buf.len() >= MAX_FRAME {
                // No delimiter within a frame's reach: nothing here can be resynced to.
                return skip(MAX_FRAME, Some(DecodeError::TooLong { max: MAX_FRAME }));
            }
            return Step::Incomplete;
        };
        if end == 0 {
            // `7E 7E`: the end of a frame we missed the start of, then a start.
            return skip(1, None);
        }
        let stuffed = rest.get(..end).unwrap_or(&[]);
        // On error keep the closing delimiter: it may open the next frame.
        match self.parse(stuffed) {
            Ok(Some(values)) => Step::Frame {
                values,
                consumed: end + 2,
            },
            Ok(None) => skip(end + 2, None),
            Err(error) => skip(end + 1, Some(error)),
        }
    }

    /// Unstuffs and checks one answer; `Ok(None)` for answers without measurements.
    fn parse(&self, stuffed: &[u8]) -> Result<Option<Values>, DecodeError> {
        let mut raw = [0u8; MAX_ANSWER];
        let n = unstuff(stuffed, &mut raw)?;
        let answer = raw.get(..n).unwrap_or(&[]);
        let Some((&chk, body)) = answer.split_last() else {
            return Err(too_short(n));
        };
        let Some(&[_adr, cmd, state, len]) = body.get(..4) else {
            return Err(too_short(n));
        };
        let sum = body.iter().fold(0u8, |acc, b| acc.wrapping_add(*b));
        if !sum != chk {
            return Err(DecodeError::BadChecksum {
                expected: u16::from(chk),
                actual: u16::from(!sum),
            });
        }
        let data = body.get(4..).unwrap_or(&[]);
        if usize::from(len) != data.len() {
            return Err(DecodeError::BadLength {
                expected: data.len(),
                actual: usize::from(len),
            });
        }
        if state != 0 {
            return Err(DecodeError::DeviceError { state });
        }
        if cmd != CMD_READ || data.is_empty() {
            return Ok(None);
        }
        self.measurements(data).map(Some)
    }

    fn measurements(&self, data: &[u8]) -> Result<Values, DecodeError> {
        let mut values = Values::new();
        match data.len() {
            LEN_FLOAT => {
                for (native, word) in data.chunks_exact(4).enumerate() {
                    if let &[a, b, c, d] = word {
                        let v = f64::from(f32::from_be_bytes([a, b, c, d]));
                        self.selection.push(&mut values, native, v);
                    }
                }
            }
            LEN_UINT16 => {
                for (native, word) in data.chunks_exact(2).enumerate() {
                    if let &[a, b] = word {
                        let mut v = f64::from(u16::from_be_bytes([a, b]));
                        if native == QUANTITIES.len() - 1 {
                            v /= NM_PER_UM;
                        }
                        self.selection.push(&mut values, native, v);
                    }
                }
            }
            other => {
                return Err(DecodeError::BadLength {
                    expected: LEN_FLOAT,
                    actual: other,
                })
            }
        }
        Ok(values)
    }

    /// Start measurement in the profile's output format. A sensor already measuring answers
    /// with an error state (reported once); it keeps its format, which decoding follows.
    pub fn init_commands(&self) -> Vec<Vec<u8>> {
        vec![start_measurement(self.output)]
    }
}

fn too_short(n: usize) -> DecodeError {
    DecodeError::BadLength {
        expected: MIN_ANSWER,
        actual: n,
    }
}

/// Reverses byte stuffing into `out`; returns the unstuffed length.
fn unstuff(stuffed: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
    let mut n = 0;
    let mut bytes = stuffed.iter();
    while let Some(&b) = bytes.next() {
        let byte = if b == ESCAPE {
            match bytes.next() {
                Some(0x5E) => 0x7E,
                Some(0x5D) => 0x7D,
                Some(0x31) => 0x11,
                Some(0x33) => 0x13,
                Some(&other) => return Err(DecodeError::BadEscape { byte: other }),
                None => return Err(DecodeError::BadEscape { byte: DELIMITER }),
            }
        } else {
            b
        };
        let slot = out
            .get_mut(n)
            .ok_or(DecodeError::TooLong { max: MAX_FRAME })?;
        *slot = byte;
        n += 1;
    }
    Ok(n)
}

/// Appends `b` to `out`, stuffed if it is one of the four reserved bytes.
fn push_stuffed(out: &mut Vec<u8>, b: u8) {
    match b {
        0x7E | 0x7D | 0x11 | 0x13 => out.extend_from_slice(&[ESCAPE, b ^ 0x20]),
        _ => out.push(b),
    }
}

/// A host (MOSI) frame: `7E ADR CMD LEN DATA CHK 7E`, stuffed. `data` longer than 255
/// bytes is cut (no SPS30 command takes more than a few bytes).
pub fn mosi_frame(cmd: u8, data: &[u8]) -> Vec<u8> {
    let data = data.get(..data.len().min(255)).unwrap_or(&[]);
    let len = u8::try_from(data.len()).unwrap_or(u8::MAX);
    let mut body = vec![ADDRESS, cmd, len];
    body.extend_from_slice(data);
    let chk = !body.iter().fold(0u8, |acc, b| acc.wrapping_add(*b));
    body.push(chk);
    let mut frame = vec![DELIMITER];
    for b in body {
        push_stuffed(&mut frame, b);
    }
    frame.push(DELIMITER);
    frame
}

/// Start measurement (0x00) with float (`01 03`) or uint16 (`01 05`) output.
pub fn start_measurement(output: Sps30Output) -> Vec<u8> {
    let format = match output {
        Sps30Output::Float => 0x03,
        Sps30Output::Uint16 => 0x05,
    };
    mosi_frame(CMD_START, &[0x01, format])
}

/// Stop measurement (0x01), back to idle.
pub fn stop_measurement() -> Vec<u8> {
    mosi_frame(CMD_STOP, &[])
}

/// Read measured values (0x03).
pub fn read_values() -> Vec<u8> {
    mosi_frame(CMD_READ, &[])
}

/// Sleep (0x10, from idle, firmware >= 2.0): the UART is off until woken.
pub fn sleep() -> Vec<u8> {
    mosi_frame(CMD_SLEEP, &[])
}

/// Wake-up (0x11): send a single `0xFF` byte first, then this within 100 ms.
pub fn wake_up() -> Vec<u8> {
    mosi_frame(CMD_WAKE, &[])
}

/// Text for a STATE byte: the execution error (bits 0-6) and the device error flag (bit 7).
pub fn describe_state(state: u8) -> &'static str {
    let flag = state & 0x80 != 0;
    match (state & 0x7F, flag) {
        (0x00, true) => "device error flag set (read the device status register)",
        (0x00, false) => "ok",
        (0x01, _) => "wrong data length for this command",
        (0x02, _) => "unknown command",
        (0x03, _) => "no access right for command",
        (0x04, _) => "illegal command parameter or parameter out of range",
        (0x28, _) => "internal function argument out of range",
        (0x43, _) => "command not allowed in current state",
        _ => "unknown execution error",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::decode::tests::{hex, run_stream};

    fn decoder() -> Sps30 {
        Sps30::new(Sps30Output::Float, Selection::all(&QUANTITIES))
    }

    /// A sensor (MISO) answer, checksummed and stuffed.
    pub(crate) fn answer(cmd: u8, state: u8, data: &[u8]) -> Vec<u8> {
        let mut body = vec![ADDRESS, cmd, state, data.len() as u8];
        body.extend_from_slice(data);
        body.push(!body.iter().fold(0u8, |s, b| s.wrapping_add(*b)));
        let mut f = vec![DELIMITER];
        for b in body {
            push_stuffed(&mut f, b);
        }
        f.push(DELIMITER);
        f
    }

    pub(crate) fn float_answer(values: [f32; 10]) -> Vec<u8> {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
        answer(CMD_READ, 0, &data)
    }

    const SAMPLE: [f32; 10] = [1.5, 2.25, 3.0, 4.75, 10.0, 12.5, 13.0, 13.25, 13.5, 0.6];

    #[test]
    fn decodes_float_answer() {
        let f = float_answer(SAMPLE);
        let Step::Frame { values, consumed } = decoder().decode(&f) else {
            panic!("no frame");
        };
        assert_eq!(consumed, f.len());
        let got: Vec<f64> = values.iter().map(|v| v.value).collect();
        let want: Vec<f64> = SAMPLE.iter().map(|v| f64::from(*v)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn decodes_stuffed_answer() {
        // 9.0625 is 0x41110000: its second byte 0x11 must travel stuffed as 7D 31.
        let mut sample = SAMPLE;
        sample[1] = 9.0625;
        sample[4] = f32::from_bits(0x427E_7D13);
        let f = float_answer(sample);
        assert!(f.windows(2).any(|w| w == [0x7D, 0x31]));
        assert!(f.windows(2).any(|w| w == [0x7D, 0x5E]));
        assert!(!f[1..f.len() - 1].contains(&DELIMITER));
        let Step::Frame { values, .. } = decoder().decode(&f) else {
            panic!("no frame");
        };
        assert_eq!(values.get(1), Some(9.0625));
        assert_eq!(values.get(4), Some(f64::from(sample[4])));
    }

    #[test]
    fn decodes_uint16_answer_with_size_in_um() {
        let words: [u16; 10] = [3, 5, 6, 7, 20, 25, 26, 27, 28, 550];
        let data: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        let Step::Frame { values, .. } = decoder().decode(&answer(CMD_READ, 0, &data)) else {
            panic!("no frame");
        };
        assert_eq!(values.get(1), Some(5.0));
        assert_eq!(values.get(8), Some(28.0));
        assert_eq!(values.get(9), Some(0.55));
    }

    #[test]
    fn no_new_data_and_acks_are_silent() {
        assert_eq!(
            decoder().decode(&hex("7E 00 03 00 00 FC 7E")),
            Step::Skip {
                consumed: 7,
                error: None
            }
        );
        // Start-measurement acknowledgement.
        assert_eq!(
            decoder().decode(&hex("7E 00 00 00 00 FF 7E")),
            Step::Skip {
                consumed: 7,
                error: None
            }
        );
    }

    #[test]
    fn state_error_is_a_device_error() {
        let f = answer(CMD_START, 0x43, &[]);
        let Step::Skip { error, .. } = decoder().decode(&f) else {
            panic!("not skipped");
        };
        assert_eq!(error, Some(DecodeError::DeviceError { state: 0x43 }));
        let text = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("not allowed"), "{text}");
    }

    #[test]
    fn bad_checksum_length_and_escape() {
        let mut bad = float_answer(SAMPLE);
        bad[8] ^= 0x01;
        let Step::Skip { consumed, error } = decoder().decode(&bad) else {
            panic!("not skipped");
        };
        assert!(matches!(error, Some(DecodeError::BadChecksum { .. })));
        // The closing delimiter stays: it may open the next frame.
        assert_eq!(consumed, bad.len() - 1);

        // LEN says 2 but the frame carries 1 data byte (checksum valid).
        let mut body = vec![0x00, 0x03, 0x00, 0x02, 0x05];
        body.push(!body.iter().fold(0u8, |s, b| s.wrapping_add(*b)));
        let mut f = vec![0x7E];
        f.extend(body);
        f.push(0x7E);
        assert!(matches!(
            decoder().decode(&f),
            Step::Skip {
                error: Some(DecodeError::BadLength {
                    expected: 1,
                    actual: 2
                }),
                ..
            }
        ));
        assert!(matches!(
            decoder().decode(&hex("7E 00 03 7D 22 00 FC 7E")),
            Step::Skip {
                error: Some(DecodeError::BadEscape { byte: 0x22 }),
                ..
            }
        ));
    }

    #[test]
    fn garbage_missed_starts_and_byte_at_a_time() {
        let mut stream = hex("12 34 00 7E");
        stream.extend(float_answer(SAMPLE));
        stream.extend(hex("7E 7E"));
        stream.extend(answer(CMD_READ, 0, &[]));
        stream.extend(hex("55"));
        let mut second = SAMPLE;
        second[0] = 99.0;
        stream.extend(float_answer(second));
        for chunk in [1, 2, 7, 100] {
            let out = run_stream(|b| decoder().decode(b), &stream, chunk);
            let pm1: Vec<_> = out.frames.iter().map(|v| v.get(0)).collect();
            assert_eq!(pm1, vec![Some(1.5), Some(99.0)], "chunk {chunk}");
            assert!(out.errors.is_empty(), "{:?}", out.errors);
        }
    }

    #[test]
    fn endless_frame_without_delimiter_is_dropped() {
        let mut buf = vec![0x7E];
        buf.extend(std::iter::repeat_n(0x01, MAX_FRAME));
        assert_eq!(
            decoder().decode(&buf),
            Step::Skip {
                consumed: MAX_FRAME,
                error: Some(DecodeError::TooLong { max: MAX_FRAME })
            }
        );
        assert_eq!(decoder().decode(&buf[..MAX_FRAME - 1]), Step::Incomplete);
    }

    #[test]
    fn commands_match_the_documented_bytes() {
        assert_eq!(
            start_measurement(Sps30Output::Float),
            hex("7E 00 00 02 01 03 F9 7E")
        );
        assert_eq!(
            start_measurement(Sps30Output::Uint16),
            hex("7E 00 00 02 01 05 F7 7E")
        );
        assert_eq!(read_values(), hex("7E 00 03 00 FC 7E"));
        assert_eq!(stop_measurement(), hex("7E 00 01 00 FE 7E"));
        assert_eq!(sleep(), hex("7E 00 10 00 EF 7E"));
        assert_eq!(wake_up(), hex("7E 00 7D 31 00 EE 7E"));
        assert_eq!(
            decoder().init_commands(),
            vec![hex("7E 00 00 02 01 03 F9 7E")]
        );
    }
}
