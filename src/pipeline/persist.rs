//! Where the aggregator's state file is read at start and written after each close: the
//! file's path and validity rules from `[state]`, and the writer task. What goes into the
//! document is `aggregate/state.rs`'s business; the format is [`crate::state`]'s.
//!
//! The aggregator never waits for the disk: it hands each snapshot to a `watch` channel
//! (the newest replaces an unwritten older one) and a writer task writes it with
//! [`state::write_atomic`] on a blocking thread. When the aggregator ends (after its shutdown
//! flush and final snapshot) the channel closes and the writer writes what is left and ends.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::pipeline::AggregatorMetrics;
use crate::reading::NANOS_PER_SEC;
use crate::state::{self, Restore, StateDoc};
use crate::telemetry::RateLimit;

/// A snapshot on its way to the writer.
pub type Snapshot = Option<Arc<StateDoc>>;

/// What the aggregator gets: the document read at start (checked for age once the clock is
/// trusted) and where to send its snapshots.
#[derive(Debug)]
pub struct StateFile {
    pub(crate) path: PathBuf,
    pub(crate) loaded: Option<StateDoc>,
    pub(crate) gateway: String,
    pub(crate) max_age_ns: i64,
    pub(crate) out: watch::Sender<Snapshot>,
}

/// The task that writes snapshots; see the module doc.
pub struct StateWriter {
    path: PathBuf,
    input: watch::Receiver<Snapshot>,
    metrics: Arc<AggregatorMetrics>,
    /// One warning per interval: a full or read-only disk fails every close.
    log: RateLimit,
}

/// Reads the state file of `cfg` (a corrupt or unreadable one is ignored with a warning
/// naming it and why) and sets up its writer; `None` when state is off.
pub fn open(cfg: &Config, metrics: &Arc<AggregatorMetrics>) -> Option<(StateFile, StateWriter)> {
    let path = cfg.state.file(&cfg.spool, &cfg.output)?;
    let loaded = match state::load(&path) {
        Ok(Some(doc)) => Some(doc),
        Ok(None) => {
            tracing::info!(file = %path.display(), "no state file yet: starting afresh");
            metrics.state.restore(Restore::Missing);
            None
        }
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "state file ignored: starting afresh");
            metrics.state.restore(Restore::Invalid);
            None
        }
    };
    let (out, input) = watch::channel(None);
    let max_age = i64::try_from(cfg.state.max_age_secs).unwrap_or(i64::MAX);
    let file = StateFile {
        path: path.clone(),
        loaded,
        gateway: cfg.gateway.id.clone(),
        max_age_ns: max_age.saturating_mul(NANOS_PER_SEC),
        out,
    };
    let writer = StateWriter {
        path,
        input,
        metrics: metrics.clone(),
        log: RateLimit::default(),
    };
    Some((file, writer))
}

impl StateWriter {
    /// Writes each new snapshot until the aggregator drops its sender, the last one included.
    pub async fn run(mut self) {
        while self.input.changed().await.is_ok() {
            let Some(doc) = self.input.borrow_and_update().clone() else {
                continue;
            };
            let path = self.path.clone();
            let write = move || {
                let bytes = doc.encode().map_err(std::io::Error::other)?;
                state::write_atomic(&path, &bytes)
            };
            let m = &self.metrics.state;
            match tokio::task::spawn_blocking(write).await {
                Ok(Ok(())) => {
                    m.saves.fetch_add(1, Relaxed);
                }
                Ok(Err(e)) => self.failed(&e),
                Err(e) => self.failed(&e),
            }
        }
    }

    fn failed(&self, e: &dyn std::fmt::Display) {
        self.metrics.state.save_errors.fetch_add(1, Relaxed);
        if let Some(suppressed) = self.log.check() {
            tracing::warn!(file = %self.path.display(), error = %e, suppressed,
                "state file not saved; the previous one stays");
        }
    }
}
