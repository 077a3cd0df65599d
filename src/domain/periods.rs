//! The official averaging periods, wired: settings from the config, and the points of the
//! hours and days that finished ([`Domain::period_points`]); and the calibration rules from
//! the config.

use super::calibration::{Calibration, Model};
use super::daily::{self, DailySettings, Threshold, ThresholdPeriod};
use super::hourly::{self, HourlySettings};
use super::{official, Domain};
use crate::config::{CalibrationConfig, CalibrationModel, Config, ThresholdPeriodSetting};
use crate::line_protocol::FieldValue;
use crate::reading::{GroupKey, TimestampNs, NANOS_PER_SEC};

/// An `air_quality_hourly` or `air_quality_daily` point.
#[derive(Clone, Debug, PartialEq)]
pub struct PeriodPoint {
    pub measurement: &'static str,
    pub key: GroupKey,
    pub ts: TimestampNs,
    pub fields: Vec<(String, FieldValue)>,
}

impl Domain {
    /// The points of the hours (with the official indices) and then the local days that
    /// ended by `until_ns`; the finished hours feed their days first.
    pub fn period_points(&mut self, until_ns: TimestampNs) -> Vec<PeriodPoint> {
        let hours = self.hourly.close_before(until_ns);
        let (eaqi, lki) = (self.eaqi, self.lki.as_ref());
        let mut out = Vec::with_capacity(hours.len());
        for p in hours {
            for v in &p.values {
                self.daily.add(&p.key, &v.quantity, &v.hour);
            }
            let mut fields = p.fields();
            fields.extend(official::fields(eaqi, lki, &p));
            out.push(PeriodPoint {
                measurement: hourly::MEASUREMENT,
                ts: p.ts(),
                key: p.key,
                fields,
            });
        }
        if self.hourly.settings.is_some() {
            out.extend(
                self.daily
                    .close_before(until_ns)
                    .into_iter()
                    .map(|d| PeriodPoint {
                        measurement: daily::MEASUREMENT,
                        key: d.key,
                        ts: d.ts,
                        fields: d.fields,
                    }),
            );
        }
        out
    }
}

/// The hourly settings of `cfg`, `None` when off.
pub(super) fn hourly_settings(cfg: &Config) -> Option<HourlySettings> {
    let aq = &cfg.air_quality;
    if !aq.hourly {
        return None;
    }
    let window_ns = (cfg.aggregation.window_secs as i64).saturating_mul(NANOS_PER_SEC);
    HourlySettings::new(window_ns, aq.min_coverage, aq.quantities.clone())
}

/// The daily settings of `cfg`, `None` when hourly values are off.
pub(super) fn daily_settings(cfg: &Config) -> Result<Option<DailySettings>, String> {
    let aq = &cfg.air_quality;
    if !aq.hourly {
        return Ok(None);
    }
    let zone = aq.zone(&cfg.footfall.time_zone);
    let tz = jiff::tz::TimeZone::get(zone).map_err(|e| format!("time zone {zone:?}: {e}"))?;
    let thresholds = (aq.threshold.iter())
        .map(|t| Threshold {
            name: t.name.clone(),
            quantity: t.quantity.clone(),
            period: match t.period {
                ThresholdPeriodSetting::Hour => ThresholdPeriod::Hour,
                ThresholdPeriodSetting::Day => ThresholdPeriod::Day,
            },
            value: t.value,
        })
        .collect();
    Ok(Some(DailySettings { tz, thresholds }))
}

/// The runtime rule of a checked `[[calibration]]` (`Config::check` rejects missing terms;
/// a missing one here is 0).
pub(super) fn calibration(c: &CalibrationConfig) -> Calibration {
    let num = |v: Option<f64>| v.unwrap_or(0.0);
    let model = match c.model {
        CalibrationModel::Linear => Model::Linear {
            gain: num(c.gain),
            offset: num(c.offset),
        },
        CalibrationModel::Polynomial => Model::Polynomial(c.coefficients.clone()),
        CalibrationModel::LinearRh => Model::LinearRh {
            a: num(c.a),
            b: num(c.b),
            c: num(c.c),
        },
    };
    let valid_from = c.valid_from.as_deref().map(crate::time::parse_rfc3339);
    Calibration {
        id: c.id.clone(),
        match_tags: (c.match_tags.iter())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        quantity: c.quantity.clone(),
        valid_from: valid_from.and_then(Result::ok).unwrap_or(i64::MIN),
        model,
    }
}
