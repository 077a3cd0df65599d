//! The load generator's pure part (the `citysense-loadgen` binary does the MQTT I/O):
//! which topic and payload message number `i` gets, for each payload format the daemon reads.
//!
//! Message `i` goes to sensor `i % sensors` with per-sensor sequence `i / sensors`, and its
//! values are a function of (sensor, seq) only, in tenths, so the totals a run must leave in the
//! store are known exactly: [`Totals`] adds them up as the generator sends.
//! Every format carries `pm2_5` (and all but `plain` also `pm10`), so a benchmark checks
//! completeness with the sum of `pm2_5_count` fields over all windows.
//!
//! [`feed`] drives the same messages (and SDS011 frames) through the daemon's code in
//! process, for instruction counts.

pub mod feed;

use std::fmt::Write as _;

use crate::time::write_rfc3339;

/// Payload formats, as published by real devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `bench/<sensor>/reading`: about 100 bytes of JSON with an epoch-ms `ts` (event time).
    Json,
    /// ESPHome: `<sensor>/sensor/pm2_5/state`, a plain number (time of receipt).
    Plain,
    /// Tasmota: `tele/<sensor>/SENSOR` with an `SDS011` object (time of receipt).
    Tasmota,
    /// The Things Stack v3 uplink: `v3/bench@ttn/devices/<sensor>/up`, `received_at` RFC 3339.
    Ttn,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "json" => Format::Json,
            "plain" | "esphome" => Format::Plain,
            "tasmota" => Format::Tasmota,
            "ttn" => Format::Ttn,
            _ => return None,
        })
    }

    /// Readings one message yields in the daemon.
    pub fn readings_per_message(self) -> u64 {
        match self {
            Format::Plain => 1,
            _ => 2,
        }
    }

    /// The `[[mqtt.subscription]]` the daemon needs to read this format (TOML, no QoS line).
    pub fn subscription_toml(self) -> &'static str {
        match self {
            Format::Json => concat!(
                "topic = \"bench/{sensor}/reading\"\nformat = \"json\"\n",
                "timestamp_path = \"ts\"\nfields = { pm2_5 = \"pm2_5\", pm10 = \"pm10\" }\n"
            ),
            Format::Plain => "topic = \"{sensor}/sensor/{quantity}/state\"\nformat = \"plain\"\n",
            Format::Tasmota => "topic = \"tele/{sensor}/SENSOR\"\nformat = \"tasmota\"\n",
            Format::Ttn => concat!(
                "topic = \"v3/{_}/devices/{sensor}/up\"\nformat = \"ttn\"\n",
                "fields = { pm2_5 = \"pm2_5\", pm10 = \"pm10\" }\n"
            ),
        }
    }
}

/// PM2.5 of message (sensor, seq) in tenths of ug/m3: 0.0 ..= 99.6, deterministic.
pub fn pm2_5_tenths(sensor: u64, seq: u64) -> u64 {
    (sensor.wrapping_mul(31).wrapping_add(seq.wrapping_mul(17))) % 997
}

/// PM10 in tenths: always above PM2.5, as in real air.
pub fn pm10_tenths(sensor: u64, seq: u64) -> u64 {
    pm2_5_tenths(sensor, seq) * 2 + 13
}

/// What a run sent, to compare with the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub messages: u64,
    pub pm2_5_tenths: u64,
    pub pm10_tenths: u64,
}

impl Totals {
    pub fn add(&mut self, format: Format, sensor: u64, seq: u64) {
        self.messages += 1;
        self.pm2_5_tenths += pm2_5_tenths(sensor, seq);
        if format != Format::Plain {
            self.pm10_tenths += pm10_tenths(sensor, seq);
        }
    }

    pub fn merge(&mut self, other: &Totals) {
        self.messages += other.messages;
        self.pm2_5_tenths += other.pm2_5_tenths;
        self.pm10_tenths += other.pm10_tenths;
    }
}

/// Writes `tenths / 10` with one decimal (`12.3`).
fn tenths(out: &mut String, t: u64) {
    let _ = write!(out, "{}.{}", t / 10, t % 10);
}

/// Topic and payload of message number `i` sent at `now_ms` (Unix ms), into the buffers.
pub fn message(
    format: Format,
    sensors: u64,
    i: u64,
    now_ms: i64,
    topic: &mut String,
    payload: &mut String,
) {
    let (sensor, seq) = (i % sensors.max(1), i / sensors.max(1));
    let (pm25, pm10) = (pm2_5_tenths(sensor, seq), pm10_tenths(sensor, seq));
    topic.clear();
    payload.clear();
    match format {
        Format::Json => {
            let _ = write!(topic, "bench/s{sensor:05}/reading");
            let _ = write!(
                payload,
                "{{\"sensor\":\"s{sensor:05}\",\"seq\":{seq},\"pm2_5\":"
            );
            tenths(payload, pm25);
            payload.push_str(",\"pm10\":");
            tenths(payload, pm10);
            let _ = write!(payload, ",\"fw\":\"1.4.2\",\"rssi\":-67,\"ts\":{now_ms}}}");
        }
        Format::Plain => {
            let _ = write!(topic, "s{sensor:05}/sensor/pm2_5/state");
            tenths(payload, pm25);
        }
        Format::Tasmota => {
            let _ = write!(topic, "tele/s{sensor:05}/SENSOR");
            payload.push_str("{\"Time\":\"2024-11-19T10:00:00\",\"SDS011\":{\"PM2.5\":");
            tenths(payload, pm25);
            payload.push_str(",\"PM10\":");
            tenths(payload, pm10);
            payload.push_str("},\"TempUnit\":\"C\"}");
        }
        Format::Ttn => {
            let _ = write!(topic, "v3/bench@ttn/devices/s{sensor:05}/up");
            let _ = write!(
                payload,
                "{{\"end_device_ids\":{{\"device_id\":\"s{sensor:05}\",\"application_ids\":\
                 {{\"application_id\":\"bench\"}}}},\"received_at\":\""
            );
            rfc3339_ms(payload, now_ms);
            payload.push_str("\",\"uplink_message\":{\"f_port\":1,\"decoded_payload\":{\"pm2_5\":");
            tenths(payload, pm25);
            payload.push_str(",\"pm10\":");
            tenths(payload, pm10);
            payload.push_str("}}}");
        }
    }
}

/// A valid SDS011 data frame (`AA C0 PM25L PM25H PM10L PM10H ID1 ID2 CS AB`) for values in
/// tenths of ug/m3; CS is the low byte of the sum of the six data bytes.
pub fn sds011_frame(pm2_5: u16, pm10: u16) -> [u8; 10] {
    let [a, b] = pm2_5.to_le_bytes();
    let [c, d] = pm10.to_le_bytes();
    let data = [a, b, c, d, 0x12, 0x34];
    let cs = data.iter().fold(0u8, |s, x| s.wrapping_add(*x));
    [0xAA, 0xC0, a, b, c, d, 0x12, 0x34, cs, 0xAB]
}

/// Writes `ms` (Unix ms, UTC) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_ms(out: &mut String, ms: i64) {
    write_rfc3339(out, ms.saturating_mul(1_000_000));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PayloadFormat;
    use crate::sources::mqtt::Mapper;

    fn mapper(format: PayloadFormat, fields: &[(&str, &str)], ts: Option<&str>) -> Mapper {
        Mapper::with_fields(format, fields, ts)
    }

    #[test]
    fn json_is_about_100_bytes_and_maps_to_the_generated_values() {
        let (mut topic, mut payload) = (String::new(), String::new());
        message(
            Format::Json,
            1000,
            123_456,
            1_732_000_000_123,
            &mut topic,
            &mut payload,
        );
        assert_eq!(topic, "bench/s00456/reading");
        assert!((90..=110).contains(&payload.len()), "{payload}");
        let m = mapper(
            PayloadFormat::Json,
            &[("pm2_5", "pm2_5"), ("pm10", "pm10")],
            Some("ts"),
        );
        let mut out = Vec::new();
        m.map(payload.as_bytes(), None, &mut out).unwrap();
        let pm25 = out.iter().find(|s| s.quantity == "pm2_5").unwrap();
        assert_eq!(pm25.value, pm2_5_tenths(456, 123) as f64 / 10.0);
        // Epoch ms go through f64: exact to well under a microsecond.
        let ts = pm25.ts.unwrap();
        assert!((ts - 1_732_000_000_123_000_000).abs() < 1000, "{ts}");
    }

    #[test]
    fn ttn_time_and_tasmota_values_parse() {
        let (mut topic, mut payload) = (String::new(), String::new());
        message(
            Format::Ttn,
            10,
            13,
            1_732_000_000_123,
            &mut topic,
            &mut payload,
        );
        assert_eq!(topic, "v3/bench@ttn/devices/s00003/up");
        let m = mapper(PayloadFormat::Ttn, &[("pm2_5", "pm2_5")], None);
        let mut out = Vec::new();
        m.map(payload.as_bytes(), None, &mut out).unwrap();
        assert_eq!(out[0].ts, Some(1_732_000_000_123_000_000));
        assert_eq!(out[0].value, pm2_5_tenths(3, 1) as f64 / 10.0);
        let (mut topic, mut tasmota) = (String::new(), String::new());
        message(Format::Tasmota, 10, 13, 0, &mut topic, &mut tasmota);
        let tm = mapper(PayloadFormat::Tasmota, &[], None);
        let mut out = Vec::new();
        tm.map(tasmota.as_bytes(), None, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        let pm10 = out.iter().find(|s| s.quantity == "pm10").unwrap();
        assert_eq!(pm10.value, pm10_tenths(3, 1) as f64 / 10.0);
    }

    #[test]
    fn civil_dates_round_trip() {
        let mut s = String::new();
        rfc3339_ms(&mut s, 951_827_696_007); // 2000-02-29 is a leap day
        assert_eq!(s, "2000-02-29T12:34:56.007Z");
    }
}
