//! `Domain::derive` over hand-made closed windows.

use super::*;
use crate::reading::NANOS_PER_SEC;

const W: i64 = 60 * NANOS_PER_SEC;

fn key(m: &str, tags: &[(&str, &str)]) -> GroupKey {
    GroupKey::new(m, tags.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn gauge<'a>(group: u32, key: &'a GroupKey, q: &'a str, vals: &'a [f64]) -> WindowValue<'a> {
    let mean = vals.first().copied().unwrap_or(f64::NAN);
    WindowValue {
        window: 100,
        group,
        key,
        quantity: q,
        kind: QuantityKind::Gauge,
        mean,
        sum: mean,
        count: 1,
        raw_mean: None,
        calibration: None,
        values: vals,
    }
}

fn field<'d>(d: &'d [DerivedField], group: u32, k: &str) -> Option<&'d FieldValue> {
    d.iter()
        .find(|f| f.group == group && f.key == k)
        .map(|f| &f.value)
}

fn domain() -> Domain {
    Domain {
        eaqi: Some(EaqiVersion::V2024),
        lki: Some(LkiTopEdges::default()),
        humidity: vec![],
        calibration: vec![],
        occupancy: Occupancy::new(None),
        hourly: Hourly::default(),
        daily: Daily::default(),
    }
}

const STATS: [Stat; 2] = [Stat::Mean, Stat::Count];

#[test]
fn indices_from_means_with_period() {
    let aq = key("air_quality", &[("sensor", "a")]);
    let pm25 = [12.0, 3.0];
    let pm10 = [25.0, 3.0];
    let input = [gauge(0, &aq, "pm2_5", &pm25), gauge(0, &aq, "pm10", &pm10)];
    let m = DomainMetrics::default();
    let d = domain().derive(&input, &STATS, W, &m);
    assert_eq!(field(&d, 0, "eaqi"), Some(&FieldValue::Int(2)));
    assert_eq!(
        field(&d, 0, "eaqi_pollutant"),
        Some(&FieldValue::Str("pm2_5".into()))
    );
    assert_eq!(field(&d, 0, "lki"), Some(&FieldValue::Int(3)));
    assert_eq!(field(&d, 0, "aqi_period_s"), Some(&FieldValue::Int(60)));
    // Off means off.
    let mut off = Domain::default();
    assert!(off.derive(&input, &STATS, W, &m).is_empty());
}

#[test]
fn humidity_correction_from_same_site_and_flag() {
    let aq = key("air_quality", &[("sensor", "sds"), ("site", "plein")]);
    let cl = key("climate", &[("sensor", "bme"), ("site", "plein")]);
    let elsewhere = key("climate", &[("sensor", "bme2"), ("site", "haven")]);
    let pm25 = [20.0, 3.0];
    let rh = [80.0, 3.0];
    let rh_far = [10.0, 3.0];
    let input = [
        gauge(0, &aq, "pm2_5", &pm25),
        gauge(1, &cl, "humidity", &rh),
        gauge(2, &elsewhere, "humidity", &rh_far),
    ];
    let mut dom = domain();
    dom.humidity.push(Correction {
        match_tags: vec![("sensor".into(), "sds".into())],
        kappa: 0.36,
        rh_cap: 95.0,
        rh_from: humidity::RhFrom::Site,
        quantities: vec![],
    });
    let m = DomainMetrics::default();
    let d = dom.derive(&input, &STATS, W, &m);
    let c = humidity::kappa_koehler_factor(80.0, 0.36);
    let want = 20.0 / c;
    assert_eq!(
        field(&d, 0, "pm2_5_corrected_mean"),
        Some(&FieldValue::Float(want))
    );
    assert_eq!(field(&d, 0, "pm2_5_corrected_count"), None);
    assert_eq!(field(&d, 0, "rh_capped"), Some(&FieldValue::Bool(false)));
    // The index uses the corrected mean: 20 raw is EAQI 3, 20 / 1.87 = 10.7 is 2.
    assert_eq!(field(&d, 0, "eaqi"), Some(&FieldValue::Int(2)));
    // Humidity points get nothing.
    assert!(d.iter().all(|f| f.group == 0));

    let wet = [99.0, 3.0];
    let input = [
        gauge(0, &aq, "pm2_5", &pm25),
        gauge(1, &cl, "humidity", &wet),
    ];
    let d = dom.derive(&input, &STATS, W, &m);
    assert_eq!(field(&d, 0, "rh_capped"), Some(&FieldValue::Bool(true)));
    let capped = 20.0 / humidity::kappa_koehler_factor(95.0, 0.36);
    assert_eq!(
        field(&d, 0, "pm2_5_corrected_mean"),
        Some(&FieldValue::Float(capped))
    );
    assert_eq!(m.humidity_capped.load(Relaxed), 1);

    // No humidity in the window: raw only, counted.
    let input = [gauge(0, &aq, "pm2_5", &pm25)];
    let d = dom.derive(&input, &STATS, W, &m);
    assert_eq!(field(&d, 0, "pm2_5_corrected_mean"), None);
    assert_eq!(m.humidity_missing.load(Relaxed), 1);
}

#[test]
fn footfall_fields_and_running_occupancy() {
    let door = key("footfall", &[("sensor", "door-1"), ("zone", "markt")]);
    let counter = |window: i64, q: &'static str, sum: f64, kind| WindowValue {
        window,
        group: 0,
        key: &door,
        quantity: q,
        kind,
        mean: f64::NAN,
        sum,
        count: 1,
        raw_mean: None,
        calibration: None,
        values: &[],
    };
    let mut dom = domain();
    let m = DomainMetrics::default();
    let input = [
        counter(100, "in", 7.0, QuantityKind::CounterTotal),
        counter(100, "out", 2.0, QuantityKind::CounterTotal),
        counter(101, "in", 1.0, QuantityKind::Counter),
        counter(101, "out", 9.0, QuantityKind::Counter),
        // Only outs in this window: in is absent, counted as 0.
        counter(102, "out", 1.0, QuantityKind::Counter),
    ];
    let d = dom.derive(&input, &STATS, W, &m);
    let at = |w: i64, k: &str| {
        d.iter()
            .find(|f| f.window == w && f.key == k)
            .map(|f| f.value.clone())
    };
    assert_eq!(at(100, "in"), Some(FieldValue::Float(7.0)));
    assert_eq!(at(100, "out"), Some(FieldValue::Float(2.0)));
    assert_eq!(at(100, "net"), Some(FieldValue::Float(5.0)));
    assert_eq!(at(100, "occupancy"), Some(FieldValue::Float(5.0)));
    assert_eq!(at(101, "net"), Some(FieldValue::Float(-8.0)));
    assert_eq!(at(101, "occupancy"), Some(FieldValue::Float(0.0)));
    assert_eq!(at(102, "in"), None);
    assert_eq!(at(102, "occupancy"), Some(FieldValue::Float(0.0)));
    // Gauges named in/out are not footfall.
    let g = [3.0, 1.0];
    let input = [gauge(0, &door, "in", &g)];
    assert!(dom.derive(&input, &STATS, W, &m).is_empty());
}

#[test]
fn a_calibration_with_an_rh_term_replaces_the_humidity_correction() {
    use calibration::Model;
    let aq = key("air_quality", &[("sensor", "sds"), ("site", "plein")]);
    let (pm25, pm10, rh) = ([20.0, 3.0], [30.0, 3.0], [80.0, 3.0]);
    let rule = |id: &str, model| Calibration {
        id: id.into(),
        match_tags: vec![],
        quantity: "pm2_5".into(),
        valid_from: i64::MIN,
        model,
    };
    let mut dom = domain();
    dom.calibration = vec![
        rule(
            "rh",
            Model::LinearRh {
                a: 1.0,
                b: 1.0,
                c: 0.0,
            },
        ),
        rule(
            "lin",
            Model::Linear {
                gain: 1.0,
                offset: 0.0,
            },
        ),
    ];
    dom.humidity.push(Correction {
        match_tags: vec![],
        kappa: 0.36,
        rh_cap: 95.0,
        rh_from: humidity::RhFrom::Site,
        quantities: vec![],
    });
    let m = DomainMetrics::default();
    for (i, corrected) in [(0u16, false), (1u16, true)] {
        let mut calibrated = gauge(0, &aq, "pm2_5", &pm25);
        (calibrated.calibration, calibrated.raw_mean) = (Some(i), Some(19.0));
        let input = [
            calibrated,
            gauge(0, &aq, "pm10", &pm10),
            gauge(0, &aq, "humidity", &rh),
        ];
        let d = dom.derive(&input, &STATS, W, &m);
        let id = if corrected { "lin" } else { "rh" };
        assert_eq!(
            field(&d, 0, "calibration_id"),
            Some(&FieldValue::Str(id.into()))
        );
        assert_eq!(
            field(&d, 0, "pm2_5_raw_mean"),
            Some(&FieldValue::Float(19.0))
        );
        let got = field(&d, 0, "pm2_5_corrected_mean").is_some();
        assert_eq!(got, corrected, "rule {id}");
        // PM10 has no calibration: corrected either way.
        assert!(field(&d, 0, "pm10_corrected_mean").is_some());
    }
}
