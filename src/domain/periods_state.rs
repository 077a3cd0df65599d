//! The hourly and daily state across restarts: what [`crate::domain::hourly`] and
//! [`crate::domain::daily`] hold, as state-file entries ([`AirQualityEntry`], one per point and
//! quantity), and its validated restore. A restart at 14:20 keeps the 14:00 hour's windows,
//! the last 24 hours of the running means, the open day and the year's counts.
//!
//! Validated on load, entry by entry: non-finite or negative numbers, windows outside their
//! hour (e.g. `window_secs` changed), hours and days longer ago than the running mean or a day
//! can use are dropped; at most [`MAX_ENTRIES`] entries and bounded lists per entry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::daily::{Day, SeriesDays};
use super::hourly::{HourValue, SeriesHours, HOUR_NS, RUNNING_HOURS};
use super::Domain;
use crate::reading::{GroupKey, TimestampNs};
use crate::state::MAX_ENTRIES;

/// Most open hours, windows per hour, open days and thresholds an entry keeps.
const MAX_OPEN_HOURS: usize = 48;
const MAX_WINDOWS: usize = 3600;
const MAX_DAYS: usize = 4;
const MAX_THRESHOLDS: usize = 64;
/// A saved day that started longer ago than this cannot be open any more.
const MAX_DAY_AGE_NS: i64 = 3 * 24 * HOUR_NS;

/// One point's quantity as saved.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AirQualityEntry {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub quantity: String,
    /// Open hours: (hour, [(window, count, sum)]).
    #[serde(default)]
    pub open_hours: Vec<(i64, Vec<SavedWindow>)>,
    /// Finished hours of the running mean: (hour, mean, coverage, valid).
    #[serde(default)]
    pub recent: Vec<(i64, f64, f64, bool)>,
    /// Open days: (start, end, year, sum, valid hours, [(threshold, hours above)]).
    #[serde(default)]
    pub days: Vec<SavedDay>,
    /// (threshold, year, count).
    #[serde(default)]
    pub year_counts: Vec<(String, i16, u32)>,
}

/// (window, reading count, sum of the values).
pub type SavedWindow = (i64, u64, f64);

/// One open day as saved.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedDay {
    pub start: TimestampNs,
    pub end: TimestampNs,
    pub year: i16,
    pub sum: f64,
    pub valid_hours: u32,
    #[serde(default)]
    pub hours_above: Vec<(String, u32)>,
}

type Entries = BTreeMap<(String, String, String), AirQualityEntry>;

/// The entry of (`key`, `q`) in `out`, made empty if new.
fn entry_for<'a>(out: &'a mut Entries, key: &GroupKey, q: &str) -> &'a mut AirQualityEntry {
    let tags: Vec<(String, String)> = (key.tags.iter())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let id = (
        key.measurement.to_string(),
        format!("{tags:?}"),
        q.to_string(),
    );
    out.entry(id).or_insert_with(|| AirQualityEntry {
        measurement: key.measurement.to_string(),
        tags,
        quantity: q.to_string(),
        ..AirQualityEntry::default()
    })
}

impl Domain {
    /// The hourly and daily state, at most [`MAX_ENTRIES`] entries.
    pub fn air_quality_snapshot(&self) -> Vec<AirQualityEntry> {
        let mut out = Entries::new();
        for (key, series) in &self.hourly.groups {
            for (q, h) in series {
                let e = entry_for(&mut out, key, q);
                // JSON has no NaN (it would be null and fail the whole section on load):
                // windows and hours without a finite value are left out; they count as
                // missing, which they are.
                let finite =
                    |(w, (n, x)): (&i64, &(u64, f64))| x.is_finite().then_some((*w, *n, *x));
                e.open_hours = (h.open.iter())
                    .map(|(hour, w)| (*hour, w.iter().filter_map(finite).collect()))
                    .collect();
                e.recent = (h.recent.iter())
                    .filter(|v| v.mean.is_finite() && v.coverage.is_finite())
                    .map(|v| (v.hour, v.mean, v.coverage, v.valid))
                    .collect();
            }
        }
        for (key, series) in &self.daily.groups {
            for (q, d) in series {
                let e = entry_for(&mut out, key, q);
                e.days = d.open.values().map(saved_day).collect();
                e.year_counts = (d.year_counts.iter())
                    .map(|(name, (year, n))| (name.clone(), *year, *n))
                    .collect();
            }
        }
        out.into_values().take(MAX_ENTRIES).collect()
    }

    /// Restores saved entries (see the module doc for what is dropped); returns how many
    /// were used. Open windows restored here are added to, not replaced by, the same window
    /// emitted again after the restart (it holds only the readings since).
    pub fn restore_air_quality(
        &mut self,
        entries: Vec<AirQualityEntry>,
        now: TimestampNs,
    ) -> usize {
        let Some(window_ns) = self.hourly.settings.as_ref().map(|s| s.window_ns) else {
            return 0;
        };
        let oldest_hour = now.div_euclid(HOUR_NS) - RUNNING_HOURS - 1;
        let mut used = 0;
        for e in entries.into_iter().take(MAX_ENTRIES) {
            if !self.hourly.wants(&e.quantity) {
                continue;
            }
            let key = GroupKey::new(&e.measurement, e.tags.clone());
            let hours = restore_hours(&e, window_ns, oldest_hour);
            let days = restore_days(&e, now);
            if hours.open.is_empty() && hours.recent.is_empty() && days.open.is_empty() {
                continue;
            }
            for w in hours.open.values().flat_map(|w| w.keys()) {
                self.hourly
                    .restored
                    .insert((key.clone(), e.quantity.clone(), *w));
            }
            let hourly = self.hourly.groups.entry(key.clone()).or_default();
            hourly.insert(e.quantity.clone(), hours);
            if self.daily.settings.is_some() {
                let daily = self.daily.groups.entry(key).or_default();
                daily.insert(e.quantity.clone(), days);
            }
            used += 1;
        }
        used
    }
}

fn saved_day(d: &Day) -> SavedDay {
    SavedDay {
        start: d.start,
        end: d.end,
        year: d.year,
        sum: d.sum,
        valid_hours: d.valid_hours,
        hours_above: (d.hours_above.iter())
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
    }
}

/// The valid hourly part of `e`.
fn restore_hours(e: &AirQualityEntry, window_ns: i64, oldest_hour: i64) -> SeriesHours {
    let mut h = SeriesHours::default();
    for (hour, windows) in e.open_hours.iter().take(MAX_OPEN_HOURS) {
        if *hour < oldest_hour {
            continue;
        }
        let ok = |(w, n, x): &&(i64, u64, f64)| {
            w.saturating_mul(window_ns).div_euclid(HOUR_NS) == *hour
                && x.is_finite()
                && (*n > 0 || *x == 0.0)
        };
        let kept: BTreeMap<i64, (u64, f64)> = (windows.iter().take(MAX_WINDOWS))
            .filter(ok)
            .map(|(w, n, x)| (*w, (*n, *x)))
            .collect();
        if !kept.is_empty() {
            h.open.insert(*hour, kept);
        }
    }
    let mut recent: Vec<HourValue> = (e.recent.iter())
        .filter(|(hour, mean, c, _)| {
            *hour >= oldest_hour && (0.0..=1.0).contains(c) && !mean.is_infinite()
        })
        .map(|(hour, mean, coverage, valid)| HourValue {
            hour: *hour,
            mean: *mean,
            coverage: *coverage,
            valid: *valid && mean.is_finite(),
        })
        .collect();
    recent.sort_by_key(|v| v.hour);
    recent.dedup_by_key(|v| v.hour);
    let skip = recent.len().saturating_sub(RUNNING_HOURS as usize);
    h.recent = recent.into_iter().skip(skip).collect();
    h
}

/// The valid daily part of `e`.
fn restore_days(e: &AirQualityEntry, now: TimestampNs) -> SeriesDays {
    let mut d = SeriesDays::default();
    for s in e.days.iter().take(MAX_DAYS) {
        let sane = s.end > s.start
            && s.end - s.start <= 26 * HOUR_NS
            && s.start >= now.saturating_sub(MAX_DAY_AGE_NS)
            && s.sum.is_finite()
            && s.valid_hours <= 25;
        if !sane {
            continue;
        }
        d.open.insert(
            s.start,
            Day {
                start: s.start,
                end: s.end,
                year: s.year,
                sum: s.sum,
                valid_hours: s.valid_hours,
                hours_above: (s.hours_above.iter().take(MAX_THRESHOLDS))
                    .filter(|(_, n)| *n <= 25)
                    .cloned()
                    .collect(),
            },
        );
    }
    d.year_counts = (e.year_counts.iter().take(MAX_THRESHOLDS))
        .map(|(name, year, n)| (name.clone(), (*year, (*n).min(366 * 25))))
        .collect();
    d
}

#[cfg(test)]
#[path = "periods_state_tests.rs"]
mod tests;
