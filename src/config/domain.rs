//! `[aqi]`, `[[humidity_correction]]` and `[footfall]`: settings of the domain layer
//! (`crate::domain`), their checks, and the parsed footfall re-base time ([`Rebase`]).

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use jiff::SignedDuration;
use serde::Deserialize;

/// `[aqi]`: indices computed from each window's pollutant means.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AqiConfig {
    /// European Air Quality Index band table: "2024" (ETC HE Report 2024/17, current), "2017"
    /// (the previous table) or "off". Default: "2024".
    #[serde(default)]
    pub eaqi: EaqiSetting,
    /// Emit the RIVM Luchtkwaliteitsindex (1-11) as field `lki`. Default: true.
    #[serde(default = "default_true")]
    pub lki: bool,
    /// Lower edge of LKI 11 per pollutant in ug/m3 (not settled in public sources).
    /// Default: pm2_5 = 140, pm10 = 200, no2 = 200, o3 = 240.
    #[serde(default)]
    pub lki_top_edge: LkiTopEdgeConfig,
}

impl Default for AqiConfig {
    fn default() -> Self {
        AqiConfig {
            eaqi: EaqiSetting::default(),
            lki: true,
            lki_top_edge: LkiTopEdgeConfig::default(),
        }
    }
}

/// `[aqi] eaqi`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum EaqiSetting {
    #[default]
    #[serde(rename = "2024")]
    V2024,
    #[serde(rename = "2017")]
    V2017,
    #[serde(rename = "off")]
    Off,
}

/// `[aqi.lki_top_edge]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LkiTopEdgeConfig {
    /// Default: 140.
    #[serde(default = "default_top_pm2_5")]
    pub pm2_5: f64,
    /// Default: 200.
    #[serde(default = "default_top_200")]
    pub pm10: f64,
    /// Default: 200.
    #[serde(default = "default_top_200")]
    pub no2: f64,
    /// Default: 240.
    #[serde(default = "default_top_o3")]
    pub o3: f64,
}

const fn default_true() -> bool {
    true
}
const fn default_top_pm2_5() -> f64 {
    140.0
}
const fn default_top_200() -> f64 {
    200.0
}
const fn default_top_o3() -> f64 {
    240.0
}

impl Default for LkiTopEdgeConfig {
    fn default() -> Self {
        LkiTopEdgeConfig {
            pm2_5: default_top_pm2_5(),
            pm10: default_top_200(),
            no2: default_top_200(),
            o3: default_top_o3(),
        }
    }
}

/// `[[humidity_correction]]`: one rule; the first rule whose `match` fits a point applies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HumidityCorrectionConfig {
    /// Tags a PM point must carry, all of them, e.g. `{ sensor = "sds-1" }`.
    /// Default: none (every point with PM).
    #[serde(default, rename = "match")]
    pub match_tags: BTreeMap<String, String>,
    /// Correction formula; only "kappa_koehler" (Crilley et al. 2018). Default: "kappa_koehler".
    #[serde(default)]
    pub method: HumidityMethod,
    /// Hygroscopicity parameter kappa of the aerosol, 0 < kappa <= 1. Default: 0.36.
    #[serde(default = "default_kappa")]
    pub kappa: f64,
    /// Relative humidity (percent) above which the correction uses the cap and flags the
    /// window `rh_capped = true`; 50..=99. Default: 95.
    #[serde(default = "default_rh_cap")]
    pub rh_cap: f64,
    /// Which humidity series belong to a PM point: "site" (same `site` tag) or "sensor" (same
    /// `sensor` tag); a humidity series on the PM point itself always does. Default: "site".
    #[serde(default)]
    pub rh_from: RhFromSetting,
    /// Quantities to correct. Default: every quantity starting with `pm`.
    #[serde(default)]
    pub quantities: Vec<String>,
}

/// Default hygroscopicity parameter.
pub const DEFAULT_KAPPA: f64 = 0.36;
/// Default RH cap in percent.
pub const DEFAULT_RH_CAP: f64 = 95.0;

const fn default_kappa() -> f64 {
    DEFAULT_KAPPA
}
const fn default_rh_cap() -> f64 {
    DEFAULT_RH_CAP
}

/// `method`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HumidityMethod {
    #[default]
    KappaKoehler,
}

/// `rh_from`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RhFromSetting {
    #[default]
    Site,
    Sensor,
}

/// `[footfall]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FootfallConfig {
    /// Local time of day (HH:MM) at which every zone's occupancy is set back to 0; "" never.
    /// Default: "04:00".
    #[serde(default = "default_rebase_at")]
    pub rebase_at: String,
    /// IANA time zone of `rebase_at`, from the system tzdb. Default: "Europe/Amsterdam".
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

fn default_rebase_at() -> String {
    "04:00".into()
}
fn default_time_zone() -> String {
    "Europe/Amsterdam".into()
}

impl Default for FootfallConfig {
    fn default() -> Self {
        FootfallConfig {
            rebase_at: default_rebase_at(),
            time_zone: default_time_zone(),
        }
    }
}

impl AqiConfig {
    pub(super) fn check(&self, errs: &mut Vec<(String, String)>) {
        let t = &self.lki_top_edge;
        // The 11 edge must lie above the 10 edge (the last of crate::domain::aqi::LKI_EDGES).
        for (name, value, above) in [
            ("pm2_5", t.pm2_5, 100.0),
            ("pm10", t.pm10, 150.0),
            ("no2", t.no2, 150.0),
            ("o3", t.o3, 200.0),
        ] {
            if !(value.is_finite() && value > above) {
                errs.push((
                    format!("aqi.lki_top_edge.{name}"),
                    format!("must be above {above} (the edge of LKI 10)"),
                ));
            }
        }
    }
}

impl HumidityCorrectionConfig {
    pub(super) fn check(&self, at: &str, errs: &mut Vec<(String, String)>) {
        if !(self.kappa > 0.0 && self.kappa <= 1.0) {
            errs.push((format!("{at}.kappa"), "must be > 0 and <= 1".into()));
        }
        if !(50.0..=99.0).contains(&self.rh_cap) {
            errs.push((format!("{at}.rh_cap"), "must be between 50 and 99".into()));
        }
        if self.quantities.iter().any(|q| q.trim().is_empty()) {
            errs.push((format!("{at}.quantities"), "names must not be empty".into()));
        }
    }
}

impl FootfallConfig {
    pub(super) fn check(&self, errs: &mut Vec<(String, String)>) {
        if self.rebase_at.is_empty() {
            return;
        }
        if let Err(e) = Rebase::parse(&self.rebase_at, &self.time_zone) {
            let key = if parse_hh_mm(&self.rebase_at).is_none() {
                "footfall.rebase_at"
            } else {
                "footfall.time_zone"
            };
            errs.push((key.into(), e));
        }
    }

    /// The re-base time in effect: `None` when `rebase_at` is "" (never).
    pub fn rebase(&self) -> Result<Option<Rebase>, String> {
        if self.rebase_at.is_empty() {
            return Ok(None);
        }
        Rebase::parse(&self.rebase_at, &self.time_zone).map(Some)
    }
}

/// `rebase_at` in `time_zone`: when footfall occupancy is set back to 0.
#[derive(Clone, Debug)]
pub struct Rebase {
    pub tz: TimeZone,
    /// Local time of day, as an offset from midnight.
    pub at: SignedDuration,
}

impl Rebase {
    /// Parses `HH:MM` and loads the IANA zone `tz` from the system tzdb.
    pub fn parse(at: &str, tz: &str) -> Result<Rebase, String> {
        let secs = parse_hh_mm(at).ok_or_else(|| format!("{at:?} is not a time HH:MM"))?;
        let tz = TimeZone::get(tz).map_err(|e| format!("time zone {tz:?}: {e}"))?;
        Ok(Rebase {
            tz,
            at: SignedDuration::from_secs(secs),
        })
    }
}

/// `HH:MM` (00:00-23:59) as seconds after midnight.
fn parse_hh_mm(s: &str) -> Option<i64> {
    let (h, m) = s.split_once(':')?;
    let ok = |p: &str| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit());
    if !ok(h) || !ok(m) {
        return None;
    }
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 3600 + m * 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hh_mm() {
        assert_eq!(parse_hh_mm("04:00"), Some(4 * 3600));
        assert_eq!(parse_hh_mm("23:59"), Some(23 * 3600 + 59 * 60));
        assert_eq!(parse_hh_mm("00:00"), Some(0));
        for bad in ["24:00", "4:00", "04:60", "04-00", "", "ab:cd", "04:00:00"] {
            assert_eq!(parse_hh_mm(bad), None, "{bad}");
        }
    }
}
