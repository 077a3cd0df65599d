//! Configuration loading from bytes: the TOML config with all its checks, and a serial sensor
//! profile (TOML) with its validation and decoder build.
#![no_main]

use std::path::Path;

use citysense::config::Config;
use citysense::decode::profile::SensorProfile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A config may name profile files to read; keep the fuzzer off device and proc files
    // (reading /dev/zero never ends). Relative names resolve under a directory that does
    // not exist.
    if text.contains("/dev") || text.contains("/proc") || text.contains("/sys") {
        return;
    }
    if let Err(errors) = Config::parse(text, Path::new("/nonexistent/fuzz.toml")) {
        let _ = errors.to_string();
    }
    if let Ok(profile) = SensorProfile::parse(text) {
        let _ = profile.build();
    }
});
