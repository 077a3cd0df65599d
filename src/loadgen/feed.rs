//! The in-process feed behind the instruction counts in BENCHMARKS.md ("Size and cost on
//! ARM"): deterministic messages through the daemon's own per-message code (the MQTT source's
//! topic cache, payload mapping and series resolution, or the serial source's buffering and
//! frame decoding) into the aggregator the daemon builds, on a simulated clock. No broker, port,
//! runtime or system clock is involved, so a run under `valgrind --tool=callgrind` executes the
//! same instructions every time (up to hash-seed effects) and differences of runs isolate the
//! cost per message and per window close.
//!
//! Message `i` comes from sensor `i % sensors` and is its message number `i / sensors`; each
//! sensor sends one message per `interval_secs`, the sensors spread evenly over the interval,
//! from a window-aligned start. The aggregator ticks every [`TICK`] of simulated time, as its
//! task does, so windows close (and are encoded to line protocol) when they would in the
//! daemon. A feed covers `windows` whole windows; the last one stays open unless
//! `close_last`, which moves the clock on until it closes too. With `generate_only` the
//! messages are made and thrown away: the cost of making them, to subtract.

use std::path::Path;
use std::sync::Arc;

use crate::clock::Now;
use crate::config::Config;
use crate::loadgen::{message, pm10_tenths, pm2_5_tenths, Format};
use crate::pipeline::aggregate::{Aggregator, WindowBatch, TICK};
use crate::reading::{Reading, Registry, NANOS_PER_SEC};
use crate::service::metrics::Metrics;
use crate::sources::mqtt::MqttSource;
use crate::sources::serial::SerialSource;
use crate::{build_aggregator, AggregatorParts};

/// A window-aligned start (for windows up to an hour): 2024-11-19T07:00:00Z.
const START_NS: i64 = 1_731_999_600 * NANOS_PER_SEC;

/// What the messages are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// MQTT payloads as the load generator publishes them (`super::message`).
    Mqtt(Format),
    /// SDS011 data frames, one serial source (port) per sensor.
    Sds011,
}

impl Input {
    /// `json`, `plain`, `tasmota`, `ttn` or `sds011`.
    pub fn parse(s: &str) -> Option<Input> {
        match s {
            "sds011" => Some(Input::Sds011),
            _ => Format::parse(s).map(Input::Mqtt),
        }
    }

    /// Readings one message yields.
    fn readings_per_message(self) -> u64 {
        match self {
            Input::Mqtt(f) => f.readings_per_message(),
            Input::Sds011 => 2,
        }
    }
}

/// One feed.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub input: Input,
    pub sensors: u64,
    /// Seconds between two messages of one sensor; divides the window length.
    pub interval_secs: u64,
    /// Whole windows of messages.
    pub windows: u64,
    /// Move the clock on after the last message until its window is closed.
    pub close_last: bool,
    /// Make the messages but ingest none (the feed's own share of a run).
    pub generate_only: bool,
}

/// What a feed did; `accepted` equals `readings` when nothing was dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub messages: u64,
    pub readings: u64,
    pub accepted: u64,
    /// Ticks that emitted a batch, and what the batches held.
    pub closes: u64,
    pub points: u64,
    pub payload_bytes: u64,
}

/// Why a feed could not run, or did not ingest every message whole.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("plan: {0}")]
    Plan(String),
    #[error("config: {0}")]
    Config(String),
    #[error("message {index}: {reason}")]
    Rejected { index: u64, reason: String },
}

/// The per-message half: a source of the daemon's own kind.
enum Feeder {
    Mqtt {
        source: Box<MqttSource>,
        format: Format,
        topic: String,
        payload: String,
    },
    Serial {
        ports: Vec<SerialSource>,
        frame: [u8; 10],
    },
}

/// Runs `plan`; see the module doc.
pub fn run(plan: &Plan) -> Result<Outcome, FeedError> {
    let cfg = Config::parse(&config_text(plan), Path::new("feed.toml"))
        .map_err(|e| FeedError::Config(e.to_string()))?;
    let window_ns = cfg.aggregation.window_secs as i64 * NANOS_PER_SEC;
    let interval_ns = plan.interval_secs as i64 * NANOS_PER_SEC;
    if plan.sensors == 0 || interval_ns == 0 || window_ns % interval_ns != 0 {
        return Err(FeedError::Plan(format!(
            "need at least one sensor and an interval dividing the {} s window",
            cfg.aggregation.window_secs
        )));
    }
    let metrics = Metrics::new();
    let registry = Registry::with_limit(cfg.aggregation.max_series);
    let privacy = Arc::new(crate::privacy::Privacy::new(
        &cfg.privacy,
        &cfg.aggregation,
        metrics.privacy.clone(),
    ));
    let mut feeder = Feeder::build(&cfg, plan.input, &registry, &metrics, &privacy)?;
    let domain =
        crate::domain::Domain::build(&cfg).map_err(|e| FeedError::Config(e.to_string()))?;
    let parts = AggregatorParts {
        registry,
        privacy,
        sources: metrics.source_list(),
        domain,
        state: None,
    };
    let mut rig = Rig {
        aggregator: build_aggregator(&cfg, &metrics, parts, Now::synced_at(START_NS)),
        next_tick: START_NS,
        out: Outcome::default(),
    };
    let per_window = plan.sensors * (window_ns / interval_ns) as u64;
    let mut readings = Vec::with_capacity(16);
    for i in 0..per_window.saturating_mul(plan.windows) {
        let (sensor, seq) = (i % plan.sensors, i / plan.sensors);
        let now = START_NS
            + seq as i64 * interval_ns
            + (sensor as i64 * interval_ns) / plan.sensors as i64;
        rig.advance(now);
        feeder.generate(sensor, seq, plan.sensors, now);
        if plan.generate_only {
            feeder.discard();
            continue;
        }
        feeder.ingest(sensor, now, &mut readings);
        let expected = plan.input.readings_per_message();
        if readings.len() as u64 != expected {
            let reason = format!("{} readings, expected {expected}", readings.len());
            return Err(FeedError::Rejected { index: i, reason });
        }
        rig.insert(&mut readings, now, i)?;
    }
    if plan.close_last {
        let end = START_NS + plan.windows as i64 * window_ns;
        let delay = cfg.aggregation.close_delay_secs as i64 * NANOS_PER_SEC;
        rig.advance(end + delay + NANOS_PER_SEC);
    }
    Ok(rig.out)
}

/// The daemon's config for `plan`: one MQTT subscription for the format, or one SDS011 port
/// per sensor; everything else at its defaults (60 s windows, the default statistics).
fn config_text(plan: &Plan) -> String {
    let mut text = String::from("[gateway]\nid = \"gw-bench\"\nsite = \"bench\"\n\n");
    match plan.input {
        Input::Mqtt(format) => {
            text.push_str("[[mqtt]]\nhost = \"127.0.0.1\"\n\n[[mqtt.subscription]]\n");
            text.push_str(format.subscription_toml());
        }
        Input::Sds011 => {
            for s in 0..plan.sensors {
                text.push_str(&format!(
                    "[[serial]]\nname = \"pm{s}\"\nport = \"/dev/ttyBENCH{s}\"\nprofile = \"sds011\"\n\n"
                ));
            }
        }
    }
    text.push_str("\n[output]\napi = \"stdout\"\n");
    text
}

impl Feeder {
    fn build(
        cfg: &Config,
        input: Input,
        registry: &Registry,
        metrics: &Metrics,
        privacy: &Arc<crate::privacy::Privacy>,
    ) -> Result<Feeder, FeedError> {
        let fail = |e: crate::sources::SourceError| FeedError::Config(e.to_string());
        let tags = cfg.gateway_tags();
        match input {
            Input::Mqtt(format) => {
                let m = cfg.mqtt.first().ok_or(FeedError::Plan("no mqtt".into()))?;
                let counts = metrics.source("mqtt", &m.display_name());
                let source = MqttSource::build(m, &cfg.gateway.id, tags, registry.clone(), counts)
                    .map_err(fail)?
                    .with_privacy(privacy.clone());
                Ok(Feeder::Mqtt {
                    source: Box::new(source),
                    format,
                    topic: String::new(),
                    payload: String::new(),
                })
            }
            Input::Sds011 => cfg
                .serial
                .iter()
                .map(|s| {
                    let counts = metrics.source("serial", &s.name);
                    SerialSource::build(s, &tags, registry, counts).map_err(fail)
                })
                .collect::<Result<_, _>>()
                .map(|ports| Feeder::Serial {
                    ports,
                    frame: [0; 10],
                }),
        }
    }

    /// Makes message `seq` of `sensor`, sent at `now` (ns).
    fn generate(&mut self, sensor: u64, seq: u64, sensors: u64, now: i64) {
        match self {
            Feeder::Mqtt {
                format,
                topic,
                payload,
                ..
            } => message(
                *format,
                sensors,
                seq * sensors + sensor,
                now / 1_000_000,
                topic,
                payload,
            ),
            Feeder::Serial { frame, .. } => {
                let tenths = |t: u64| u16::try_from(t).unwrap_or(u16::MAX);
                *frame = super::sds011_frame(
                    tenths(pm2_5_tenths(sensor, seq)),
                    tenths(pm10_tenths(sensor, seq)),
                );
            }
        }
    }

    /// Keeps the optimiser from skipping the making of a message nobody reads.
    fn discard(&self) {
        match self {
            Feeder::Mqtt { topic, payload, .. } => {
                std::hint::black_box((topic, payload));
            }
            Feeder::Serial { frame, .. } => {
                std::hint::black_box(frame);
            }
        }
    }

    /// The message made last, received at `now` (ns; boot time equals wall time here):
    /// mapped or decoded into `out` by the daemon's source code.
    fn ingest(&mut self, sensor: u64, now: i64, out: &mut Vec<Reading>) {
        match self {
            Feeder::Mqtt {
                source,
                topic,
                payload,
                ..
            } => {
                // A refused payload leaves `out` short: the caller reports it.
                let _ = source.map(topic, payload.as_bytes(), now, out);
            }
            Feeder::Serial { ports, frame } => {
                if let Some(port) = ports.get_mut(sensor as usize) {
                    port.ingest(frame, now, false, out);
                }
            }
        }
    }
}

/// The aggregator on its simulated clock, and the tally.
struct Rig {
    aggregator: Aggregator,
    next_tick: i64,
    out: Outcome,
}

impl Rig {
    /// Runs every tick due up to `now`, as the aggregator's task would.
    fn advance(&mut self, now: i64) {
        let tick = TICK.as_nanos() as i64;
        while self.next_tick <= now {
            if let Some(batch) = self.aggregator.tick(Now::synced_at(self.next_tick)) {
                self.record(&batch);
            }
            self.next_tick += tick;
        }
    }

    fn record(&mut self, batch: &WindowBatch) {
        self.out.closes += 1;
        self.out.points += u64::from(batch.points);
        self.out.payload_bytes += batch.payload.len() as u64;
    }

    /// One message's readings into the aggregator; any drop is an error (the count would
    /// not be the cost of ingesting it).
    fn insert(
        &mut self,
        readings: &mut Vec<Reading>,
        now: i64,
        index: u64,
    ) -> Result<(), FeedError> {
        self.out.messages += 1;
        for r in readings.drain(..) {
            self.out.readings += 1;
            if !self.aggregator.insert(r, now) {
                let reason = "the aggregator dropped a reading (see its metrics)".to_string();
                return Err(FeedError::Rejected { index, reason });
            }
            self.out.accepted += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(input: Input, windows: u64, close_last: bool) -> Plan {
        Plan {
            input,
            sensors: 3,
            interval_secs: 10,
            windows,
            close_last,
            generate_only: false,
        }
    }

    #[test]
    fn every_message_lands_and_windows_close_when_the_daemon_would() {
        for input in [Input::Mqtt(Format::Json), Input::Sds011] {
            let open = run(&plan(input, 2, false)).unwrap();
            assert_eq!((open.messages, open.readings), (36, 72), "{input:?}");
            assert_eq!(open.accepted, open.readings);
            // The first window closed during the second (after the sources' health point
            // of the window before the start); the second is still open.
            assert_eq!(open.closes, 2, "{input:?}");
            let closed = run(&plan(input, 2, true)).unwrap();
            assert_eq!(closed.closes, 3, "{input:?}");
            assert!(closed.points > open.points && closed.payload_bytes > 0);
        }
    }

    #[test]
    fn every_mqtt_format_maps() {
        for f in ["plain", "tasmota", "ttn"] {
            let input = Input::parse(f).unwrap();
            let out = run(&plan(input, 1, true)).unwrap();
            assert_eq!(out.accepted, 18 * input.readings_per_message(), "{f}");
        }
    }

    #[test]
    fn generate_only_ingests_nothing() {
        let mut p = plan(Input::Mqtt(Format::Json), 1, false);
        p.generate_only = true;
        let out = run(&p).unwrap();
        assert_eq!((out.messages, out.readings), (0, 0));
    }

    #[test]
    fn an_interval_that_does_not_divide_the_window_is_refused() {
        let mut p = plan(Input::Sds011, 1, false);
        p.interval_secs = 7;
        assert!(matches!(run(&p), Err(FeedError::Plan(_))));
    }
}
