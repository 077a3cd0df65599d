//! The state file at start: the input as the file's contents through `state::load` (the
//! daemon's bounded read and envelope check), then its sections into the consumers that
//! validate them: occupancy per zone, the air-quality hours and days (with hourly and daily
//! values on), and the section types of counters' peers the aggregator keeps as is.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use citysense::config::Config;
use citysense::domain::footfall::ZoneSnapshot;
use citysense::domain::periods_state::AirQualityEntry;
use citysense::domain::Domain;
use citysense::health::tracker::IntervalSnapshot;
use citysense::state::{self, StateDoc};
use libfuzzer_sys::fuzz_target;

/// Hourly and daily values on (the default pollutants and WHO thresholds), 15-minute windows.
const CONFIG: &str = r#"
[gateway]
id = "gw-1"

[[mqtt]]
host = "127.0.0.1"

[[mqtt.subscription]]
topic = "s/{sensor}/{quantity}"
format = "plain"

[output]
api = "stdout"

[aggregation]
window_secs = 900

[air_quality]
hourly = true
time_zone = "Europe/Amsterdam"
"#;

/// The latest a trusted clock is taken to be (2100-01-01): the document is applied only
/// when it was saved near the clock's `now`, so `now` follows `saved_at` within this range.
const LATEST_NS: i64 = 4_102_444_800_000_000_000;

fn setup() -> &'static (Config, PathBuf, tempfile::TempDir) {
    static SETUP: OnceLock<(Config, PathBuf, tempfile::TempDir)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.json");
        let cfg = Config::parse(CONFIG, std::path::Path::new("/nonexistent/c.toml"))
            .expect("the fuzz config is valid");
        (cfg, path, dir)
    })
}

fuzz_target!(|data: &[u8]| {
    let (cfg, path, _) = setup();
    if std::fs::write(path, data).is_err() {
        return;
    }
    let mut doc = match state::load(path) {
        Ok(Some(doc)) => doc,
        Ok(None) => return,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    // What loads saves again and loads back. Not necessarily bit-equal: serde_json's
    // default float parsing may be 1 ulp off (seed `float_one_ulp_off`).
    if let Ok(bytes) = doc.encode() {
        let again = StateDoc::decode(&bytes).expect("a saved document loads");
        assert_eq!(
            (
                &again.gateway,
                again.saved_at,
                again.sections.keys().collect::<Vec<_>>()
            ),
            (
                &doc.gateway,
                doc.saved_at,
                doc.sections.keys().collect::<Vec<_>>()
            )
        );
    }
    let now = doc.saved_at.clamp(0, LATEST_NS);
    let mut domain = Domain::build(cfg).expect("the fuzz config builds");
    if let Ok(Some(zones)) = doc.take::<Vec<ZoneSnapshot>>("occupancy") {
        domain.occupancy.restore(zones);
    }
    if let Ok(Some(air)) = doc.take::<Vec<AirQualityEntry>>("air_quality") {
        domain.restore_air_quality(air, now);
        // What was restored saves as a valid section.
        let snapshot = domain.air_quality_snapshot();
        let mut out = StateDoc::new("gw-1", now);
        out.put("air_quality", &snapshot)
            .expect("restored values are finite");
        let bytes = out.encode().expect("encodes");
        StateDoc::decode(&bytes).expect("loads back");
    }
    let _ = doc.take::<Vec<IntervalSnapshot>>("sensor_intervals");
});
