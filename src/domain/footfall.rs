//! Counters and footfall: per-reading increments of cumulative counters ([`TotalCounter`]), and
//! the running occupancy per zone ([`Occupancy`]).
//!
//! **Cumulative totals** (`counter_total`). People counters often report the total since boot,
//! which drops to a small number when the device reboots and, on 16- or 32-bit counters, wraps
//! to 0. The aggregator keeps the last total per series (one `Option<f64>` in its slot) and turns
//! each reading into an increment, in arrival order, chaining across windows; a window's field is
//! the sum of its increments. Rules for a total `v` after `last`:
//! - first reading ever: increment 0 (what was counted before is unknown);
//! - `v >= last`: `v - last`;
//! - `v < last` with `wrap` configured and `wrap - last + v <= wrap / 4`: a wrap, that many;
//! - any other drop: a reset, the device counted `v` since it restarted from 0.
//!
//! Increments are never negative (a negative total counts as 0) and a drop never produces a
//! near-`wrap` spike. Out-of-order totals (late MQTT payloads) look like a reset: counted `v`;
//! the reordering of late data is left to the late-data work.
//!
//! **Occupancy.** Per zone (tag `zone`, else tag `sensor`, else the whole point), after each
//! window: `occupancy = max(0, occupancy + in - out)`. The running value is set back to 0 at
//! the first window starting on or after `rebase_at` local time each day. DST-safe: a window
//! belongs to the local date of its start minus `rebase_at` in civil (wall-clock) time, so a
//! re-base time that does not exist on a spring-forward day happens at the first wall-clock
//! time after it, and one that occurs twice on a fall-back day happens once.
//!
//! Time zones come from `jiff` (well kept, DST-correct civil arithmetic, MSRV 1.85; chrono
//! would need chrono-tz, which compiles every zone's rules in). Features `tzdb-zoneinfo` and
//! `tzdb-bundle-always`: the system's `/usr/share/zoneinfo` is read first (the OS keeps it up
//! to date with new DST rules), and a bundled copy (about 200 KiB of the binary) is used only
//! where the system has none, e.g. a minimal container without `tzdata`.

use std::collections::{HashMap, VecDeque};

use jiff::civil::Date;
use jiff::Timestamp;

use crate::config::Rebase;
use crate::reading::{GroupKey, TimestampNs};

/// Zones remembered at most; further zones get no running state (occupancy = this window's
/// net, floored at 0). A gateway has a handful.
pub const MAX_ZONES: usize = 4096;

/// What a total did relative to the previous one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    First,
    Up,
    Wrap,
    Reset,
}

/// The last total of one `counter_total` series.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TotalCounter {
    last: Option<f64>,
}

impl TotalCounter {
    /// A counter whose previous total `last` was saved by an earlier run (state file); an
    /// unusable value starts it afresh.
    pub fn restored(last: f64) -> TotalCounter {
        let last = (last.is_finite() && last >= 0.0).then_some(last);
        TotalCounter { last }
    }

    /// The last total seen, for the state file.
    pub fn last(&self) -> Option<f64> {
        self.last
    }

    /// The increment since the previous total, and what happened; see the module doc.
    pub fn step(&mut self, total: f64, wrap: Option<u64>) -> (f64, Step) {
        let v = if total.is_finite() {
            total.max(0.0)
        } else {
            0.0
        };
        let Some(last) = self.last.replace(v) else {
            return (0.0, Step::First);
        };
        if v >= last {
            return (v - last, Step::Up);
        }
        if let Some(wrap) = wrap.map(|w| w as f64) {
            let wrapped = wrap - last + v;
            if last < wrap && wrapped <= wrap / 4.0 {
                return (wrapped, Step::Wrap);
            }
        }
        (v, Step::Reset)
    }
}

/// The re-base period (a local date) that instant `ts` belongs to.
fn period(rebase: &Rebase, ts: TimestampNs) -> Option<Date> {
    let t = Timestamp::from_nanosecond(i128::from(ts)).ok()?;
    let local = rebase.tz.to_datetime(t);
    Some(local.checked_sub(rebase.at).ok()?.date())
}

/// The zone a footfall point counts towards: tag `zone`, else `sensor`, else the point.
pub fn zone_of(key: &GroupKey) -> String {
    key.tag("zone")
        .or_else(|| key.tag("sensor"))
        .map_or_else(|| key.to_string(), str::to_string)
}

#[derive(Debug)]
struct ZoneState {
    value: f64,
    period: Option<Date>,
    /// Net already applied per recent window start: a window re-emitted with late readings
    /// (same timestamp) replaces its earlier contribution instead of adding it twice.
    applied: VecDeque<(TimestampNs, f64)>,
}

/// Windows whose applied net is remembered per zone (covers a grace of many windows).
const APPLIED_WINDOWS: usize = 64;

/// Running occupancy per zone.
#[derive(Debug, Default)]
pub struct Occupancy {
    rebase: Option<Rebase>,
    zones: HashMap<String, ZoneState>,
}

impl Occupancy {
    /// `rebase`: `None` never sets occupancy back.
    pub fn new(rebase: Option<Rebase>) -> Self {
        Occupancy {
            rebase,
            zones: HashMap::new(),
        }
    }

    /// Takes the re-base rule of `other` (a reload); the zones' running values stay.
    pub fn rebase_as(&mut self, other: Occupancy) {
        self.rebase = other.rebase;
    }

    /// Adds `net` (in - out) of the window starting at `window_start` to `zone`; returns the
    /// occupancy after it, never below 0.
    pub fn update(&mut self, zone: &str, window_start: TimestampNs, net: f64) -> f64 {
        let period = self.rebase.as_ref().and_then(|r| period(r, window_start));
        if !self.zones.contains_key(zone) && self.zones.len() >= MAX_ZONES {
            return net.max(0.0);
        }
        let state = self.zones.entry(zone.to_string()).or_insert(ZoneState {
            value: 0.0,
            period,
            applied: VecDeque::new(),
        });
        if state.period != period {
            state.value = 0.0;
            state.period = period;
            state.applied.clear();
        }
        let delta = match state.applied.iter_mut().find(|(w, _)| *w == window_start) {
            Some((_, before)) => net - std::mem::replace(before, net),
            None => {
                if state.applied.len() >= APPLIED_WINDOWS {
                    state.applied.pop_front();
                }
                state.applied.push_back((window_start, net));
                net
            }
        };
        state.value = (state.value + delta).max(0.0);
        state.value
    }
}

/// One zone's occupancy as saved in the state file (section `occupancy`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ZoneSnapshot {
    pub zone: String,
    pub occupancy: f64,
    /// The re-base period (local date, `2026-01-10`) the value belongs to; `None` without
    /// re-base. A restored zone from another period re-bases at its next window.
    pub period: Option<String>,
    /// (window start ns, net) applied for windows that may still be re-emitted.
    #[serde(default)]
    pub applied: Vec<(TimestampNs, f64)>,
}

impl Occupancy {
    /// Every zone, sorted by name, with the nets applied for windows starting at or after
    /// `since` (older ones can no longer be corrected).
    pub fn snapshot(&self, since: TimestampNs) -> Vec<ZoneSnapshot> {
        let mut zones: Vec<ZoneSnapshot> = (self.zones.iter())
            .map(|(zone, s)| ZoneSnapshot {
                zone: zone.clone(),
                occupancy: s.value,
                period: s.period.map(|d| d.to_string()),
                applied: s
                    .applied
                    .iter()
                    .filter(|(w, _)| *w >= since)
                    .copied()
                    .collect(),
            })
            .collect();
        zones.sort_by(|a, b| a.zone.cmp(&b.zone));
        zones
    }

    /// Takes back the zones of [`Occupancy::snapshot`]; returns how many were usable (finite,
    /// not negative, a valid date), at most [`MAX_ZONES`].
    pub fn restore(&mut self, zones: Vec<ZoneSnapshot>) -> usize {
        let mut n = 0;
        for z in zones {
            let period = match &z.period {
                Some(p) => match p.parse::<Date>() {
                    Ok(d) => Some(d),
                    Err(_) => continue,
                },
                None => None,
            };
            if !(z.occupancy.is_finite() && z.occupancy >= 0.0) || self.zones.len() >= MAX_ZONES {
                continue;
            }
            let applied = (z.applied.into_iter())
                .filter(|(_, net)| net.is_finite())
                .take(APPLIED_WINDOWS)
                .collect();
            let state = ZoneState {
                value: z.occupancy,
                period,
                applied,
            };
            self.zones.insert(z.zone, state);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::NANOS_PER_SEC;
    use crate::time::parse_rfc3339;

    #[test]
    fn totals_table() {
        const W16: Option<u64> = Some(65_536);
        // (previous totals, wrap, next total, expected increment, step)
        type Case = (&'static [f64], Option<u64>, f64, f64, Step);
        let cases: &[Case] = &[
            (&[], None, 100.0, 0.0, Step::First),
            (&[100.0], None, 100.0, 0.0, Step::Up),
            (&[100.0], None, 107.0, 7.0, Step::Up),
            (&[100.0], None, 3.0, 3.0, Step::Reset),
            (&[100.0], None, 0.0, 0.0, Step::Reset),
            (&[100.0], None, -5.0, 0.0, Step::Reset),
            (&[65_530.0], W16, 4.0, 10.0, Step::Wrap),
            (&[65_535.0], W16, 0.0, 1.0, Step::Wrap),
            // wrap - last + v = 16384 = wrap / 4: still a wrap.
            (&[49_152.0], W16, 0.0, 16_384.0, Step::Wrap),
            // One more and it is too far for a wrap: a reset, never a 16k spike.
            (&[49_151.0], W16, 0.0, 0.0, Step::Reset),
            (&[40_000.0], W16, 100.0, 100.0, Step::Reset),
            (
                &[4_294_967_290.0],
                Some(4_294_967_296),
                5.0,
                11.0,
                Step::Wrap,
            ),
            // A 32-bit wrap setting on a counter that merely rebooted.
            (&[1_000.0], Some(4_294_967_296), 2.0, 2.0, Step::Reset),
        ];
        for &(prev, wrap, v, want, step) in cases {
            let mut c = TotalCounter::default();
            for p in prev {
                c.step(*p, wrap);
            }
            assert_eq!(
                c.step(v, wrap),
                (want, step),
                "{prev:?} -> {v} wrap {wrap:?}"
            );
        }
    }

    #[test]
    fn reset_mid_sequence_counts_every_event() {
        let mut c = TotalCounter::default();
        let sum: f64 = [100.0, 105.0, 2.0, 6.0, 6.0]
            .into_iter()
            .map(|v| c.step(v, None).0)
            .sum();
        // 5 before the reboot, 2 + 4 after it.
        assert_eq!(sum, 11.0);
    }

    fn ts(s: &str) -> TimestampNs {
        parse_rfc3339(s).unwrap()
    }

    fn amsterdam(at: &str) -> Occupancy {
        Occupancy::new(Some(Rebase::parse(at, "Europe/Amsterdam").unwrap()))
    }

    #[test]
    fn occupancy_never_negative_and_rebases_at_local_time() {
        let mut o = amsterdam("04:00");
        // Winter (CET, +01:00): 04:00 local is 03:00 UTC.
        assert_eq!(o.update("z", ts("2026-01-10T02:00:00Z"), 5.0), 5.0);
        assert_eq!(o.update("z", ts("2026-01-10T02:30:00Z"), -8.0), 0.0);
        assert_eq!(o.update("z", ts("2026-01-10T02:59:00Z"), 4.0), 4.0);
        assert_eq!(o.update("z", ts("2026-01-10T03:00:00Z"), 1.0), 1.0);
        // Other zones are independent.
        assert_eq!(o.update("y", ts("2026-01-10T03:00:00Z"), 2.0), 2.0);
    }

    #[test]
    fn a_corrected_window_replaces_its_earlier_net() {
        let mut o = Occupancy::new(None);
        assert_eq!(o.update("z", 0, 5.0), 5.0);
        assert_eq!(o.update("z", 60, 2.0), 7.0);
        // Window 0 re-emitted with one more person in: 6 instead of 5, not 5 + 6.
        assert_eq!(o.update("z", 0, 6.0), 8.0);
        assert_eq!(o.update("z", 0, 6.0), 8.0);
        assert_eq!(o.update("z", 120, -1.0), 7.0);
    }

    /// (window start, net, expected occupancy) in order, one zone.
    fn run(o: &mut Occupancy, steps: &[(&str, f64, f64)]) {
        for &(t, net, want) in steps {
            assert_eq!(o.update("z", ts(t), net), want, "at {t}");
        }
    }

    #[test]
    fn rebase_is_dst_safe() {
        // 2026-03-29: 02:00 CET -> 03:00 CEST. 04:00 local is 02:00 UTC that day.
        run(
            &mut amsterdam("04:00"),
            &[
                ("2026-03-29T01:00:00Z", 3.0, 3.0),
                ("2026-03-29T01:59:00Z", 1.0, 4.0),
                ("2026-03-29T02:00:00Z", 1.0, 1.0),
                ("2026-03-30T01:59:00Z", 1.0, 2.0),
                ("2026-03-30T02:00:00Z", 1.0, 1.0),
            ],
        );
        // 02:30 does not exist on 2026-03-29: the re-base happens at 03:00 CEST (01:00 UTC).
        run(
            &mut amsterdam("02:30"),
            &[
                ("2026-03-29T00:59:00Z", 3.0, 3.0),
                ("2026-03-29T01:00:00Z", 1.0, 1.0),
            ],
        );
        // 2026-10-25: 03:00 CEST -> 02:00 CET; 02:30 happens twice, the re-base once.
        run(
            &mut amsterdam("02:30"),
            &[
                ("2026-10-25T00:29:00Z", 3.0, 3.0),
                ("2026-10-25T00:30:00Z", 1.0, 1.0),
                ("2026-10-25T01:30:00Z", 1.0, 2.0),
                ("2026-10-26T01:29:00Z", 1.0, 3.0),
                ("2026-10-26T01:30:00Z", 1.0, 1.0),
            ],
        );
    }

    #[test]
    fn no_rebase_keeps_running() {
        let mut o = Occupancy::new(None);
        assert_eq!(o.update("z", 0, 2.0), 2.0);
        assert_eq!(o.update("z", 86_400 * 3 * NANOS_PER_SEC, 1.0), 3.0);
        assert!(Rebase::parse("04:00", "Mars/Olympus_Mons").is_err());
        assert!(Rebase::parse("4am", "Europe/Amsterdam").is_err());
    }

    #[test]
    fn occupancy_snapshot_restores_value_period_and_applied() {
        let mut o = amsterdam("04:00");
        o.update("z", ts("2026-01-10T10:00:00Z"), 5.0);
        o.update("z", ts("2026-01-10T10:01:00Z"), 2.0);
        let snap = o.snapshot(ts("2026-01-10T10:01:00Z"));
        assert_eq!(snap[0].period.as_deref(), Some("2026-01-10"));
        assert_eq!(snap[0].applied, vec![(ts("2026-01-10T10:01:00Z"), 2.0)]);
        let mut back = amsterdam("04:00");
        assert_eq!(back.restore(snap), 1);
        // Continues; the re-emitted window replaces its net; the next day re-bases.
        assert_eq!(back.update("z", ts("2026-01-10T10:02:00Z"), 1.0), 8.0);
        assert_eq!(back.update("z", ts("2026-01-10T10:01:00Z"), 3.0), 9.0);
        assert_eq!(back.update("z", ts("2026-01-11T03:00:00Z"), 1.0), 1.0);
        let bad = |occupancy: f64, period: &str| ZoneSnapshot {
            zone: "b".into(),
            occupancy,
            period: Some(period.into()),
            applied: vec![],
        };
        assert_eq!(back.restore(vec![bad(f64::NAN, "2026-01-10")]), 0);
        assert_eq!(back.restore(vec![bad(-1.0, "2026-01-10")]), 0);
        assert_eq!(back.restore(vec![bad(1.0, "2026-13-40")]), 0);
    }

    #[test]
    fn a_restored_total_continues_the_chain() {
        let mut c = TotalCounter::restored(100.0);
        assert_eq!(c.step(107.0, None), (7.0, Step::Up));
        // The device rebooted while the daemon was down: the saved total is discarded.
        let mut c = TotalCounter::restored(100.0);
        assert_eq!(c.step(3.0, None), (3.0, Step::Reset));
        assert_eq!(TotalCounter::restored(f64::NAN).last(), None);
    }

    #[test]
    fn zones_by_tag() {
        let k = |tags: &[(&str, &str)]| {
            GroupKey::new(
                "footfall",
                tags.iter().map(|(a, b)| (a.to_string(), b.to_string())),
            )
        };
        assert_eq!(
            zone_of(&k(&[("zone", "markt"), ("sensor", "door-1")])),
            "markt"
        );
        assert_eq!(zone_of(&k(&[("sensor", "door-1")])), "door-1");
        assert_eq!(zone_of(&k(&[("gateway", "g")])), "footfall,gateway=g");
    }
}
