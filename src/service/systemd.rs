//! systemd notification (`Type=notify`): READY once config is checked and the spool is
//! open, RELOADING then READY around a reload, WATCHDOG while the aggregator loop is alive, STATUS with counts, STOPPING at
//! shutdown. Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::STALE_AFTER_SECS;
use crate::reading::{now_ns, NANOS_PER_SEC};

fn notify(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(false, states) {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }
}

pub fn ready() {
    notify(&[NotifyState::Ready]);
}

/// A reload begins (`RELOADING=1` with the monotonic time, as sd_notify(3) asks); [`ready`]
/// ends it, whatever its result, so `systemctl reload` returns once it is done.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(e) => tracing::debug!(error = %e, "no monotonic clock for RELOADING"),
    }
}

pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// Pings the watchdog at half its interval while the aggregator heartbeat is fresh (a hung
/// pipeline stops the pings and systemd restarts us), and updates STATUS.
pub async fn supervise(metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let mut usec = 0u64;
    let watchdog = sd_notify::watchdog_enabled(false, &mut usec);
    let every = if watchdog {
        Duration::from_micros(usec / 2).max(Duration::from_millis(100))
    } else {
        Duration::from_secs(10)
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let age = now_ns() / NANOS_PER_SEC - metrics.pipeline.aggregator_heartbeat.load(Relaxed);
        let status = format!(
            "{} readings, {} points sent, {} points spooled",
            metrics.pipeline.readings_aggregated.load(Relaxed),
            metrics.sink.uplink_points_sent.load(Relaxed),
            metrics.sink.spool_points.load(Relaxed)
        );
        if watchdog && age <= STALE_AFTER_SECS {
            notify(&[NotifyState::Watchdog, NotifyState::Status(&status)]);
        } else {
            notify(&[NotifyState::Status(&status)]);
        }
    }
}
