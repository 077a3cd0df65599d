//! Sensor profiles: the data that describes one serial sensor model (protocol and its
//! options, serial speed, poll interval, warm-up, and the quantities it reports with their
//! units and valid ranges). Profiles live as TOML in `firmware-config/sensors/`; the built-in
//! ones are compiled in with `include_str!` so the daemon works without that folder.
//!
//! The order of `quantities` is the slot order of the [`Decoder`] built from
//! the profile: `Value::slot` indexes `quantities`, so [`SensorProfile::valid_range`] and
//! [`SensorProfile::quantity`] take the slot straight from a decoded value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Decoder, MAX_VALUES};
use crate::reading::{QuantityKind, SeriesKind};

/// Seconds between polls when a polled profile sets no `poll_interval_secs`.
pub const DEFAULT_POLL_INTERVAL_SECS: u32 = 5;
/// Longest accepted text line when a line profile sets no `max_line_len`.
pub const DEFAULT_MAX_LINE_LEN: usize = 512;

/// One sensor model's profile.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SensorProfile {
    /// Model name, e.g. `sds011`; what a serial source refers to. Required.
    pub model: String,
    /// Free text for people reading the file. Default: empty.
    #[serde(default)]
    pub description: String,
    /// Wire protocol and its options, a table with `type` = `sds011` | `pms` | `mhz19b` |
    /// `sps30` | `line`. Required.
    pub protocol: Protocol,
    /// Serial speed in baud (always 8N1). Default: the protocol's documented speed,
    /// 115200 for `sps30`, 9600 for the others.
    #[serde(default)]
    pub baud: Option<u32>,
    /// Seconds between poll commands for a polled protocol (`sds011` in query mode, `pms` in
    /// passive mode, `mhz19b`, `sps30`). Default: 5. Must be unset for free-running ones.
    #[serde(default)]
    pub poll_interval_secs: Option<u32>,
    /// Seconds after opening the port during which readings are discarded (fan spin-up,
    /// NDIR preheat). Default: 0.
    #[serde(default)]
    pub warmup_secs: u32,
    /// The quantities to report, in slot order (at most 16). For a fixed protocol each name
    /// must be one the protocol decodes; the others are not reported. Required, non-empty.
    pub quantities: Vec<QuantitySpec>,
    /// Sleep/work cycle for sensors with a limited-life laser or fan (`sds011`, `pms`): work
    /// `work_secs` (the first `warmup_secs` of which are discarded), then sleep `sleep_secs`.
    /// Default: none (always on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duty_cycle: Option<DutyCycle>,
}

/// `[duty_cycle]` of a profile. sensor.community's firmware, for comparison, measures about
/// 20 s of every 145 s on an SDS011.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DutyCycle {
    /// Seconds awake per cycle, warm-up included. Required.
    pub work_secs: u32,
    /// Seconds asleep per cycle. Required.
    pub sleep_secs: u32,
}

/// One reported quantity.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuantitySpec {
    /// snake_case name, e.g. `pm2_5`; becomes the field name. Required.
    pub name: String,
    /// Unit as text, e.g. `ug/m3`, `ppm`, `count`. Required.
    pub unit: String,
    /// Lowest plausible value; readings below it are dropped. Default: unbounded.
    #[serde(default)]
    pub min: Option<f64>,
    /// Highest plausible value; readings above it are dropped. Default: unbounded.
    #[serde(default)]
    pub max: Option<f64>,
    /// `gauge`, `counter` (each reading is a number of events; the window field is their sum)
    /// or `counter_total` (a cumulative total; the window field is its increase, resets and
    /// wraps handled). Default: `gauge`.
    #[serde(default, skip_serializing_if = "is_gauge")]
    pub kind: QuantityKind,
    /// For `counter_total`: the value at which the counter wraps to 0 (65536 for 16 bits,
    /// 4294967296 for 32 bits). Default: none, every drop is a reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrap: Option<u64>,
}

fn is_gauge(k: &QuantityKind) -> bool {
    *k == QuantityKind::Gauge
}

impl QuantitySpec {
    /// The kind the serial source interns this quantity's series with.
    pub fn series_kind(&self) -> SeriesKind {
        SeriesKind {
            kind: self.kind,
            wrap: self.wrap,
        }
    }
}

/// Wire protocol and its options.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Protocol {
    /// Nova SDS011.
    Sds011 {
        /// `query` (polled with command 0x04) or `active` (1 Hz free-running). Default: `query`.
        #[serde(default)]
        mode: Sds011Mode,
    },
    /// Plantower PMS5003 / PMS7003 / PMSA003.
    Pms {
        /// `passive` (polled with the read command) or `active` (free-running). Default: `passive`.
        #[serde(default)]
        mode: PmsMode,
    },
    /// Winsen MH-Z19B (always polled).
    Mhz19b {
        /// Turn automatic baseline calibration on (`true`) or off (`false`) at start-up.
        /// Default: unset, leave the sensor's setting alone (on from the factory).
        #[serde(default)]
        abc: Option<bool>,
        /// Set the detection range in ppm at start-up (e.g. 2000, 5000). Default: unset.
        #[serde(default)]
        range_ppm: Option<u32>,
    },
    /// Sensirion SPS30 over UART (SHDLC, always polled).
    Sps30 {
        /// Output format requested at start: `float` or `uint16` (firmware >= 2.0).
        /// Answers of either format are decoded. Default: `float`.
        #[serde(default)]
        output: Sps30Output,
    },
    /// Generic text lines (counters and home-made devices).
    Line(LineOptions),
}

/// SDS011 reporting mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sds011Mode {
    #[default]
    Query,
    Active,
}

/// PMS reporting mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PmsMode {
    #[default]
    Passive,
    Active,
}

/// SPS30 measurement output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sps30Output {
    #[default]
    Float,
    Uint16,
}

/// Options of the generic line protocol.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LineOptions {
    /// `kv` (`in=3,out=1`), `csv` (columns by position) or `json` (one object per line). Required.
    pub format: LineFormat,
    /// Field separator. Default: for `kv` any run of commas and/or whitespace; for `csv` `,`.
    /// Not used by `json`.
    #[serde(default)]
    pub separator: Option<String>,
    /// `csv` only: the quantity name of each column by position, `""` to ignore a column.
    /// A line must have exactly this many columns. Required for `csv`.
    #[serde(default)]
    pub columns: Vec<String>,
    /// `kv`: key -> quantity; `json`: dotted path (`counts.in`, `list.0`) -> quantity.
    /// Default: each quantity is read from the key or top-level field of its own name.
    #[serde(default)]
    pub mapping: BTreeMap<String, String>,
    /// `nmea` (line ends in `*XX`, the XOR of the bytes between an optional leading `$` and
    /// `*`) or `none`. Default: `none`.
    #[serde(default)]
    pub checksum: LineChecksum,
    /// Longest accepted line in bytes, without its line end; 1..=65536. Default: 512.
    #[serde(default = "default_max_line_len")]
    pub max_line_len: usize,
}

const fn default_max_line_len() -> usize {
    DEFAULT_MAX_LINE_LEN
}

/// Line formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineFormat {
    Kv,
    Csv,
    Json,
}

/// Line checksum kinds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineChecksum {
    #[default]
    None,
    Nmea,
}

/// A profile that cannot be used.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum ProfileError {
    #[error("profile is not valid TOML for a sensor profile: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("profile lists no quantities")]
    NoQuantities,
    #[error("profile lists {count} quantities, at most {max} are supported")]
    TooManyQuantities { count: usize, max: usize },
    #[error("quantity {0:?} is listed twice")]
    DuplicateQuantity(String),
    #[error("quantity name {0:?} is not snake_case (a-z, 0-9, _)")]
    BadQuantityName(String),
    #[error("protocol {protocol} does not decode {name:?}; it knows: {known}")]
    UnknownQuantity {
        protocol: String,
        name: String,
        known: String,
    },
    #[error("quantity {name:?}: min {min} is not below max {max}")]
    BadRange { name: String, min: f64, max: f64 },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl SensorProfile {
    /// Parses and checks a profile from TOML text.
    pub fn parse(text: &str) -> Result<SensorProfile, ProfileError> {
        let profile: SensorProfile = toml::from_str(text)?;
        profile.validate()?;
        Ok(profile)
    }

    /// Checks everything that does not need the protocol's decoder; [`Decoder::build`] calls it.
    pub fn validate(&self) -> Result<(), ProfileError> {
        if self.model.trim().is_empty() {
            return Err(invalid("model", "must not be empty"));
        }
        if self.baud == Some(0) {
            return Err(invalid("baud", "must be above 0"));
        }
        match (self.protocol.is_polled(), self.poll_interval_secs) {
            (_, Some(0)) => return Err(invalid("poll_interval_secs", "must be above 0")),
            (false, Some(_)) => {
                return Err(invalid(
                    "poll_interval_secs",
                    "set, but this protocol or mode is free-running",
                ))
            }
            _ => {}
        }
        if let Protocol::Mhz19b {
            range_ppm: Some(ppm),
            ..
        } = self.protocol
        {
            if !(1000..=10_000).contains(&ppm) {
                return Err(invalid(
                    "range_ppm",
                    "must be 1000..=10000 (2000, 5000, 10000)",
                ));
            }
        }
        if let Some(d) = self.duty_cycle {
            if !matches!(
                self.protocol,
                Protocol::Sds011 { .. } | Protocol::Pms { .. }
            ) {
                return Err(invalid(
                    "duty_cycle",
                    "only sds011 and pms sensors can be put to sleep",
                ));
            }
            if d.sleep_secs == 0 || d.work_secs <= self.warmup_secs {
                return Err(invalid(
                    "duty_cycle",
                    "needs sleep_secs > 0 and work_secs > warmup_secs",
                ));
            }
        }
        self.validate_quantities()
    }

    fn validate_quantities(&self) -> Result<(), ProfileError> {
        if self.quantities.is_empty() {
            return Err(ProfileError::NoQuantities);
        }
        if self.quantities.len() > MAX_VALUES {
            return Err(ProfileError::TooManyQuantities {
                count: self.quantities.len(),
                max: MAX_VALUES,
            });
        }
        for (i, q) in self.quantities.iter().enumerate() {
            let snake = q
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if q.name.is_empty() || !snake {
                return Err(ProfileError::BadQuantityName(q.name.clone()));
            }
            if self.quantities.iter().take(i).any(|p| p.name == q.name) {
                return Err(ProfileError::DuplicateQuantity(q.name.clone()));
            }
            let (min, max) = (
                q.min.unwrap_or(f64::NEG_INFINITY),
                q.max.unwrap_or(f64::INFINITY),
            );
            if q.wrap.is_some() && (q.kind != QuantityKind::CounterTotal || q.wrap < Some(2)) {
                return Err(invalid(
                    "wrap",
                    "needs kind = \"counter_total\" and a value of at least 2",
                ));
            }
            // Anything but "less" (including a NaN bound) is a bad range.
            if min.partial_cmp(&max) != Some(std::cmp::Ordering::Less) {
                return Err(ProfileError::BadRange {
                    name: q.name.clone(),
                    min,
                    max,
                });
            }
        }
        Ok(())
    }

    /// Builds this profile's decoder (same as [`Decoder::build`]).
    pub fn build(&self) -> Result<Decoder, ProfileError> {
        Decoder::build(self)
    }

    /// Serial speed: the configured one or the protocol's documented default.
    pub fn baud(&self) -> u32 {
        self.baud.unwrap_or(match self.protocol {
            Protocol::Sps30 { .. } => 115_200,
            _ => 9600,
        })
    }

    /// Seconds between polls, or `None` for a free-running protocol.
    pub fn poll_interval_secs(&self) -> Option<u32> {
        self.protocol.is_polled().then(|| {
            self.poll_interval_secs
                .unwrap_or(DEFAULT_POLL_INTERVAL_SECS)
        })
    }

    /// The quantity behind a value's slot.
    pub fn quantity(&self, slot: u8) -> Option<&QuantitySpec> {
        self.quantities.get(usize::from(slot))
    }

    /// Valid range `(min, max)`, inclusive, of the quantity in `slot`; an unset bound is
    /// infinite. `None` when neither bound is set (or no such slot): keep every reading.
    pub fn valid_range(&self, slot: u8) -> Option<(f64, f64)> {
        let q = self.quantity(slot)?;
        if q.min.is_none() && q.max.is_none() {
            return None;
        }
        Some((
            q.min.unwrap_or(f64::NEG_INFINITY),
            q.max.unwrap_or(f64::INFINITY),
        ))
    }

    /// Whether `value` in `slot` lies inside its valid range (true when no range is set).
    pub fn in_range(&self, slot: u8, value: f64) -> bool {
        match self.valid_range(slot) {
            Some((min, max)) => value >= min && value <= max,
            None => true,
        }
    }
}

impl Protocol {
    /// Whether the host must send a poll command for each reading.
    pub fn is_polled(&self) -> bool {
        match self {
            Protocol::Sds011 { mode } => *mode == Sds011Mode::Query,
            Protocol::Pms { mode } => *mode == PmsMode::Passive,
            Protocol::Mhz19b { .. } | Protocol::Sps30 { .. } => true,
            Protocol::Line(_) => false,
        }
    }
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> ProfileError {
    ProfileError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The profiles shipped in `firmware-config/sensors/`, as (model, TOML text).
pub fn builtin_profiles() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "sds011",
            include_str!("../../firmware-config/sensors/sds011.toml"),
        ),
        (
            "pms5003",
            include_str!("../../firmware-config/sensors/pms5003.toml"),
        ),
        (
            "pms7003",
            include_str!("../../firmware-config/sensors/pms7003.toml"),
        ),
        (
            "mhz19b",
            include_str!("../../firmware-config/sensors/mhz19b.toml"),
        ),
        (
            "sps30",
            include_str!("../../firmware-config/sensors/sps30.toml"),
        ),
        (
            "counter-kv",
            include_str!("../../firmware-config/sensors/counter-kv.toml"),
        ),
        (
            "counter-csv",
            include_str!("../../firmware-config/sensors/counter-csv.toml"),
        ),
        (
            "counter-json",
            include_str!("../../firmware-config/sensors/counter-json.toml"),
        ),
    ]
}

/// The built-in profile of `model`, parsed.
pub fn builtin_profile(model: &str) -> Option<Result<SensorProfile, ProfileError>> {
    builtin_profiles()
        .into_iter()
        .find(|(m, _)| *m == model)
        .map(|(_, text)| SensorProfile::parse(text))
}

#[cfg(test)]
#[path = "profile_tests.rs"]
mod tests;
