//! Spool crash safety through the public API: a child process appending with fsync is
//! killed with SIGKILL at random moments, and every append it confirmed must come back
//! in order after reopening. Also an opt-in measurement of append and replay speed.

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use citysense::spool::{Batch, Spool, SpoolOptions};

const CRASH_DIR_ENV: &str = "CITYSENSE_SPOOL_CRASH_DIR";

fn config(dir: &Path, fsync: bool) -> SpoolOptions {
    SpoolOptions {
        dir: dir.to_path_buf(),
        max_bytes: 64 << 20,
        segment_bytes: 16 * 1024,
        fsync,
    }
}

/// Deterministic payload for `id`, 40..3000 bytes, so a replayed batch can be checked.
fn payload(id: u64) -> Vec<u8> {
    let line = format!("m,sensor=s{id} v={id}i {id}\n");
    let len = (id % 3000).max(line.len() as u64) as usize;
    line.bytes().cycle().take(len).collect()
}

/// Child side of `kill_9_loses_nothing_confirmed`: appends forever and acks now and then,
/// printing each id after its append returned Ok and each ack before and after it is
/// made. Does nothing in a normal test run.
#[test]
#[ignore = "child process of kill_9_loses_nothing_confirmed"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
        return;
    };
    let (mut spool, _) = Spool::open(config(Path::new(&dir), true)).unwrap();
    let mut out = std::io::stdout().lock();
    for _ in 0..1_000_000 {
        let id = spool.stats().next_id;
        let got = spool.append(&payload(id), 1, 0, 0).unwrap();
        writeln!(out, "ok-id {}", got.id).unwrap();
        out.flush().unwrap();
        if id % 8 == 0 {
            let up_to = id - (id / 8) % 4;
            writeln!(out, "ack-try {up_to}").unwrap();
            out.flush().unwrap();
            spool.ack(up_to).unwrap();
            writeln!(out, "ack-ok {up_to}").unwrap();
            out.flush().unwrap();
        }
    }
}

/// What a killed child confirmed (complete lines only).
#[derive(Debug, Default)]
struct Confirmed {
    ids: Vec<u64>,
    ack_try: u64,
    ack_ok: u64,
}

/// Runs one child, kills it after `delay` (counted from its first confirmed append when
/// `after_first`, else from spawn, to also hit recovery), and parses its output.
fn run_child_and_kill(dir: &Path, delay: Duration, after_first: bool) -> Confirmed {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "spool_recovery::crash_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CRASH_DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    while after_first && stdout.read_line(&mut text).unwrap() > 0 && !text.contains("ok-id") {
        text.clear();
    }
    std::thread::sleep(delay);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    stdout.read_to_string(&mut text).unwrap();
    let mut seen = Confirmed::default();
    for line in text
        .split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
    {
        let Some((kind, n)) = line.split_once(' ') else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match kind {
            "ok-id" => seen.ids.push(n),
            "ack-try" => seen.ack_try = n,
            "ack-ok" => seen.ack_ok = n,
            _ => {}
        }
    }
    seen
}

#[test]
fn kill_9_loses_nothing_confirmed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut confirmed = Vec::<u64>::new();
    // Acks that surely persisted, and the highest that may have.
    let (mut acked, mut maybe_acked) = (0, 0);
    for round in 0..50 {
        let delay = Duration::from_millis(fastrand::u64(0..40));
        let new = run_child_and_kill(tmp.path(), delay, round % 4 != 0);
        assert!(new.ids.windows(2).all(|w| w[0] < w[1]), "round {round}");
        let max_seen = confirmed.last().copied().unwrap_or(0);
        assert!(
            new.ids.first().is_none_or(|&id| id > max_seen),
            "round {round}: id reused"
        );
        confirmed.extend(&new.ids);
        acked = acked.max(new.ack_ok);
        maybe_acked = maybe_acked.max(new.ack_try);

        let (mut spool, rec) = Spool::open(config(tmp.path(), true)).unwrap();
        assert_eq!(
            rec.corrupt_records, 0,
            "round {round}: a kill only tears the tail"
        );
        let ack = spool.stats().acked_id;
        assert!(
            ack >= acked && ack <= maybe_acked,
            "round {round}: ack {ack}"
        );
        let got = spool.peek_many(usize::MAX).unwrap();
        assert!(
            got.windows(2).all(|w| w[0].id < w[1].id),
            "round {round}: ids rise"
        );
        assert!(
            got.first().is_none_or(|b| b.id > ack),
            "round {round}: acked came back"
        );
        assert!(
            got.iter().all(|b| b.payload == payload(b.id)),
            "round {round}: payload"
        );
        let have: HashSet<u64> = got.iter().map(|b| b.id).collect();
        let lost: Vec<_> = confirmed
            .iter()
            .filter(|&&id| id > maybe_acked && !have.contains(&id))
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: confirmed but lost: {lost:?}"
        );
        // The uplink side: deliver a random prefix.
        if let Some(b) = got.get(fastrand::usize(0..=got.len())) {
            spool.ack(b.id).unwrap();
            (acked, maybe_acked) = (b.id, b.id);
        }
    }
    assert!(confirmed.len() > 100, "the children must have appended");
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// `cargo test --release --test it -- --ignored spool_recovery::measure --nocapture`
#[test]
#[ignore = "measurement; run on the target device"]
fn measure_append_and_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let batch = vec![b'x'; 10_000];
    let cfg = SpoolOptions {
        max_bytes: 1 << 30,
        segment_bytes: 4 << 20,
        ..config(tmp.path(), true)
    };
    let (mut spool, _) = Spool::open(cfg.clone()).unwrap();
    let n = 500u64;
    let t = Instant::now();
    for _ in 0..n {
        spool.append(&batch, 100, 0, 0).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!("append 10 kB + fdatasync: {:.0} batches/s", n as f64 / secs);
    let overhead = (dir_bytes(tmp.path()) - n * batch.len() as u64) as f64 / n as f64;
    println!("overhead: {overhead:.1} bytes/record (header + amortized ack file)");

    // Fill ~100 MB quickly (fsync off), then replay with acks fsynced as in production.
    let fill = 10_000u64;
    let (mut fast, _) = {
        drop(spool);
        Spool::open(SpoolOptions {
            fsync: false,
            ..cfg.clone()
        })
        .unwrap()
    };
    for _ in 0..fill {
        fast.append(&batch, 100, 0, 0).unwrap();
    }
    drop(fast);
    let t = Instant::now();
    let (mut spool, rec) = Spool::open(cfg).unwrap();
    let mb = rec.bytes as f64 / 1e6;
    println!(
        "open/recovery scan: {:.0} MB/s ({mb:.0} MB)",
        mb / t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let (mut count, mut bytes) = (0u64, 0usize);
    loop {
        let got: Vec<Batch> = spool.peek_many(1 << 20).unwrap();
        let Some(last) = got.last() else { break };
        spool.ack(last.id).unwrap();
        count += got.len() as u64;
        bytes += got.iter().map(|b| b.payload.len()).sum::<usize>();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "replay peek_many(1 MiB)+ack: {:.0} MB/s",
        bytes as f64 / 1e6 / secs
    );
    assert_eq!(count, n + fill);
    assert_eq!(spool.stats().batches, 0);
}
