//! The hostile-input soak: for a minute (`CITYSENSE_SOAK_SECS`), the real daemon takes valid
//! readings mixed with every kind of bad input that once hurt it (non-ASCII UTC offsets,
//! impossible dates, oversized QoS1 messages, 100,000-character keys and device ids, keys that
//! cannot name a field, broken JSON and UTF-8, serial garbage) while its store answers with
//! faults (503, 500, 302 to a captive portal, 413, 400 for a bad line). At the end the real
//! VictoriaMetrics holds exactly the valid readings, the daemon is still running, every kind of
//! bad input was counted, and its peak RSS stayed bounded.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::serial::sds011_frame;
use support::citysensed::scrape;
use support::config::Config;
use support::fault_proxy::{Fault, FaultProxy};
use support::{free_port, publish, wait_until, Citysensed, Mosquitto, PtyPair, Victoria};
use tokio::io::AsyncWriteExt as _;

/// Peak RSS the daemon may reach during the soak (it runs at about 20 MiB).
const MAX_RSS_KIB: u64 = 96 * 1024;
/// A line longer than this is refused by the proxy with 400, as a store refuses a bad point.
const MAX_LINE: usize = 64 * 1024;
/// Bodies above this get 413 from the proxy.
const MAX_BODY: usize = 48 * 1024;

/// Counted sensors: (sensor tag, readings of pm2_5 published).
type Expected = BTreeMap<String, u64>;

fn config(mqtt: u16, store: &str, tty: &Path, metrics: u16, spool: &Path) -> String {
    Config::new("gw-soak")
        .window(1)
        .grace(2)
        .stats(&["count", "mean"])
        .no_health()
        .assume_clock_synced()
        .mqtt(mqtt, "cs-soak")
        .subscription("soak/{sensor}/json", "json")
        .subscription("soak/{sensor}/ts", "json")
        .timestamp("t", "rfc3339")
        .subscription("tele/{sensor}/SENSOR", "tasmota")
        .subscription_line("time_zone = \"Europe/Amsterdam\"")
        .subscription("v3/{_}/devices/{_}/up", "ttn")
        .section(&format!(
            "[[serial]]\nname = \"sds-soak\"\nport = \"{}\"\n[serial.profile]\nbase = \"sds011\"\n\
             warmup_secs = 0\nprotocol = {{ type = \"sds011\", mode = \"active\" }}",
            tty.display()
        ))
        .output_v2(store)
        .output_line("max_backoff_secs = 1")
        .output_line("max_request_bytes = 65536")
        .spool_dir(spool)
        .metrics(&format!("127.0.0.1:{metrics}"))
        .to_toml()
}

/// What the proxy answers to write request `i` with (gunzipped) `body`.
fn decide(i: usize, body: &str) -> Fault {
    if body.lines().any(|l| l.len() > MAX_LINE) {
        return Fault::Status(400);
    }
    if body.len() > MAX_BODY {
        return Fault::Status(413);
    }
    match i % 12 {
        2 => Fault::Status(503),
        5 => Fault::Redirect,
        7 => Fault::Status(500),
        9 => Fault::Status(429),
        _ => Fault::Pass,
    }
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

fn ttn(dev: &str, received_at: &str, decoded: &str) -> Vec<u8> {
    format!(
        r#"{{"end_device_ids":{{"device_id":"{dev}","application_ids":{{"application_id":"soak"}}}},
"received_at":"{received_at}","uplink_message":{{"f_port":1,"decoded_payload":{decoded}}}}}"#
    )
    .into_bytes()
}

/// One round of traffic: the valid messages (counted into `expected`) and the bad ones.
fn round(n: u64, expected: &mut Expected) -> Vec<(String, Vec<u8>, u8)> {
    let v = (n % 50) as f64 + 0.5;
    let mut good = |sensor: &str, topic: String, payload: Vec<u8>| {
        *expected.entry(sensor.to_string()).or_default() += 1;
        (topic, payload, 1u8)
    };
    let mut msgs = vec![
        good(
            "j0",
            "soak/j0/json".into(),
            format!(r#"{{"pm2_5":{v}}}"#).into(),
        ),
        good(
            "j1",
            "soak/j1/json".into(),
            format!(r#"{{"pm2_5":{v},"note":"ok"}}"#).into(),
        ),
        good(
            "t0",
            "soak/t0/ts".into(),
            format!(r#"{{"pm2_5":{v},"t":"{}"}}"#, now_rfc3339()).into(),
        ),
        good(
            "tas0",
            "tele/tas0/SENSOR".into(),
            format!(r#"{{"Time":"{}","SDS0X1":{{"PM2.5":{v}}}}}"#, now_rfc3339()).into(),
        ),
        good(
            "dev0",
            "v3/soak@ttn/devices/dev0/up".into(),
            ttn("dev0", &now_rfc3339(), &format!(r#"{{"pm2_5":{v}}}"#)),
        ),
    ];
    let bad = |topic: &str, payload: Vec<u8>| (topic.to_string(), payload, 1u8);
    let bad_offset = "2026-12-03T10:00:00+0\u{e9}:00";
    let impossible = "2026-02-31T10:00:00Z";
    msgs.extend([
        // Timestamps that once killed the daemon or were taken as another day.
        bad(
            "soak/t0/ts",
            format!(r#"{{"pm2_5":999,"t":"{bad_offset}"}}"#).into(),
        ),
        bad(
            "soak/t0/ts",
            format!(r#"{{"pm2_5":999,"t":"{impossible}"}}"#).into(),
        ),
        bad(
            "tele/tas0/SENSOR",
            format!(r#"{{"Time":"{bad_offset}","SDS0X1":{{"PM2.5":999}}}}"#).into(),
        ),
        bad(
            "v3/soak@ttn/devices/dev0/up",
            ttn("dev0", bad_offset, r#"{"pm2_5":999}"#),
        ),
        // Broken payloads on counted topics: they must add nothing.
        bad("soak/j0/json", b"{\"pm2_5\": 1".to_vec()),
        bad("soak/j0/json", b"".to_vec()),
        bad("soak/j0/json", vec![0xff, 0xfe, b'{', 0xc3]),
        bad("soak/j1/json", br#"{"pm2_5":"many"}"#.to_vec()),
        bad("soak/j1/json", "[".repeat(100_000).into_bytes()),
    ]);
    if n.is_multiple_of(10) {
        // Over the daemon's packet limit: quarantined, never looped.
        msgs.push(bad("soak/j0/json", vec![b' '; 1024 * 1024]));
        // Points the store refuses: only they may go to dead-letter.
        let key = "k".repeat(100_000);
        msgs.push(bad(
            "soak/junk-key/json",
            format!(r#"{{"{key}":1}}"#).into(),
        ));
        let dev = "d".repeat(100_000);
        msgs.push(bad(
            "v3/soak@ttn/devices/x/up",
            ttn(&dev, &now_rfc3339(), r#"{"pm2_5":1}"#),
        ));
        // Keys that cannot name a field on their own.
        msgs.push(bad(
            "soak/junk-names/json",
            "{\"\":1,\"#\":2,\"\u{e9}t\u{e9}\":3,\"_\":4}"
                .as_bytes()
                .to_vec(),
        ));
    }
    msgs
}

/// Random bytes without the SDS011 header byte, so no garbage can complete a frame.
fn garbage(n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| fastrand::u8(..))
        .map(|b| if b == 0xAA { 0x55 } else { b })
        .collect()
}

/// The last `n` lines of `log`.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_soak_keeps_every_valid_reading() {
    let secs: u64 = std::env::var("CITYSENSE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let broker = Mosquitto::start().await;
    let vm = Victoria::start().await;
    let proxy = FaultProxy::start(format!("http://127.0.0.1:{}", vm.port), Box::new(decide)).await;
    let pty = PtyPair::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = free_port();
    let cfg = config(
        broker.port,
        &proxy.url(),
        &pty.a,
        metrics,
        &dir.path().join("spool"),
    );
    let mut daemon = Citysensed::spawn(&cfg, dir.path(), "info");
    let pid = daemon.pid();
    wait_until(Duration::from_secs(20), "both sources up", || async move {
        let m = support::citysensed::try_scrape(metrics).await;
        m.iter()
            .filter(|(k, _)| k.starts_with("citysense_source_up"))
            .map(|(_, v)| *v)
            .sum::<f64>()
            == 2.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Serial: frames with garbage between them, on a thread of its own.
    let tty = pty.b.clone();
    let serial = tokio::spawn(async move {
        let mut port = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&tty)
            .await
            .expect("open pty");
        let mut frames = 0u64;
        let until = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < until {
            let mut bytes = garbage(fastrand::usize(0..64));
            bytes.extend(sds011_frame(100 + (frames % 50) as u16, 200));
            port.write_all(&bytes).await.expect("write pty");
            frames += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        port.write_all(&garbage(4096)).await.expect("write pty");
        frames
    });

    let mut expected = Expected::new();
    let until = Instant::now() + Duration::from_secs(secs);
    let mut n: u64 = 0;
    while Instant::now() < until {
        publish(broker.port, &round(n, &mut expected)).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            daemon.alive(),
            "daemon died during the soak:\n{}",
            daemon.log()
        );
    }
    let frames = serial.await.expect("serial writer");
    expected.insert("sds-soak".into(), frames);

    // Faults off: everything spooled must now arrive.
    proxy.faults_on.store(false, Relaxed);
    wait_until(Duration::from_secs(60), "spool drained", || async move {
        let m = support::citysensed::try_scrape(metrics).await;
        m.get("citysense_spool_batches").copied() == Some(0.0)
    })
    .await;
    // The last windows close a second or two after the traffic stops: wait (bounded) until
    // the store holds what was sent, then compare exactly.
    let counted_now = || async {
        let got = vm.pm2_5_counts().await;
        let counted: Expected = got
            .iter()
            .filter(|(k, _)| expected.contains_key(*k))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        (got, counted)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (got, counted) = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (got, counted) = counted_now().await;
        if counted == expected || Instant::now() > deadline {
            break (got, counted);
        }
    };
    let m = scrape(metrics).await;
    let rss = peak_rss_kib(pid);
    assert!(daemon.alive(), "daemon died:\n{}", daemon.log());
    assert_eq!(
        counted,
        expected,
        "store counts vs valid readings sent; all in store: {got:?}; proxy passed {}, faulted {}\n{}",
        proxy.counts.passed.load(Relaxed),
        proxy.counts.faulted.load(Relaxed),
        tail(&daemon.log(), 40)
    );
    assert!(rss > 0 && rss < MAX_RSS_KIB, "peak RSS {rss} KiB");
    assert!(
        proxy.counts.faulted.load(Relaxed) > 0,
        "the proxy injected no fault"
    );
    let bad: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("citysense_source_bad_input_total"))
        .map(|(_, v)| *v)
        .sum();
    // Nine bad messages a round, and the oversized one every tenth round.
    let want_bad = 9 * n + n.div_ceil(10);
    assert_eq!(
        bad, want_bad as f64,
        "bad input counted for {n} rounds:\n{m:#?}"
    );
    assert_eq!(
        proxy.counts.portal_gets.load(Relaxed),
        0,
        "a redirect turned a write into a GET"
    );
    let dead: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("citysense_dead_letter_points_total"))
        .map(|(_, v)| *v)
        .sum();
    assert!(dead >= 1.0, "no point went to dead-letter");
    println!(
        "soak: {n} rounds, {frames} frames, {} valid readings, bad input {bad}, dead-letter {dead}, \
         proxy passed {} faulted {} portal GETs {}, peak RSS {rss} KiB",
        expected.values().sum::<u64>(),
        proxy.counts.passed.load(Relaxed),
        proxy.counts.faulted.load(Relaxed),
        proxy.counts.portal_gets.load(Relaxed),
    );
    daemon.terminate(Duration::from_secs(20)).await;
}
