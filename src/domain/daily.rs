//! Daily values per local calendar day, from the finished hourly values
//! ([`crate::domain::hourly`]). Pure bookkeeping.
//!
//! A day is the local calendar day of a time zone, so it has 23 or 25 hours on DST days; an
//! hour belongs to the day its start falls in. Per point and quantity: the **daily mean** (the
//! mean of the valid hourly means), the number of valid hours, and validity from
//! [`MIN_VALID_HOURS`] (18, EU 2008/50/EC Annex VII, whatever the day's length). Thresholds
//! ([`Threshold`]) count valid hours above a value (e.g. the EU NO2 hourly limit of 200 ug/m3)
//! or mark a valid day whose mean is above one (e.g. the WHO 2021 guideline of 15 ug/m3 for
//! daily PM2.5), with a running count per local calendar year: EU limits are "not to be
//! exceeded more than N times a calendar year".
//!
//! A day is final once the hourly values have passed its end: [`Daily::close_before`].

use std::collections::{BTreeMap, HashMap};

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::domain::hourly::{HourValue, HOUR_NS, MIN_VALID_HOURS};
use crate::line_protocol::FieldValue;
use crate::reading::{GroupKey, TimestampNs};

/// Measurement of the daily points.
pub const MEASUREMENT: &str = "air_quality_daily";

/// What a threshold is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdPeriod {
    /// Each valid hourly mean.
    Hour,
    /// A valid daily mean.
    Day,
}

/// One threshold: fields `<quantity>_hours_above_<name>` (hour) or `<quantity>_above_<name>`
/// (day), each with a `..._year` count.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    pub name: String,
    pub quantity: String,
    pub period: ThresholdPeriod,
    pub value: f64,
}

/// How daily values are made.
#[derive(Clone, Debug)]
pub struct DailySettings {
    pub tz: TimeZone,
    pub thresholds: Vec<Threshold>,
}

/// One open (or just finished) day of one quantity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Day {
    /// Local midnight and the next one, as instants.
    pub start: TimestampNs,
    pub end: TimestampNs,
    pub year: i16,
    /// Sum and number of the valid hourly means.
    pub sum: f64,
    pub valid_hours: u32,
    /// Per hour threshold (by name): valid hours above it.
    pub hours_above: BTreeMap<String, u32>,
}

/// One quantity of one point: open days and the year's counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesDays {
    /// By local midnight (ns).
    pub open: BTreeMap<TimestampNs, Day>,
    /// Per threshold name: (year, hours or days above in it).
    pub year_counts: BTreeMap<String, (i16, u32)>,
}

/// The daily point of one key and day.
#[derive(Clone, Debug, PartialEq)]
pub struct DailyPoint {
    pub key: GroupKey,
    /// Local midnight.
    pub ts: TimestampNs,
    pub fields: Vec<(String, FieldValue)>,
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct Daily {
    /// `None`: off.
    pub settings: Option<DailySettings>,
    pub groups: HashMap<GroupKey, BTreeMap<String, SeriesDays>>,
}

impl Daily {
    pub fn new(settings: Option<DailySettings>) -> Daily {
        Daily {
            settings,
            groups: HashMap::new(),
        }
    }

    /// Adds a finished hour of `quantity` at `key` to its local day.
    pub fn add(&mut self, key: &GroupKey, quantity: &str, h: &HourValue) {
        let Some(s) = &self.settings else { return };
        let Some((start, end, year)) = local_day(&s.tz, h.hour.saturating_mul(HOUR_NS)) else {
            return;
        };
        let series = (self.groups.entry(key.clone()).or_default())
            .entry(quantity.to_string())
            .or_default();
        let day = series.open.entry(start).or_insert_with(|| Day {
            start,
            end,
            year,
            ..Day::default()
        });
        if !(h.valid && h.mean.is_finite()) {
            return;
        }
        day.sum += h.mean;
        day.valid_hours += 1;
        let hourly = (s.thresholds.iter())
            .filter(|t| t.period == ThresholdPeriod::Hour && t.quantity == quantity);
        for t in hourly {
            let n = day.hours_above.entry(t.name.clone()).or_default();
            *n += u32::from(h.mean > t.value);
        }
    }

    /// Finishes every day that ended by `until_ns`: one point per (key, day), by day, then
    /// measurement and tags.
    pub fn close_before(&mut self, until_ns: TimestampNs) -> Vec<DailyPoint> {
        let Some(s) = &self.settings else {
            return Vec::new();
        };
        let mut points = Vec::new();
        for (key, series) in &mut self.groups {
            let mut by_day: BTreeMap<TimestampNs, Vec<(String, FieldValue)>> = BTreeMap::new();
            for (quantity, days) in series.iter_mut() {
                while let Some(entry) = days.open.first_entry() {
                    if entry.get().end > until_ns {
                        break;
                    }
                    let day = entry.remove();
                    let fields = by_day.entry(day.start).or_default();
                    days.finish(quantity, &day, &s.thresholds, fields);
                }
            }
            points.extend(by_day.into_iter().map(|(ts, fields)| DailyPoint {
                key: key.clone(),
                ts,
                fields,
            }));
            series.retain(|_, d| !d.open.is_empty() || !d.year_counts.is_empty());
        }
        self.groups.retain(|_, s| !s.is_empty());
        points.sort_by(|a, b| {
            (a.ts, &a.key.measurement, &a.key.tags).cmp(&(b.ts, &b.key.measurement, &b.key.tags))
        });
        points
    }
}

impl SeriesDays {
    /// The fields of finished `day` of `q`; updates the year's counts.
    fn finish(
        &mut self,
        q: &str,
        day: &Day,
        thresholds: &[Threshold],
        out: &mut Vec<(String, FieldValue)>,
    ) {
        let valid = day.valid_hours >= MIN_VALID_HOURS;
        let mean = (day.valid_hours > 0).then(|| day.sum / f64::from(day.valid_hours));
        if let Some(m) = mean {
            out.push((format!("{q}_mean"), FieldValue::Float(m)));
        }
        let hours = (day.end - day.start) / HOUR_NS;
        out.push((format!("{q}_hours"), FieldValue::Int(hours)));
        let n = i64::from(day.valid_hours);
        out.push((format!("{q}_valid_hours"), FieldValue::Int(n)));
        out.push((format!("{q}_valid"), FieldValue::Bool(valid)));
        for t in thresholds.iter().filter(|t| t.quantity == q) {
            let name = &t.name;
            let added = match t.period {
                ThresholdPeriod::Hour => {
                    let n = day.hours_above.get(name).copied().unwrap_or(0);
                    let key = format!("{q}_hours_above_{name}");
                    out.push((key, FieldValue::Int(i64::from(n))));
                    n
                }
                ThresholdPeriod::Day if valid => {
                    let above = mean.is_some_and(|m| m > t.value);
                    out.push((format!("{q}_above_{name}"), FieldValue::Bool(above)));
                    u32::from(above)
                }
                ThresholdPeriod::Day => 0,
            };
            let count = self
                .year_counts
                .entry(name.clone())
                .or_insert((day.year, 0));
            if count.0 != day.year {
                *count = (day.year, 0);
            }
            count.1 += added;
            let key = match t.period {
                ThresholdPeriod::Hour => format!("{q}_hours_above_{name}_year"),
                ThresholdPeriod::Day => format!("{q}_days_above_{name}_year"),
            };
            out.push((key, FieldValue::Int(i64::from(count.1))));
        }
    }
}

/// The local day instant `ts` falls in: (its midnight, the next midnight, its year).
pub fn local_day(tz: &TimeZone, ts: TimestampNs) -> Option<(TimestampNs, TimestampNs, i16)> {
    let t = Timestamp::from_nanosecond(i128::from(ts)).ok()?;
    let date: Date = tz.to_datetime(t).date();
    // Midnight as an instant; "compatible": a midnight in a DST gap is the first instant after.
    let midnight = |d: Date| {
        let at = tz.to_ambiguous_timestamp(d.to_datetime(Time::midnight()));
        at.compatible().ok().map(|t| t.as_nanosecond())
    };
    let start = midnight(date)?;
    let end = midnight(date.tomorrow().ok()?)?;
    Some((
        i64::try_from(start).ok()?,
        i64::try_from(end).ok()?,
        date.year(),
    ))
}

#[cfg(test)]
#[path = "daily_tests.rs"]
mod tests;
