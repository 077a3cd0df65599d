//! MQTT source: one task per broker, built on `rumqttc`.
//!
//! The broker keeps a persistent session for our stable client id (`clean_session = false`,
//! QoS1 subscriptions), so readings published while the daemon is down are delivered when it
//! comes back. When a ConnAck says no session is present (first start, broker lost its
//! state) we subscribe again. rumqttc reconnects on the next `poll()` after an error; we wait a
//! capped, jittered backoff before that poll so a dead broker is not hammered.
//!
//! Each topic is resolved to its subscription, quantity and series ids once and cached, so the
//! steady state maps a payload and sends readings without touching the registry.

mod cache;
mod identifiers;
mod mapper;
mod session;
mod subscription;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::MqttConfig;
use crate::reading::{default_measurement, GroupKey, Interner, Reading, Registry, SeriesId};
use crate::sources::SourceError;
use crate::telemetry::{Reject, SourceMetrics};
use subscription::{compile, Subscription};

pub use crate::config::{TopicError, TopicPattern};
pub use mapper::{quantity_name, KeySkips, MapError, Mapper, Sample, TtnOptions};

/// Topics remembered with their resolved series; past this, topics are resolved per message.
const MAX_CACHED_TOPICS: usize = 100_000;
/// Largest payload mapped (TTN uplinks with metadata run to a few KiB); a larger message is
/// acknowledged unparsed and counted as `too_large`.
const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Incoming packet limit handed to rumqttc: the largest remaining length MQTT 3.1.1 can
/// encode, i.e. no limit. rumqttc refuses a larger packet from its fixed header alone by
/// dropping the connection, before it has read the packet id it would need to acknowledge
/// it; the broker then sends the same QoS 1 message again on every reconnect and nothing
/// behind it ever arrives. So every packet is read whole (what the broker's
/// `message_size_limit` lets through bounds the memory this takes) and the size is
/// enforced after the acknowledgement, by [`MAX_PAYLOAD_BYTES`].
const MAX_INCOMING_PACKET: usize = 268_435_455;

/// A configured MQTT source, ready to run.
pub struct MqttSource {
    name: String,
    options: MqttOptions,
    subs: Vec<Subscription>,
    gateway_tags: Vec<(String, String)>,
    registry: Registry,
    metrics: Arc<SourceMetrics>,
    /// Each topic resolved once (see `cache.rs`); cleared with `keys` at [`MAX_CACHED_TOPICS`].
    topics: HashMap<Box<str>, cache::TopicEntry>,
    /// Series cache keys and topic quantities, each distinct one stored once.
    keys: Interner,
    /// [`MAX_CACHED_TOPICS`]; smaller in tests.
    max_topics: usize,
    /// The privacy hub identifier subscriptions hash with; see [`MqttSource::with_privacy`].
    privacy: Option<Arc<crate::privacy::Privacy>>,
    /// The buffer of one payload's samples, kept empty between messages: see [`recycle`].
    samples: Vec<Sample<'static>>,
    /// The (filter, QoS) pairs the broker session holds from the source this one replaced
    /// (`session.rs`); taken at the first ConnAck.
    session_filters: Option<Vec<(String, rumqttc::QoS)>>,
}

impl MqttSource {
    /// Builds the source: reads secrets and TLS files, compiles topic patterns.
    pub fn build(
        cfg: &MqttConfig,
        gateway_id: &str,
        gateway_tags: Vec<(String, String)>,
        registry: Registry,
        metrics: Arc<SourceMetrics>,
    ) -> Result<MqttSource, SourceError> {
        let client_id = cfg
            .client_id
            .clone()
            .unwrap_or_else(|| format!("citysense-{gateway_id}"));
        let mut options = MqttOptions::new(client_id, cfg.host.clone(), cfg.port());
        options.set_clean_session(cfg.clean_session);
        options.set_keep_alive(Duration::from_secs(cfg.keep_alive_secs));
        options.set_max_packet_size(MAX_INCOMING_PACKET, 64 * 1024);
        if let Some(user) = &cfg.username {
            let password = match (&cfg.password, &cfg.password_file) {
                (Some(p), _) => p.clone(),
                (None, Some(f)) => crate::fs_limits::read_secret_file(f)?,
                (None, None) => String::new(),
            };
            options.set_credentials(user.clone(), password);
        }
        if let Some(tls) = &cfg.tls {
            options.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(
                    tls.client_config()
                        .map_err(|p| SourceError::Tls(p.message))?,
                ),
            ));
        }
        let subs = cfg
            .subscription
            .iter()
            .map(compile)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MqttSource {
            name: cfg.display_name(),
            options,
            subs,
            gateway_tags,
            registry,
            metrics,
            topics: HashMap::new(),
            keys: Interner::default(),
            max_topics: MAX_CACHED_TOPICS,
            privacy: None,
            samples: Vec::new(),
            session_filters: None,
        })
    }

    /// Gives identifier subscriptions the hub that hashes with per-window keys. Without it
    /// their payloads are refused (counted as bad input), never mapped as values.
    pub fn with_privacy(mut self, hub: Arc<crate::privacy::Privacy>) -> MqttSource {
        self.privacy = Some(hub);
        self
    }

    /// Runs until `shutdown`; returns when the reading channel closes too.
    pub async fn run(
        mut self,
        out: mpsc::Sender<Reading>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let (client, mut eventloop) = AsyncClient::new(self.options.clone(), 1024);
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut readings = Vec::with_capacity(16);
        tracing::info!(source = %self.name, "mqtt source starting");
        loop {
            let event = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                ev = eventloop.poll() => ev,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff.reset();
                    self.metrics.set_connected(true);
                    tracing::info!(source = %self.name, session_present = ack.session_present, "mqtt connected");
                    self.on_connack(&client, ack.session_present);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if !self
                        .handle_publish(&p.topic, &p.payload, &out, &mut readings)
                        .await
                    {
                        break;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    {
                        tracing::error!(source = %self.name, "broker refused a subscription (check ACLs)");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if !self.wait_after_error(e, &mut backoff, &shutdown).await {
                        break;
                    }
                }
            }
        }
        self.drain_on_stop(&client, &mut eventloop, &out, &mut readings)
            .await;
        tracing::info!(source = %self.name, "mqtt source stopped");
        Ok(())
    }

    /// This source's counters, shared with the aggregator.
    pub fn counts(&self) -> Arc<SourceMetrics> {
        self.metrics.clone()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn subscribe(&self, client: &AsyncClient) {
        for s in &self.subs {
            self.subscribe_one(client, &s.filter, s.qos);
        }
    }

    /// Logs the error and sleeps the backoff; false if shutdown came meanwhile.
    async fn wait_after_error(
        &self,
        e: ConnectionError,
        backoff: &mut Backoff,
        shutdown: &CancellationToken,
    ) -> bool {
        let was_up = self.metrics.connected.load(Relaxed) == 1;
        self.metrics.set_connected(false);
        self.metrics.reconnects.fetch_add(1, Relaxed);
        let delay = backoff.next_delay();
        if was_up || backoff.attempts() == 1 {
            tracing::warn!(source = %self.name, error = %e, retry_in = ?delay, "mqtt connection lost");
        } else {
            tracing::debug!(source = %self.name, error = %e, retry_in = ?delay, "mqtt reconnect failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// Maps one publish and forwards its readings; false when the pipeline has gone away.
    async fn handle_publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        out: &mpsc::Sender<Reading>,
        readings: &mut Vec<Reading>,
    ) -> bool {
        self.metrics.messages.fetch_add(1, Relaxed);
        readings.clear();
        // rumqttc has acknowledged it already (automatic acks): refusing it here cannot make
        // the broker send it again.
        if payload.len() > MAX_PAYLOAD_BYTES {
            self.metrics.bad_input.fetch_add(1, Relaxed);
            let detail = format!("{} bytes, limit {MAX_PAYLOAD_BYTES}", payload.len());
            self.metrics.rejected(Reject::TooLarge, 1, topic, &detail);
            return true;
        }
        // Readings are stamped on the boot clock (the aggregator places them once the wall
        // clock is trusted); identifier hash keys are per wall-clock window, so scanners get
        // wall time (the unsynchronised clock, before sync).
        let identifier = self
            .cache_topic(topic)
            .is_ok_and(|sub| self.subs[sub].identifier.is_some());
        let received = match identifier {
            true => crate::reading::now_ns(),
            false => crate::clock::boot_ns(),
        };
        if let Err(e) = self.map(topic, payload, received, readings) {
            if e.is_skip() {
                self.metrics.skipped.fetch_add(1, Relaxed);
                tracing::debug!(source = %self.name, topic, reason = %e, "payload skipped");
            } else {
                self.metrics.bad_input(topic, &e);
            }
            return true;
        }
        let n = readings.len();
        if readings.is_empty() {
            return true;
        }
        // One wait for room for all of the message's readings, not one per reading.
        let Ok(permits) = out.reserve_many(readings.len()).await else {
            // Closed, or more readings than the channel holds: send them one by one.
            for r in readings.drain(..) {
                if out.send(r).await.is_err() {
                    return false;
                }
            }
            self.metrics.readings.fetch_add(n as u64, Relaxed);
            return true;
        };
        for (permit, r) in permits.zip(readings.drain(..)) {
            permit.send(r);
        }
        self.metrics.readings.fetch_add(n as u64, Relaxed);
        true
    }

    /// Pure part of a publish: payload -> readings with resolved series, appended to `out`.
    /// `received` (boot time) stamps readings whose payload carries no timestamp.
    pub(crate) fn map(
        &mut self,
        topic: &str,
        payload: &[u8],
        received: i64,
        out: &mut Vec<Reading>,
    ) -> Result<(), MapError> {
        let sub = self.cache_topic(topic)?;
        if self.subs[sub].identifier.is_some() {
            return self.map_identifiers(topic, payload, received, out);
        }
        let entry = self.topics.get_mut(topic).ok_or(MapError::UnmatchedTopic)?;
        let sub = &self.subs[sub];
        let mut samples = recycle(std::mem::take(&mut self.samples));
        // A clone (no allocation): samples may borrow it while a miss adds to `keys`.
        let topic_quantity = entry.quantity().and_then(|q| self.keys.name(q)).cloned();
        let mut skips = KeySkips::default();
        let mapped =
            (sub.mapper).map_counted(payload, topic_quantity.as_deref(), &mut samples, &mut skips);
        if !skips.is_empty() {
            report_skips(&self.metrics, topic, skips);
        }
        for s in samples.iter().filter(|_| mapped.is_ok()) {
            let key = series_cache_key(&s.quantity, &s.tags);
            let id = match self.keys.get(&key).and_then(|k| entry.series(k)) {
                Some(id) => id,
                None => {
                    let Some(id) =
                        resolve_series(&self.registry, sub, &self.gateway_tags, topic, s)
                    else {
                        self.metrics.series_limit(topic);
                        continue;
                    };
                    entry.add_series(self.keys.intern(&key), id);
                    id
                }
            };
            out.push(match s.ts {
                Some(ts) => Reading::new(id, s.value, ts),
                None => Reading::received(id, s.value, received),
            });
        }
        samples.clear();
        self.samples = recycle(samples);
        mapped
    }

    /// Resolves `topic` to its subscription (returned) and quantity once; later messages
    /// find it cached.
    fn cache_topic(&mut self, topic: &str) -> Result<usize, MapError> {
        if let Some(entry) = self.topics.get(topic) {
            return Ok(entry.sub());
        }
        let (sub, quantity) = self
            .subs
            .iter()
            .enumerate()
            .find_map(|(i, s)| Some((i, s.pattern.captures(topic)?.quantity.map(quantity_name))))
            .ok_or(MapError::UnmatchedTopic)?;
        if self.topics.len() >= self.max_topics {
            // Key ids live in the entries only: both go together.
            self.topics.clear();
            self.keys.clear();
        }
        let quantity = quantity.map(|q| self.keys.intern(&q));
        self.topics
            .insert(topic.into(), cache::TopicEntry::new(sub, quantity));
        Ok(sub)
    }
}

/// Counts the keys of one message that did not become fields.
fn report_skips(metrics: &SourceMetrics, topic: &str, skips: KeySkips) {
    let counts = [
        (
            Reject::InvalidKey,
            skips.invalid,
            "keys with no letter or digit skipped",
        ),
        (
            Reject::DuplicateKey,
            skips.duplicate,
            "keys naming a field another key took skipped",
        ),
    ];
    for (reason, n, detail) in counts.into_iter().filter(|c| c.1 > 0) {
        metrics.rejected(reason, u64::from(n), topic, &detail);
    }
}

/// An empty vector of samples with another lifetime, in the same allocation: samples borrow
/// their payload, so the buffer cannot be kept with them in it, but std collects a vector's
/// `into_iter()` into one of a same-sized type in place. This saves an allocation per message;
/// were std ever to stop doing so, it would only cost that allocation again.
fn recycle<'b>(samples: Vec<Sample<'_>>) -> Vec<Sample<'b>> {
    debug_assert!(samples.is_empty());
    // `filter_map` because it changes the item type (the lifetime); no item ever passes.
    #[allow(clippy::unnecessary_filter_map)]
    samples.into_iter().filter_map(|_| None).collect()
}

/// Cache key of a sample's series within its topic: the quantity alone in the common case
/// (no allocation), quantity plus payload tag values otherwise.
fn series_cache_key<'a>(quantity: &'a str, tags: &[(&'static str, String)]) -> Cow<'a, str> {
    if tags.is_empty() {
        return Cow::Borrowed(quantity);
    }
    let mut key = quantity.to_string();
    for (k, v) in tags {
        key.push('\0');
        key.push_str(k);
        key.push('=');
        key.push_str(v);
    }
    Cow::Owned(key)
}

/// Interns the series of `sample` from `topic` (which `sub` matched). Tag precedence:
/// payload, topic, subscription, gateway.
fn resolve_series(
    registry: &Registry,
    sub: &Subscription,
    gateway_tags: &[(String, String)],
    topic: &str,
    sample: &Sample<'_>,
) -> Option<SeriesId> {
    let topic_tags = sub
        .pattern
        .captures(topic)
        .map(|c| c.tags)
        .unwrap_or_default();
    let measurement = sub
        .measurement
        .as_deref()
        .unwrap_or_else(|| default_measurement(&sample.quantity));
    let tags = sample
        .tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .chain(
            topic_tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .chain(sub.tags.iter().cloned())
        .chain(gateway_tags.iter().cloned());
    let group = registry.group(GroupKey::new(measurement, tags));
    let kind = sub
        .kinds
        .get(&*sample.quantity)
        .copied()
        .unwrap_or_default();
    registry.series_with_kind(group, &sample.quantity, kind)
}

#[cfg(test)]
mod tests;
