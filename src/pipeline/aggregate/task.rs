//! The aggregator's task loop: a thin `select!` over its input (readings, taken in batches),
//! a tick that reads the clock and closes what is due, and a reload's new settings. There is no shutdown arm: the
//! sources own the senders, and when the last one is gone the input closes, the open
//! windows are flushed as partial windows and the task returns.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Aggregator, WindowBatch};
use crate::clock::Clock;
use crate::reading::{now_ns, Reading, NANOS_PER_SEC};

/// How often the aggregator checks for windows to close.
pub(crate) const TICK: Duration = Duration::from_millis(200);
/// Most readings taken from the input channel per wake-up.
const RECV_BATCH: usize = 256;
/// Test-only fault switch for the VM test (tests/vm): the loop hangs this many seconds after
/// start, as a deadlocked pipeline would, so systemd's watchdog must restart the service.
/// Not a user setting, and deliberately not in the README.
const WEDGE_ENV: &str = "CITYSENSE_TEST_WEDGE_AFTER_SECS";

/// The wedge delay from [`WEDGE_ENV`]'s value; anything but a whole number of seconds is off.
fn wedge_after(value: Option<&str>) -> Option<Duration> {
    value?.trim().parse().ok().map(Duration::from_secs)
}

/// The output closed: the task stops.
struct OutputClosed;

impl Aggregator {
    /// The task loop: readings in, batches out; flushes partial windows when the input closes.
    pub async fn run(
        mut self,
        clock: Clock,
        mut input: mpsc::Receiver<Reading>,
        out: mpsc::Sender<WindowBatch>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Readings are taken in batches: one wake-up and one clock read per batch, not per
        // reading (the clock only bounds future timestamps; a batch is microseconds old).
        let mut batch = Vec::with_capacity(RECV_BATCH);
        let mut updates = self.updates.take();
        let wedge_at = wedge_after(std::env::var(WEDGE_ENV).ok().as_deref()).map(|after| {
            tracing::warn!(
                after_secs = after.as_secs(),
                "{WEDGE_ENV} set: the aggregator will hang"
            );
            Instant::now() + after
        });
        loop {
            tokio::select! {
                update = Aggregator::next_update(&mut updates) => self.reconfigure(update),
                n = input.recv_many(&mut batch, RECV_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    let now = clock.wall_ns();
                    for r in batch.drain(..) {
                        self.insert(r, now);
                    }
                }
                _ = tick.tick() => {
                    if wedge_at.is_some_and(|at| Instant::now() >= at) {
                        tracing::warn!("{WEDGE_ENV}: the aggregator hangs now");
                        std::future::pending::<()>().await;
                    }
                    if self.handle_tick(&clock, &out).await.is_err() {
                        tracing::error!("window output closed; aggregator stops");
                        return;
                    }
                }
            }
        }
        if let Some(batch) = self.flush(clock.now()) {
            tracing::info!(points = batch.points, "flushed open windows at shutdown");
            let _ = out.send(batch).await;
        }
    }

    /// One tick: the heartbeat, then whatever closed, sent downstream.
    async fn handle_tick(
        &mut self,
        clock: &Clock,
        out: &mpsc::Sender<WindowBatch>,
    ) -> Result<(), OutputClosed> {
        let now = clock.now();
        let started = (now_ns(), Instant::now());
        (self.metrics.aggregator_heartbeat).store(started.0 / NANOS_PER_SEC, Relaxed);
        let batch = self.tick(now);
        self.publish_status(now.wall);
        let Some(batch) = batch else {
            return Ok(());
        };
        // From the tick's start: the close's own work is part of the latency.
        self.metrics.window_closed(started.0);
        self.metrics.close.record(started.1.elapsed());
        out.send(batch).await.map_err(|_| OutputClosed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wedge_switch_takes_only_whole_seconds() {
        assert_eq!(wedge_after(Some("15")), Some(Duration::from_secs(15)));
        assert_eq!(wedge_after(Some(" 0\n")), Some(Duration::ZERO));
        assert_eq!(wedge_after(None), None);
        assert_eq!(wedge_after(Some("")), None);
        assert_eq!(wedge_after(Some("-1")), None);
        assert_eq!(wedge_after(Some("1.5")), None);
    }
}
