//! Serial sensor decoders: pure frame parsers and command builders, no I/O and no tokio.
//!
//! The serial task owns a read buffer and calls [`Decoder::decode`] on it after every read.
//! Each call looks at the front of the buffer and answers with a [`Step`]:
//! `Incomplete` (read more, nothing consumed), `Frame` (values plus the bytes that formed them)
//! or `Skip` (bytes to drop, with an error when they were a damaged frame rather than noise).
//! `Frame` and `Skip` always consume at least one byte and never more than the buffer holds,
//! and no decoder answers `Incomplete` to a buffer longer than its longest frame
//! ([`sps30::MAX_FRAME`] bytes; `max_line_len` + 1 for lines), so the task always makes
//! progress and its buffer stays bounded whatever the wire delivers.
//!
//! The protocols form a closed set dispatched with `match` ([`Decoder`]). Which quantities a
//! decoder reports, and in which slot order, comes from the sensor profile ([`profile`]); a
//! value's `slot` indexes both [`Decoder::quantities`] and the profile's `quantities` list.

pub mod line;
pub mod mhz19;
pub mod pms;
pub mod profile;
pub mod sds011;
pub mod sps30;
#[cfg(test)]
pub(crate) mod tests;

use profile::{ProfileError, Protocol, SensorProfile};

/// Most values one frame can carry (and most quantities one profile can list).
pub const MAX_VALUES: usize = 16;

/// One decoded value: `slot` indexes the decoder's `quantities()` list.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Value {
    pub slot: u8,
    pub value: f64,
}

/// Fixed-capacity list of values from one frame (no heap allocation); capacity [`MAX_VALUES`].
/// Slots and values are kept in two arrays so the list stays small to return by value.
#[derive(Clone, Debug, PartialEq)]
pub struct Values {
    slots: [u8; MAX_VALUES],
    values: [f64; MAX_VALUES],
    len: usize,
}

impl Values {
    /// An empty list.
    pub const fn new() -> Self {
        Values {
            slots: [0; MAX_VALUES],
            values: [0.0; MAX_VALUES],
            len: 0,
        }
    }

    /// Appends a value; returns `false` (and drops it) when the list is full.
    pub fn push(&mut self, value: Value) -> bool {
        match (self.slots.get_mut(self.len), self.values.get_mut(self.len)) {
            (Some(slot), Some(v)) => {
                *slot = value.slot;
                *v = value.value;
                self.len += 1;
                true
            }
            _ => false,
        }
    }

    /// The values in the order they were pushed.
    pub fn iter(&self) -> ValuesIter<'_> {
        ValuesIter {
            values: self,
            next: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value in `slot`, if the frame carried one.
    pub fn get(&self, slot: u8) -> Option<f64> {
        self.iter().find(|v| v.slot == slot).map(|v| v.value)
    }
}

impl Default for Values {
    fn default() -> Self {
        Values::new()
    }
}

/// Iterator over [`Values`], yielding each [`Value`] by copy.
#[derive(Clone, Debug)]
pub struct ValuesIter<'a> {
    values: &'a Values,
    next: usize,
}

impl Iterator for ValuesIter<'_> {
    type Item = Value;
    fn next(&mut self) -> Option<Value> {
        if self.next >= self.values.len {
            return None;
        }
        let slot = *self.values.slots.get(self.next)?;
        let value = *self.values.values.get(self.next)?;
        self.next += 1;
        Some(Value { slot, value })
    }
}

impl<'a> IntoIterator for &'a Values {
    type Item = Value;
    type IntoIter = ValuesIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// What [`Decoder::decode`] found at the front of the buffer.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// More bytes are needed; nothing consumed.
    Incomplete,
    /// A valid frame: `consumed` bytes of the buffer form it.
    Frame { values: Values, consumed: usize },
    /// `consumed` bytes are garbage or a bad frame and must be dropped; `error` says why
    /// (None for silent resync noise like an ack frame or bytes before a header).
    Skip {
        consumed: usize,
        error: Option<DecodeError>,
    },
}

/// Why bytes were dropped.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum DecodeError {
    #[error("bad checksum: frame carries {expected:#06x}, bytes sum to {actual:#06x}")]
    BadChecksum { expected: u16, actual: u16 },
    #[error("bad frame length {actual}, expected {expected}")]
    BadLength { expected: usize, actual: usize },
    #[error("bad frame trailer {actual:#04x}, expected {expected:#04x}")]
    BadTrailer { expected: u8, actual: u8 },
    #[error("invalid byte-stuffing escape 0x7d {byte:#04x}")]
    BadEscape { byte: u8 },
    #[error("no frame end within {max} bytes")]
    TooLong { max: usize },
    #[error("device reported error state {state:#04x}: {}", sps30::describe_state(*.state))]
    DeviceError { state: u8 },
    #[error("malformed line: {0}")]
    Malformed(String),
}

/// The closed set of protocols, dispatched with match (no trait objects).
#[derive(Clone, Debug)]
pub enum Decoder {
    Sds011(sds011::Sds011),
    Pms(pms::Pms),
    Mhz19(mhz19::Mhz19),
    Sps30(sps30::Sps30),
    Line(line::LineDecoder),
}

impl Decoder {
    /// Decodes the front of `buf`; see the module doc for the contract.
    pub fn decode(&mut self, buf: &[u8]) -> Step {
        match self {
            Decoder::Sds011(d) => d.decode(buf),
            Decoder::Pms(d) => d.decode(buf),
            Decoder::Mhz19(d) => d.decode(buf),
            Decoder::Sps30(d) => d.decode(buf),
            Decoder::Line(d) => d.decode(buf),
        }
    }

    /// Forgets state carried between calls; call it when the port is reopened and the read
    /// buffer cleared (only the line decoder has such state: the rest of an overlong line).
    pub fn reset(&mut self) {
        if let Decoder::Line(d) = self {
            d.reset();
        }
    }

    /// Names of the value slots, in the profile's order (e.g. `["pm2_5", "pm10"]`).
    pub fn quantities(&self) -> &[String] {
        match self {
            Decoder::Sds011(d) => d.quantities(),
            Decoder::Pms(d) => d.quantities(),
            Decoder::Mhz19(d) => d.quantities(),
            Decoder::Sps30(d) => d.quantities(),
            Decoder::Line(d) => d.quantities(),
        }
    }

    /// Bytes to send, in order, after opening the port; empty when none.
    pub fn init_commands(&self) -> Vec<Vec<u8>> {
        match self {
            Decoder::Sds011(d) => d.init_commands(),
            Decoder::Pms(d) => d.init_commands(),
            Decoder::Mhz19(d) => d.init_commands(),
            Decoder::Sps30(d) => d.init_commands(),
            Decoder::Line(_) => Vec::new(),
        }
    }

    /// Bytes to send every poll interval for polled sensors; `None` for free-running ones.
    pub fn poll_command(&self) -> Option<Vec<u8>> {
        match self {
            Decoder::Sds011(d) => d.poll_command(),
            Decoder::Pms(d) => d.poll_command(),
            Decoder::Mhz19(_) => Some(mhz19::read_co2()),
            Decoder::Sps30(_) => Some(sps30::read_values()),
            Decoder::Line(_) => None,
        }
    }

    /// Bytes that put the sensor to sleep (laser/fan off), for duty cycling; `None` when the
    /// protocol has no such command here.
    pub fn sleep_command(&self) -> Option<Vec<u8>> {
        match self {
            Decoder::Sds011(_) => Some(sds011::set_sleep(true)),
            Decoder::Pms(_) => Some(pms::set_sleep(true)),
            _ => None,
        }
    }

    /// Bytes that wake the sensor after [`Decoder::sleep_command`]. The init commands are
    /// sent after it again, since some units forget their mode while asleep.
    pub fn wake_command(&self) -> Option<Vec<u8>> {
        match self {
            Decoder::Sds011(_) => Some(sds011::set_sleep(false)),
            Decoder::Pms(_) => Some(pms::set_sleep(false)),
            _ => None,
        }
    }

    /// Checks the profile and builds its decoder.
    pub fn build(profile: &SensorProfile) -> Result<Decoder, ProfileError> {
        profile.validate()?;
        let wanted: Vec<String> = profile.quantities.iter().map(|q| q.name.clone()).collect();
        let decoder = match &profile.protocol {
            Protocol::Sds011 { mode } => Decoder::Sds011(sds011::Sds011::new(
                *mode,
                Selection::new("sds011", &sds011::QUANTITIES, &wanted)?,
            )),
            Protocol::Pms { mode } => Decoder::Pms(pms::Pms::new(
                *mode,
                Selection::new("pms", &pms::QUANTITIES, &wanted)?,
            )),
            Protocol::Mhz19b { abc, range_ppm } => Decoder::Mhz19(mhz19::Mhz19::new(
                *abc,
                *range_ppm,
                Selection::new("mhz19b", &mhz19::QUANTITIES, &wanted)?,
            )),
            Protocol::Sps30 { output } => Decoder::Sps30(sps30::Sps30::new(
                *output,
                Selection::new("sps30", &sps30::QUANTITIES, &wanted)?,
            )),
            Protocol::Line(options) => Decoder::Line(line::LineDecoder::new(options, &wanted)?),
        };
        Ok(decoder)
    }
}

/// Maps a fixed protocol's native value order onto the profile's slots: the profile picks
/// which of the protocol's quantities to report and in which order.
#[derive(Clone, Debug)]
pub struct Selection {
    names: Vec<String>,
    /// Indexed by native position: the slot that native value goes to, if reported.
    slot_of: Vec<Option<u8>>,
}

impl Selection {
    /// Selects `wanted` (profile order) out of `native`; every wanted name must be native.
    pub fn new(protocol: &str, native: &[&str], wanted: &[String]) -> Result<Self, ProfileError> {
        let mut slot_of = vec![None; native.len()];
        for (slot, name) in wanted.iter().enumerate() {
            let pos = native.iter().position(|n| n == name).ok_or_else(|| {
                ProfileError::UnknownQuantity {
                    protocol: protocol.to_string(),
                    name: name.clone(),
                    known: native.join(", "),
                }
            })?;
            let slot = u8::try_from(slot).map_err(|_| ProfileError::TooManyQuantities {
                count: wanted.len(),
                max: MAX_VALUES,
            })?;
            if let Some(entry) = slot_of.get_mut(pos) {
                *entry = Some(slot);
            }
        }
        Ok(Selection {
            names: wanted.to_vec(),
            slot_of,
        })
    }

    /// Every native quantity, in native order (for tests and tools).
    pub fn all(native: &[&str]) -> Self {
        let wanted: Vec<String> = native.iter().map(|n| n.to_string()).collect();
        let slot_of = (0..native.len()).map(|i| u8::try_from(i).ok()).collect();
        Selection {
            names: wanted,
            slot_of,
        }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Pushes native value number `native` if the profile reports it; non-finite values
    /// (a damaged float that passed the checksum) are dropped.
    pub fn push(&self, values: &mut Values, native: usize, value: f64) {
        if let Some(Some(slot)) = self.slot_of.get(native) {
            if value.is_finite() {
                values.push(Value { slot: *slot, value });
            }
        }
    }
}

/// Resync helper: finds the first position where `header` starts (a header cut off by the
/// end of the buffer counts). `None` when the buffer starts with it; otherwise the step to
/// return: `Incomplete` for an empty buffer, else a silent `Skip` of the bytes before it.
pub(crate) fn seek(buf: &[u8], header: &[u8]) -> Option<Step> {
    if buf.is_empty() {
        return Some(Step::Incomplete);
    }
    let starts_here = |i: usize| {
        let rest = buf.get(i..).unwrap_or(&[]);
        let n = rest.len().min(header.len());
        rest.get(..n) == header.get(..n)
    };
    match (0..buf.len()).find(|&i| starts_here(i)) {
        Some(0) => None,
        Some(pos) => Some(skip(pos, None)),
        None => Some(skip(buf.len(), None)),
    }
}

/// Shorthand for a `Skip` step.
pub(crate) fn skip(consumed: usize, error: Option<DecodeError>) -> Step {
    Step::Skip { consumed, error }
}
