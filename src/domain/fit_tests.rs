//! Recovering known coefficients from synthetic co-location data with noise.

use super::*;

const HOUR: i64 = 3_600_000_000_000;

/// Roughly normal noise with standard deviation `sd` (sum of 12 uniforms).
fn noise(rng: &mut fastrand::Rng, sd: f64) -> f64 {
    ((0..12).map(|_| rng.f64()).sum::<f64>() - 6.0) * sd
}

/// `n` hours of sensor values (x, rh) and reference values `truth(x, rh) + noise`.
fn colocated(n: i64, truth: impl Fn(f64, f64) -> f64) -> (BTreeMap<i64, Row>, BTreeMap<i64, Row>) {
    let mut rng = fastrand::Rng::with_seed(21);
    let (mut s, mut r) = (BTreeMap::new(), BTreeMap::new());
    for h in 0..n {
        let (x, rh) = (2.0 + 78.0 * rng.f64(), 30.0 + 65.0 * rng.f64());
        s.insert(h * HOUR, (x, Some(rh)));
        r.insert(h * HOUR, (truth(x, rh) + noise(&mut rng, 0.5), None));
    }
    (s, r)
}

fn near(got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "{got} not within {tol} of {want}"
    );
}

#[test]
fn recovers_linear_rh_coefficients() {
    let (s, r) = colocated(500, |x, rh| 1.5 + 0.62 * x - 0.031 * rh);
    let f = fit(&s, &r, FitModel::LinearRh, 72).unwrap();
    near(f.coefficients[0], 1.5, 0.3);
    near(f.coefficients[1], 0.62, 0.005);
    near(f.coefficients[2], -0.031, 0.005);
    assert_eq!(f.hours, 500);
    near(f.rmse, 0.5, 0.1);
    assert!(f.r2 > 0.99, "{}", f.r2);
}

#[test]
fn recovers_linear_and_polynomial_coefficients() {
    let (s, r) = colocated(300, |x, _| 0.71 * x + 1.3);
    let f = fit(&s, &r, FitModel::Linear, 72).unwrap();
    near(f.coefficients[1], 0.71, 0.005);
    near(f.coefficients[0], 1.3, 0.3);
    let (s, r) = colocated(300, |x, _| 0.5 + 0.8 * x + 0.004 * x * x);
    let f = fit(&s, &r, FitModel::Polynomial(2), 72).unwrap();
    near(f.coefficients[2], 0.004, 0.0005);
    near(f.coefficients[1], 0.8, 0.05);
}

#[test]
fn refuses_too_few_hours_and_missing_humidity() {
    let (s, mut r) = colocated(100, |x, _| x);
    // Only 60 hours in both files.
    r.retain(|t, _| *t < 60 * HOUR);
    assert_eq!(
        fit(&s, &r, FitModel::Linear, 72),
        Err(FitError::TooFew { got: 60, need: 72 })
    );
    let no_rh: BTreeMap<i64, Row> = s.iter().map(|(t, (x, _))| (*t, (*x, None))).collect();
    assert_eq!(
        fit(&no_rh, &r, FitModel::LinearRh, 10),
        Err(FitError::NoHumidity)
    );
    let flat: BTreeMap<i64, Row> = s.keys().map(|t| (*t, (5.0, None))).collect();
    assert_eq!(
        fit(&flat, &r, FitModel::Linear, 10),
        Err(FitError::Singular)
    );
}

#[test]
fn csv_rows_headers_comments_and_errors() {
    let text = "time,pm2_5,rh\n# a comment\n2026-01-01T00:00:00Z,12.5,80\n\
                1767229200,13,\n2026-01-01T02:00:00Z,NaN,70\n\n";
    let rows = parse_csv("s.csv", text).unwrap();
    let t0 = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[&t0], (12.5, Some(80.0)));
    assert_eq!(rows[&(t0 + HOUR)], (13.0, None));
    let bad = parse_csv("s.csv", "time,v\n2026-01-01T00:00:00Z,1\nyesterday,2\n");
    assert!(matches!(bad, Err(FitError::Row { line: 3, .. })), "{bad:?}");
}

#[test]
fn the_printed_rule_is_a_valid_calibration() {
    let (s, r) = colocated(100, |x, rh| 1.5 + 0.62 * x - 0.031 * rh);
    let f = fit(&s, &r, FitModel::LinearRh, 72).unwrap();
    let rule = f.to_toml("sds-1-2026", "pm2_5");
    assert!(
        rule.starts_with("# fitted on 100 hours: R2 = 0.9"),
        "{rule}"
    );
    let text = format!(
        "[gateway]\nid = \"gw\"\n[output]\napi = \"stdout\"\n\n{}",
        rule
    );
    let cfg = crate::config::Config::parse(&text, std::path::Path::new("t.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let c = &cfg.calibration[0];
    assert_eq!(
        (c.id.as_str(), c.quantity.as_str()),
        ("sds-1-2026", "pm2_5")
    );
    near(c.b.unwrap(), 0.62, 0.01);
}
