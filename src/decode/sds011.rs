//! Nova Fitness SDS011 (PM2.5/PM10, laser; 9600 baud 8N1): data-frame decoder and command
//! builder.
//!
//! Source: Nova Fitness, "Laser Dust Sensor Control Protocol V1.3" (2015-07-20), and the
//! SDS011 datasheet's data-frame table.
//! - Data frame, 10 bytes: `AA C0 P25L P25H P10L P10H ID1 ID2 CS AB`; PM = (H*256+L)/10 ug/m3;
//!   CS = low byte of the sum of the six data bytes (device id included).
//! - Replies to commands have the same shape with `C5` as command id; they are skipped
//!   silently. Some units end the sleep reply with `FF` instead of `AB`, so `C5` frames accept
//!   either trailer.
//! - Command frame, 19 bytes: `AA B4 CMD B3 .. B14 ID1 ID2 CS AB`, CS = low byte of the sum
//!   of bytes 2..=16; device id `FF FF` addresses any sensor. Settings made with 0x02 persist
//!   across power-off.

use super::profile::Sds011Mode;
use super::{seek, skip, DecodeError, Selection, Step, Values};

/// Quantities this protocol decodes, in native order.
pub const QUANTITIES: [&str; 2] = ["pm2_5", "pm10"];

const HEAD: u8 = 0xAA;
const TAIL: u8 = 0xAB;
/// Trailer some units send on command replies.
const TAIL_QUIRK: u8 = 0xFF;
const ID_DATA: u8 = 0xC0;
const ID_REPLY: u8 = 0xC5;
const ID_COMMAND: u8 = 0xB4;
const FRAME_LEN: usize = 10;

const CMD_REPORTING_MODE: u8 = 0x02;
const CMD_QUERY: u8 = 0x04;
const CMD_SLEEP_WORK: u8 = 0x06;

/// SDS011 decoder state.
#[derive(Clone, Debug)]
pub struct Sds011 {
    mode: Sds011Mode,
    selection: Selection,
}

impl Sds011 {
    pub fn new(mode: Sds011Mode, selection: Selection) -> Self {
        Sds011 { mode, selection }
    }

    pub fn quantities(&self) -> &[String] {
        self.selection.names()
    }

    /// Decodes one frame at the front of `buf` (see [`super::Step`]).
    pub fn decode(&mut self, buf: &[u8]) -> Step {
        if let Some(step) = seek(buf, &[HEAD]) {
            return step;
        }
        // Reject a false header as soon as its second byte is known.
        if let Some(&id) = buf.get(1) {
            if id != ID_DATA && id != ID_REPLY {
                return skip(1, None);
            }
        }
        let Some(&[_, id, d0, d1, d2, d3, d4, d5, cs, tail]) = buf.get(..FRAME_LEN) else {
            return Step::Incomplete;
        };
        let tail_ok = tail == TAIL || (id == ID_REPLY && tail == TAIL_QUIRK);
        if !tail_ok {
            // Most likely a lost byte: resync from the next header candidate.
            let error = DecodeError::BadTrailer {
                expected: TAIL,
                actual: tail,
            };
            return skip(1, Some(error));
        }
        let sum = [d0, d1, d2, d3, d4, d5]
            .iter()
            .fold(0u8, |acc, b| acc.wrapping_add(*b));
        if sum != cs {
            let error = DecodeError::BadChecksum {
                expected: u16::from(cs),
                actual: u16::from(sum),
            };
            return skip(1, Some(error));
        }
        if id == ID_REPLY {
            return skip(FRAME_LEN, None);
        }
        let mut values = Values::new();
        self.selection.push(
            &mut values,
            0,
            f64::from(u16::from_le_bytes([d0, d1])) / 10.0,
        );
        self.selection.push(
            &mut values,
            1,
            f64::from(u16::from_le_bytes([d2, d3])) / 10.0,
        );
        Step::Frame {
            values,
            consumed: FRAME_LEN,
        }
    }

    /// Wake the sensor (a sleeping one ignores every other command), then set the reporting
    /// mode of the profile.
    pub fn init_commands(&self) -> Vec<Vec<u8>> {
        vec![
            set_sleep(false),
            set_reporting_mode(self.mode == Sds011Mode::Query),
        ]
    }

    /// The query command in query mode; `None` in active mode.
    pub fn poll_command(&self) -> Option<Vec<u8>> {
        (self.mode == Sds011Mode::Query).then(query_data)
    }
}

/// A 19-byte command frame to all devices with data bytes 3 and 4 set, the rest zero.
pub fn command(cmd: u8, b3: u8, b4: u8) -> Vec<u8> {
    let mut frame = vec![0u8; 19];
    let body = [HEAD, ID_COMMAND, cmd, b3, b4];
    for (slot, b) in frame.iter_mut().zip(body) {
        *slot = b;
    }
    // Device id FF FF (bytes 15-16), checksum (17), tail (18).
    let sum = frame
        .iter()
        .skip(2)
        .take(13)
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_add(0xFF)
        .wrapping_add(0xFF);
    for (i, b) in [(15, 0xFF), (16, 0xFF), (17, sum), (18, TAIL)] {
        if let Some(slot) = frame.get_mut(i) {
            *slot = b;
        }
    }
    frame
}

/// Command 0x02, set: `query` = true for query mode, false for active reporting.
pub fn set_reporting_mode(query: bool) -> Vec<u8> {
    command(CMD_REPORTING_MODE, 1, u8::from(query))
}

/// Command 0x04: ask for one data frame (query mode).
pub fn query_data() -> Vec<u8> {
    command(CMD_QUERY, 0, 0)
}

/// Command 0x06, set: sleep (laser and fan off) or work.
pub fn set_sleep(sleep: bool) -> Vec<u8> {
    command(CMD_SLEEP_WORK, 1, u8::from(!sleep))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::decode::tests::{hex, run_stream};

    fn decoder() -> Sds011 {
        Sds011::new(Sds011Mode::Query, Selection::all(&QUANTITIES))
    }

    /// A valid data frame for raw values (tenths of ug/m3).
    pub(crate) fn frame(pm25: u16, pm10: u16) -> Vec<u8> {
        let [a, b] = pm25.to_le_bytes();
        let [c, d] = pm10.to_le_bytes();
        let data = [a, b, c, d, 0xA1, 0x60];
        let cs = data.iter().fold(0u8, |s, x| s.wrapping_add(*x));
        let mut f = vec![HEAD, ID_DATA];
        f.extend_from_slice(&data);
        f.extend_from_slice(&[cs, TAIL]);
        f
    }

    #[test]
    fn decodes_the_protocol_document_example() {
        let buf = hex("AA C0 D4 04 3A 0A A1 60 1D AB");
        let Step::Frame { values, consumed } = decoder().decode(&buf) else {
            panic!("no frame");
        };
        assert_eq!(consumed, 10);
        assert_eq!(values.get(0), Some(123.6));
        assert_eq!(values.get(1), Some(261.8));
    }

    #[test]
    fn test_helper_reproduces_the_example() {
        assert_eq!(frame(1236, 2618), hex("AA C0 D4 04 3A 0A A1 60 1D AB"));
    }

    #[test]
    fn byte_at_a_time_with_garbage_between_frames() {
        let mut stream = hex("00 13 AA 37");
        stream.extend(frame(50, 100));
        stream.extend(hex("AA C1 12"));
        stream.extend(frame(51, 101));
        let out = run_stream(|b| decoder().decode(b), &stream, 1);
        let pm: Vec<_> = out.frames.iter().map(|v| v.get(0)).collect();
        assert_eq!(pm, vec![Some(5.0), Some(5.1)]);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
    }

    #[test]
    fn bad_checksum_is_reported_and_next_frame_found() {
        let mut bad = frame(50, 100);
        bad[3] ^= 0x01;
        let mut stream = bad.clone();
        stream.extend(frame(60, 100));
        let mut d = decoder();
        assert!(matches!(
            d.decode(&bad),
            Step::Skip {
                consumed: 1,
                error: Some(DecodeError::BadChecksum { .. })
            }
        ));
        let out = run_stream(|b| d.decode(b), &stream, 3);
        assert_eq!(out.frames.len(), 1);
        assert_eq!(out.frames[0].get(0), Some(6.0));
        assert_eq!(out.errors.len(), 1);
    }

    #[test]
    fn lost_byte_gives_bad_trailer_and_resyncs() {
        let mut short = frame(50, 100);
        short.remove(4);
        let mut stream = short;
        stream.extend(frame(70, 100));
        let out = run_stream(|b| decoder().decode(b), &stream, 1);
        assert_eq!(out.frames.len(), 1);
        assert_eq!(out.frames[0].get(0), Some(7.0));
        assert!(matches!(
            out.errors.as_slice(),
            [DecodeError::BadTrailer { .. }]
        ));
    }

    #[test]
    fn command_replies_are_skipped_silently_including_ff_trailer() {
        // Sleep reply with the FF-trailer quirk: AA C5 06 01 00 00 ID ID CS FF.
        let reply = hex("AA C5 06 01 00 00 A1 60 08 FF");
        assert_eq!(
            decoder().decode(&reply),
            Step::Skip {
                consumed: 10,
                error: None
            }
        );
    }

    #[test]
    fn split_frame_is_incomplete_until_whole() {
        let f = frame(10, 20);
        for cut in 0..f.len() {
            assert_eq!(decoder().decode(&f[..cut]), Step::Incomplete, "cut {cut}");
        }
    }

    #[test]
    fn commands_match_the_documented_bytes() {
        let sleep = "AA B4 06 01 00 00 00 00 00 00 00 00 00 00 00 FF FF 05 AB";
        let work = "AA B4 06 01 01 00 00 00 00 00 00 00 00 00 00 FF FF 06 AB";
        let query = "AA B4 04 00 00 00 00 00 00 00 00 00 00 00 00 FF FF 02 AB";
        let query_mode = "AA B4 02 01 01 00 00 00 00 00 00 00 00 00 00 FF FF 02 AB";
        let active_mode = "AA B4 02 01 00 00 00 00 00 00 00 00 00 00 00 FF FF 01 AB";
        assert_eq!(set_sleep(true), hex(sleep));
        assert_eq!(set_sleep(false), hex(work));
        assert_eq!(query_data(), hex(query));
        assert_eq!(set_reporting_mode(true), hex(query_mode));
        assert_eq!(set_reporting_mode(false), hex(active_mode));
        let d = decoder();
        assert_eq!(d.init_commands(), vec![hex(work), hex(query_mode)]);
        assert_eq!(d.poll_command(), Some(hex(query)));
        let active = Sds011::new(Sds011Mode::Active, Selection::all(&QUANTITIES));
        assert_eq!(active.poll_command(), None);
    }
}
