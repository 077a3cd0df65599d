//! Smoke tests of `tests/support`: every real peer starts, is reachable on 127.0.0.1 and
//! round-trips data exactly; restarts keep state; a missing binary fails loudly.
use crate::support;

use serde_json::json;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;
use support::{Influxd, Mosquitto, PtyPair, Victoria};

/// 2021-01-01T00:00:00.123456789Z: ns precision, truncated to ms by VictoriaMetrics.
const T1_NS: i64 = 1_609_459_200_123_456_789;
const T2_NS: i64 = 1_609_459_260_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_round_trips_qos1_and_qos0() {
    let broker = Mosquitto::start().await;
    eprintln!("mosquitto ready in {:?}", broker.ready_in);
    let mut sub = support::subscribe(broker.port, "smoke/#", 1).await;
    let msgs = vec![
        ("smoke/one".to_owned(), b"21.5".to_vec(), 1),
        ("smoke/two".to_owned(), vec![0, 159, 255], 0),
    ];
    support::publish(broker.port, &msgs).await;
    for (topic, payload, _) in &msgs {
        let got = sub.recv(Duration::from_secs(5)).await;
        assert_eq!(
            got,
            Some((topic.clone(), payload.clone())),
            "broker log:\n{}",
            broker.log()
        );
    }
    assert_eq!(
        sub.recv(Duration::from_millis(200)).await,
        None,
        "barrier topic leaked into smoke/#"
    );
    assert!(
        broker.log().contains("running"),
        "broker log:\n{}",
        broker.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_persistent_restart_keeps_retained_message() {
    let data = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let mut broker = Mosquitto::start_persistent(data.path(), port).await;
    let retained = ("smoke/retained".to_owned(), b"kept".to_vec(), 1);
    // publish() does not retain, so send a retained message with a client of our own.
    retain(port, &retained.0, &retained.1).await;
    broker.stop();
    let broker = Mosquitto::start_persistent(data.path(), port).await;
    let mut sub = support::subscribe(broker.port, "smoke/retained", 1).await;
    let got = sub.recv(Duration::from_secs(5)).await;
    assert_eq!(
        got,
        Some((retained.0, retained.1)),
        "broker log:\n{}",
        broker.log()
    );
}

async fn retain(port: u16, topic: &str, payload: &[u8]) {
    let (client, mut eventloop) = rumqttc::AsyncClient::new(
        rumqttc::MqttOptions::new("smoke-retain", "127.0.0.1", port),
        10,
    );
    client
        .publish(topic, rumqttc::QoS::AtLeastOnce, true, payload.to_vec())
        .await
        .unwrap();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), eventloop.poll())
            .await
            .unwrap()
            .unwrap();
        if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) = event {
            return;
        }
    }
}

async fn post_lines(url: &str, body: &str) -> u16 {
    let resp = support::http()
        .post(url)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    resp.status().as_u16()
}

fn smoke_lines() -> String {
    format!("smoke,site=a pm25=12.5,pm10=20 {T1_NS}\nsmoke,site=b pm25=7.25 {T2_NS}\n")
}

fn labels(name: &str, site: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("__name__".to_owned(), name.to_owned()),
        ("site".to_owned(), site.to_owned()),
    ])
}

async fn assert_smoke_series(vm: &Victoria) {
    let series = vm.export(r#"{__name__=~"smoke_.*"}"#).await;
    let got: Vec<_> = series
        .iter()
        .map(|s| (s.metric.clone(), s.values.clone(), s.timestamps.clone()))
        .collect();
    let t1_ms = T1_NS / 1_000_000;
    let t2_ms = T2_NS / 1_000_000;
    assert_eq!(
        got,
        vec![
            (labels("smoke_pm10", "a"), vec![20.0], vec![t1_ms]),
            (labels("smoke_pm25", "a"), vec![12.5], vec![t1_ms]),
            (labels("smoke_pm25", "b"), vec![7.25], vec![t2_ms]),
        ],
        "victoria log:\n{}",
        vm.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn victoria_takes_v2_line_protocol_and_exports_it() {
    let vm = Victoria::start().await;
    eprintln!("victoria-metrics ready in {:?}", vm.ready_in);
    let url = format!("{}/api/v2/write?org=o&bucket=b", vm.write_url());
    assert_eq!(post_lines(&url, &smoke_lines()).await, 204);
    assert_smoke_series(&vm).await;
    assert_eq!(
        vm.rows_inserted().await,
        3,
        "two lines with three fields are three rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn victoria_restart_keeps_data_and_port() {
    let mut vm = Victoria::start().await;
    let port = vm.port;
    let url = format!("{}/api/v2/write?org=o&bucket=b", vm.write_url());
    assert_eq!(post_lines(&url, &smoke_lines()).await, 204);
    vm.stop().await;
    let down = support::http()
        .get(format!("{}/health", vm.write_url()))
        .send()
        .await;
    assert!(down.is_err(), "victoria still answers after stop");
    vm.restart().await;
    eprintln!("victoria-metrics restarted in {:?}", vm.ready_in);
    assert_eq!(vm.port, port);
    assert_smoke_series(&vm).await;
    assert_eq!(
        vm.rows_inserted().await,
        0,
        "the counter restarts with the process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxd_write_and_query_rows() {
    let influx = Influxd::start().await;
    eprintln!("influxd ready in {:?}", influx.ready_in);
    influx.create_db("smoke").await;
    let url = format!("{}/write?db=smoke", influx.url());
    assert_eq!(
        post_lines(&url, &smoke_lines()).await,
        204,
        "influxd log:\n{}",
        influx.log()
    );
    let rows = influx
        .query_rows("smoke", "SELECT pm10, pm25 FROM smoke GROUP BY site")
        .await;
    // influxd prints a float field with an integral value as `20`, so compare as f64.
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r["site"].clone(),
                r["time"].as_i64(),
                r["pm10"].as_f64(),
                r["pm25"].as_f64(),
            )
        })
        .collect();
    let expected = vec![
        (json!("a"), Some(T1_NS), Some(20.0), Some(12.5)),
        (json!("b"), Some(T2_NS), None, Some(7.25)),
    ];
    assert_eq!(got, expected, "rows: {rows:?}");
    let v2 = format!("{}/api/v2/write?org=o&bucket=smoke", influx.url());
    assert_eq!(
        post_lines(&v2, &smoke_lines()).await,
        404,
        "1.6 has no v2 write API"
    );
}

/// Reads exactly `n` bytes from `path` on a helper thread, giving up after 5 s.
fn read_n(path: &std::path::Path, n: usize) -> Vec<u8> {
    let mut end = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0; n];
        let _ = tx.send(end.read_exact(&mut buf).map(|()| buf));
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("pty read timed out")
        .unwrap()
}

fn pty_round_trip(pair: &PtyPair, bytes: &[u8]) {
    let mut a = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&pair.a)
        .unwrap();
    let b_path = pair.b.clone();
    let n = bytes.len();
    let reader = std::thread::spawn(move || read_n(&b_path, n));
    // Give the reader a moment to open b; bytes written before it opens are buffered anyway.
    std::thread::sleep(Duration::from_millis(50));
    a.write_all(bytes).unwrap();
    assert_eq!(reader.join().unwrap(), bytes, "socat log:\n{}", pair.log());
}

#[test]
fn pty_pair_passes_raw_bytes_and_survives_replug() {
    let mut pair = PtyPair::start();
    eprintln!("socat ptys ready in {:?}", pair.ready_in);
    // Raw mode: CR, LF, XON/XOFF, ^C and 0xFF must pass untouched (SDS011 frame plus control bytes).
    let frame = [
        0xAA, 0xC0, 0xD4, 0x04, 0x3A, 0x0A, 0xA1, 0x60, 0x1D, 0xAB, b'\r', b'\n', 0x11, 0x13, 0x03,
        0xFF,
    ];
    pty_round_trip(&pair, &frame);
    let old_target = std::fs::read_link(&pair.a).unwrap();
    let mut held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&pair.b)
        .unwrap();
    pair.restart();
    let mut buf = [0u8; 8];
    assert!(
        !matches!(held.read(&mut buf), Ok(n) if n > 0),
        "unplugged pty still delivers data"
    );
    assert!(
        std::fs::read_link(&pair.a).is_ok(),
        "link a missing after replug"
    );
    eprintln!(
        "pty a was {old_target:?}, now {:?}",
        std::fs::read_link(&pair.a).unwrap()
    );
    pty_round_trip(&pair, b"after replug");
}

#[test]
#[should_panic(expected = "install with: apt-get install -y citysense-no-such-package")]
fn missing_binary_fails_loudly() {
    support::find_binary("citysense-no-such-binary", "citysense-no-such-package");
}
