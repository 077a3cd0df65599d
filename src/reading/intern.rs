//! Sharing inside the [`Registry`](super::Registry), so that a series costs a few words and
//! not a string per key: every distinct measurement, tag key and quantity is stored once,
//! series kinds are a small table, and tag values that repeat across groups (gateway id,
//! site, zone) share one `Arc` with the groups interned shortly before.
//!
//! Values unique to one group (a sensor id) are not kept in any table: a set of them would
//! cost more than it shares.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{GroupKey, SeriesKind, Tags};

/// Distinct values remembered per tag key; enough for the few sites or zones one gateway
/// interleaves, small enough that a sensor-id key churns through it cheaply.
const RECENT_VALUES: usize = 8;

/// Measurements and tag keys: a handful of names, each stored once.
#[derive(Default)]
struct Names(HashSet<Arc<str>>);

impl Names {
    /// The shared copy of `s`; `s` itself becomes it on first sight (no new allocation).
    fn share(&mut self, s: &Arc<str>) -> Arc<str> {
        if let Some(shared) = self.0.get(&**s) {
            return shared.clone();
        }
        self.0.insert(s.clone());
        s.clone()
    }
}

/// Strings of group keys: names once, tag values shared with recent groups.
#[derive(Default)]
pub(super) struct KeyStrings {
    names: Names,
    /// Per tag key (shared), its most recently used distinct values, newest first.
    recent: Vec<(Arc<str>, Vec<Arc<str>>)>,
    /// The tag set of the group interned last: groups of one sensor (its air-quality and
    /// climate points) have equal tag sets and then share one slice.
    last_tags: Option<Tags>,
}

impl KeyStrings {
    /// `key` with its strings replaced by shared copies; equal to `key` in every way.
    pub(super) fn share(&mut self, key: GroupKey) -> GroupKey {
        let measurement = self.names.share(&key.measurement);
        let tags = match &self.last_tags {
            Some(last) if **last == *key.tags => last.clone(),
            _ => {
                let tags: Vec<(Arc<str>, Arc<str>)> = key
                    .tags
                    .iter()
                    .map(|(k, v)| {
                        let k = self.names.share(k);
                        let v = self.value(&k, v);
                        (k, v)
                    })
                    .collect();
                let tags: Tags = tags.into();
                self.last_tags = Some(tags.clone());
                tags
            }
        };
        GroupKey { measurement, tags }
    }

    /// The recent copy of tag value `v` under `key` (compared by content), else `v`.
    fn value(&mut self, key: &Arc<str>, v: &Arc<str>) -> Arc<str> {
        let slot = match self.recent.iter().position(|(k, _)| Arc::ptr_eq(k, key)) {
            Some(i) => i,
            None => {
                self.recent.push((key.clone(), Vec::new()));
                self.recent.len() - 1
            }
        };
        let values = &mut self.recent[slot].1;
        let shared = match values.iter().position(|x| **x == **v) {
            Some(i) => values.remove(i),
            None => v.clone(),
        };
        values.insert(0, shared.clone());
        values.truncate(RECENT_VALUES);
        shared
    }
}

/// Names by dense `u32` id: one `Arc<str>` per distinct name, looked up by `&str` without
/// allocating. The registry's quantities; the MQTT topic cache's series keys.
#[derive(Default)]
pub(crate) struct Interner {
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Interner {
    /// The id of `q`, if it was interned.
    pub(crate) fn get(&self, q: &str) -> Option<u32> {
        self.ids.get(q).copied()
    }

    /// The id of `q`, interning it on first sight.
    pub(crate) fn intern(&mut self, q: &str) -> u32 {
        if let Some(id) = self.get(q) {
            return id;
        }
        let id = self.names.len() as u32;
        let name: Arc<str> = Arc::from(q);
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }

    pub(crate) fn name(&self, id: u32) -> Option<&Arc<str>> {
        self.names.get(id as usize)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// Forgets every name; ids handed out before are meaningless afterwards.
    pub(crate) fn clear(&mut self) {
        self.ids.clear();
        self.names.clear();
    }
}

/// The distinct series kinds (gauge, counter, a few counter wraps): searched linearly.
#[derive(Default)]
pub(super) struct Kinds(Vec<SeriesKind>);

impl Kinds {
    pub(super) fn intern(&mut self, kind: SeriesKind) -> u32 {
        match self.0.iter().position(|k| *k == kind) {
            Some(i) => i as u32,
            None => {
                self.0.push(kind);
                (self.0.len() - 1) as u32
            }
        }
    }

    pub(super) fn get(&self, id: u32) -> SeriesKind {
        self.0.get(id as usize).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(m: &str, tags: &[(&str, &str)]) -> GroupKey {
        GroupKey::new(m, tags.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn shared_keys_are_equal_and_share_repeated_strings() {
        let mut s = KeyStrings::default();
        let a = key("air_quality", &[("gateway", "gw"), ("sensor", "s1")]);
        let b = key("air_quality", &[("gateway", "gw"), ("sensor", "s2")]);
        let c = key("climate", &[("gateway", "gw"), ("sensor", "s2")]);
        let (sa, sb, sc) = (s.share(a.clone()), s.share(b.clone()), s.share(c.clone()));
        assert_eq!((&sa, &sb, &sc), (&a, &b, &c));
        assert!(Arc::ptr_eq(&sa.measurement, &sb.measurement));
        assert!(Arc::ptr_eq(&sa.tags[0].0, &sb.tags[0].0), "tag key");
        assert!(Arc::ptr_eq(&sa.tags[0].1, &sb.tags[0].1), "repeated value");
        assert!(Arc::ptr_eq(&sb.tags, &sc.tags), "same sensor, one tag set");
    }

    #[test]
    fn interleaved_values_stay_shared() {
        let mut s = KeyStrings::default();
        let mut firsts: Vec<Arc<str>> = Vec::new();
        for i in 0..40 {
            let site = ["north", "south", "east"][i % 3];
            let k = s.share(key("m", &[("sensor", &format!("s{i}")), ("site", site)]));
            let v = k.tags[1].1.clone();
            match firsts.iter().find(|f| **f == v) {
                Some(f) => assert!(Arc::ptr_eq(f, &v), "{site} shared"),
                None => firsts.push(v),
            }
        }
        assert_eq!(firsts.len(), 3);
    }

    #[test]
    fn quantities_and_kinds_are_interned_once() {
        let mut q = Interner::default();
        assert_eq!(q.get("pm10"), None);
        let a = q.intern("pm10");
        assert_eq!(q.intern("pm2_5"), a + 1);
        assert_eq!(q.intern("pm10"), a);
        assert_eq!(q.get("pm10"), Some(a));
        assert_eq!(q.name(a).map(|n| &**n), Some("pm10"));
        assert_eq!(q.len(), 2);
        q.clear();
        assert_eq!((q.get("pm10"), q.len()), (None, 0));
        let mut k = Kinds::default();
        let wrap = SeriesKind {
            wrap: Some(65536),
            ..SeriesKind::default()
        };
        let (g, w) = (k.intern(SeriesKind::default()), k.intern(wrap));
        assert_ne!(g, w);
        assert_eq!(k.intern(wrap), w);
        assert_eq!(k.get(w), wrap);
    }
}
