//! `/api/v1/status` end to end: the `citysensed` binary on the simulator, shipping to a real
//! VictoriaMetrics. The document names each sensor with its model and state, its latest
//! readings, the last closed window's mean/min/max and a growing history of window means; the
//! uplink's last success; the clock; HEAD gets the headers without the body.

use crate::support;

use std::time::Duration;

use serde_json::Value;
use support::citysensed::Citysensed;
use support::config::Config;
use support::{free_port, http, wait_until, Victoria};

async fn status(port: u16) -> Option<Value> {
    let url = format!("http://127.0.0.1:{port}/api/v1/status");
    let resp = http().get(url).send().await.ok()?;
    serde_json::from_str(&resp.text().await.ok()?).ok()
}

fn sensor<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    doc["sensors"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

fn quantity<'a>(s: &'a Value, name: &str) -> Option<&'a Value> {
    s["quantities"]
        .as_array()?
        .iter()
        .find(|q| q["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_sensors_uplink_and_clock() {
    let vm = Victoria::start().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let cfg = Config::new("gw-status")
        .window(1)
        .grace(0)
        .stats(&["mean", "min", "max"])
        .simulator(1, 0, 100)
        .output_v2(&vm.write_url())
        .metrics(&format!("127.0.0.1:{port}"))
        .assume_clock_synced()
        .to_toml();
    let mut d = Citysensed::spawn(&cfg, tmp.path(), "info");
    wait_until(
        Duration::from_secs(30),
        "3 window means and an upload",
        || async move {
            let Some(doc) = status(port).await else {
                return false;
            };
            let history = (sensor(&doc, "sim-air-0").and_then(|s| quantity(s, "pm2_5")))
                .and_then(|q| q["history"].as_array().map(Vec::len));
            history.is_some_and(|n| n >= 3) && doc["uplink"]["last_success"].is_i64()
        },
    )
    .await;
    let doc = status(port).await.expect("status");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["window_secs"], 1);
    let s = sensor(&doc, "sim-air-0").expect("sensor");
    assert_eq!(s["model"], "simulated");
    assert_eq!(s["state"], "up", "{s}");
    assert!(s["age_s"].as_f64().is_some_and(|a| a < 2.0), "{s}");
    let pm = quantity(s, "pm2_5").expect("pm2_5");
    assert!(pm["latest"].is_f64(), "{pm}");
    let w = &pm["last_window"];
    let (min, mean, max) = (w["min"].as_f64(), w["mean"].as_f64(), w["max"].as_f64());
    assert!(min <= mean && mean <= max && min.is_some(), "{w}");
    assert!(quantity(s, "co2").is_some(), "{s}");
    // The simulator has no source counters; MQTT and serial sources are listed.
    assert!(doc["sources"].is_array(), "{doc}");
    assert_eq!(doc["uplink"]["state"], "up");
    // The one `[output]` table is the output named `default`, with its own delivery state.
    let out = &doc["uplink"]["outputs"][0];
    assert_eq!(out["name"], "default", "{doc}");
    assert_eq!(out["state"], "up", "{doc}");
    assert!(out["last_success"].is_i64(), "{doc}");
    assert_eq!(doc["clock"]["state"], "synchronized");
    assert!(
        doc["gateway_health"]["rss_bytes"].as_f64() > Some(0.0),
        "{doc}"
    );
    assert!(doc["log"].is_array());

    let url = format!("http://127.0.0.1:{port}/api/v1/status");
    let head = http().head(&url).send().await.expect("HEAD");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-type"],
        "application/json",
        "HEAD has GET's headers"
    );
    assert!(head.bytes().await.expect("body").is_empty());
    let log = d.terminate(Duration::from_secs(15)).await;
    assert!(!log.contains("ERROR"), "{log}");
}
