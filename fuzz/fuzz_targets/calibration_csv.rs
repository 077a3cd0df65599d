//! The CSV reader of `citysensed calibrate` (`fit::parse_csv`) on arbitrary text, then a fit
//! of every model on what it read. The input is split at its first NUL byte into the
//! sensor's file and the reference's (the same text for both if there is none).
#![no_main]

use citysense::domain::fit::{fit, parse_csv, FitModel};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The daemon reads the files as UTF-8 (`fs_limits::read_text`) and refuses others.
    let (s, r) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let (Ok(s), Ok(r)) = (std::str::from_utf8(s), std::str::from_utf8(r)) else {
        return;
    };
    let (sensor, reference) = match (parse_csv("sensor.csv", s), parse_csv("ref.csv", r)) {
        (Ok(s), Ok(r)) => (s, r),
        (Err(e), _) | (_, Err(e)) => {
            let _ = e.to_string();
            return;
        }
    };
    for (v, rh) in sensor.values().chain(reference.values()) {
        assert!(v.is_finite() && rh.is_none_or(f64::is_finite));
    }
    let models = [
        FitModel::Linear,
        FitModel::Polynomial(1),
        FitModel::Polynomial(3),
        FitModel::Polynomial(5),
        FitModel::LinearRh,
    ];
    for model in models {
        if let Ok(f) = fit(&sensor, &reference, model, 2) {
            assert!(f.hours >= 2);
            let _ = f.to_toml("s1", "pm2_5");
        }
    }
});
