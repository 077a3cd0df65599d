//! `[[serial]]`: one serial port with one sensor on it, and which sensor profile describes it.
//!
//! The profile comes from one base (a built-in model named by `profile = "sds011"` or
//! `[serial.profile] base = ...`, or a `profile_file`) with the fields of a `[serial.profile]`
//! table laid over it; without a base, the table must be a whole profile. Serial-level `baud`
//! and `poll_interval_secs` win over both. [`SerialConfig::profile`] does the merging, for
//! `validate` and for the running source alike.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::decode::profile::{
    builtin_profile, builtin_profiles, Protocol, QuantitySpec, SensorProfile,
};
use crate::decode::Decoder;

/// One serial port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    /// Name used in logs and metrics; also tag `sensor` unless `sensor` is set. Required.
    pub name: String,
    /// Device path, e.g. `/dev/ttyUSB0`, `/dev/serial0` or a stable
    /// `/dev/serial/by-id/usb-...-port0`. A missing device is retried until it appears. Required.
    pub port: PathBuf,
    /// A built-in profile's model name (`sds011`, `pms5003`, ...) or a `[serial.profile]`
    /// table (see [`ProfileTable`]). Default: none, then `profile_file` is required.
    #[serde(default)]
    pub profile: Option<ProfileSpec>,
    /// A profile TOML file (the format of `firmware-config/sensors/*.toml`), used as the base.
    /// A relative path is relative to the working directory. Default: none.
    #[serde(default)]
    pub profile_file: Option<PathBuf>,
    /// Serial speed, overriding the profile's. Default: the profile's.
    #[serde(default)]
    pub baud: Option<u32>,
    /// Seconds between poll commands, overriding the profile's (polled sensors only).
    /// Default: the profile's.
    #[serde(default)]
    pub poll_interval_secs: Option<u32>,
    /// Sensor id, written as tag `sensor`. Default: `name`.
    #[serde(default)]
    pub sensor: Option<String>,
    /// Measurement the windows are written to. Default: chosen by quantity (as for MQTT).
    #[serde(default)]
    pub measurement: Option<String>,
    /// Extra tags for this sensor's points; they win over `model` and the gateway's `site`
    /// and tags. `sensor` and `gateway` cannot be set here. Default: none.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// `profile = "name"` or a `[serial.profile]` table.
#[derive(Debug, Clone, PartialEq)]
pub enum ProfileSpec {
    Builtin(String),
    Table(Box<ProfileTable>),
}

/// `[serial.profile]`: fields laid over the base profile; every one optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileTable {
    /// Built-in model to start from. Default: `profile_file` if set, else none (then `model`,
    /// `protocol` and `quantities` are required here).
    #[serde(default)]
    pub base: Option<String>,
    /// Model name, written as tag `model`. Default: the base's.
    #[serde(default)]
    pub model: Option<String>,
    /// Free text. Default: the base's.
    #[serde(default)]
    pub description: Option<String>,
    /// Protocol table (replaces the base's whole). Default: the base's.
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// Serial speed. Default: the base's.
    #[serde(default)]
    pub baud: Option<u32>,
    /// Seconds between polls. Default: the base's.
    #[serde(default)]
    pub poll_interval_secs: Option<u32>,
    /// Seconds of readings discarded after the port opens. Default: the base's.
    #[serde(default)]
    pub warmup_secs: Option<u32>,
    /// Quantity list (replaces the base's whole). Default: the base's.
    #[serde(default)]
    pub quantities: Option<Vec<QuantitySpec>>,
    /// Sleep/work cycle (`{ work_secs, sleep_secs }`). Default: the base's.
    #[serde(default)]
    pub duty_cycle: Option<crate::decode::profile::DutyCycle>,
}

// A hand-written visitor rather than `#[serde(untagged)]`: untagged enums buffer their input,
// which loses the spans that let errors inside `[serial.profile]` name their line.
impl<'de> Deserialize<'de> for ProfileSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SpecVisitor;
        impl<'de> Visitor<'de> for SpecVisitor {
            type Value = ProfileSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a built-in profile name or a [serial.profile] table")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ProfileSpec, E> {
                Ok(ProfileSpec::Builtin(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ProfileSpec, A::Error> {
                let table = ProfileTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ProfileSpec::Table(Box::new(table)))
            }
        }
        d.deserialize_any(SpecVisitor)
    }
}

/// Why no profile could be made: the key (relative to the `[[serial]]` entry) and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileProblem {
    pub key: &'static str,
    pub message: String,
}

fn problem(key: &'static str, message: impl Into<String>) -> ProfileProblem {
    ProfileProblem {
        key,
        message: message.into(),
    }
}

/// Names of the built-in profiles, for error messages.
pub fn builtin_names() -> String {
    let names: Vec<&str> = builtin_profiles().into_iter().map(|(m, _)| m).collect();
    names.join(", ")
}

fn builtin(name: &str, key: &'static str) -> Result<SensorProfile, ProfileProblem> {
    match builtin_profile(name) {
        Some(Ok(p)) => Ok(p),
        Some(Err(e)) => Err(problem(key, format!("built-in profile {name:?}: {e}"))),
        None => Err(problem(
            key,
            format!(
                "unknown profile {name:?}; built-in profiles: {}",
                builtin_names()
            ),
        )),
    }
}

impl SerialConfig {
    /// Sensor id (tag `sensor`).
    pub fn sensor_id(&self) -> &str {
        self.sensor.as_deref().unwrap_or(&self.name)
    }

    /// The merged, checked profile in effect (reads `profile_file`).
    pub fn profile(&self) -> Result<SensorProfile, ProfileProblem> {
        let table = match &self.profile {
            Some(ProfileSpec::Table(t)) => Some(t.as_ref()),
            _ => None,
        };
        let mut profile = self.base_profile(table)?;
        if let Some(t) = table {
            overlay(&mut profile, t);
        }
        if self.baud.is_some() {
            profile.baud = self.baud;
        }
        if self.poll_interval_secs.is_some() {
            profile.poll_interval_secs = self.poll_interval_secs;
        }
        Decoder::build(&profile).map_err(|e| {
            let msg = e.to_string();
            let key = match e {
                crate::decode::profile::ProfileError::Invalid { field: "baud", .. }
                    if self.baud.is_some() =>
                {
                    "baud"
                }
                crate::decode::profile::ProfileError::Invalid {
                    field: "poll_interval_secs",
                    ..
                } if self.poll_interval_secs.is_some() => "poll_interval_secs",
                _ => "profile",
            };
            problem(key, msg)
        })?;
        Ok(profile)
    }

    fn base_profile(&self, table: Option<&ProfileTable>) -> Result<SensorProfile, ProfileProblem> {
        let base = table.and_then(|t| t.base.as_deref());
        match (&self.profile, base, &self.profile_file) {
            (Some(ProfileSpec::Builtin(_)), _, Some(_)) | (_, Some(_), Some(_)) => Err(problem(
                "profile_file",
                "set either a built-in profile or profile_file, not both",
            )),
            (Some(ProfileSpec::Builtin(name)), _, None) => builtin(name, "profile"),
            (_, Some(name), None) => builtin(name, "profile.base"),
            (_, None, Some(path)) => {
                let text = crate::fs_limits::read_text(
                    path,
                    crate::fs_limits::MAX_PROFILE_BYTES,
                    "a sensor profile",
                )
                .map_err(|e| {
                    problem("profile_file", format!("cannot read {}: {e}", path.display()))
                })?;
                SensorProfile::parse(&text)
                    .map_err(|e| problem("profile_file", format!("{}: {e}", path.display())))
            }
            (Some(ProfileSpec::Table(t)), None, None) => whole_profile(t),
            (None, None, None) => Err(problem(
                "profile",
                format!(
                    "no profile: set `profile` to a built-in model ({}), a [serial.profile] table, or `profile_file`",
                    builtin_names()
                ),
            )),
        }
    }

    pub(super) fn check(&self, at: &str, errs: &mut Vec<(String, String)>) {
        if self.name.trim().is_empty() {
            errs.push((format!("{at}.name"), "must not be empty".into()));
        }
        if self.port.as_os_str().is_empty() {
            errs.push((format!("{at}.port"), "must not be empty".into()));
        }
        if self.sensor.as_deref().is_some_and(|s| s.trim().is_empty()) {
            errs.push((format!("{at}.sensor"), "must not be empty".into()));
        }
        if self
            .measurement
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            errs.push((format!("{at}.measurement"), "must not be empty".into()));
        }
        for reserved in ["sensor", "gateway"] {
            if self.tags.contains_key(reserved) {
                errs.push((
                    format!("{at}.tags.{reserved}"),
                    format!(
                        "tag `{reserved}` is set by the daemon (use `sensor` for the sensor id)"
                    ),
                ));
            }
        }
        if let Err(p) = self.profile() {
            errs.push((format!("{at}.{}", p.key), p.message));
        }
    }
}

/// A `[serial.profile]` table without a base: it must carry a whole profile.
fn whole_profile(t: &ProfileTable) -> Result<SensorProfile, ProfileProblem> {
    let (Some(model), Some(protocol), Some(quantities)) = (&t.model, &t.protocol, &t.quantities)
    else {
        return Err(problem(
            "profile",
            format!(
                "a [serial.profile] table without `base` (or `profile_file`) must set `model`, `protocol` and `quantities`; built-in bases: {}",
                builtin_names()
            ),
        ));
    };
    Ok(SensorProfile {
        model: model.clone(),
        description: String::new(),
        protocol: protocol.clone(),
        baud: None,
        poll_interval_secs: None,
        warmup_secs: 0,
        quantities: quantities.clone(),
        duty_cycle: t.duty_cycle,
    })
}

/// Lays the set fields of `t` over `p`.
fn overlay(p: &mut SensorProfile, t: &ProfileTable) {
    if let Some(v) = &t.model {
        p.model = v.clone();
    }
    if let Some(v) = &t.description {
        p.description = v.clone();
    }
    if let Some(v) = &t.protocol {
        p.protocol = v.clone();
        // Switching a polled base to a free-running mode drops the inherited poll interval.
        if !v.is_polled() {
            p.poll_interval_secs = None;
        }
    }
    if t.baud.is_some() {
        p.baud = t.baud;
    }
    if t.poll_interval_secs.is_some() {
        p.poll_interval_secs = t.poll_interval_secs;
    }
    if let Some(v) = t.warmup_secs {
        p.warmup_secs = v;
    }
    if let Some(v) = &t.quantities {
        p.quantities = v.clone();
    }
    if t.duty_cycle.is_some() {
        p.duty_cycle = t.duty_cycle;
    }
}

#[cfg(test)]
#[path = "serial_tests.rs"]
mod tests;
