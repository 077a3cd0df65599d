//! `/api/v1/status`: the JSON the status page polls, gathered from state the daemon already
//! keeps (the aggregator's [`StatusBoard`], the sources' and sink's counters, the clock's
//! gauges, the log's tail). Read-only and cheap: a handful of atomic loads, one `Arc` clone of
//! the published sensors, and at most [`MAX_SENSORS`](crate::pipeline::status::MAX_SENSORS)
//! sensors. The schema is documented in the README ("Status API"); it carries what the store
//! gets and sensor states, never a device identifier (privacy test: `tests/it_logs/privacy.rs`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use serde_json::{json, Value};

use super::metrics::Metrics;
use crate::config::Config;
use crate::pipeline::status::{SensorSnapshot, StatusBoard};
use crate::reading::{now_ns, NANOS_PER_SEC};
use crate::telemetry::log_ring::LogRing;
use crate::telemetry::SourceMetrics;

/// Version of the JSON schema; raised on an incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// What a source is connected to, from the config at start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceDetail {
    pub name: String,
    /// Serial: the port's path; MQTT: `host:port`.
    pub address: String,
    /// MQTT: the subscribed topic patterns.
    pub topics: Vec<String>,
}

/// Everything the status endpoint reads.
#[derive(Debug, Clone)]
pub struct StatusState {
    pub metrics: Arc<Metrics>,
    pub board: Arc<StatusBoard>,
    pub sources: Arc<Vec<SourceDetail>>,
    pub gateway: Arc<str>,
}

impl StatusState {
    /// State with no sensors and no configured sources (tests of the endpoint alone).
    pub fn bare(metrics: Arc<Metrics>) -> StatusState {
        StatusState {
            metrics,
            board: StatusBoard::new(),
            sources: Arc::default(),
            gateway: Arc::from(""),
        }
    }

    /// State for the daemon running `cfg`.
    pub fn new(cfg: &Config, metrics: Arc<Metrics>, board: Arc<StatusBoard>) -> StatusState {
        let mut sources: Vec<SourceDetail> = (cfg.mqtt.iter())
            .map(|m| SourceDetail {
                name: m.display_name(),
                address: format!("{}:{}", m.host, m.port()),
                topics: m.subscription.iter().map(|s| s.topic.clone()).collect(),
            })
            .collect();
        sources.extend(cfg.serial.iter().map(|s| SourceDetail {
            name: s.name.clone(),
            address: s.port.display().to_string(),
            topics: Vec::new(),
        }));
        StatusState {
            metrics,
            board,
            sources: Arc::new(sources),
            gateway: Arc::from(cfg.gateway.id.as_str()),
        }
    }
}

/// The whole document.
pub fn document(s: &StatusState) -> Value {
    let now_s = now_ns() / NANOS_PER_SEC;
    let published = s.board.read();
    let board: BTreeMap<&str, f64> = published.board.iter().copied().collect();
    json!({
        "version": SCHEMA_VERSION,
        "now": now_s,
        "gateway": &*s.gateway,
        "window_secs": published.window_secs,
        "sensors": published.sensors.iter().map(sensor).collect::<Vec<_>>(),
        "sensors_not_shown": published.sensors_not_shown,
        "sources": s.metrics.sources().iter().map(|m| source(m, &s.sources)).collect::<Vec<_>>(),
        "uplink": uplink(&s.metrics, now_s),
        "clock": clock(&s.metrics.pipeline.clock),
        "gateway_health": board,
        "log": LogRing::global().entries(),
    })
}

fn finite(v: Option<f64>) -> Value {
    v.filter(|v| v.is_finite()).map_or(Value::Null, Value::from)
}

fn sensor(s: &SensorSnapshot) -> Value {
    let tag = |k: &str| {
        (s.tags.iter())
            .find(|(key, _)| &**key == k)
            .map(|(_, v)| v.to_string())
    };
    let tags: BTreeMap<&str, &str> = s.tags.iter().map(|(k, v)| (&**k, &**v)).collect();
    let name = tag("sensor").unwrap_or_else(|| {
        let all: Vec<&str> = tags.values().copied().collect();
        all.join("/")
    });
    let quantities: Vec<Value> = (s.quantities.iter())
        .map(|q| {
            json!({
                "name": &*q.name,
                "latest": finite(q.latest),
                "last_window": q.last_window.map(|w| json!({
                    "start": w.start / NANOS_PER_SEC,
                    "mean": finite(Some(w.mean)),
                    "min": finite(w.min),
                    "max": finite(w.max),
                })),
                "history": q.means.iter().map(|m| finite(Some(*m))).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "name": name,
        "model": tag("model"),
        "tags": tags,
        "state": s.live.as_ref().map_or("unknown", |l| l.state.label()),
        "age_s": s.live.as_ref().map(|l| (l.age_s * 10.0).round() / 10.0),
        "quantities": quantities,
    })
}

fn source(m: &SourceMetrics, details: &[SourceDetail]) -> Value {
    let detail = details.iter().find(|d| d.name == m.name);
    json!({
        "name": &m.name,
        "kind": m.kind,
        "address": detail.map(|d| d.address.as_str()),
        "topics": detail.map(|d| d.topics.as_slice()).unwrap_or_default(),
        "connected": m.connected.load(Relaxed) == 1,
        "messages": m.messages.load(Relaxed),
        "readings": m.readings.load(Relaxed),
        "bad_input": m.bad_input.load(Relaxed),
        "reconnects": m.reconnects.load(Relaxed),
    })
}

fn uplink(m: &Metrics, now_s: i64) -> Value {
    let s = &m.sink;
    let (ok, failed) = (
        s.uplink_requests_ok.load(Relaxed),
        s.uplink_requests_failed.load(Relaxed),
    );
    let state = output_state(s);
    let when = |t: i64| (t > 0).then_some(t);
    let oldest = s.spool_oldest_ts.load(Relaxed);
    json!({
        "state": state,
        "last_success": when(s.uplink_last_ok_s.load(Relaxed)),
        "last_error": when(s.uplink_last_error_s.load(Relaxed)),
        "requests_ok": ok,
        "requests_failed": failed,
        "backlog_points": s.spool_points.load(Relaxed),
        "backlog_bytes": s.spool_bytes.load(Relaxed),
        "oldest_spooled_age_s": (oldest != 0).then(|| (now_s - oldest / NANOS_PER_SEC).max(0)),
        "outputs": outputs(s, now_s),
    })
}

fn output_state(m: &crate::sinks::SinkMetrics) -> &'static str {
    let tried = m.uplink_requests_ok.load(Relaxed) + m.uplink_requests_failed.load(Relaxed);
    match m.uplink_up.load(Relaxed) {
        1 => "up",
        _ if tried == 0 => "idle",
        _ => "down",
    }
}

/// Each configured output's own delivery: state, last success and error, and what it has
/// not yet received from the spool.
fn outputs(first: &crate::sinks::SinkMetrics, now_s: i64) -> Vec<Value> {
    let mut all = vec![(first.first_output_name(), first)];
    let others = first.other_outputs();
    all.extend(others.iter().map(|(n, m)| (n.clone(), m.as_ref())));
    let when = |t: i64| (t > 0).then_some(t);
    all.into_iter()
        .map(|(name, m)| {
            let oldest = m.output_oldest_ts.load(Relaxed);
            json!({
                "name": name,
                "state": output_state(m),
                "last_success": when(m.uplink_last_ok_s.load(Relaxed)),
                "last_error": when(m.uplink_last_error_s.load(Relaxed)),
                "backlog_points": m.output_backlog_points.load(Relaxed),
                "oldest_undelivered_age_s":
                    (oldest != 0).then(|| (now_s - oldest / NANOS_PER_SEC).max(0)),
            })
        })
        .collect()
}

fn clock(c: &crate::clock::ClockMetrics) -> Value {
    let state = match (c.synchronized.load(Relaxed), c.trusted.load(Relaxed)) {
        (1, _) => "synchronized",
        (_, 1) => "free-running",
        _ => "holding",
    };
    json!({
        "state": state,
        "held_readings": c.held_readings.load(Relaxed),
        "steps": c.steps.load(Relaxed),
    })
}
