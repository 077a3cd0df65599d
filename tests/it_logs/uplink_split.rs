//! The uplink against stores that refuse, shrink or redirect, driven in-process through the
//! public sink (`Sink::build` + `Sink::run`) with known line protocol, so every point can be
//! accounted for: a 400 only for requests holding one marker point (only that point is
//! dead-lettered), 413 above a size (everything arrives in smaller requests; a lone point too
//! big goes aside as `too_large`), 301/302 to a portal (never delivered, data kept), 307 to
//! another path (delivered there), credentials in the URL (never logged), and the same
//! partial write against the real influxd 1.x (a field type conflict).

use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use citysense::config::Config;
use citysense::pipeline::aggregate::WindowBatch;
use citysense::service::metrics::Metrics;
use citysense::sinks::{DeadReason, Sink};
use citysense::spool::DEAD_LETTER_FILE;
use support::config::Config as TestConfig;
use support::fake_store::Request;
use support::{logs, wait_until, FakeStore, Influxd, Reply};
use tokio::sync::mpsc;

const T0: i64 = 1_700_000_000_000_000_000;

/// A sink on `url` (v1 API, `extra` output keys) with its spool in a temp dir.
struct Rig {
    tx: Option<mpsc::Sender<WindowBatch>>,
    task: tokio::task::JoinHandle<()>,
    metrics: Arc<Metrics>,
    spool: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Rig {
    fn start(url: &str, extra: &str) -> Rig {
        logs::capture();
        let tmp = tempfile::tempdir().expect("temp dir");
        let spool = tmp.path().join("spool");
        // The simulator only satisfies the config check; the sink alone runs here.
        let mut text = TestConfig::new("gw-split")
            .section("[simulator]\nair_sensors = 1")
            .output_v1(url)
            .output_line("max_backoff_secs = 1")
            .spool_dir(&spool);
        if !extra.is_empty() {
            text = text.output_line(extra);
        }
        let text = text.to_toml();
        let cfg = Config::parse(&text, Path::new("split.toml"))
            .unwrap_or_else(|e| panic!("config:\n{e}\n{text}"));
        let metrics = Metrics::new();
        let sink = Sink::build(&cfg, metrics.sink.clone()).expect("sink builds");
        let (tx, rx) = mpsc::channel(64);
        Rig {
            tx: Some(tx),
            task: tokio::spawn(sink.run(rx)),
            metrics,
            spool,
            _tmp: tmp,
        }
    }

    /// Hands one window batch (these lines) to the sink.
    async fn send(&self, lines: &[String]) {
        let payload: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let batch = WindowBatch {
            payload,
            points: lines.len() as u32,
            min_ts: T0,
            max_ts: T0,
        };
        let tx = self.tx.as_ref().expect("running");
        tx.send(batch).await.expect("sink running");
    }

    async fn wait_sent(&self, points: u64) {
        let m = self.metrics.clone();
        wait_until(
            Duration::from_secs(20),
            &format!("{points} points sent"),
            || {
                let n = m.sink.uplink_points_sent.load(Relaxed);
                async move { n >= points }
            },
        )
        .await;
    }

    /// Closes the input and waits for the sink's drain.
    async fn finish(&mut self) {
        self.tx = None;
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("sink stops")
            .expect("sink task did not panic");
    }

    /// Point lines in the dead-letter file (comments left out) and the comments.
    fn dead(&self) -> (Vec<String>, Vec<String>) {
        let text = std::fs::read_to_string(self.spool.join(DEAD_LETTER_FILE)).unwrap_or_default();
        let (comments, points) = text
            .lines()
            .map(str::to_owned)
            .partition(|l| l.starts_with('#'));
        (points, comments)
    }

    fn dead_count(&self, r: DeadReason) -> u64 {
        self.metrics.sink.uplink.dead_letter_points(r)
    }
}

/// `n` lines of one measurement, sensor `{tag}{i}`, padded to about `pad` bytes each.
fn lines(tag: &str, n: usize, pad: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let line = format!(
                "m,sensor={tag}{i} v={i}.5 {}",
                T0 + i as i64 * 1_000_000_000
            );
            match pad.checked_sub(line.len()) {
                Some(extra) if extra > 8 => format!(
                    "m,sensor={tag}{i},pad={} v={i}.5 {}",
                    "x".repeat(extra - 5),
                    T0 + i as i64 * 1_000_000_000
                ),
                _ => line,
            }
        })
        .collect()
}

fn body_lines<'a>(reqs: impl Iterator<Item = &'a Request>) -> Vec<String> {
    reqs.flat_map(|r| r.body.lines().map(str::to_owned))
        .collect()
}

/// Every line of `all` except `excused` was accepted (2xx) exactly once; nothing else was.
fn assert_delivered_once(reqs: &[Request], all: &[String], excused: &BTreeSet<String>) {
    let accepted = body_lines(reqs.iter().filter(|r| r.status == 204));
    let unique: BTreeSet<&String> = accepted.iter().collect();
    assert_eq!(unique.len(), accepted.len(), "a line was accepted twice");
    let want: BTreeSet<&String> = all.iter().filter(|l| !excused.contains(*l)).collect();
    assert_eq!(unique, want, "accepted lines");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_refused_point_is_dead_lettered() {
    let store = FakeStore::start(Box::new(|_, r: &Request| {
        if r.body.lines().any(|l| l.starts_with("m,sensor=poison")) {
            Reply::status(400)
        } else {
            Reply::status(204)
        }
    }))
    .await;
    let mut rig = Rig::start(&store.url(), "");
    let mut all = Vec::new();
    for b in 0..8 {
        let mut batch = lines(&format!("b{b}s"), 50, 0);
        if b == 3 {
            batch[25] = format!("m,sensor=poison v=1 {T0}");
        }
        all.extend(batch.iter().cloned());
        rig.send(&batch).await;
    }
    rig.wait_sent(399).await;
    rig.finish().await;
    let (dead, comments) = rig.dead();
    let poison = format!("m,sensor=poison v=1 {T0}");
    assert_eq!(dead, std::slice::from_ref(&poison));
    assert_eq!(comments.len(), 1);
    assert!(comments[0].starts_with("# HTTP 400: fake store says no (batch "));
    assert!(comments[0].ends_with(", 1 points)"), "{comments:?}");
    assert_eq!(rig.dead_count(DeadReason::BadData), 1);
    assert_eq!(rig.dead_count(DeadReason::TooLarge), 0);
    let reqs = store.requests();
    assert_delivered_once(&reqs, &all, &BTreeSet::from([poison]));
    // O(log n): one bisection of at most 400 points is about 2 requests per halving.
    let refused = reqs.iter().filter(|r| r.status == 400).count();
    assert!(refused <= 12, "{refused} refused requests");
    assert!(reqs.len() <= 30, "{} requests", reqs.len());
    assert_eq!(rig.metrics.sink.spool_points.load(Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_shrinks_requests_and_loses_nothing() {
    const LIMIT: usize = 10_000;
    let store = FakeStore::start(Box::new(|_, r: &Request| {
        Reply::status(if r.body.len() > LIMIT { 413 } else { 204 })
    }))
    .await;
    let mut rig = Rig::start(&store.url(), "");
    let mut all = Vec::new();
    // Six batches of ~12 KB each: every batch alone is over the store's limit.
    for b in 0..6 {
        let mut batch = lines(&format!("b{b}s"), 100, 120);
        if b == 4 {
            batch[10] = format!("m,sensor=huge v=\"{}\" {T0}", "y".repeat(LIMIT));
        }
        all.extend(batch.iter().cloned());
        rig.send(&batch).await;
    }
    rig.wait_sent(599).await;
    rig.finish().await;
    let reqs = store.requests();
    let huge = all.iter().find(|l| l.contains("sensor=huge")).cloned();
    let huge = huge.expect("huge line");
    let (dead, comments) = rig.dead();
    assert_eq!(
        dead,
        std::slice::from_ref(&huge),
        "only the point too big on its own"
    );
    assert!(comments[0].starts_with("# HTTP 413"), "{comments:?}");
    assert_eq!(rig.dead_count(DeadReason::TooLarge), 1);
    assert_eq!(rig.dead_count(DeadReason::BadData), 0);
    assert_delivered_once(&reqs, &all, &BTreeSet::from([huge]));
    assert!(reqs
        .iter()
        .filter(|r| r.status == 204)
        .all(|r| r.body.len() <= LIMIT));
    // The limit shrank once and stayed: few 413s, not one per batch and level.
    let limit = rig.metrics.sink.uplink.max_request_bytes.load(Relaxed);
    assert!((4096..=LIMIT as u64).contains(&limit), "limit {limit}");
    let refused = reqs.iter().filter(|r| r.status == 413).count();
    assert!(refused <= 8, "{refused} requests refused with 413");
    let log = logs::text();
    assert!(
        log.contains("store refused a request as too large (HTTP 413)"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_301_302_is_never_delivered_and_keeps_the_data() {
    let fixed = Arc::new(AtomicBool::new(false));
    let f = fixed.clone();
    let store = FakeStore::start(Box::new(move |i, r: &Request| {
        match (r.method.as_str(), f.load(Relaxed)) {
            // A captive portal: the moved POST would come back as a GET and get a 200 page.
            ("GET", _) => Reply::status(200),
            (_, true) => Reply::status(204),
            _ => Reply::redirect(if i % 2 == 0 { 301 } else { 302 }, "/portal?from=write"),
        }
    }))
    .await;
    let mut rig = Rig::start(&store.url(), "");
    let all = lines("s", 10, 0);
    rig.send(&all).await;
    wait_until(Duration::from_secs(10), "a 301 and a 302", || {
        let n = store.requests().len();
        async move { n >= 2 }
    })
    .await;
    let m = &rig.metrics;
    assert_eq!(
        m.sink.uplink_points_sent.load(Relaxed),
        0,
        "a redirect is no delivery"
    );
    assert_eq!(
        m.sink.spool_points.load(Relaxed),
        10,
        "data kept in the spool"
    );
    assert!(m.sink.uplink.redirects.load(Relaxed) >= 2);
    fixed.store(true, Relaxed);
    rig.wait_sent(10).await;
    rig.finish().await;
    let reqs = store.requests();
    assert!(
        reqs.iter().all(|r| r.method == "POST"),
        "no GET follows a 301/302"
    );
    assert!(rig.dead().0.is_empty());
    assert_delivered_once(&reqs, &all, &BTreeSet::new());
    let log = logs::text();
    assert!(log.contains("redirect that is not followed"), "{log}");
    assert!(
        log.contains("/portal?from=write"),
        "the Location is named: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_redirect_307_delivers_to_the_new_path() {
    let store = FakeStore::start(Box::new(|_, r: &Request| {
        if r.path.starts_with("/moved/") {
            Reply::status(204)
        } else {
            Reply::redirect(307, "/moved/write?db=city&precision=ns")
        }
    }))
    .await;
    let mut rig = Rig::start(&store.url(), "username = \"u\"\npassword = \"p\"");
    let all = lines("s", 20, 0);
    rig.send(&all).await;
    rig.wait_sent(20).await;
    rig.finish().await;
    let reqs = store.requests();
    let moved: Vec<&Request> = reqs
        .iter()
        .filter(|r| r.path.starts_with("/moved/"))
        .collect();
    assert!(!moved.is_empty());
    for r in &moved {
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.authorization.as_deref(),
            Some("Basic dTpw"),
            "same host: auth kept"
        );
    }
    assert_delivered_once(&reqs, &all, &BTreeSet::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_credentials_never_reach_the_logs() {
    const PASSWORD: &str = "s3cr3t-pw";
    const TOKEN: &str = "tok-9f2c71";
    let store = FakeStore::start(Box::new(|i, _: &Request| match i {
        0 => Reply::status(503),
        1 => Reply::redirect(
            301,
            &format!("http://me:{PASSWORD}@127.0.0.1:1/p?token={TOKEN}"),
        ),
        2 => Reply::status(401),
        _ => Reply::status(204),
    }))
    .await;
    let url = format!(
        "http://me:{PASSWORD}@127.0.0.1:{}/?token={TOKEN}",
        store.port
    );
    let mut rig = Rig::start(&url, "");
    let all = lines("s", 5, 0);
    rig.send(&all).await;
    rig.wait_sent(5).await;
    rig.finish().await;
    let reqs = store.requests();
    assert_eq!(reqs.len(), 4);
    // base64("me:s3cr3t-pw"): the userinfo became Basic auth.
    assert_eq!(
        reqs[3].authorization.as_deref(),
        Some("Basic bWU6czNjcjN0LXB3")
    );
    let log = logs::text();
    for secret in [PASSWORD, TOKEN] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        assert!(!rig.metrics.render().contains(secret));
    }
    for needle in [
        "store write failed",
        "redirect that is not followed",
        "store refuses writes",
    ] {
        assert!(log.contains(needle), "{needle} logged: {log}");
    }
    assert!(log.contains("token=redacted"), "{log}");
}

/// influxd 1.x stores the good points of a request and answers 400 "partial write" for the
/// rest; the uplink must dead-letter exactly the points influxd dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxd_partial_write_dead_letters_only_the_dropped_point() {
    let influx = Influxd::start().await;
    influx.create_db("city").await;
    // `v` is a float in this shard from now on; a string `v` is a field type conflict.
    let seed = support::http()
        .post(format!("{}/write?db=city&precision=ns", influx.url()))
        .body(format!("m,sensor=seed v=1 {T0}"))
        .send()
        .await
        .expect("seed write");
    assert_eq!(seed.status().as_u16(), 204);
    let mut rig = Rig::start(&influx.url(), "");
    let bad = format!("m,sensor=bad v=\"text\" {}", T0 + 7_000_000_000);
    let mut all = Vec::new();
    // A whole batch of conflicting points too (a schema change): influxd says `dropped=16`
    // for it, so it goes aside without a request per point.
    let all_bad: Vec<String> = (0..16)
        .map(|i| format!("m,sensor=allbad{i} v=\"t\" {}", T0 + i * 1_000_000_000))
        .collect();
    for b in 0..4 {
        let mut batch = lines(&format!("b{b}s"), 25, 0);
        if b == 2 {
            batch.insert(12, bad.clone());
        }
        all.extend(batch.iter().cloned());
        rig.send(&batch).await;
        if b == 0 {
            rig.send(&all_bad).await;
        }
    }
    rig.wait_sent(100).await;
    rig.finish().await;
    let (dead, comments) = rig.dead();
    let mut want_dead = all_bad.clone();
    want_dead.push(bad);
    assert_eq!(dead, want_dead, "{comments:?}");
    assert!(
        comments.iter().all(|c| c.contains("field type conflict")),
        "{comments:?}"
    );
    assert_eq!(rig.dead_count(DeadReason::BadData), 17);
    let m = &rig.metrics;
    let requests =
        m.sink.uplink_requests_ok.load(Relaxed) + m.sink.uplink_requests_failed.load(Relaxed);
    assert!(requests <= 40, "{requests} requests for 117 points, 17 bad");
    // Runs of points influxd reported wholly dropped went aside as one entry each.
    assert!(comments.len() < 17, "{comments:?}");
    let rows = influx.query_rows("city", "SELECT * FROM m").await;
    let got: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["sensor"].as_str().unwrap_or("").to_owned(),
                r["v"].to_string(),
            )
        })
        .collect();
    let mut want: BTreeSet<(String, String)> = all
        .iter()
        .filter(|l| !l.contains("sensor=bad") && !l.contains("sensor=allbad"))
        .map(|l| {
            let sensor = l["m,sensor=".len()..].split(' ').next().unwrap_or("");
            let v = l
                .split(" v=")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap_or("");
            (sensor.to_owned(), v.to_owned())
        })
        .collect();
    want.insert(("seed".into(), "1".into()));
    assert_eq!(rows.len(), want.len(), "no point twice, none missing");
    assert_eq!(got, want);
}
