//! What the status page shows of the sensors, as the aggregator sees them: per sensor its
//! state (from [`crate::health::tracker::Tracker::live`]), and per quantity the latest
//! reading, the last closed window's mean/min/max and the last hour of window means.
//!
//! The aggregator owns a [`StatusCollector`] (no lock on the reading path: closes record into
//! it, and at most once a second it publishes a [`SensorSnapshot`] list into the shared
//! [`StatusBoard`], which the HTTP handler reads). Memory is bounded: at most
//! [`MAX_SENSORS`] sensors and [`MAX_QUANTITIES`] quantities each are followed, the rest only
//! counted, and each quantity keeps at most [`MAX_HISTORY`] means.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::health::tracker::SensorLive;
use crate::reading::{Tags, TimestampNs, NANOS_PER_SEC};

/// Sensors the status page follows; a gateway has a handful, a load test thousands.
pub const MAX_SENSORS: usize = 64;
/// Quantities followed per sensor.
pub const MAX_QUANTITIES: usize = 16;
/// Window means kept per quantity: one hour, but never more than this many windows.
pub const MAX_HISTORY: usize = 120;

/// A closed window's statistics of one quantity (`None` where the stat is not configured).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WindowStats {
    /// The window's start, ns.
    pub start: TimestampNs,
    pub mean: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// One quantity of a sensor.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuantitySnapshot {
    pub name: Arc<str>,
    /// The newest reading (arrival order), if any is in an open window.
    pub latest: Option<f64>,
    pub last_window: Option<WindowStats>,
    /// Means of the closed windows of the last hour, oldest first.
    pub means: Vec<f64>,
}

/// One sensor as published.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorSnapshot {
    pub tags: Tags,
    /// `None` while sensor health is off.
    pub live: Option<SensorLive>,
    pub quantities: Vec<QuantitySnapshot>,
}

/// The published view: what the HTTP handler reads.
#[derive(Debug, Default)]
pub struct StatusBoard {
    inner: Mutex<Published>,
}

/// One publication.
#[derive(Debug, Default, Clone)]
pub struct Published {
    pub sensors: Arc<Vec<SensorSnapshot>>,
    /// Sensors beyond [`MAX_SENSORS`], not shown.
    pub sensors_not_shown: usize,
    /// Window length, seconds (the sparkline's step).
    pub window_secs: i64,
    /// The last `gateway_health` point's numeric fields (empty while it is off).
    pub board: Arc<Vec<(&'static str, f64)>>,
}

impl StatusBoard {
    pub fn new() -> Arc<StatusBoard> {
        Arc::new(StatusBoard::default())
    }

    /// The latest publication (cheap: an `Arc` clone).
    pub fn read(&self) -> Published {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn publish(&self, p: Published) {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = p;
    }
}

/// A followed quantity: its series slot and what closes recorded.
struct Followed {
    slot: u32,
    name: Arc<str>,
    last_window: Option<WindowStats>,
    means: VecDeque<(TimestampNs, f64)>,
}

struct SensorEntry {
    tags: Tags,
    quantities: Vec<Followed>,
}

/// The aggregator's side: records closes, publishes at most once a second.
pub struct StatusCollector {
    board: Arc<StatusBoard>,
    window_ns: i64,
    sensors: Vec<SensorEntry>,
    not_shown: Vec<Tags>,
    last_publish: TimestampNs,
    board_fields: Arc<Vec<(&'static str, f64)>>,
}

impl StatusCollector {
    pub fn new(board: Arc<StatusBoard>, window_ns: i64) -> StatusCollector {
        StatusCollector {
            board,
            window_ns: window_ns.max(1),
            sensors: Vec::new(),
            not_shown: Vec::new(),
            last_publish: i64::MIN,
            board_fields: Arc::default(),
        }
    }

    /// Records a closed window of series `slot` (`tags`, `quantity`).
    pub fn record(&mut self, slot: u32, tags: &Tags, quantity: &Arc<str>, w: WindowStats) {
        let Some(q) = self.follow(slot, tags, quantity) else {
            return;
        };
        if q.last_window.is_some_and(|l| l.start > w.start) {
            return; // a late correction of an older window: keep the newest
        }
        q.last_window = Some(w);
        match q.means.back_mut() {
            Some(last) if last.0 == w.start => last.1 = w.mean,
            _ => q.means.push_back((w.start, w.mean)),
        }
        let hour = w.start - 3600 * NANOS_PER_SEC;
        while q.means.front().is_some_and(|m| m.0 < hour) || q.means.len() > MAX_HISTORY {
            q.means.pop_front();
        }
    }

    fn follow(&mut self, slot: u32, tags: &Tags, quantity: &Arc<str>) -> Option<&mut Followed> {
        let i = match self.sensors.iter().position(|s| &s.tags == tags) {
            Some(i) => i,
            None if self.sensors.len() < MAX_SENSORS => {
                self.sensors.push(SensorEntry {
                    tags: tags.clone(),
                    quantities: Vec::new(),
                });
                self.sensors.len() - 1
            }
            None => {
                if self.not_shown.len() < MAX_SENSORS && !self.not_shown.contains(tags) {
                    self.not_shown.push(tags.clone());
                }
                return None;
            }
        };
        let qs = &mut self.sensors[i].quantities;
        let j = match qs.iter().position(|q| q.slot == slot) {
            Some(j) => j,
            None if qs.len() < MAX_QUANTITIES => {
                qs.push(Followed {
                    slot,
                    name: quantity.clone(),
                    last_window: None,
                    means: VecDeque::new(),
                });
                qs.len() - 1
            }
            None => return None,
        };
        qs.get_mut(j)
    }

    /// Records the last `gateway_health` point's numeric fields.
    pub fn record_board(&mut self, fields: Vec<(&'static str, f64)>) {
        self.board_fields = Arc::new(fields);
    }

    /// Whether a second has passed since the last publication.
    pub fn due(&self, now: TimestampNs) -> bool {
        now.saturating_sub(self.last_publish) >= NANOS_PER_SEC
    }

    /// Publishes: `live` are the tracker's sensors (any order), `latest` gives a followed
    /// series' newest value. Sensors seen live but not closed yet are shown too.
    pub fn publish(
        &mut self,
        now: TimestampNs,
        live: Vec<SensorLive>,
        latest: impl Fn(u32) -> Option<f64>,
    ) {
        self.last_publish = now;
        let mut out: Vec<SensorSnapshot> = (self.sensors.iter())
            .map(|s| SensorSnapshot {
                tags: s.tags.clone(),
                live: live.iter().find(|l| l.tags == s.tags).cloned(),
                quantities: (s.quantities.iter())
                    .map(|q| QuantitySnapshot {
                        name: q.name.clone(),
                        latest: latest(q.slot),
                        last_window: q.last_window,
                        means: q.means.iter().map(|m| m.1).collect(),
                    })
                    .collect(),
            })
            .collect();
        for l in live {
            if out.len() < MAX_SENSORS && !out.iter().any(|s| s.tags == l.tags) {
                out.push(SensorSnapshot {
                    tags: l.tags.clone(),
                    live: Some(l),
                    quantities: Vec::new(),
                });
            }
        }
        self.board.publish(Published {
            sensors: Arc::new(out),
            sensors_not_shown: self.not_shown.len(),
            window_secs: self.window_ns / NANOS_PER_SEC,
            board: self.board_fields.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(v: &str) -> Tags {
        Arc::from(vec![(Arc::<str>::from("sensor"), Arc::<str>::from(v))])
    }

    fn stats(start_s: i64, mean: f64) -> WindowStats {
        WindowStats {
            start: start_s * NANOS_PER_SEC,
            mean,
            min: Some(mean - 1.0),
            max: None,
        }
    }

    #[test]
    fn keeps_an_hour_of_means_and_the_newest_window() {
        let board = StatusBoard::new();
        let mut c = StatusCollector::new(board.clone(), 10 * NANOS_PER_SEC);
        let q: Arc<str> = Arc::from("pm2_5");
        for w in 0..500 {
            c.record(3, &tags("a"), &q, stats(w * 10, w as f64));
        }
        c.record(3, &tags("a"), &q, stats(10, -5.0)); // late correction of an old window
        c.publish(5000 * NANOS_PER_SEC, Vec::new(), |slot| {
            (slot == 3).then_some(7.5)
        });
        let p = board.read();
        let got = &p.sensors[0].quantities[0];
        assert_eq!(got.latest, Some(7.5));
        assert_eq!(got.last_window.map(|w| w.mean), Some(499.0));
        assert!(got.means.len() <= MAX_HISTORY && got.means.len() >= 100);
        assert_eq!(got.means.last(), Some(&499.0));
        assert_eq!(p.window_secs, 10);
    }

    #[test]
    fn follows_at_most_max_sensors() {
        let board = StatusBoard::new();
        let mut c = StatusCollector::new(board.clone(), NANOS_PER_SEC);
        let q: Arc<str> = Arc::from("t");
        for i in 0..(MAX_SENSORS as u32 + 10) {
            c.record(i, &tags(&format!("s{i}")), &q, stats(0, 1.0));
        }
        assert!(c.due(0));
        c.publish(0, Vec::new(), |_| None);
        assert!(!c.due(NANOS_PER_SEC / 2));
        let p = board.read();
        assert_eq!(p.sensors.len(), MAX_SENSORS);
        assert_eq!(p.sensors_not_shown, 10);
    }
}
