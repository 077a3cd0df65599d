//! Serial sensors end to end on real pseudo-terminals: socat links two ptys, the test plays
//! the sensor on one end, citysensed (in-process) reads the other through tokio-serial, and
//! the windows are read back from a real VictoriaMetrics. Frames are synthesised here with
//! their checksums computed from the datasheets' formulas, independently of the decoders.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::{SerialPortBuilderExt, SerialStream};

use support::config::Config;
use support::{wait_until, Daemon, ExportedSeries, PtyPair, Victoria};

/// MH-Z19B "read CO2" command as printed in its manual.
const MHZ19_READ: [u8; 9] = [0xFF, 0x01, 0x86, 0x00, 0x00, 0x00, 0x00, 0x00, 0x79];
/// MH-Z19B "set range 5000 ppm" (0x99, range in bytes 6-7), sent by the built-in profile.
const MHZ19_RANGE_5000: [u8; 9] = [0xFF, 0x01, 0x99, 0x00, 0x00, 0x00, 0x13, 0x88, 0xCB];

/// The daemon config around `serial`, one or more raw `[[serial]]` tables.
pub(crate) fn config(vm: &Victoria, serial: &str) -> Config {
    Config::new("gw-test")
        .site("lab")
        .window(2)
        .grace(1)
        .stats(&["mean", "min", "max", "count"])
        .section(serial)
        .output_v2(&vm.write_url())
}

pub(crate) fn sds011_active(name: &str, port: &Path) -> String {
    format!(
        r#"[[serial]]
name = "{name}"
port = "{}"
[serial.profile]
base = "sds011"
warmup_secs = 0
protocol = {{ type = "sds011", mode = "active" }}"#,
        port.display()
    )
}

/// SDS011 data frame `AA C0 PM25L PM25H PM10L PM10H ID1 ID2 CS AB`, values in tenths of
/// ug/m3; CS is the low byte of the sum of the six data bytes.
pub(crate) fn sds011_frame(pm2_5: u16, pm10: u16) -> Vec<u8> {
    let [a, b] = pm2_5.to_le_bytes();
    let [c, d] = pm10.to_le_bytes();
    let data = [a, b, c, d, 0x0B, 0x70];
    let cs = data.iter().fold(0u8, |s, x| s.wrapping_add(*x));
    let mut f = vec![0xAA, 0xC0];
    f.extend(data);
    f.extend([cs, 0xAB]);
    f
}

/// MH-Z19B answer `FF 86 HH LL TT .. CS`, CS = 0 - sum of bytes 1..=7.
fn mhz19_answer(co2: u16, temp_c: u8) -> Vec<u8> {
    let [hi, lo] = co2.to_be_bytes();
    let mut f = vec![0xFF, 0x86, hi, lo, temp_c + 40, 0x00, 0x00, 0x00];
    let sum = f[1..].iter().fold(0u8, |s, x| s.wrapping_add(*x));
    f.push(sum.wrapping_neg());
    f
}

pub(crate) fn open_sensor_end(path: &Path) -> SerialStream {
    tokio_serial::new(path.to_string_lossy(), 9600)
        .open_native_async()
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// (count, sum, min, max) of one quantity over every window in the store, per check of the
/// series' tags.
pub(crate) fn summary(
    series: &[ExportedSeries],
    metric: &str,
    sensor: &str,
    model: &str,
) -> (f64, f64, f64, f64) {
    let mut per_window: BTreeMap<i64, BTreeMap<String, f64>> = BTreeMap::new();
    for s in series {
        let name = &s.metric["__name__"];
        let Some(stat) = name.strip_prefix(&format!("{metric}_")) else {
            continue;
        };
        assert_eq!(s.metric.get("sensor").map(String::as_str), Some(sensor));
        assert_eq!(s.metric.get("model").map(String::as_str), Some(model));
        assert_eq!(s.metric.get("gateway").map(String::as_str), Some("gw-test"));
        assert_eq!(s.metric.get("site").map(String::as_str), Some("lab"));
        for (t, v) in s.timestamps.iter().zip(&s.values) {
            let prev = per_window
                .entry(*t)
                .or_default()
                .insert(stat.to_string(), *v);
            assert!(prev.is_none(), "duplicate point {name} at {t}");
        }
    }
    assert!(!per_window.is_empty(), "no {metric} windows in the store");
    let (mut count, mut sum, mut min, mut max) = (0.0, 0.0, f64::MAX, f64::MIN);
    for stats in per_window.values() {
        count += stats["count"];
        sum += stats["mean"] * stats["count"];
        min = f64::min(min, stats["min"]);
        max = f64::max(max, stats["max"]);
    }
    (count, sum, min, max)
}

pub(crate) fn assert_summary(got: (f64, f64, f64, f64), values: &[f64]) {
    let sum: f64 = values.iter().sum();
    let min = values.iter().cloned().fold(f64::MAX, f64::min);
    let max = values.iter().cloned().fold(f64::MIN, f64::max);
    assert_eq!(got.0, values.len() as f64, "count");
    assert!((got.1 - sum).abs() < 1e-9, "sum {} vs {sum}", got.1);
    assert_eq!(got.2, min, "min");
    assert_eq!(got.3, max, "max");
}

async fn wait_connected(d: &Daemon, up: bool) {
    let m = d.metrics.clone();
    let what = if up {
        "serial port open"
    } else {
        "serial port seen gone"
    };
    wait_until(Duration::from_secs(15), what, || {
        let m = m.clone();
        async move { (m.sources_connected() == 1) == up }
    })
    .await;
}

async fn wait_aggregated(d: &Daemon, n: u64) {
    let m = d.metrics.clone();
    wait_until(
        Duration::from_secs(10),
        &format!("{n} readings aggregated"),
        || {
            let m = m.clone();
            async move { m.pipeline.readings_aggregated.load(Relaxed) >= n }
        },
    )
    .await;
}

fn metric_line(d: &Daemon, prefix: &str) -> String {
    let text = d.metrics.render();
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("{prefix} not in\n{text}"))
        .to_string()
}

/// What an SDS011 sends among line noise: 30 frames with garbage between them, one with a
/// wrong checksum and one cut short (2 bad inputs), one whose PM10 of 1500.0 is past the
/// profile's 999.9 (1 reading out of range). Returns the bytes and the PM2.5 and PM10 values
/// that must land.
pub(crate) fn sds011_session() -> (Vec<u8>, Vec<f64>, Vec<f64>) {
    let mut wire = vec![0x00, 0x13, 0xAA, 0x01, 0xFF, 0x0D, 0x0A];
    let (mut pm2_5, mut pm10) = (Vec::new(), Vec::new());
    for i in 0..30u16 {
        let (a, b) = ((i * 37) % 500, (i * 53) % 900 + 10);
        wire.extend(sds011_frame(a, b));
        pm2_5.push(f64::from(a) / 10.0);
        pm10.push(f64::from(b) / 10.0);
        match i {
            // A frame with a wrong checksum: counted, skipped, the next frame still lands.
            7 => {
                let mut bad = sds011_frame(111, 222);
                bad[8] = bad[8].wrapping_add(1);
                wire.extend(bad);
            }
            // A frame cut short by a lost byte run: its trailer check fails (counted).
            15 => wire.extend(&sds011_frame(5, 6)[..4]),
            // PM10 of 1500.0 is past the profile's 999.9: dropped and counted; PM2.5 kept.
            20 => {
                wire.extend(sds011_frame(42, 15_000));
                pm2_5.push(4.2);
            }
            _ => wire.extend([0x42, 0x00, 0x7E]),
        }
    }
    (wire, pm2_5, pm10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sds011_frames_among_garbage_land_exactly() {
    let pair = PtyPair::start();
    let vm = Victoria::start().await;
    let mut d = Daemon::start(&config(&vm, &sds011_active("pm-a", &pair.b)).to_toml());
    wait_connected(&d, true).await;
    let mut sensor = open_sensor_end(&pair.a);

    let (wire, pm2_5, pm10) = sds011_session();
    sensor.write_all(&wire).await.unwrap();
    wait_aggregated(&d, (pm2_5.len() + pm10.len()) as u64).await;
    d.stop().await;

    assert_eq!(d.metrics.bad_input_total(), 2, "bad checksum + cut frame");
    assert!(metric_line(&d, "citysense_source_readings_discarded_total{kind=\"serial\",source=\"pm-a\",reason=\"out_of_range\"}").ends_with(" 1"));
    assert_eq!(
        d.metrics.pipeline.readings_aggregated.load(Relaxed),
        (pm2_5.len() + pm10.len()) as u64
    );
    let series = vm.export("{__name__=~\"air_quality_.*\"}").await;
    assert_summary(
        summary(&series, "air_quality_pm2_5", "pm-a", "sds011"),
        &pm2_5,
    );
    assert_summary(
        summary(&series, "air_quality_pm10", "pm-a", "sds011"),
        &pm10,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_mhz19b_answers_land() {
    let pair = PtyPair::start();
    let vm = Victoria::start().await;
    let serial = format!(
        "[[serial]]\nname = \"co2-a\"\nport = \"{}\"\npoll_interval_secs = 1\n[serial.profile]\nbase = \"mhz19b\"\nwarmup_secs = 0",
        pair.b.display()
    );
    let mut d = Daemon::start(&config(&vm, &serial).to_toml());
    let mut sensor = open_sensor_end(&pair.a);
    let answers: [(u16, u8); 3] = [(412, 21), (1234, 22), (655, 24)];
    let mut seen = Vec::new();
    let mut answered = 0;
    while answered < answers.len() {
        let mut cmd = [0u8; 9];
        tokio::time::timeout(Duration::from_secs(10), sensor.read_exact(&mut cmd))
            .await
            .expect("a command from the daemon within 10 s")
            .expect("read from pty");
        if cmd == MHZ19_READ {
            let (co2, t) = answers[answered];
            sensor.write_all(&mhz19_answer(co2, t)).await.unwrap();
            answered += 1;
        }
        seen.push(cmd);
    }
    assert_eq!(
        seen[0], MHZ19_RANGE_5000,
        "range set once at start: {seen:02X?}"
    );
    assert!(seen[1..].iter().all(|c| *c == MHZ19_READ), "{seen:02X?}");
    wait_aggregated(&d, 6).await;
    d.stop().await;

    assert_eq!(d.metrics.bad_input_total(), 0);
    let series = vm.export("{__name__=~\"(air_quality|climate)_.*\"}").await;
    let co2: Vec<f64> = answers.iter().map(|(c, _)| f64::from(*c)).collect();
    let temp: Vec<f64> = answers.iter().map(|(_, t)| f64::from(*t)).collect();
    assert_summary(summary(&series, "air_quality_co2", "co2-a", "mhz19b"), &co2);
    assert_summary(
        summary(&series, "climate_temperature", "co2-a", "mhz19b"),
        &temp,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_port_and_replug_are_retried_and_readings_flow_again() {
    let mut pair = PtyPair::start();
    tokio::task::block_in_place(|| pair.unplug());
    let vm = Victoria::start().await;
    let mut d = Daemon::start(&config(&vm, &sds011_active("pm-b", &pair.b)).to_toml());
    // The port does not exist yet: the source keeps retrying, reported down.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(d.metrics.sources_connected(), 0);
    assert!(!metric_line(&d, "citysense_source_reconnects_total{kind=\"serial\"").ends_with(" 0"));

    let mut values = Vec::new();
    for round in 0..2u16 {
        tokio::task::block_in_place(|| pair.restart());
        wait_connected(&d, true).await;
        let mut sensor = open_sensor_end(&pair.a);
        for i in 0..3u16 {
            let v = 100 * (round + 1) + i;
            sensor.write_all(&sds011_frame(v, v + 1)).await.unwrap();
            values.push(f64::from(v) / 10.0);
        }
        wait_aggregated(&d, 2 * values.len() as u64).await;
        drop(sensor);
        // Unplug: the daemon sees EOF/EIO on its end, reports down and starts reopening.
        tokio::task::block_in_place(|| pair.unplug());
        wait_connected(&d, false).await;
    }
    d.stop().await;

    assert_eq!(d.metrics.pipeline.readings_aggregated.load(Relaxed), 12);
    assert_eq!(d.metrics.bad_input_total(), 0);
    let series = vm.export("{__name__=~\"air_quality_pm2_5_.*\"}").await;
    assert_summary(
        summary(&series, "air_quality_pm2_5", "pm-b", "sds011"),
        &values,
    );
}

/// PMS5003 frame `42 4D 00 1C` + 13 BE words (all `v`) + BE sum of the 30 bytes before it.
fn pms_frame(v: u16) -> Vec<u8> {
    let mut f = vec![0x42, 0x4D, 0x00, 0x1C];
    for _ in 0..13 {
        f.extend(v.to_be_bytes());
    }
    let sum = f
        .iter()
        .map(|b| u16::from(*b))
        .fold(0u16, u16::wrapping_add);
    f.extend(sum.to_be_bytes());
    f
}

/// SPS30 answer to "read measured values": `7E 00 03 STATE LEN data CHK 7E` with ten BE f32
/// (all `v`), CHK = NOT of the low byte of the sum, 7E/7D/11/13 stuffed as 7D + (b ^ 0x20).
fn sps30_answer(v: f32) -> Vec<u8> {
    let mut body = vec![0x00, 0x03, 0x00, 40];
    for _ in 0..10 {
        body.extend(v.to_be_bytes());
    }
    body.push(!body.iter().fold(0u8, |s, b| s.wrapping_add(*b)));
    let mut f = vec![0x7E];
    for b in body {
        match b {
            0x7E | 0x7D | 0x11 | 0x13 => f.extend([0x7D, b ^ 0x20]),
            _ => f.push(b),
        }
    }
    f.push(0x7E);
    f
}

/// Plays an SPS30: answers each "read measured values" command (`7E 00 03 00 FC 7E`) with
/// the next of `values`.
async fn play_sps30(sensor: &mut SerialStream, values: &[f32]) {
    const READ: [u8; 6] = [0x7E, 0x00, 0x03, 0x00, 0xFC, 0x7E];
    let (mut heard, mut answered) = (Vec::<u8>::new(), 0);
    while answered < values.len() {
        let mut chunk = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), sensor.read(&mut chunk))
            .await
            .expect("an SPS30 command within 10 s")
            .unwrap();
        heard.extend(&chunk[..n]);
        while let Some(at) = heard.windows(6).position(|w| w == READ) {
            heard.drain(..at + 6);
            sensor
                .write_all(&sps30_answer(values[answered]))
                .await
                .unwrap();
            answered += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pms5003_sps30_and_counter_lines_land() {
    let (pms, sps, door) = (PtyPair::start(), PtyPair::start(), PtyPair::start());
    let vm = Victoria::start().await;
    let serial = format!(
        r#"[[serial]]
name = "pms-a"
port = "{}"
[serial.profile]
base = "pms5003"
warmup_secs = 0
protocol = {{ type = "pms", mode = "active" }}

[[serial]]
name = "sps-a"
port = "{}"
poll_interval_secs = 1
[serial.profile]
base = "sps30"
warmup_secs = 0

[[serial]]
name = "door-a"
port = "{}"
profile = "counter-kv""#,
        pms.b.display(),
        sps.b.display(),
        door.b.display()
    );
    let mut d = Daemon::start(&config(&vm, &serial).to_toml());
    let m = d.metrics.clone();
    wait_until(Duration::from_secs(15), "three ports open", || {
        let m = m.clone();
        async move { m.sources_connected() == 3 }
    })
    .await;

    let pms_values = [12u16, 35, 7];
    let mut pms_end = open_sensor_end(&pms.a);
    for v in pms_values {
        pms_end.write_all(&pms_frame(v)).await.unwrap();
    }
    let mut door_end = open_sensor_end(&door.a);
    door_end
        .write_all(b"in=3,out=1\r\nin=0 out=2\nin=5,out=0\n")
        .await
        .unwrap();
    let sps_values = [2.5f32, 9.25];
    play_sps30(&mut open_sensor_end(&sps.a), &sps_values).await;
    wait_aggregated(&d, 3 * 9 + 2 * 10 + 3 * 2).await;
    d.stop().await;

    assert_eq!(d.metrics.bad_input_total(), 0);
    assert_eq!(d.metrics.pipeline.readings_aggregated.load(Relaxed), 53);
    let series = vm.export("{__name__=~\"(air_quality|footfall)_.*\"}").await;
    let pms_by = |metric: &str| {
        let s: Vec<ExportedSeries> = series
            .iter()
            .filter(|s| s.metric.get("sensor").map(String::as_str) == Some("pms-a"))
            .cloned()
            .collect();
        summary(&s, metric, "pms-a", "pms5003")
    };
    let pms_f: Vec<f64> = pms_values.iter().map(|v| f64::from(*v)).collect();
    assert_summary(pms_by("air_quality_pm2_5"), &pms_f);
    assert_summary(pms_by("air_quality_pc0_3"), &pms_f);
    let sps: Vec<ExportedSeries> = series
        .iter()
        .filter(|s| s.metric.get("sensor").map(String::as_str) == Some("sps-a"))
        .cloned()
        .collect();
    let sps_f: Vec<f64> = sps_values.iter().map(|v| f64::from(*v)).collect();
    assert_summary(summary(&sps, "air_quality_pm2_5", "sps-a", "sps30"), &sps_f);
    assert_summary(summary(&sps, "air_quality_nc10", "sps-a", "sps30"), &sps_f);
    // counter-kv lines are events (kind `counter`): each window has their sums and `net`,
    // however the three lines fell into windows.
    let door_sum = |name: &str| -> f64 {
        series
            .iter()
            .filter(|s| s.metric["__name__"] == name)
            .inspect(|s| assert_eq!(s.metric.get("sensor").map(String::as_str), Some("door-a")))
            .flat_map(|s| s.values.iter())
            .sum()
    };
    assert_eq!(door_sum("footfall_in"), 8.0);
    assert_eq!(door_sum("footfall_out"), 3.0);
    assert_eq!(door_sum("footfall_net"), 5.0);
    assert!(series
        .iter()
        .all(|s| s.metric["__name__"] != "footfall_in_count"));
}

/// SDS011 command frames (`AA B4 CMD B3 B4 ...`, 19 bytes) the daemon sent, as
/// (seconds since the first, cmd, byte 3, byte 4).
async fn read_commands(port: &mut SerialStream, for_how_long: Duration) -> Vec<(f64, u8, u8, u8)> {
    let start = tokio::time::Instant::now();
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut first: Option<tokio::time::Instant> = None;
    let mut chunk = [0u8; 64];
    while start.elapsed() < for_how_long {
        let left = for_how_long.saturating_sub(start.elapsed());
        let Ok(Ok(n)) = tokio::time::timeout(left, port.read(&mut chunk)).await else {
            break;
        };
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 19 {
            let f: Vec<u8> = buf.drain(..19).collect();
            assert_eq!(
                (f[0], f[1], f[18]),
                (0xAA, 0xB4, 0xAB),
                "command frame {f:02X?}"
            );
            let t0 = *first.get_or_insert_with(tokio::time::Instant::now);
            frames.push((t0.elapsed().as_secs_f64(), f[2], f[3], f[4]));
        }
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sds011_duty_cycle_sleeps_and_wakes_the_laser() {
    let vm = Victoria::start().await;
    let pty = PtyPair::start();
    let mut sensor = open_sensor_end(&pty.a);
    let serial = format!(
        "{}\nduty_cycle = {{ work_secs = 2, sleep_secs = 1 }}",
        sds011_active("dusty", &pty.b)
    );
    let mut d = Daemon::start(&config(&vm, &serial).to_toml());
    let cmds = read_commands(&mut sensor, Duration::from_millis(4500)).await;
    d.stop().await;
    const WAKE: (u8, u8, u8) = (0x06, 0x01, 0x01);
    const SLEEP: (u8, u8, u8) = (0x06, 0x01, 0x00);
    const ACTIVE: (u8, u8, u8) = (0x02, 0x01, 0x00);
    let kinds: Vec<(u8, u8, u8)> = cmds.iter().map(|c| (c.1, c.2, c.3)).collect();
    assert!(kinds.len() >= 5, "{cmds:?}");
    assert_eq!(kinds[..5], [WAKE, ACTIVE, SLEEP, WAKE, ACTIVE], "{cmds:?}");
    // Work 2 s (counted from after the init commands), then sleep 1 s.
    let (t_sleep, t_wake) = (cmds[2].0, cmds[3].0);
    assert!(
        (1.9..3.5).contains(&t_sleep),
        "slept at {t_sleep} s: {cmds:?}"
    );
    assert!(
        (0.9..2.0).contains(&(t_wake - t_sleep)),
        "woke {} s after sleeping",
        t_wake - t_sleep
    );
}
