//! Gateway board health: what the gateway's own hardware and OS say, read once per window
//! and written by the aggregator as one `gateway_health` point (see README "Gateway health").
//!
//! Every reader takes the root under which `proc/` and `sys/` are found ("/" on a gateway,
//! a temp dir with a fake tree in the tests). A source that is not there (no thermal zone in
//! a VM, no Raspberry Pi firmware) is left out of the point, never written as 0; one that is
//! there but unreadable or unparsable is left out too, counted and logged (rate-limited).
//!
//! Sources, chosen so that the daemon's systemd sandbox allows them: `/proc/loadavg`,
//! `/proc/meminfo` and `/proc/uptime` (system-wide files, which is why the unit does not set
//! `ProcSubset=pid`), `/proc/self/status`, sysfs (read-only under `ProtectKernelTunables=`)
//! and `statvfs(3)` on the spool directory.
//!
//! Raspberry Pi `get_throttled` (the kernel's `soc:firmware` attribute, printed as hex
//! without `0x`, the value of `vcgencmd get_throttled`):
//!
//! | bit | now | bit | since boot |
//! |---:|---|---:|---|
//! | 0 | under-voltage | 16 | under-voltage occurred |
//! | 1 | ARM frequency capped | 17 | frequency capping occurred |
//! | 2 | throttled | 18 | throttling occurred |
//! | 3 | soft temperature limit active | 19 | soft temperature limit occurred |
//!
//! Where that attribute is missing but the mainline `raspberrypi-hwmon` driver is loaded
//! (hwmon `name` = `rpi_volt`), `in0_lcrit_alarm` still gives under-voltage now.

use std::ffi::CString;
use std::io::ErrorKind::NotFound;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

use super::{BoardSource, HealthMetrics};
use crate::config::GatewayHealthConfig;
use crate::fs_limits;
use crate::line_protocol::FieldValue;

/// Largest procfs/sysfs file read (`/proc/self/status` is about 1.5 KiB).
const MAX_FILE_BYTES: u64 = 64 << 10;
/// The Raspberry Pi firmware attribute, under `sys/devices/platform/<bus>/`.
const THROTTLED_ATTR: &str = "soc:firmware/get_throttled";

/// `get_throttled` bits and their field names: (bit, field).
pub const THROTTLED_BITS: [(u32, &str); 8] = [
    (0, "under_voltage"),
    (1, "freq_capped"),
    (2, "throttled"),
    (3, "soft_temp_limit"),
    (16, "under_voltage_since_boot"),
    (17, "freq_capped_since_boot"),
    (18, "throttled_since_boot"),
    (19, "soft_temp_limit_since_boot"),
];

/// One reading of every source; `None` = absent (or unreadable).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BoardSample {
    pub cpu_temp_c: Option<f64>,
    /// Raw `get_throttled` bits.
    pub throttled: Option<u32>,
    /// Under-voltage now from hwmon `rpi_volt` (only read without `get_throttled`).
    pub under_voltage_alarm: Option<bool>,
    pub load1: Option<f64>,
    pub mem_available_bytes: Option<u64>,
    pub mem_total_bytes: Option<u64>,
    pub disk_free_bytes: Option<u64>,
    pub disk_total_bytes: Option<u64>,
    pub spool_bytes: Option<u64>,
    pub uptime_s: Option<f64>,
    pub rss_bytes: Option<u64>,
}

impl BoardSample {
    /// The point's fields: the present sources, plus `clock_synced` (always known).
    pub fn fields(&self, clock_synced: bool) -> Vec<(&'static str, FieldValue)> {
        let mut f = Vec::with_capacity(20);
        let int = |v: u64| FieldValue::Int(i64::try_from(v).unwrap_or(i64::MAX));
        if let Some(t) = self.cpu_temp_c {
            f.push(("cpu_temp_c", FieldValue::Float(t)));
        }
        if let Some(bits) = self.throttled {
            for (bit, name) in THROTTLED_BITS {
                f.push((name, FieldValue::Int(i64::from((bits >> bit) & 1))));
            }
        } else if let Some(alarm) = self.under_voltage_alarm {
            f.push(("under_voltage", FieldValue::Int(i64::from(alarm))));
        }
        let floats = [("load1", self.load1), ("uptime_s", self.uptime_s)];
        f.extend(
            floats
                .into_iter()
                .filter_map(|(k, v)| Some((k, FieldValue::Float(v?)))),
        );
        let ints = [
            ("mem_available_bytes", self.mem_available_bytes),
            ("mem_total_bytes", self.mem_total_bytes),
            ("disk_free_bytes", self.disk_free_bytes),
            ("disk_total_bytes", self.disk_total_bytes),
            ("spool_bytes", self.spool_bytes),
            ("rss_bytes", self.rss_bytes),
        ];
        f.extend(ints.into_iter().filter_map(|(k, v)| Some((k, int(v?)))));
        f.push(("clock_synced", FieldValue::Int(i64::from(clock_synced))));
        f
    }
}

/// Reads a [`BoardSample`]; the sysfs paths are found once, at build.
#[derive(Debug, Clone)]
pub struct BoardReader {
    root: PathBuf,
    spool_dir: PathBuf,
    thermal: Option<PathBuf>,
    throttled: Option<PathBuf>,
    volt_alarm: Option<PathBuf>,
}

impl BoardReader {
    /// `None` when `[gateway_health]` is off.
    pub fn build(cfg: &GatewayHealthConfig, spool_dir: &Path) -> Option<BoardReader> {
        cfg.enabled.then(|| BoardReader::new(&cfg.root, spool_dir))
    }

    /// Reads under `root`; disk and spool figures are of `spool_dir`.
    pub fn new(root: &Path, spool_dir: &Path) -> BoardReader {
        let sys = root.join("sys");
        let throttled = platform_buses(&sys)
            .into_iter()
            .map(|bus| bus.join(THROTTLED_ATTR))
            .find(|p| p.is_file());
        let volt_alarm = match throttled {
            Some(_) => None,
            None => hwmon_named(&sys, "rpi_volt").map(|d| d.join("in0_lcrit_alarm")),
        };
        BoardReader {
            root: root.to_path_buf(),
            spool_dir: spool_dir.to_path_buf(),
            thermal: cpu_thermal_zone(&sys),
            throttled,
            volt_alarm,
        }
    }

    /// Reads every source now (a few small files and one `statvfs`: microseconds; the
    /// firmware attribute asks the VideoCore, a millisecond at most).
    pub fn sample(&self, m: &HealthMetrics) -> BoardSample {
        let proc = self.root.join("proc");
        let read = |src: BoardSource, path: &Path| read_file(src, path, m);
        let meminfo = read(BoardSource::Meminfo, &proc.join("meminfo"));
        let meminfo = meminfo.as_deref();
        let disk = io_source(BoardSource::Disk, statvfs(&self.spool_dir), m);
        BoardSample {
            cpu_temp_c: self.thermal.as_ref().and_then(|p| {
                let text = read(BoardSource::Thermal, p)?;
                parsed(BoardSource::Thermal, parse_millicelsius(&text), m)
            }),
            throttled: self.throttled.as_ref().and_then(|p| {
                let text = read(BoardSource::Throttled, p)?;
                parsed(BoardSource::Throttled, parse_hex(&text), m)
            }),
            under_voltage_alarm: self.volt_alarm.as_ref().and_then(|p| {
                let text = read(BoardSource::Throttled, p)?;
                parsed(BoardSource::Throttled, text.trim().parse::<u8>().ok(), m).map(|v| v != 0)
            }),
            load1: read(BoardSource::Loadavg, &proc.join("loadavg"))
                .and_then(|t| parsed(BoardSource::Loadavg, first_number(&t), m)),
            mem_available_bytes: meminfo
                .and_then(|t| parsed(BoardSource::Meminfo, kib_line(t, "MemAvailable:"), m)),
            mem_total_bytes: meminfo
                .and_then(|t| parsed(BoardSource::Meminfo, kib_line(t, "MemTotal:"), m)),
            disk_free_bytes: disk.map(|d| d.0),
            disk_total_bytes: disk.map(|d| d.1),
            spool_bytes: io_source(BoardSource::Spool, dir_bytes(&self.spool_dir), m),
            uptime_s: read(BoardSource::Uptime, &proc.join("uptime"))
                .and_then(|t| parsed(BoardSource::Uptime, first_number(&t), m)),
            rss_bytes: read(BoardSource::Rss, &proc.join("self/status"))
                .and_then(|t| parsed(BoardSource::Rss, kib_line(&t, "VmRSS:"), m)),
        }
    }
}

/// A file's text; `None` if absent (silently) or unreadable (counted).
fn read_file(src: BoardSource, path: &Path, m: &HealthMetrics) -> Option<String> {
    match fs_limits::read_text(path, MAX_FILE_BYTES, "board health file") {
        Ok(t) => Some(t),
        Err(fs_limits::FileError::Io(e)) if e.kind() == NotFound => None,
        Err(e) => {
            failed(src, &format!("{}: {e}", path.display()), m);
            None
        }
    }
}

/// An I/O result as a source: absent if not found (no spool yet), counted if it failed.
fn io_source<T>(src: BoardSource, r: std::io::Result<T>, m: &HealthMetrics) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) if e.kind() == NotFound => None,
        Err(e) => {
            failed(src, &e, m);
            None
        }
    }
}

/// Counts and logs (rate-limited) a source that is there but could not be read.
fn failed(src: BoardSource, error: &dyn std::fmt::Display, m: &HealthMetrics) {
    m.board_read_errors[src as usize].fetch_add(1, Relaxed);
    if let Some(suppressed) = m.board_log.check() {
        tracing::warn!(source = src.label(), error = %error, suppressed, "gateway health source unreadable, left out");
    }
}

/// `v`, or a counted parse failure.
fn parsed<T>(src: BoardSource, v: Option<T>, m: &HealthMetrics) -> Option<T> {
    if v.is_none() {
        failed(src, &"unexpected content", m);
    }
    v
}

/// Thermal zone temperature (`temp`, millidegrees Celsius) to degrees.
pub fn parse_millicelsius(text: &str) -> Option<f64> {
    let milli: i64 = text.trim().parse().ok()?;
    Some(milli as f64 / 1000.0)
}

/// `get_throttled`: hex, with or without `0x`.
pub fn parse_hex(text: &str) -> Option<u32> {
    let t = text.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    u32::from_str_radix(t, 16).ok()
}

/// The first whitespace-separated number (`/proc/loadavg`, `/proc/uptime`).
pub fn first_number(text: &str) -> Option<f64> {
    let v: f64 = text.split_whitespace().next()?.parse().ok()?;
    v.is_finite().then_some(v)
}

/// `Key:   123 kB` of `/proc/meminfo` or `/proc/self/status`, in bytes.
pub fn kib_line(text: &str, key: &str) -> Option<u64> {
    let rest = text.lines().find_map(|l| l.strip_prefix(key))?;
    let mut parts = rest.split_whitespace();
    let kib: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => kib.checked_mul(1024),
        Some(_) => None,
    }
}

/// Entries of `dir` named `prefix<N>`, by N.
fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.strip_prefix(prefix)?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// The `temp` file of the thermal zone of type `cpu-thermal` (Raspberry Pi), else of the
/// first zone that has one.
fn cpu_thermal_zone(sys: &Path) -> Option<PathBuf> {
    let zones: Vec<PathBuf> = numbered(&sys.join("class/thermal"), "thermal_zone")
        .into_iter()
        .filter(|z| z.join("temp").is_file())
        .collect();
    let is_cpu = |z: &&PathBuf| {
        std::fs::read_to_string(z.join("type")).is_ok_and(|t| t.trim() == "cpu-thermal")
    };
    let zone = zones.iter().find(is_cpu).or(zones.first())?;
    Some(zone.join("temp"))
}

/// `sys/devices/platform/*` (the firmware node sits on `soc` on every Pi so far).
fn platform_buses(sys: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(sys.join("devices/platform")) else {
        return Vec::new();
    };
    let mut buses: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    buses.sort();
    buses
}

/// The hwmon device whose `name` is `name`.
fn hwmon_named(sys: &Path, name: &str) -> Option<PathBuf> {
    numbered(&sys.join("class/hwmon"), "hwmon")
        .into_iter()
        .find(|d| std::fs::read_to_string(d.join("name")).is_ok_and(|n| n.trim() == name))
}

/// (free to unprivileged users, total) bytes of the file system holding `dir`.
fn statvfs(dir: &Path) -> std::io::Result<(u64, u64)> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: all-zero is a valid `statvfs` (plain integers).
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid, exclusively borrowed statvfs for
    // the duration of the call, which only writes it.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The field types differ between 32- and 64-bit targets.
    #[allow(clippy::unnecessary_cast)]
    let (bavail, blocks, frsize) = (st.f_bavail as u64, st.f_blocks as u64, st.f_frsize as u64);
    Ok((bavail.saturating_mul(frsize), blocks.saturating_mul(frsize)))
}

/// Bytes of the regular files directly in `dir` (segments, ack, dead-letter files).
fn dir_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(dir)? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            total = total.saturating_add(meta.len());
        }
    }
    Ok(total)
}

#[cfg(test)]
#[path = "board_tests.rs"]
mod tests;
