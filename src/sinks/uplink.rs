//! The uplink task: sends the spool's oldest batches to the store, oldest first, and
//! acknowledges them only after a 2xx (or after their refused points went to the
//! dead-letter file). The retry policy per answer is in [`classify`](super::influx::classify);
//! the waits, the splitting of refused requests ([`Plan`]) and the request size limit
//! (halved by each 413, see [`Uplink::shrink`]) are here.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::bisect::Plan;
use super::events::{Progress, SinkEvents};
use super::filter::LineFilter;
use super::influx::{Outcome, Writer};
use super::{lock, DeadReason, SharedSpool, DRAIN_DEADLINE};
use crate::spool::{dead_letter, Batch};

/// Sends spooled batches; cheap to clone (shared state behind `Arc`).
#[derive(Clone)]
pub struct Uplink {
    inner: Arc<Inner>,
}

struct Inner {
    /// Replaced by a reload ([`Uplink::reconfigure`]); a request holds its own `Arc`.
    writer: Mutex<Arc<Writer>>,
    spool: SharedSpool,
    events: Arc<SinkEvents>,
    max_backoff_ms: AtomicU64,
    /// Starts at the configured size; halved by a 413 (see [`Uplink::shrink`]).
    max_request_bytes: AtomicUsize,
    dir: PathBuf,
    /// The output's `filter`; replaced by a reload like the writer.
    filter: Mutex<Arc<LineFilter>>,
    /// This output's number in the spool (its delivery position) and its name.
    out: usize,
    name: String,
}

/// Shortest wait after a failed attempt; doubles up to `max_backoff`.
const BASE_BACKOFF: Duration = Duration::from_millis(500);
/// Floor of the request size a 413 can shrink it to (also the smallest configurable).
pub const MIN_REQUEST_BYTES: usize = 4096;

impl Uplink {
    pub fn new(
        writer: Writer,
        spool: SharedSpool,
        events: Arc<SinkEvents>,
        max_backoff: Duration,
        max_request_bytes: usize,
        dir: PathBuf,
    ) -> Uplink {
        let max_request_bytes = max_request_bytes.max(MIN_REQUEST_BYTES);
        events.request_limit(max_request_bytes);
        Uplink {
            inner: Arc::new(Inner {
                writer: Mutex::new(Arc::new(writer)),
                spool,
                events,
                max_backoff_ms: AtomicU64::new(millis(max_backoff)),
                max_request_bytes: AtomicUsize::new(max_request_bytes),
                dir,
                filter: Mutex::new(Arc::new(LineFilter::default())),
                out: 0,
                name: crate::spool::DEFAULT_OUTPUT.to_string(),
            }),
        }
    }

    /// A reload's output settings: later requests go through `writer` (store URL, API,
    /// credentials, re-read from their files), waits and request sizes follow the new limits. The spool and the batch
    /// being sent stay: a batch is acknowledged only by the store that took it.
    /// `max_request_bytes`: `None` keeps the limit in force (possibly lowered by a 413).
    pub fn reconfigure(
        &self,
        writer: Writer,
        max_backoff: Duration,
        max_request_bytes: Option<usize>,
    ) {
        let url = writer.url().to_string();
        *self.inner.writer.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(writer);
        (self.inner.max_backoff_ms).store(millis(max_backoff), Relaxed);
        if let Some(limit) = max_request_bytes {
            let limit = limit.max(MIN_REQUEST_BYTES);
            (self.inner.max_request_bytes).store(limit, Relaxed);
            self.inner.events.request_limit(limit);
        }
        tracing::info!(url, "uplink took the reloaded output settings");
    }

    /// This uplink delivers spool output number `out`, named `name` (0 and `default`
    /// unless set, before it runs).
    pub fn for_output(mut self, out: usize, name: &str) -> Uplink {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.out = out;
            inner.name = name.to_string();
        }
        self
    }

    /// Sends only the lines `filter` keeps from the next request planned on.
    pub fn set_filter(&self, filter: LineFilter) {
        *self.inner.filter.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(filter);
    }

    fn filter(&self) -> Arc<LineFilter> {
        let f = self.inner.filter.lock().unwrap_or_else(|e| e.into_inner());
        f.clone()
    }

    fn writer(&self) -> Arc<Writer> {
        self.inner
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.inner.max_backoff_ms.load(Relaxed))
    }

    /// Where the sink's events are counted and logged.
    pub fn events(&self) -> &SinkEvents {
        &self.inner.events
    }

    /// Copies the spool's size and this output's backlog into the metrics.
    pub fn publish_stats(&self) {
        super::delivery::publish_stats(&self.inner.spool, &self.inner.events, self.inner.out);
    }

    /// Runs until `stop`, then keeps sending for at most [`DRAIN_DEADLINE`] while there is
    /// something to send, leaving the rest in the spool for the next start.
    pub async fn run(self, wake: Arc<Notify>, stop: CancellationToken) {
        let mut failures: u32 = 0;
        let mut deadline: Option<Instant> = None;
        let mut plan: Option<Plan> = None;
        let ev = &*self.inner.events;
        let mut progress = Progress::new(ev);
        loop {
            if deadline.is_none() && stop.is_cancelled() {
                deadline = Some(Instant::now() + DRAIN_DEADLINE);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                ev.drain_deadline_reached();
                return;
            }
            let p = match plan.as_mut() {
                Some(p) => p,
                None => match self.peek().await {
                    Some(b) if !b.is_empty() => {
                        let filter = self.filter();
                        plan.insert(Plan::filtered(b, self.max_bytes(), &filter))
                    }
                    _ => {
                        if deadline.is_some() {
                            return;
                        }
                        tokio::select! {
                            _ = wake.notified() => {}
                            _ = stop.cancelled() => {}
                            // The spool may have been filled while a notification was missed.
                            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                        }
                        continue;
                    }
                },
            };
            let wait = self.send(p, &mut failures).await;
            if let Some(id) = p.ackable() {
                self.ack(id).await;
            }
            // A request that failed as a whole is peeked again next time, so newer batches
            // join it and batches the full spool dropped meanwhile are not re-sent.
            if p.is_done() || (wait.is_some() && p.untouched()) {
                plan = None;
            }
            progress.tick(ev);
            if let Some(wait) = wait {
                let wait = match deadline {
                    Some(d) => wait.min(d.saturating_duration_since(Instant::now())),
                    None => wait,
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled(), if deadline.is_none() => {}
                }
            }
        }
    }

    /// The request size limit in force (the configured one until a 413 halves it).
    fn max_bytes(&self) -> usize {
        self.inner.max_request_bytes.load(Relaxed)
    }

    async fn peek(&self) -> Option<Vec<Batch>> {
        let spool = self.inner.spool.clone();
        let max = self.max_bytes();
        let out = self.inner.out;
        let res = tokio::task::spawn_blocking(move || lock(&spool).peek_many_for(out, max)).await;
        match res {
            Ok(Ok(b)) => Some(b),
            Ok(Err(e)) => {
                self.inner.events.spool_read_failed(&e);
                tokio::time::sleep(Duration::from_secs(1)).await;
                None
            }
            Err(_) => None,
        }
    }

    /// Sends the plan's next request and moves the plan on; returns how long to wait before
    /// the next attempt, if at all.
    async fn send(&self, plan: &mut Plan, failures: &mut u32) -> Option<Duration> {
        let inner = &self.inner;
        let ev = &inner.events;
        let started = std::time::Instant::now();
        let (outcome, points, bytes) = match plan.next() {
            Some(c) => (self.writer().write(&c.parts).await, c.points, c.bytes),
            None => return None,
        };
        if outcome == Outcome::Written {
            ev.request_ok(started.elapsed(), points, bytes, *failures);
        } else {
            ev.request_failed(started.elapsed());
        }
        match outcome {
            Outcome::Written => {
                *failures = 0;
                plan.resolved();
                None
            }
            Outcome::BadData {
                status,
                body,
                dropped,
            } => {
                let why = format!("HTTP {status}: {body}");
                // The store says it refused every point: no need to look for the bad ones.
                if dropped == Some(points) && points > 1 {
                    self.dead_letter_all(plan, &why).await;
                } else {
                    self.refused(plan, DeadReason::BadData, &why).await;
                }
                None
            }
            Outcome::TooLarge => {
                // A lone point tells nothing about the limit; a bigger request does.
                if plan.single().is_none() {
                    self.shrink(bytes);
                    if plan.fit(self.max_bytes()) {
                        ev.split();
                        return None;
                    }
                }
                let why = "HTTP 413: point too large for the store";
                self.refused(plan, DeadReason::TooLarge, why).await;
                None
            }
            other => Some(self.wait_after(other, failures)),
        }
    }

    /// The wait after an answer that keeps the request as it is (retry or operator error).
    fn wait_after(&self, outcome: Outcome, failures: &mut u32) -> Duration {
        let inner = &self.inner;
        let (writer, max_backoff) = (self.writer(), self.max_backoff());
        let url = writer.url();
        *failures = failures.saturating_add(1);
        match outcome {
            Outcome::Retry { after, reason } => {
                let backoff = crate::backoff::backoff(
                    *failures - 1,
                    BASE_BACKOFF,
                    max_backoff,
                    fastrand::f64(),
                );
                // max(backoff, Retry-After), capped so a silly header cannot stall us for hours.
                let wait = backoff.max(after.unwrap_or_default()).min(max_backoff);
                inner.events.retry(url, &reason, wait);
                wait
            }
            Outcome::Redirect { status, location } => {
                inner.events.redirect_ignored(url, status, &location);
                max_backoff
            }
            Outcome::Operator { status, body } => {
                inner.events.operator_error(url, status, &body);
                max_backoff
            }
            Outcome::Tls { failure, detail } => {
                inner.events.tls_refused(url, failure, &detail);
                max_backoff
            }
            Outcome::Written | Outcome::BadData { .. } | Outcome::TooLarge => BASE_BACKOFF,
        }
    }

    /// The store refused the plan's next request: split it, or dead-letter its one point.
    async fn refused(&self, plan: &mut Plan, reason: DeadReason, why: &str) {
        if plan.split() {
            self.inner.events.split();
            return;
        }
        if let Some((id, line)) = plan.single() {
            let batch = Batch {
                id,
                points: 1,
                min_ts: 0,
                max_ts: 0,
                payload: line.to_vec(),
            };
            self.dead_letter(batch, reason, why).await;
        }
        plan.resolved();
    }

    /// Dead-letters every point of the plan's next request (the store refused them all).
    async fn dead_letter_all(&self, plan: &mut Plan, why: &str) {
        if let (Some(chunk), Some(id)) = (plan.next(), plan.first_batch_id()) {
            let batch = Batch {
                id,
                points: u32::try_from(chunk.points).unwrap_or(u32::MAX),
                min_ts: 0,
                max_ts: 0,
                payload: chunk.parts.concat(),
            };
            self.dead_letter(batch, DeadReason::BadData, why).await;
        }
        plan.resolved();
    }

    /// After a 413 to a request of `bytes` (two points or more): later requests stay below half
    /// of it (not below [`MIN_REQUEST_BYTES`]) for the rest of the run. A body limit is a fixed setting of the
    /// store or a proxy, so probing upwards again would only earn more 413s.
    fn shrink(&self, bytes: usize) {
        let cur = self.max_bytes();
        let new = (bytes / 2).max(MIN_REQUEST_BYTES);
        if new < cur {
            self.inner.max_request_bytes.store(new, Relaxed);
            let writer = self.writer();
            self.inner
                .events
                .request_limit_shrunk(writer.url(), bytes, new);
        }
    }

    async fn ack(&self, last: u64) {
        let spool = self.inner.spool.clone();
        let out = self.inner.out;
        match tokio::task::spawn_blocking(move || lock(&spool).ack_for(out, last)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.inner.events.ack_failed(&e),
            Err(e) => self.inner.events.ack_task_failed(&e),
        }
        self.publish_stats();
    }

    /// Moves points the store refused to the dead-letter file (counted and logged by reason).
    async fn dead_letter(&self, batch: Batch, reason: DeadReason, why: &str) {
        let inner = &self.inner;
        inner.events.dead_lettered(reason, batch.points, why);
        let dir = inner.dir.clone();
        // The file is shared: say which output's store refused the points.
        let why = match inner.name.as_str() {
            crate::spool::DEFAULT_OUTPUT => why.to_string(),
            name => format!("output {name}: {why}"),
        };
        match tokio::task::spawn_blocking(move || dead_letter(&dir, &batch, &why)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => inner.events.dead_letter_write_failed(&e),
            Err(e) => inner.events.dead_letter_task_failed(&e),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
