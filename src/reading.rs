//! The one data type every stage shares: a [`Reading`] of one quantity from one series,
//! and the [`Registry`] that interns series keys so a reading carries a `u32`, not strings.
//!
//! Sources resolve a series once (on first sight of a topic or sensor) and cache the
//! [`SeriesId`]; the hot path then moves three plain words per reading and never allocates.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

mod intern;
pub(crate) use intern::Interner;

/// Nanoseconds since the Unix epoch, UTC.
pub type TimestampNs = i64;

/// Nanoseconds per second.
pub const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Index of an interned series in the [`Registry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(pub u32);

/// Index of an interned group (measurement + tag set) in the [`Registry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub u32);

/// One measured value of one series at one event time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    pub series: SeriesId,
    /// What `ts` counts from (fits in the padding after `series`: still 24 bytes).
    pub base: TimeBase,
    pub value: f64,
    /// Event time: the sensor's own timestamp (UTC, ns) when it has one, else the time of
    /// receipt as `CLOCK_BOOTTIME` ns; see `base`.
    pub ts: TimestampNs,
}

/// The clock a [`Reading`]'s `ts` was taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimeBase {
    /// ns since the Unix epoch, UTC: the payload's own timestamp.
    #[default]
    Wall,
    /// `CLOCK_BOOTTIME` ns at receipt: the reading had no time of its own. The aggregator
    /// places it once the wall clock is synchronised (see [`crate::clock`]).
    Boot,
}

impl Reading {
    /// A reading with its own event time (ns since the epoch, UTC).
    pub fn new(series: SeriesId, value: f64, ts: TimestampNs) -> Reading {
        Reading {
            series,
            base: TimeBase::Wall,
            value,
            ts,
        }
    }

    /// A reading stamped at receipt with boot time ([`crate::clock::boot_ns`]).
    pub fn received(series: SeriesId, value: f64, boot_ns: i64) -> Reading {
        Reading {
            series,
            base: TimeBase::Boot,
            value,
            ts: boot_ns,
        }
    }
}

/// A tag set, sorted by key so equal sets compare and encode the same.
pub type Tags = Arc<[(Arc<str>, Arc<str>)]>;

/// Measurement and tag set: everything that makes one line-protocol point, but its fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub measurement: Arc<str>,
    pub tags: Tags,
}

impl GroupKey {
    /// Builds a key, sorting the tags by key (and dropping empty values, which line protocol
    /// cannot carry).
    pub fn new(measurement: &str, tags: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut tags: Vec<(Arc<str>, Arc<str>)> = tags
            .into_iter()
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            .map(|(k, v)| (Arc::from(k), Arc::from(v)))
            .collect();
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        tags.dedup_by(|a, b| a.0 == b.0);
        GroupKey {
            measurement: Arc::from(measurement),
            tags: tags.into(),
        }
    }

    /// The value of tag `key`, if set.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| &**v)
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.measurement)?;
        for (k, v) in self.tags.iter() {
            write!(f, ",{k}={v}")?;
        }
        Ok(())
    }
}

/// How a series' readings add up over a window.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum QuantityKind {
    /// A level (concentration, temperature): the window gets the configured statistics.
    #[default]
    Gauge,
    /// Each reading is a number of events: the window gets their sum as field `<quantity>`.
    Counter,
    /// Each reading is a cumulative total: the window gets the increase as field `<quantity>`,
    /// with resets and wraps handled (see `domain::footfall`).
    CounterTotal,
}

/// A series' kind and, for `counter_total`, the value at which its counter wraps to 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SeriesKind {
    pub kind: QuantityKind,
    /// E.g. 65536 for a 16-bit counter; `None`: every drop is a reset.
    pub wrap: Option<u64>,
}

/// A series as the aggregator needs it, resolved once per series.
#[derive(Clone, Debug)]
pub struct SeriesInfo {
    pub group: GroupId,
    pub group_key: Arc<GroupKey>,
    pub quantity: Arc<str>,
    /// Set by the source that interned the series first ([`Registry::series_with_kind`]).
    pub kind: SeriesKind,
}

/// A series as the registry stores it: three words, the strings shared (see `intern.rs`).
struct Packed {
    group: GroupId,
    quantity: u32,
    kind: u32,
}

struct Interned {
    max_series: usize,
    groups: HashMap<Arc<GroupKey>, GroupId>,
    group_keys: Vec<Arc<GroupKey>>,
    key_strings: intern::KeyStrings,
    quantities: Interner,
    kinds: intern::Kinds,
    /// (group, quantity id) -> series: twelve bytes an entry, no string per series.
    series: HashMap<(GroupId, u32), SeriesId>,
    series_info: Vec<Packed>,
}

/// Interns group and series keys. Shared by sources (which only touch it on a cache miss)
/// and the aggregator (which resolves each new id once). Bounded: a topic flood cannot grow
/// it past `max_series`.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Mutex<Interned>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::with_limit(usize::MAX)
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry that refuses new series beyond `max_series`.
    pub fn with_limit(max_series: usize) -> Self {
        Registry {
            inner: Arc::new(Mutex::new(Interned {
                max_series,
                groups: HashMap::new(),
                group_keys: Vec::new(),
                key_strings: intern::KeyStrings::default(),
                quantities: Interner::default(),
                kinds: intern::Kinds::default(),
                series: HashMap::new(),
                series_info: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Interned> {
        // A panic while holding this lock cannot leave the maps inconsistent (every insert
        // is a single push + insert), so a poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id of `key`, interning it on first sight.
    pub fn group(&self, key: GroupKey) -> GroupId {
        let mut inner = self.lock();
        if let Some(id) = inner.groups.get(&key) {
            return *id;
        }
        let id = GroupId(inner.group_keys.len() as u32);
        let key = Arc::new(inner.key_strings.share(key));
        inner.group_keys.push(key.clone());
        inner.groups.insert(key, id);
        id
    }

    /// The id of the series `quantity` in `group`, interning it on first sight; `None` when
    /// the series is new and the limit is reached.
    pub fn series(&self, group: GroupId, quantity: &str) -> Option<SeriesId> {
        self.series_with_kind(group, quantity, SeriesKind::default())
    }

    /// Like [`Registry::series`], recording `kind` when the series is new. An existing series
    /// keeps the kind it was interned with: the aggregator has read it already.
    pub fn series_with_kind(
        &self,
        group: GroupId,
        quantity: &str,
        kind: SeriesKind,
    ) -> Option<SeriesId> {
        let mut inner = self.lock();
        let known = inner.quantities.get(quantity);
        if let Some(id) = known.and_then(|q| inner.series.get(&(group, q))) {
            return Some(*id);
        }
        if inner.series_info.len() >= inner.max_series {
            return None;
        }
        inner.group_keys.get(group.0 as usize)?;
        let quantity = match known {
            Some(q) => q,
            None => inner.quantities.intern(quantity),
        };
        let id = SeriesId(inner.series_info.len() as u32);
        let kind = inner.kinds.intern(kind);
        inner.series_info.push(Packed {
            group,
            quantity,
            kind,
        });
        inner.series.insert((group, quantity), id);
        Some(id)
    }

    /// What `id` stands for. `None` only for an id this registry never handed out.
    pub fn info(&self, id: SeriesId) -> Option<SeriesInfo> {
        let inner = self.lock();
        let s = inner.series_info.get(id.0 as usize)?;
        Some(SeriesInfo {
            group: s.group,
            group_key: inner.group_keys.get(s.group.0 as usize)?.clone(),
            quantity: inner.quantities.name(s.quantity)?.clone(),
            kind: inner.kinds.get(s.kind),
        })
    }

    /// Number of series interned so far.
    pub fn series_count(&self) -> usize {
        self.lock().series_info.len()
    }
}

/// The measurement a quantity is written to unless configured otherwise.
pub fn default_measurement(quantity: &str) -> &'static str {
    const AIR: &[&str] = &[
        "co2",
        "no2",
        "o3",
        "so2",
        "co",
        "nh3",
        "voc",
        "tvoc",
        "typical_particle_size",
    ];
    const CLIMATE: &[&str] = &[
        "temperature",
        "humidity",
        "pressure",
        "dew_point",
        "noise",
        "illuminance",
    ];
    const FOOTFALL: &[&str] = &["in", "out", "count", "people", "occupancy", "passersby"];
    let q = quantity;
    if q.starts_with("pm") || q.starts_with("pc") || q.starts_with("nc") || AIR.contains(&q) {
        "air_quality"
    } else if CLIMATE.contains(&q) {
        "climate"
    } else if FOOTFALL.contains(&q) {
        "footfall"
    } else if q == "rssi" || q == "snr" {
        // Radio link quality (TTN gateways) is sensor health; it merges with those points.
        "sensor_health"
    } else {
        "sensor"
    }
}

/// Wall-clock time now, in ns since the epoch.
pub fn now_ns() -> TimestampNs {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_stable_and_tags_are_sorted() {
        let reg = Registry::new();
        let a = reg.group(GroupKey::new(
            "air_quality",
            [("site".into(), "x".into()), ("gateway".into(), "g".into())],
        ));
        let b = reg.group(GroupKey::new(
            "air_quality",
            [("gateway".into(), "g".into()), ("site".into(), "x".into())],
        ));
        assert_eq!(a, b);
        let s1 = reg.series(a, "pm2_5").unwrap();
        let s2 = reg.series(a, "pm10").unwrap();
        assert_ne!(s1, s2);
        assert_eq!(reg.series(a, "pm2_5"), Some(s1));
        let info = reg.info(s2).expect("interned");
        assert_eq!(&*info.quantity, "pm10");
        assert_eq!(info.group_key.to_string(), "air_quality,gateway=g,site=x");
        assert_eq!(reg.series_count(), 2);
    }

    #[test]
    fn series_share_their_quantity_and_keep_their_first_kind() {
        let reg = Registry::new();
        let g1 = reg.group(GroupKey::new("footfall", [("door".into(), "a".into())]));
        let g2 = reg.group(GroupKey::new("footfall", [("door".into(), "b".into())]));
        let total = SeriesKind {
            kind: QuantityKind::CounterTotal,
            wrap: Some(65536),
        };
        let a = reg.series_with_kind(g1, "in", total).unwrap();
        let b = reg.series(g2, "in").unwrap();
        assert_eq!(
            reg.series_with_kind(g1, "in", SeriesKind::default()),
            Some(a)
        );
        let (ia, ib) = (reg.info(a).unwrap(), reg.info(b).unwrap());
        assert!(
            Arc::ptr_eq(&ia.quantity, &ib.quantity),
            "one name per quantity"
        );
        assert_eq!((ia.kind, ib.kind), (total, SeriesKind::default()));
        assert_eq!((ia.group, ib.group), (g1, g2));
        assert_eq!(reg.series(GroupId(99), "in"), None, "unknown group");
        assert_eq!(reg.series_count(), 2);
    }

    #[test]
    fn reading_stays_three_words() {
        assert_eq!(std::mem::size_of::<Reading>(), 24);
    }

    #[test]
    fn limit_refuses_new_series_only() {
        let reg = Registry::with_limit(1);
        let g = reg.group(GroupKey::new("m", []));
        let a = reg.series(g, "a");
        assert!(a.is_some());
        assert_eq!(reg.series(g, "b"), None);
        assert_eq!(reg.series(g, "a"), a);
    }

    #[test]
    fn measurements_by_quantity() {
        assert_eq!(default_measurement("pm2_5"), "air_quality");
        assert_eq!(default_measurement("co2"), "air_quality");
        assert_eq!(default_measurement("humidity"), "climate");
        assert_eq!(default_measurement("in"), "footfall");
        assert_eq!(default_measurement("battery"), "sensor");
    }

    #[test]
    fn empty_tag_values_are_dropped() {
        let key = GroupKey::new("m", [("a".into(), "".into()), ("b".into(), "1".into())]);
        assert_eq!(key.tags.len(), 1);
        assert_eq!(key.tag("b"), Some("1"));
        assert_eq!(key.tag("a"), None);
    }
}
