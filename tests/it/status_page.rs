//! The status page in a real headless Chromium (Debian's `chromium`, driven through
//! `chromedriver`): the `citysensed` binary runs the simulator and one MQTT sensor on a real
//! mosquitto. A sensor row shows a value; the value changes without a reload; the MQTT sensor,
//! once no longer fed, turns "stale". Screenshots at desktop (1280) and phone (375) widths are
//! kept in `target/screenshots/`.

use crate::support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::chromium::Browser;
use support::citysensed::Citysensed;
use support::config::Config;
use support::{free_port, publish, Mosquitto};

/// The text of the first `.val` cell of `quantity` in `sensor`'s card, or of its state badge.
fn cell(sensor: &str, what: &str) -> String {
    let sel = match what {
        "state" => format!("[data-sensor=\"{sensor}\"] .state"),
        q => format!("[data-sensor=\"{sensor}\"] tr[data-quantity=\"{q}\"] .val"),
    };
    format!("const e = document.querySelector('{sel}'); return e ? e.textContent : null;")
}

/// Polls `script` in the page until `done` holds for its value; panics after `timeout`.
async fn wait_page(
    b: &Browser,
    script: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let v = b.eval(script).await;
        if done(&v) {
            return v;
        }
        if start.elapsed() > timeout {
            let html = b.eval("return document.body.innerText").await;
            panic!("page: {what} not seen within {timeout:?} (last {v}); page text:\n{html}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_live_values_and_a_sensor_going_stale() {
    let broker = Mosquitto::start().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let cfg = Config::new("gw-page")
        .window(2)
        .grace(0)
        .stats(&["mean", "min", "max"])
        .simulator(1, 0, 200)
        .mqtt(broker.port, "cs-page")
        .subscription("{sensor}/sensor/{quantity}/state", "plain")
        .metrics(&format!("127.0.0.1:{port}"))
        .assume_clock_synced()
        .section("[health]\nexpected_interval_secs = 0.5\nstale_after_intervals = 4")
        .section("[output]\napi = \"stdout\"")
        .to_toml();
    let mut d = Citysensed::spawn(&cfg, tmp.path(), "info");
    // The MQTT sensor reports every 250 ms until the feeder stops.
    let mqtt_port = broker.port;
    let feeder = tokio::spawn(async move {
        for i in 0u32.. {
            let value = format!("{}", 20.0 + f64::from(i % 7) / 2.0);
            let msg = (
                "lamp-7/sensor/temperature/state".to_string(),
                value.into_bytes(),
                0,
            );
            publish(mqtt_port, &[msg]).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });

    let b = Browser::start(1280, 1000).await;
    b.goto(&format!("http://127.0.0.1:{port}/")).await;
    b.eval("window.__noReload = 1; return 1").await;
    let has_number = |v: &Value| v.as_str().is_some_and(|s| s.trim().parse::<f64>().is_ok());
    let secs = Duration::from_secs(20);
    let first = wait_page(
        &b,
        &cell("sim-air-0", "co2"),
        secs,
        "a co2 value",
        has_number,
    )
    .await;
    let changed = |v: &Value| has_number(v) && *v != first;
    wait_page(
        &b,
        &cell("sim-air-0", "co2"),
        secs,
        "the co2 value change",
        changed,
    )
    .await;
    let up = |v: &Value| v.as_str() == Some("up");
    wait_page(&b, &cell("lamp-7", "state"), secs, "lamp-7 up", up).await;
    wait_page(
        &b,
        &cell("lamp-7", "temperature"),
        secs,
        "a temperature",
        has_number,
    )
    .await;
    // Window statistics and a sparkline once two windows closed.
    let spark = "return document.querySelectorAll('[data-sensor=\"sim-air-0\"] svg path').length";
    wait_page(&b, spark, secs, "sparklines", |v| v.as_u64() >= Some(3)).await;
    b.screenshot(&screenshots().join("status-desktop-1280.png"))
        .await;
    drop(b);
    // A phone: a second browser opened at 375 px (a desktop window cannot be resized that
    // narrow); it sees the state change below live.
    let b = Browser::start(375, 900).await;
    b.goto(&format!("http://127.0.0.1:{port}/")).await;
    b.eval("window.__noReload = 1; return 1").await;
    wait_page(
        &b,
        &cell("lamp-7", "state"),
        secs,
        "lamp-7 up on the phone",
        up,
    )
    .await;
    let widths = "return [window.innerWidth, document.documentElement.scrollWidth]";
    let widths = b.eval(widths).await;
    assert_eq!(widths[0], 375, "viewport {widths}");
    assert!(
        widths[1].as_u64() <= Some(375),
        "page wider than the phone: {widths}"
    );
    b.screenshot(&screenshots().join("status-phone-375.png"))
        .await;

    feeder.abort();
    let stale = |v: &Value| v.as_str() == Some("stale");
    wait_page(&b, &cell("lamp-7", "state"), secs, "lamp-7 stale", stale).await;
    assert_eq!(b.eval(&cell("sim-air-0", "state")).await, "up");
    assert_eq!(
        b.eval("return window.__noReload").await,
        1,
        "the page reloaded"
    );
    b.screenshot(&screenshots().join("status-phone-375-stale.png"))
        .await;
    let log = d.terminate(Duration::from_secs(15)).await;
    assert!(!log.contains("ERROR"), "{log}");
}
