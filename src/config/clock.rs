//! `[clock]`: settings of clock sync detection and step handling (`crate::clock`).

use serde::Deserialize;

/// `[clock]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockConfig {
    /// How to tell that the wall clock is synchronised: "auto" (the kernel where the sandbox
    /// lets the daemon ask it, else systemd-timesyncd's flag), "kernel" (adjtimex; works with
    /// systemd-timesyncd, chrony and ntpd), "timesyncd" (`/run/systemd/timesync/synchronized`
    /// exists) or "assume" (always; for gateways with a battery-backed RTC). Default: "auto".
    #[serde(default)]
    pub sync: SyncMode,
    /// A change of `wall - boot` larger than this between two checks (200 ms apart) is a
    /// clock step; smaller changes are slewing. Default: 1.0.
    #[serde(default = "default_step_threshold_secs")]
    pub step_threshold_secs: f64,
    /// Readings held in memory while the clock is unsynchronised (24 bytes each); past this
    /// the oldest are dropped and counted. Default: 131072 (3 MiB).
    #[serde(default = "default_hold_max_readings")]
    pub hold_max_readings: usize,
}

const fn default_step_threshold_secs() -> f64 {
    1.0
}
const fn default_hold_max_readings() -> usize {
    131_072
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            sync: SyncMode::default(),
            step_threshold_secs: default_step_threshold_secs(),
            hold_max_readings: default_hold_max_readings(),
        }
    }
}

impl ClockConfig {
    /// Semantic checks, as (key path, message).
    pub(super) fn check(&self, errs: &mut Vec<(String, String)>) {
        if !(self.step_threshold_secs.is_finite()
            && self.step_threshold_secs >= 0.01
            && self.step_threshold_secs <= 3600.0)
        {
            errs.push((
                "clock.step_threshold_secs".into(),
                "must be between 0.01 and 3600".into(),
            ));
        }
        if self.hold_max_readings > 16 << 20 {
            errs.push((
                "clock.hold_max_readings".into(),
                "must be at most 16777216 (384 MiB)".into(),
            ));
        }
    }

    /// The step threshold in ns.
    pub fn step_threshold_ns(&self) -> i64 {
        (self.step_threshold_secs * 1e9) as i64
    }
}

/// `clock.sync`: how to tell that the wall clock is synchronised (see `crate::clock::sync`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    #[default]
    Auto,
    Kernel,
    Timesyncd,
    Assume,
}

impl SyncMode {
    pub fn label(self) -> &'static str {
        match self {
            SyncMode::Auto => "auto",
            SyncMode::Kernel => "kernel",
            SyncMode::Timesyncd => "timesyncd",
            SyncMode::Assume => "assume",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks() {
        let mut errs = Vec::new();
        ClockConfig::default().check(&mut errs);
        assert!(errs.is_empty());
        let bad = ClockConfig {
            step_threshold_secs: 0.0,
            ..ClockConfig::default()
        };
        bad.check(&mut errs);
        assert_eq!(errs[0].0, "clock.step_threshold_secs");
    }
}
