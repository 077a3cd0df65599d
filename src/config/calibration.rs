//! `[[calibration]]`: per-sensor calibration rules against a reference station
//! (`crate::domain::calibration`), and their checks.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[[calibration]]`: one rule. For a series, the matching rule with the latest `valid_from`
/// at or before the window's start applies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationConfig {
    /// Written as field `calibration_id` on calibrated points. Required.
    pub id: String,
    /// Tags the point must carry, all of them, e.g. `{ sensor = "sds-1" }`. Default: none.
    #[serde(default, rename = "match")]
    pub match_tags: BTreeMap<String, String>,
    /// The quantity calibrated, e.g. "pm2_5". Required.
    pub quantity: String,
    /// RFC 3339 time from which the rule applies. Default: always.
    #[serde(default)]
    pub valid_from: Option<String>,
    /// "linear" (`gain`, `offset`), "polynomial" (`coefficients`, constant first) or
    /// "linear_rh" (`a + b * x + c * RH`, RH the window-mean humidity of the point or site).
    pub model: CalibrationModel,
    #[serde(default)]
    pub gain: Option<f64>,
    #[serde(default)]
    pub offset: Option<f64>,
    #[serde(default)]
    pub coefficients: Vec<f64>,
    #[serde(default)]
    pub a: Option<f64>,
    #[serde(default)]
    pub b: Option<f64>,
    #[serde(default)]
    pub c: Option<f64>,
}

/// `model`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationModel {
    Linear,
    Polynomial,
    LinearRh,
}

/// Most polynomial coefficients (degree 5).
pub const MAX_COEFFICIENTS: usize = 6;

impl CalibrationConfig {
    pub(super) fn check(&self, at: &str, errs: &mut Vec<(String, String)>) {
        let word = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
        if self.id.is_empty() || !self.id.chars().all(word) {
            let msg = "must be letters, digits, _, - or .";
            errs.push((format!("{at}.id"), msg.into()));
        }
        if self.quantity.trim().is_empty() {
            errs.push((format!("{at}.quantity"), "must not be empty".into()));
        }
        if let Some(t) = &self.valid_from {
            if crate::time::parse_rfc3339(t).is_err() {
                let msg = format!("{t:?} is not an RFC 3339 time");
                errs.push((format!("{at}.valid_from"), msg));
            }
        }
        let need = |name: &str, v: Option<f64>, errs: &mut Vec<(String, String)>| {
            if !v.is_some_and(f64::is_finite) {
                let msg = "a finite number is required by this model".to_string();
                errs.push((format!("{at}.{name}"), msg));
            }
        };
        match self.model {
            CalibrationModel::Linear => {
                need("gain", self.gain, errs);
                need("offset", self.offset, errs);
            }
            CalibrationModel::LinearRh => {
                need("a", self.a, errs);
                need("b", self.b, errs);
                need("c", self.c, errs);
            }
            CalibrationModel::Polynomial => {
                let c = &self.coefficients;
                if c.is_empty() || c.len() > MAX_COEFFICIENTS || !c.iter().all(|x| x.is_finite()) {
                    let msg = format!("1 to {MAX_COEFFICIENTS} finite numbers, constant first");
                    errs.push((format!("{at}.coefficients"), msg));
                }
            }
        }
    }
}
