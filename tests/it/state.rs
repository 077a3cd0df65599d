//! The state file across restarts of the real `citysensed` process: mosquitto -> citysensed ->
//! VictoriaMetrics, a people counter reporting running totals with its own timestamps, the
//! daemon stopped (SIGTERM) or killed (SIGKILL) in the middle of a window and started again on
//! the same state directory. Every window's `in`, `out` and `occupancy` in the store must be
//! what an uninterrupted run gives. And a corrupt or truncated state file must not stop the
//! daemon from starting.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use support::citysensed::{scrape, total};
use support::config::Config;
use support::{free_port, now_ms, publish, Citysensed, Mosquitto, Victoria};

const TIMEOUT: Duration = Duration::from_secs(60);
const WINDOW_MS: i64 = 5000;
const SENT: &str = "citysense_uplink_points_sent_total";
const SAVES: &str = "citysense_state_saves_total";

fn config(mqtt: u16, store: &str, metrics: u16) -> String {
    Config::new("gw-state")
        .window(WINDOW_MS / 1000)
        .grace(2)
        .mqtt(mqtt, "cs-state")
        .subscription("count/{zone}/{sensor}", "json")
        .subscription_line("measurement = \"footfall\"")
        .timestamp("ts", "unix_ms")
        .subscription_line("fields = { in = \"in\", out = \"out\" }")
        .subscription_line("counters = { in = \"counter_total\", out = \"counter_total\" }")
        // No daily re-base: a run at 04:00 Amsterdam time would reset occupancy mid-test.
        .section("[footfall]\nrebase_at = \"\"")
        .assume_clock_synced()
        .output_v2(store)
        .output_line("max_backoff_secs = 1")
        .metrics(&format!("127.0.0.1:{metrics}"))
        .no_health()
        .to_toml()
}

/// One counter message: running totals `inn`, `out` stamped `ts` (ms).
fn totals(inn: u64, out: u64, ts: i64) -> (String, Vec<u8>, u8) {
    let body = format!(r#"{{"in": {inn}, "out": {out}, "ts": {ts}}}"#);
    ("count/markt/door-1".to_string(), body.into_bytes(), 1)
}

async fn sleep_until_ms(t: i64) {
    tokio::time::sleep(Duration::from_millis((t - now_ms()).max(0) as u64)).await;
}

/// Waits until the daemon's MQTT subscription is live: probes until one counts as bad input.
async fn wait_subscribed(d: &mut Citysensed, broker: u16, metrics: u16) {
    let prober = tokio::spawn(async move {
        let probe = [("count/probe/x".to_string(), b"probe".to_vec(), 1u8)];
        loop {
            publish(broker, &probe).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    d.wait_metrics(metrics, TIMEOUT, "a probe counted as bad input", |m| {
        total(m, "citysense_source_bad_input_total") >= 1.0
    })
    .await;
    prober.abort();
    let _ = prober.await;
}

/// metric name -> {window start ms: value} of sensor door-1.
async fn footfall(vm: &Victoria) -> BTreeMap<String, BTreeMap<i64, f64>> {
    let mut got: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for s in vm.export("{__name__=~\"footfall_.*\"}").await {
        let e = got.entry(s.metric["__name__"].clone()).or_default();
        e.extend(s.timestamps.iter().copied().zip(s.values.iter().copied()));
    }
    got
}

/// Window a: in 100 -> 110, out 50 -> 52. Window b, before the restart: in 115, out 53.
/// After it: in 120, out 55 in b; in 125 in c. An uninterrupted run writes
/// a: in 10, out 2, occupancy 8; b: in 10, out 3, occupancy 15; c: in 5, out 0, occupancy 20.
async fn restart_in_the_middle_of_a_window(kill: bool) {
    let broker = Mosquitto::start().await;
    let vm = Victoria::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = free_port();
    let cfg = config(broker.port, &vm.write_url(), metrics);
    let mut d = Citysensed::spawn(&cfg, dir.path(), "info");
    wait_subscribed(&mut d, broker.port, metrics).await;

    let a = (now_ms() / WINDOW_MS + 1) * WINDOW_MS;
    let (b, c) = (a + WINDOW_MS, a + 2 * WINDOW_MS);
    sleep_until_ms(a + 300).await;
    publish(
        broker.port,
        &[totals(100, 50, a + 100), totals(110, 52, a + 200)],
    )
    .await;
    sleep_until_ms(b + 300).await;
    publish(broker.port, &[totals(115, 53, b + 100)]).await;
    d.wait_metrics(
        metrics,
        TIMEOUT,
        "window a sent, b's first reading in",
        |m| {
            total(m, SENT) >= 1.0
                && total(m, SAVES) >= 1.0
                && total(m, "citysense_readings_aggregated_total") >= 6.0
        },
    )
    .await;
    let log = match kill {
        true => d.kill(),
        false => d.terminate(TIMEOUT).await,
    };
    let state = dir.path().join("state.json");
    assert!(state.is_file(), "no state file:\n{log}");

    let mut d = Citysensed::spawn(&cfg, dir.path(), "info");
    d.wait_metrics(metrics, TIMEOUT, "the state restored", |m| {
        m.get("citysense_state_restores_total{result=\"restored\"}") == Some(&1.0)
    })
    .await;
    publish(broker.port, &[totals(120, 55, b + 3000)]).await;
    sleep_until_ms(c + 300).await;
    publish(broker.port, &[totals(125, 55, c + 100)]).await;
    d.wait_metrics(metrics, TIMEOUT, "windows b and c sent", |m| {
        total(m, SENT) >= 2.0
    })
    .await;
    let log = d.terminate(TIMEOUT).await;
    assert!(log.contains("state restored"), "{log}");

    let got = footfall(&vm).await;
    for (t, inn, out, occupancy) in [
        (a, 10.0, 2.0, 8.0),
        (b, 10.0, 3.0, 15.0),
        (c, 5.0, 0.0, 20.0),
    ] {
        let at = |name: &str| got.get(name).and_then(|m| m.get(&t)).copied();
        assert_eq!(at("footfall_in"), Some(inn), "in at {t}: {got:#?}");
        assert_eq!(at("footfall_out"), Some(out), "out at {t}: {got:#?}");
        assert_eq!(
            at("footfall_occupancy"),
            Some(occupancy),
            "occupancy at {t}: {got:#?}"
        );
    }
    let text = std::fs::read_to_string(&state).expect("state file");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("state is JSON");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["sections"]["occupancy"][0]["occupancy"], 20.0, "{text}");
}

/// SIGTERM in the middle of a window: counter chain, the window cut in two, and occupancy
/// continue exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_window_keeps_totals_and_occupancy_exact() {
    restart_in_the_middle_of_a_window(false).await;
}

/// SIGKILL in the middle of a window: the state of the last close is restored; the counter's
/// running total recovers the increments after it, so nothing is lost here (readings of
/// per-event counters since the last close would be: at most one window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_window_loses_at_most_the_open_window() {
    restart_in_the_middle_of_a_window(true).await;
}

fn simulator_config(metrics: u16) -> String {
    Config::new("gw-state")
        .window(1)
        .grace(0)
        .simulator(0, 1, 100)
        .assume_clock_synced()
        // A store that is not there: the windows wait in the spool.
        .output_v2(&format!("http://127.0.0.1:{}", free_port()))
        .metrics(&format!("127.0.0.1:{metrics}"))
        .no_health()
        .to_toml()
}

/// Runs the daemon on `dir` until it has saved the state twice; returns its log.
async fn run_until_saved(dir: &Path) -> String {
    let metrics = free_port();
    let mut d = Citysensed::spawn(&simulator_config(metrics), dir, "info");
    d.wait_metrics(metrics, TIMEOUT, "two state saves", |m| {
        total(m, SAVES) >= 2.0
    })
    .await;
    let m = scrape(metrics).await;
    let restores = total(&m, "citysense_state_restores_total");
    assert_eq!(restores, 1.0, "{m:#?}");
    d.terminate(TIMEOUT).await
}

/// A truncated and a garbage state file are ignored with a warning naming the file and why;
/// the daemon starts and writes a good one again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_truncated_state_file_is_ignored_with_a_warning() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state.json");
    let log = run_until_saved(dir.path()).await;
    assert!(log.contains("no state file yet"), "{log}");
    let good = std::fs::read(&state).expect("state saved");
    serde_json::from_slice::<serde_json::Value>(&good).expect("saved state is JSON");

    let damaged: [&[u8]; 2] = [&good[..good.len() / 2], b"\x00\xffnot json"];
    for bytes in damaged {
        std::fs::write(&state, bytes).expect("damage the state file");
        let log = run_until_saved(dir.path()).await;
        let warn = log
            .lines()
            .find(|l| l.contains("WARN") && l.contains("state file ignored"))
            .unwrap_or_else(|| panic!("no warning:\n{log}"));
        assert!(
            warn.contains(&state.display().to_string()) && warn.contains("corrupt or truncated"),
            "{warn}"
        );
        let again = std::fs::read(&state).expect("state saved again");
        serde_json::from_slice::<serde_json::Value>(&again).expect("a good state again");
    }
}
