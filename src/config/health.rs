//! `[health]`: settings of the `sensor_health` points (`crate::health`), and the built-in
//! plausible ranges; `[gateway_health]`: the gateway's own board health points
//! (`crate::health::board`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// `[health]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Write `sensor_health` points. Default: true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A sensor is stale (`sensor_up = 0`) after this many expected intervals without a
    /// reading. Default: 3.
    #[serde(default = "default_stale_after")]
    pub stale_after_intervals: u32,
    /// Expected seconds between a sensor's readings. Default: learned per sensor.
    #[serde(default)]
    pub expected_interval_secs: Option<f64>,
    /// A quantity is stuck after this many identical consecutive readings; 0 disables.
    /// Default: 10.
    #[serde(default = "default_stuck_after")]
    pub stuck_after: u32,
    /// Quantities for which repeated values are normal (counters at night). Default: in, out,
    /// count, people, occupancy, passersby, unique_devices.
    #[serde(default = "default_stuck_ignore")]
    pub stuck_ignore: Vec<String>,
    /// Seconds a sensor needs after power-up before its readings are good (PMS5003: 30,
    /// MH-Z19B: 180); 0 = unknown, no `warming_up` field. Default: 0.
    #[serde(default)]
    pub warmup_secs: u64,
    /// Sensors silent this long are no longer reported. Default: 86400.
    #[serde(default = "default_forget_after")]
    pub forget_after_secs: u64,
    /// Plausible range per quantity, `pm2_5 = [0, 1000]`; merged over the built-in ones
    /// (particulate matter 0-1000 ug/m3, temperature -40-85 C, humidity 0-100 %, pressure
    /// 300-1100 hPa, CO2 0-10000 ppm). Default: the built-in ones.
    #[serde(default)]
    pub ranges: BTreeMap<String, [f64; 2]>,
}

const fn default_true() -> bool {
    true
}
const fn default_stale_after() -> u32 {
    3
}
const fn default_stuck_after() -> u32 {
    10
}
const fn default_forget_after() -> u64 {
    86_400
}
fn default_stuck_ignore() -> Vec<String> {
    [
        "in",
        "out",
        "count",
        "people",
        "occupancy",
        "passersby",
        "unique_devices",
    ]
    .map(String::from)
    .to_vec()
}

/// Built-in plausible ranges: the measuring ranges of common sensors, widened a little
/// (SDS011 0-999.9 ug/m3, BME280 -40-85 C and 300-1100 hPa, MH-Z19B up to 10000 ppm).
pub const DEFAULT_RANGES: &[(&str, f64, f64)] = &[
    ("pm1_0", 0.0, 1000.0),
    ("pm2_5", 0.0, 1000.0),
    ("pm4_0", 0.0, 1000.0),
    ("pm10", 0.0, 1000.0),
    ("temperature", -40.0, 85.0),
    ("humidity", 0.0, 100.0),
    ("pressure", 300.0, 1100.0),
    ("co2", 0.0, 10_000.0),
];

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            enabled: true,
            stale_after_intervals: default_stale_after(),
            expected_interval_secs: None,
            stuck_after: default_stuck_after(),
            stuck_ignore: default_stuck_ignore(),
            warmup_secs: 0,
            forget_after_secs: default_forget_after(),
            ranges: BTreeMap::new(),
        }
    }
}

impl HealthConfig {
    pub(super) fn check(&self, errs: &mut Vec<(String, String)>) {
        if self.stale_after_intervals == 0 {
            errs.push(("health.stale_after_intervals".into(), "must be > 0".into()));
        }
        if let Some(i) = self.expected_interval_secs {
            if !(i.is_finite() && i > 0.0) {
                errs.push((
                    "health.expected_interval_secs".into(),
                    "must be a positive number of seconds".into(),
                ));
            }
        }
        for (q, [lo, hi]) in &self.ranges {
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                errs.push((
                    format!("health.ranges.{q}"),
                    "must be [min, max] with min < max".into(),
                ));
            }
        }
    }

    /// The range in effect for `quantity`.
    pub fn range(&self, quantity: &str) -> Option<(f64, f64)> {
        if let Some([lo, hi]) = self.ranges.get(quantity) {
            return Some((*lo, *hi));
        }
        DEFAULT_RANGES
            .iter()
            .find(|(q, _, _)| *q == quantity)
            .map(|(_, lo, hi)| (*lo, *hi))
    }
}

/// `[gateway_health]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayHealthConfig {
    /// Write one `gateway_health` point per window (CPU temperature, throttling, load,
    /// memory, disk, spool, uptime, RSS, clock sync). Default: true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Directory under which `proc/` and `sys/` are read: "/" unless the host's are mounted
    /// elsewhere (a container with the host's `/proc` and `/sys` under `/host`). Default: "/".
    #[serde(default = "default_root")]
    pub root: PathBuf,
}

fn default_root() -> PathBuf {
    PathBuf::from("/")
}

impl Default for GatewayHealthConfig {
    fn default() -> Self {
        GatewayHealthConfig {
            enabled: true,
            root: default_root(),
        }
    }
}
