//! The acceptance check of one `citysensed` binary, whatever architecture it was built for:
//! `--version`, `validate` (a generated config, a broken one, a missing one), `demo`, and two
//! end-to-end runs of the daemon process with real peers on 127.0.0.1, whose windows are
//! asserted exactly in a real VictoriaMetrics: JSON readings through mosquitto, and SDS011
//! frames among line noise on a socat pseudo-terminal.
//!
//! The normal suite runs these on the host's binary. To check a cross-built one, name it and
//! the qemu-user command that runs it, and run only this module (the test harness itself stays
//! native, so do not pass `--target`):
//!
//! ```text
//! CITYSENSE_BIN=/path/to/aarch64/citysensed \
//! CITYSENSE_RUNNER="qemu-aarch64 -L /path/to/sysroot/usr/aarch64-linux-gnu" \
//!     cargo test --test it arch::
//!
//! CITYSENSE_BIN=/path/to/armv7/citysensed \
//! CITYSENSE_RUNNER="qemu-arm -L /path/to/sysroot/usr/arm-linux-gnueabihf" \
//!     cargo test --test it arch::
//! ```
//!
//! `CITYSENSE_BIN` is the binary to run instead of the one cargo built (it must exist);
//! `CITYSENSE_RUNNER` is a command prefix split on whitespace; `-L` names the directory that
//! holds the target's `lib/ld-linux-*.so` and `libc.so.6` (Debian's `libc6-*-cross` layout).
//! Both are read by `support::citysensed::command`, so they also apply to every other test
//! that runs the binary. qemu-user runs the guest in its own process: the pid the tests see,
//! SIGTERM and SIGKILL are the daemon's. Deadlines are generous for emulation (5-20x slower)
//! and every wait polls a condition; nothing here sleeps a fixed time or skips.
//!
//! The serial test needs a qemu-user that emulates the termios2 ioctls (`TCGETS2`,
//! `TCSETS2`), which the serial port library uses on Linux: Debian's qemu has them from
//! 1:10.0.8+ds-0+deb13u1 (trixie) on; with an older one (bookworm's 7.2) the daemon logs
//! "cannot open serial port ... Function not implemented" and the test times out with that log.

use crate::{cli, pipeline, serial, support};

use std::time::Duration;

use tokio::io::AsyncWriteExt as _;

use support::citysensed::{command, output_within, scrape, total};
use support::{free_port, publish, Citysensed, Mosquitto, PtyPair, Victoria};

/// How long any one wait may take: far beyond native (about 5 s), room for qemu.
const TIMEOUT: Duration = Duration::from_secs(90);
/// Clock-aligned 1 s windows, closed 2 s after their end: readings stamped into the next two
/// windows reach the daemon well before that, even emulated.
const WINDOW_S: i64 = 1;
const GRACE_S: i64 = 2;
const SENSORS: usize = 4;
const PER_SENSOR: usize = 30;

const AGGREGATED: &str = "citysense_readings_aggregated_total";
const BAD_INPUT: &str = "citysense_source_bad_input_total";

/// The binary is built from this source: a stale or foreign build fails here first.
#[test]
fn version_is_this_source() {
    let out = output_within(command().arg("--version"), TIMEOUT);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("citysensed {}", env!("CARGO_PKG_VERSION"))
    );
}

/// `gen-config` output validates; a broken file is refused with exit code 2 and each error at
/// its file, line and key; a missing file is a clear error.
#[test]
fn validate_accepts_the_generated_config_and_locates_errors() {
    cli::gen_config_output_validates();
    cli::validate_reports_a_typo_and_a_wrong_type_with_lines();
    cli::missing_config_file_is_a_clear_error();
}

/// `demo --seconds 2` prints valid line protocol with every simulated sensor's windows.
#[test]
fn demo_prints_the_simulated_windows() {
    cli::demo_prints_windows_as_line_protocol();
}

/// `127.0.0.1:<free port>` for the daemon's `/metrics`.
fn metrics_listen(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Publishes a malformed probe on a subscribed topic until the daemon counts one as bad
/// input: from then on its subscription is live, so nothing published later is missed. (A
/// fixed pause after connecting is a guess, and a poor one when the daemon is emulated.)
async fn wait_subscribed(d: &mut Citysensed, broker: u16, metrics: u16) {
    let prober = tokio::spawn(async move {
        let probe = [("city/probe/air".to_string(), b"probe".to_vec(), 1u8)];
        loop {
            publish(broker, &probe).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    d.wait_metrics(metrics, TIMEOUT, "a probe counted as bad input", |m| {
        total(m, BAD_INPUT) >= 1.0
    })
    .await;
    prober.abort();
    let _ = prober.await;
}

/// mosquitto -> citysensed (the process) -> VictoriaMetrics: 120 readings of 4 sensors
/// stamped into the next two 1 s windows; each window closes on time and lands once with its
/// exact mean, min, max and count, and the orderly stop adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_readings_land_as_exact_windows() {
    let broker = Mosquitto::start().await;
    let vm = Victoria::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = free_port();
    let cfg = pipeline::config(WINDOW_S, GRACE_S, broker.port, "cs-arch")
        .output_v2(&vm.write_url())
        .output_line("max_backoff_secs = 1")
        .metrics(&metrics_listen(metrics))
        .assume_clock_synced()
        .to_toml();
    let mut d = Citysensed::spawn(&cfg, dir.path(), "info");
    wait_subscribed(&mut d, broker.port, metrics).await;

    let (msgs, expected) = pipeline::workload(WINDOW_S, SENSORS, PER_SENSOR, None);
    publish(broker.port, &msgs).await;
    let want = expected.len() as f64;
    let what = format!("{want} windows delivered");
    d.wait_metrics(metrics, TIMEOUT, &what, |m| {
        total(m, "citysense_uplink_points_sent_total") >= want
    })
    .await;
    let m = scrape(metrics).await;
    assert_eq!(total(&m, AGGREGATED), msgs.len() as f64, "{m:#?}");
    assert_eq!(total(&m, "citysense_readings_dropped_total"), 0.0, "{m:#?}");
    d.terminate(TIMEOUT).await;
    pipeline::check_victoria(
        &vm.export("{__name__=~\"air_quality_.*\"}").await,
        &expected,
    );
}

/// A socat pty playing an SDS011 among line noise -> citysensed (the process) ->
/// VictoriaMetrics: the bad frames are counted, the out-of-range reading is discarded, and the
/// windows hold exactly the count, sum, min and max of every PM2.5 and PM10 value sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sds011_frames_on_a_pty_land_as_exact_windows() {
    let pair = PtyPair::start();
    let vm = Victoria::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = free_port();
    let cfg = serial::config(&vm, &serial::sds011_active("pm-arch", &pair.b))
        .metrics(&metrics_listen(metrics))
        .assume_clock_synced()
        .to_toml();
    let mut d = Citysensed::spawn(&cfg, dir.path(), "info");
    // A qemu-user without termios2 fails here: the log says "Function not implemented".
    let what = "the serial port open (an old qemu-user cannot: see arch.rs)";
    d.wait_metrics(metrics, TIMEOUT, what, |m| {
        total(m, "citysense_source_up") == 1.0
    })
    .await;

    let mut sensor = serial::open_sensor_end(&pair.a);
    let (wire, pm2_5, pm10) = serial::sds011_session();
    sensor.write_all(&wire).await.expect("write to the pty");
    let readings = (pm2_5.len() + pm10.len()) as f64;
    let what = format!("{readings} readings aggregated");
    d.wait_metrics(metrics, TIMEOUT, &what, |m| {
        total(m, AGGREGATED) >= readings
    })
    .await;
    let m = scrape(metrics).await;
    assert_eq!(total(&m, AGGREGATED), readings, "{m:#?}");
    assert_eq!(
        total(&m, BAD_INPUT),
        2.0,
        "bad checksum + cut frame: {m:#?}"
    );
    let discarded = "citysense_source_readings_discarded_total\
                     {kind=\"serial\",source=\"pm-arch\",reason=\"out_of_range\"}";
    assert_eq!(m.get(discarded), Some(&1.0), "{m:#?}");
    // The orderly stop flushes the open window to the store.
    d.terminate(TIMEOUT).await;
    let series = vm.export("{__name__=~\"air_quality_.*\"}").await;
    serial::assert_summary(
        serial::summary(&series, "air_quality_pm2_5", "pm-arch", "sds011"),
        &pm2_5,
    );
    serial::assert_summary(
        serial::summary(&series, "air_quality_pm10", "pm-arch", "sds011"),
        &pm10,
    );
}
