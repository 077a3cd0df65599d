//! Air-quality indices of one window: the European Air Quality Index (EAQI, levels 1-6) and the
//! Dutch RIVM Luchtkwaliteitsindex (LKI, 1-11). Pure functions over pollutant concentrations in
//! ug/m3; the caller passes the window means of one sensor.
//!
//! **Averaging period.** Both indices are defined on hourly means (the 2017 EAQI and the LKI use
//! 24 h running means for PM). A gateway computes them from its own window means, so every point
//! that carries them also carries `aqi_period_s` = the window length in seconds: an index of a
//! 60 s mean is an indication, not the official value.
//!
//! # EAQI
//! The worst pollutant decides (ties: the first of PM2.5, PM10, NO2, O3, SO2). Two band tables:
//! - [`EaqiVersion::V2024`], the default: ETC HE Report 2024/17 "EEA's revision of the European
//!   Air Quality Index bands" (Table 5.2), in use on <https://airindex.eea.europa.eu> since 2024,
//!   "hourly concentrations of all five pollutants". The bands are published as integer ranges
//!   (PM2.5 0-5, 6-15, ...); the scale is treated as continuous with inclusive upper bounds, so
//!   5.0 is level 1 and 5.01 is level 2.
//! - [`EaqiVersion::V2017`]: the previous six-band table (2017-2023; still what CAMS returns),
//!   published as `0-10, 10-20, ...`; lower bounds are inclusive (10.0 is level 2), as in the
//!   CAMS/open-meteo implementations.
//!
//! # LKI
//! RIVM rapport 2014-0050, "Luchtkwaliteitsindex: aanbevelingen voor de samenstelling en duiding"
//! (2015); the rule as luchtmeetnet.nl ("Deze website") states it: per pollutant a concentration
//! maps to a sub-index 1-11, the highest sub-index is the index, and when all pollutants have the
//! same sub-index the index is one higher. Here that bonus needs two or more pollutants (with one
//! the rule is vacuous) and never passes 11. Sub-index lower edges (inclusive) for 2..=10 are in
//! [`LKI_EDGES`]. The edge from 10 to 11 is not settled in public implementations, so it is
//! configuration ([`LkiTopEdges`], defaults NO2 200, PM10 200, O3 240, PM2.5 140). SO2 is not
//! part of the LKI.

/// The pollutants the indices know, by quantity name.
pub const POLLUTANTS: [&str; 5] = ["pm2_5", "pm10", "no2", "o3", "so2"];

/// Which EAQI band table to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EaqiVersion {
    /// ETC HE Report 2024/17, hourly means, upper bounds inclusive.
    V2024,
    /// The 2017-2023 table, lower bounds inclusive.
    V2017,
}

/// EAQI level names, index 0 = level 1.
pub const EAQI_LEVELS: [&str; 6] = [
    "good",
    "fair",
    "moderate",
    "poor",
    "very poor",
    "extremely poor",
];

/// Five edges between the six levels, per pollutant in [`POLLUTANTS`] order.
type EaqiTable = [[f64; 5]; 5];

/// ETC HE Report 2024/17, Table 5.2: upper bounds of levels 1-5 (inclusive).
const EAQI_2024: EaqiTable = [
    [5.0, 15.0, 50.0, 90.0, 140.0],
    [15.0, 45.0, 120.0, 195.0, 270.0],
    [10.0, 25.0, 60.0, 100.0, 150.0],
    [60.0, 100.0, 120.0, 160.0, 180.0],
    [20.0, 40.0, 125.0, 190.0, 275.0],
];

/// EAQI 2017-2023: lower bounds of levels 2-6 (inclusive).
const EAQI_2017: EaqiTable = [
    [10.0, 20.0, 25.0, 50.0, 75.0],
    [20.0, 40.0, 50.0, 100.0, 150.0],
    [40.0, 90.0, 120.0, 230.0, 340.0],
    [50.0, 100.0, 130.0, 240.0, 380.0],
    [100.0, 200.0, 350.0, 500.0, 750.0],
];

/// The EAQI level (1-6) of one pollutant (index into [`POLLUTANTS`]) at `value` ug/m3.
/// `None` for an unknown pollutant or a non-finite value.
pub fn eaqi_level(version: EaqiVersion, pollutant: usize, value: f64) -> Option<u8> {
    if !value.is_finite() {
        return None;
    }
    let above = match version {
        EaqiVersion::V2024 => EAQI_2024
            .get(pollutant)?
            .iter()
            .filter(|u| value > **u)
            .count(),
        EaqiVersion::V2017 => EAQI_2017
            .get(pollutant)?
            .iter()
            .filter(|l| value >= **l)
            .count(),
    };
    Some(1 + above as u8)
}

/// The EAQI of a window: `(level, pollutant)` of the worst pollutant. `means` are in
/// [`POLLUTANTS`] order, `None` where the sensor has no such quantity. `None` if none is known.
pub fn eaqi(version: EaqiVersion, means: &[Option<f64>; 5]) -> Option<(u8, &'static str)> {
    let mut worst: Option<(u8, &'static str)> = None;
    for (i, m) in means.iter().enumerate() {
        let Some(level) = m.and_then(|v| eaqi_level(version, i, v)) else {
            continue;
        };
        if worst.is_none_or(|(w, _)| level > w) {
            worst = Some((level, POLLUTANTS[i]));
        }
    }
    worst
}

/// LKI sub-index lower edges (inclusive) for sub-index 2..=10, in ug/m3, for PM2.5, PM10, NO2
/// and O3 ([`POLLUTANTS`] order; SO2 has none).
pub const LKI_EDGES: [[f64; 9]; 4] = [
    [10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 70.0, 90.0, 100.0],
    [10.0, 20.0, 30.0, 45.0, 60.0, 75.0, 100.0, 125.0, 150.0],
    [10.0, 20.0, 30.0, 45.0, 60.0, 75.0, 100.0, 125.0, 150.0],
    [15.0, 30.0, 40.0, 60.0, 80.0, 100.0, 140.0, 180.0, 200.0],
];

/// The lower edge (inclusive) of LKI sub-index 11, per pollutant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LkiTopEdges {
    pub pm2_5: f64,
    pub pm10: f64,
    pub no2: f64,
    pub o3: f64,
}

impl Default for LkiTopEdges {
    fn default() -> Self {
        LkiTopEdges {
            pm2_5: 140.0,
            pm10: 200.0,
            no2: 200.0,
            o3: 240.0,
        }
    }
}

impl LkiTopEdges {
    fn get(&self, pollutant: usize) -> Option<f64> {
        [self.pm2_5, self.pm10, self.no2, self.o3]
            .get(pollutant)
            .copied()
    }
}

/// The LKI sub-index (1-11) of one pollutant (index into [`POLLUTANTS`]); `None` for SO2, an
/// unknown pollutant or a non-finite value.
pub fn lki_sub_index(top: &LkiTopEdges, pollutant: usize, value: f64) -> Option<u8> {
    if !value.is_finite() {
        return None;
    }
    let edges = LKI_EDGES.get(pollutant)?;
    if value >= top.get(pollutant)? {
        return Some(11);
    }
    Some(1 + edges.iter().filter(|e| value >= **e).count() as u8)
}

/// The LKI of a window from the means in [`POLLUTANTS`] order (SO2 ignored); `None` if no
/// LKI pollutant is known.
pub fn lki(top: &LkiTopEdges, means: &[Option<f64>; 5]) -> Option<u8> {
    let subs: Vec<u8> = means
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.and_then(|v| lki_sub_index(top, i, v)))
        .collect();
    let max = *subs.iter().max()?;
    let all_same = subs.len() >= 2 && subs.iter().all(|s| *s == max);
    Some(if all_same { (max + 1).min(11) } else { max })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PM25: usize = 0;
    const PM10: usize = 1;
    const NO2: usize = 2;
    const O3: usize = 3;
    const SO2: usize = 4;

    /// (pollutant, value, expected level) at and just past every band edge.
    #[test]
    fn eaqi_2024_every_edge() {
        let cases: &[(usize, f64, u8)] = &[
            (PM25, 0.0, 1),
            (PM25, 5.0, 1),
            (PM25, 5.01, 2),
            (PM25, 15.0, 2),
            (PM25, 15.01, 3),
            (PM25, 50.0, 3),
            (PM25, 50.01, 4),
            (PM25, 90.0, 4),
            (PM25, 90.01, 5),
            (PM25, 140.0, 5),
            (PM25, 140.01, 6),
            (PM25, 1000.0, 6),
            (PM10, 15.0, 1),
            (PM10, 15.01, 2),
            (PM10, 45.0, 2),
            (PM10, 45.01, 3),
            (PM10, 120.0, 3),
            (PM10, 120.01, 4),
            (PM10, 195.0, 4),
            (PM10, 195.01, 5),
            (PM10, 270.0, 5),
            (PM10, 270.01, 6),
            (NO2, 10.0, 1),
            (NO2, 10.01, 2),
            (NO2, 25.0, 2),
            (NO2, 25.01, 3),
            (NO2, 60.0, 3),
            (NO2, 60.01, 4),
            (NO2, 100.0, 4),
            (NO2, 100.01, 5),
            (NO2, 150.0, 5),
            (NO2, 150.01, 6),
            (O3, 60.0, 1),
            (O3, 60.01, 2),
            (O3, 100.0, 2),
            (O3, 100.01, 3),
            (O3, 120.0, 3),
            (O3, 120.01, 4),
            (O3, 160.0, 4),
            (O3, 160.01, 5),
            (O3, 180.0, 5),
            (O3, 180.01, 6),
            (SO2, 20.0, 1),
            (SO2, 20.01, 2),
            (SO2, 40.0, 2),
            (SO2, 40.01, 3),
            (SO2, 125.0, 3),
            (SO2, 125.01, 4),
            (SO2, 190.0, 4),
            (SO2, 190.01, 5),
            (SO2, 275.0, 5),
            (SO2, 275.01, 6),
            // A sensor's negative offset is still "good".
            (PM25, -1.0, 1),
        ];
        for &(p, v, want) in cases {
            assert_eq!(
                eaqi_level(EaqiVersion::V2024, p, v),
                Some(want),
                "{} {v}",
                POLLUTANTS[p]
            );
        }
    }

    #[test]
    fn eaqi_2017_every_edge() {
        let edges = [
            (PM25, [10.0, 20.0, 25.0, 50.0, 75.0]),
            (PM10, [20.0, 40.0, 50.0, 100.0, 150.0]),
            (NO2, [40.0, 90.0, 120.0, 230.0, 340.0]),
            (O3, [50.0, 100.0, 130.0, 240.0, 380.0]),
            (SO2, [100.0, 200.0, 350.0, 500.0, 750.0]),
        ];
        for (p, lows) in edges {
            assert_eq!(eaqi_level(EaqiVersion::V2017, p, 0.0), Some(1));
            for (i, low) in lows.into_iter().enumerate() {
                let level = i as u8 + 2;
                let name = POLLUTANTS[p];
                assert_eq!(
                    eaqi_level(EaqiVersion::V2017, p, low - 0.01),
                    Some(level - 1),
                    "{name} {low}-"
                );
                assert_eq!(
                    eaqi_level(EaqiVersion::V2017, p, low),
                    Some(level),
                    "{name} {low}"
                );
            }
        }
    }

    #[test]
    fn eaqi_worst_pollutant_decides() {
        let v = EaqiVersion::V2024;
        assert_eq!(eaqi(v, &[None; 5]), None);
        assert_eq!(
            eaqi(v, &[Some(4.0), Some(50.0), None, None, None]),
            Some((3, "pm10"))
        );
        // Tie: the first in POLLUTANTS order.
        assert_eq!(
            eaqi(v, &[Some(10.0), Some(20.0), None, None, None]),
            Some((2, "pm2_5"))
        );
        assert_eq!(
            eaqi(v, &[Some(1.0), None, Some(151.0), Some(1.0), Some(1.0)]),
            Some((6, "no2"))
        );
        assert_eq!(
            eaqi(v, &[Some(f64::NAN), Some(1.0), None, None, None]),
            Some((1, "pm10"))
        );
    }

    #[test]
    fn lki_every_edge() {
        let top = LkiTopEdges::default();
        for (p, edges) in LKI_EDGES.iter().enumerate() {
            let name = POLLUTANTS[p];
            assert_eq!(lki_sub_index(&top, p, 0.0), Some(1), "{name}");
            for (i, e) in edges.iter().enumerate() {
                let sub = i as u8 + 2;
                assert_eq!(
                    lki_sub_index(&top, p, e - 0.01),
                    Some(sub - 1),
                    "{name} {e}-"
                );
                assert_eq!(lki_sub_index(&top, p, *e), Some(sub), "{name} {e}");
            }
            let t = top.get(p).unwrap();
            assert_eq!(lki_sub_index(&top, p, t - 0.01), Some(10), "{name} top-");
            assert_eq!(lki_sub_index(&top, p, t), Some(11), "{name} top");
        }
        assert_eq!(lki_sub_index(&top, SO2, 500.0), None);
    }

    #[test]
    fn lki_top_edge_is_configurable() {
        let top = LkiTopEdges {
            pm10: 175.0,
            ..LkiTopEdges::default()
        };
        assert_eq!(lki_sub_index(&top, PM10, 180.0), Some(11));
        assert_eq!(
            lki_sub_index(&LkiTopEdges::default(), PM10, 180.0),
            Some(10)
        );
    }

    #[test]
    fn lki_highest_and_the_all_equal_bonus() {
        let top = LkiTopEdges::default();
        assert_eq!(lki(&top, &[None; 5]), None);
        // One pollutant: no bonus.
        assert_eq!(lki(&top, &[Some(12.0), None, None, None, None]), Some(2));
        // PM2.5 12 -> 2, PM10 25 -> 3: the highest.
        assert_eq!(
            lki(&top, &[Some(12.0), Some(25.0), None, None, None]),
            Some(3)
        );
        // Both 3: one higher.
        assert_eq!(
            lki(&top, &[Some(16.0), Some(25.0), None, None, None]),
            Some(4)
        );
        // All 11: stays 11.
        assert_eq!(
            lki(&top, &[Some(500.0), Some(500.0), None, None, None]),
            Some(11)
        );
        // SO2 does not count.
        assert_eq!(
            lki(&top, &[Some(12.0), None, None, None, Some(999.0)]),
            Some(2)
        );
    }
}
