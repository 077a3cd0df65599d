//! The spool on a real small filesystem (a 2 MiB tmpfs) under the whole daemon: with the
//! store up the disk must never fill with delivered batches; with the store down the disk
//! fills (ENOSPC), windows are held in memory, and once the store is back the acknowledged
//! space is reclaimed while running, appends resume and every reading lands in a real
//! VictoriaMetrics exactly. At a stop with the disk still full, the held points are
//! counted and logged as lost, never silently.
//!
//! Mounting needs root (CI runs tests as root): without it these tests fail, never skip.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use citysense::service::metrics::Metrics;
use citysense::service::spool_drops::SpoolDrop;
use citysense::spool::Spool;
use support::config::Config;
use support::{free_port, wait_until, Daemon, Victoria};

const DISK: u64 = 2 << 20;

/// A tmpfs of `DISK` bytes mounted on a temp dir; unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount() -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("citysense-tmpfs-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={DISK}"), "tmpfs"])
            .arg(&path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a {DISK}-byte tmpfs and must run as root (CI does): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { path, _dir: dir }
    }

    /// Bytes in use on the filesystem (what ENOSPC is about), from `df`.
    fn used(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=used"])
            .arg(&self.path)
            .output()
            .expect("run df");
        let text = String::from_utf8_lossy(&out.stdout);
        let used = text.lines().nth(1).map(str::trim).unwrap_or_default();
        used.parse()
            .unwrap_or_else(|_| panic!("df output {text:?}"))
    }
}

impl Tmpfs {
    /// Waits until less than half the disk is in use: delivered batches do not stay on it
    /// (a window or two may be in flight at any moment).
    async fn wait_reclaimed(&self) {
        for _ in 0..100 {
            if self.used() < DISK / 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "acknowledged space not reclaimed: {} bytes used",
            self.used()
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.path).status();
        if !ok.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// 1200 simulated air sensors every 500 ms, 1 s windows: ~400 kB of line protocol a second,
/// so the 2 MiB disk fills within seconds of the store going away.
fn config(store: &str, spool: &Path) -> String {
    Config::new("gw-disk")
        .window(1)
        .grace(0)
        .stats(&["count", "mean"])
        .section("[simulator]\nair_sensors = 1200\ncounters = 0\ninterval_ms = 500")
        .output_v2(store)
        .output_line("max_backoff_secs = 1")
        .spool_dir(spool)
        .fsync(true)
        .to_toml()
}

async fn wait_for(m: &Arc<Metrics>, secs: u64, what: &str, f: fn(&Metrics) -> bool) {
    wait_until(Duration::from_secs(secs), what, || {
        let m = m.clone();
        async move { f(&m) }
    })
    .await;
}

/// Sum of every `<quantity>_count` sample in the store, each (series, window) once.
async fn readings_in_store(vm: &Victoria) -> u64 {
    let mut samples: BTreeMap<(String, i64), f64> = BTreeMap::new();
    for s in vm.export("{__name__=~\".+_(pm2_5|pm10|co2)_count\"}").await {
        let key = format!("{:?}", s.metric);
        for (t, v) in s.timestamps.iter().zip(&s.values) {
            let prev = samples.insert((key.clone(), *t), *v);
            assert!(prev.is_none_or(|p| p == *v), "{key} {t}: {prev:?} vs {v}");
        }
    }
    samples.values().map(|v| *v as u64).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_is_survived_and_every_reading_reaches_the_store() {
    let disk = Tmpfs::mount();
    let mut vm = Victoria::start().await;
    let mut d = Daemon::start_with_spool(&config(&vm.write_url(), &disk.path), &disk.path);
    let m = d.metrics.clone();

    // Store up: delivered batches must not pile up on the disk. Three disks' worth goes
    // through a 2 MiB filesystem without one failed append.
    wait_for(&m, 60, "3 disks' worth delivered", |m| {
        m.sink.uplink_bytes_sent.load(Relaxed) >= 3 * DISK
    })
    .await;
    assert_eq!(
        m.sink.spool_errors.load(Relaxed),
        0,
        "appends failed with the store up"
    );
    disk.wait_reclaimed().await;

    // Store down: the disk fills and appends fail with ENOSPC; windows wait in memory.
    vm.stop().await;
    wait_for(&m, 30, "the disk is full", |m| {
        m.sink.spool_errors.load(Relaxed) >= 2
    })
    .await;
    let seen = Spool::inspect(&disk.path).unwrap();
    assert!(
        seen.bytes > DISK * 3 / 4 && seen.batches > 0,
        "inspect on a full disk: {seen:?}, {} bytes used",
        disk.used()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        m.sink.spool_held_points.load(Relaxed) > 0,
        "windows held in memory"
    );

    // Store back: acknowledged space is reclaimed while running and the held windows and
    // every later one reach the spool and the store.
    vm.restart().await;
    let emitted = m.pipeline.points_emitted.load(Relaxed);
    let m2 = m.clone();
    wait_until(
        Duration::from_secs(60),
        "everything emitted delivered",
        || {
            let m = m2.clone();
            async move { m.sink.uplink_points_sent.load(Relaxed) >= emitted }
        },
    )
    .await;
    disk.wait_reclaimed().await;
    let errors = m.sink.spool_errors.load(Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        m.sink.spool_errors.load(Relaxed),
        errors,
        "appends did not resume"
    );
    assert_eq!(m.sink.spool_held_points.load(Relaxed), 0);

    d.stop().await;
    assert_eq!(m.sink.spool_dropped.total(), 0, "{}", m.render());
    let left = Spool::inspect(&disk.path).unwrap();
    assert_eq!(left.batches, 0, "drained at stop: {left:?}");
    // The daemon's own books first: a point emitted but never accepted by the store is a
    // loss inside the daemon, and fails here with its own message.
    assert_eq!(
        m.sink.uplink_points_sent.load(Relaxed),
        m.pipeline.points_emitted.load(Relaxed),
        "points the store accepted vs points emitted"
    );
    let readings = m.pipeline.readings_aggregated.load(Relaxed);
    assert_eq!(
        readings_in_store(&vm).await,
        readings,
        "every reading in the store (the daemon delivered every point it emitted; \
         rows the store inserted since its restart: {})",
        vm.rows_inserted().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_held_at_stop_on_a_full_disk_are_counted_as_lost() {
    let disk = Tmpfs::mount();
    let down = format!("http://127.0.0.1:{}", free_port());
    let mut d = Daemon::start_with_spool(&config(&down, &disk.path), &disk.path);
    let m = d.metrics.clone();
    wait_for(&m, 30, "the disk is full", |m| {
        m.sink.spool_errors.load(Relaxed) >= 2
    })
    .await;
    d.stop().await;
    let lost = m.sink.spool_dropped.get(SpoolDrop::UnwrittenAtStop);
    let spooled = Spool::inspect(&disk.path).unwrap().points;
    assert!(lost > 0, "nothing was held at stop");
    assert_eq!(m.sink.spool_dropped.total(), lost, "{}", m.render());
    assert_eq!(
        lost + spooled,
        m.pipeline.points_emitted.load(Relaxed),
        "every point accounted for"
    );
}

/// Fills the rest of the filesystem at `dir` with a file (as runaway logs would).
fn fill(dir: &Path) -> std::fs::File {
    use std::io::Write as _;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0u8; 4096];
    // Page by page, then byte by byte: nothing is left for anyone.
    loop {
        if f.write_all(&block).is_err() {
            break;
        }
    }
    while f.write_all(&[0]).is_ok() {}
    f
}

#[test]
fn a_disk_filled_by_others_still_takes_acks_and_frees_acked_space() {
    let disk = Tmpfs::mount();
    let cfg = citysense::spool::SpoolOptions::new(&disk.path);
    let (mut spool, _) = Spool::open(cfg).unwrap();
    let payload = vec![b'x'; 100_000];
    for id in 1..=3 {
        assert_eq!(spool.append(&payload, 1, 0, 0).unwrap().id, id);
    }
    let filler = fill(&disk.path);
    let err = spool.append(&payload, 1, 0, 0).unwrap_err();
    assert!(err.to_string().contains("No space left"), "{err}");
    // Delivery of everything must be recordable and must give the space back at once.
    spool.ack(3).unwrap();
    assert_eq!(spool.stats().bytes, 0);
    assert_eq!(
        spool.append(&payload, 1, 0, 0).unwrap().id,
        4,
        "no id spent"
    );
    drop(filler);
    drop(spool);
    let (mut spool, rec) = Spool::open(citysense::spool::SpoolOptions::new(&disk.path)).unwrap();
    assert_eq!((rec.records, rec.ack_reset), (1, false));
    assert_eq!(spool.peek().unwrap().map(|b| b.id), Some(4));
}
