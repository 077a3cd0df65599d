//! `[air_quality]`: the official averaging periods (`crate::domain::hourly`, `daily`): hourly
//! values with their data capture, which quantities get them, the local day's time zone and
//! the thresholds counted per day and year.

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
    /// IANA time zone of the local calendar day of `air_quality_daily`. Default: the
    /// `[footfall] time_zone`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Thresholds counted on the daily points. Default: the WHO 2021 daily guidelines,
    /// PM2.5 15 and PM10 45 ug/m3 (name "who2021").
    #[serde(default = "default_thresholds")]
    pub threshold: Vec<ThresholdConfig>,
}

/// `[[air_quality.threshold]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdConfig {
    /// Part of the field names (`<quantity>_above_<name>`): lowercase letters, digits, `_`.
    pub name: String,
    pub quantity: String,
    /// "hour" (counts valid hourly means above `value`) or "day" (a valid daily mean above).
    pub period: ThresholdPeriodSetting,
    /// In the quantity's unit (ug/m3).
    pub value: f64,
}

/// `period`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdPeriodSetting {
    Hour,
    Day,
}

fn default_thresholds() -> Vec<ThresholdConfig> {
    [("pm2_5", 15.0), ("pm10", 45.0)]
        .map(|(q, value)| ThresholdConfig {
            name: "who2021".into(),
            quantity: q.into(),
            period: ThresholdPeriodSetting::Day,
            value,
        })
        .to_vec()
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
            time_zone: None,
            threshold: default_thresholds(),
        }
    }
}

impl AirQualityConfig {
    /// The time zone of the local day: `time_zone`, else `footfall_zone`.
    pub fn zone<'a>(&'a self, footfall_zone: &'a str) -> &'a str {
        self.time_zone.as_deref().unwrap_or(footfall_zone)
    }

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
        if let Some(tz) = &self.time_zone {
            if let Err(e) = jiff::tz::TimeZone::get(tz) {
                let msg = format!("time zone {tz:?}: {e}");
                errs.push(("air_quality.time_zone".into(), msg));
            }
        }
        for (i, t) in self.threshold.iter().enumerate() {
            self.check_threshold(i, t, errs);
        }
    }

    fn check_threshold(&self, i: usize, t: &ThresholdConfig, errs: &mut Vec<(String, String)>) {
        let at = format!("air_quality.threshold[{i}]");
        let word = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
        if t.name.is_empty() || !t.name.chars().all(word) {
            let msg = "must be lowercase letters, digits and _ (it is part of field names)";
            errs.push((format!("{at}.name"), msg.into()));
        }
        if !self.quantities.contains(&t.quantity) {
            let msg = "must be one of air_quality.quantities";
            errs.push((format!("{at}.quantity"), msg.into()));
        }
        if !t.value.is_finite() {
            errs.push((format!("{at}.value"), "must be a number".into()));
        }
        let same = |o: &ThresholdConfig| o.name == t.name && o.quantity == t.quantity;
        if self.threshold.iter().take(i).any(same) {
            let msg = "another threshold has this name for this quantity";
            errs.push((format!("{at}.name"), msg.into()));
        }
    }
}
