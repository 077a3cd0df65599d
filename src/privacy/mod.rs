//! Privacy by design for sources that see device identifiers (Wi-Fi probe and BLE scanners).
//!
//! What happens to an identifier (a MAC address, a BLE id) from the moment a payload arrives:
//!
//! 1. The MQTT source extracts it from the parsed JSON ([`identify`]), normalises it into a
//!    stack buffer, and hands it to the [`Privacy`] hub together with the reading's event time.
//! 2. The hub hashes it with SipHash-1-3 under the random 128-bit key of that event time's
//!    window, and returns only the HyperLogLog register update the hash implies
//!    ([`hll::Update`]: 12 bits of register index and a 6-bit rank). Identifier and hash are
//!    dropped right there; neither is stored, logged or counted anywhere.
//! 3. The update travels to the aggregator as an ordinary [`Reading`](crate::reading::Reading)
//!    of the `unique_devices` series. The aggregator folds it into the window's sketch
//!    ([`windows::WindowSketches`]).
//! 4. When the window closes, the aggregator writes the estimate as field `unique_devices`, or
//!    omits it and counts `citysense_privacy_windows_suppressed_total` when it is below
//!    `privacy.k_min`. In the same step it tells the hub to forget the keys of every closed
//!    window ([`Privacy::retire_before`]): a key never outlives its window, so after the close
//!    nobody, this process included, can link a device seen in one window to one seen in
//!    another, or test whether a given MAC address was seen.
//!
//! Why a keyed hash, and this one: a plain hash of a MAC address is not anonymous (the DPA's
//! Enschede case: there are only 2^48 MACs, and far fewer vendor prefixes, so an unsalted
//! hash is reversed by enumeration). SipHash is a pseudo-random function designed for short
//! inputs under a secret 128-bit key; the `siphasher` crate is small and dependency-free.
//! std's `RandomState` is also SipHash-1-3, but its algorithm is unspecified and successive
//! instances on a thread share one random seed (the key is incremented), so it cannot be
//! relied on for independent per-window keys. BLAKE3's keyed mode would do as well, at the
//! cost of a larger crate with assembly back ends. Keys come from the OS (`getrandom`);
//! without OS randomness an identifier is refused, never hashed with a weak key.

pub mod hll;
pub mod identify;
pub mod windows;

use std::collections::{BTreeMap, HashSet};
use std::hash::Hasher as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use crate::config::{AggregationConfig, PrivacyConfig};
use crate::reading::{SeriesId, TimestampNs};
use hll::Update;

/// Why the hub refused an identifier. No variant carries identifier text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("identifier for a window that has closed")]
    Late,
    #[error("identifier stamped too far in the future")]
    Future,
    #[error("no OS randomness for the window key; identifier not hashed")]
    NoRandomness,
}

/// Counters of the privacy path. Counts only: nothing here depends on which devices were seen.
#[derive(Debug, Default)]
pub struct PrivacyMetrics {
    pub identifiers: AtomicU64,
    pub identifiers_refused: AtomicU64,
    pub windows_published: AtomicU64,
    pub windows_suppressed: AtomicU64,
    pub keys_created: AtomicU64,
}

impl PrivacyMetrics {
    /// Describes these counters for `/metrics`.
    pub fn encode(
        &self,
        e: &mut crate::telemetry::expose::Encoder,
    ) -> crate::telemetry::expose::Encoded {
        let rows = [
            (
                "citysense_privacy_identifiers",
                "Device identifiers hashed into a window sketch (then discarded).",
                &self.identifiers,
            ),
            (
                "citysense_privacy_identifiers_refused",
                "Identifiers discarded unhashed (closed or future window, no randomness).",
                &self.identifiers_refused,
            ),
            (
                "citysense_privacy_windows_published",
                "Windows whose unique_devices estimate was written.",
                &self.windows_published,
            ),
            (
                "citysense_privacy_windows_suppressed",
                "Windows whose unique_devices estimate was below privacy.k_min and omitted.",
                &self.windows_suppressed,
            ),
            (
                "citysense_privacy_window_keys",
                "Random per-window hash keys created (each forgotten when its window closes).",
                &self.keys_created,
            ),
        ];
        for (name, help, v) in rows {
            crate::telemetry::expose::counter(e, name, help, v.load(Relaxed))?;
        }
        Ok(())
    }
}

struct HubState {
    /// Windows below this are closed: no key exists for them and none is made.
    closed_before: i64,
    keys: BTreeMap<i64, (u64, u64)>,
    identifier_series: HashSet<SeriesId>,
}

/// Shared between identifier sources (which hash) and the aggregator (which retires keys when
/// windows close). Locked once per identifier and once per window close.
pub struct Privacy {
    window_ns: i64,
    future_ns: i64,
    k_min: u32,
    state: Mutex<HubState>,
    metrics: std::sync::Arc<PrivacyMetrics>,
}

impl Privacy {
    pub fn new(
        cfg: &PrivacyConfig,
        agg: &AggregationConfig,
        metrics: std::sync::Arc<PrivacyMetrics>,
    ) -> Privacy {
        let s = crate::reading::NANOS_PER_SEC;
        Privacy {
            window_ns: (agg.window_secs.max(1) as i64).saturating_mul(s),
            future_ns: (agg.future_tolerance_secs as i64).saturating_mul(s),
            k_min: cfg.k_min,
            state: Mutex::new(HubState {
                closed_before: i64::MIN,
                keys: BTreeMap::new(),
                identifier_series: HashSet::new(),
            }),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        // Every update is a single insert or split: a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn k_min(&self) -> u32 {
        self.k_min
    }

    pub fn metrics(&self) -> &PrivacyMetrics {
        &self.metrics
    }

    /// Marks `series` as carrying register updates, not measured values.
    pub fn mark_identifier_series(&self, series: SeriesId) {
        self.lock().identifier_series.insert(series);
    }

    pub fn is_identifier_series(&self, series: SeriesId) -> bool {
        self.lock().identifier_series.contains(&series)
    }

    /// Hashes `identifier` (already normalised) with the key of the window of `ts` and returns
    /// the register update; the identifier and the hash go no further than this function.
    pub fn register(
        &self,
        identifier: &[u8],
        ts: TimestampNs,
        now: TimestampNs,
    ) -> Result<Update, Refused> {
        let result = self.hash(identifier, ts, now);
        let counter = match result {
            Ok(_) => &self.metrics.identifiers,
            Err(_) => &self.metrics.identifiers_refused,
        };
        counter.fetch_add(1, Relaxed);
        result
    }

    fn hash(
        &self,
        identifier: &[u8],
        ts: TimestampNs,
        now: TimestampNs,
    ) -> Result<Update, Refused> {
        if ts > now.saturating_add(self.future_ns) {
            return Err(Refused::Future);
        }
        let window = ts.div_euclid(self.window_ns);
        let mut state = self.lock();
        if window < state.closed_before {
            return Err(Refused::Late);
        }
        let (k0, k1) = match state.keys.get(&window) {
            Some(k) => *k,
            None => {
                let k = random_key().ok_or(Refused::NoRandomness)?;
                state.keys.insert(window, k);
                self.metrics.keys_created.fetch_add(1, Relaxed);
                k
            }
        };
        drop(state);
        let mut h = siphasher::sip::SipHasher13::new_with_keys(k0, k1);
        h.write(identifier);
        Ok(Update::of_hash(h.finish()))
    }

    /// Forgets the keys of every window below `window`, and refuses identifiers for them from
    /// now on. The aggregator calls this as it closes those windows.
    pub fn retire_before(&self, window: i64) {
        let mut state = self.lock();
        state.closed_before = state.closed_before.max(window);
        let closed_before = state.closed_before;
        let keep = state.keys.split_off(&closed_before);
        state.keys = keep;
    }

    /// Number of window keys held (tests: proves retirement).
    pub fn live_keys(&self) -> usize {
        self.lock().keys.len()
    }
}

fn random_key() -> Option<(u64, u64)> {
    let mut buf = [0u8; 16];
    getrandom::getrandom(&mut buf).ok()?;
    let (a, b) = buf.split_at(8);
    Some((
        u64::from_le_bytes(a.try_into().ok()?),
        u64::from_le_bytes(b.try_into().ok()?),
    ))
}

#[cfg(test)]
mod tests;
