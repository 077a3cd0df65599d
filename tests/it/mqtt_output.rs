//! The MQTT output against a real mosquitto, beside a store output to a real
//! VictoriaMetrics: a subscriber receives every window as one JSON message per point while
//! the store gets them too; after a SIGKILL of the daemon a late subscriber sees the
//! retained latest window of each sensor and the retained last will `offline`.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::citysensed::Citysensed;
use support::config::Config;
use support::mosquitto::subscribe;
use support::{now_ms, publish, Mosquitto, Victoria};

const SENSORS: usize = 3;
const GW: &str = "gw-mqtt-out";
/// (sensor, window start ms) -> readings in that window.
type Expected = BTreeMap<(String, i64), u64>;

fn config(port: u16, store: &str, spool: &std::path::Path) -> String {
    let outputs = format!(
        "[[output]]\nname = \"store\"\napi = \"v2\"\nurl = \"{store}\"\nbucket = \"b\"\n\
         max_backoff_secs = 1\n\n\
         [[output]]\nname = \"displays\"\napi = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         retain = true\nmax_backoff_secs = 1\nfilter = {{ measurements = [\"air_quality\"] }}"
    );
    Config::new(GW)
        .window(1)
        .grace(1)
        .stats(&["count", "mean"])
        .mqtt(port, "cs-mqtt-out-source")
        .subscription("city/{sensor}/air", "json")
        .timestamp("ts", "unix_ms")
        .section(&outputs)
        .spool_dir(spool)
        .fsync(true)
        .assume_clock_synced()
        .to_toml()
}

/// (sensor, window start ms) -> pm2_5_count of the JSON messages of `gateway` received.
pub(crate) fn windows(gateway: &str, msgs: &[(String, Vec<u8>)]) -> Expected {
    let prefix = format!("citysense/{gateway}/air_quality/");
    let mut got = Expected::new();
    for (topic, payload) in msgs {
        if !topic.starts_with(&prefix) {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(payload).expect("JSON payload");
        assert_eq!(v["measurement"], "air_quality");
        let sensor = v["tags"]["sensor"]
            .as_str()
            .expect("sensor tag")
            .to_string();
        assert_eq!(topic, &format!("{prefix}{sensor}"));
        let start = v["window"]["start_ms"].as_i64().expect("start_ms");
        assert_eq!(v["window"]["end_ms"].as_i64(), Some(start + 1000));
        assert!(v["window"]["start"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z')));
        let count = v["fields"]["pm2_5_count"].as_u64().expect("pm2_5_count");
        got.insert((sensor, start), count);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_reach_subscribers_and_a_late_one_sees_retained_data_and_the_last_will() {
    let broker = Mosquitto::start().await;
    let vm = Victoria::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(broker.port, &vm.write_url(), &dir.path().join("spool"));
    let mut live = subscribe(broker.port, "citysense/#", 1).await;
    let mut d = Citysensed::spawn(&cfg, dir.path(), "info");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !d.log().contains("mqtt connected") {
        assert!(
            Instant::now() < deadline,
            "daemon did not connect:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut expected = Expected::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let ts = now_ms();
        let msgs: Vec<_> = (0..SENSORS)
            .map(|s| {
                let sensor = format!("s{s}");
                *expected
                    .entry((sensor.clone(), ts - ts % 1000))
                    .or_default() += 1;
                let payload = format!(r#"{{"pm2_5": {}, "ts": {ts}}}"#, s * 10 + 1);
                (format!("city/{sensor}/air"), payload.into_bytes(), 1)
            })
            .collect();
        publish(broker.port, &msgs).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    // The live subscriber gets every window, in real time, and the birth message.
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while windows(GW, &received) != expected {
        assert!(
            Instant::now() < deadline,
            "subscriber got {:?}\n{}",
            windows(GW, &received),
            d.log()
        );
        if let Some(m) = live.recv(Duration::from_millis(200)).await {
            received.push(m);
        }
    }
    let status = "citysense/gw-mqtt-out/status".to_string();
    assert!(received.contains(&(status.clone(), b"online".to_vec())));
    assert!(
        received.iter().all(|(t, _)| !t.contains("/sensor_health/")),
        "the filter sends only air_quality"
    );
    drop(live);

    // The store output got every window as well (it may be a moment behind): before the
    // kill, or what it had not yet sent would wait in the spool for a start that never comes.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut stored = Expected::new();
        for s in vm.export("air_quality_pm2_5_count").await {
            for (t, v) in s.timestamps.iter().zip(&s.values) {
                stored.insert((s.metric["sensor"].clone(), *t), *v as u64);
            }
        }
        if stored == expected || Instant::now() > deadline {
            assert_eq!(stored, expected, "store output");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // SIGKILL: no DISCONNECT, so the broker publishes the last will.
    let log = d.kill();
    let mut late = subscribe(broker.port, "citysense/#", 1).await;
    let mut retained = BTreeMap::new();
    while let Some((t, p)) = late.recv(Duration::from_secs(2)).await {
        retained.insert(t, p);
    }
    assert_eq!(
        retained.get(&status).map(Vec::as_slice),
        Some(&b"offline"[..]),
        "{log}"
    );
    for s in 0..SENSORS {
        let sensor = format!("s{s}");
        let topic = format!("citysense/gw-mqtt-out/air_quality/{sensor}");
        let latest = expected.keys().filter(|k| k.0 == sensor).map(|k| k.1).max();
        let got = retained
            .get(&topic)
            .map(|p| windows(GW, &[(topic.clone(), p.clone())]));
        let got_start = got.and_then(|w| w.keys().next().map(|k| k.1));
        assert_eq!(got_start, latest, "retained window of {sensor}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mqtt_output_speaks_tls_with_the_configured_ca_and_line_protocol() {
    let certs = tempfile::tempdir().expect("temp dir");
    let p = certs.path();
    support::certs::make_certs(p);
    let tls_port = support::free_port();
    let (ca, cert, key) = (p.join("ca.pem"), p.join("server.pem"), p.join("server.key"));
    let broker = Mosquitto::start_tls(tls_port, &ca, &cert, &key).await;
    let mut sub = subscribe(broker.port, "tls/#", 1).await;
    let output = format!(
        "[[output]]\nname = \"d\"\napi = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {tls_port}\n\
         topic = \"tls/{{measurement}}/{{sensor}}\"\npayload = \"line_protocol\"\n\
         tls = {{ ca_file = \"{}\" }}",
        ca.display()
    );
    let cfg = Config::new("gw-mqtt-tls")
        .window(1)
        .grace(1)
        .stats(&["count"])
        .mqtt(broker.port, "cs-mqtt-tls-source")
        .subscription("city/{sensor}/air", "json")
        .timestamp("ts", "unix_ms")
        .section(&output)
        .assume_clock_synced()
        .to_toml();
    let mut d = support::Daemon::start(&cfg);
    d.wait_connected(1).await;
    let ts = now_ms();
    let payload = format!(r#"{{"pm2_5": 7, "ts": {ts}}}"#).into_bytes();
    publish(broker.port, &[("city/s0/air".to_string(), payload, 1)]).await;
    let want = format!(" {}\n", (ts - ts % 1000) * 1_000_000);
    let mut got = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    while got.is_none() && Instant::now() < deadline {
        if let Some((t, p)) = sub.recv(Duration::from_millis(200)).await {
            got = (t == "tls/air_quality/s0").then_some(String::from_utf8_lossy(&p).into_owned());
        }
    }
    d.stop().await;
    let line = got.expect("the window arrived over the TLS output");
    assert!(
        line.starts_with("air_quality,") && line.ends_with(&want),
        "{line}"
    );
}
