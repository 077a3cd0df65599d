//! Identifier subscriptions (Wi-Fi probe and BLE scanners): their payloads never become
//! readings of their own. Each identifier found is handed to the privacy hub, which hashes it
//! with the key of its window and returns only a HyperLogLog register update; that update is
//! the reading sent to the aggregator. See [`crate::privacy`] for the whole path.
//!
//! Nothing here may put payload text into an error, a log line or a tag: errors are fixed
//! strings ([`MapError::Identifier`]), and the series is resolved from topic and
//! configuration only.

use std::borrow::Cow;

use serde_json::Value as Json;

use super::{resolve_series, MapError, MqttSource, Sample};
use crate::config::SubscriptionConfig;
use crate::privacy::identify;
use crate::reading::Reading;

/// An identifier subscription's settings.
#[derive(Debug, Clone)]
pub(super) struct Identifier {
    path: String,
    quantity: String,
}

impl Identifier {
    pub(super) fn compile(cfg: &SubscriptionConfig) -> Option<Identifier> {
        cfg.identifier_path.as_ref().map(|path| Identifier {
            path: path.clone(),
            quantity: cfg.identifier_quantity.clone(),
        })
    }
}

impl MqttSource {
    /// Maps an identifier payload to register-update readings of the subscription's
    /// `unique_devices` series. Identifiers for closed or far-future windows are discarded
    /// unhashed and counted by the hub, not reported as bad input.
    pub(super) fn map_identifiers(
        &mut self,
        topic: &str,
        payload: &[u8],
        received: i64,
        out: &mut Vec<Reading>,
    ) -> Result<(), MapError> {
        let hub = self
            .privacy
            .clone()
            .ok_or(MapError::Identifier("no privacy hub; identifiers refused"))?;
        let entry = self.topics.get_mut(topic).ok_or(MapError::UnmatchedTopic)?;
        let sub = &self.subs[entry.sub()];
        let ident = sub.identifier.as_ref().ok_or(MapError::UnmatchedTopic)?;
        // serde_json's messages only give line and column, but stay on the safe side.
        let doc: Json =
            serde_json::from_slice(payload).map_err(|_| MapError::Identifier("not valid JSON"))?;
        let ts = sub
            .mapper
            .timestamp(&doc)
            .map_err(|_| MapError::Identifier("timestamp missing or malformed"))?
            .unwrap_or(received);
        let cached = self.keys.get(&ident.quantity).and_then(|k| entry.series(k));
        let series = match cached {
            Some(id) => id,
            None => {
                let sample = Sample {
                    quantity: Cow::Borrowed(ident.quantity.as_str()),
                    tags: Vec::new(),
                    value: 0.0,
                    ts: None,
                };
                let Some(id) =
                    resolve_series(&self.registry, sub, &self.gateway_tags, topic, &sample)
                else {
                    // Not bad input: the limit drop is counted under its own reason.
                    self.metrics.series_limit(topic);
                    return Ok(());
                };
                // Marked before its first reading is sent, so the aggregator never takes
                // register updates for values.
                hub.mark_identifier_series(id);
                entry.add_series(self.keys.intern(&ident.quantity), id);
                id
            }
        };
        identify::for_each(&doc, &ident.path, &mut |id| {
            if let Ok(update) = hub.register(id, ts, received) {
                out.push(Reading::new(series, update.to_value(), ts));
            }
        })
        .map_err(|e| MapError::Identifier(e.as_str()))?;
        Ok(())
    }
}
