//! Configuration: the TOML file's shape (serde, `deny_unknown_fields`), loading with errors that
//! name file, line and key, and the semantic checks `citysensed validate` runs.
//!
//! Source kinds are separate arrays (`[[mqtt]]`, `[[serial]]`, `[simulator]`) rather than one
//! internally tagged `[[source]]` list: serde buffers tagged enums, which throws away the spans
//! that make "file:line: key" errors possible.

mod aggregation;
mod air_quality;
mod calibration;
mod clock;
mod diff;
mod domain;
mod files;
mod health;
mod locate;
mod mqtt;
mod output;
mod outputs;
mod privacy;
mod serial;
mod spans;
mod state;
mod tls;
mod tls_server;
mod topic;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use aggregation::{AggregationConfig, Stat, MAX_QUANTILES};
pub use air_quality::{
    AirQualityConfig, ThresholdConfig, ThresholdPeriodSetting, DEFAULT_MIN_COVERAGE,
};
pub use calibration::{CalibrationConfig, CalibrationModel, MAX_COEFFICIENTS};
pub use clock::{ClockConfig, SyncMode};
pub use diff::{config_hash, mqtt_files_digest, restart_keys, serial_files_digest};
pub use domain::{
    AqiConfig, EaqiSetting, FootfallConfig, HumidityCorrectionConfig, HumidityMethod,
    LkiTopEdgeConfig, Rebase, RhFromSetting,
};
pub use health::{GatewayHealthConfig, HealthConfig, DEFAULT_RANGES};
pub use locate::{ConfigError, ConfigErrors};
pub use mqtt::{MqttConfig, PayloadFormat, SubscriptionConfig, TimestampFormat, TlsConfig};
pub use output::{MqttPayload, OutputApi, OutputConfig, PROXY_NONE};
pub use outputs::{OutputFilter, Outputs, DEFAULT_OUTPUT, MAX_OUTPUT_NAME};
pub use privacy::PrivacyConfig;
pub use serial::{ProfileProblem, ProfileSpec, ProfileTable, SerialConfig};
pub use state::StateConfig;
pub use tls::TlsProblem;
pub use tls_server::ServerTlsConfig;
pub use topic::{Captures, TopicError, TopicPattern};

/// The commented example printed by `citysensed gen-config`; a golden test keeps it parseable.
pub const EXAMPLE: &str = include_str!("example.toml");
/// The embedded configuration `citysensed demo` runs: simulated sensors, stdout output.
pub const DEMO: &str = include_str!("demo.toml");

/// What `validate` and `run` say about a configuration without sources.
pub const NO_SOURCE: &str = "no source configured: citysensed starts and stays idle (no readings, \
     no windows); add an [[mqtt]] or [[serial]] section";

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who this gateway is. Required.
    pub gateway: GatewayConfig,
    /// [`config_hash`] of the text this config was parsed from (`citysense_config_info`).
    #[serde(skip)]
    pub text_hash: String,
    /// How readings become windows. Default: see [`AggregationConfig`].
    #[serde(default)]
    pub aggregation: AggregationConfig,
    /// MQTT brokers to subscribe to. Default: none.
    #[serde(default)]
    pub mqtt: Vec<MqttConfig>,
    /// Serial ports with one sensor each. Default: none.
    #[serde(default)]
    pub serial: Vec<SerialConfig>,
    /// Built-in simulated sensors (the demo). Default: off.
    #[serde(default)]
    pub simulator: Option<SimulatorConfig>,
    /// Where windows go: `[[output]]` tables (or one `[output]`). Required.
    pub output: Outputs,
    /// The on-disk store-and-forward buffer. Default: see [`SpoolConfig`].
    #[serde(default)]
    pub spool: SpoolConfig,
    /// Prometheus `/metrics` and `/healthz`. Default: 127.0.0.1:9273.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Device-identifier handling. Default: see [`PrivacyConfig`].
    #[serde(default)]
    pub privacy: PrivacyConfig,
    /// `sensor_health` points. Default: see [`HealthConfig`].
    #[serde(default)]
    pub health: HealthConfig,
    /// The gateway's own `gateway_health` points. Default: on.
    #[serde(default)]
    pub gateway_health: GatewayHealthConfig,
    /// Clock sync detection and step handling. Default: see [`ClockConfig`].
    #[serde(default)]
    pub clock: ClockConfig,
    /// Air-quality indices per window. Default: EAQI 2024 and LKI on.
    #[serde(default)]
    pub aqi: AqiConfig,
    /// Hourly values with data capture (official averaging periods). Default: off.
    #[serde(default)]
    pub air_quality: AirQualityConfig,
    /// Per-sensor calibration rules. Default: none.
    #[serde(default)]
    pub calibration: Vec<CalibrationConfig>,
    /// Humidity correction rules for PM sensors. Default: none.
    #[serde(default)]
    pub humidity_correction: Vec<HumidityCorrectionConfig>,
    /// Footfall occupancy settings. Default: re-base at 04:00 Europe/Amsterdam.
    #[serde(default)]
    pub footfall: FootfallConfig,
    /// The state file kept across restarts. Default: see [`StateConfig`].
    #[serde(default)]
    pub state: StateConfig,
}

/// `[gateway]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Gateway id, written as tag `gateway` on every point. Required.
    pub id: String,
    /// Site name, written as tag `site` unless a source sets its own. Default: none.
    #[serde(default)]
    pub site: Option<String>,
    /// Extra tags on every point. Default: none.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// `[simulator]`: deterministic-shape random walks, for the demo and for trying a setup.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Simulated air-quality sensors (PM2.5, PM10, CO2 each). Default: 2.
    #[serde(default = "default_sim_sensors")]
    pub air_sensors: u32,
    /// Simulated people counters (in/out). Default: 1.
    #[serde(default = "default_sim_counters")]
    pub counters: u32,
    /// Milliseconds between readings of one sensor. Default: 250.
    #[serde(default = "default_sim_interval_ms")]
    pub interval_ms: u64,
}

const fn default_sim_sensors() -> u32 {
    2
}
const fn default_sim_counters() -> u32 {
    1
}
const fn default_sim_interval_ms() -> u64 {
    250
}

/// `[spool]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Directory of the spool. Default: `$STATE_DIRECTORY/spool` under systemd, else
    /// `/var/lib/citysense/spool`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Upper bound of the spool on disk in bytes; when full the oldest batch is dropped and
    /// counted. Minimum 1 MiB. Default: 268435456 (256 MiB).
    #[serde(default = "default_spool_max_bytes")]
    pub max_bytes: u64,
    /// fsync each appended batch (group commit: one per window close). Turning it off trades
    /// the power-cut guarantee for SD-card wear. Default: true.
    #[serde(default = "default_true")]
    pub fsync: bool,
}

/// Smallest spool the daemon accepts.
pub const MIN_SPOOL_BYTES: u64 = 1 << 20;

const fn default_spool_max_bytes() -> u64 {
    256 << 20
}
const fn default_true() -> bool {
    true
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: None,
            max_bytes: default_spool_max_bytes(),
            fsync: true,
        }
    }
}

impl SpoolConfig {
    /// The spool directory in effect.
    pub fn dir(&self) -> PathBuf {
        if let Some(dir) = &self.dir {
            return dir.clone();
        }
        match std::env::var_os("STATE_DIRECTORY") {
            // systemd may pass several colon-separated dirs; ours is the first.
            Some(v) => {
                let first = v
                    .to_string_lossy()
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .to_string();
                PathBuf::from(first).join("spool")
            }
            None => PathBuf::from("/var/lib/citysense/spool"),
        }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the HTTP endpoint serving `/` (status page), `/api/v1/status`, `/metrics`
    /// and `/healthz`; empty disables it. Default: "127.0.0.1:9273". An address beyond
    /// loopback requires `token_file`.
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
    /// File holding the access token; when set, every request must carry it (`Authorization:
    /// Bearer <token>`, or HTTP Basic with the token as password). A relative name is looked
    /// up in `$CREDENTIALS_DIRECTORY` first (systemd `LoadCredential=`). Default: none.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// `[metrics.tls]`: serve HTTPS with `cert_file` and `key_file`. Default: plain HTTP.
    #[serde(default)]
    pub tls: Option<ServerTlsConfig>,
}

fn default_metrics_listen() -> String {
    "127.0.0.1:9273".into()
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: default_metrics_listen(),
            token_file: None,
            tls: None,
        }
    }
}

impl Config {
    /// Reads and checks `path`, and the files it names (secrets, TLS files, the spool
    /// directory) the way the daemon opens them. Every error found is returned, each with
    /// file, line and key.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::load_with_text(path).map(|(cfg, _)| cfg)
    }

    /// [`Config::load`], also returning the text the config was read from (its
    /// [`config_hash`] names the running config in `/metrics`).
    pub fn load_with_text(path: &Path) -> Result<(Config, String), ConfigErrors> {
        let text = read(path)?;
        let (cfg, mut errors) = Config::parse_with_errors(&text, path)?;
        errors.extend(
            files::check(&cfg)
                .into_iter()
                .map(|(key, msg)| locate::semantic(&text, path, &key, msg)),
        );
        if errors.is_empty() {
            Ok((cfg, text))
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Reads and checks `path` without looking at the files it names (for `spool inspect`,
    /// which needs only the spool directory).
    pub fn load_without_files(path: &Path) -> Result<Config, ConfigErrors> {
        Config::parse(&read(path)?, path)
    }

    /// Parses and checks `text`; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigErrors> {
        let (cfg, errors) = Config::parse_with_errors(text, origin)?;
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The parsed config and its semantic errors; `Err` only if it does not deserialize.
    fn parse_with_errors(
        text: &str,
        origin: &Path,
    ) -> Result<(Config, Vec<ConfigError>), ConfigErrors> {
        let mut cfg: Config = locate::deserialize_all(text, origin)?;
        cfg.text_hash = config_hash(text);
        let errors = cfg
            .check()
            .into_iter()
            .map(|(key, msg)| locate::semantic(text, origin, &key, msg))
            .collect();
        Ok((cfg, errors))
    }

    /// Semantic checks serde cannot express, as (key path, message).
    fn check(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        if self.gateway.id.trim().is_empty() {
            errs.push(("gateway.id".into(), "must not be empty".into()));
        }
        self.aggregation.check(&mut errs);
        for (i, m) in self.mqtt.iter().enumerate() {
            m.check(&format!("mqtt[{i}]"), &mut errs);
        }
        for (i, s) in self.serial.iter().enumerate() {
            s.check(&format!("serial[{i}]"), &mut errs);
            if self.serial.iter().take(i).any(|o| o.name == s.name) {
                errs.push((
                    format!("serial[{i}].name"),
                    "used by another [[serial]]".into(),
                ));
            }
            if self.serial.iter().take(i).any(|o| o.port == s.port) {
                errs.push((
                    format!("serial[{i}].port"),
                    "used by another [[serial]]".into(),
                ));
            }
        }
        self.output.check(&mut errs);
        self.privacy.check(&mut errs);
        self.health.check(&mut errs);
        self.clock.check(&mut errs);
        self.aqi.check(&mut errs);
        (self.air_quality).check(self.aggregation.window_secs, &mut errs);
        for (i, h) in self.humidity_correction.iter().enumerate() {
            h.check(&format!("humidity_correction[{i}]"), &mut errs);
        }
        for (i, c) in self.calibration.iter().enumerate() {
            c.check(&format!("calibration[{i}]"), &mut errs);
        }
        self.footfall.check(&mut errs);
        self.state.check(&mut errs);
        if self.spool.max_bytes < MIN_SPOOL_BYTES {
            errs.push((
                "spool.max_bytes".into(),
                format!("must be at least {MIN_SPOOL_BYTES} (1 MiB)"),
            ));
        }
        match self.metrics.listen.parse::<std::net::SocketAddr>() {
            _ if self.metrics.listen.is_empty() => {}
            Err(_) => errs.push((
                "metrics.listen".into(),
                "must be an address like 127.0.0.1:9273".into(),
            )),
            Ok(a) if !a.ip().is_loopback() && self.metrics.token_file.is_none() => errs.push((
                "metrics.listen".into(),
                format!(
                    "{a} is reachable beyond this machine: set metrics.token_file (an access \
                     token) or listen on 127.0.0.1"
                ),
            )),
            Ok(_) => {}
        }
        errs
    }

    /// True when no source is configured: the daemon then runs idle (see [`NO_SOURCE`]).
    pub fn has_no_source(&self) -> bool {
        self.mqtt.is_empty() && self.serial.is_empty() && self.simulator.is_none()
    }

    /// Things that are valid but probably not what the operator wants, for `validate` to
    /// print. Not errors: the packaged default config has no source and prints windows, so
    /// that it passes `validate` before the operator has edited it.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.has_no_source() {
            warnings.push(NO_SOURCE.to_string());
        }
        if self.output.is_stdout() {
            warnings.push(
                "output.api = \"stdout\": windows are printed on standard output (the journal \
                 under systemd), not sent to a store"
                    .to_string(),
            );
        }
        warnings
    }

    /// Tags put on every point: `gateway`, `site` (if set) and the configured extras.
    pub fn gateway_tags(&self) -> Vec<(String, String)> {
        let mut tags = vec![("gateway".to_string(), self.gateway.id.clone())];
        if let Some(site) = &self.gateway.site {
            tags.push(("site".into(), site.clone()));
        }
        tags.extend(
            self.gateway
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        tags
    }
}

/// The configuration file's text, read bounded (see [`crate::fs_limits`]).
fn read(path: &Path) -> Result<String, ConfigErrors> {
    crate::fs_limits::read_text(
        path,
        crate::fs_limits::MAX_CONFIG_BYTES,
        "a configuration file",
    )
    .map_err(|e| ConfigErrors::single(ConfigError::new(path, 0, "", format!("cannot read: {e}"))))
}

#[cfg(test)]
mod tests;
