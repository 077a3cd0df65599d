use super::*;
use crate::line_protocol::{parse_lines, FieldValue, Point};
use crate::pipeline::persist::Snapshot;
use crate::reading::{Reading, Registry, SeriesId, SeriesKind};
use crate::service::metrics::Metrics;
use crate::state::StateMetrics;
use tokio::sync::watch;

const S: i64 = NANOS_PER_SEC;
const T0: i64 = 1_800_000_000 * S;
const DAY: i64 = 86_400 * S;

struct Run {
    agg: Aggregator,
    inn: SeriesId,
    out: SeriesId,
    saved: watch::Receiver<Snapshot>,
    metrics: Arc<Metrics>,
}

/// An aggregator started at `start` with `loaded` as the state read at start.
fn run(start: TimestampNs, loaded: Option<StateDoc>) -> Run {
    let cfg = crate::config::AggregationConfig {
        window_secs: 60,
        grace_secs: 5,
        ..Default::default()
    };
    let reg = Registry::new();
    let g = reg.group(GroupKey::new(
        "footfall",
        [("sensor".into(), "door".into())],
    ));
    let total = SeriesKind {
        kind: QuantityKind::CounterTotal,
        wrap: None,
    };
    let inn = reg.series_with_kind(g, "in", total).unwrap();
    let out = reg.series_with_kind(g, "out", total).unwrap();
    let metrics = Metrics::new();
    let (tx, saved) = watch::channel(None);
    let file = StateFile {
        path: "state.json".into(),
        loaded,
        gateway: "gw".into(),
        max_age_ns: DAY,
        out: tx,
    };
    let agg = Aggregator::new(&cfg, reg, metrics.pipeline.clone(), start)
        .with_derive(crate::domain::Domain::default())
        .with_state(Some(file), Now::synced_at(start));
    Run {
        agg,
        inn,
        out,
        saved,
        metrics,
    }
}

impl Run {
    fn put(&mut self, series: SeriesId, v: f64, secs: i64) {
        assert!(self
            .agg
            .insert(Reading::new(series, v, T0 + secs * S), T0 + secs * S));
    }
    fn last_saved(&self) -> StateDoc {
        let doc = self.saved.borrow().clone().expect("a snapshot");
        // Through the bytes, as the file would be.
        StateDoc::decode(&doc.encode().unwrap()).unwrap()
    }
}

fn points(batch: &crate::pipeline::aggregate::WindowBatch) -> Vec<Point> {
    parse_lines(&batch.payload).map(|p| p.unwrap()).collect()
}

fn field(p: &Point, key: &str) -> f64 {
    match p.fields.iter().find(|(k, _)| k == key) {
        Some((_, FieldValue::Float(v))) => *v,
        other => panic!("{key}: {other:?} in {p:?}"),
    }
}

#[test]
fn a_restart_mid_window_keeps_the_chain_the_window_and_occupancy() {
    let mut a = run(T0, None);
    a.put(a.inn, 100.0, 1);
    a.put(a.inn, 110.0, 30);
    a.put(a.out, 7.0, 31);
    let w1 = a
        .agg
        .tick(Now::synced_at(T0 + 65 * S))
        .expect("window 1 closes");
    assert_eq!(field(&points(&w1)[0], "occupancy"), 10.0);
    a.put(a.inn, 115.0, 61);
    // Stop in the middle of window 2: its partial point goes out and the state is saved.
    let partial = a
        .agg
        .flush(Now::synced_at(T0 + 90 * S))
        .expect("partial window 2");
    assert_eq!(field(&points(&partial)[0], "in"), 5.0);
    assert_eq!(field(&points(&partial)[0], "occupancy"), 15.0);
    let doc = a.last_saved();
    assert_eq!(doc.saved_at, T0 + 90 * S);

    let mut b = run(T0 + 95 * S, Some(doc));
    assert_eq!(b.metrics.pipeline.state.restores(Restore::Restored), 1);
    b.put(b.inn, 120.0, 100);
    b.put(b.out, 9.0, 101);
    let w2 = b
        .agg
        .tick(Now::synced_at(T0 + 125 * S))
        .expect("window 2 again");
    // Window 1 closed whole before the restart: not re-emitted (its occupancy would be
    // today's, not its own).
    assert_eq!(points(&w2).len(), 1, "{}", w2.payload);
    let p = &points(&w2)[0];
    // The whole window: 5 before the restart + 5 after, not just the second part.
    assert_eq!(field(p, "in"), 10.0);
    assert_eq!(field(p, "out"), 2.0);
    // Replaces window 2's earlier net (5) instead of adding to it: 10 + 10 - 2.
    assert_eq!(field(p, "occupancy"), 18.0);
}

#[test]
fn a_series_not_seen_again_is_saved_on() {
    let mut a = run(T0, None);
    a.put(a.inn, 100.0, 1);
    a.agg.flush(Now::synced_at(T0 + 30 * S));
    let mut b = run(T0 + 40 * S, Some(a.last_saved()));
    b.put(b.out, 3.0, 50);
    b.agg.flush(Now::synced_at(T0 + 55 * S));
    let mut c = run(T0 + 70 * S, Some(b.last_saved()));
    c.put(c.inn, 104.0, 75);
    let batch = c.agg.flush(Now::synced_at(T0 + 80 * S)).unwrap();
    assert_eq!(field(&points(&batch)[0], "in"), 4.0);
}

#[test]
fn old_foreign_and_future_states_are_discarded() {
    let mut a = run(T0, None);
    a.put(a.inn, 100.0, 1);
    a.agg.flush(Now::synced_at(T0 + 30 * S));
    let doc = a.last_saved();
    let mut foreign = doc.clone();
    foreign.gateway = "other".into();
    let cases = [
        (T0 + 30 * S + DAY + S, doc.clone()),
        (T0 + 30 * S - 600 * S, doc.clone()),
        (T0 + 40 * S, foreign),
    ];
    for (start, doc) in cases {
        let mut b = run(start, Some(doc));
        let m: &StateMetrics = &b.metrics.pipeline.state;
        assert_eq!(m.restores(Restore::Discarded), 1);
        b.put(b.inn, 107.0, (start - T0) / S + 1);
        let batch = b.agg.flush(Now::synced_at(start + 2 * S)).unwrap();
        // A fresh chain: the first total counts 0.
        assert_eq!(field(&points(&batch)[0], "in"), 0.0);
    }
}

#[test]
fn a_bad_section_is_skipped_alone_and_a_reset_while_down_counts_from_zero() {
    let mut a = run(T0, None);
    a.put(a.inn, 100.0, 1);
    a.put(a.out, 1.0, 2);
    a.agg.flush(Now::synced_at(T0 + 30 * S));
    let mut doc = a.last_saved();
    doc.sections
        .insert("occupancy".into(), serde_json::json!("garbage"));
    let mut b = run(T0 + 61 * S, Some(doc));
    assert_eq!(b.metrics.pipeline.state.restores(Restore::Restored), 1);
    b.put(b.inn, 4.0, 62);
    let batch = b.agg.flush(Now::synced_at(T0 + 70 * S)).unwrap();
    let p = &points(&batch)[0];
    // 100 -> 4: the device restarted while the daemon was down and counted 4 since.
    assert_eq!(field(p, "in"), 4.0);
    // Occupancy started afresh.
    assert_eq!(field(p, "occupancy"), 4.0);
}

#[test]
fn a_snapshot_names_each_counter_series_by_its_tags() {
    let mut a = run(T0, None);
    a.put(a.inn, 1.0, 1);
    a.agg.flush(Now::synced_at(T0 + 2 * S));
    let mut doc = a.last_saved();
    let counters: Vec<CounterEntry> = doc.take(COUNTERS).unwrap().unwrap();
    assert_eq!(counters.len(), 1);
    assert_eq!(counters[0].total, Some(1.0));
    assert!(counters[0]
        .tags
        .iter()
        .any(|(k, v)| k == "sensor" && v == "door"));
}
