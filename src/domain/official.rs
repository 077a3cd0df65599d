//! The official indices of an hourly point ([`crate::domain::hourly`]): EAQI and LKI on the
//! averaging periods their definitions use, from valid inputs only. Pure.
//!
//! - EAQI 2024 (ETC HE Report 2024/17): the hourly mean of every pollutant.
//! - EAQI 2017: 24-hour running means for PM2.5 and PM10, hourly means for the gases.
//! - LKI (RIVM 2014-0050): hourly NO2 and O3, 24-hour running means for PM10 and PM2.5.
//!
//! An input counts only when it is valid (an hour with 75 % coverage, a running mean of 18
//! valid hours). The index is taken over the valid inputs, as the EEA does for stations that
//! lack a pollutant, and the point names them (`eaqi_pollutants`, `lki_pollutants`), so a
//! reader sees when one was left out; with no valid input there is no index at all: an index
//! from too little data is worse than none.

use crate::domain::aqi::{self, EaqiVersion, LkiTopEdges, POLLUTANTS};
use crate::domain::hourly::HourlyPoint;
use crate::line_protocol::FieldValue;

/// Which averaging period a pollutant's index input uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Period {
    Hour,
    Running24h,
}

/// The periods of EAQI `version`, in [`POLLUTANTS`] order.
fn eaqi_periods(version: EaqiVersion) -> [Period; 5] {
    use Period::*;
    match version {
        EaqiVersion::V2024 => [Hour; 5],
        EaqiVersion::V2017 => [Running24h, Running24h, Hour, Hour, Hour],
    }
}

/// The LKI's periods (SO2 is not part of it; its entry is unused).
const LKI_PERIODS: [Period; 5] = [
    Period::Running24h,
    Period::Running24h,
    Period::Hour,
    Period::Hour,
    Period::Hour,
];

/// The valid inputs of `p` for `periods`, in [`POLLUTANTS`] order; `None` where missing or
/// not valid.
fn inputs(p: &HourlyPoint, periods: &[Period; 5]) -> [Option<f64>; 5] {
    let mut out = [None; 5];
    for (i, q) in POLLUTANTS.iter().enumerate() {
        let Some(v) = p.values.iter().find(|v| v.quantity == *q) else {
            continue;
        };
        out[i] = match periods[i] {
            Period::Hour => (v.hour.valid && v.hour.mean.is_finite()).then_some(v.hour.mean),
            Period::Running24h => v.running.mean.filter(|_| v.running.valid),
        };
    }
    out
}

/// The names of the inputs present, comma-separated.
fn names(inputs: &[Option<f64>; 5]) -> String {
    let used = POLLUTANTS.iter().zip(inputs).filter(|(_, x)| x.is_some());
    used.map(|(q, _)| *q).collect::<Vec<_>>().join(",")
}

/// The index fields of an hourly point: `eaqi`, `eaqi_pollutant`, `eaqi_pollutants` and
/// `lki`, `lki_pollutants`, each index only when it has a valid input, and `aqi_period_s`
/// = 3600 with any of them.
pub fn fields(
    eaqi: Option<EaqiVersion>,
    lki: Option<&LkiTopEdges>,
    p: &HourlyPoint,
) -> Vec<(String, FieldValue)> {
    let mut out = Vec::new();
    if let Some(version) = eaqi {
        let x = inputs(p, &eaqi_periods(version));
        if let Some((level, pollutant)) = aqi::eaqi(version, &x) {
            out.push(("eaqi".into(), FieldValue::Int(i64::from(level))));
            out.push(("eaqi_pollutant".into(), FieldValue::Str(pollutant.into())));
            out.push(("eaqi_pollutants".into(), FieldValue::Str(names(&x))));
        }
    }
    if let Some(top) = lki {
        let mut x = inputs(p, &LKI_PERIODS);
        x[4] = None;
        if let Some(level) = aqi::lki(top, &x) {
            out.push(("lki".into(), FieldValue::Int(i64::from(level))));
            out.push(("lki_pollutants".into(), FieldValue::Str(names(&x))));
        }
    }
    if !out.is_empty() {
        // As on the window points: the period the index is on (hourly inputs).
        out.push(("aqi_period_s".into(), FieldValue::Int(3600)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::hourly::{HourValue, QuantityHour, Running};
    use crate::reading::GroupKey;

    /// An hourly value of `q`: hourly mean and validity, running mean and validity.
    fn q(name: &str, hour: (f64, bool), running: (Option<f64>, bool)) -> QuantityHour {
        QuantityHour {
            quantity: name.into(),
            hour: HourValue {
                hour: 0,
                mean: hour.0,
                coverage: if hour.1 { 1.0 } else { 0.5 },
                valid: hour.1,
            },
            running: Running {
                mean: running.0,
                valid_hours: if running.1 { 24 } else { 3 },
                valid: running.1,
            },
        }
    }

    fn point(values: Vec<QuantityHour>) -> HourlyPoint {
        HourlyPoint {
            key: GroupKey::new("air_quality", []),
            hour: 0,
            values,
        }
    }

    fn get(f: &[(String, FieldValue)], k: &str) -> Option<FieldValue> {
        f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn eaqi_2024_uses_valid_hourly_means() {
        // PM2.5 hourly 16 -> level 3 (15-50); NO2 hourly 61 -> level 4 (60-100) but not valid;
        // PM10 hourly 46 -> level 3; the 24 h means are ignored by the 2024 table.
        let p = point(vec![
            q("pm2_5", (16.0, true), (Some(200.0), true)),
            q("pm10", (46.0, true), (Some(5.0), true)),
            q("no2", (61.0, false), (None, false)),
        ]);
        let f = fields(Some(EaqiVersion::V2024), None, &p);
        assert_eq!(get(&f, "eaqi"), Some(FieldValue::Int(3)));
        assert_eq!(
            get(&f, "eaqi_pollutant"),
            Some(FieldValue::Str("pm2_5".into()))
        );
        assert_eq!(
            get(&f, "eaqi_pollutants"),
            Some(FieldValue::Str("pm2_5,pm10".into()))
        );
        assert_eq!(get(&f, "lki"), None);
        assert_eq!(get(&f, "aqi_period_s"), Some(FieldValue::Int(3600)));
    }

    #[test]
    fn eaqi_2017_uses_running_pm_and_hourly_gases() {
        // PM2.5 running 26 -> level 4 (25-50) although the hour is 5; NO2 hourly 95 -> 3.
        let p = point(vec![
            q("pm2_5", (5.0, true), (Some(26.0), true)),
            q("no2", (95.0, true), (Some(1.0), true)),
        ]);
        let f = fields(Some(EaqiVersion::V2017), None, &p);
        assert_eq!(get(&f, "eaqi"), Some(FieldValue::Int(4)));
        assert_eq!(
            get(&f, "eaqi_pollutant"),
            Some(FieldValue::Str("pm2_5".into()))
        );
        // A running mean of too few hours: PM2.5 is out, NO2 decides.
        let p = point(vec![
            q("pm2_5", (5.0, true), (Some(26.0), false)),
            q("no2", (95.0, true), (Some(1.0), true)),
        ]);
        let f = fields(Some(EaqiVersion::V2017), None, &p);
        assert_eq!(get(&f, "eaqi"), Some(FieldValue::Int(3)));
        assert_eq!(
            get(&f, "eaqi_pollutants"),
            Some(FieldValue::Str("no2".into()))
        );
    }

    #[test]
    fn lki_uses_hourly_gases_and_running_pm() {
        let top = LkiTopEdges::default();
        // NO2 hourly 31 -> 4 (30-45); O3 hourly 45 -> 4 (40-60); PM10 running 21 -> 3;
        // PM2.5 running 12 -> 2 (its hour, 95, would be 9). Highest 4, not all equal.
        let p = point(vec![
            q("pm2_5", (95.0, true), (Some(12.0), true)),
            q("pm10", (21.0, true), (Some(21.0), true)),
            q("no2", (31.0, true), (None, false)),
            q("o3", (45.0, true), (None, false)),
            q("so2", (900.0, true), (None, false)),
        ]);
        let f = fields(None, Some(&top), &p);
        assert_eq!(get(&f, "lki"), Some(FieldValue::Int(4)));
        assert_eq!(
            get(&f, "lki_pollutants"),
            Some(FieldValue::Str("pm2_5,pm10,no2,o3".into()))
        );
        assert_eq!(get(&f, "eaqi"), None);
        // NO2 and O3 both 4 and the PM running means not valid yet: all equal, one higher.
        let p = point(vec![
            q("pm10", (21.0, true), (Some(21.0), false)),
            q("no2", (31.0, true), (None, false)),
            q("o3", (45.0, true), (None, false)),
        ]);
        let f = fields(None, Some(&top), &p);
        assert_eq!(get(&f, "lki"), Some(FieldValue::Int(5)));
        assert_eq!(
            get(&f, "lki_pollutants"),
            Some(FieldValue::Str("no2,o3".into()))
        );
    }

    #[test]
    fn no_index_without_a_valid_input() {
        let top = LkiTopEdges::default();
        let p = point(vec![
            q("pm2_5", (16.0, false), (Some(16.0), false)),
            q("no2", (31.0, false), (None, false)),
            q("co2", (400.0, true), (Some(400.0), true)),
        ]);
        for v in [EaqiVersion::V2024, EaqiVersion::V2017] {
            assert!(fields(Some(v), Some(&top), &p).is_empty());
        }
        // PM only, running means not valid yet: no LKI, but an EAQI 2024 of the valid hour.
        let p = point(vec![q("pm2_5", (16.0, true), (Some(16.0), false))]);
        let f = fields(Some(EaqiVersion::V2024), Some(&top), &p);
        assert_eq!(get(&f, "eaqi"), Some(FieldValue::Int(3)));
        assert_eq!(get(&f, "lki"), None);
    }
}
