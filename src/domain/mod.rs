//! The domain layer: what a city needs from closed windows, derived from them at close time.
//!
//! The aggregator closes windows and, before encoding, hands every closed series window of
//! the close to [`Domain::derive`] as a [`WindowValue`] (sorted by window, then point). The
//! result is extra fields for those points ([`DerivedField`]), appended to the point of the
//! same (window, group):
//! - [`aqi`]: `eaqi`, `eaqi_pollutant`, `lki`, `aqi_period_s` on points with PM2.5, PM10, NO2,
//!   O3 or SO2 means;
//! - [`humidity`]: `<pm>_corrected_<stat>` and `rh_capped` on PM points matched by a
//!   `[[humidity_correction]]` rule, using the window-mean RH of a humidity series at the same
//!   site (or sensor) in the same window;
//! - [`footfall`]: `<quantity>` (sum of events or increase of a total) for counter series, and
//!   `net`, `occupancy` on points with counter `in`/`out`;
//! - [`calibration`]: `<q>_raw_mean` and `calibration_id` where a `[[calibration]]` rule
//!   applied (the aggregator calibrates the statistics before this step; [`fit`] fits rules
//!   for `citysensed calibrate`).
//!
//! Besides, [`hourly`] records the windows' pollutant means per hour; finished hours become
//! `air_quality_hourly` points when the aggregator asks ([`Domain::period_points`]), with the
//! official indices on them ([`official`]); [`daily`] turns finished hours into
//! `air_quality_daily` points per local calendar day; [`periods_state`] saves and restores
//! both with the state file.
//!
//! Everything here is pure but for the per-zone occupancy and the open hours and days it
//! keeps between closes.

pub mod aqi;
pub mod calibration;
pub mod daily;
pub mod fit;
pub mod footfall;
pub mod hourly;
pub mod humidity;
pub mod official;
mod periods;
pub mod periods_state;

pub use periods::PeriodPoint;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::config::{
    Config, EaqiSetting, HumidityCorrectionConfig, HumidityMethod, RhFromSetting, Stat,
};
use crate::line_protocol::FieldValue;
use crate::reading::{GroupKey, QuantityKind};

use aqi::{EaqiVersion, LkiTopEdges, POLLUTANTS};
use calibration::Calibration;
use daily::Daily;
use footfall::Occupancy;
use hourly::Hourly;
use humidity::Correction;

use crate::telemetry::expose;

/// Domain events worth counting (rendered into `/metrics` by `service`).
#[derive(Debug, Default)]
pub struct DomainMetrics {
    /// `counter_total` drops taken as a device reset.
    pub counter_resets: AtomicU64,
    /// `counter_total` drops taken as a wrap.
    pub counter_wraps: AtomicU64,
    /// PM windows a humidity rule matched but no humidity series had a value for.
    pub humidity_missing: AtomicU64,
    /// PM windows corrected with RH above the cap.
    pub humidity_capped: AtomicU64,
    /// Windows a `linear_rh` calibration matched but no humidity series had a value for.
    pub calibration_no_rh: AtomicU64,
}

impl DomainMetrics {
    /// Describes these counters for `/metrics`.
    pub fn encode(&self, e: &mut expose::Encoder) -> expose::Encoded {
        let rows = [
            (
                "citysense_counter_resets",
                "Cumulative counter drops taken as a device reset.",
                &self.counter_resets,
            ),
            (
                "citysense_counter_wraps",
                "Cumulative counter drops taken as a 16/32-bit wrap.",
                &self.counter_wraps,
            ),
            (
                "citysense_humidity_uncorrected_windows",
                "PM windows left uncorrected: no humidity in the window.",
                &self.humidity_missing,
            ),
            (
                "citysense_humidity_capped_windows",
                "PM windows whose humidity was above rh_cap.",
                &self.humidity_capped,
            ),
            (
                "citysense_calibration_uncalibrated_windows",
                "Windows left uncalibrated: the rule needs humidity and there was none.",
                &self.calibration_no_rh,
            ),
        ];
        for (name, help, v) in rows {
            expose::counter(e, name, help, v.load(Relaxed))?;
        }
        Ok(())
    }
}

/// One closed series window, as the domain layer sees it.
#[derive(Clone, Copy, Debug)]
pub struct WindowValue<'a> {
    pub window: i64,
    /// The point (group) it is written with.
    pub group: u32,
    pub key: &'a GroupKey,
    pub quantity: &'a str,
    pub kind: QuantityKind,
    pub mean: f64,
    pub sum: f64,
    /// Readings in the window.
    pub count: u64,
    /// The mean before calibration, and the rule (index into [`Domain::calibration`]), when
    /// the window was calibrated.
    pub raw_mean: Option<f64>,
    pub calibration: Option<u16>,
    /// The configured statistics' values, in the aggregator's stat order (a count as its
    /// `f64`, exact below 2^53).
    pub values: &'a [f64],
}

/// A field to append to the point (window, group).
#[derive(Clone, Debug, PartialEq)]
pub struct DerivedField {
    pub window: i64,
    pub group: u32,
    pub key: String,
    pub value: FieldValue,
}

/// The domain layer's settings and state.
#[derive(Debug, Default)]
pub struct Domain {
    /// `None`: no EAQI.
    pub eaqi: Option<EaqiVersion>,
    /// `None`: no LKI.
    pub lki: Option<LkiTopEdges>,
    pub humidity: Vec<Correction>,
    /// Per-sensor calibration rules (applied by the aggregator before deriving).
    pub calibration: Vec<Calibration>,
    pub occupancy: Occupancy,
    /// Hourly values (off unless `[air_quality] hourly`).
    pub hourly: Hourly,
    /// Daily values from the hourly ones (on with them).
    pub daily: Daily,
}

/// Everything one (window, point) contributes, gathered before deriving.
struct Point<'v, 'a> {
    window: i64,
    group: u32,
    key: &'a GroupKey,
    values: &'v [WindowValue<'a>],
}

/// A domain setting that cannot be used at run time (`Config::check` catches these first).
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("footfall: {0}")]
    Footfall(String),
    #[error("air_quality: {0}")]
    AirQuality(String),
}

impl Domain {
    /// The runtime domain layer of `cfg`.
    pub fn build(cfg: &Config) -> Result<Domain, DomainError> {
        let t = &cfg.aqi.lki_top_edge;
        let rebase = cfg.footfall.rebase().map_err(DomainError::Footfall)?;
        Ok(Domain {
            eaqi: match cfg.aqi.eaqi {
                EaqiSetting::V2024 => Some(EaqiVersion::V2024),
                EaqiSetting::V2017 => Some(EaqiVersion::V2017),
                EaqiSetting::Off => None,
            },
            lki: cfg.aqi.lki.then_some(LkiTopEdges {
                pm2_5: t.pm2_5,
                pm10: t.pm10,
                no2: t.no2,
                o3: t.o3,
            }),
            humidity: cfg.humidity_correction.iter().map(correction).collect(),
            calibration: cfg.calibration.iter().map(periods::calibration).collect(),
            occupancy: Occupancy::new(rebase),
            hourly: Hourly::new(periods::hourly_settings(cfg)),
            daily: Daily::new(periods::daily_settings(cfg).map_err(DomainError::AirQuality)?),
        })
    }

    /// Takes `new`'s settings (a reload) and keeps the running state: occupancy per zone stays,
    /// re-based by `new`'s rule from the next window on.
    pub fn reconfigure(&mut self, new: Domain) {
        let Domain {
            eaqi,
            lki,
            humidity,
            calibration,
            occupancy,
            hourly,
            daily,
        } = new;
        self.calibration = calibration;
        // Open hours and days and the running means stay; only the settings change.
        self.hourly.settings = hourly.settings;
        self.daily.settings = daily.settings;
        self.eaqi = eaqi;
        self.lki = lki;
        self.humidity = humidity;
        self.occupancy.rebase_as(occupancy);
    }

    /// Fields derived from one close's windows; `input` is sorted by (window, group). `stats`
    /// names each entry of `WindowValue::values`; `window_secs` is the averaging period.
    pub fn derive(
        &mut self,
        input: &[WindowValue<'_>],
        stats: &[Stat],
        window_ns: i64,
        metrics: &DomainMetrics,
    ) -> Vec<DerivedField> {
        let mut out = Vec::new();
        for same_window in input.chunk_by(|a, b| a.window == b.window) {
            let humidity: Vec<WindowValue<'_>> = (same_window.iter())
                .filter(|v| Domain::is_humidity(v))
                .cloned()
                .collect();
            for run in same_window.chunk_by(|a, b| a.group == b.group) {
                self.derive_point(run, &humidity, stats, window_ns, metrics, &mut out);
            }
        }
        out
    }

    /// Whether `v` is a humidity series: what [`Domain::derive_point`] corrects PM with
    /// (another point's RH may apply, e.g. the same site's).
    pub fn is_humidity(v: &WindowValue<'_>) -> bool {
        v.quantity == "humidity" && v.kind == QuantityKind::Gauge
    }

    /// Appends to `out` the fields derived for one point: `run` is all its series' values in
    /// one window, `humidity` that window's humidity series ([`Domain::is_humidity`]). The
    /// aggregator calls this point by point, so a close never holds every derived field.
    pub fn derive_point(
        &mut self,
        run: &[WindowValue<'_>],
        humidity: &[WindowValue<'_>],
        stats: &[Stat],
        window_ns: i64,
        metrics: &DomainMetrics,
        out: &mut Vec<DerivedField>,
    ) {
        let Some(first) = run.first() else { return };
        let p = Point {
            window: first.window,
            group: first.group,
            key: first.key,
            values: run,
        };
        let mut push = |key: String, value: FieldValue| {
            out.push(DerivedField {
                window: p.window,
                group: p.group,
                key,
                value,
            })
        };
        self.calibration_fields(&p, &mut push);
        let corrected = self.correct(&p, humidity, stats, metrics, &mut push);
        self.record_hourly(&p, &corrected);
        self.indices(&p, &corrected, window_ns, &mut push);
        self.footfall(&p, window_ns, &mut push);
    }

    /// Humidity correction; returns the corrected means by pollutant for the indices.
    fn correct(
        &self,
        p: &Point<'_, '_>,
        humidity: &[WindowValue<'_>],
        stats: &[Stat],
        metrics: &DomainMetrics,
        push: &mut impl FnMut(String, FieldValue),
    ) -> [Option<f64>; 5] {
        let mut corrected = [None; 5];
        let Some(rule) = self.humidity.iter().find(|r| r.matches(p.key)) else {
            return corrected;
        };
        // A calibration with an RH term has corrected for humidity already.
        let pm: Vec<&WindowValue<'_>> = (p.values.iter())
            .filter(|v| v.kind == QuantityKind::Gauge && rule.corrects(v.quantity))
            .filter(|v| !self.calibrated_with_rh(v))
            .collect();
        if pm.is_empty() {
            return corrected;
        }
        let rh: Vec<f64> = humidity
            .iter()
            .filter(|h| rule.rh_matches(p.key, h.key) && h.mean.is_finite())
            .map(|h| h.mean)
            .collect();
        if rh.is_empty() {
            metrics.humidity_missing.fetch_add(1, Relaxed);
            return corrected;
        }
        let applied = rule.apply(rh.iter().sum::<f64>() / rh.len() as f64);
        metrics
            .humidity_capped
            .fetch_add(u64::from(applied.capped), Relaxed);
        for v in pm {
            for (stat, x) in stats.iter().zip(v.values) {
                if humidity::is_corrected_stat(*stat) {
                    let key = format!("{}_corrected_{}", v.quantity, stat.field_suffix());
                    push(key, FieldValue::Float(x / applied.factor));
                }
            }
            if let Some(i) = POLLUTANTS.iter().position(|q| *q == v.quantity) {
                corrected[i] = Some(v.mean / applied.factor);
            }
        }
        push("rh_capped".into(), FieldValue::Bool(applied.capped));
        corrected
    }

    /// `<q>_raw_mean` of each calibrated series and the point's `calibration_id` (the
    /// distinct rule ids, comma-separated).
    fn calibration_fields(&self, p: &Point<'_, '_>, push: &mut impl FnMut(String, FieldValue)) {
        let mut ids: Vec<&str> = Vec::new();
        for v in p.values {
            let Some(rule) = v
                .calibration
                .and_then(|i| self.calibration.get(usize::from(i)))
            else {
                continue;
            };
            if let Some(raw) = v.raw_mean {
                push(format!("{}_raw_mean", v.quantity), FieldValue::Float(raw));
            }
            if !ids.contains(&rule.id.as_str()) {
                ids.push(&rule.id);
            }
        }
        if !ids.is_empty() {
            push("calibration_id".into(), FieldValue::Str(ids.join(",")));
        }
    }

    /// Whether `v` was calibrated by a rule with an RH term.
    fn calibrated_with_rh(&self, v: &WindowValue<'_>) -> bool {
        let rule = v
            .calibration
            .and_then(|i| self.calibration.get(usize::from(i)));
        rule.is_some_and(Calibration::uses_rh)
    }

    /// Records the point's gauge means (humidity-corrected where a rule applied) for the
    /// hourly values.
    fn record_hourly(&mut self, p: &Point<'_, '_>, corrected: &[Option<f64>; 5]) {
        for v in p.values.iter().filter(|v| v.kind == QuantityKind::Gauge) {
            let fixed = POLLUTANTS.iter().position(|q| *q == v.quantity);
            let mean = fixed.and_then(|i| corrected[i]).unwrap_or(v.mean);
            self.hourly
                .record(p.key, v.quantity, p.window, v.count, mean);
        }
    }

    /// EAQI and LKI from the window means (humidity-corrected where a rule applied).
    fn indices(
        &self,
        p: &Point<'_, '_>,
        corrected: &[Option<f64>; 5],
        window_ns: i64,
        push: &mut impl FnMut(String, FieldValue),
    ) {
        if self.eaqi.is_none() && self.lki.is_none() {
            return;
        }
        let mut means = *corrected;
        for v in p.values.iter().filter(|v| v.kind == QuantityKind::Gauge) {
            if let Some(i) = POLLUTANTS.iter().position(|q| *q == v.quantity) {
                means[i] = means[i].or(Some(v.mean));
            }
        }
        let mut any = false;
        if let Some((level, pollutant)) = self.eaqi.and_then(|ver| aqi::eaqi(ver, &means)) {
            push("eaqi".into(), FieldValue::Int(i64::from(level)));
            push("eaqi_pollutant".into(), FieldValue::Str(pollutant.into()));
            any = true;
        }
        if let Some(lki) = self.lki.as_ref().and_then(|top| aqi::lki(top, &means)) {
            push("lki".into(), FieldValue::Int(i64::from(lki)));
            any = true;
        }
        if any {
            let secs = window_ns / crate::reading::NANOS_PER_SEC;
            push("aqi_period_s".into(), FieldValue::Int(secs));
        }
    }

    /// Counter fields, and net/occupancy for in/out counters.
    fn footfall(
        &mut self,
        p: &Point<'_, '_>,
        window_ns: i64,
        push: &mut impl FnMut(String, FieldValue),
    ) {
        let (mut ins, mut outs, mut directional) = (0.0, 0.0, false);
        for v in p.values.iter().filter(|v| v.kind != QuantityKind::Gauge) {
            push(v.quantity.to_string(), FieldValue::Float(v.sum));
            match v.quantity {
                "in" => (ins, directional) = (ins + v.sum, true),
                "out" => (outs, directional) = (outs + v.sum, true),
                _ => {}
            }
        }
        if !directional {
            return;
        }
        let net = ins - outs;
        let zone = footfall::zone_of(p.key);
        let start = p.window.saturating_mul(window_ns);
        let occupancy = self.occupancy.update(&zone, start, net);
        push("net".into(), FieldValue::Float(net));
        push("occupancy".into(), FieldValue::Float(occupancy));
    }
}

fn correction(h: &HumidityCorrectionConfig) -> Correction {
    let HumidityMethod::KappaKoehler = h.method;
    Correction {
        match_tags: h
            .match_tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        kappa: h.kappa,
        rh_cap: h.rh_cap,
        rh_from: match h.rh_from {
            RhFromSetting::Site => humidity::RhFrom::Site,
            RhFromSetting::Sensor => humidity::RhFrom::Sensor,
        },
        quantities: h.quantities.clone(),
    }
}

#[cfg(test)]
mod tests;
