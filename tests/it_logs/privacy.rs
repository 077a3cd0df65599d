//! Privacy by design, end to end: a Wi-Fi scanner publishes known MAC addresses over a real
//! mosquitto; citysensed must deliver only the `unique_devices` estimate to a real
//! VictoriaMetrics, suppress a window below `k_min`, and leave no trace of any identifier, or
//! of a plausible unsalted hash of one, or of a raw payload, in the spool files, the state
//! file, the store, the MQTT output (a second output, to the same mosquitto), the logs
//! (captured at TRACE, `log` records included), `/metrics`, `/healthz`, `/api/v1/status` or
//! the status page `/`.

use crate::support;

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use support::config::Config;
use support::{
    free_port, http, logs, now_ms, publish, subscribe, wait_until, Daemon, Mosquitto, Victoria,
};

const WINDOW_MS: i64 = 2000;
const DISTINCT: usize = 50;

/// 50 MAC addresses, half written upper-case, so normalisation is exercised too.
fn macs() -> Vec<String> {
    (0..DISTINCT)
        .map(|i| {
            let m = format!("3c:22:fb:{:02x}:{:02x}:{:02x}", i * 5, 255 - i, i * 3 + 1);
            if i % 2 == 0 {
                m.to_uppercase()
            } else {
                m
            }
        })
        .collect()
}

fn config(mqtt: u16, metrics: u16, vm: &str) -> String {
    Config::new("gw-priv")
        .window(2)
        .grace(1)
        .stats(&["mean", "count"])
        .section("[privacy]\nk_min = 5")
        .mqtt(mqtt, "cs-privacy")
        .subscription("scan/{sensor}/probe", "")
        .subscription_line("identifier_path = \"mac\"")
        .timestamp("ts", "unix_ms")
        .subscription("scan/{sensor}/batch", "")
        .subscription_line("identifier_path = \"devices\"")
        .timestamp("ts", "unix_ms")
        .section(&format!(
            "[[output]]\nname = \"store\"\napi = \"v2\"\nurl = \"{vm}\"\nbucket = \"b\"\n\n\
             [[output]]\nname = \"partners\"\napi = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {mqtt}"
        ))
        .metrics(&format!("127.0.0.1:{metrics}"))
        .to_toml()
}

/// Window A: all 50 devices, each probed twice, 10 of them again in a list message.
/// Window B: 3 devices only, below k_min. Plus one truncated payload with a MAC in it.
fn workload(a: i64, b: i64, macs: &[String]) -> Vec<(String, Vec<u8>, u8)> {
    let mut msgs = Vec::new();
    for round in 0..2 {
        for (i, mac) in macs.iter().enumerate() {
            let ts = a + 100 + (round * DISTINCT + i) as i64 * 10;
            let p = format!(r#"{{"mac":"{mac}","rssi":-{},"ts":{ts}}}"#, 60 + i);
            msgs.push(("scan/s1/probe".to_string(), p.into_bytes(), 1));
        }
    }
    let list: Vec<String> = macs[..10].iter().map(|m| format!("\"{m}\"")).collect();
    let p = format!(r#"{{"devices":[{}],"ts":{}}}"#, list.join(","), a + 1500);
    msgs.push(("scan/s1/batch".to_string(), p.into_bytes(), 1));
    for mac in &macs[..3] {
        let p = format!(r#"{{"mac":"{mac}","ts":{}}}"#, b + 200);
        msgs.push(("scan/s1/probe".to_string(), p.into_bytes(), 1));
    }
    let broken = format!(r#"{{"mac":"{}","ts":"#, macs[7]);
    msgs.push(("scan/s1/probe".to_string(), broken.into_bytes(), 1));
    msgs
}

/// Every form an identifier could leak in: as sent, normalised, upper/lower with and without
/// separators, and their MD5, SHA-1 and SHA-256 hex digests (computed by coreutils).
fn needles(macs: &[String]) -> Vec<String> {
    let mut forms = Vec::new();
    for m in macs {
        let lower = m.to_lowercase();
        let bare = lower.replace(':', "");
        forms.extend([
            lower.clone(),
            bare.clone(),
            lower.replace(':', "-"),
            m.to_uppercase(),
            bare.to_uppercase(),
        ]);
    }
    let mut script = String::new();
    for f in &forms {
        for tool in ["md5sum", "sha1sum", "sha256sum"] {
            script.push_str(&format!("printf %s '{f}' | {tool}\n"));
        }
    }
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("bash with coreutils");
    assert!(out.status.success());
    let digests: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(digests.len(), forms.len() * 3);
    forms.into_iter().chain(digests).collect()
}

fn read_tree(dir: &Path, out: &mut Vec<u8>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            read_tree(&path, out);
        } else {
            out.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
}

async fn get_text(url: &str) -> String {
    let resp = http().get(url).send().await.unwrap();
    resp.text().await.unwrap()
}

fn assert_clean(place: &str, haystack: &str, needles: &[String], payloads: &[Vec<u8>]) {
    let hay = haystack.to_lowercase();
    for n in needles {
        assert!(
            !hay.contains(&n.to_lowercase()),
            "{place} contains identifier or hash {n:?}"
        );
    }
    for p in payloads {
        let p = String::from_utf8_lossy(p).to_lowercase();
        assert!(!hay.contains(&p), "{place} contains a raw payload {p:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_suppressed_estimate_leaves_and_no_identifier_anywhere() {
    logs::capture();
    let broker = Mosquitto::start().await;
    let mut vm = Victoria::start().await;
    let metrics_port = free_port();
    let mut partner = subscribe(broker.port, "citysense/#", 1).await;
    let mut d = Daemon::start(&config(broker.port, metrics_port, &vm.write_url()));
    d.wait_connected(1).await;
    // The store is down while the windows close, so the spool is scanned holding them
    // (delivered batches are reclaimed from the disk at once).
    vm.stop().await;

    let macs = macs();
    let a = (now_ms() / WINDOW_MS + 1) * WINDOW_MS;
    let b = a + WINDOW_MS;
    let msgs = workload(a, b, &macs);
    publish(broker.port, &msgs).await;
    let m = d.metrics.clone();
    wait_until(Duration::from_secs(20), "both windows spooled", || {
        let m = m.clone();
        async move {
            m.privacy.windows_published.load(Relaxed) >= 1
                && m.privacy.windows_suppressed.load(Relaxed) >= 1
                && m.sink.spool_batches.load(Relaxed) >= 2
        }
    })
    .await;
    let mut spool = Vec::new();
    read_tree(&d.spool_dir, &mut spool);
    vm.restart().await;
    wait_until(Duration::from_secs(20), "spool delivered", || {
        let m = m.clone();
        async move { m.sink.spool_points.load(Relaxed) == 0 }
    })
    .await;
    let mut published = String::new();
    while let Some((topic, payload)) = partner.recv(Duration::from_millis(500)).await {
        published.push_str(&format!("{topic} {}\n", String::from_utf8_lossy(&payload)));
    }
    let metrics_text = get_text(&format!("http://127.0.0.1:{metrics_port}/metrics")).await;
    let health_text = get_text(&format!("http://127.0.0.1:{metrics_port}/healthz")).await;
    let status_text = get_text(&format!("http://127.0.0.1:{metrics_port}/api/v1/status")).await;
    let page_text = get_text(&format!("http://127.0.0.1:{metrics_port}/")).await;
    d.stop().await;

    // The estimate, in the store, at window A only.
    let series = vm.export("{__name__=\"footfall_unique_devices\"}").await;
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(
        series[0].metric.get("sensor").map(String::as_str),
        Some("s1")
    );
    assert_eq!(
        series[0].timestamps,
        vec![a],
        "window B (3 devices) is suppressed"
    );
    let est = series[0].values[0];
    // Linear counting reads 50 - c for c register collisions under the run's random key;
    // c >= 5 has odds of about 1e-5.
    assert!((est - DISTINCT as f64).abs() <= 4.0, "estimate {est}");
    assert_eq!(m.privacy.identifiers.load(Relaxed), 2 * 50 + 10 + 3);
    assert_eq!(m.privacy.windows_suppressed.load(Relaxed), 1);
    assert_eq!(m.bad_input_total(), 1, "the truncated payload");

    // Nothing identifying anywhere.
    let needles = needles(&macs);
    let payloads: Vec<Vec<u8>> = msgs.iter().map(|(_, p, _)| p.clone()).collect();
    read_tree(&d.spool_dir, &mut spool);
    let spool = String::from_utf8_lossy(&spool).into_owned();
    assert!(
        spool.contains("unique_devices="),
        "the scan sees the spooled data"
    );
    assert_clean("spool", &spool, &needles, &payloads);
    let state_file = d.spool_dir.with_file_name("state.json");
    let state = std::fs::read_to_string(&state_file).expect("state file saved at stop");
    assert!(
        state.contains("\"sections\""),
        "the scan sees the state file"
    );
    assert_clean("state file", &state, &needles, &payloads);
    vm.force_flush().await;
    let export = http()
        .get(format!("{}/api/v1/export", vm.write_url()))
        .query(&[("match[]", "{__name__=~\".+\"}")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(export.contains("footfall_unique_devices"), "{export}");
    assert_clean("store export", &export, &needles, &payloads);
    assert!(
        published.contains("/footfall/s1 ") && published.contains("\"unique_devices\""),
        "the MQTT output published the estimate: {published}"
    );
    assert_eq!(
        published.matches("\"unique_devices\"").count(),
        1,
        "window B is suppressed on the MQTT output too"
    );
    assert_clean("MQTT output", &published, &needles, &payloads);
    let log = logs::text();
    assert!(log.contains("mqtt connected") && log.contains("bad input skipped"));
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "captured below INFO"
    );
    assert_clean("logs", &log, &needles, &payloads);
    assert!(metrics_text.contains("citysense_privacy_windows_suppressed_total 1"));
    assert_clean("/metrics", &metrics_text, &needles, &payloads);
    assert_clean("/healthz", &health_text, &needles, &payloads);
    let status: serde_json::Value = serde_json::from_str(&status_text).expect("status JSON");
    // The scanner's readings carry no measured value: it is a source here, not a sensor row.
    assert_eq!(status["sources"][0]["bad_input"], 1, "{status_text}");
    assert!(
        status_text.contains("bad input skipped"),
        "the scan sees the log tail: {status_text}"
    );
    assert_clean("/api/v1/status", &status_text, &needles, &payloads);
    assert!(
        page_text.contains("api/v1/status"),
        "the scan sees the page"
    );
    assert_clean("/", &page_text, &needles, &payloads);
}
