//! Simulated sensors for `citysensed demo` and for trying a setup without hardware:
//! air-quality sensors (PM2.5, PM10, CO2 as bounded random walks) and people counters
//! (in/out events, kind `counter`: windows carry their sums, `net` and `occupancy`). They feed
//! the same channel as real sources, so the demo runs the real aggregator and encoder.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::SimulatorConfig;
use crate::reading::{
    default_measurement, GroupKey, QuantityKind, Reading, Registry, SeriesId, SeriesKind,
};
use crate::sources::SourceError;

/// One simulated quantity: its series and random-walk state.
struct Walk {
    series: SeriesId,
    value: f64,
    step: f64,
    min: f64,
    max: f64,
}

/// The configured simulated sensors.
pub struct Simulator {
    walks: Vec<Walk>,
    interval: Duration,
    rng: fastrand::Rng,
}

impl Simulator {
    pub fn build(
        cfg: &SimulatorConfig,
        gateway_tags: &[(String, String)],
        registry: &Registry,
    ) -> Result<Simulator, SourceError> {
        let mut walks = Vec::new();
        let mut add =
            |sensor: String, quantity: &str, start: f64, step: f64, min: f64, max: f64| {
                let tags = [
                    ("sensor".to_string(), sensor),
                    ("model".to_string(), "simulated".to_string()),
                ]
                .into_iter()
                .chain(gateway_tags.iter().cloned());
                let group = registry.group(GroupKey::new(default_measurement(quantity), tags));
                // Step 0 marks an event counter: its windows sum the events (kind `counter`).
                let kind = SeriesKind {
                    kind: if step == 0.0 {
                        QuantityKind::Counter
                    } else {
                        QuantityKind::Gauge
                    },
                    wrap: None,
                };
                let series = registry
                    .series_with_kind(group, quantity, kind)
                    .ok_or_else(|| {
                        SourceError::Config("series limit reached by the simulator".into())
                    })?;
                walks.push(Walk {
                    series,
                    value: start,
                    step,
                    min,
                    max,
                });
                Ok::<(), SourceError>(())
            };
        for i in 0..cfg.air_sensors {
            let s = format!("sim-air-{i}");
            add(s.clone(), "pm2_5", 8.0 + i as f64, 0.8, 0.0, 300.0)?;
            add(s.clone(), "pm10", 15.0 + i as f64, 1.2, 0.0, 500.0)?;
            add(s, "co2", 450.0, 6.0, 400.0, 5000.0)?;
        }
        for i in 0..cfg.counters {
            let s = format!("sim-door-{i}");
            // Counters report events: 0..=2 people per reading in each direction.
            add(s.clone(), "in", 0.0, 0.0, 0.0, 2.0)?;
            add(s, "out", 0.0, 0.0, 0.0, 2.0)?;
        }
        Ok(Simulator {
            walks,
            interval: Duration::from_millis(cfg.interval_ms.max(1)),
            rng: fastrand::Rng::with_seed(0x5eed),
        })
    }

    pub async fn run(
        mut self,
        out: mpsc::Sender<Reading>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            // Simulated sensors have no clock: stamped at receipt, like serial ones.
            let ts = crate::clock::boot_ns();
            for w in &mut self.walks {
                w.value = if w.step == 0.0 {
                    // Event counter: a small whole number per reading.
                    self.rng.u32(0..=w.max as u32) as f64
                } else {
                    (w.value + (self.rng.f64() * 2.0 - 1.0) * w.step).clamp(w.min, w.max)
                };
                let r = Reading::received(w.series, (w.value * 10.0).round() / 10.0, ts);
                if out.send(r).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}
