//! Config reload (SIGHUP, `systemctl reload`) and the running set of sources it changes.
//!
//! A reload reads and validates the file the daemon started from, like `validate` does.
//! - Invalid: every error is logged (file:line: key), `result="invalid"` is counted and the
//!   running config stays.
//! - Valid but changing a setting that needs a restart ([`config::restart_keys`]): the keys are
//!   logged, `result="refused"` is counted and the running config stays.
//! - Otherwise it is applied, `result="ok"`: the new sources are built first (a failure there
//!   counts as invalid and changes nothing), then sources whose section changed or went are
//!   stopped and new or changed ones started; unchanged ones keep running untouched. The
//!   aggregator takes the new statistics and domain rules between two closes, the uplink the
//!   new output settings before its next request. The reading channel, the aggregator with its
//!   open windows and the spool keep running throughout, so nothing already received is lost:
//!   a stopped source hands on what it has read before it ends.
//!
//! The control task owns the sources and holds a sender of the reading channel until
//! shutdown, so the aggregator runs (and its heartbeat feeds the watchdog) even while no
//! source does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::metrics::Metrics;
use super::systemd;
use crate::config::{self, Config, MqttConfig, SerialConfig, SimulatorConfig};
use crate::pipeline::aggregate::Reconfigure;
use crate::privacy::Privacy;
use crate::reading::{Reading, Registry};
use crate::sinks::{Uplink, Writer};
use crate::sources::{mqtt::MqttSource, serial::SerialSource, simulator::Simulator};
use crate::sources::{Source, SourceError};
use crate::telemetry::{ReloadResult, SourceMetrics};

/// Longest wait for a stopped source to end (to release its port or broker session) before
/// its replacement starts anyway.
const SOURCE_STOP_WAIT: Duration = Duration::from_secs(5);

/// Where reloads come from: the config file and a channel of requests (one per SIGHUP).
pub struct Reloader {
    pub path: PathBuf,
    /// [`config::config_hash`] of the text the daemon started with.
    pub hash: String,
    pub requests: mpsc::Receiver<()>,
}

/// One source's config section: equal sections (with equal files) mean an unchanged source.
#[derive(Debug, Clone)]
enum Spec {
    Mqtt(MqttConfig),
    Serial(SerialConfig),
    Simulator(SimulatorConfig),
}

impl Spec {
    fn all(cfg: &Config) -> Vec<Spec> {
        let mqtt = cfg.mqtt.iter().cloned().map(Spec::Mqtt);
        let serial = cfg.serial.iter().cloned().map(Spec::Serial);
        let sim = cfg.simulator.iter().cloned().map(Spec::Simulator);
        mqtt.chain(serial).chain(sim).collect()
    }

    /// The effective values of the section and the contents of the files it names (read when
    /// the source is built), for comparison.
    fn key(&self) -> String {
        let files = match self {
            Spec::Mqtt(m) => config::mqtt_files_digest(m),
            Spec::Serial(s) => config::serial_files_digest(s),
            Spec::Simulator(_) => String::new(),
        };
        format!("{self:?} files: {files}")
    }

    /// (kind, name) of its counters in `/metrics`; `None` for the simulator (no counters).
    fn id(&self) -> Option<(&'static str, String)> {
        match self {
            Spec::Mqtt(m) => Some(("mqtt", m.display_name())),
            Spec::Serial(s) => Some(("serial", s.name.clone())),
            Spec::Simulator(_) => None,
        }
    }
}

/// A source built and not yet started.
pub(crate) struct Built {
    spec: Spec,
    source: Source,
}

struct Running {
    spec: Spec,
    key: String,
    counts: Option<Arc<SourceMetrics>>,
    token: CancellationToken,
    task: JoinHandle<()>,
}

/// The running sources and what building new ones takes.
pub(crate) struct Control {
    running: Vec<Running>,
    readings: mpsc::Sender<Reading>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    registry: Registry,
    metrics: Arc<Metrics>,
    privacy: Arc<Privacy>,
}

/// What the control task needs to apply a reload downstream of the sources.
pub(crate) struct Downstream {
    pub(crate) aggregator: mpsc::Sender<Reconfigure>,
    /// One per output; empty for `output.api = "stdout"`.
    pub(crate) uplinks: Vec<Option<Uplink>>,
}

impl Control {
    pub(crate) fn new(
        readings: mpsc::Sender<Reading>,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
        registry: &Registry,
        metrics: &Arc<Metrics>,
        privacy: &Arc<Privacy>,
    ) -> Control {
        Control {
            running: Vec::new(),
            readings,
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
            registry: registry.clone(),
            metrics: metrics.clone(),
            privacy: privacy.clone(),
        }
    }

    /// Builds the sources of `specs`; `replaced` are sources being stopped, so that their
    /// counters and MQTT sessions carry over to their replacements.
    fn build(
        &self,
        specs: Vec<Spec>,
        cfg: &Config,
        replaced: &[Running],
    ) -> Result<Vec<Built>, SourceError> {
        let tags = cfg.gateway_tags();
        let mut built = Vec::new();
        for spec in specs {
            let counts = spec.id().map(|(kind, name)| {
                let mut prior = replaced.iter().filter_map(|r| r.counts.as_ref());
                match prior.find(|c| c.kind == kind && c.name == name) {
                    Some(c) => c.clone(),
                    None => Arc::new(SourceMetrics::new(kind, &name)),
                }
            });
            let source = match (&spec, counts) {
                (Spec::Mqtt(m), Some(sm)) => {
                    let reg = self.registry.clone();
                    let src = MqttSource::build(m, &cfg.gateway.id, tags.clone(), reg, sm)?
                        .with_privacy(self.privacy.clone());
                    let old = replaced.iter().find_map(|r| match &r.spec {
                        Spec::Mqtt(o) if o.host == m.host && o.client_id == m.client_id => Some(o),
                        _ => None,
                    });
                    Source::Mqtt(Box::new(match old {
                        Some(old) => src.replacing(old, m),
                        None => src,
                    }))
                }
                (Spec::Serial(s), Some(sm)) => {
                    let src = SerialSource::build(s, &tags, &self.registry, sm)?;
                    Source::Serial(Box::new(src))
                }
                (Spec::Simulator(s), _) => {
                    Source::Simulator(Simulator::build(s, &tags, &self.registry)?)
                }
                (_, None) => continue,
            };
            built.push(Built { spec, source });
        }
        Ok(built)
    }

    /// Builds every source of `cfg` (at start).
    pub(crate) fn build_all(&self, cfg: &Config) -> Result<Vec<Built>, SourceError> {
        self.build(Spec::all(cfg), cfg, &[])
    }

    /// Starts built sources, each on its own task with its own stop token.
    pub(crate) fn start(&mut self, built: Vec<Built>) {
        if built.is_empty() && self.running.is_empty() {
            tracing::warn!("{}", config::NO_SOURCE);
        }
        for Built { spec, source } in built {
            let counts = source.counts();
            if let Some(c) = &counts {
                self.metrics.add_source(c.clone());
            }
            let (tx, token) = (self.readings.clone(), self.shutdown.child_token());
            let name = source.name();
            let stop = token.clone();
            let task = self.tracker.spawn(async move {
                if let Err(e) = source.run(tx, stop).await {
                    tracing::error!(source = %name, error = %e, "source stopped with an error");
                }
            });
            let key = spec.key();
            self.running.push(Running {
                spec,
                key,
                counts,
                token,
                task,
            });
        }
    }

    /// The counters of the running sources, for the aggregator's `sensor_health` points.
    pub(crate) fn counts(&self) -> Vec<Arc<SourceMetrics>> {
        self.running
            .iter()
            .filter_map(|r| r.counts.clone())
            .collect()
    }

    /// Runs until shutdown, applying each reload request; then drops its reading sender, so
    /// the aggregator ends once the sources have.
    pub(crate) async fn run(
        mut self,
        mut cfg: Config,
        reloader: Option<Reloader>,
        down: Downstream,
    ) {
        let (path, mut requests) = match reloader {
            Some(r) => {
                self.metrics.config.set_hash(&r.hash);
                (Some(r.path), Some(r.requests))
            }
            None => (None, None),
        };
        loop {
            let request = async {
                match requests.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                r = request => match (r, &path) {
                    (Some(()), Some(path)) => {
                        systemd::reloading();
                        let result = self.reload(&mut cfg, path, &down).await;
                        self.metrics.config.reloaded(result);
                        systemd::ready();
                    }
                    _ => requests = None,
                },
            }
        }
    }

    /// One reload of `path` over the running `cfg`.
    async fn reload(
        &mut self,
        cfg: &mut Config,
        path: &std::path::Path,
        down: &Downstream,
    ) -> ReloadResult {
        tracing::info!(config = %path.display(), "reload requested");
        let (new, text) = match Config::load_with_text(path) {
            Ok(loaded) => loaded,
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!("reload: {e}");
                }
                tracing::error!(
                    errors = errors.0.len(),
                    "reload refused: the config is invalid; the running config stays"
                );
                return ReloadResult::Invalid;
            }
        };
        let keys = config::restart_keys(cfg, &new);
        if !keys.is_empty() {
            tracing::error!(keys = %keys.join(", "), "reload refused: these settings need a restart (systemctl restart citysense); the running config stays");
            return ReloadResult::Refused;
        }
        match self.apply(cfg, &new, down).await {
            Ok(()) => {
                let hash = config::config_hash(&text);
                self.metrics.config.set_hash(&hash);
                tracing::info!(hash, sources = self.running.len(), "config reloaded");
                *cfg = new;
                ReloadResult::Ok
            }
            Err(e) => {
                tracing::error!(error = %e, "reload refused: the running config stays");
                ReloadResult::Invalid
            }
        }
    }

    /// Applies a valid, reloadable `new` over `old` (see the module doc for the order).
    async fn apply(&mut self, old: &Config, new: &Config, down: &Downstream) -> Result<(), String> {
        let domain = crate::domain::Domain::build(new).map_err(|e| e.to_string())?;
        // One writer per output, in the order of the uplinks (a changed list of output
        // names needs a restart, see `restart_keys`).
        let mut writers = Vec::new();
        for (uplink, out) in down.uplinks.iter().zip(new.output.all()) {
            let built = match uplink {
                Some(_) => Some((Writer::build(out).map_err(|e| e.to_string())?, out)),
                None => None,
            };
            writers.push(built);
        }
        // Each running source whose section is still wanted stays (one per section); the
        // other sections are new sources, the other running sources go.
        let mut fresh = Spec::all(new);
        let mut keys: Vec<String> = fresh.iter().map(Spec::key).collect();
        let mut going = Vec::new();
        for (i, r) in self.running.iter().enumerate() {
            match keys.iter().position(|k| *k == r.key) {
                Some(p) => {
                    fresh.remove(p);
                    keys.remove(p);
                }
                None => going.push(i),
            }
        }
        let mut stopped: Vec<Running> = Vec::new();
        for i in going.into_iter().rev() {
            stopped.push(self.running.remove(i));
        }
        // Built before anything stops: a source that cannot be built changes nothing.
        let built = match self.build(fresh, new, &stopped) {
            Ok(b) => b,
            Err(e) => {
                self.running.extend(stopped);
                return Err(e.to_string());
            }
        };
        for r in &mut stopped {
            self.stop(r).await;
        }
        self.start(built);
        let update = Reconfigure {
            aggregation: new.aggregation.clone(),
            domain,
            sources: self.counts(),
        };
        if down.aggregator.send(update).await.is_err() {
            return Err("the aggregator has stopped".into());
        }
        let pairs = down.uplinks.iter().zip(writers).enumerate();
        for (i, (uplink, (writer, out))) in
            pairs.filter_map(|(i, (u, w))| Some((i, (u.as_ref()?, w?))))
        {
            // A limit learnt from a 413 stays unless the output section changed.
            let changed = format!("{:?}", old.output.all().get(i)) != format!("{:?}", Some(out));
            let limit = changed.then_some(out.max_request_bytes);
            let backoff = Duration::from_secs(out.max_backoff_secs.max(1));
            uplink.reconfigure(writer, backoff, limit);
            uplink.set_filter(crate::sinks::filter::LineFilter::new(out.filter.clone()));
        }
        Ok(())
    }

    /// Stops one source and waits (bounded) until it has handed on what it read and released
    /// its port or broker session.
    async fn stop(&self, r: &mut Running) {
        r.token.cancel();
        let name = r
            .spec
            .id()
            .map_or_else(|| "simulator".to_string(), |(_, n)| n);
        if tokio::time::timeout(SOURCE_STOP_WAIT, &mut r.task)
            .await
            .is_err()
        {
            tracing::warn!(source = %name, "source still running after {SOURCE_STOP_WAIT:?}; starting its replacement anyway");
        }
        if let Some(c) = &r.counts {
            self.metrics.remove_source(c);
        }
        tracing::info!(source = %name, "source stopped by the reload");
    }
}
