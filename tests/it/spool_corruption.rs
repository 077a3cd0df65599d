//! Spool corruption beyond a torn write: heavy damage in the middle of a segment, flips
//! spread over a whole segment, and damage across the last two records. Each must be told
//! apart from a torn tail: an ERROR with the records and points lost, the counter
//! `citysense_spool_dropped_points_total{reason="corrupt"}`, and every intact record after
//! the damage recovered and delivered to a real VictoriaMetrics.

use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use citysense::spool::{Recovery, Spool, SpoolOptions};
use support::citysensed::scrape;
use support::config::Config;
use support::{free_port, now_ms, wait_until, Citysensed, Victoria};

const BATCHES: u64 = 10;
const POINTS: u32 = 80;
const HEADER: usize = 40;

/// Batch `b` (1-based, = its id): `POINTS` points `spooltest,batch=b,point=p v=b`, stamped
/// `b` minutes before now.
fn payload(b: u64, now_ns: i64) -> String {
    let ts = now_ns - (BATCHES + 1 - b) as i64 * 60_000_000_000;
    (0..POINTS)
        .map(|p| format!("spooltest,batch={b},point={p} v={b} {ts}\n"))
        .collect()
}

/// A spool of `BATCHES` batches in one segment; returns the segment and each record's
/// (offset, payload length).
fn build(dir: &Path) -> (PathBuf, Vec<(usize, usize)>) {
    let now_ns = now_ms() * 1_000_000;
    let (mut s, _) = Spool::open(SpoolOptions::new(dir)).unwrap();
    let mut records = Vec::new();
    let mut at = 0;
    for b in 1..=BATCHES {
        let p = payload(b, now_ns);
        let ts = now_ns;
        assert_eq!(s.append(p.as_bytes(), POINTS, ts, ts).unwrap().id, b);
        records.push((at, p.len()));
        at += HEADER + p.len();
    }
    drop(s);
    let seg = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("one segment");
    assert_eq!(std::fs::metadata(&seg).unwrap().len() as usize, at);
    (seg, records)
}

/// Inverts the bytes at `positions` of `file`.
fn flip(file: &Path, positions: impl IntoIterator<Item = usize>) {
    let mut bytes = std::fs::read(file).unwrap();
    for at in positions {
        bytes[at] ^= 0xFF;
    }
    std::fs::write(file, bytes).unwrap();
}

/// Opens a copy of `dir` (the original stays damaged for the daemon).
fn recover_copy(dir: &Path) -> Recovery {
    let copy = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.path().join(e.file_name())).unwrap();
    }
    Spool::open(SpoolOptions::new(copy.path())).unwrap().1
}

#[test]
fn flips_spread_over_a_whole_segment_are_corruption_not_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let (seg, records) = build(tmp.path());
    // 12 flipped payload bytes in every record: 120 in all, no valid record is left.
    let at = records
        .iter()
        .flat_map(|&(off, len)| (0..12).map(move |i| off + HEADER + len / 2 + i * 3));
    flip(&seg, at);
    let rec = recover_copy(tmp.path());
    assert_eq!(rec.torn_tail_bytes, 0, "{rec:?}");
    assert_eq!(
        (rec.records, rec.corrupt_records, rec.corrupt_points),
        (0, BATCHES, BATCHES * u64::from(POINTS)),
        "{rec:?}"
    );
}

#[test]
fn damage_across_the_last_two_records_is_corruption_not_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let (seg, records) = build(tmp.path());
    // The end of batch 9's payload and all of batch 10's header: 120 bytes.
    let (off10, _) = records[9];
    flip(&seg, off10 - 80..off10 + HEADER);
    let rec = recover_copy(tmp.path());
    assert_eq!(rec.torn_tail_bytes, 0, "{rec:?}");
    assert_eq!(
        (rec.records, rec.corrupt_records, rec.corrupt_points),
        (8, 2, 2 * u64::from(POINTS)),
        "{rec:?}"
    );
}

fn config(store: &str, spool: &Path, metrics_port: u16) -> String {
    Config::new("gw-corrupt")
        .section("[simulator]\nair_sensors = 1\ncounters = 0\ninterval_ms = 60000")
        .section("[clock]\nsync = \"assume\"")
        .output_v2(store)
        .spool_dir(spool)
        .fsync(true)
        .metrics(&format!("127.0.0.1:{metrics_port}"))
        .to_toml()
}

/// `batch` label values of every `spooltest_v` sample in the store, with the count of samples.
async fn batches_in_store(vm: &Victoria) -> (BTreeSet<u64>, usize) {
    let series = vm.export("spooltest_v").await;
    let samples = series.iter().map(|s| s.values.len()).sum();
    let batches = series
        .iter()
        .map(|s| s.metric["batch"].parse().unwrap())
        .collect();
    (batches, samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_middle_damage_is_an_error_counted_and_the_rest_is_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let (seg, records) = build(&spool);
    // 150 bytes from the end of batch 4's payload through batch 5's header into its payload.
    let (off5, _) = records[4];
    flip(&seg, off5 - 60..off5 + 90);
    let rec = recover_copy(&spool);
    assert_eq!(
        (rec.records, rec.corrupt_records, rec.corrupt_points),
        (8, 2, 160),
        "{rec:?}"
    );

    let vm = Victoria::start().await;
    let port = free_port();
    let mut d = Citysensed::spawn(&config(&vm.write_url(), &spool, port), tmp.path(), "info");
    wait_until(
        Duration::from_secs(30),
        "8 intact batches delivered",
        || {
            let dir = spool.clone();
            async move { Spool::inspect(&dir).is_ok_and(|s| s.acked_id >= BATCHES) }
        },
    )
    .await;
    let m = scrape(port).await;
    assert_eq!(
        m.get("citysense_spool_dropped_points_total{reason=\"corrupt\"}"),
        Some(&160.0),
        "{m:?}"
    );
    assert_eq!(m.get("citysense_spool_corrupt_records_total"), Some(&2.0));
    let log = d.terminate(Duration::from_secs(15)).await;
    let error = log
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("corrupt spool records skipped"))
        .unwrap_or_else(|| panic!("no ERROR about the corruption:\n{log}"));
    assert!(
        error.contains("records=2") && error.contains("points=160"),
        "{error}"
    );
    let (batches, samples) = batches_in_store(&vm).await;
    let want: BTreeSet<u64> = [1, 2, 3, 6, 7, 8, 9, 10].into();
    assert_eq!(batches, want);
    assert_eq!(
        samples,
        8 * POINTS as usize,
        "every intact point exactly once"
    );
}
