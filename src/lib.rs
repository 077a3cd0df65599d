//! # citysense
//!
//! A gateway daemon for smart-city sensors. Data flows one way:
//!
//! ```text
//! sources (mqtt, serial,      --Reading-->  aggregator  --WindowBatch-->  spool  -->  uplink
//!          simulator)                      ring + windows     (disk, fsync)      (HTTP, ack)
//!   payload mappers, decoders              + derived fields
//! ```
//!
//! - [`reading`]: the shared data type and the series registry.
//! - [`backoff`]: capped exponential reconnect delays with jitter.
//! - [`clock`]: wall and boot time, clock sync detection, steps.
//! - [`config`]: the TOML file, its checks and located errors.
//! - [`telemetry`]: counters and rate limits every component builds its metrics from.
//! - [`fs_limits`]: bounded reads of the config, secrets, profiles and certificates.
//! - [`sources`]: tasks producing readings; pure payload mappers live beside them.
//! - [`decode`]: pure serial frame decoders and the sensor profiles.
//! - [`pipeline`]: windows and the aggregator task.
//! - [`domain`]: what closed windows mean: air-quality indices, humidity correction,
//!   calibration, hourly and daily air-quality values, footfall.
//! - [`privacy`]: device identifiers -> per-window keyed hashes -> HyperLogLog counts only.
//! - [`health`]: `sensor_health` points (stale, stuck, out of range) per sensor and window,
//!   and the gateway's own `gateway_health` point (board temperature, throttling, disk, ...).
//! - [`line_protocol`]: the encoder (and parser) of InfluxDB line protocol.
//! - [`spool`]: the crash-safe bounded disk buffer.
//! - [`state`]: the state file (counter totals, occupancy, intervals) kept across restarts.
//! - [`sinks`]: stdout, and the uplink to InfluxDB v1/v2-compatible stores.
//! - [`service`]: metrics, health endpoint, systemd, config reload (SIGHUP).
//!
//! ## Layers
//!
//! Read the crate bottom-up: each module imports only from layers strictly below its own
//! (`tests/it/layers.rs` checks it against this table), so the code flows the way the data does.
//!
//! | layer | modules | what they are |
//! |---|---|---|
//! | 8 run | `lib.rs`, `main.rs`, `bin`, `loadgen` | wiring, the CLI, the load generator |
//! | 7 service | `service` | metrics endpoint, health, systemd, config reload |
//! | 6 edges | `sources`, `sinks` | tasks that talk to sensors, brokers and stores |
//! | 5 pipeline | `pipeline` | the aggregator: windows, close, encode |
//! | 4 components | `clock`, `privacy`, `health`, `domain` | what a window means, when it is |
//! | 3 config | `config` | the TOML file and its checks |
//! | 2 formats | `line_protocol`, `decode`, `spool`, `state` | pure codecs, the disk buffer and the state file |
//! | 1 primitives | `time`, `telemetry`, `fs_limits`, `backoff` | time parsing, counters and rate limits, bounded file reads, reconnect delays |
//! | 0 data | `reading` | the shared data type |
//!
//! Shutdown: the root token cancels the sources only. Each downstream stage finishes when its
//! input channel closes: the aggregator flushes open windows, the spool writer appends them,
//! the uplink drains with a deadline.

pub mod backoff;
pub mod clock;
pub mod config;
pub mod decode;
pub mod domain;
pub mod fs_limits;
pub mod health;
pub mod line_protocol;
#[doc(hidden)]
pub mod loadgen;
pub mod pipeline;
pub mod privacy;
pub mod reading;
pub mod service;
pub mod sinks;
pub mod sources;
pub mod spool;
pub mod state;
pub mod telemetry;
pub mod time;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::{Clock, Now};
use crate::config::Config;
use crate::pipeline::aggregate::Aggregator;
use crate::reading::Registry;
use crate::service::metrics::Metrics;
use crate::service::reload::{Control, Downstream, Reloader};
use crate::sinks::Sink;
use crate::sources::SourceError;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] sinks::SinkError),
    #[error(transparent)]
    Domain(#[from] domain::DomainError),
    #[error("metrics.tls.{key}: {message}")]
    MetricsTls { key: &'static str, message: String },
    #[error("metrics.token_file: {0}")]
    MetricsToken(#[from] fs_limits::SecretError),
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        addr: String,
        source: std::io::Error,
    },
}

/// Longest wait for all tasks after shutdown (systemd's TimeoutStopSec is longer).
pub const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// Runs the daemon until `shutdown` is cancelled, then stops in order (see crate doc).
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let metrics = Metrics::new();
    run_with(cfg, shutdown, metrics).await
}

/// [`run`] with a caller-provided metrics registry.
pub async fn run_with(
    cfg: Config,
    shutdown: CancellationToken,
    metrics: std::sync::Arc<Metrics>,
) -> Result<(), RunError> {
    let clock = Clock::System(cfg.clock.sync);
    run_with_clock(cfg, shutdown, metrics, clock).await
}

/// [`run_with`] on a given clock: the seam the clock tests use to fake an unsynchronised
/// boot and clock steps ([`Clock::Manual`]).
#[doc(hidden)]
pub async fn run_with_clock(
    cfg: Config,
    shutdown: CancellationToken,
    metrics: std::sync::Arc<Metrics>,
    clock: Clock,
) -> Result<(), RunError> {
    run_inner(cfg, shutdown, metrics, clock, None).await
}

/// [`run`], re-reading the config at each request of `reloader` (SIGHUP): see [`service::reload`].
pub async fn run_reloadable(
    cfg: Config,
    shutdown: CancellationToken,
    reloader: Reloader,
) -> Result<(), RunError> {
    let clock = Clock::System(cfg.clock.sync);
    run_inner(cfg, shutdown, Metrics::new(), clock, Some(reloader)).await
}

async fn run_inner(
    cfg: Config,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    clock: Clock,
    reloader: Option<Reloader>,
) -> Result<(), RunError> {
    let registry = Registry::with_limit(cfg.aggregation.max_series);
    let privacy = Arc::new(privacy::Privacy::new(
        &cfg.privacy,
        &cfg.aggregation,
        metrics.privacy.clone(),
    ));
    let tracker = TaskTracker::new();
    let (reading_tx, reading_rx) = mpsc::channel(cfg.aggregation.queue_capacity);
    let mut control = Control::new(
        reading_tx, &shutdown, &tracker, &registry, &metrics, &privacy,
    );
    let sources = control.build_all(&cfg)?;
    let sink = Sink::build(&cfg, metrics.sink.clone())?;
    let domain = domain::Domain::build(&cfg)?;
    if let Clock::System(mode) = &clock {
        clock::log_sync_authority(*mode);
    }
    metrics.config.set_hash(&cfg.text_hash);
    let service_stop = CancellationToken::new();
    let board = pipeline::status::StatusBoard::new();
    let status = service::status::StatusState::new(&cfg, metrics.clone(), board.clone());
    serve_metrics(&cfg, status, &tracker, &service_stop).await?;

    let (batch_tx, batch_rx) = mpsc::channel(64);
    control.start(sources);
    let (state, state_writer) = pipeline::persist::open(&cfg, &metrics.pipeline).unzip();
    let parts = AggregatorParts {
        registry: registry.clone(),
        privacy,
        sources: control.counts(),
        domain,
        state,
    };
    let (update_tx, update_rx) = mpsc::channel(1);
    let aggregator = build_aggregator(&cfg, &metrics, parts, clock.now())
        .with_updates(update_rx)
        .with_status(board);
    tracker.spawn(aggregator.run(clock, reading_rx, batch_tx));
    let down = Downstream {
        aggregator: update_tx,
        uplinks: sink.uplinks(),
    };
    let state_task = state_writer.map(|w| tracker.spawn(w.run()));
    let sink_task = tracker.spawn(sink.run(batch_rx));
    let gateway = cfg.gateway.id.clone();
    tracker.spawn(control.run(cfg, reloader, down));
    tracker.spawn(service::systemd::supervise(
        metrics.clone(),
        service_stop.clone(),
    ));
    tracker.close();

    service::systemd::ready();
    tracing::info!(%gateway, "citysensed running");
    shutdown.cancelled().await;
    stop(sink_task, &tracker, &service_stop).await;
    if let Some(task) = state_task {
        // Ends right after the aggregator's final snapshot; bounded by the same deadline.
        let _ = tokio::time::timeout(STOP_DEADLINE, task).await;
    }
    Ok(())
}

/// What the aggregator is built from besides the config and metrics.
pub(crate) struct AggregatorParts {
    pub(crate) registry: Registry,
    pub(crate) privacy: Arc<privacy::Privacy>,
    /// The sources' counters, for the per-source `sensor_health` points.
    pub(crate) sources: Vec<Arc<telemetry::SourceMetrics>>,
    pub(crate) domain: domain::Domain,
    /// The state file, `None` when off.
    pub(crate) state: Option<pipeline::persist::StateFile>,
}

/// The daemon's aggregator with its hooks (privacy, health) and derived fields, starting
/// at clock reading `start`; one place, so the in-process feed (`loadgen::feed`) measures
/// the aggregator the daemon runs.
pub(crate) fn build_aggregator(
    cfg: &Config,
    metrics: &Metrics,
    parts: AggregatorParts,
    start: Now,
) -> Aggregator {
    Aggregator::with_clock(
        &cfg.aggregation,
        &cfg.clock,
        parts.registry,
        metrics.pipeline.clone(),
        start,
    )
    .with_sources(parts.sources)
    .with_hooks(Some(parts.privacy), &cfg.health, cfg.gateway_tags())
    .with_board(health::board::BoardReader::build(
        &cfg.gateway_health,
        &cfg.spool.dir(),
    ))
    .with_derive(parts.domain)
    .with_state(parts.state, start)
}

/// Serves `/metrics`, `/healthz` and `/api/v1/status` when `[metrics] listen` is set.
async fn serve_metrics(
    cfg: &Config,
    status: service::status::StatusState,
    tracker: &TaskTracker,
    stop: &CancellationToken,
) -> Result<(), RunError> {
    if cfg.metrics.listen.is_empty() {
        return Ok(());
    }
    let listener = service::http::bind(&cfg.metrics.listen)
        .await
        .map_err(|source| RunError::Metrics {
            addr: cfg.metrics.listen.clone(),
            source,
        })?;
    tracing::info!(addr = %cfg.metrics.listen, "serving /metrics, /healthz and /api/v1/status");
    let token = match &cfg.metrics.token_file {
        Some(f) => Some(service::auth::Token::new(&fs_limits::read_secret_file(f)?)),
        None => None,
    };
    let tls = match &cfg.metrics.tls {
        Some(t) => Some(t.server_config().map_err(|p| RunError::MetricsTls {
            key: p.key,
            message: p.message,
        })?),
        None => None,
    };
    tracker.spawn(service::http::serve(
        listener,
        service::http::router_with(status, token),
        tls,
        stop.clone(),
    ));
    Ok(())
}

/// The orderly stop: the sources are already cancelled; wait for the sink to drain the
/// pipeline (bounded by [`STOP_DEADLINE`]), then stop the service tasks.
async fn stop(
    sink_task: tokio::task::JoinHandle<()>,
    tracker: &TaskTracker,
    service_stop: &CancellationToken,
) {
    service::systemd::stopping();
    tracing::info!("shutting down: flushing open windows");
    if tokio::time::timeout(STOP_DEADLINE, sink_task)
        .await
        .is_err()
    {
        tracing::error!(
            "pipeline did not drain within {STOP_DEADLINE:?}; unsent windows stay in the spool"
        );
    }
    service_stop.cancel();
    if tokio::time::timeout(Duration::from_secs(2), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(tasks = tracker.len(), "tasks still running at exit");
    }
}
