//! The spool inside the whole daemon: the real `citysensed` binary SIGKILLed at random moments
//! during heavy writes (every batch committed before a kill reaches VictoriaMetrics later),
//! the size bound with the store down (never exceeded, drops counted exactly), and
//! `citysensed spool inspect`.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use citysense::line_protocol::{parse_lines, FieldValue};
use citysense::service::spool_drops::SpoolDrop;
use citysense::spool::{Spool, SpoolOptions};
use support::config::Config;
use support::{free_port, wait_until, Citysensed, Daemon, Victoria};

/// 200 simulated air sensors (600 series) read every 50 ms, 1 s windows: ~100 kB per window.
fn heavy_config(store_url: &str, spool: &Path) -> String {
    Config::new("gw-kill")
        .window(1)
        .grace(0)
        .simulator(200, 0, 50)
        .output_v2(store_url)
        .output_line("max_backoff_secs = 1")
        .spool_dir(spool)
        .fsync(true)
        .assume_clock_synced()
        .to_toml()
}

/// The batches a spool directory holds, read from a copy (the original is left exactly as
/// the killed daemon left it, torn tail included, for the next run to recover).
fn committed(spool: &Path, scratch: &Path) -> BTreeMap<u64, Vec<u8>> {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).unwrap();
    for e in std::fs::read_dir(spool).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "lock" {
            std::fs::copy(e.path(), scratch.join(e.file_name())).unwrap();
        }
    }
    let cfg = SpoolOptions {
        fsync: false,
        ..SpoolOptions::new(scratch)
    };
    let (mut s, rec) = Spool::open(cfg).expect("the spool opens after a kill");
    assert_eq!(rec.corrupt_records, 0, "a kill only tears the tail");
    let batches = s.peek_many(usize::MAX).unwrap();
    batches.into_iter().map(|b| (b.id, b.payload)).collect()
}

/// Ids the daemon logged as durably spooled (`batch spooled id=N`, after the fdatasync).
fn logged_ids(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.split("batch spooled id=").nth(1))
        .map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().expect("id")
        })
        .collect()
}

type StoreKey = (String, Vec<(String, String)>, i64);

/// Everything VictoriaMetrics holds, keyed by name, labels and ms.
async fn store_contents(vm: &Victoria) -> BTreeMap<StoreKey, f64> {
    let mut store = BTreeMap::new();
    for s in vm.export("{__name__=~\".+\"}").await {
        let mut labels: Vec<(String, String)> = s.metric.clone().into_iter().collect();
        labels.retain(|(k, _)| k != "__name__");
        for (t, v) in s.timestamps.iter().zip(&s.values) {
            store.insert((s.metric["__name__"].clone(), labels.clone(), *t), *v);
        }
    }
    store
}

/// Fields of `batches` missing from `store` or with another value, described (none = all in).
fn not_in_store(store: &BTreeMap<StoreKey, f64>, batches: &BTreeMap<u64, Vec<u8>>) -> Vec<String> {
    let mut bad = Vec::new();
    for (id, payload) in batches {
        let text = std::str::from_utf8(payload).expect("utf-8 batch");
        for point in parse_lines(text) {
            let p = point.unwrap_or_else(|e| panic!("batch {id}: {e:?}"));
            let mut tags = p.tags.clone();
            tags.sort();
            let ts_ms = p.ts.expect("timestamped") / 1_000_000;
            for (field, value) in &p.fields {
                let want = match value {
                    FieldValue::Float(f) => *f,
                    FieldValue::Int(i) => *i as f64,
                    FieldValue::UInt(u) => *u as f64,
                    FieldValue::Bool(b) => f64::from(u8::from(*b)),
                    // VictoriaMetrics keeps no string values (`eaqi_pollutant` is stored as 0).
                    FieldValue::Str(_) => continue,
                };
                let key = (format!("{}_{field}", p.measurement), tags.clone(), ts_ms);
                match store.get(&key) {
                    Some(got) if (got - want).abs() <= want.abs() * 1e-9 => {}
                    got => bad.push(format!(
                        "batch {id} {key:?}: store has {got:?}, want {want}"
                    )),
                }
            }
        }
    }
    bad
}

/// Every field of every point in `batches` is in the store with its value. Exports again a
/// few times before failing: a just-acknowledged write may take a moment to be searchable.
async fn assert_in_store(vm: &Victoria, batches: &BTreeMap<u64, Vec<u8>>) {
    let mut bad = Vec::new();
    for _ in 0..3 {
        let store = store_contents(vm).await;
        assert!(!store.is_empty(), "nothing in the store");
        bad = not_in_store(&store, batches);
        if bad.is_empty() {
            return;
        }
        eprintln!(
            "{} fields not (yet) in the store, e.g. {:?}; exporting again",
            bad.len(),
            bad[0]
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!(
        "{} fields not in the store, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loop_loses_no_committed_window() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let scratch = tmp.path().join("copy");
    // The store is down for the whole kill loop: everything committed stays in the spool.
    let down = format!("http://127.0.0.1:{}", free_port());
    let mut recorded: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut runs_that_spooled = 0;
    for round in 0..60 {
        let mut d = Citysensed::spawn(
            &heavy_config(&down, &spool),
            tmp.path(),
            "info,citysense=debug",
        );
        // Long enough that most runs get past start-up to a window close even on a loaded
        // machine (a window closes once a second); short enough to kill mid-write often.
        std::thread::sleep(Duration::from_millis(fastrand::u64(200..1200)));
        assert!(d.alive(), "round {round}: daemon died:\n{}", d.log());
        let log = d.kill();
        assert!(!log.contains("ERROR"), "round {round}:\n{log}");
        let now = committed(&spool, &scratch);
        for (id, payload) in &recorded {
            assert_eq!(
                now.get(id),
                Some(payload),
                "round {round}: batch {id} changed or vanished"
            );
        }
        let new_ids = logged_ids(&log);
        for id in &new_ids {
            assert!(
                now.contains_key(id),
                "round {round}: batch {id} was confirmed, then lost"
            );
            assert!(!recorded.contains_key(id), "round {round}: id {id} reused");
        }
        runs_that_spooled += usize::from(!new_ids.is_empty());
        recorded = now;
    }
    assert!(
        runs_that_spooled >= 8,
        "only {runs_that_spooled} runs closed a window"
    );

    // Final clean run with the store up: the backlog drains.
    let vm = Victoria::start().await;
    let mut d = Citysensed::spawn(&heavy_config(&vm.write_url(), &spool), tmp.path(), "info");
    let last = *recorded.keys().last().expect("batches were committed");
    let dir = spool.clone();
    wait_until(Duration::from_secs(30), "backlog acknowledged", || {
        let acked = Spool::inspect(&dir).map(|s| s.acked_id).unwrap_or(0);
        async move { acked >= last }
    })
    .await;
    let log = d.terminate(Duration::from_secs(15)).await;
    assert!(!log.contains("ERROR"), "{log}");
    assert_in_store(&vm, &recorded).await;
}

/// 600 simulated sensors every 500 ms: ~300 kB per 1 s window, so 1 MiB fills in seconds.
fn bound_config(store_url: &str) -> String {
    Config::new("gw-bound")
        .window(1)
        .grace(0)
        .simulator(600, 0, 500)
        .output_v2(store_url)
        .fsync(true)
        .spool_line("max_bytes = 1048576")
        .to_toml()
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_holds_and_drops_are_counted_exactly() {
    let down = format!("http://127.0.0.1:{}", free_port());
    let mut d = Daemon::start(&bound_config(&down));
    // Sample the directory's size all along, from a thread of its own.
    let (stop, max_seen, samples) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let sampler = {
        let (stop, max_seen, samples, dir) = (
            stop.clone(),
            max_seen.clone(),
            samples.clone(),
            d.spool_dir.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                max_seen.fetch_max(dir_bytes(&dir), Relaxed);
                samples.fetch_add(1, Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let m = d.metrics.clone();
    wait_until(Duration::from_secs(20), "two windows dropped", || {
        let dropped = m.sink.spool_dropped.get(SpoolDrop::Full);
        async move { dropped >= 2 * 600 }
    })
    .await;
    d.stop().await;
    stop.store(true, Relaxed);
    sampler.join().unwrap();

    let max = max_seen.load(Relaxed);
    assert!(max <= 1 << 20, "spool reached {max} bytes on disk");
    assert!(max > (1 << 20) / 2, "spool was filled: {max}");
    assert!(samples.load(Relaxed) > 100);
    let left = Spool::inspect(&d.spool_dir).unwrap();
    let emitted = m.pipeline.points_emitted.load(Relaxed);
    let dropped = m.sink.spool_dropped.get(SpoolDrop::Full);
    assert_eq!(dropped, m.sink.spool_dropped.total(), "no other reason");
    assert_eq!(m.sink.uplink_points_sent.load(Relaxed), 0);
    assert_eq!(m.sink.spool_errors.load(Relaxed), 0);
    assert_eq!(dropped, emitted - left.points, "appended - spooled - sent");
    let line = format!("citysense_spool_dropped_points_total{{reason=\"full\"}} {dropped}\n");
    assert!(m.render().contains(&line));
}

/// Runs `citysensed spool inspect --dir` and returns its output as key -> value.
fn inspect_cli(dir: &Path) -> BTreeMap<String, String> {
    let out = support::citysensed::command()
        .args(["spool", "inspect", "--dir"])
        .arg(dir)
        .output()
        .expect("run citysensed spool inspect");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn spool_inspect_prints_what_is_queued() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("spool");
    // 2024-05-01T12:00:00Z and one minute windows after it.
    let t0: i64 = 1_714_564_800_000_000_000;
    let minute = 60_000_000_000;
    let batches: [(u32, i64); 3] = [(2, t0), (3, t0 + minute), (4, t0 + 2 * minute)];
    let mut bytes = 0;
    {
        let (mut s, _) = Spool::open(SpoolOptions::new(&dir)).unwrap();
        for (points, ts) in batches {
            let payload: String = (0..points)
                .map(|i| format!("m,sensor=s{i} v=1 {ts}\n"))
                .collect();
            bytes += 40 + payload.len();
            s.append(payload.as_bytes(), points, ts, ts).unwrap();
        }
    }
    let got = inspect_cli(&dir);
    assert_eq!(got["batches"], "3");
    assert_eq!(got["points"], "9");
    assert_eq!(got["bytes"], bytes.to_string());
    assert_eq!(got["oldest"], "2024-05-01T12:00:00.000Z");
    assert_eq!(got["newest"], "2024-05-01T12:02:00.000Z");

    // After the first batch is delivered, it no longer counts as queued.
    let (mut s, _) = Spool::open(SpoolOptions::new(&dir)).unwrap();
    s.ack(1).unwrap();
    drop(s);
    let got = inspect_cli(&dir);
    assert_eq!(
        (got["batches"].as_str(), got["points"].as_str()),
        ("2", "7")
    );
    assert_eq!(
        got["output default"],
        "acked 1, backlog 2 batches, 7 points, oldest 2024-05-01T12:01:00.000Z"
    );

    // Two outputs: each has its own backlog and oldest undelivered window.
    let names = ["default".to_string(), "partner".to_string()];
    let (mut s, _) = Spool::open_for(SpoolOptions::new(&dir), &names).unwrap();
    s.ack_for(0, 3).unwrap();
    drop(s);
    let got = inspect_cli(&dir);
    assert_eq!(
        got["output default"],
        "acked 3, backlog 0 batches, 0 points, oldest -"
    );
    assert!(
        got["output partner"].starts_with("acked 1, backlog 2 batches, 7 points"),
        "{got:?}"
    );

    // An empty spool says so.
    let empty = tmp.path().join("empty");
    drop(Spool::open(SpoolOptions::new(&empty)).unwrap());
    let got = inspect_cli(&empty);
    assert_eq!(got["batches"], "0");
    assert_eq!(got["oldest"], "-");
}

/// Builds a spool of `points` synthetic points (`fields` float fields each, 1000 points per
/// batch, the shape of one window close) and returns (batches, payload bytes).
fn build_backlog(dir: &Path, points: u64, fields: usize) -> (u64, u64) {
    let cfg = SpoolOptions {
        max_bytes: 8 << 30,
        fsync: false,
        ..SpoolOptions::new(dir)
    };
    let (mut s, _) = Spool::open(cfg).unwrap();
    let t0: i64 = 1_714_564_800_000_000_000;
    let (mut batches, mut bytes) = (0, 0);
    for b in 0..points.div_ceil(1000) {
        let ts = t0 + b as i64 * 60_000_000_000;
        let mut payload = String::new();
        for p in 0..1000.min(points - b * 1000) {
            payload.push_str(&format!(
                "air_quality,gateway=gw-bench,model=simulated,sensor=sim-air-{p} "
            ));
            for f in 0..fields {
                let sep = if f == 0 { "" } else { "," };
                payload.push_str(&format!(
                    "{sep}q{f}_mean={}.{}",
                    p % 300,
                    (b + f as u64) % 97
                ));
            }
            payload.push_str(&format!(" {ts}\n"));
        }
        let n = payload.lines().count() as u32;
        s.append(payload.as_bytes(), n, ts, ts).unwrap();
        batches += 1;
        bytes += payload.len() as u64;
    }
    (batches, bytes)
}

/// Replay rate to VictoriaMetrics on loopback (see BENCHMARKS.md):
/// `CITYSENSE_BENCH_POINTS=500000 CITYSENSE_BENCH_FIELDS=3 cargo test --release --test it -- --ignored spool_daemon::measure_replay --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn measure_replay_to_victoria() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let points = env("CITYSENSE_BENCH_POINTS", 500_000);
    let fields = env("CITYSENSE_BENCH_FIELDS", 3) as usize;
    let gzip = env("CITYSENSE_BENCH_GZIP", 1) == 1;
    let request = env("CITYSENSE_BENCH_REQUEST_BYTES", 1 << 20);
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let (batches, bytes) = build_backlog(&spool, points, fields);
    let vm = Victoria::start().await;
    let metrics_port = free_port();
    let cfg = Config::new("gw-bench")
        .simulator(1, 0, 1000)
        .output_v2(&vm.write_url())
        .output_line(&format!("gzip = {gzip}"))
        .output_line(&format!("max_request_bytes = {request}"))
        .spool_dir(&spool)
        .fsync(true)
        .metrics(&format!("127.0.0.1:{metrics_port}"))
        .assume_clock_synced()
        .to_toml();
    let started = std::time::Instant::now();
    let mut d = Citysensed::spawn(&cfg, tmp.path(), "info");
    wait_until(Duration::from_secs(600), "backlog sent", || async move {
        let Ok(resp) = support::http()
            .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .send()
            .await
        else {
            return false;
        };
        let text = resp.text().await.unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("citysense_uplink_points_sent_total{output=\"default\"} "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|sent| sent >= points)
    })
    .await;
    let secs = started.elapsed().as_secs_f64();
    let log = d.terminate(Duration::from_secs(15)).await;
    let inserted = vm.rows_inserted().await;
    println!(
        "replay: {points} points x {fields} fields in {batches} batches, {:.1} MB line protocol, \
         gzip={gzip}, max_request_bytes={request}: {secs:.2} s = {:.0} points/s, {:.0} samples/s, {:.1} MB/s; \
         VictoriaMetrics rows inserted {inserted}",
        bytes as f64 / 1e6,
        points as f64 / secs,
        (points * fields as u64) as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
    assert!(inserted >= points * fields as u64, "{log}");
}
