//! Config reload (SIGHUP) of the real daemon against real mosquitto and VictoriaMetrics: under
//! load, with reloads that restart the MQTT source, add a subscription and change statistics
//! and output settings, the store holds exactly the readings published (none lost, none
//! doubled); an invalid config and a restart-only change are refused, counted and logged,
//! and the running config goes on.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::citysensed::{scrape, total};
use support::config::Config;
use support::{free_port, publish, Citysensed, Mosquitto, Victoria};

/// Readings per sensor tag.
type Counts = BTreeMap<String, u64>;

/// The daemon's config: `extra` adds a second subscription, `variant` changes settings a
/// reload applies in place (statistics, keep-alive, which restarts the source, and the
/// uplink's backoff).
fn config(mqtt: u16, vm: &Victoria, metrics: u16, extra: bool, variant: u32) -> String {
    let stats: &[&str] = match variant % 2 {
        0 => &["count", "mean"],
        _ => &["count", "mean", "max"],
    };
    let mut c = Config::new("gw-reload")
        .window(1)
        .grace(2)
        .stats(stats)
        .no_health()
        .assume_clock_synced()
        .mqtt(mqtt, "cs-reload")
        .mqtt_line(&format!("keep_alive_secs = {}", 30 + variant % 3))
        .subscription("load/{sensor}/json", "json");
    if extra {
        c = c.subscription("extra/{sensor}/json", "json");
    }
    c.output_v2(&vm.write_url())
        .output_line(&format!("max_backoff_secs = {}", 1 + variant % 2))
        .spool_dir(Path::new("{spool}"))
        .metrics(&format!("127.0.0.1:{metrics}"))
        .to_toml()
}

fn sighup(pid: u32) {
    let kill = support::find_binary("kill", "procps");
    let sent = Command::new(kill).args(["-HUP", &pid.to_string()]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -HUP failed");
}

fn reloads(m: &BTreeMap<String, f64>, result: &str) -> f64 {
    let key = format!("citysense_config_reloads_total{{result=\"{result}\"}}");
    m.get(&key).copied().unwrap_or(0.0)
}

/// Writes `text` as the daemon's config, sends SIGHUP and waits until the reload counted
/// `result`.
async fn reload(d: &mut Citysensed, port: u16, text: &str, result: &'static str) {
    let dir = d.config.parent().expect("config dir").to_path_buf();
    let text = text.replace("{spool}", &dir.join("spool").display().to_string());
    std::fs::write(&d.config, text).expect("write config");
    let before = reloads(&scrape(port).await, result);
    sighup(d.pid());
    let what = format!("reload counted as {result}");
    d.wait_metrics(port, Duration::from_secs(20), &what, move |m| {
        reloads(m, result) > before
    })
    .await;
}

/// Waits (bounded) until the store holds `expected`, and returns what it holds.
async fn settle(vm: &Victoria, expected: &Counts) -> Counts {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut got = vm.pm2_5_counts().await;
        got.remove("probe");
        if &got == expected || Instant::now() > deadline {
            return got;
        }
    }
}

fn message(topic: &str, i: u64) -> (String, Vec<u8>, u8) {
    let payload = format!(r#"{{"pm2_5":{}.5}}"#, i % 40);
    (topic.to_string(), payload.into_bytes(), 1)
}

/// Publishes probes on the added subscription until one reaches the store.
async fn wait_subscribed(port: u16, vm: &Victoria) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        publish(port, &[message("extra/probe/json", 0)]).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        if vm.pm2_5_counts().await.contains_key("probe") {
            return;
        }
    }
    panic!("the added subscription never delivered");
}

/// Publishes `n` more messages on the added subscription; returns how many so far.
async fn publish_extra(port: u16, so_far: u64, n: u64) -> u64 {
    let batch: Vec<_> = (0..n)
        .map(|i| message("extra/e0/json", so_far + i))
        .collect();
    publish(port, &batch).await;
    so_far + n
}

async fn start(mqtt: u16, vm: &Victoria, metrics: u16, dir: &Path) -> Citysensed {
    let mut d = Citysensed::spawn(&config(mqtt, vm, metrics, false, 0), dir, "info");
    d.wait_metrics(metrics, Duration::from_secs(20), "mqtt up", |m| {
        support::citysensed::total(m, "citysense_source_up") == 1.0
    })
    .await;
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_and_double_nothing() {
    let broker = Mosquitto::start().await;
    let vm = Victoria::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = free_port();
    let mut d = start(broker.port, &vm, metrics, dir.path()).await;
    let hash0 = scrape(metrics).await;
    assert!(
        hash0
            .keys()
            .any(|k| k.starts_with("citysense_config_info{hash=")),
        "{hash0:?}"
    );

    // Load: 10 messages every 40 ms on one topic, from a task of its own, while the main task
    // reloads.
    let port = broker.port;
    let stop = tokio_util::sync::CancellationToken::new();
    let stop_load = stop.clone();
    let load = tokio::spawn(async move {
        let mut sent = 0u64;
        while !stop_load.is_cancelled() {
            let batch: Vec<_> = (0..10).map(|i| message("load/s0/json", sent + i)).collect();
            publish(port, &batch).await;
            sent += 10;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        sent
    });
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 1: add a subscription (the MQTT section changes: the source restarts under load).
    reload(&mut d, metrics, &config(port, &vm, metrics, true, 0), "ok").await;
    // A reload is done once the new source is started, not once its broker took the new
    // subscription: probe until a message on it arrives.
    wait_subscribed(port, &vm).await;
    let mut extra = publish_extra(port, 0, 25).await;
    // 2..=6: statistics, keep-alive (another source restart) and backoff, under load.
    let n_reloads = 6;
    for variant in 1..n_reloads {
        tokio::time::sleep(Duration::from_millis(700)).await;
        reload(
            &mut d,
            metrics,
            &config(port, &vm, metrics, true, variant),
            "ok",
        )
        .await;
        extra = publish_extra(port, extra, 5).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    let sent = load.await.expect("load task");

    let expected = Counts::from([("s0".to_string(), sent), ("e0".to_string(), extra)]);
    let got = settle(&vm, &expected).await;
    let m = scrape(metrics).await;
    let log = d.terminate(Duration::from_secs(20)).await;
    eprintln!("reload under load: {n_reloads} reloads, sent {sent} + {extra}, stored {got:?}");
    assert_eq!(got, expected, "store vs published\n{log}");
    assert_eq!(reloads(&m, "ok"), n_reloads as f64);
    assert_eq!(reloads(&m, "invalid") + reloads(&m, "refused"), 0.0);
    assert!(log.contains("config reloaded"), "{log}");
    let hash1: Vec<_> = m
        .keys()
        .filter(|k| k.starts_with("citysense_config_info"))
        .collect();
    assert_eq!(hash1.len(), 1, "{m:?}");
    assert!(
        !hash0.contains_key(hash1[0]),
        "the hash follows the reloaded file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_and_restart_only_reloads_keep_the_running_config() {
    let broker = Mosquitto::start().await;
    let vm = Victoria::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = free_port();
    let mut d = start(broker.port, &vm, metrics, dir.path()).await;
    let info = |m: &BTreeMap<String, f64>| {
        m.keys()
            .find(|k| k.starts_with("citysense_config_info"))
            .cloned()
    };
    let hash = info(&scrape(metrics).await);
    let good = config(broker.port, &vm, metrics, false, 0);

    // A syntax error: refused with file:line, counted as invalid.
    let broken = good.replace("[output]", "[output\n");
    reload(&mut d, metrics, &broken, "invalid").await;
    // A restart-only key: refused naming it, counted as refused.
    let longer = good.replace("window_secs = 1", "window_secs = 2");
    assert_ne!(longer, good);
    reload(&mut d, metrics, &longer, "refused").await;

    // The running config goes on: readings still arrive, in 1 s windows.
    let msgs: Vec<_> = (0..20).map(|i| message("load/s1/json", i)).collect();
    publish(broker.port, &msgs).await;
    let expected = Counts::from([("s1".to_string(), 20)]);
    let got = settle(&vm, &expected).await;
    let m = scrape(metrics).await;
    let log = d.terminate(Duration::from_secs(20)).await;
    assert_eq!(got, expected, "{log}");
    assert_eq!(reloads(&m, "ok"), 0.0);
    assert_eq!(info(&m), hash, "the hash stays that of the running config");
    let path = dir.path().join("citysense.toml").display().to_string();
    assert!(
        log.lines()
            .any(|l| l.contains("reload") && l.contains(&path) && l.contains(":")),
        "the invalid config's errors are logged with the file:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("need a restart") && l.contains("aggregation.window_secs")),
        "the refused key is named:\n{log}"
    );
    assert!(d.config.exists());
}

/// A source reads its secret files when it is built: a reload after the password file changed
/// (the `[[mqtt]]` section reading the same) restarts the source with the new password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_after_a_changed_password_file_connects_with_the_new_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    let users = dir.path().join("mosquitto.passwd");
    let made = Command::new(support::find_binary("mosquitto_passwd", "mosquitto"))
        .args(["-b", "-c"])
        .arg(&users)
        .args(["gw", "right"])
        .status();
    assert!(made.is_ok_and(|s| s.success()), "mosquitto_passwd failed");
    let broker = Mosquitto::start_with(&format!("password_file {}\n", users.display())).await;
    let vm = Victoria::start().await;
    let metrics = free_port();
    let secret = dir.path().join("mqtt.pass");
    std::fs::write(&secret, "wrong\n").expect("write password");
    let text = Config::new("gw-secret")
        .window(1)
        .grace(2)
        .stats(&["count"])
        .no_health()
        .assume_clock_synced()
        .mqtt(broker.port, "cs-secret")
        .mqtt_line("username = \"gw\"")
        .mqtt_line(&format!("password_file = \"{}\"", secret.display()))
        .subscription("load/{sensor}/json", "json")
        .output_v2(&vm.write_url())
        .spool_dir(Path::new("{spool}"))
        .metrics(&format!("127.0.0.1:{metrics}"))
        .to_toml();
    let mut d = Citysensed::spawn(&text, &dir.path().join("daemon"), "info");
    d.wait_metrics(metrics, Duration::from_secs(20), "a refused connect", |m| {
        total(m, "citysense_source_reconnects_total") >= 1.0
    })
    .await;
    assert_eq!(total(&scrape(metrics).await, "citysense_source_up"), 0.0);

    // The operator fixes the password file and reloads the unchanged config.
    std::fs::write(&secret, "right\n").expect("write password");
    reload(&mut d, metrics, &text, "ok").await;
    d.wait_metrics(metrics, Duration::from_secs(20), "mqtt up", |m| {
        total(m, "citysense_source_up") == 1.0
    })
    .await;
    let msgs: Vec<_> = (0..5).map(|i| message("load/s2/json", i)).collect();
    publish(broker.port, &msgs).await;
    let expected = Counts::from([("s2".to_string(), 5)]);
    let got = settle(&vm, &expected).await;
    let log = d.terminate(Duration::from_secs(20)).await;
    assert_eq!(got, expected, "{log}");
    assert!(log.contains("source stopped by the reload"), "{log}");
}
