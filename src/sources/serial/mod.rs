//! Serial source: one task per port, built on `tokio-serial`, with the sensor's decoder
//! (`crate::decode`) chosen by its profile.
//!
//! The port is a `Link`: `Open` while a session reads it (`session.rs`), `Closed` with a
//! capped, jittered backoff otherwise. Unplugging a USB adapter shows up as EOF or EIO on
//! read, or a write error; the port is then closed, `citysense_source_up` drops to 0 and the
//! device path is reopened until it is back (a USB adapter re-enumerates under the same
//! `/dev/serial/by-id/` link). A port that does not exist at start is retried the same way.
//! Each outage is logged once, when it begins, not on every attempt.
//!
//! Series are resolved once per value slot at build time, so the read loop never touches the
//! registry.

mod session;

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_serial::{
    ClearBuffer, DataBits, FlowControl, Parity, SerialPort, SerialStream, StopBits,
};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::SerialConfig;
use crate::decode::profile::SensorProfile;
use crate::decode::Decoder;
use crate::reading::{default_measurement, GroupKey, Reading, Registry, SeriesId};
use crate::sources::SourceError;
use crate::telemetry::SourceMetrics;

/// First reopen delay after the port failed (then doubled per failed attempt).
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_millis(500);
/// Longest reopen delay: a replugged sensor is picked up within this.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(30);

/// State of the port between sessions.
enum Link {
    /// Never opened yet (so a failure is reported as "cannot open", at ERROR).
    Start,
    /// Closed after an outage that has already been logged.
    Closed,
}

/// A configured serial sensor, ready to run.
pub struct SerialSource {
    name: String,
    port: PathBuf,
    baud: u32,
    profile: SensorProfile,
    decoder: Decoder,
    poll_interval: Option<Duration>,
    warmup: Duration,
    /// Series of each value slot (`Value::slot` indexes it).
    series: Vec<SeriesId>,
    metrics: Arc<SourceMetrics>,
    /// Bytes read but not yet decoded; bounded by the decoder contract (see `decode`).
    buf: Vec<u8>,
}

impl SerialSource {
    /// Resolves the profile, builds its decoder and interns one series per quantity, tagged
    /// `sensor`, configured tags, `model`, then the gateway's tags (earlier ones win).
    pub fn build(
        cfg: &SerialConfig,
        gateway_tags: &[(String, String)],
        registry: &Registry,
        metrics: Arc<SourceMetrics>,
    ) -> Result<SerialSource, SourceError> {
        let fail = |msg: String| SourceError::Config(format!("serial {}: {msg}", cfg.name));
        let profile = cfg
            .profile()
            .map_err(|p| fail(format!("{}: {}", p.key, p.message)))?;
        let decoder = Decoder::build(&profile).map_err(|e| fail(e.to_string()))?;
        let tags: Vec<(String, String)> = [("sensor".to_string(), cfg.sensor_id().to_string())]
            .into_iter()
            .chain(cfg.tags.iter().map(|(k, v)| (k.clone(), v.clone())))
            .chain([("model".to_string(), profile.model.clone())])
            .chain(gateway_tags.iter().cloned())
            .collect();
        let mut series = Vec::with_capacity(profile.quantities.len());
        for q in &profile.quantities {
            let measurement = cfg
                .measurement
                .as_deref()
                .unwrap_or_else(|| default_measurement(&q.name));
            let group = registry.group(GroupKey::new(measurement, tags.iter().cloned()));
            // The profile's `kind` (gauge, counter, counter_total) decides the window fields.
            let id = registry
                .series_with_kind(group, &q.name, q.series_kind())
                .ok_or_else(|| fail("series limit (aggregation.max_series) reached".into()))?;
            series.push(id);
        }
        Ok(SerialSource {
            name: cfg.name.clone(),
            port: cfg.port.clone(),
            baud: profile.baud(),
            poll_interval: profile
                .poll_interval_secs()
                .map(|s| Duration::from_secs(u64::from(s))),
            warmup: Duration::from_secs(u64::from(profile.warmup_secs)),
            profile,
            decoder,
            series,
            metrics,
            buf: Vec::with_capacity(1024),
        })
    }

    /// This source's counters, shared with the aggregator.
    pub fn counts(&self) -> Arc<SourceMetrics> {
        self.metrics.clone()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens the port and reads it until `shutdown`, reopening after every failure.
    pub async fn run(
        mut self,
        out: mpsc::Sender<Reading>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let mut backoff = Backoff::new(DEFAULT_RETRY_BASE, DEFAULT_RETRY_MAX);
        let mut link = Link::Start;
        tracing::info!(source = %self.name, port = %self.port.display(), model = %self.profile.model, "serial source starting");
        loop {
            match self.open() {
                Ok(mut port) => {
                    self.metrics.set_connected(true);
                    tracing::info!(source = %self.name, port = %self.port.display(), baud = self.baud, "serial port open");
                    let end = self.session(&mut port, &out, &shutdown).await;
                    self.metrics.set_connected(false);
                    close(port);
                    match end {
                        session::End::Stop => break,
                        session::End::Lost { why, had_frames } => {
                            if had_frames {
                                backoff.reset();
                            }
                            // A port that opens but fails before any frame (flapping) is
                            // not logged again on every round.
                            if had_frames || matches!(link, Link::Start) {
                                tracing::warn!(source = %self.name, port = %self.port.display(), error = %why, "serial port lost; reopening until it is back");
                            } else {
                                tracing::debug!(source = %self.name, error = %why, "serial port failed again");
                            }
                            link = Link::Closed;
                        }
                    }
                }
                Err(e) => self.log_open_failure(&link, &e, &backoff),
            }
            if let Link::Start = link {
                link = Link::Closed;
            }
            self.metrics.reconnects.fetch_add(1, Relaxed);
            let delay = backoff.next_delay();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        self.metrics.set_connected(false);
        tracing::info!(source = %self.name, "serial source stopped");
        Ok(())
    }

    /// One clear line when the port cannot be opened at start; later attempts only at debug
    /// (the outage was logged when it began).
    fn log_open_failure(&self, link: &Link, e: &tokio_serial::Error, backoff: &Backoff) {
        match link {
            Link::Start => tracing::error!(
                source = %self.name,
                port = %self.port.display(),
                error = %e,
                retry_max = ?DEFAULT_RETRY_MAX,
                "cannot open serial port (check the path, the cable and membership of group dialout); retrying until it appears"
            ),
            Link::Closed => tracing::debug!(
                source = %self.name,
                port = %self.port.display(),
                error = %e,
                attempt = backoff.attempts(),
                "serial port still unavailable"
            ),
        }
    }

    /// Opens the port 8N1 without flow control at the profile's speed, exclusively (a getty or
    /// a second reader on the same port would steal bytes and break frames).
    fn open(&self) -> Result<SerialStream, tokio_serial::Error> {
        let builder = tokio_serial::new(self.port.to_string_lossy(), self.baud)
            .data_bits(DataBits::Eight)
            .parity(Parity::None)
            .stop_bits(StopBits::One)
            .flow_control(FlowControl::None)
            .exclusive(true);
        SerialStream::open(&builder)
    }
}

/// Closes `port` without waiting for unsent output. The kernel's close waits up to the tty's
/// `closing_wait` (30 s) for output to drain; a sensor that reads nothing back (a UART with
/// nobody listening, a stuck adapter) would hold a stop that long, past `TimeoutStopSec=`,
/// and the open windows would die with the process. Commands not yet sent are worthless
/// once the session is over, so they are discarded.
fn close(port: SerialStream) {
    if let Err(e) = port.clear(ClearBuffer::Output) {
        tracing::debug!(error = %e, "serial port: discarding unsent output failed");
    }
    drop(port);
}

#[cfg(test)]
mod tests;
