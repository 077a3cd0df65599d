//! Payload mappers: one MQTT payload -> zero or more (quantity, value, event time) samples.
//! Pure functions, no tokio; every malformed input is an `Err`, never a panic.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::config::{PayloadFormat, TimestampFormat};
use crate::reading::TimestampNs;
use crate::time::{epoch_auto_ns, parse_rfc3339};
use names::Claims;
pub use names::{quantity_name, KeySkips};
use path::{lookup, remove_path, Tree};

/// One value a payload yielded.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub quantity: Cow<'a, str>,
    /// Tags the payload itself carries (Tasmota sensor model, TTN device id).
    pub tags: Vec<(&'static str, String)>,
    pub value: f64,
    /// Event time from the payload; `None` means "time of receipt".
    pub ts: Option<TimestampNs>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MapError {
    #[error("payload is not UTF-8")]
    NotUtf8,
    #[error("not a number: {0:?}")]
    NotANumber(String),
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("JSON payload is not an object")]
    NotAnObject,
    #[error("field {0:?} missing or not a number")]
    MissingField(String),
    #[error("bad timestamp: {0}")]
    Timestamp(String),
    #[error("line protocol: {0}")]
    LineProtocol(String),
    #[error("payload yields no values")]
    Empty,
    #[error("the topic's quantity level has no letter or digit to name a field by")]
    NoQuantityName,
    #[error("topic matches no subscription pattern")]
    UnmatchedTopic,
    #[error("TTN uplink without uplink_message.decoded_payload: set a payload formatter for the device or application (f_port 0 uplinks carry MAC commands only)")]
    NoDecodedPayload,
    #[error("TTN uplink simulated from the console, skipped (set ttn_simulated = true to accept)")]
    Simulated,
    /// An identifier source's payload was unusable; the text never quotes the payload.
    #[error("identifier payload: {0}")]
    Identifier(&'static str),
}

impl MapError {
    /// True for payloads skipped on purpose (not malformed).
    pub fn is_skip(&self) -> bool {
        matches!(self, MapError::Simulated)
    }
}

/// TTN v3 options of a subscription.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TtnOptions {
    /// Add `rssi` and `snr` of the best gateway.
    pub radio: bool,
    /// Tag `application` from `end_device_ids.application_ids.application_id`.
    pub application_tag: bool,
    /// Accept `simulated: true` uplinks.
    pub simulated: bool,
}

/// A subscription's mapping rules, compiled once.
#[derive(Debug, Clone)]
pub struct Mapper {
    pub format: PayloadFormat,
    /// Fixed quantity for plain payloads.
    pub quantity: Option<String>,
    /// Quantity -> dotted JSON path; empty = every numeric leaf.
    pub fields: BTreeMap<String, String>,
    pub timestamp_path: Option<String>,
    pub timestamp_format: TimestampFormat,
    pub ttn: TtnOptions,
    /// Zone of Tasmota's offset-less `Time`; `None`: `Time` is ignored.
    pub local_tz: Option<jiff::tz::TimeZone>,
}

#[cfg(test)]
impl Mapper {
    /// A mapper of `format` with `fields` as (quantity, path) and an optional timestamp path.
    pub(crate) fn with_fields(
        format: PayloadFormat,
        fields: &[(&str, &str)],
        ts: Option<&str>,
    ) -> Mapper {
        Mapper {
            format,
            quantity: None,
            fields: (fields.iter())
                .map(|(q, p)| (q.to_string(), p.to_string()))
                .collect(),
            timestamp_path: ts.map(str::to_string),
            timestamp_format: TimestampFormat::Auto,
            ttn: TtnOptions::default(),
            local_tz: None,
        }
    }
}

impl Mapper {
    /// Maps `payload`; `topic_quantity` is the `{quantity}` captured from the topic.
    pub fn map<'a>(
        &'a self,
        payload: &'a [u8],
        topic_quantity: Option<&'a str>,
        out: &mut Vec<Sample<'a>>,
    ) -> Result<(), MapError> {
        self.map_counted(payload, topic_quantity, out, &mut KeySkips::default())
    }

    /// [`Mapper::map`], adding the keys that did not become fields to `skips`.
    pub fn map_counted<'a>(
        &'a self,
        payload: &'a [u8],
        topic_quantity: Option<&'a str>,
        out: &mut Vec<Sample<'a>>,
        skips: &mut KeySkips,
    ) -> Result<(), MapError> {
        let before = out.len();
        match self.format {
            PayloadFormat::Plain => self.map_plain(payload, topic_quantity, out)?,
            // The selective parses cover the configured-fields case; they decline (and leave
            // `out` untouched) whenever the full parse could answer differently, errors included.
            PayloadFormat::Json if self.map_json_fields(payload, out) => {}
            PayloadFormat::Json => self.map_json(parse_json(payload)?, out, skips)?,
            PayloadFormat::Tasmota => {
                map_tasmota(&parse_json(payload)?, self.local_tz.as_ref(), out, skips)?
            }
            PayloadFormat::Ttn if self.map_ttn_fields(payload, out) => {}
            PayloadFormat::Ttn => self.map_ttn(&parse_json(payload)?, out, skips)?,
            PayloadFormat::LineProtocol => map_line_protocol(payload, out, skips)?,
        }
        // Plain NaN/None is "no value right now", not an error; anything else must yield.
        if out.len() == before && self.format != PayloadFormat::Plain {
            return Err(MapError::Empty);
        }
        Ok(())
    }

    fn map_plain<'a>(
        &'a self,
        payload: &[u8],
        topic_quantity: Option<&'a str>,
        out: &mut Vec<Sample<'a>>,
    ) -> Result<(), MapError> {
        let text = std::str::from_utf8(payload).map_err(|_| MapError::NotUtf8)?;
        let text = text.trim();
        // ESPHome publishes NaN (or None) when a sensor has no value: not an error.
        if text.eq_ignore_ascii_case("nan") || text == "None" {
            return Ok(());
        }
        let value: f64 = text
            .parse()
            .map_err(|_| MapError::NotANumber(text.chars().take(32).collect()))?;
        let quantity = topic_quantity
            .map(Cow::Borrowed)
            .or_else(|| self.quantity.as_deref().map(Cow::Borrowed))
            .ok_or(MapError::Empty)?;
        if quantity.is_empty() {
            return Err(MapError::NoQuantityName);
        }
        out.push(Sample {
            quantity,
            tags: Vec::new(),
            value,
            ts: None,
        });
        Ok(())
    }

    fn map_json<'a>(
        &'a self,
        mut doc: Json,
        out: &mut Vec<Sample<'a>>,
        skips: &mut KeySkips,
    ) -> Result<(), MapError> {
        if !doc.is_object() {
            return Err(MapError::NotAnObject);
        }
        let ts = self.timestamp(&doc)?;
        // The timestamp is not a quantity, even when every numeric leaf is taken.
        if let Some(path) = &self.timestamp_path {
            remove_path(&mut doc, path);
        }
        push_fields(&doc, &self.fields, ts, Vec::new(), out, skips)
    }

    /// The Things Stack v3 uplink: `uplink_message.decoded_payload` fields at `received_at`,
    /// tag `sensor` = device id; see [`TtnOptions`] and [`ttn_best_gateway`] for the rest.
    fn map_ttn<'a>(
        &'a self,
        doc: &Json,
        out: &mut Vec<Sample<'a>>,
        skips: &mut KeySkips,
    ) -> Result<(), MapError> {
        let up = doc
            .get("uplink_message")
            .ok_or(MapError::MissingField("uplink_message".into()))?;
        if !self.ttn.simulated && doc.get("simulated").and_then(Json::as_bool) == Some(true) {
            return Err(MapError::Simulated);
        }
        let ts = match doc.get("received_at").and_then(Json::as_str) {
            Some(s) => Some(parse_rfc3339(s).map_err(|e| MapError::Timestamp(e.to_string()))?),
            None => None,
        };
        let mut tags = Vec::new();
        if let Some(dev) = doc
            .pointer("/end_device_ids/device_id")
            .and_then(Json::as_str)
        {
            tags.push(("sensor", dev.to_string()));
        }
        let app = doc.pointer("/end_device_ids/application_ids/application_id");
        if let (true, Some(app)) = (self.ttn.application_tag, app.and_then(Json::as_str)) {
            tags.push(("application", app.to_string()));
        }
        let decoded = up
            .get("decoded_payload")
            .ok_or(MapError::NoDecodedPayload)?;
        if self.ttn.radio {
            if let Some((rssi, snr)) = ttn_best_gateway(up) {
                let radio = [("rssi", Some(rssi)), ("snr", snr)];
                for (q, v) in radio {
                    let Some(value) = v else { continue };
                    out.push(Sample {
                        quantity: Cow::Borrowed(q),
                        tags: tags.clone(),
                        value,
                        ts,
                    });
                }
            }
        }
        push_fields(decoded, &self.fields, ts, tags, out, skips)
    }

    /// The event time at `timestamp_path`, if configured.
    pub(crate) fn timestamp(&self, doc: &Json) -> Result<Option<TimestampNs>, MapError> {
        let Some(path) = &self.timestamp_path else {
            return Ok(None);
        };
        let v = lookup(doc, path).ok_or_else(|| MapError::MissingField(path.clone()))?;
        let input = match v {
            Json::String(s) => TsValue::Str(s),
            Json::Number(n) => TsValue::Num(n.as_f64()),
            _ => TsValue::Other,
        };
        let ts = timestamp_ns(self.timestamp_format, input)
            .map_err(|e| e.unwrap_or_else(|| MapError::Timestamp(format!("{path}: {v}"))))?;
        Ok(Some(ts))
    }
}

/// A timestamp value as found in a payload.
enum TsValue<'s> {
    Str(&'s str),
    Num(Option<f64>),
    Other,
}

/// Event time of `v` read as `fmt`; `Err(None)` when the value does not fit the format (the
/// caller names the path and value in the error).
fn timestamp_ns(fmt: TimestampFormat, v: TsValue<'_>) -> Result<TimestampNs, Option<MapError>> {
    match (fmt, v) {
        (TimestampFormat::Auto | TimestampFormat::Rfc3339, TsValue::Str(s)) => {
            parse_rfc3339(s).map_err(|e| Some(MapError::Timestamp(e.to_string())))
        }
        (TimestampFormat::Auto, TsValue::Num(n)) => n.and_then(epoch_auto_ns).ok_or(None),
        (fmt, TsValue::Num(n)) => {
            let scale = match fmt {
                TimestampFormat::UnixS => 1e9,
                TimestampFormat::UnixMs => 1e6,
                TimestampFormat::UnixUs => 1e3,
                TimestampFormat::UnixNs => 1.0,
                _ => return Err(None),
            };
            let ns = n.ok_or(None)? * scale;
            if !ns.is_finite() || ns.abs() >= i64::MAX as f64 {
                return Err(None);
            }
            Ok(ns as i64)
        }
        _ => Err(None),
    }
}

/// RSSI and SNR of the gateway that heard the uplink best: the highest `rssi` in
/// `rx_metadata[]` (`channel_rssi` when `rssi` is absent). TTN omits zero values, so a missing
/// `snr` means "unknown" and is not reported.
fn ttn_best_gateway(up: &Json) -> Option<(f64, Option<f64>)> {
    up.get("rx_metadata")?
        .as_array()?
        .iter()
        .filter_map(|g| {
            let rssi = g.get("rssi").or_else(|| g.get("channel_rssi"))?.as_f64()?;
            Some((rssi, g.get("snr").and_then(Json::as_f64)))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

fn parse_json(payload: &[u8]) -> Result<Json, MapError> {
    serde_json::from_slice(payload).map_err(|e| MapError::Json(e.to_string()))
}

fn push_fields<'a>(
    doc: &Json,
    fields: &'a BTreeMap<String, String>,
    ts: Option<TimestampNs>,
    tags: Vec<(&'static str, String)>,
    out: &mut Vec<Sample<'a>>,
    skips: &mut KeySkips,
) -> Result<(), MapError> {
    if fields.is_empty() {
        let mut leaves = Vec::new();
        numeric_leaves(doc, &mut String::new(), true, &mut leaves);
        let mut claims = Claims::default();
        for (name, value) in leaves {
            let Some(name) = claims.claim(name, skips) else {
                continue;
            };
            out.push(Sample {
                quantity: Cow::Owned(name),
                tags: tags.clone(),
                value,
                ts,
            });
        }
        return Ok(());
    }
    for (quantity, path) in fields {
        // A configured field may be absent from a given message (sensors report subsets).
        let Some(v) = lookup(doc, path) else { continue };
        let value = v
            .as_f64()
            .ok_or_else(|| MapError::MissingField(path.clone()))?;
        out.push(Sample {
            // Borrowed from the config: no allocation per field.
            quantity: Cow::Borrowed(quantity.as_str()),
            tags: tags.clone(),
            value,
            ts,
        });
    }
    Ok(())
}

/// Every numeric leaf of `v`, named by its path made snake_case (`SDS0X1.PM2.5` -> `sds0x1_pm2_5`).
/// A leaf under a key that names nothing (`""`, `"#"`) gets the empty name: `valid` is false.
fn numeric_leaves(v: &Json, prefix: &mut String, valid: bool, out: &mut Vec<(String, f64)>) {
    match v {
        Json::Number(n) => {
            if let Some(f) = n.as_f64() {
                out.push((if valid { prefix.clone() } else { String::new() }, f));
            }
        }
        Json::Object(map) => {
            for (k, child) in map {
                let len = prefix.len();
                if !prefix.is_empty() {
                    prefix.push('_');
                }
                let name = quantity_name(k);
                prefix.push_str(&name);
                numeric_leaves(child, prefix, valid && !name.is_empty(), out);
                prefix.truncate(len);
            }
        }
        _ => {}
    }
}

/// Tasmota `tele/<topic>/SENSOR`: `{"Time":..,"SDS0X1":{"PM2.5":4.1},"BME280":{..},"TempUnit":"C"}`.
/// Each object is one sensor (tag `model`); temperatures in F and pressures in mmHg are
/// converted. `Time` is the device's local time without offset: it is the event time only
/// when the subscription names the zone (`local_tz`), or when it carries an offset.
fn map_tasmota(
    doc: &Json,
    local_tz: Option<&jiff::tz::TimeZone>,
    out: &mut Vec<Sample<'_>>,
    skips: &mut KeySkips,
) -> Result<(), MapError> {
    let obj = doc.as_object().ok_or(MapError::NotAnObject)?;
    let ts = match (obj.get("Time").and_then(Json::as_str), local_tz) {
        (Some(t), Some(tz)) => Some(tasmota_time(t, tz)?),
        _ => None,
    };
    let fahrenheit = obj.get("TempUnit").and_then(Json::as_str) == Some("F");
    let mmhg = obj.get("PressureUnit").and_then(Json::as_str) == Some("mmHg");
    for (model, sensor) in obj {
        let Some(fields) = sensor.as_object() else {
            continue;
        };
        let mut claims = Claims::default();
        for (key, v) in fields {
            let Some(mut value) = v.as_f64() else {
                continue;
            };
            let Some(quantity) = claims.claim(quantity_name(key), skips) else {
                continue;
            };
            if fahrenheit && (quantity == "temperature" || quantity == "dew_point") {
                value = (value - 32.0) * 5.0 / 9.0;
            }
            if mmhg && quantity == "pressure" {
                value *= 1.333_223_684;
            }
            out.push(Sample {
                quantity: Cow::Owned(quantity),
                tags: vec![("model", model.to_ascii_lowercase())],
                value,
                ts,
            });
        }
    }
    Ok(())
}

/// Tasmota's `Time` (`2026-11-22T10:00:00`) read in `tz`; with an offset (SetOption52) the
/// offset wins. In the hour that repeats when DST ends the earlier instant is taken.
fn tasmota_time(t: &str, tz: &jiff::tz::TimeZone) -> Result<TimestampNs, MapError> {
    if let Ok(ns) = parse_rfc3339(t) {
        return Ok(ns);
    }
    let bad = || {
        MapError::Timestamp(format!(
            "Tasmota Time {:?}",
            t.chars().take(32).collect::<String>()
        ))
    };
    let civil: jiff::civil::DateTime = t.parse().map_err(|_| bad())?;
    let ts = tz.to_timestamp(civil).map_err(|_| bad())?;
    i64::try_from(ts.as_nanosecond()).map_err(|_| bad())
}

/// InfluxDB line protocol payloads: each numeric field is a quantity; tags are kept.
fn map_line_protocol(
    payload: &[u8],
    out: &mut Vec<Sample<'_>>,
    skips: &mut KeySkips,
) -> Result<(), MapError> {
    use crate::line_protocol::{parse_lines, FieldValue};
    let text = std::str::from_utf8(payload).map_err(|_| MapError::NotUtf8)?;
    for point in parse_lines(text) {
        let point = point.map_err(|e| MapError::LineProtocol(e.to_string()))?;
        let mut claims = Claims::default();
        for (key, value) in point.fields {
            let value = match value {
                FieldValue::Float(f) => f,
                FieldValue::Int(i) => i as f64,
                FieldValue::UInt(u) => u as f64,
                FieldValue::Bool(b) => f64::from(u8::from(b)),
                FieldValue::Str(_) => continue,
            };
            let mut tags: Vec<(&'static str, String)> = Vec::new();
            for (k, v) in &point.tags {
                if let Some(known) = LINE_TAGS.iter().find(|t| **t == k.as_str()) {
                    tags.push((known, v.clone()));
                }
            }
            let Some(quantity) = claims.claim(quantity_name(&key), skips) else {
                continue;
            };
            out.push(Sample {
                quantity: Cow::Owned(quantity),
                tags,
                value,
                ts: point.ts,
            });
        }
    }
    Ok(())
}

/// Tags taken over from line-protocol payloads; others are dropped so a node cannot blow up
/// the series count with arbitrary tags.
const LINE_TAGS: &[&str] = &["sensor", "site", "model", "node", "zone"];

mod fields;
mod names;
mod path;

#[cfg(test)]
mod tests;
