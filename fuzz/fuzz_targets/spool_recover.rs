//! Spool recovery over arbitrary bytes, in two modes picked by bit 0 of the first byte.
//!
//! - Raw: the input becomes one or two segment files (and an ack file with a valid checksum
//!   and an id from the input); the spool is inspected, opened, drained, acked, appended to.
//! - Damage: batches from the input are appended by the spool itself, then its files are
//!   damaged (bytes flipped, files cut) as the input says, then it is reopened. Payloads are
//!   UTF-8 like the line protocol the daemon spools. Property:
//!   every batch returned was appended with that id and payload, ids rise, none is acked;
//!   without damage every unacked batch comes back.
#![no_main]

use std::fs;
use std::path::Path;

use citysense::spool::{Spool, SpoolOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // tmpfs when there is one: the run is file I/O bound.
    let shm = std::path::Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let Ok(dir) = tempfile::tempdir_in(base) else {
        return;
    };
    let cfg = SpoolOptions {
        dir: dir.path().to_path_buf(),
        max_bytes: 1 << 20,
        segment_bytes: [256, 4096, 1 << 18][usize::from(mode >> 6) % 3],
        fsync: false,
    };
    if mode & 1 == 0 {
        raw(mode, rest, cfg);
    } else {
        damage(rest, cfg);
    }
});

const FIRST_IDS: [u64; 4] = [0, 1, 7, u64::MAX];

fn segment_name(dir: &Path, id: u64) -> std::path::PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn raw(mode: u8, rest: &[u8], cfg: SpoolOptions) {
    let dir = cfg.dir.clone();
    let mut rest = rest;
    if mode & 2 != 0 {
        let Some((id, tail)) = rest.split_first_chunk::<8>() else {
            return;
        };
        let mut ack = Vec::with_capacity(16);
        ack.extend_from_slice(&0xF5C1_ACC0u32.to_le_bytes());
        ack.extend_from_slice(&crc32c::crc32c(id).to_le_bytes());
        ack.extend_from_slice(id);
        fs::write(dir.join("ack"), ack).expect("write ack");
        rest = tail;
    }
    let first = FIRST_IDS[usize::from(mode >> 2) % 4];
    if mode & 16 != 0 {
        let (a, b) = rest.split_at(rest.len() / 2);
        fs::write(segment_name(&dir, first), a).expect("write segment");
        fs::write(segment_name(&dir, first.saturating_add(3)), b).expect("write segment");
    } else {
        fs::write(segment_name(&dir, first), rest).expect("write segment");
    }
    let _ = Spool::inspect(&dir);
    let Ok((mut spool, _)) = Spool::open(cfg) else {
        return;
    };
    drain(&mut spool);
    let _ = spool.append(b"m f=1i 1\n", 1, 1, 1);
    let _ = spool.peek();
}

/// Reads and acks everything; checks ids rise.
fn drain(spool: &mut Spool) {
    let mut last = spool.stats().acked_id;
    for _ in 0..64 {
        let Ok(Some(batch)) = spool.peek() else {
            return;
        };
        assert!(batch.id > last, "id {} after {last}", batch.id);
        last = batch.id;
        if spool.ack(batch.id).is_err() {
            return;
        }
    }
}

fn damage(rest: &[u8], cfg: SpoolOptions) {
    let dir = cfg.dir.clone();
    let (Some((&n, mut rest)), Ok((mut spool, _))) = (rest.split_first(), Spool::open(cfg.clone()))
    else {
        return;
    };
    let mut appended = Vec::new();
    for _ in 0..n % 12 {
        let Some((&len, tail)) = rest.split_first() else {
            break;
        };
        let (payload, tail) = tail.split_at(usize::from(len).min(tail.len()));
        // Payloads are line protocol, so UTF-8: the record magic (bytes E5 75 C1 F5) cannot
        // occur inside one, which is what lets resync trust a magic it finds. Binary
        // payloads can embed a whole valid record and break the property on purpose.
        let payload = String::from_utf8_lossy(payload).into_owned().into_bytes();
        let id = spool.append(&payload, 1, 0, 0).expect("append").id;
        appended.push((id, payload));
        rest = tail;
    }
    let acked = match rest.split_first() {
        Some((&a, tail)) if usize::from(a) < appended.len() => {
            rest = tail;
            let id = appended[usize::from(a)].0;
            spool.ack(id).expect("ack");
            id
        }
        _ => 0,
    };
    drop(spool);
    let damaged = apply_damage(&dir, rest);
    let Ok((mut spool, _)) = Spool::open(cfg) else {
        return;
    };
    let got = spool.peek_many(usize::MAX).expect("peek");
    // A damaged ack file resets the ack to 0: acked batches are then sent again.
    let mut last = if damaged { 0 } else { acked };
    for b in &got {
        assert!(b.id > last, "id {} after {last}", b.id);
        last = b.id;
        let sent = appended.iter().find(|(id, _)| *id == b.id);
        assert_eq!(sent.map(|(_, p)| p), Some(&b.payload), "batch {}", b.id);
    }
    if !damaged {
        let want: Vec<u64> = (appended.iter().map(|(id, _)| *id))
            .filter(|&id| id > acked)
            .collect();
        let have: Vec<u64> = got.iter().map(|b| b.id).collect();
        assert_eq!(have, want);
    }
    drain(&mut spool);
}

/// Damage from 4-byte records (file, offset lo, offset hi, xor): xor 0 cuts the file at
/// the offset, anything else flips those bits of one byte. Returns whether anything changed.
fn apply_damage(dir: &Path, rest: &[u8]) -> bool {
    let mut files: Vec<_> = fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n != "lock"))
        .collect();
    files.sort();
    let mut changed = false;
    for d in rest.chunks_exact(4) {
        let Some(path) = files.get(usize::from(d[0]) % files.len().max(1)) else {
            break;
        };
        let mut bytes = fs::read(path).expect("read file");
        let at = usize::from(u16::from_le_bytes([d[1], d[2]]));
        if d[3] == 0 && at < bytes.len() {
            bytes.truncate(at);
        } else if let Some(b) = bytes.get_mut(at) {
            *b ^= d[3];
        } else {
            continue;
        }
        fs::write(path, bytes).expect("write file");
        changed = true;
    }
    changed
}
