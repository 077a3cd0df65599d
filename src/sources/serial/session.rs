//! One session on an open port: send the profile's init commands, poll if the sensor is
//! polled, read into the buffer and drain it through the decoder, turning frame values into
//! readings. Ends on shutdown, when the aggregator is gone, or when the port fails.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_serial::SerialStream;
use tokio_util::sync::CancellationToken;

use super::SerialSource;
use crate::decode::profile::DutyCycle;
use crate::decode::Step;
use crate::reading::{Reading, TimestampNs};

/// Bytes read per `read` call (a UART at 115200 baud delivers about 11.5 KB/s).
const READ_CHUNK: usize = 512;
/// Pause between init commands: sensors drop a command sent while they handle the last one.
const COMMAND_GAP: Duration = Duration::from_millis(100);
/// A write that takes longer than this means the port is stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a session ended.
pub(super) enum End {
    /// Shutdown was requested, or the aggregator is gone: stop the source.
    Stop,
    /// The port failed (EOF, EIO, write error): close and reopen. `had_frames` says whether
    /// a valid frame arrived, i.e. whether the link had really worked.
    Lost { why: String, had_frames: bool },
}

impl SerialSource {
    /// Runs one session on `port` (see the module doc).
    pub(super) async fn session(
        &mut self,
        port: &mut SerialStream,
        out: &mpsc::Sender<Reading>,
        shutdown: &CancellationToken,
    ) -> End {
        // Bytes from before the outage belong to no frame we can finish.
        self.buf.clear();
        self.decoder.reset();
        let mut had_frames = false;
        let lost = |why: String, had_frames: bool| End::Lost { why, had_frames };
        if let Err(why) = send_all(port, &self.decoder.init_commands()).await {
            return lost(why, false);
        }
        let mut duty = Duty::new(
            self.profile.duty_cycle,
            self.decoder.sleep_command().is_some(),
        );
        let mut poll = self.poll_interval.map(|d| {
            let mut i = tokio::time::interval(d);
            i.set_missed_tick_behavior(MissedTickBehavior::Delay);
            i
        });
        let poll_command = self.decoder.poll_command();
        let mut chunk = [0u8; READ_CHUNK];
        let mut readings = Vec::with_capacity(crate::decode::MAX_VALUES);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return End::Stop,
                _ = duty.switch_due() => {
                    let cmds = match duty.switch() {
                        true => self.wake_commands(),
                        false => self.decoder.sleep_command().into_iter().collect(),
                    };
                    if let Err(why) = send_all(port, &cmds).await {
                        return lost(why, had_frames);
                    }
                }
                _ = tick(&mut poll), if !duty.asleep => {
                    if let Some(cmd) = &poll_command {
                        if let Err(why) = write(port, cmd).await {
                            return lost(why, had_frames);
                        }
                    }
                }
                read = port.read(&mut chunk) => {
                    let n = match read {
                        Ok(0) => return lost("end of file (device gone)".into(), had_frames),
                        Ok(n) => n,
                        Err(e) => return lost(e.to_string(), had_frames),
                    };
                    // Time of receipt, on the boot clock: serial sensors carry no clock, and
                    // the aggregator places boot times once the wall clock is trustworthy.
                    let ts = crate::clock::boot_ns();
                    let warming = duty.awake_since.elapsed() < self.warmup;
                    let bytes = chunk.get(..n).unwrap_or(&[]);
                    had_frames |= self.ingest(bytes, ts, warming, &mut readings);
                    for r in readings.drain(..) {
                        if out.send(r).await.is_err() {
                            return End::Stop;
                        }
                    }
                }
            }
        }
    }

    /// Buffers `bytes` read at `ts` and decodes every whole frame into `readings`; true if
    /// any frame was valid. The port loop's whole per-read work, also driven by the
    /// in-process feed of `crate::loadgen::feed`.
    pub(crate) fn ingest(
        &mut self,
        bytes: &[u8],
        ts: TimestampNs,
        warming: bool,
        readings: &mut Vec<Reading>,
    ) -> bool {
        self.buf.extend_from_slice(bytes);
        self.drain(ts, warming, readings)
    }

    /// Decodes every whole frame in the buffer into `readings`; true if any frame was valid.
    /// Bad frames are counted per source; garbage the decoder resyncs over silently is not.
    pub(super) fn drain(
        &mut self,
        ts: TimestampNs,
        warming: bool,
        readings: &mut Vec<Reading>,
    ) -> bool {
        let mut any = false;
        while !self.buf.is_empty() {
            let consumed = match self.decoder.decode(&self.buf) {
                Step::Incomplete => break,
                Step::Frame { values, consumed } => {
                    any = true;
                    self.metrics
                        .messages
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    for v in &values {
                        self.accept(v.slot, v.value, ts, warming, readings);
                    }
                    consumed
                }
                Step::Skip { consumed, error } => {
                    if let Some(e) = error {
                        self.metrics.bad_input(&self.profile.model, &e);
                    }
                    consumed
                }
            };
            // The decoder promises 1..=len; clamping keeps a broken promise from looping or
            // panicking.
            let n = consumed.max(1).min(self.buf.len());
            self.buf.drain(..n);
        }
        any
    }

    /// One decoded value: dropped (and counted) during warm-up or outside its valid range.
    fn accept(&self, slot: u8, value: f64, ts: TimestampNs, warming: bool, out: &mut Vec<Reading>) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(series) = self.series.get(usize::from(slot)) else {
            return;
        };
        if warming {
            self.metrics.warmup_discarded.fetch_add(1, Relaxed);
            return;
        }
        if !self.profile.in_range(slot, value) {
            let quantity = self.profile.quantity(slot).map_or("", |q| q.name.as_str());
            self.metrics.out_of_range(quantity, value);
            return;
        }
        self.metrics.readings.fetch_add(1, Relaxed);
        out.push(Reading::received(*series, value, ts));
    }
}

impl SerialSource {
    /// Wake-up, then the init commands again: some units forget their mode while asleep.
    /// (The init commands of sleeping sensors already start with the wake-up.)
    fn wake_commands(&self) -> Vec<Vec<u8>> {
        let init = self.decoder.init_commands();
        match self.decoder.wake_command() {
            Some(wake) if init.first() != Some(&wake) => {
                std::iter::once(wake).chain(init).collect()
            }
            _ => init,
        }
    }
}

/// Sleep/work duty cycle state of one session (always awake without a cycle).
struct Duty {
    cycle: Option<DutyCycle>,
    asleep: bool,
    /// Start of the current work phase: warm-up counts from here.
    awake_since: Instant,
    next_switch: Option<Instant>,
}

impl Duty {
    fn new(cycle: Option<DutyCycle>, can_sleep: bool) -> Duty {
        let cycle = cycle.filter(|_| can_sleep);
        let now = Instant::now();
        Duty {
            cycle,
            asleep: false,
            awake_since: now,
            next_switch: cycle.map(|c| now + secs(c.work_secs)),
        }
    }

    async fn switch_due(&self) {
        match self.next_switch {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    }

    /// Flips between work and sleep; returns true when waking up.
    fn switch(&mut self) -> bool {
        let Some(c) = self.cycle else { return false };
        let now = Instant::now();
        self.asleep = !self.asleep;
        if self.asleep {
            self.next_switch = Some(now + secs(c.sleep_secs));
        } else {
            self.awake_since = now;
            self.next_switch = Some(now + secs(c.work_secs));
        }
        !self.asleep
    }
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

/// Sends `cmds` in order with a gap between them.
async fn send_all(port: &mut SerialStream, cmds: &[Vec<u8>]) -> Result<(), String> {
    for (i, cmd) in cmds.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(COMMAND_GAP).await;
        }
        write(port, cmd).await?;
    }
    Ok(())
}

/// Waits for the next poll tick; never completes for a free-running sensor.
async fn tick(poll: &mut Option<Interval>) {
    match poll {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn write(port: &mut SerialStream, bytes: &[u8]) -> Result<(), String> {
    match tokio::time::timeout(WRITE_TIMEOUT, port.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write: {e}")),
        Err(_) => Err(format!("write: no progress within {WRITE_TIMEOUT:?}")),
    }
}
