//! The MQTT output: publishes every point of its spool position onwards, one message per
//! point (see `mqtt_payload.rs`), QoS 1, and advances its position only when the broker has
//! sent a PUBACK for every message of the batches peeked. A status topic carries a retained
//! `online` after each connect and `offline` as the last will (and at a clean stop).
//!
//! Each connection gets a fresh client and event loop: PUBACKs are counted per connection,
//! so after a drop the unacknowledged batches are published again from the spool (at least
//! once; a repeated window carries the same values) rather than by the client's own resend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, ClientError, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::filter::LineFilter;
use super::mqtt_payload::{message, Message, DEFAULT_TOPIC};
use super::{lock, SharedSpool, SinkError, SinkEvents, DRAIN_DEADLINE};
use crate::config::{MqttPayload, OutputConfig};
use crate::spool::Batch;

/// Most payload bytes peeked per round.
const ROUND_BYTES: usize = 1 << 20;
/// Longest wait for the broker's ConnAck.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BASE_BACKOFF: Duration = Duration::from_millis(500);

/// Delivers one output to an MQTT broker; cheap to clone.
#[derive(Clone)]
pub struct MqttOut {
    inner: Arc<Inner>,
}

struct Inner {
    options: MqttOptions,
    /// Shown in logs: `mqtt://host:port`.
    shown: String,
    spool: SharedSpool,
    out: usize,
    events: Arc<SinkEvents>,
    filter: LineFilter,
    template: String,
    format: MqttPayload,
    retain: bool,
    status_topic: String,
    window_ns: i64,
    max_backoff: Duration,
}

/// Why a connection ended.
enum Ended {
    /// Stop requested and done (or the drain deadline passed).
    Stopped,
    Failed(String),
}

impl MqttOut {
    /// Builds the output `name` (number `out` in the spool); reads its secret and TLS files.
    pub fn build(
        cfg: &OutputConfig,
        name: &str,
        gateway: &str,
        window_secs: u64,
        spool: SharedSpool,
        events: Arc<SinkEvents>,
        out: usize,
    ) -> Result<MqttOut, SinkError> {
        let host = cfg.host.clone().unwrap_or_default();
        let port = cfg
            .port
            .unwrap_or(if cfg.tls.is_some() { 8883 } else { 1883 });
        let id = (cfg.client_id.clone()).unwrap_or_else(|| format!("citysense-{gateway}-{name}"));
        let status_topic =
            (cfg.status_topic.clone()).unwrap_or_else(|| format!("citysense/{gateway}/status"));
        let mut options = MqttOptions::new(id, host.clone(), port);
        options.set_clean_session(true);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(64 * 1024, 1 << 20);
        options.set_last_will(LastWill::new(
            &status_topic,
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        if let Some(user) = &cfg.username {
            let password = match (&cfg.password, &cfg.password_file) {
                (Some(p), _) => p.clone(),
                (None, Some(f)) => crate::fs_limits::read_secret_file(f)
                    .map_err(|e| SinkError::Config(format!("output {name} password_file: {e}")))?,
                (None, None) => String::new(),
            };
            options.set_credentials(user.clone(), password);
        }
        if let Some(tls) = &cfg.tls {
            let tls = tls
                .client_config()
                .map_err(|p| SinkError::Config(p.message))?;
            options.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls),
            ));
        }
        Ok(MqttOut {
            inner: Arc::new(Inner {
                options,
                shown: format!("mqtt://{host}:{port}"),
                spool,
                out,
                events,
                filter: LineFilter::new(cfg.filter.clone()),
                template: cfg.topic.clone().unwrap_or_else(|| DEFAULT_TOPIC.into()),
                format: cfg.payload,
                retain: cfg.retain,
                status_topic,
                window_ns: i64::try_from(window_secs)
                    .unwrap_or(i64::MAX / 2)
                    .saturating_mul(1_000_000_000),
                max_backoff: Duration::from_secs(cfg.max_backoff_secs.max(1)),
            }),
        })
    }

    pub fn events(&self) -> &SinkEvents {
        &self.inner.events
    }

    /// Copies the spool's size and this output's backlog into the metrics.
    pub fn publish_stats(&self) {
        super::delivery::publish_stats(&self.inner.spool, &self.inner.events, self.inner.out);
    }

    /// Connects, delivers, reconnects with backoff until `stop`; then drains for at most
    /// [`DRAIN_DEADLINE`] and says `offline`.
    pub async fn run(self, wake: Arc<Notify>, stop: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            let started = Instant::now();
            let (client, mut events) = AsyncClient::new(self.inner.options.clone(), 256);
            match self
                .session(&client, &mut events, &wake, &stop, failures)
                .await
            {
                Ended::Stopped => {
                    self.goodbye(&client, &mut events).await;
                    return;
                }
                Ended::Failed(reason) => {
                    let ev = &self.inner.events;
                    ev.request_failed(started.elapsed());
                    let wait = crate::backoff::backoff(
                        failures,
                        BASE_BACKOFF,
                        self.inner.max_backoff,
                        fastrand::f64(),
                    );
                    failures = failures.saturating_add(1);
                    ev.retry(&self.inner.shown, &reason, wait);
                    if stop.is_cancelled() {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }
        }
    }

    /// One connection: ConnAck, the birth message, then rounds until stop or an error.
    async fn session(
        &self,
        client: &AsyncClient,
        events: &mut EventLoop,
        wake: &Notify,
        stop: &CancellationToken,
        failures: u32,
    ) -> Ended {
        if let Err(e) = connack(events).await {
            return Ended::Failed(e);
        }
        let birth = Message {
            topic: self.inner.status_topic.clone(),
            payload: b"online".to_vec(),
        };
        if let Err(e) = publish_all(client, events, vec![birth], true).await {
            return Ended::Failed(e);
        }
        let mut failures = failures;
        let mut deadline: Option<Instant> = None;
        loop {
            if deadline.is_none() && stop.is_cancelled() {
                deadline = Some(Instant::now() + DRAIN_DEADLINE);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.inner.events.drain_deadline_reached();
                return Ended::Stopped;
            }
            let batches = self.peek().await;
            let Some(last) = batches.last().map(|b| b.id) else {
                if deadline.is_some() {
                    return Ended::Stopped;
                }
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    // Keeps the connection alive (pings) and notices a drop.
                    polled = events.poll() => if let Err(e) = polled {
                        return Ended::Failed(e.to_string());
                    },
                }
                continue;
            };
            let started = Instant::now();
            let (msgs, points, bytes) = self.messages(&batches);
            if let Err(e) = publish_all(client, events, msgs, self.inner.retain).await {
                return Ended::Failed(e);
            }
            self.inner
                .events
                .request_ok(started.elapsed(), points, bytes, failures);
            failures = 0;
            self.ack(last).await;
        }
    }

    /// The messages of `batches` that pass the filter, their count and payload bytes.
    fn messages(&self, batches: &[Batch]) -> (Vec<Message>, u64, usize) {
        let i = &self.inner;
        let lines = batches
            .iter()
            .flat_map(|b| b.payload.split(|c| *c == b'\n'));
        let msgs: Vec<Message> = lines
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace) && i.filter.keeps(l))
            .filter_map(|l| message(l, &i.template, i.format, i.window_ns))
            .collect();
        let bytes = msgs.iter().map(|m| m.payload.len()).sum();
        let points = msgs.len() as u64;
        (msgs, points, bytes)
    }

    async fn peek(&self) -> Vec<Batch> {
        let spool = self.inner.spool.clone();
        let out = self.inner.out;
        let res =
            tokio::task::spawn_blocking(move || lock(&spool).peek_many_for(out, ROUND_BYTES)).await;
        match res {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                self.inner.events.spool_read_failed(&e);
                tokio::time::sleep(Duration::from_secs(1)).await;
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    async fn ack(&self, last: u64) {
        let spool = self.inner.spool.clone();
        let out = self.inner.out;
        match tokio::task::spawn_blocking(move || lock(&spool).ack_for(out, last)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.inner.events.ack_failed(&e),
            Err(e) => self.inner.events.ack_task_failed(&e),
        }
        self.publish_stats();
    }

    /// A clean stop: `offline` (retained) replaces the birth message, then DISCONNECT.
    async fn goodbye(&self, client: &AsyncClient, events: &mut EventLoop) {
        let bye = Message {
            topic: self.inner.status_topic.clone(),
            payload: b"offline".to_vec(),
        };
        let sent = tokio::time::timeout(
            Duration::from_secs(2),
            publish_all(client, events, vec![bye], true),
        );
        let _ = sent.await;
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(1), events.poll()).await;
    }
}

/// Polls until the broker's ConnAck (accepted), bounded by [`CONNECT_TIMEOUT`].
async fn connack(events: &mut EventLoop) -> Result<(), String> {
    let wait = async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, wait).await {
        Ok(r) => r,
        Err(_) => Err("no CONNACK within 10 s".into()),
    }
}

/// Publishes `msgs` (QoS 1) and returns once the broker acknowledged every one of them:
/// the client is fresh per connection, so each PUBACK seen here is one of ours.
async fn publish_all(
    client: &AsyncClient,
    events: &mut EventLoop,
    msgs: Vec<Message>,
    retain: bool,
) -> Result<(), String> {
    let total = msgs.len();
    let mut queue = msgs.into_iter().peekable();
    let mut acked = 0;
    while acked < total {
        while let Some(m) = queue.peek() {
            match client.try_publish(m.topic.clone(), QoS::AtLeastOnce, retain, m.payload.clone()) {
                Ok(()) => {
                    queue.next();
                }
                Err(ClientError::TryRequest(_)) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        match events.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}
