//! `[air_quality]`: the official averaging periods (`crate::domain::hourly`): hourly values
//! with their data capture, and which quantities get them.

use serde::Deserialize;

/// `[air_quality]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AirQualityConfig {
    /// Emit `air_quality_hourly` points: hourly means with coverage and validity, 24-hour
    /// running means. Needs `aggregation.window_secs` to divide 3600. Default: false.
    #[serde(default)]
    pub hourly: bool,
    /// Share of an hour's windows that must have readings for the hour to be valid, 0 < x <= 1.
    /// Default: 0.75 (EU 2008/50/EC Annex VII: 45 minutes of an hour).
    #[serde(default = "default_min_coverage")]
    pub min_coverage: f64,
    /// Quantities that get hourly values. Default: pm2_5, pm10, no2, o3, so2.
    #[serde(default = "default_quantities")]
    pub quantities: Vec<String>,
}

/// EU data-capture rule for an hourly value.
pub const DEFAULT_MIN_COVERAGE: f64 = 0.75;

fn default_min_coverage() -> f64 {
    DEFAULT_MIN_COVERAGE
}

fn default_quantities() -> Vec<String> {
    ["pm2_5", "pm10", "no2", "o3", "so2"]
        .map(String::from)
        .to_vec()
}

impl Default for AirQualityConfig {
    fn default() -> Self {
        AirQualityConfig {
            hourly: false,
            min_coverage: DEFAULT_MIN_COVERAGE,
            quantities: default_quantities(),
        }
    }
}

impl AirQualityConfig {
    /// `window_secs` is `[aggregation] window_secs`: an hour must hold whole windows.
    pub(super) fn check(&self, window_secs: u64, errs: &mut Vec<(String, String)>) {
        if !(self.min_coverage > 0.0 && self.min_coverage <= 1.0) {
            errs.push((
                "air_quality.min_coverage".into(),
                "must be > 0 and <= 1".into(),
            ));
        }
        if self.quantities.iter().any(|q| q.trim().is_empty()) {
            errs.push((
                "air_quality.quantities".into(),
                "names must not be empty".into(),
            ));
        }
        if self.hourly && (window_secs == 0 || 3600 % window_secs != 0) {
            errs.push((
                "air_quality.hourly".into(),
                format!(
                    "needs aggregation.window_secs to divide 3600 (an hour of whole windows); \
                     it is {window_secs}"
                ),
            ));
        }
    }
}
