//! One output's delivery task: the HTTP uplink to a store or the MQTT output, behind one
//! face so the spool writer wakes, drains and reports on every output alike.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::mqtt_out::MqttOut;
use super::{filter, lock, SharedSpool, SinkError, SinkEvents, Uplink, Writer};
use crate::config::{Config, OutputApi};

/// One output's delivery.
#[derive(Clone)]
pub enum Delivery {
    Http(Uplink),
    Mqtt(MqttOut),
}

/// Where one output's delivery is built from.
pub(super) struct Parts<'a> {
    pub cfg: &'a Config,
    pub index: usize,
    pub name: &'a str,
    pub spool: SharedSpool,
    pub events: Arc<SinkEvents>,
}

impl Delivery {
    /// Builds output `p.index` (reads its secret and TLS files).
    pub(super) fn build(p: Parts<'_>) -> Result<Delivery, SinkError> {
        let Some(out) = p.cfg.output.all().get(p.index) else {
            return Err(SinkError::Config(format!("no output {}", p.index)));
        };
        if out.api == OutputApi::Mqtt {
            let window = p.cfg.aggregation.window_secs;
            let gw = &p.cfg.gateway.id;
            let m = MqttOut::build(out, p.name, gw, window, p.spool, p.events, p.index)?;
            return Ok(Delivery::Mqtt(m));
        }
        let uplink = Uplink::new(
            Writer::build(out)?,
            p.spool,
            p.events,
            Duration::from_secs(out.max_backoff_secs.max(1)),
            out.max_request_bytes,
            p.cfg.spool.dir(),
        )
        .for_output(p.index, p.name);
        uplink.set_filter(filter::LineFilter::new(out.filter.clone()));
        Ok(Delivery::Http(uplink))
    }

    pub fn events(&self) -> &SinkEvents {
        match self {
            Delivery::Http(u) => u.events(),
            Delivery::Mqtt(m) => m.events(),
        }
    }

    pub fn publish_stats(&self) {
        match self {
            Delivery::Http(u) => u.publish_stats(),
            Delivery::Mqtt(m) => m.publish_stats(),
        }
    }

    /// The HTTP uplink, for a reload to hand new settings (MQTT outputs restart).
    pub fn http(&self) -> Option<Uplink> {
        match self {
            Delivery::Http(u) => Some(u.clone()),
            Delivery::Mqtt(_) => None,
        }
    }

    pub async fn run(self, wake: Arc<Notify>, stop: CancellationToken) {
        match self {
            Delivery::Http(u) => u.run(wake, stop).await,
            Delivery::Mqtt(m) => m.run(wake, stop).await,
        }
    }
}

/// Copies the spool's size and output `out`'s backlog into `events`' metrics.
pub(super) fn publish_stats(spool: &SharedSpool, events: &SinkEvents, out: usize) {
    let (s, outs) = {
        let spool = lock(spool);
        (spool.stats(), spool.output_stats())
    };
    events.spool_stats(&s);
    if let Some(o) = outs.get(out) {
        events.output_stats(o);
    }
}
