//! The aggregator's state across restarts (see [`crate::pipeline::persist`] for when and
//! where it is written, [`crate::state`] for the format). Sections:
//! - `counters`: per counter series (key, kind), the last total of a `counter_total` and the
//!   sums of its windows not closed yet (open, or flushed as partial at stop), so that the
//!   chain continues and a window a restart cuts in two is re-emitted whole (its point
//!   overwritten with the full sum, not the second part);
//! - `occupancy`: per zone, the running value, its re-base date and recent nets
//!   ([`crate::domain::footfall::ZoneSnapshot`]);
//! - `sensor_intervals`: learned reporting intervals ([`crate::health::tracker`]);
//! - `air_quality`: open hours, the running means' last 24 hours, open days and the year's
//!   threshold counts ([`crate::domain::periods_state`]).
//!
//! A document is applied once, when the clock is first trusted (its age means nothing
//! before): one saved by another gateway, in the future, or longer ago than
//! `state.max_age_secs` is discarded and logged; an unparsable section is skipped with a
//! warning, the others are used. Restored counters wait for their series' first reading; a
//! device that reset while the daemon was down shows as a drop and counts from 0 (see
//! [`crate::domain::footfall`]). Entries of series not seen again are saved on until they
//! are older than `max_age_secs`.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Aggregator;
use crate::clock::Now;
use crate::domain::footfall::{TotalCounter, ZoneSnapshot};
use crate::domain::periods_state::AirQualityEntry;
use crate::health::tracker::IntervalSnapshot;
use crate::pipeline::persist::StateFile;
use crate::pipeline::timeline::Placement;
use crate::reading::{GroupKey, QuantityKind, TimestampNs, NANOS_PER_SEC};
use crate::state::{Restore, StateDoc, MAX_ENTRIES};

const COUNTERS: &str = "counters";
const OCCUPANCY: &str = "occupancy";
const INTERVALS: &str = "sensor_intervals";
const AIR_QUALITY: &str = "air_quality";
/// A state saved later than this after `now` is from a clock that stepped back: discarded.
const FUTURE_NS: i64 = 300 * NANOS_PER_SEC;

/// One counter series as saved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CounterEntry {
    measurement: String,
    tags: Vec<(String, String)>,
    quantity: String,
    kind: QuantityKind,
    /// Last total (`counter_total` only).
    #[serde(default)]
    total: Option<f64>,
    /// (window start ns, sum) of the windows not closed yet, with a non-zero sum.
    #[serde(default)]
    windows: Vec<(TimestampNs, f64)>,
    /// When it was last live (the save's time).
    seen: TimestampNs,
}

/// The aggregator's state-file bookkeeping.
#[derive(Debug, Default)]
pub(super) struct Persist {
    file: Option<StateFile>,
    /// Restored counters waiting for their series' first reading.
    counters: HashMap<(GroupKey, String), CounterEntry>,
    /// The entry cap was hit (logged once).
    capped: bool,
}

impl Aggregator {
    /// Restores from and saves to `file` (`None`: no state). The document read at start is
    /// applied now if the clock is trusted, else when it first is.
    pub fn with_state(mut self, file: Option<StateFile>, now: Now) -> Aggregator {
        self.persist.file = file;
        if self.tracker.trusted() {
            self.apply_state(now.wall);
        }
        self
    }

    /// Applies the document read at start, once; see the module doc.
    pub(super) fn apply_state(&mut self, now: TimestampNs) {
        let Some(file) = &mut self.persist.file else {
            return;
        };
        let Some(mut doc) = file.loaded.take() else {
            return;
        };
        let (path, max_age) = (file.path.display().to_string(), file.max_age_ns);
        let age = now.saturating_sub(doc.saved_at);
        let why = if doc.gateway != file.gateway {
            format!("saved by gateway {:?}", doc.gateway)
        } else if age > max_age {
            format!(
                "saved {} s ago, more than state.max_age_secs",
                age / NANOS_PER_SEC
            )
        } else if age < -FUTURE_NS {
            "saved in the future (the clock stepped back?)".to_string()
        } else {
            String::new()
        };
        if !why.is_empty() {
            tracing::warn!(file = %path, reason = %why, "state file discarded: starting afresh");
            self.metrics.state.restore(Restore::Discarded);
            return;
        }
        let oldest = now.saturating_sub(max_age);
        let counters: Vec<CounterEntry> = section(&mut doc, COUNTERS, &path);
        for e in counters.into_iter().take(MAX_ENTRIES) {
            if e.seen >= oldest && e.kind != QuantityKind::Gauge {
                let key = GroupKey::new(&e.measurement, e.tags.clone());
                self.persist.counters.insert((key, e.quantity.clone()), e);
            }
        }
        let zones: Vec<ZoneSnapshot> = section(&mut doc, OCCUPANCY, &path);
        let zones = self.derive.occupancy.restore(zones);
        let intervals: Vec<IntervalSnapshot> = section(&mut doc, INTERVALS, &path);
        let sensors = match &mut self.hooks.health {
            Some(h) => h.restore_intervals(intervals, oldest),
            None => 0,
        };
        let air: Vec<AirQualityEntry> = section(&mut doc, AIR_QUALITY, &path);
        let air_quality = self.derive.restore_air_quality(air, now);
        tracing::info!(file = %path, age_s = age / NANOS_PER_SEC,
            counters = self.persist.counters.len(), zones, sensors, air_quality, "state restored");
        self.metrics.state.restore(Restore::Restored);
    }

    /// Hands a snapshot of the state to the writer (after a close, and at stop); nothing
    /// while the clock is untrusted.
    pub(super) fn save_state(&mut self, now: TimestampNs) {
        if self.persist.file.is_none() || !self.tracker.trusted() {
            return;
        }
        let doc = self.snapshot(now);
        if let Some(file) = &self.persist.file {
            file.out.send_replace(Some(Arc::new(doc)));
        }
    }

    fn snapshot(&mut self, now: TimestampNs) -> StateDoc {
        let gateway = self
            .persist
            .file
            .as_ref()
            .map_or("", |f| f.gateway.as_str());
        let mut doc = StateDoc::new(gateway, now);
        // Windows emitted by a close are whole; those not emitted yet (open, or flushed as
        // partial at stop) are what a restart cuts in two.
        let from = self.timeline.emit_before();
        let since = self.timeline.start_of(from);
        let mut counters = self.counter_entries(now, from);
        let mut zones = self.derive.occupancy.snapshot(since);
        let intervals = match &self.hooks.health {
            Some(h) => h.intervals(MAX_ENTRIES),
            None => Vec::new(),
        };
        let over = counters.len() > MAX_ENTRIES || zones.len() > MAX_ENTRIES;
        if over && !std::mem::replace(&mut self.persist.capped, true) {
            tracing::warn!(
                max = MAX_ENTRIES,
                "state file holds the first {MAX_ENTRIES} counters and zones only"
            );
        }
        counters.truncate(MAX_ENTRIES);
        zones.truncate(MAX_ENTRIES);
        // Values are finite (checked on the way in), so these cannot fail.
        let _ = doc.put(COUNTERS, &counters);
        let _ = doc.put(OCCUPANCY, &zones);
        let _ = doc.put(INTERVALS, &intervals);
        let air = self.derive.air_quality_snapshot();
        if !air.is_empty() {
            let _ = doc.put(AIR_QUALITY, &air);
        }
        doc
    }

    /// The live counter series with their windows from `from` on, then the restored ones not
    /// seen again yet.
    fn counter_entries(&self, now: TimestampNs, from: i64) -> Vec<CounterEntry> {
        let mut out = Vec::new();
        for slot in self.slots.iter().flatten() {
            if slot.info.kind.kind == QuantityKind::Gauge {
                continue;
            }
            let windows: Vec<(TimestampNs, f64)> = (slot.state.window_sums())
                .filter(|(w, sum)| *w >= from && sum.is_finite() && *sum != 0.0)
                .map(|(w, sum)| (self.timeline.start_of(w), sum))
                .collect();
            let total = slot.total.last();
            if total.is_none() && windows.is_empty() {
                continue;
            }
            let key = &slot.info.group_key;
            out.push(CounterEntry {
                measurement: key.measurement.to_string(),
                tags: (key.tags.iter())
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                quantity: slot.info.quantity.to_string(),
                kind: slot.info.kind.kind,
                total,
                windows,
                seen: now,
            });
        }
        out.extend(self.persist.counters.values().cloned());
        out
    }

    /// Gives the new slot `idx` its restored total and window sums, if any; true if it had
    /// some.
    pub(super) fn seed_slot(&mut self, idx: usize) -> bool {
        if self.persist.counters.is_empty() {
            return false;
        }
        let Some(slot) = self.slots.get_mut(idx).and_then(|s| s.as_deref_mut()) else {
            return false;
        };
        let key = (
            (*slot.info.group_key).clone(),
            slot.info.quantity.to_string(),
        );
        let Some(entry) = self.persist.counters.remove(&key) else {
            return false;
        };
        if entry.kind != slot.info.kind.kind {
            return false;
        }
        if let (QuantityKind::CounterTotal, Some(total)) = (entry.kind, entry.total) {
            slot.total = TotalCounter::restored(total);
        }
        for (start, sum) in entry.windows {
            if start.rem_euclid(self.window_ns) != 0 || !sum.is_finite() {
                continue;
            }
            let w = self.timeline.window_of(start);
            if self.timeline.place(w) != Placement::Late {
                slot.state.insert(w, sum);
            }
        }
        true
    }
}

/// Section `name` of `doc`, or empty (with a warning) if it does not parse.
fn section<T: serde::de::DeserializeOwned>(doc: &mut StateDoc, name: &str, path: &str) -> Vec<T> {
    match doc.take::<Vec<T>>(name) {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(file = %path, section = name, error = %e, "state file section ignored");
            Vec::new()
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
