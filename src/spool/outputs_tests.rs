//! Tests of the per-output delivery positions: independent reads and acks, reclaiming only
//! what every output has, crash and reopen, the upgrade from the single ack file, removed
//! outputs, and per-output drop counts at the size bound.

use std::fs;

use super::*;

fn opts(dir: &Path, max_bytes: u64, segment_bytes: u64) -> SpoolOptions {
    SpoolOptions {
        dir: dir.to_path_buf(),
        max_bytes,
        segment_bytes,
        fsync: false,
    }
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

fn fill(spool: &mut Spool, n: u64) {
    for _ in 0..n {
        let id = spool.stats().next_id;
        let line = format!("m,sensor=s{id} v={id}i {id}\n").repeat(4);
        let ts = id as i64 * 1000;
        spool.append(line.as_bytes(), 4, ts, ts + 1).unwrap();
    }
}

fn ids_for(spool: &mut Spool, out: usize) -> Vec<u64> {
    let got = spool.peek_many_for(out, usize::MAX).unwrap();
    got.iter().map(|b| b.id).collect()
}

fn seg_bytes(dir: &Path) -> u64 {
    let segs = fs::read_dir(dir).unwrap().flatten();
    let segs = segs.filter(|e| e.file_name().to_string_lossy().ends_with(".seg"));
    segs.map(|e| e.metadata().unwrap().len()).sum()
}

#[test]
fn outputs_read_and_ack_independently_and_segments_go_when_all_acked() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open_for(opts(tmp.path(), 1 << 20, 256), &names(&["a", "b"])).unwrap();
    fill(&mut s, 10);
    assert_eq!(s.outputs(), ["a", "b"]);
    assert_eq!(ids_for(&mut s, 0), (1..=10).collect::<Vec<_>>());
    s.ack_for(0, 10).unwrap();
    assert!(ids_for(&mut s, 0).is_empty());
    assert_eq!(
        ids_for(&mut s, 1),
        (1..=10).collect::<Vec<_>>(),
        "b still has all"
    );
    let before = seg_bytes(tmp.path());
    assert!(before > 0, "nothing reclaimed while b lags");
    let st = s.output_stats();
    assert_eq!((st[0].batches, st[1].batches, st[1].points), (0, 10, 40));
    s.ack_for(1, 4).unwrap();
    assert_eq!(ids_for(&mut s, 1), (5..=10).collect::<Vec<_>>());
    assert!(
        seg_bytes(tmp.path()) < before,
        "segments both acked are reclaimed"
    );
    s.ack_for(1, 10).unwrap();
    assert_eq!(s.stats().batches, 0);
    assert!(seg_bytes(tmp.path()) < 256);
    // Reading goes on from the position (hint) and sees new batches.
    fill(&mut s, 2);
    assert_eq!(ids_for(&mut s, 0), [11, 12]);
    assert_eq!(ids_for(&mut s, 1), [11, 12]);
    assert!(matches!(s.ack_for(2, 1), Err(SpoolError::NoOutput(2))));
}

#[test]
fn positions_survive_a_kill_and_a_torn_position_resends_only_to_its_output() {
    let tmp = tempfile::tempdir().unwrap();
    let outs = names(&["a", "b"]);
    let (mut s, _) = Spool::open_for(opts(tmp.path(), 1 << 20, 1024), &outs).unwrap();
    fill(&mut s, 12);
    s.ack_for(0, 7).unwrap();
    s.ack_for(1, 3).unwrap();
    drop(s); // like kill -9: nothing is written at drop
    let (mut s, rec) = Spool::open_for(opts(tmp.path(), 1 << 20, 1024), &outs).unwrap();
    assert!(!rec.ack_reset);
    assert_eq!(ids_for(&mut s, 0), (8..=12).collect::<Vec<_>>());
    assert_eq!(ids_for(&mut s, 1), (4..=12).collect::<Vec<_>>());
    drop(s);
    fs::write(tmp.path().join("ack-b"), b"torn").unwrap();
    let (mut s, rec) = Spool::open_for(opts(tmp.path(), 1 << 20, 1024), &outs).unwrap();
    assert!(rec.ack_reset);
    assert_eq!(
        ids_for(&mut s, 0),
        (8..=12).collect::<Vec<_>>(),
        "a unaffected"
    );
    let b = ids_for(&mut s, 1);
    assert!(
        b.first().is_some_and(|&f| f <= 4) && b.last() == Some(&12),
        "{b:?}"
    );
    assert_eq!(s.stats().next_id, 13);
}

#[test]
fn upgrade_from_the_single_ack_file_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open(opts(tmp.path(), 1 << 20, 1024)).unwrap();
    fill(&mut s, 10);
    s.ack(4).unwrap();
    drop(s);
    // Today's layout: one `ack` file, no `ack-*`.
    assert!(tmp.path().join("ack").exists());
    let outs = names(&["default", "partner"]);
    let (mut s, _) = Spool::open_for(opts(tmp.path(), 1 << 20, 1024), &outs).unwrap();
    assert_eq!(ids_for(&mut s, 0), (5..=10).collect::<Vec<_>>());
    assert_eq!(
        ids_for(&mut s, 1),
        (5..=10).collect::<Vec<_>>(),
        "new output: oldest retained"
    );
    assert!(tmp.path().join("ack-partner").exists());
    s.ack_for(0, 6).unwrap();
    drop(s);
    // Renamed: `default` is forgotten, `store` starts at the oldest retained position.
    let (mut s, _) = Spool::open_for(
        opts(tmp.path(), 1 << 20, 1024),
        &names(&["store", "partner"]),
    )
    .unwrap();
    assert!(!tmp.path().join("ack").exists());
    assert_eq!(ids_for(&mut s, 0), (5..=10).collect::<Vec<_>>());
}

#[test]
fn a_removed_output_no_longer_holds_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open_for(opts(tmp.path(), 1 << 20, 512), &names(&["a", "b"])).unwrap();
    fill(&mut s, 20);
    s.ack_for(0, 20).unwrap();
    assert!(seg_bytes(tmp.path()) > 2048);
    assert_eq!(Spool::inspect_outputs(tmp.path()).unwrap()[1].batches, 20);
    drop(s);
    let (mut s, rec) = Spool::open_for(opts(tmp.path(), 1 << 20, 512), &names(&["a"])).unwrap();
    assert_eq!(rec.records, 0);
    assert!(!tmp.path().join("ack-b").exists());
    assert!(ids_for(&mut s, 0).is_empty());
    assert!(seg_bytes(tmp.path()) <= 512, "b's backlog is reclaimed");
    // A new output now starts at a's position: nothing retained to send.
    drop(s);
    let (mut s, _) = Spool::open_for(opts(tmp.path(), 1 << 20, 512), &names(&["a", "c"])).unwrap();
    assert!(ids_for(&mut s, 1).is_empty());
}

#[test]
fn the_bound_drops_for_all_and_each_output_counts_its_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut s, _) =
        Spool::open_for(opts(tmp.path(), 16 * 1024, 1024), &names(&["fast", "down"])).unwrap();
    for _ in 0..200 {
        fill(&mut s, 1);
        let last = s.stats().next_id - 1;
        s.ack_for(0, last).unwrap();
    }
    let st = s.output_stats();
    assert_eq!(
        (st[0].dropped_batches, st[0].batches),
        (0, 0),
        "fast lost nothing"
    );
    assert!(st[1].dropped_batches > 0);
    assert_eq!(st[1].dropped_batches + st[1].batches, 200, "{st:?}");
    assert_eq!(st[1].dropped_points, st[1].dropped_batches * 4);
    let seen = Spool::inspect_outputs(tmp.path()).unwrap();
    let names: Vec<&str> = seen.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["down", "fast"]);
    assert_eq!((seen[0].batches, seen[0].acked_id), (st[1].batches, 0));
    assert_eq!(seen[0].oldest_ts, st[1].oldest_ts);
    assert!(seg_bytes(tmp.path()) + 16 <= 16 * 1024);
}

#[test]
fn a_new_output_starts_at_the_oldest_retained_position() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open_for(opts(tmp.path(), 1 << 20, 1024), &names(&["a", "b"])).unwrap();
    fill(&mut s, 10);
    s.ack_for(0, 8).unwrap();
    s.ack_for(1, 3).unwrap();
    drop(s);
    let (mut s, _) =
        Spool::open_for(opts(tmp.path(), 1 << 20, 1024), &names(&["a", "b", "c"])).unwrap();
    assert_eq!(ids_for(&mut s, 2), (4..=10).collect::<Vec<_>>());
    assert_eq!(s.output_stats()[2].acked_id, 3);
}
