//! Hourly values with data capture: what a city may publish under EU air-quality law, built
//! from the closed windows' statistics. Pure bookkeeping, fed by [`crate::domain`] at
//! every close and asked for finished hours by the aggregator.
//!
//! Per point (group key) and quantity:
//! - the **hourly mean**, weighted by reading count: sum of the windows' sums over the sum of
//!   their counts (a window of 2 readings does not weigh as much as one of 60);
//! - the **coverage**: the share of the hour's windows that had readings; the hour is
//!   **valid** when it is at least `min_coverage` (EU 2008/50/EC Annex VII, kept in the 2024
//!   recast 2024/2881: 75 %, i.e. 45 minutes of an hour);
//! - the **24-hour running mean**: the mean of the valid hourly means among the hour and the
//!   23 before it, with how many were valid; valid from [`MIN_VALID_HOURS`] (18 of 24, the same
//!   Annexes). An hour with no data at all counts as not valid.
//!
//! A window is recorded each time it is emitted, so a correction (late readings within the
//! grace period) replaces its first emission. An hour is final once its last window is past
//! the grace period: [`Hourly::close_before`] is called with the aggregator's retain floor.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crate::line_protocol::FieldValue;
use crate::reading::{GroupKey, NANOS_PER_SEC};

/// One hour in nanoseconds.
pub const HOUR_NS: i64 = 3600 * NANOS_PER_SEC;
/// Hours in a running mean.
pub const RUNNING_HOURS: i64 = 24;
/// Valid hours a 24-hour running mean (and a daily value) needs.
pub const MIN_VALID_HOURS: u32 = 18;
/// Measurement of the hourly points.
pub const MEASUREMENT: &str = "air_quality_hourly";

/// How hourly values are made.
#[derive(Clone, Debug, PartialEq)]
pub struct HourlySettings {
    /// The aggregator's window length; divides [`HOUR_NS`].
    pub window_ns: i64,
    pub min_coverage: f64,
    pub quantities: Vec<String>,
}

impl HourlySettings {
    /// `None` unless `window_ns` divides an hour (the config check says so first).
    pub fn new(window_ns: i64, min_coverage: f64, quantities: Vec<String>) -> Option<Self> {
        (window_ns > 0 && HOUR_NS % window_ns == 0).then_some(HourlySettings {
            window_ns,
            min_coverage,
            quantities,
        })
    }

    fn windows_per_hour(&self) -> i64 {
        HOUR_NS / self.window_ns
    }
}

/// One finished hour of one quantity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HourValue {
    /// Hour index: start / [`HOUR_NS`].
    pub hour: i64,
    pub mean: f64,
    pub coverage: f64,
    pub valid: bool,
}

/// The 24-hour running mean ending with an hour.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Running {
    /// Mean of the valid hourly means; `None` when none was valid.
    pub mean: Option<f64>,
    pub valid_hours: u32,
    pub valid: bool,
}

/// One quantity's values for a finished hour.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantityHour {
    pub quantity: String,
    pub hour: HourValue,
    pub running: Running,
}

/// The hourly point of one group key and hour.
#[derive(Clone, Debug, PartialEq)]
pub struct HourlyPoint {
    pub key: GroupKey,
    pub hour: i64,
    pub values: Vec<QuantityHour>,
}

impl HourlyPoint {
    /// The point's timestamp: the hour's start.
    pub fn ts(&self) -> i64 {
        self.hour.saturating_mul(HOUR_NS)
    }

    /// `<q>_mean`, `<q>_coverage`, `<q>_valid`, `<q>_mean_24h` (when any hour was valid),
    /// `<q>_valid_hours_24h`, `<q>_valid_24h` per quantity.
    pub fn fields(&self) -> Vec<(String, FieldValue)> {
        let mut out = Vec::with_capacity(self.values.len() * 6);
        for v in &self.values {
            let q = &v.quantity;
            if v.hour.mean.is_finite() {
                out.push((format!("{q}_mean"), FieldValue::Float(v.hour.mean)));
            }
            out.push((format!("{q}_coverage"), FieldValue::Float(v.hour.coverage)));
            out.push((format!("{q}_valid"), FieldValue::Bool(v.hour.valid)));
            if let Some(m) = v.running.mean {
                out.push((format!("{q}_mean_24h"), FieldValue::Float(m)));
            }
            let n = i64::from(v.running.valid_hours);
            out.push((format!("{q}_valid_hours_24h"), FieldValue::Int(n)));
            out.push((format!("{q}_valid_24h"), FieldValue::Bool(v.running.valid)));
        }
        out
    }
}

/// One quantity of one point: its open hours and its recent finished ones.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesHours {
    /// Open hours: hour -> window -> (reading count, sum of the values).
    pub open: BTreeMap<i64, BTreeMap<i64, (u64, f64)>>,
    /// Finished hours of the last [`RUNNING_HOURS`], oldest first.
    pub recent: VecDeque<HourValue>,
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct Hourly {
    /// `None`: off.
    pub settings: Option<HourlySettings>,
    pub groups: HashMap<GroupKey, BTreeMap<String, SeriesHours>>,
    /// Hours below this are final; windows for them are ignored.
    pub closed_before: i64,
    /// Windows restored from the state file: emitted again after a restart they hold only
    /// the readings since, so they add to the saved part instead of replacing it.
    pub restored: HashSet<(GroupKey, String, i64)>,
}

impl Hourly {
    /// Off when `settings` is `None`.
    pub fn new(settings: Option<HourlySettings>) -> Hourly {
        Hourly {
            settings,
            groups: HashMap::new(),
            closed_before: i64::MIN,
            restored: HashSet::new(),
        }
    }

    /// Whether `quantity` gets hourly values.
    pub fn wants(&self, quantity: &str) -> bool {
        (self.settings.as_ref()).is_some_and(|s| s.quantities.iter().any(|q| q == quantity))
    }

    /// Records (or, for a correction, replaces) window `window` of `quantity` at `key`: `count`
    /// readings with mean `mean`. Ignored when off, for other quantities, or for a final hour.
    pub fn record(&mut self, key: &GroupKey, quantity: &str, window: i64, count: u64, mean: f64) {
        let Some(s) = &self.settings else { return };
        if !self.wants(quantity) {
            return;
        }
        let hour = window.saturating_mul(s.window_ns).div_euclid(HOUR_NS);
        if hour < self.closed_before {
            return;
        }
        // Look up before inserting: the common case allocates no key.
        if !self.groups.contains_key(key) {
            self.groups.insert(key.clone(), BTreeMap::new());
        }
        let Some(group) = self.groups.get_mut(key) else {
            return;
        };
        if !group.contains_key(quantity) {
            group.insert(quantity.to_string(), SeriesHours::default());
        }
        let Some(series) = group.get_mut(quantity) else {
            return;
        };
        let mut entry = (count, if count == 0 { 0.0 } else { mean * count as f64 });
        let windows = series.open.entry(hour).or_default();
        if !self.restored.is_empty()
            && self
                .restored
                .remove(&(key.clone(), quantity.to_string(), window))
        {
            if let Some((n, x)) = windows.get(&window) {
                entry = (entry.0 + n, entry.1 + x);
            }
        }
        windows.insert(window, entry);
    }

    /// Finishes every hour that ended at or before `until_ns`, oldest first; one point per
    /// (key, hour) that had windows, sorted by hour, then measurement and tags.
    pub fn close_before(&mut self, until_ns: i64) -> Vec<HourlyPoint> {
        let Some(s) = &self.settings else {
            return Vec::new();
        };
        let limit = until_ns.div_euclid(HOUR_NS);
        if limit <= self.closed_before {
            return Vec::new();
        }
        self.closed_before = limit;
        let window_ns = s.window_ns;
        (self.restored)
            .retain(|(_, _, w)| w.saturating_mul(window_ns).div_euclid(HOUR_NS) >= limit);
        let mut points: Vec<HourlyPoint> = Vec::new();
        for (key, series) in &mut self.groups {
            let mut by_hour: BTreeMap<i64, Vec<QuantityHour>> = BTreeMap::new();
            for (quantity, hours) in series.iter_mut() {
                for q in hours.finish_before(limit, s) {
                    by_hour.entry(q.hour.hour).or_default().push(QuantityHour {
                        quantity: quantity.clone(),
                        ..q
                    });
                }
            }
            points.extend(by_hour.into_iter().map(|(hour, values)| HourlyPoint {
                key: key.clone(),
                hour,
                values,
            }));
            series.retain(|_, h| !h.open.is_empty() || !h.recent.is_empty());
        }
        self.groups.retain(|_, s| !s.is_empty());
        points.sort_by(|a, b| {
            (a.hour, &a.key.measurement, &a.key.tags).cmp(&(
                b.hour,
                &b.key.measurement,
                &b.key.tags,
            ))
        });
        points
    }
}

impl SeriesHours {
    /// Finishes the open hours below `limit`, returning their values (quantity left empty),
    /// and drops recent hours too old for any running mean from `limit` on.
    fn finish_before(&mut self, limit: i64, s: &HourlySettings) -> Vec<QuantityHour> {
        let mut out = Vec::new();
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() >= limit {
                break;
            }
            let (hour, windows) = entry.remove_entry();
            let value = hour_value(hour, &windows, s);
            self.recent.push_back(value);
            self.forget_before(hour - RUNNING_HOURS + 1);
            out.push(QuantityHour {
                quantity: String::new(),
                hour: value,
                running: running(&self.recent, hour),
            });
        }
        self.forget_before(limit - RUNNING_HOURS);
        out
    }

    fn forget_before(&mut self, hour: i64) {
        while self.recent.front().is_some_and(|h| h.hour < hour) {
            self.recent.pop_front();
        }
    }
}

/// The hour `hour` from its windows' (count, sum).
pub fn hour_value(hour: i64, windows: &BTreeMap<i64, (u64, f64)>, s: &HourlySettings) -> HourValue {
    let with_readings = windows.values().filter(|(n, x)| *n > 0 && x.is_finite());
    let (mut n, mut sum, mut covered) = (0u64, 0.0, 0i64);
    for (count, x) in with_readings {
        n += count;
        sum += x;
        covered += 1;
    }
    let coverage = covered as f64 / s.windows_per_hour() as f64;
    HourValue {
        hour,
        mean: if n == 0 { f64::NAN } else { sum / n as f64 },
        coverage,
        // A hair of slack: 45 of 60 windows is 0.75 exactly, but other splits round.
        valid: n > 0 && coverage + 1e-9 >= s.min_coverage,
    }
}

/// The running mean over the [`RUNNING_HOURS`] ending with `hour` (inclusive).
pub fn running(recent: &VecDeque<HourValue>, hour: i64) -> Running {
    let from = hour - RUNNING_HOURS + 1;
    let valid: Vec<f64> = (recent.iter())
        .filter(|h| h.valid && (from..=hour).contains(&h.hour))
        .map(|h| h.mean)
        .collect();
    let n = valid.len() as u32;
    Running {
        mean: (n > 0).then(|| valid.iter().sum::<f64>() / f64::from(n)),
        valid_hours: n,
        valid: n >= MIN_VALID_HOURS,
    }
}

#[cfg(test)]
#[path = "hourly_tests.rs"]
mod tests;
