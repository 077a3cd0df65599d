use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::clock::Now;
use crate::config::AggregationConfig;
use crate::config::HealthConfig;
use crate::config::PrivacyConfig;
use crate::line_protocol::{parse_lines, FieldValue, Point};
use crate::pipeline::aggregate::{Aggregator, WindowBatch};
use crate::privacy::Privacy;
use crate::reading::{GroupKey, Reading, Registry, SeriesId, NANOS_PER_SEC};
use crate::service::metrics::Metrics;

const S: i64 = NANOS_PER_SEC;
const T0: i64 = 1_800_000_000 * S;

struct Setup {
    agg: Aggregator,
    hub: Arc<Privacy>,
    metrics: Arc<Metrics>,
    pm: SeriesId,
    devices: SeriesId,
}

fn setup(health: HealthConfig) -> Setup {
    let cfg = AggregationConfig {
        window_secs: 60,
        grace_secs: 5,
        stats: vec!["mean".into(), "count".into()],
        ..AggregationConfig::default()
    };
    let reg = Registry::new();
    let tags = |s: &str| [("sensor".to_string(), s.to_string())];
    let pm = reg.group(GroupKey::new("air_quality", tags("a")));
    let pm = reg.series(pm, "pm2_5").unwrap();
    let scanner = reg.group(GroupKey::new("footfall", tags("scan-1")));
    let devices = reg.series(scanner, "unique_devices").unwrap();
    let metrics = Metrics::new();
    let hub = Arc::new(Privacy::new(
        &PrivacyConfig::default(),
        &cfg,
        metrics.privacy.clone(),
    ));
    hub.mark_identifier_series(devices);
    let gw = vec![("gateway".to_string(), "gw".to_string())];
    let agg = Aggregator::new(&cfg, reg, metrics.pipeline.clone(), T0).with_hooks(
        Some(hub.clone()),
        &health,
        gw,
    );
    Setup {
        agg,
        hub,
        metrics,
        pm,
        devices,
    }
}

fn points(batch: &WindowBatch) -> Vec<Point> {
    parse_lines(&batch.payload).map(|p| p.unwrap()).collect()
}

fn find<'p>(points: &'p [Point], measurement: &str, sensor: &str) -> Option<&'p Point> {
    points.iter().find(|p| {
        p.measurement == measurement && p.tags.iter().any(|(k, v)| k == "sensor" && v == sensor)
    })
}

fn field(p: &Point, key: &str) -> Option<FieldValue> {
    p.fields.iter().find(|(k, _)| k == key).map(|f| f.1.clone())
}

impl Setup {
    fn devices(&mut self, n: usize, ts: i64) {
        for i in 0..n {
            let u = self
                .hub
                .register(format!("aa:bb:cc:00:00:{i:02x}").as_bytes(), ts, ts)
                .unwrap();
            let r = Reading::new(self.devices, u.to_value(), ts);
            assert!(self.agg.insert(r, ts));
        }
    }
}

#[test]
fn identifier_readings_become_unique_devices_and_health_points() {
    let mut s = setup(HealthConfig::default());
    s.devices(30, T0 + S);
    s.devices(30, T0 + 2 * S); // the same 30 again
    let pm = Reading::new(s.pm, 4.0, T0 + S);
    assert!(s.agg.insert(pm, T0 + S));
    let batch = s.agg.close_due(T0 + 66 * S).expect("a batch");
    let pts = points(&batch);
    let scan = find(&pts, "footfall", "scan-1").expect("estimate point");
    assert_eq!(scan.ts, Some(T0));
    assert_eq!(scan.fields.len(), 1, "only the estimate: {scan:?}");
    // Keys are random per run: a register collision among 30 devices happens (~10 %) and
    // linear counting then reads 29; four collisions would take a one-in-a-million key.
    let Some(FieldValue::Int(n)) = field(scan, "unique_devices") else {
        panic!("{scan:?}")
    };
    assert!((27..=31).contains(&n), "{n}");
    let air = find(&pts, "air_quality", "a").unwrap();
    assert_eq!(field(air, "pm2_5_count"), Some(FieldValue::Int(1)));
    let health = find(&pts, "sensor_health", "a").unwrap();
    assert_eq!(field(health, "sensor_up"), Some(FieldValue::Int(1)));
    assert!(
        find(&pts, "sensor_health", "scan-1").is_none(),
        "no health point tells how many probes a scanner heard"
    );
    assert_eq!(batch.points as usize, pts.len());
    assert_eq!(
        s.metrics.pipeline.points_emitted.load(Relaxed),
        pts.len() as u64
    );
    assert_eq!(s.metrics.pipeline.readings_aggregated.load(Relaxed), 61);
    assert_eq!(s.hub.live_keys(), 0, "the closed window's key is gone");
}

#[test]
fn small_counts_are_suppressed_and_flush_retires_every_key() {
    let mut s = setup(HealthConfig {
        enabled: false,
        ..HealthConfig::default()
    });
    s.devices(4, T0 + S);
    assert!(s.agg.close_due(T0 + 66 * S).is_none(), "4 < k_min: nothing");
    assert_eq!(s.metrics.privacy.windows_suppressed.load(Relaxed), 1);
    s.devices(8, T0 + 70 * S);
    assert_eq!(s.hub.live_keys(), 1);
    let batch = (s.agg.flush(Now::synced_at(T0 + 75 * S))).expect("partial window flushed");
    let pts = points(&batch);
    assert_eq!(pts.len(), 1);
    // Keys are random: a register collision (p < 1 %) reads 7; two are about 1e-5.
    assert!(matches!(
        field(&pts[0], "unique_devices"),
        Some(FieldValue::Int(6..=8))
    ));
    assert_eq!(s.hub.live_keys(), 0);
}

#[test]
fn without_domain_nothing_changes() {
    let cfg = AggregationConfig::default();
    let reg = Registry::new();
    let g = reg.group(GroupKey::new("m", []));
    let id = reg.series(g, "x").unwrap();
    let mut agg = Aggregator::new(&cfg, reg, Arc::default(), T0);
    assert!(agg.insert(Reading::new(id, 1.0, T0), T0));
    let pts = points(&agg.close_due(T0 + 70 * S).unwrap());
    assert_eq!(pts.len(), 1);
    assert_eq!(pts[0].measurement, "m");
}

/// A reading stamped at receipt (boot clock, here 1 h since boot) is seen by health at its
/// wall time: before, its boot stamp made it look days old and the sensor was "forgotten".
#[test]
fn receipt_stamped_readings_get_health_points() {
    use crate::config::{ClockConfig, SyncMode};
    let cfg = AggregationConfig {
        window_secs: 60,
        grace_secs: 5,
        ..AggregationConfig::default()
    };
    let reg = Registry::new();
    let group = reg.group(GroupKey::new(
        "air_quality",
        [("sensor".to_string(), "serial-1".to_string())],
    ));
    let pm = reg.series(group, "pm2_5").unwrap();
    let clock = ClockConfig {
        sync: SyncMode::Assume,
        ..ClockConfig::default()
    };
    let boot = 3600 * S;
    let now = Now {
        wall: T0,
        boot,
        synced: true,
    };
    let mut agg = Aggregator::with_clock(&cfg, &clock, reg, Arc::default(), now).with_hooks(
        None,
        &HealthConfig::default(),
        Vec::new(),
    );
    assert!(agg.insert(Reading::received(pm, 4.0, boot + S), T0 + S));
    let batch = agg.close_due(T0 + 66 * S).expect("a batch");
    let pts = points(&batch);
    let health = find(&pts, "sensor_health", "serial-1").expect("a health point");
    assert_eq!(field(health, "sensor_up"), Some(FieldValue::Int(1)));
    assert_eq!(field(health, "readings"), Some(FieldValue::Int(1)));
}

/// One `gateway_health` point per close, at the newest closed window's start, tagged with
/// the gateway, also when sensor health is off; nothing but `clock_synced` from an empty
/// root.
#[test]
fn every_close_writes_one_gateway_health_point() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("proc")).unwrap();
    std::fs::write(dir.path().join("proc/loadavg"), "1.25 1 1 1/1 1\n").unwrap();
    let board = crate::health::board::BoardReader::new(dir.path(), &dir.path().join("none"));
    let mut s = setup(HealthConfig {
        enabled: false,
        ..HealthConfig::default()
    });
    s.agg = s.agg.with_board(Some(board));
    assert!(s.agg.insert(Reading::new(s.pm, 4.0, T0 + S), T0 + S));
    for (close_at, window) in [(T0 + 66 * S, T0), (T0 + 126 * S, T0 + 60 * S)] {
        let pts = points(&s.agg.close_due(close_at).expect("a batch"));
        let gw: Vec<&Point> = pts
            .iter()
            .filter(|p| p.measurement == "gateway_health")
            .collect();
        assert_eq!(gw.len(), 1, "{pts:?}");
        assert_eq!(gw[0].ts, Some(window));
        assert_eq!(gw[0].tags, [("gateway".to_string(), "gw".to_string())]);
        assert_eq!(
            gw[0].fields,
            [
                ("load1".to_string(), FieldValue::Float(1.25)),
                ("clock_synced".to_string(), FieldValue::Int(1)),
            ]
        );
    }
}
