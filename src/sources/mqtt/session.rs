//! The broker session across a source's stop and a replacement's start (a reload that
//! changed the `[[mqtt]]` section).
//!
//! - At stop, rumqttc has often read and acknowledged a bunch of publishes it hands out one
//!   per `poll()`: they are mapped and sent on before DISCONNECT, or the broker, which
//!   counts them delivered, would never send them again ([`MqttSource::drain_on_stop`]).
//! - A replacement with the same broker and client id resumes the old session: the broker
//!   keeps the old subscriptions and sends what was queued meanwhile. It subscribes to the
//!   filters the old one lacked and unsubscribes those it dropped, leaving the unchanged
//!   ones alone (subscribing again would resend their retained messages as new readings).

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, QoS};
use tokio::sync::mpsc;

use super::subscription::compile;
use super::MqttSource;
use crate::config::MqttConfig;
use crate::reading::Reading;

/// Longest the stop spends handing on what was read and sending DISCONNECT.
const STOP_DRAIN: Duration = Duration::from_secs(2);

impl MqttSource {
    /// Marks this source as the replacement of one running `old` (a reload): when both talk
    /// to the same broker with the same client id and a persistent session, the session's
    /// subscriptions are brought in line with this one's at the first connect.
    pub fn replacing(mut self, old: &MqttConfig, new: &MqttConfig) -> MqttSource {
        let same = old.host == new.host
            && old.port() == new.port()
            && old.client_id == new.client_id
            && !old.clean_session
            && !new.clean_session;
        if same {
            let filters = old.subscription.iter().filter_map(|s| compile(s).ok());
            self.session_filters = Some(filters.map(|s| (s.filter, s.qos)).collect());
        }
        self
    }

    /// After a ConnAck: subscribes when the broker has no session; when it resumes the
    /// session of a source this one replaced, subscribes and unsubscribes the difference.
    pub(super) fn on_connack(&mut self, client: &AsyncClient, session_present: bool) {
        let previous = self.session_filters.take();
        let Some(previous) = previous.filter(|_| session_present) else {
            if !session_present {
                self.subscribe(client);
            }
            return;
        };
        for s in &self.subs {
            if !previous.contains(&(s.filter.clone(), s.qos)) {
                self.subscribe_one(client, &s.filter, s.qos);
            }
        }
        for (filter, _) in &previous {
            if !self.subs.iter().any(|s| &s.filter == filter) {
                if let Err(e) = client.try_unsubscribe(filter.clone()) {
                    tracing::error!(source = %self.name, filter, error = %e, "unsubscribe failed");
                }
            }
        }
    }

    pub(super) fn subscribe_one(&self, client: &AsyncClient, filter: &str, qos: QoS) {
        if let Err(e) = client.try_subscribe(filter, qos) {
            tracing::error!(source = %self.name, filter, error = %e, "subscribe failed");
        }
    }

    /// At stop: hands on the publishes already read (and acknowledged), then DISCONNECT (the
    /// broker keeps the session without waiting for keep-alive to expire).
    pub(super) async fn drain_on_stop(
        &mut self,
        client: &AsyncClient,
        eventloop: &mut EventLoop,
        out: &mpsc::Sender<Reading>,
        readings: &mut Vec<Reading>,
    ) {
        let connected = self
            .metrics
            .connected
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1;
        self.metrics.set_connected(false);
        let _ = client.try_disconnect();
        if !connected || out.is_closed() {
            return;
        }
        let deadline = tokio::time::Instant::now() + STOP_DRAIN;
        let mut handed = 0u64;
        loop {
            match tokio::time::timeout_at(deadline, eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    handed += 1;
                    if !self
                        .handle_publish(&p.topic, &p.payload, out, readings)
                        .await
                    {
                        break;
                    }
                }
                Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(_)) => {}
            }
        }
        if handed > 0 {
            tracing::debug!(source = %self.name, messages = handed, "handed on at stop");
        }
    }
}
