//! Three outputs from one spool, all against real servers: store A and store B (two
//! VictoriaMetrics) and an MQTT output to mosquitto with a live subscriber. Store A is stopped
//! for a while: every window that closes meanwhile reaches B and the subscriber within a few
//! seconds of its close, checked while A is still down; A catches up once it is back; at the
//! end all three hold exactly the expected windows, none lost, none with two values.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::mqtt_output::windows;
use crate::outputs::{outputs, publish_for, store_counts, wait_all_delivered, Expected, SENSORS};
use citysense::spool::Spool;
use support::config::Config;
use support::{now_ms, subscribe, Daemon, Mosquitto, Subscriber, Victoria};

const GW: &str = "gw-outage";
/// A window closes at its end (1 s windows) plus the 1 s grace.
const CLOSE_AFTER_MS: i64 = 2000;
/// How long after its close a window must be at store B and at the subscriber.
const REAL_TIME_MS: i64 = 5000;
/// How long store A stays down.
const A_DOWN_MS: i64 = 11_000;

fn config(port: u16, a: &str, b: &str) -> String {
    let mqtt = format!(
        "\n\n[[output]]\nname = \"displays\"\napi = \"mqtt\"\nhost = \"127.0.0.1\"\n\
         port = {port}\nmax_backoff_secs = 1\nfilter = {{ measurements = [\"air_quality\"] }}"
    );
    Config::new(GW)
        .window(1)
        .grace(1)
        .stats(&["count", "mean"])
        .mqtt(port, "cs-outage-source")
        .subscription("city/{sensor}/air", "json")
        .timestamp("ts", "unix_ms")
        .section(&(outputs(a, b) + &mqtt))
        .fsync(true)
        .assume_clock_synced()
        .to_toml()
}

/// (sensor, window start ms) -> when it was first seen (ms), at store B and at the subscriber.
#[derive(Default)]
struct Seen {
    store_b: BTreeMap<(String, i64), i64>,
    mqtt: BTreeMap<(String, i64), i64>,
    /// Every window received over MQTT with its count.
    mqtt_windows: Expected,
}

impl Seen {
    /// Adds what store B holds and what the subscriber received since the last call. A window
    /// received twice over MQTT (QoS 1 may repeat) must hold the same count both times.
    async fn poll(&mut self, vm_b: &Victoria, live: &mut Subscriber) {
        let now = now_ms();
        for key in store_counts(vm_b, true).await.into_keys() {
            self.store_b.entry(key).or_insert(now);
        }
        while let Some(msg) = live.recv(Duration::from_millis(1)).await {
            for (key, count) in windows(GW, std::slice::from_ref(&msg)) {
                self.mqtt.entry(key.clone()).or_insert(now);
                if let Some(prev) = self.mqtt_windows.insert(key.clone(), count) {
                    assert_eq!(prev, count, "MQTT window {key:?} with two values");
                }
            }
        }
    }
}

/// Asserts that each (sensor, window) closed in `(from, to]` was seen within `REAL_TIME_MS` of
/// its close; returns the largest such delay.
fn assert_real_time(what: &str, seen: &BTreeMap<(String, i64), i64>, from: i64, to: i64) -> i64 {
    let first = (from - CLOSE_AFTER_MS) / 1000 * 1000 + 1000;
    let mut worst = 0;
    for w in (first..)
        .step_by(1000)
        .take_while(|w| w + CLOSE_AFTER_MS <= to)
    {
        for s in 0..SENSORS {
            let key = (format!("s{s}"), w);
            let close = w + CLOSE_AFTER_MS;
            let at = seen.get(&key).unwrap_or_else(|| {
                panic!("{what} lacks {key:?} (closed {} ms ago)", now_ms() - close)
            });
            let delay = at - close;
            assert!(
                delay <= REAL_TIME_MS,
                "{what} got {key:?} {delay} ms after its close"
            );
            worst = worst.max(delay);
        }
    }
    worst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_a_down_delays_neither_store_b_nor_mqtt_and_all_three_end_exact() {
    let broker = Mosquitto::start().await;
    let mut vm_a = Victoria::start().await;
    let vm_b = Victoria::start().await;
    let mut live = subscribe(broker.port, "citysense/#", 1).await;
    let mut d = Daemon::start(&config(broker.port, &vm_a.write_url(), &vm_b.write_url()));
    d.wait_connected(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let publisher = tokio::spawn(publish_for(broker.port, 16));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    vm_a.stop().await;
    let down_at = now_ms();
    let mut seen = Seen::default();
    while now_ms() < down_at + A_DOWN_MS {
        seen.poll(&vm_b, &mut live).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Still down: every window closed in the outage's first part (the rest has not had its
    // few seconds yet) is at B and at the subscriber, each within a few seconds of its close.
    let checked_to = down_at + A_DOWN_MS - REAL_TIME_MS;
    let worst_b = assert_real_time("store B", &seen.store_b, down_at, checked_to);
    let worst_mqtt = assert_real_time("subscriber", &seen.mqtt, down_at, checked_to);
    let backlog = Spool::inspect_outputs(&d.spool_dir).expect("inspect");
    assert!(
        backlog[0].name == "a" && backlog[0].batches > 0,
        "{backlog:?}"
    );

    vm_a.restart().await;
    let up_at = Instant::now();
    let expected = publisher.await.expect("publisher");
    wait_all_delivered(&d.spool_dir, 3, &expected).await;
    let caught_up = up_at.elapsed();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.mqtt_windows != expected && Instant::now() < deadline {
        seen.poll(&vm_b, &mut live).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.stop().await;
    eprintln!(
        "outage {A_DOWN_MS} ms: worst delay after close B {worst_b} ms, MQTT {worst_mqtt} ms; \
         A caught up {caught_up:?} after restart; {} windows",
        expected.len()
    );
    assert!(expected.len() >= 14 * SENSORS, "{} windows", expected.len());
    assert_eq!(store_counts(&vm_a, true).await, expected, "store A");
    assert_eq!(store_counts(&vm_b, true).await, expected, "store B");
    assert_eq!(seen.mqtt_windows, expected, "MQTT subscriber");
}
