//! A subscription of an MQTT source, compiled once from its config: topic pattern, QoS,
//! payload mapper, measurement and tags.

use std::collections::HashMap;

use rumqttc::QoS;

use super::identifiers;
use super::mapper::{Mapper, TtnOptions};
use crate::config::SubscriptionConfig;
use crate::config::TopicPattern;
use crate::reading::SeriesKind;
use crate::sources::SourceError;

/// A subscription compiled from config.
#[derive(Debug, Clone)]
pub(super) struct Subscription {
    pub(super) pattern: TopicPattern,
    pub(super) filter: String,
    pub(super) qos: QoS,
    pub(super) mapper: Mapper,
    pub(super) measurement: Option<String>,
    pub(super) tags: Vec<(String, String)>,
    /// Set for identifier sources (Wi-Fi/BLE scanners): see `identifiers.rs`.
    pub(super) identifier: Option<identifiers::Identifier>,
    /// Kinds of the quantities configured in `counters`; the others are gauges.
    pub(super) kinds: HashMap<String, SeriesKind>,
}

pub(super) fn compile(cfg: &SubscriptionConfig) -> Result<Subscription, SourceError> {
    let pattern = TopicPattern::parse(&cfg.topic)
        .map_err(|e| SourceError::Config(format!("topic {:?}: {e}", cfg.topic)))?;
    if cfg.format == crate::config::PayloadFormat::Ttn && cfg.qos > 0 {
        tracing::warn!(
            topic = %cfg.topic,
            "The Things Stack's MQTT server supports QoS 0 only and downgrades this subscription: \
             uplinks published while citysensed is disconnected are not kept"
        );
    }
    let identifier = identifiers::Identifier::compile(cfg);
    Ok(Subscription {
        filter: pattern.filter(),
        pattern,
        // Identifier topics at QoS 0: the broker then keeps no queue of raw identifiers for us
        // while we are down (mosquitto does not queue QoS 0 for offline clients by default).
        qos: if cfg.qos == 0 || identifier.is_some() {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        },
        mapper: Mapper {
            format: cfg.format,
            quantity: cfg.quantity.clone(),
            fields: cfg.fields.clone(),
            timestamp_path: cfg.timestamp_path.clone(),
            timestamp_format: cfg.timestamp_format,
            ttn: TtnOptions {
                radio: cfg.ttn_radio,
                application_tag: cfg.ttn_application_tag,
                simulated: cfg.ttn_simulated,
            },
            // Checked at validation; a zone missing here means it vanished from the tz database.
            local_tz: match &cfg.time_zone {
                Some(name) => Some(
                    jiff::tz::TimeZone::get(name)
                        .map_err(|e| SourceError::Config(format!("time_zone {name:?}: {e}")))?,
                ),
                None => None,
            },
        },
        // Identifier sources count people: their estimate goes with footfall by default.
        measurement: cfg
            .measurement
            .clone()
            .or_else(|| identifier.as_ref().map(|_| "footfall".to_string())),
        tags: cfg
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        identifier,
        kinds: cfg
            .counters
            .keys()
            .map(|q| (q.clone(), cfg.series_kind(q)))
            .collect(),
    })
}
