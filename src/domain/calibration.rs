//! Per-sensor calibration against a reference station: rules matched by tags, quantity and
//! `valid_from`, and their models. Pure; the aggregator applies them to a closed window's
//! statistics before anything else reads them, so the statistics, the humidity correction,
//! the indices and the hourly values all see calibrated values.
//!
//! Models, `x` the sensor's value:
//! - linear: `gain * x + offset`;
//! - polynomial: `c0 + c1 * x + c2 * x^2 + ...`;
//! - linear with humidity: `a + b * x + c * RH`, the usual form for low-cost PM sensors, with
//!   RH the window-mean relative humidity of the point (or its site). Such a rule already
//!   corrects for humidity, so the kappa-Koehler correction does not also apply.
//!
//! A model maps the window's value statistics (mean, min, max, last, percentiles); a rule is
//! fit on averaged values (`citysensed calibrate` fits hourly means), so the calibrated mean is
//! the model of the mean. A decreasing model swaps min and max; the standard deviation scales
//! by the model's slope at the mean, the sum is the calibrated mean times the count.

use crate::config::Stat;
use crate::reading::{GroupKey, TimestampNs};

/// A calibration model.
#[derive(Clone, Debug, PartialEq)]
pub enum Model {
    Linear {
        gain: f64,
        offset: f64,
    },
    /// Coefficients, constant first.
    Polynomial(Vec<f64>),
    LinearRh {
        a: f64,
        b: f64,
        c: f64,
    },
}

/// One rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    pub id: String,
    pub match_tags: Vec<(String, String)>,
    pub quantity: String,
    /// Window starts from this on; `i64::MIN` always.
    pub valid_from: TimestampNs,
    pub model: Model,
}

impl Calibration {
    /// Whether the rule needs a humidity value (and replaces the humidity correction).
    pub fn uses_rh(&self) -> bool {
        matches!(self.model, Model::LinearRh { .. })
    }

    /// The calibrated value of `x`; `None` if the model needs RH and `rh` is `None`.
    pub fn apply(&self, x: f64, rh: Option<f64>) -> Option<f64> {
        Some(match &self.model {
            Model::Linear { gain, offset } => gain * x + offset,
            Model::Polynomial(c) => c.iter().rev().fold(0.0, |acc, k| acc * x + k),
            Model::LinearRh { a, b, c } => a + b * x + c * rh?,
        })
    }

    /// The model's slope at `x`.
    fn slope(&self, x: f64) -> f64 {
        match &self.model {
            Model::Linear { gain, .. } => *gain,
            Model::LinearRh { b, .. } => *b,
            Model::Polynomial(c) => {
                (c.iter().enumerate().skip(1).rev()).fold(0.0, |acc, (i, k)| acc * x + i as f64 * k)
            }
        }
    }

    fn matches(&self, key: &GroupKey, quantity: &str, window_start: TimestampNs) -> bool {
        self.quantity == quantity
            && window_start >= self.valid_from
            && (self.match_tags.iter()).all(|(k, v)| key.tag(k) == Some(v.as_str()))
    }
}

/// The rule for `quantity` at `key` in the window starting `window_start`: of the matching
/// ones, the latest `valid_from` (the first configured on a tie).
pub fn find<'a>(
    rules: &'a [Calibration],
    key: &GroupKey,
    quantity: &str,
    window_start: TimestampNs,
) -> Option<(usize, &'a Calibration)> {
    let mut best: Option<(usize, &Calibration)> = None;
    for (i, r) in rules.iter().enumerate() {
        if r.matches(key, quantity, window_start)
            && best.is_none_or(|(_, b)| r.valid_from > b.valid_from)
        {
            best = Some((i, r));
        }
    }
    best
}

/// A window's statistics to calibrate in place.
pub struct WindowStats<'a> {
    pub stats: &'a [Stat],
    /// One value per entry of `stats`.
    pub values: &'a mut [f64],
    pub mean: &'a mut f64,
    pub sum: &'a mut f64,
    pub count: u64,
}

/// Calibrates `w` by `rule`; false (and `w` unchanged) if it needs RH and has none.
pub fn apply_to(rule: &Calibration, w: WindowStats<'_>, rh: Option<f64>) -> bool {
    let Some(mean) = rule.apply(*w.mean, rh) else {
        return false;
    };
    let slope = rule.slope(*w.mean).abs();
    let (mut lo, mut hi) = (None, None);
    for (stat, v) in w.stats.iter().zip(w.values.iter_mut()) {
        match stat {
            Stat::Count => {}
            Stat::Mean => *v = mean,
            Stat::Sum => *v = mean * w.count as f64,
            Stat::Stddev => *v *= slope,
            Stat::Min => lo = Some(v),
            Stat::Max => hi = Some(v),
            Stat::Last | Stat::Quantile(_) => *v = rule.apply(*v, rh).unwrap_or(*v),
        }
    }
    let calibrate = |x: f64| rule.apply(x, rh).unwrap_or(x);
    match (lo, hi) {
        (Some(lo), Some(hi)) => {
            let (a, b) = (calibrate(*lo), calibrate(*hi));
            (*lo, *hi) = (a.min(b), a.max(b));
        }
        (Some(v), None) | (None, Some(v)) => *v = calibrate(*v),
        (None, None) => {}
    }
    *w.mean = mean;
    *w.sum = mean * w.count as f64;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, valid_from: i64, model: Model) -> Calibration {
        Calibration {
            id: id.into(),
            match_tags: vec![("sensor".into(), "sds-1".into())],
            quantity: "pm2_5".into(),
            valid_from,
            model,
        }
    }

    fn key(sensor: &str) -> GroupKey {
        GroupKey::new("air_quality", [("sensor".to_string(), sensor.to_string())])
    }

    #[test]
    fn models() {
        let lin = rule(
            "l",
            0,
            Model::Linear {
                gain: 0.8,
                offset: -1.0,
            },
        );
        assert_eq!(lin.apply(10.0, None), Some(7.0));
        // 1 + 0.5 x + 0.01 x^2 at 10: 1 + 5 + 1 = 7.
        let poly = rule("p", 0, Model::Polynomial(vec![1.0, 0.5, 0.01]));
        assert_eq!(poly.apply(10.0, None), Some(7.0));
        assert_eq!(poly.slope(10.0), 0.5 + 0.2);
        let rh = rule(
            "r",
            0,
            Model::LinearRh {
                a: 2.0,
                b: 0.7,
                c: -0.05,
            },
        );
        // 2 + 7 - 4 = 5.
        assert_eq!(rh.apply(10.0, Some(80.0)), Some(5.0));
        assert_eq!(rh.apply(10.0, None), None);
        assert!(rh.uses_rh() && !lin.uses_rh());
    }

    #[test]
    fn find_by_tags_quantity_and_latest_valid_from() {
        let rules = [
            rule(
                "old",
                0,
                Model::Linear {
                    gain: 1.0,
                    offset: 0.0,
                },
            ),
            rule(
                "new",
                100,
                Model::Linear {
                    gain: 2.0,
                    offset: 0.0,
                },
            ),
        ];
        let id = |k: &GroupKey, q: &str, t: i64| find(&rules, k, q, t).map(|(_, r)| &*r.id);
        assert_eq!(id(&key("sds-1"), "pm2_5", 50), Some("old"));
        assert_eq!(id(&key("sds-1"), "pm2_5", 100), Some("new"));
        assert_eq!(id(&key("sds-1"), "pm2_5", -1), None);
        assert_eq!(id(&key("sds-2"), "pm2_5", 100), None);
        assert_eq!(id(&key("sds-1"), "pm10", 100), None);
    }

    #[test]
    fn window_statistics_map_through_the_model() {
        let stats = [
            Stat::Mean,
            Stat::Min,
            Stat::Max,
            Stat::Count,
            Stat::Sum,
            Stat::Stddev,
            Stat::Quantile(500),
        ];
        // Readings 8, 10, 12: mean 10, sum 30, stddev 2, p50 10.
        let mut values = [10.0, 8.0, 12.0, 3.0, 30.0, 2.0, 10.0];
        let (mut mean, mut sum) = (10.0, 30.0);
        // Decreasing: -0.5 x + 20 -> mean 15, min 14 (from 12), max 16 (from 8).
        let r = rule(
            "d",
            0,
            Model::Linear {
                gain: -0.5,
                offset: 20.0,
            },
        );
        let w = WindowStats {
            stats: &stats,
            values: &mut values,
            mean: &mut mean,
            sum: &mut sum,
            count: 3,
        };
        assert!(apply_to(&r, w, None));
        assert_eq!(values, [15.0, 14.0, 16.0, 3.0, 45.0, 1.0, 15.0]);
        assert_eq!((mean, sum), (15.0, 45.0));
        // An RH rule without RH leaves the window as it is.
        let r = rule(
            "r",
            0,
            Model::LinearRh {
                a: 1.0,
                b: 1.0,
                c: 1.0,
            },
        );
        let before = values;
        let w = WindowStats {
            stats: &stats,
            values: &mut values,
            mean: &mut mean,
            sum: &mut sum,
            count: 3,
        };
        assert!(!apply_to(&r, w, None));
        assert_eq!((values, mean), (before, 15.0));
    }
}
