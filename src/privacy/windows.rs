//! The aggregator's side of the privacy path: one HyperLogLog sketch per identifier series and
//! open window, fed with register updates (never identifiers), closed into `unique_devices`
//! with small counts suppressed. Owned by the aggregator task: no locks but the hub's set of
//! identifier series, read once per series.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::hll::{Hll, Update};
use super::Privacy;
use crate::reading::{Reading, SeriesId};

/// What the aggregator knows about a series id, cached so the hub is asked once per series.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unknown,
    Plain,
    Identifier,
}

/// A closed window's published estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub window: i64,
    pub series: SeriesId,
    pub unique_devices: i64,
}

pub struct WindowSketches {
    hub: Arc<Privacy>,
    kinds: Vec<Kind>,
    sketches: BTreeMap<(i64, SeriesId), Hll>,
}

impl WindowSketches {
    pub fn new(hub: Arc<Privacy>) -> WindowSketches {
        WindowSketches {
            hub,
            kinds: Vec::new(),
            sketches: BTreeMap::new(),
        }
    }

    pub fn hub(&self) -> &Arc<Privacy> {
        &self.hub
    }

    /// True if `r` belongs to an identifier series: then it is consumed here (folded into the
    /// sketch of `window`, or discarded if it is not a valid update) and must not be
    /// aggregated as a value.
    pub fn absorb(&mut self, r: &Reading, window: i64) -> bool {
        if !self.is_identifier(r.series) {
            return false;
        }
        if let Some(u) = Update::from_value(r.value) {
            self.sketches
                .entry((window, r.series))
                .or_default()
                .apply(u);
        }
        true
    }

    pub fn is_identifier(&mut self, series: SeriesId) -> bool {
        let idx = series.0 as usize;
        if idx >= self.kinds.len() {
            self.kinds.resize(idx + 1, Kind::Unknown);
        }
        if self.kinds[idx] == Kind::Unknown {
            self.kinds[idx] = if self.hub.is_identifier_series(series) {
                Kind::Identifier
            } else {
                Kind::Plain
            };
        }
        self.kinds[idx] == Kind::Identifier
    }

    /// Closes every sketch of a window below `window`: returns the estimates at or above
    /// `k_min` (the others are counted as suppressed), drops the sketches, and retires the
    /// hub's keys of those windows.
    pub fn close_before(&mut self, window: i64) -> Vec<Estimate> {
        let open = self.sketches.split_off(&(window, SeriesId(0)));
        let closed = std::mem::replace(&mut self.sketches, open);
        self.hub.retire_before(window);
        let k_min = i64::from(self.hub.k_min());
        let metrics = self.hub.metrics();
        let mut out = Vec::new();
        for ((w, series), sketch) in closed {
            let unique_devices = sketch.estimate().round() as i64;
            if unique_devices < k_min {
                metrics.windows_suppressed.fetch_add(1, Relaxed);
                continue;
            }
            metrics.windows_published.fetch_add(1, Relaxed);
            out.push(Estimate {
                window: w,
                series,
                unique_devices,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AggregationConfig;
    use crate::service::metrics::Metrics;

    const S: i64 = crate::reading::NANOS_PER_SEC;

    fn setup() -> (WindowSketches, Arc<Privacy>, Arc<Metrics>) {
        let metrics = Metrics::new();
        let cfg = AggregationConfig {
            window_secs: 60,
            ..AggregationConfig::default()
        };
        let hub = Arc::new(Privacy::new(
            &crate::config::PrivacyConfig::default(),
            &cfg,
            metrics.privacy.clone(),
        ));
        hub.mark_identifier_series(SeriesId(3));
        (WindowSketches::new(hub.clone()), hub, metrics)
    }

    fn feed(ws: &mut WindowSketches, hub: &Privacy, ids: &[String], ts: i64) {
        for id in ids {
            let u = hub.register(id.as_bytes(), ts, ts).unwrap();
            let r = Reading::new(SeriesId(3), u.to_value(), ts);
            assert!(ws.absorb(&r, ts.div_euclid(60 * S)));
        }
    }

    #[test]
    fn estimates_per_window_suppressed_below_k_min_and_keys_retired() {
        let (mut ws, hub, metrics) = setup();
        let ids: Vec<String> = (0..50).map(|i| format!("aabbcc0000{i:02x}")).collect();
        let t0 = 1_800_000_000 * S;
        feed(&mut ws, &hub, &ids, t0);
        feed(&mut ws, &hub, &ids[..20], t0 + S); // repeats do not count twice
        feed(&mut ws, &hub, &ids[..3], t0 + 60 * S); // next window: 3 devices
        assert_eq!(hub.live_keys(), 2);
        let w0 = t0 / (60 * S);
        let got = ws.close_before(w0 + 2);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].window, got[0].series), (w0, SeriesId(3)));
        // Random keys: c register collisions read 50 - c; c >= 5 has odds of about 1e-5.
        assert!((got[0].unique_devices - 50).abs() <= 4, "{got:?}");
        assert_eq!(metrics.privacy.windows_suppressed.load(Relaxed), 1);
        assert_eq!(hub.live_keys(), 0, "keys of closed windows are forgotten");
        assert_eq!(
            hub.register(b"aabbcc000001", t0, t0 + 120 * S),
            Err(super::super::Refused::Late)
        );
    }

    #[test]
    fn plain_series_pass_through() {
        let (mut ws, _, _) = setup();
        let r = Reading::new(SeriesId(1), 4.0, 0);
        assert!(!ws.absorb(&r, 0));
    }
}
