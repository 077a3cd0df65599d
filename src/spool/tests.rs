//! Tests of the spool: round trips, recovery from torn and corrupt records, the size
//! bound and locking. The kill -9 loop lives in `tests/it/spool_recovery.rs`.

use super::*;

fn config(dir: &Path, max_bytes: u64, segment_bytes: u64) -> SpoolOptions {
    SpoolOptions {
        dir: dir.to_path_buf(),
        max_bytes,
        segment_bytes,
        fsync: false,
    }
}

/// Deterministic payload for `id`: line protocol whose length varies with the id.
fn payload(id: u64, len: usize) -> Vec<u8> {
    let line = format!("m,sensor=s{id} v={id}i {id}\n");
    line.bytes().cycle().take(len.max(line.len())).collect()
}

fn append_n(spool: &mut Spool, n: u64, len: usize) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let id = spool.stats().next_id;
            let ts = id as i64 * 1000;
            let got = spool
                .append(&payload(id, len + i as usize * 7), 2, ts, ts + 1)
                .unwrap();
            assert_eq!(got.id, id);
            got.id
        })
        .collect()
}

fn ids(batches: &[Batch]) -> Vec<u64> {
    batches.iter().map(|b| b.id).collect()
}

fn all(spool: &mut Spool) -> Vec<Batch> {
    spool.peek_many(usize::MAX).unwrap()
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn seg_files(dir: &Path) -> Vec<PathBuf> {
    segment::list(dir)
        .unwrap()
        .into_iter()
        .map(|id| segment::path(dir, id))
        .collect()
}

fn assert_payloads(batches: &[Batch]) {
    for b in batches {
        assert_eq!(
            b.payload,
            payload(b.id, b.payload.len()),
            "payload of {}",
            b.id
        );
    }
}

#[test]
fn append_peek_ack_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut spool, rec) = Spool::open(config(tmp.path(), 1 << 20, 1 << 16)).unwrap();
    assert_eq!(rec, Recovery::default());
    assert_eq!(spool.peek().unwrap(), None);
    let appended = append_n(&mut spool, 3, 100);
    let first = spool.peek().unwrap().unwrap();
    assert_eq!(first.id, appended[0]);
    assert_eq!((first.points, first.min_ts, first.max_ts), (2, 1000, 1001));
    assert_eq!(
        spool.peek().unwrap(),
        Some(first.clone()),
        "peek is repeatable"
    );
    spool.ack(first.id).unwrap();
    assert_eq!(spool.peek().unwrap().map(|b| b.id), Some(appended[1]));
    let rest = all(&mut spool);
    assert_eq!(ids(&rest), appended[1..]);
    assert_payloads(&rest);
    assert_eq!(spool.stats().batches, 2);
    assert_eq!(spool.stats().points, 4);
    spool.ack(appended[2]).unwrap();
    assert_eq!(spool.peek().unwrap(), None);
    assert_eq!(
        seg_files(tmp.path()).len(),
        1,
        "the active segment is kept until full"
    );
    let s = spool.stats();
    assert_eq!((s.batches, s.acked_id, s.next_id), (0, 3, 4));
    assert_eq!(s.bytes, dir_bytes(tmp.path()) - recover::ACK_LEN);
    assert_eq!(spool.append(b"z", 1, 0, 0).unwrap().id, 4);
    assert_eq!(
        spool.peek().unwrap().map(|b| b.payload),
        Some(b"z".to_vec())
    );
    assert_eq!(
        seg_files(tmp.path()).len(),
        1,
        "appended to the kept segment"
    );
}

#[test]
fn reopen_returns_exactly_unacked_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), 1 << 20, 2048);
    let (mut spool, _) = Spool::open(cfg.clone()).unwrap();
    let appended = append_n(&mut spool, 40, 300);
    assert!(
        seg_files(tmp.path()).len() > 3,
        "test needs several segments"
    );
    spool.ack(appended[12]).unwrap();
    drop(spool);
    let (mut spool, rec) = Spool::open(cfg).unwrap();
    let got = all(&mut spool);
    assert_eq!(ids(&got), appended[13..]);
    assert_payloads(&got);
    assert_eq!(rec.records, 27);
    assert_eq!(rec.points, 54);
    assert_eq!((rec.torn_tail_bytes, rec.corrupt_records), (0, 0));
    assert_eq!(spool.append(b"x", 1, 0, 0).unwrap().id, 41);
}

#[test]
fn ack_persists_and_ids_are_never_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), 1 << 20, 1024);
    let (mut spool, _) = Spool::open(cfg.clone()).unwrap();
    let appended = append_n(&mut spool, 10, 200);
    let batches = spool.peek_many(700).unwrap();
    assert!(batches.len() > 1 && batches.len() < 10);
    spool.ack(batches.last().unwrap().id).unwrap();
    drop(spool);
    let (mut spool, _) = Spool::open(cfg.clone()).unwrap();
    assert_eq!(spool.stats().acked_id, batches.last().unwrap().id);
    assert_eq!(
        spool.peek().unwrap().map(|b| b.id),
        Some(batches.len() as u64 + 1)
    );
    spool.ack(appended[9]).unwrap();
    assert!(
        seg_files(tmp.path()).len() <= 1,
        "acked full segments are deleted"
    );
    spool.ack(3).unwrap(); // an old ack is a no-op
    assert!(matches!(
        spool.ack(11),
        Err(SpoolError::AckBeyondEnd {
            id: 11,
            next_id: 11
        })
    ));
    drop(spool);
    let (mut spool, rec) = Spool::open(cfg).unwrap();
    assert_eq!((rec.records, spool.peek().unwrap()), (0, None));
    assert_eq!(
        spool.append(b"y", 1, 0, 0).unwrap().id,
        11,
        "ids continue after a full ack"
    );
}

/// Copies the spool files (not the lock) into a fresh directory.
fn copy_spool(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() != recover::LOCK_FILE {
            fs::copy(e.path(), to.path().join(e.file_name())).unwrap();
        }
    }
    to
}

fn torn_tail_at_every_offset(segment_bytes: u64) {
    let src = tempfile::tempdir().unwrap();
    let cfg = config(src.path(), 1 << 20, segment_bytes);
    let (mut spool, _) = Spool::open(cfg).unwrap();
    append_n(&mut spool, 5, 150);
    let last = all(&mut spool).pop().unwrap();
    drop(spool);
    let seg = seg_files(src.path()).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    let start = len - (HEADER_LEN + last.payload.len() as u64);
    for cut in start..len {
        let copy = copy_spool(src.path());
        let file = OpenOptions::new()
            .write(true)
            .open(copy.path().join(seg.file_name().unwrap()));
        file.unwrap().set_len(cut).unwrap();
        let (mut spool, rec) = Spool::open(config(copy.path(), 1 << 20, segment_bytes)).unwrap();
        assert_eq!(rec.torn_tail_bytes, cut - start, "cut at {cut}");
        assert_eq!((rec.records, rec.corrupt_records), (4, 0), "cut at {cut}");
        let got = all(&mut spool);
        assert_eq!(ids(&got), [1, 2, 3, 4]);
        assert_payloads(&got);
        assert_eq!(spool.append(&payload(5, 20), 1, 0, 0).unwrap().id, 5);
        drop(spool);
        let (mut spool, rec) = Spool::open(config(copy.path(), 1 << 20, segment_bytes)).unwrap();
        assert_eq!(
            (rec.records, rec.torn_tail_bytes, rec.corrupt_records),
            (5, 0, 0)
        );
        assert_eq!(ids(&all(&mut spool)), [1, 2, 3, 4, 5]);
    }
}

#[test]
fn torn_last_record_in_a_shared_segment() {
    torn_tail_at_every_offset(1 << 16);
}

#[test]
fn torn_last_record_alone_in_its_segment() {
    torn_tail_at_every_offset(1);
}

#[test]
fn corrupt_middle_record_is_skipped_and_counted() {
    let src = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(config(src.path(), 1 << 20, 1 << 16)).unwrap();
    append_n(&mut spool, 5, 120);
    let batches = all(&mut spool);
    drop(spool);
    let seg = seg_files(src.path()).pop().unwrap();
    let third: u64 = batches[..2]
        .iter()
        .map(|b| HEADER_LEN + b.payload.len() as u64)
        .sum();
    // magic, length, crc, id, points, min_ts, payload start, payload end
    let third_len = HEADER_LEN + batches[2].payload.len() as u64;
    for at in [0, 5, 9, 13, 21, 25, 40, third_len - 1] {
        let copy = copy_spool(src.path());
        let path = copy.path().join(seg.file_name().unwrap());
        let mut bytes = fs::read(&path).unwrap();
        bytes[(third + at) as usize] ^= 0x5A;
        fs::write(&path, bytes).unwrap();
        let (mut spool, rec) = Spool::open(config(copy.path(), 1 << 20, 1 << 16)).unwrap();
        assert_eq!(
            (rec.corrupt_records, rec.torn_tail_bytes, rec.records),
            (1, 0, 4),
            "byte {at}"
        );
        let got = all(&mut spool);
        assert_eq!(ids(&got), [1, 2, 4, 5], "byte {at}");
        assert_payloads(&got);
    }
}

/// A damaged record followed by a valid one whose id claims a gap far larger than the damaged
/// bytes could hold (found by the spool_recover fuzz target: the gap once sized a Vec, and
/// opening the spool aborted with "capacity overflow"). The ids are then not a count: the
/// spool opens, counts the one damaged record, and serves the rest.
#[test]
fn an_id_gap_larger_than_the_damage_is_not_taken_as_a_count() {
    let src = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(config(src.path(), 1 << 20, 1 << 16)).unwrap();
    append_n(&mut spool, 2, 120);
    drop(spool);
    let seg = seg_files(src.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    // Damage the second record's header, then add a valid record with a huge id.
    let second = (HEADER_LEN + 120) as usize;
    bytes[second + 5] ^= 0x5A;
    let body = b"m f=1i 1\n".to_vec();
    let h = segment::RecordHeader {
        id: u64::MAX / 2,
        len: body.len() as u32,
        points: 1,
        min_ts: 1,
        max_ts: 1,
    };
    bytes.extend(segment::encode_header(&h, &body));
    bytes.extend(&body);
    fs::write(&seg, bytes).unwrap();
    let (mut spool, rec) = Spool::open(config(src.path(), 1 << 20, 1 << 16)).unwrap();
    assert_eq!(rec.corrupt_records, 1);
    assert_eq!(ids(&all(&mut spool)), [1, u64::MAX / 2]);
}

#[test]
fn corruption_after_open_is_skipped_at_the_head() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(config(tmp.path(), 1 << 20, 1 << 16)).unwrap();
    append_n(&mut spool, 3, 100);
    let seg = seg_files(tmp.path()).pop().unwrap();
    let file = OpenOptions::new().write(true).open(seg).unwrap();
    file.write_all_at(b"XX", HEADER_LEN + 10).unwrap();
    assert_eq!(spool.peek().unwrap().map(|b| b.id), Some(2));
    assert_eq!(spool.peek().unwrap().map(|b| b.id), Some(2));
    assert_eq!(spool.stats().corrupt_records, 1, "counted once");
    assert_eq!(spool.stats().corrupt_points, 2, "from the intact header");
}

#[test]
fn a_full_length_last_record_with_a_bad_crc_is_corruption_unless_acked() {
    let src = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(config(src.path(), 1 << 20, 1 << 16)).unwrap();
    append_n(&mut spool, 3, 100);
    drop(spool);
    let seg = seg_files(src.path()).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    let file = OpenOptions::new().write(true).open(&seg).unwrap();
    // The last payload byte: the record is all there, so no write was cut short.
    file.write_all_at(b"#", len - 1).unwrap();
    let copy = copy_spool(src.path());
    let (_, rec) = Spool::open(config(copy.path(), 1 << 20, 1 << 16)).unwrap();
    assert_eq!(
        (
            rec.records,
            rec.torn_tail_bytes,
            rec.corrupt_records,
            rec.corrupt_points
        ),
        (2, 0, 1, 2)
    );
    // Already delivered: damage to it loses nothing.
    let acked = copy_spool(src.path());
    recover::write_ack(acked.path(), 3, false).unwrap();
    let (_, rec) = Spool::open(config(acked.path(), 1 << 20, 1 << 16)).unwrap();
    assert_eq!(
        (rec.records, rec.corrupt_records, rec.corrupt_points),
        (0, 0, 0)
    );
}

#[test]
fn bound_is_kept_and_drops_add_up() {
    let tmp = tempfile::tempdir().unwrap();
    let max = 64 * 1024;
    let (mut spool, _) = Spool::open(config(tmp.path(), max, DEFAULT_SEGMENT_BYTES)).unwrap();
    let record = HEADER_LEN + 1024;
    let (mut dropped, mut dropped_points) = (0, 0);
    for i in 0..1000u32 {
        let got = spool
            .append(&payload(u64::from(i), 1024), i % 7, 0, 0)
            .unwrap();
        dropped += got.dropped_batches;
        dropped_points += got.dropped_points;
        assert!(dir_bytes(tmp.path()) <= max + record, "after append {i}");
    }
    assert!(dropped > 900, "the bound must have dropped most batches");
    let kept = all(&mut spool);
    assert_eq!(kept.len() as u64 + dropped, 1000);
    assert_eq!(kept.len() as u64, spool.stats().batches);
    let total_points: u64 = (0..1000u64).map(|i| i % 7).sum();
    let kept_points: u64 = kept.iter().map(|b| u64::from(b.points)).sum();
    assert_eq!(kept_points + dropped_points, total_points);
    assert_eq!(kept.last().map(|b| b.id), Some(1000), "the newest survive");
    assert!(
        ids(&kept).windows(2).all(|w| w[1] == w[0] + 1),
        "a contiguous newest run"
    );
    let too_big = vec![b'x'; max as usize];
    assert!(matches!(
        spool.append(&too_big, 1, 0, 0),
        Err(SpoolError::TooLarge { .. })
    ));
}

#[test]
fn reopening_with_a_smaller_bound_drops_oldest() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(config(tmp.path(), 1 << 20, 4096)).unwrap();
    append_n(&mut spool, 100, 1000);
    drop(spool);
    let (mut spool, rec) = Spool::open(config(tmp.path(), 32 * 1024, 4096)).unwrap();
    assert!(rec.dropped_batches > 0);
    assert_eq!(rec.dropped_batches + rec.records, 100);
    assert!(dir_bytes(tmp.path()) <= 32 * 1024);
    assert_eq!(all(&mut spool).last().map(|b| b.id), Some(100));
}

#[test]
fn second_open_is_locked_out() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(config(tmp.path(), 1 << 20, 4096)).unwrap();
    let second = Spool::open(config(tmp.path(), 1 << 20, 4096));
    assert!(matches!(second, Err(SpoolError::Locked { .. })));
    drop(spool);
    assert!(Spool::open(config(tmp.path(), 1 << 20, 4096)).is_ok());
}

#[test]
fn inspect_is_read_only_and_matches_stats() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(config(tmp.path(), 1 << 20, 2048)).unwrap();
    append_n(&mut spool, 12, 300);
    spool.ack(5).unwrap();
    let seg = seg_files(tmp.path()).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    // A record being written by the daemon right now looks like a torn tail.
    OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all_at(&[0xE5, 0x75], len)
        .unwrap();
    let seen = Spool::inspect(tmp.path()).unwrap();
    assert_eq!(
        fs::metadata(&seg).unwrap().len(),
        len + 2,
        "inspect must not truncate"
    );
    let own = spool.stats();
    assert_eq!(
        (seen.batches, seen.points, seen.acked_id, seen.next_id),
        (7, 14, 5, 13)
    );
    assert_eq!(
        (own.batches, own.points, own.newest_ts),
        (seen.batches, seen.points, seen.newest_ts)
    );
    assert_eq!(seen.newest_ts, Some(12_001));
    assert!(seen.oldest_ts.is_some_and(|t| t <= 6000));
}

#[test]
fn peek_many_honours_the_byte_budget_across_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(config(tmp.path(), 1 << 20, 300)).unwrap();
    for id in 1..=10 {
        spool.append(&payload(id, 100), 1, 0, 0).unwrap();
    }
    assert_eq!(ids(&spool.peek_many(0).unwrap()), [1]);
    assert_eq!(ids(&spool.peek_many(250).unwrap()), [1, 2]);
    assert_eq!(ids(&spool.peek_many(700).unwrap()), [1, 2, 3, 4, 5, 6, 7]);
    spool.ack(2).unwrap();
    assert_eq!(ids(&spool.peek_many(300).unwrap()), [3, 4, 5]);
}

#[test]
fn dead_letter_appends_comment_and_rotates() {
    let tmp = tempfile::tempdir().unwrap();
    let batch = |id, payload: &[u8]| Batch {
        id,
        points: 1,
        min_ts: 0,
        max_ts: 0,
        payload: payload.to_vec(),
    };
    dead_letter(tmp.path(), &batch(7, b"m v=1 1"), "HTTP 400:\nbad field").unwrap();
    let text = fs::read_to_string(tmp.path().join(DEAD_LETTER_FILE)).unwrap();
    assert_eq!(text, "# HTTP 400: bad field (batch 7, 1 points)\nm v=1 1\n");
    let big = vec![b'x'; (DEAD_LETTER_MAX_BYTES / 2 + 1) as usize];
    dead_letter(tmp.path(), &batch(8, &big), "a").unwrap();
    dead_letter(tmp.path(), &batch(9, &big), "b").unwrap();
    let old = fs::read_to_string(tmp.path().join(format!("{DEAD_LETTER_FILE}.1"))).unwrap();
    assert!(old.starts_with("# HTTP 400") && old.contains("(batch 8, 1 points)"));
    let new = fs::metadata(tmp.path().join(DEAD_LETTER_FILE))
        .unwrap()
        .len();
    assert!(new < DEAD_LETTER_MAX_BYTES);
}

#[test]
fn spool_is_send() {
    fn send<T: Send>() {}
    send::<Spool>();
    send::<SpoolError>();
}
