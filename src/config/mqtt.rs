//! `[[mqtt]]`: brokers, their subscriptions and how each payload maps to readings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::reading::{QuantityKind, SeriesKind};

/// One MQTT broker connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Name used in logs and metrics. Default: "host:port".
    #[serde(default)]
    pub name: Option<String>,
    /// Broker host. Default: "127.0.0.1".
    #[serde(default = "default_host")]
    pub host: String,
    /// Broker port. Default: 1883, or 8883 with `[mqtt.tls]`.
    #[serde(default)]
    pub port: Option<u16>,
    /// Client id; must be stable so the broker keeps the session (and QoS1 messages) while
    /// the daemon is down. Default: "citysense-<gateway.id>".
    #[serde(default)]
    pub client_id: Option<String>,
    /// Keep-alive interval in seconds. Default: 30.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
    /// Ask for a fresh session on every connect (loses QoS1 messages sent while down).
    /// Default: false.
    #[serde(default)]
    pub clean_session: bool,
    /// User name. Default: none (anonymous).
    #[serde(default)]
    pub username: Option<String>,
    /// Password. Prefer `password_file`. Default: none.
    #[serde(default)]
    pub password: Option<String>,
    /// File holding the password (e.g. a systemd credential). Default: none.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// TLS settings; presence turns TLS on. Default: plain TCP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Topics to subscribe to and how to read them. At least one.
    #[serde(default)]
    pub subscription: Vec<SubscriptionConfig>,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
const fn default_keep_alive() -> u64 {
    30
}

/// `[mqtt.tls]` and `[output.tls]`. A relative file name is looked up in
/// `$CREDENTIALS_DIRECTORY` first (systemd `LoadCredential=`), like the secrets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of CA certificates to trust. Default: the system store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS. Default: none.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate. Default: none.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

/// How a payload is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// A plain number (ESPHome `<prefix>/sensor/<name>/state`). `NaN`/`None` are skipped.
    Plain,
    /// A JSON object; `fields` maps quantities to paths (default: every numeric leaf).
    Json,
    /// Tasmota `tele/<topic>/SENSOR` JSON: one object per sensor, unit keys honoured.
    Tasmota,
    /// The Things Stack v3 uplink: `uplink_message.decoded_payload` fields, `received_at`.
    Ttn,
    /// InfluxDB line protocol, one or more lines; each field is a quantity.
    LineProtocol,
}

/// How a JSON timestamp is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    /// RFC 3339 string, or a number whose magnitude tells s / ms / us / ns. Default.
    #[default]
    Auto,
    Rfc3339,
    UnixS,
    UnixMs,
    UnixUs,
    UnixNs,
}

/// `[[mqtt.subscription]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionConfig {
    /// Topic pattern. `{name}` matches one level and makes it tag `name`; `{quantity}` names
    /// the quantity, `{_}` matches and ignores, `+` and a trailing `#` work as in MQTT.
    /// Example: "sensors/{site}/{sensor}/{quantity}". Required.
    pub topic: String,
    /// Payload format. Default: "json".
    #[serde(default = "default_format")]
    pub format: PayloadFormat,
    /// QoS of the subscription (0 or 1). Default: 1.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Measurement the windows are written to. Default: chosen by quantity (`air_quality`
    /// for particulate matter and gases, `climate` for temperature/humidity/pressure,
    /// `footfall` for counters, else `sensor`).
    #[serde(default)]
    pub measurement: Option<String>,
    /// Quantity name for `plain` payloads whose topic has no `{quantity}`. Default: none.
    #[serde(default)]
    pub quantity: Option<String>,
    /// Quantity -> JSON path (dots for nesting), for `json`/`ttn`. Default: every numeric leaf,
    /// named by its path with non-alphanumerics turned into `_`.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// JSON path of the event time, for `json`. Default: none (time of receipt).
    #[serde(default)]
    pub timestamp_path: Option<String>,
    /// How `timestamp_path` is written. Default: "auto".
    #[serde(default)]
    pub timestamp_format: TimestampFormat,
    /// Extra tags for this subscription's points. Default: none.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Dotted JSON path of device identifiers (MAC addresses of a Wi-Fi/BLE scanner): a
    /// string, a list of strings, or a path through a list of objects (`probes.mac`). Makes
    /// this an identifier source: identifiers are hashed with a per-window random key, counted
    /// in a HyperLogLog sketch and discarded; only `identifier_quantity` leaves, suppressed
    /// below `privacy.k_min`. `json` only. Default: none.
    #[serde(default)]
    pub identifier_path: Option<String>,
    /// Field name of the distinct-device estimate. Default: "unique_devices".
    #[serde(default = "default_identifier_quantity")]
    pub identifier_quantity: String,
    /// `ttn`: add quantities `rssi` and `snr` from the gateway that heard the uplink best
    /// (`uplink_message.rx_metadata[]`). Default: false.
    #[serde(default)]
    pub ttn_radio: bool,
    /// `ttn`: tag points with `application` = `end_device_ids.application_ids.application_id`.
    /// Default: false.
    #[serde(default)]
    pub ttn_application_tag: bool,
    /// `ttn`: accept uplinks marked `simulated: true` (sent from the console); else they are
    /// skipped and counted. Default: false.
    #[serde(default)]
    pub ttn_simulated: bool,
    /// Quantity -> kind: "gauge", "counter" (each reading is a number of events; the window
    /// field `<quantity>` is their sum) or "counter_total" (a cumulative total; the field is
    /// the increase, resets and wraps handled). Example: `{ in = "counter_total", out =
    /// "counter_total" }`. Default: every quantity is a gauge.
    #[serde(default)]
    pub counters: BTreeMap<String, QuantityKind>,
    /// Value at which this subscription's `counter_total` quantities wrap to 0 (65536 for a
    /// 16-bit counter, 4294967296 for 32-bit). Default: none, every drop is a reset.
    #[serde(default)]
    pub counter_wrap: Option<u64>,
    /// `tasmota`: IANA time zone of the device's clock (e.g. "Europe/Amsterdam"). Tasmota's
    /// `Time` has no UTC offset (unless SetOption52 is on); with this set it becomes the event
    /// time, read in this zone (in the repeated hour at the end of DST, the earlier one).
    /// Default: none, `Time` is ignored and readings are stamped on receipt.
    #[serde(default)]
    pub time_zone: Option<String>,
}

fn default_identifier_quantity() -> String {
    "unique_devices".into()
}

fn default_format() -> PayloadFormat {
    PayloadFormat::Json
}
const fn default_qos() -> u8 {
    1
}

impl MqttConfig {
    /// Port in effect.
    pub fn port(&self) -> u16 {
        self.port
            .unwrap_or(if self.tls.is_some() { 8883 } else { 1883 })
    }

    /// Name used in logs and metrics.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}:{}", self.host, self.port()))
    }

    pub(super) fn check(&self, at: &str, errs: &mut Vec<(String, String)>) {
        if self.host.trim().is_empty() {
            errs.push((format!("{at}.host"), "must not be empty".into()));
        }
        if self.keep_alive_secs < 5 {
            errs.push((format!("{at}.keep_alive_secs"), "must be at least 5".into()));
        }
        if self.password.is_some() && self.password_file.is_some() {
            errs.push((
                format!("{at}.password_file"),
                "set either password or password_file, not both".into(),
            ));
        }
        if self.subscription.is_empty() {
            errs.push((
                at.to_string(),
                "needs at least one [[mqtt.subscription]]".into(),
            ));
        }
        for (j, s) in self.subscription.iter().enumerate() {
            s.check(&format!("{at}.subscription[{j}]"), errs);
        }
    }
}

impl SubscriptionConfig {
    /// The kind of `quantity` as configured in `counters`.
    pub fn series_kind(&self, quantity: &str) -> SeriesKind {
        let kind = self.counters.get(quantity).copied().unwrap_or_default();
        SeriesKind {
            kind,
            wrap: self
                .counter_wrap
                .filter(|_| kind == QuantityKind::CounterTotal),
        }
    }

    fn check(&self, at: &str, errs: &mut Vec<(String, String)>) {
        if let Err(e) = super::TopicPattern::parse(&self.topic) {
            errs.push((format!("{at}.topic"), e.to_string()));
        }
        if self.qos > 1 {
            errs.push((format!("{at}.qos"), "must be 0 or 1".into()));
        }
        if let Some(tz) = &self.time_zone {
            if self.format != PayloadFormat::Tasmota {
                errs.push((
                    format!("{at}.time_zone"),
                    "only used with format = \"tasmota\"".into(),
                ));
            } else if jiff::tz::TimeZone::get(tz).is_err() {
                errs.push((
                    format!("{at}.time_zone"),
                    format!("unknown time zone {tz:?} (IANA name like \"Europe/Amsterdam\")"),
                ));
            }
        }
        if self.identifier_path.is_some() && self.format != PayloadFormat::Json {
            errs.push((
                format!("{at}.identifier_path"),
                "identifier sources must use format = \"json\"".into(),
            ));
        }
        if self
            .identifier_path
            .as_deref()
            .is_some_and(|p| p.trim().is_empty())
            || self.identifier_quantity.trim().is_empty()
        {
            errs.push((
                format!("{at}.identifier_path"),
                "identifier_path and identifier_quantity must not be empty".into(),
            ));
        }
        let ttn_options = self.ttn_radio || self.ttn_application_tag || self.ttn_simulated;
        if ttn_options && self.format != PayloadFormat::Ttn {
            errs.push((
                format!("{at}.format"),
                "ttn_radio, ttn_application_tag and ttn_simulated need format = \"ttn\"".into(),
            ));
        }
        if self.format == PayloadFormat::Plain
            && self.quantity.is_none()
            && !self.topic.contains("{quantity}")
        {
            errs.push((
                format!("{at}.quantity"),
                "plain payloads need `quantity` or `{quantity}` in the topic".into(),
            ));
        }
        if self.counter_wrap.is_some_and(|w| w < 2) {
            errs.push((format!("{at}.counter_wrap"), "must be at least 2".into()));
        }
    }
}
