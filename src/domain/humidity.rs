//! Humidity correction of low-cost PM readings: optical sensors count water-swollen particles,
//! so they over-read in humid air. A configured rule picks PM points by tag and divides their
//! window statistics by the bulk kappa-Koehler growth factor at the window-mean relative
//! humidity of a matching humidity series.
//!
//! Formula: Crilley et al. (2018), "Evaluation of a low-cost optical particle counter (Alphasense
//! OPC-N2) for ambient air monitoring", Atmos. Meas. Tech. 11, 709-720,
//! doi:10.5194/amt-11-709-2018, their bulk correction factor with water activity a_w = RH/100:
//!
//! ```text
//! PM_corrected = PM / C,   C = 1 + (kappa / 1.65) / (100 / RH - 1)
//! ```
//!
//! kappa depends on the aerosol: published bulk values are 0.3-0.4 (sensor.community's SDS011
//! comparisons imply about 0.36, the default); it is set per rule. C diverges as RH -> 100 %, so
//! RH is capped (`rh_cap`, default 95 %) and a window whose mean RH was above the cap is flagged
//! `rh_capped = true`. Di Antonio et al. (2018, Sensors 18, 2790) apply the correction per size
//! bin, which sensors with bins (PMS, SPS30) would allow; not done here.
//!
//! The correction is a division by one factor per window, so it applies to each level-like
//! statistic (mean, min, max, last, percentiles) alike; count, sum and stddev are not corrected.

use crate::config::Stat;
use crate::reading::GroupKey;

/// The kappa-Koehler growth factor C at `rh` percent (clamped to [0, 99.9]).
pub fn kappa_koehler_factor(rh: f64, kappa: f64) -> f64 {
    let rh = rh.clamp(0.0, 99.9);
    if rh <= 0.0 {
        return 1.0;
    }
    1.0 + (kappa / 1.65) / (100.0 / rh - 1.0)
}

/// Where a rule finds the humidity of a PM point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RhFrom {
    /// Humidity series with the same `site` tag value.
    Site,
    /// Humidity series with the same `sensor` tag value.
    Sensor,
}

impl RhFrom {
    fn tag(self) -> &'static str {
        match self {
            RhFrom::Site => "site",
            RhFrom::Sensor => "sensor",
        }
    }
}

/// One correction rule, built from `[[humidity_correction]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Correction {
    /// Tags the PM point must carry, all of them; empty matches every point.
    pub match_tags: Vec<(String, String)>,
    pub kappa: f64,
    pub rh_cap: f64,
    pub rh_from: RhFrom,
    /// Quantities to correct; empty: every quantity starting with `pm`.
    pub quantities: Vec<String>,
}

/// The factor a window's PM is divided by, and whether its RH was capped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Applied {
    pub factor: f64,
    pub capped: bool,
}

impl Correction {
    /// Whether this rule applies to the point `key`.
    pub fn matches(&self, key: &GroupKey) -> bool {
        self.match_tags
            .iter()
            .all(|(k, v)| key.tag(k) == Some(v.as_str()))
    }

    /// Whether `quantity` is corrected by this rule.
    pub fn corrects(&self, quantity: &str) -> bool {
        if self.quantities.is_empty() {
            quantity.starts_with("pm")
        } else {
            self.quantities.iter().any(|q| q == quantity)
        }
    }

    /// Whether a humidity series of point `rh_key` belongs to the PM point `pm_key`: the same
    /// point, or the same value of the `rh_from` tag.
    pub fn rh_matches(&self, pm_key: &GroupKey, rh_key: &GroupKey) -> bool {
        if pm_key == rh_key {
            return true;
        }
        let tag = self.rh_from.tag();
        matches!((pm_key.tag(tag), rh_key.tag(tag)), (Some(a), Some(b)) if a == b)
    }

    /// The factor at window-mean RH `rh` (percent).
    pub fn apply(&self, rh: f64) -> Applied {
        Applied {
            factor: kappa_koehler_factor(rh.min(self.rh_cap), self.kappa),
            capped: rh > self.rh_cap,
        }
    }
}

/// Whether `stat` is a level that the correction scales.
pub fn is_corrected_stat(stat: Stat) -> bool {
    !matches!(stat, Stat::Count | Stat::Sum | Stat::Stddev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Correction {
        Correction {
            match_tags: vec![("sensor".into(), "sds-1".into())],
            kappa: 0.36,
            rh_cap: 95.0,
            rh_from: RhFrom::Site,
            quantities: vec![],
        }
    }

    #[test]
    fn factor_table() {
        // (RH %, kappa, C) computed from the formula by hand.
        let cases: &[(f64, f64, f64)] = &[
            (0.0, 0.36, 1.0),
            (-5.0, 0.36, 1.0),
            (50.0, 0.36, 1.0 + 0.36 / 1.65),
            (80.0, 0.36, 1.0 + (0.36 / 1.65) / 0.25),
            (90.0, 0.33, 1.0 + (0.33 / 1.65) / (1.0 / 9.0)),
            (95.0, 0.36, 1.0 + (0.36 / 1.65) * 19.0),
            // Clamped below 100 %: finite.
            (100.0, 0.36, 1.0 + (0.36 / 1.65) * 999.0),
        ];
        for &(rh, kappa, want) in cases {
            let got = kappa_koehler_factor(rh, kappa);
            assert!((got - want).abs() < 1e-6 * want, "RH {rh}: {got} != {want}");
        }
    }

    #[test]
    fn cap_edge_and_flag() {
        let r = rule();
        let at = r.apply(95.0);
        assert!(!at.capped);
        let above = r.apply(95.01);
        assert!(above.capped);
        assert_eq!(above.factor, at.factor);
        assert!(!r.apply(94.99).capped);
        assert!(r.apply(94.99).factor < at.factor);
    }

    #[test]
    fn matching_by_tags_and_rh_source() {
        let r = rule();
        let pm = GroupKey::new(
            "air_quality",
            [
                ("sensor".into(), "sds-1".into()),
                ("site".into(), "plein".into()),
            ],
        );
        let other = GroupKey::new("air_quality", [("sensor".into(), "sds-2".into())]);
        assert!(r.matches(&pm));
        assert!(!r.matches(&other));
        let rh_same_site = GroupKey::new(
            "climate",
            [
                ("sensor".into(), "bme".into()),
                ("site".into(), "plein".into()),
            ],
        );
        let rh_elsewhere = GroupKey::new("climate", [("site".into(), "haven".into())]);
        assert!(r.rh_matches(&pm, &rh_same_site));
        assert!(!r.rh_matches(&pm, &rh_elsewhere));
        assert!(r.rh_matches(&pm, &pm));
        let by_sensor = Correction {
            rh_from: RhFrom::Sensor,
            ..rule()
        };
        assert!(!by_sensor.rh_matches(&pm, &rh_same_site));
        let rh_same_sensor = GroupKey::new("climate", [("sensor".into(), "sds-1".into())]);
        assert!(by_sensor.rh_matches(&pm, &rh_same_sensor));
    }

    #[test]
    fn quantities_default_to_pm() {
        let r = rule();
        assert!(r.corrects("pm2_5") && r.corrects("pm10") && r.corrects("pm1_0"));
        assert!(!r.corrects("co2"));
        let only = Correction {
            quantities: vec!["pm2_5".into()],
            ..rule()
        };
        assert!(only.corrects("pm2_5") && !only.corrects("pm10"));
        assert!(is_corrected_stat(Stat::Mean) && is_corrected_stat(Stat::Quantile(950)));
        assert!(!is_corrected_stat(Stat::Count) && !is_corrected_stat(Stat::Sum));
    }
}
