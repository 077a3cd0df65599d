//! Fitting a calibration rule (`citysensed calibrate`): least squares on co-located hourly
//! values of a sensor and a reference station, read from two CSV files. Pure.
//!
//! CSV: one row per hour, `time,value` (the sensor's file may add a third column, the
//! relative humidity, for the `linear_rh` model); `time` is RFC 3339 or Unix seconds; a first
//! row that does not parse is taken as a header; blank lines and `#` comments are skipped.
//! Rows are paired by time; rows without a partner, or with a value that is not a finite
//! number, are left out. A fit needs at least `min_hours` pairs: a calibration from a few
//! days of one season does not hold in the next.
//!
//! The fit solves the normal equations (at most 6 unknowns) by Gaussian elimination with
//! partial pivoting; R2 and RMSE are of the fitted values against the reference.

use std::collections::BTreeMap;

use crate::time::parse_rfc3339;

/// Which model to fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FitModel {
    Linear,
    /// A polynomial of this degree (1-5).
    Polynomial(usize),
    LinearRh,
}

/// A fitted rule and how well it fits.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    pub model: FitModel,
    /// Linear: [offset, gain]; polynomial: constant first; linear_rh: [a, b, c].
    pub coefficients: Vec<f64>,
    pub r2: f64,
    pub rmse: f64,
    pub hours: usize,
}

/// Why there is no fit.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FitError {
    #[error("{file}:{line}: {what}")]
    Row {
        file: String,
        line: usize,
        what: String,
    },
    #[error("only {got} hours are in both files with values (at least {need} needed)")]
    TooFew { got: usize, need: usize },
    #[error("the model needs a humidity column (time,value,rh) in the sensor file")]
    NoHumidity,
    #[error("the values do not determine the model (all the same?)")]
    Singular,
}

/// One row: the value and the optional third column.
type Row = (f64, Option<f64>);

/// Parses a CSV text named `file` (for errors) into rows by time (ns).
pub fn parse_csv(file: &str, text: &str) -> Result<BTreeMap<i64, Row>, FitError> {
    let mut out = BTreeMap::new();
    let mut first = true;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |what: String| FitError::Row {
            file: file.to_string(),
            line: i + 1,
            what,
        };
        let mut cols = line.split(',').map(str::trim);
        let (t, v) = (cols.next().unwrap_or(""), cols.next().unwrap_or(""));
        let Some(ts) = parse_time(t) else {
            if std::mem::take(&mut first) {
                continue; // a header
            }
            let shown: String = t.chars().take(40).collect();
            return Err(err(format!("{shown:?} is not a time")));
        };
        first = false;
        let num = |s: &str| s.parse::<f64>().ok().filter(|x| x.is_finite());
        let rh = cols.next().and_then(num);
        if let Some(v) = num(v) {
            out.insert(ts, (v, rh));
        }
    }
    Ok(out)
}

fn parse_time(s: &str) -> Option<i64> {
    if let Ok(secs) = s.parse::<i64>() {
        return secs.checked_mul(1_000_000_000);
    }
    parse_rfc3339(s).ok()
}

/// Fits `model` to the pairs of `sensor` and `reference` (rows by time).
pub fn fit(
    sensor: &BTreeMap<i64, Row>,
    reference: &BTreeMap<i64, Row>,
    model: FitModel,
    min_hours: usize,
) -> Result<Fit, FitError> {
    let mut xs: Vec<Vec<f64>> = Vec::new();
    let mut ys: Vec<f64> = Vec::new();
    let mut had_rh = false;
    for (t, (x, rh)) in sensor {
        let Some((y, _)) = reference.get(t) else {
            continue;
        };
        let row = match model {
            FitModel::Linear => vec![1.0, *x],
            FitModel::Polynomial(d) => (0..=d as i32).map(|p| x.powi(p)).collect(),
            FitModel::LinearRh => match rh {
                Some(rh) => vec![1.0, *x, *rh],
                None => continue,
            },
        };
        had_rh |= rh.is_some();
        xs.push(row);
        ys.push(*y);
    }
    if model == FitModel::LinearRh && !had_rh {
        return Err(FitError::NoHumidity);
    }
    if ys.len() < min_hours.max(xs.first().map_or(1, Vec::len) + 1) {
        return Err(FitError::TooFew {
            got: ys.len(),
            need: min_hours,
        });
    }
    let coefficients = least_squares(&xs, &ys).ok_or(FitError::Singular)?;
    let predict = |row: &[f64]| {
        row.iter()
            .zip(&coefficients)
            .map(|(a, b)| a * b)
            .sum::<f64>()
    };
    let n = ys.len() as f64;
    let mean = ys.iter().sum::<f64>() / n;
    let ss_res: f64 = xs
        .iter()
        .zip(&ys)
        .map(|(r, y)| (y - predict(r)).powi(2))
        .sum();
    let ss_tot: f64 = ys.iter().map(|y| (y - mean).powi(2)).sum();
    Ok(Fit {
        model,
        coefficients,
        r2: if ss_tot > 0.0 {
            1.0 - ss_res / ss_tot
        } else {
            f64::NAN
        },
        rmse: (ss_res / n).sqrt(),
        hours: ys.len(),
    })
}

/// Solves min |X b - y| through the normal equations; `None` if singular.
fn least_squares(xs: &[Vec<f64>], ys: &[f64]) -> Option<Vec<f64>> {
    let k = xs.first()?.len();
    // Augmented [X'X | X'y].
    let mut m = vec![vec![0.0; k + 1]; k];
    for (row, y) in xs.iter().zip(ys) {
        for (mi, ri) in m.iter_mut().zip(row) {
            for (mij, rj) in mi.iter_mut().zip(row) {
                *mij += ri * rj;
            }
            mi[k] += ri * y;
        }
    }
    for col in 0..k {
        let pivot = (col..k).max_by(|a, b| m[*a][col].abs().total_cmp(&m[*b][col].abs()))?;
        let scale = m.iter().map(|r| r[col].abs()).fold(0.0, f64::max);
        if m[pivot][col].abs() <= 1e-12 * scale.max(1e-300) {
            return None;
        }
        m.swap(col, pivot);
        let p = m[col].clone();
        for (r, row) in m.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / p[col];
                for (x, q) in row.iter_mut().zip(&p).skip(col) {
                    *x -= f * q;
                }
            }
        }
    }
    let b: Vec<f64> = (0..k).map(|i| m[i][k] / m[i][i]).collect();
    b.iter().all(|x| x.is_finite()).then_some(b)
}

impl Fit {
    /// The `[[calibration]]` rule as TOML, with the fit's figures as comments.
    pub fn to_toml(&self, id: &str, quantity: &str) -> String {
        let c = &self.coefficients;
        let g = |i: usize| c.get(i).copied().unwrap_or(0.0);
        let body = match self.model {
            FitModel::Linear => format!(
                "model = \"linear\"\ngain = {}\noffset = {}\n",
                round(g(1)),
                round(g(0))
            ),
            FitModel::Polynomial(_) => {
                let list: Vec<String> = c.iter().map(|x| round(*x).to_string()).collect();
                format!(
                    "model = \"polynomial\"\ncoefficients = [{}]\n",
                    list.join(", ")
                )
            }
            FitModel::LinearRh => format!(
                "model = \"linear_rh\"\na = {}\nb = {}\nc = {}\n",
                round(g(0)),
                round(g(1)),
                round(g(2))
            ),
        };
        format!(
            "# fitted on {} hours: R2 = {:.4}, RMSE = {:.3}\n[[calibration]]\nid = \"{id}\"\n\
             match = {{ sensor = \"CHANGE-ME\" }}\nquantity = \"{quantity}\"\n{body}",
            self.hours, self.r2, self.rmse
        )
    }
}

/// Six significant digits: more than any co-location supports.
fn round(x: f64) -> f64 {
    format!("{x:.5e}").parse().unwrap_or(x)
}

#[cfg(test)]
#[path = "fit_tests.rs"]
mod tests;
