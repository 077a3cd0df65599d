//! Where closed windows go: standard output (demo), or the disk spool and from there the
//! store (the uplink task).
//!
//! Data flow: aggregator -> [`WindowBatch`] channel -> spool writer (one fsync per batch)
//! -> spool on disk -> uplink (peek, send, ack). A batch is acknowledged, and so deleted,
//! only after the store answered 2xx.

mod bisect;
pub mod connect;
pub mod delivery;
mod events;
pub mod filter;
pub mod influx;
mod metrics;
pub mod mqtt_out;
pub mod mqtt_payload;
mod pending;
pub mod spool_drops;
mod uplink;
mod uplink_metrics;

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::pipeline::aggregate::WindowBatch;
use crate::spool::{Spool, SpoolError, SpoolOptions};

pub use delivery::Delivery;
pub use events::SinkEvents;
pub use influx::{classify, Outcome, SinkError, Writer};
pub use metrics::SinkMetrics;
use pending::{Pending, PENDING_MAX_BYTES};
pub use uplink::Uplink;
pub use uplink_metrics::{DeadReason, UplinkMetrics};

/// The spool as shared by its writer and the uplink.
pub type SharedSpool = Arc<Mutex<Spool>>;

/// Locks the spool; a panic in another holder cannot leave it half-written on disk (every
/// write is one append + fsync, recovery handles the rest), so poisoning is ignored.
pub fn lock(spool: &SharedSpool) -> std::sync::MutexGuard<'_, Spool> {
    spool.lock().unwrap_or_else(|e| e.into_inner())
}

/// The configured destination.
pub enum Sink {
    Stdout,
    /// The spool and one delivery per output (never empty).
    Store {
        spool: SharedSpool,
        uplinks: Vec<Delivery>,
    },
}

/// How long the uplink may keep sending at shutdown before leaving the rest in the spool.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

impl Sink {
    /// Opens the spool (recovering it, one delivery position per output) and builds one
    /// uplink per output.
    pub fn build(cfg: &Config, metrics: Arc<SinkMetrics>) -> Result<Sink, SinkError> {
        if cfg.output.is_stdout() {
            return Ok(Sink::Stdout);
        }
        let outs = cfg.output.all();
        let dir = cfg.spool.dir();
        let opts = SpoolOptions {
            dir: dir.clone(),
            max_bytes: cfg.spool.max_bytes,
            segment_bytes: (cfg.spool.max_bytes / 8).clamp(64 << 10, 8 << 20),
            fsync: cfg.spool.fsync,
        };
        let names: Vec<String> = (0..outs.len())
            .map(|i| cfg.output.name(i).to_string())
            .collect();
        let (spool, recovery) = Spool::open_for(opts, &names)
            .map_err(|e| SinkError::Config(format!("spool {}: {e}", dir.display())))?;
        let spool = Arc::new(Mutex::new(spool));
        let mut uplinks = Vec::new();
        let mut others = Vec::new();
        for (i, name) in names.iter().enumerate() {
            // The first output's metrics are the daemon's sink metrics (with the spool's).
            let m = match i {
                0 => metrics.clone(),
                _ => Arc::new(SinkMetrics::new(Arc::default())),
            };
            if i > 0 {
                others.push((name.clone(), m.clone()));
            }
            let events = Arc::new(SinkEvents::new(m));
            if i == 0 {
                events.spool_opened(&dir, &recovery);
            }
            let spool = spool.clone();
            let parts = delivery::Parts {
                cfg,
                index: i,
                name,
                spool,
                events,
            };
            let d = Delivery::build(parts)?;
            d.publish_stats();
            uplinks.push(d);
        }
        metrics.set_outputs(&names[0], others);
        Ok(Sink::Store { spool, uplinks })
    }

    /// The HTTP uplinks, one per output in config order (`None` for an MQTT output), for a
    /// reload to hand new output settings; empty for stdout.
    pub fn uplinks(&self) -> Vec<Option<Uplink>> {
        match self {
            Sink::Stdout => Vec::new(),
            Sink::Store { uplinks, .. } => uplinks.iter().map(Delivery::http).collect(),
        }
    }

    /// Consumes window batches until the channel closes, then lets the uplink drain.
    pub async fn run(self, mut input: mpsc::Receiver<WindowBatch>) {
        match self {
            Sink::Stdout => {
                while let Some(batch) = input.recv().await {
                    let mut out = std::io::stdout().lock();
                    // A closed stdout (demo piped into `head`) is not an error worth a panic.
                    if out
                        .write_all(batch.payload.as_bytes())
                        .and_then(|_| out.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            }
            Sink::Store { spool, uplinks } => store(spool, uplinks, input).await,
        }
    }
}

/// The spool writer: appends window batches, wakes every output's uplink, and at the end
/// lets them drain (each on its own; one stuck output never holds another).
async fn store(spool: SharedSpool, uplinks: Vec<Delivery>, mut input: mpsc::Receiver<WindowBatch>) {
    let Some(uplink) = uplinks.first().cloned() else {
        return;
    };
    let wakes = Wakes(uplinks.iter().map(|_| Arc::new(Notify::new())).collect());
    let stop = CancellationToken::new();
    let running: Vec<_> = uplinks
        .iter()
        .zip(&wakes.0)
        .map(|(u, w)| tokio::spawn(u.clone().run(w.clone(), stop.clone())))
        .collect();
    let mut pending = Pending::new(PENDING_MAX_BYTES);
    let mut retry = tokio::time::interval(PENDING_RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            batch = input.recv() => match batch {
                Some(batch) => {
                    let (b, p) = pending.push(batch);
                    uplink.events().held_overflow(b, p);
                }
                None => break,
            },
            _ = retry.tick(), if !pending.is_empty() => {}
        }
        if append_pending(&spool, &mut pending, &uplinks).await {
            wakes.notify();
        }
        uplink.events().held_points(pending.points());
    }
    // Input closed: shutdown.
    flush_held(&spool, &mut pending, &uplinks, &wakes).await;
    wakes.notify();
    stop.cancel();
    let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE + Duration::from_secs(1);
    for (u, task) in uplinks.iter().zip(running) {
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            u.events().uplink_stop_timed_out();
        }
    }
}

/// One wake-up per uplink.
struct Wakes(Vec<Arc<Notify>>);

impl Wakes {
    fn notify(&self) {
        self.0.iter().for_each(|w| w.notify_one());
    }
}

/// How long batches held in memory are retried at stop, while the uplink keeps delivering
/// (every ack frees disk space); the uplink's own drain follows.
const HELD_STOP_DEADLINE: Duration = DRAIN_DEADLINE;

/// At stop: appends the batches held in memory (a full or failing disk) until they are all
/// in the spool or [`HELD_STOP_DEADLINE`] passes; what is still held then is lost, counted
/// and logged as such.
async fn flush_held(
    spool: &SharedSpool,
    pending: &mut Pending,
    uplinks: &[Delivery],
    wake: &Wakes,
) {
    let Some(uplink) = uplinks.first() else {
        return;
    };
    let deadline = tokio::time::Instant::now() + HELD_STOP_DEADLINE;
    loop {
        if append_pending(spool, pending, uplinks).await {
            wake.notify();
        }
        if pending.is_empty() {
            uplink.events().held_points(0);
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        wake.notify();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ev = uplink.events();
    ev.unwritten_at_stop(pending.len(), pending.points(), HELD_STOP_DEADLINE);
}

/// How often batches held in memory after a spool write error are tried again.
const PENDING_RETRY: Duration = Duration::from_secs(1);

/// Appends the batches held in memory, oldest first, until one fails (it stays, in place).
/// Returns true if anything reached the spool.
async fn append_pending(spool: &SharedSpool, pending: &mut Pending, uplinks: &[Delivery]) -> bool {
    let Some(uplink) = uplinks.first() else {
        return false;
    };
    let mut any = false;
    while let Some(batch) = pending.pop() {
        match append(spool, batch, uplink).await {
            Ok(()) => any = true,
            Err(Some(batch)) => {
                pending.push_front(batch);
                break;
            }
            Err(None) => {}
        }
    }
    if any {
        uplinks.iter().for_each(Delivery::publish_stats);
    }
    any
}

/// Appends one batch to the spool (blocking I/O off the async threads). On an I/O error the
/// batch comes back (`Err(Some)`) to be retried; a batch that can never fit is lost
/// (`Err(None)`, counted).
async fn append(
    spool: &SharedSpool,
    batch: WindowBatch,
    uplink: &Delivery,
) -> Result<(), Option<WindowBatch>> {
    let spool = spool.clone();
    let points = batch.points;
    let started = std::time::Instant::now();
    let res = tokio::task::spawn_blocking(move || {
        let r = lock(&spool).append(
            batch.payload.as_bytes(),
            batch.points,
            batch.min_ts,
            batch.max_ts,
        );
        (batch, r)
    })
    .await;
    let ev = uplink.events();
    ev.spool_append_took(started.elapsed());
    match res {
        Ok((batch, Ok(appended))) => {
            ev.batch_spooled(appended.id, batch.points, batch.min_ts, batch.max_ts);
            if appended.dropped_points > 0 {
                ev.spool_full(appended.dropped_batches, appended.dropped_points);
            }
            Ok(())
        }
        Ok((batch, Err(e @ SpoolError::TooLarge { .. }))) => {
            ev.batch_too_large(&e, batch.points);
            Err(None)
        }
        Ok((batch, Err(e))) => {
            ev.spool_write_error(&e, batch.points);
            Err(Some(batch))
        }
        Err(e) => {
            ev.spool_writer_failed(&e, points);
            Err(None)
        }
    }
}
