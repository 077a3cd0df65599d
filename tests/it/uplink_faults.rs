//! Store answers no real server gives on demand, from a fake HTTP store (support/fake_store),
//! against the real `citysensed` binary fed by its simulator: 429 with `Retry-After: 2` and
//! 503 (waited out, then delivered), 400 (only the refused point dead-lettered, counted, never
//! blocks the queue),
//! 401 (kept, retried slowly, one ERROR line, delivered once the store accepts).

use crate::support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use citysense::spool::{Spool, DEAD_LETTER_FILE};
use support::citysensed::scrape;
use support::config::Config;
use support::fake_store::Request;
use support::{free_port, wait_until, Citysensed, FakeStore, Reply};

fn config(url: &str, spool: &Path, metrics_port: u16, max_backoff_secs: u64) -> String {
    Config::new("gw-faults")
        .window(1)
        .grace(0)
        .stats(&["mean", "count"])
        .section("[simulator]\nair_sensors = 2\ncounters = 0\ninterval_ms = 100")
        .output_v2(url)
        .output_line(&format!("max_backoff_secs = {max_backoff_secs}"))
        .spool_dir(spool)
        .fsync(true)
        .metrics(&format!("127.0.0.1:{metrics_port}"))
        // This test machine's kernel clock may be unsynchronised; the clock logic is tested
        // elsewhere.
        .section("[clock]\nsync = \"assume\"")
        .to_toml()
}

/// A daemon on a fake store that answers with `respond`; returns once `ok` requests got 204.
async fn run_until(
    respond: Box<support::fake_store::Respond>,
    max_backoff_secs: u64,
    ok: usize,
) -> Faulted {
    let store = FakeStore::start(respond).await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let spool = tmp.path().join("spool");
    let metrics_port = free_port();
    let cfg = config(&store.url(), &spool, metrics_port, max_backoff_secs);
    let mut daemon = Citysensed::spawn(&cfg, tmp.path(), "info");
    let what = format!("{ok} requests answered 204");
    wait_until(Duration::from_secs(20), &what, || {
        let n = store.requests().iter().filter(|r| r.status == 204).count();
        async move { n >= ok }
    })
    .await;
    let metrics = scrape(metrics_port).await;
    let log = daemon.terminate(Duration::from_secs(15)).await;
    Faulted {
        requests: store.requests(),
        metrics,
        log,
        spool,
        _tmp: tmp,
    }
}

struct Faulted {
    requests: Vec<Request>,
    metrics: std::collections::BTreeMap<String, f64>,
    log: String,
    spool: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

impl Faulted {
    /// A metric scraped just before the stop (NaN when absent).
    fn metric(&self, name: &str) -> f64 {
        self.metrics.get(name).copied().unwrap_or(f64::NAN)
    }
}

fn lines_of<'a>(reqs: impl Iterator<Item = &'a Request>) -> Vec<String> {
    reqs.flat_map(|r| r.body.lines().map(str::to_owned))
        .collect()
}

/// Every line the store ever saw was finally accepted exactly once (except `excused`), and
/// nothing is left in the spool.
fn assert_all_delivered_once(f: &Faulted, excused: &BTreeSet<String>) {
    let accepted = lines_of(f.requests.iter().filter(|r| r.status == 204));
    let unique: BTreeSet<&String> = accepted.iter().collect();
    assert_eq!(unique.len(), accepted.len(), "a line was accepted twice");
    for line in lines_of(f.requests.iter()) {
        assert!(
            unique.contains(&line) || excused.contains(&line),
            "never delivered: {line}"
        );
    }
    let left = Spool::inspect(&f.spool).expect("inspect spool");
    assert_eq!(left.batches, 0, "spool empty after the drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_out_429_and_503_then_delivers() {
    let respond = |i: usize, _: &Request| match i {
        0 => Reply {
            retry_after: Some(2),
            ..Reply::status(429)
        },
        1 => Reply {
            retry_after: Some(1),
            ..Reply::status(503)
        },
        _ => Reply::status(204),
    };
    let f = run_until(Box::new(respond), 5, 3).await;
    let r = &f.requests;
    let gap = |a: usize, b: usize| r[b].at.duration_since(r[a].at);
    assert!(
        gap(0, 1) >= Duration::from_secs(2),
        "429 retried after {:?}",
        gap(0, 1)
    );
    assert!(
        gap(1, 2) >= Duration::from_secs(1),
        "503 retried after {:?}",
        gap(1, 2)
    );
    // The refused batch is retried first (newer windows may be merged behind it).
    assert!(r[1].body.starts_with(&r[0].body) && r[2].body.starts_with(&r[0].body));
    assert_eq!(r[2].status, 204);
    assert_eq!(
        f.metric("citysense_uplink_requests_failed_total{output=\"default\"}"),
        2.0
    );
    assert!(
        f.log.contains("store write failed; data kept in spool"),
        "{}",
        f.log
    );
    assert!(
        !f.log.contains("ERROR"),
        "no data loss, no operator action:\n{}",
        f.log
    );
    assert_all_delivered_once(&f, &BTreeSet::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_is_dead_lettered_and_does_not_block_the_queue() {
    // The first line the store sees is "bad data": every request holding it gets 400.
    let poison: Arc<Mutex<Option<String>>> = Arc::default();
    let p = poison.clone();
    let respond = move |i: usize, r: &Request| {
        let mut p = p.lock().unwrap();
        if i == 0 {
            *p = r.body.lines().next().map(str::to_owned);
        }
        match p.as_deref() {
            Some(bad) if r.body.lines().any(|l| l == bad) => Reply::status(400),
            _ => Reply::status(204),
        }
    };
    let f = run_until(Box::new(respond), 5, 3).await;
    let poison = poison.lock().unwrap().clone().expect("a first request");
    let dead = std::fs::read_to_string(f.spool.join(DEAD_LETTER_FILE)).expect("dead-letter file");
    let dead_lines: BTreeSet<String> = dead
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    // Only the refused point went aside, not the other sensors' windows of its batch.
    assert_eq!(dead_lines, BTreeSet::from([poison]), "{dead}");
    assert!(
        dead.starts_with("# HTTP 400: fake store says no (batch "),
        "{dead}"
    );
    assert_eq!(
        f.metric("citysense_dead_letter_points_total{output=\"default\",reason=\"bad_data\"}"),
        1.0
    );
    assert!(f.metric("citysense_uplink_splits_total{output=\"default\"}") >= 1.0);
    assert!(f.log.contains("moved to dead-letter file"), "{}", f.log);
    // The rejected batch went aside; everything else still reached the store.
    assert_all_delivered_once(&f, &dead_lines);
    let accepted = lines_of(f.requests.iter().filter(|r| r.status == 204));
    assert!(accepted.iter().all(|l| !dead_lines.contains(l)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_keeps_the_data_and_retries_slowly() {
    let respond = |i: usize, _: &Request| {
        if i < 2 {
            Reply::status(401)
        } else {
            Reply::status(204)
        }
    };
    let f = run_until(Box::new(respond), 1, 2).await;
    let r = &f.requests;
    let gap = r[1].at.duration_since(r[0].at);
    assert!(gap >= Duration::from_secs(1), "401 retried after {gap:?}");
    assert!(r[2].body.starts_with(&r[0].body), "refused data kept");
    assert_eq!(
        f.metric("citysense_uplink_requests_failed_total{output=\"default\"}"),
        2.0
    );
    assert_eq!(
        f.metric("citysense_dead_letter_points_total{output=\"default\",reason=\"bad_data\"}"),
        0.0
    );
    // One ERROR per interval, not one per attempt.
    let errors = f.log.matches("store refuses writes").count();
    assert_eq!(errors, 1, "{}", f.log);
    assert!(f.log.contains("ERROR store refuses writes"), "{}", f.log);
    assert_all_delivered_once(&f, &BTreeSet::new());
}
