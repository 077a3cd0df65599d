//! What the MQTT output publishes for one spooled point: its topic (a template over the
//! measurement and the tags) and its payload, one JSON object (schema in the README) or
//! the point's own line of line protocol. Pure functions over a parsed line.

use serde_json::{json, Map, Value};

use crate::config::MqttPayload;
use crate::line_protocol::{parse_line, FieldValue, Point};

/// The topic template used when an output sets none.
pub const DEFAULT_TOPIC: &str = "citysense/{gateway}/{measurement}/{sensor}";

/// One message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Builds the message of one line; `None` for a line that does not parse (never one the
/// encoder wrote) or without a timestamp. `window_ns` is the window length (its end).
pub fn message(
    line: &[u8],
    template: &str,
    format: MqttPayload,
    window_ns: i64,
) -> Option<Message> {
    let text = std::str::from_utf8(line).ok()?;
    let point = parse_line(text).ok()?;
    let start = point.ts?;
    let topic = topic(template, &point);
    let payload = match format {
        MqttPayload::LineProtocol => {
            let mut l = text.trim_end_matches(['\n', '\r']).as_bytes().to_vec();
            l.push(b'\n');
            l
        }
        MqttPayload::Json => json_of(&point, start, start.saturating_add(window_ns)),
    };
    Some(Message { topic, payload })
}

/// `template` with `{measurement}` and `{<tag>}` replaced. A value is made safe for one
/// topic level (`/`, `+`, `#` become `_`); a tag the point lacks becomes `_`.
pub fn topic(template: &str, p: &Point) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(rest.get(..open).unwrap_or_default());
        let after = rest.get(open + 1..).unwrap_or_default();
        let Some(close) = after.find('}') else {
            out.push_str(rest.get(open..).unwrap_or_default());
            return out;
        };
        let name = after.get(..close).unwrap_or_default();
        let value = if name == "measurement" {
            Some(p.measurement.as_str())
        } else {
            p.tags
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let level: String = value
            .unwrap_or("_")
            .chars()
            .map(|c| {
                if matches!(c, '/' | '+' | '#' | '\0') {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        out.push_str(if level.is_empty() { "_" } else { &level });
        rest = after.get(close + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// Units of the quantities the gateway knows, by field-name prefix `<quantity>_`, in the
/// notation of the sensor profiles.
const UNITS: [(&str, &str); 8] = [
    ("pm1_0_", "ug/m3"),
    ("pm2_5_", "ug/m3"),
    ("pm4_0_", "ug/m3"),
    ("pm10_", "ug/m3"),
    ("temperature_", "C"),
    ("humidity_", "%"),
    ("pressure_", "hPa"),
    ("co2_", "ppm"),
];

/// The unit of field `key` where known: a statistic of a known quantity (not its count).
fn unit_of(key: &str) -> Option<&'static str> {
    let (prefix, unit) = UNITS.iter().find(|(p, _)| key.starts_with(p))?;
    let stat = key.get(prefix.len()..)?;
    (stat != "count" && !stat.ends_with("_count")).then_some(*unit)
}

/// The JSON payload (see the README for the schema).
fn json_of(p: &Point, start: i64, end: i64) -> Vec<u8> {
    let tags: Map<String, Value> = p
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    let fields: Map<String, Value> = p
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), field(v)))
        .collect();
    let units: Map<String, Value> = p
        .fields
        .iter()
        .filter_map(|(k, _)| Some((k.clone(), Value::from(unit_of(k)?))))
        .collect();
    let ms = |ns: i64| ns.div_euclid(1_000_000);
    let v = json!({
        "measurement": p.measurement,
        "tags": tags,
        "window": {
            "start": crate::time::format_rfc3339(start),
            "end": crate::time::format_rfc3339(end),
            "start_ms": ms(start),
            "end_ms": ms(end),
        },
        "fields": fields,
        "units": units,
    });
    v.to_string().into_bytes()
}

fn field(v: &FieldValue) -> Value {
    match v {
        FieldValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        FieldValue::Int(i) => Value::from(*i),
        FieldValue::UInt(u) => Value::from(*u),
        FieldValue::Bool(b) => Value::from(*b),
        FieldValue::Str(s) => Value::from(s.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &[u8] =
        b"air_quality,gateway=gw-1,sensor=a/b,site=centrum pm2_5_mean=3.5,pm2_5_count=4i 1714564800000000000\n";

    #[test]
    fn json_has_measurement_tags_window_and_fields() {
        let m = message(LINE, DEFAULT_TOPIC, MqttPayload::Json, 60_000_000_000).unwrap();
        assert_eq!(m.topic, "citysense/gw-1/air_quality/a_b");
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v["measurement"], "air_quality");
        assert_eq!(v["tags"]["site"], "centrum");
        assert_eq!(v["tags"]["sensor"], "a/b");
        assert_eq!(v["window"]["start"], "2024-05-01T12:00:00.000Z");
        assert_eq!(v["window"]["end"], "2024-05-01T12:01:00.000Z");
        assert_eq!(v["window"]["start_ms"], 1_714_564_800_000i64);
        assert_eq!(v["window"]["end_ms"], 1_714_564_860_000i64);
        assert_eq!(v["fields"]["pm2_5_mean"], 3.5);
        assert_eq!(v["fields"]["pm2_5_count"], 4);
        assert_eq!(v["units"]["pm2_5_mean"], "ug/m3");
        assert!(
            v["units"].get("pm2_5_count").is_none(),
            "a count has no unit"
        );
        assert_eq!(unit_of("pm10_p95"), Some("ug/m3"));
        assert_eq!(unit_of("pm1_0_mean"), Some("ug/m3"));
        assert_eq!((unit_of("co2_last"), unit_of("eaqi")), (Some("ppm"), None));
    }

    #[test]
    fn line_protocol_is_the_line_and_missing_tags_are_placeholders() {
        let m = message(
            LINE,
            "x/{site}/{zone}/{measurement}",
            MqttPayload::LineProtocol,
            1,
        )
        .unwrap();
        assert_eq!(m.topic, "x/centrum/_/air_quality");
        assert_eq!(m.payload, LINE);
        assert!(message(b"garbage", DEFAULT_TOPIC, MqttPayload::Json, 1).is_none());
        assert!(
            message(b"m v=1", DEFAULT_TOPIC, MqttPayload::Json, 1).is_none(),
            "no timestamp"
        );
        let p = parse_line("m,t=+# v=1 1").unwrap();
        assert_eq!(topic("a/{t}/{unclosed", &p), "a/__/{unclosed");
    }
}
