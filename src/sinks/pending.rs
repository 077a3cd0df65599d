//! Window batches the spool could not take yet (a disk error such as ENOSPC or EIO): kept in
//! memory, oldest first, and appended again before anything newer, so a transient disk
//! problem (logs filling the partition, an SD-card hiccup) loses nothing. Bounded by bytes:
//! past the bound the oldest batch is dropped and reported, exactly like a full spool.
//!
//! Pure bookkeeping; the retry loop that drives it is in `sinks/mod.rs`.

use std::collections::VecDeque;

use crate::pipeline::aggregate::WindowBatch;

/// Default bound of the in-memory queue: 8 MiB of line protocol (minutes of windows at
/// 1k series), small next to the daemon's RSS budget.
pub const PENDING_MAX_BYTES: usize = 8 << 20;

/// FIFO of batches waiting for the spool.
#[derive(Debug)]
pub struct Pending {
    queue: VecDeque<WindowBatch>,
    bytes: usize,
    max_bytes: usize,
}

impl Pending {
    pub fn new(max_bytes: usize) -> Pending {
        Pending {
            queue: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Queues `batch` behind the others; returns the (batches, points) dropped from the front
    /// to stay under the bound. The newest batch itself is always kept.
    pub fn push(&mut self, batch: WindowBatch) -> (u64, u64) {
        self.bytes += batch.payload.len();
        self.queue.push_back(batch);
        let mut dropped = (0u64, 0u64);
        while self.bytes > self.max_bytes && self.queue.len() > 1 {
            if let Some(old) = self.pop() {
                dropped.0 += 1;
                dropped.1 += u64::from(old.points);
            }
        }
        dropped
    }

    /// Puts a batch that failed again back at the front (its place in time order).
    pub fn push_front(&mut self, batch: WindowBatch) {
        self.bytes += batch.payload.len();
        self.queue.push_front(batch);
    }

    pub fn pop(&mut self) -> Option<WindowBatch> {
        let b = self.queue.pop_front()?;
        self.bytes -= b.payload.len();
        Some(b)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Points held (reported as lost if the daemon stops before the disk recovers).
    pub fn points(&self) -> u64 {
        self.queue.iter().map(|b| u64::from(b.points)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: u32, bytes: usize) -> WindowBatch {
        WindowBatch {
            payload: "x".repeat(bytes),
            points: n,
            min_ts: i64::from(n),
            max_ts: i64::from(n),
        }
    }

    #[test]
    fn keeps_order_and_drops_oldest_past_the_bound() {
        let mut p = Pending::new(250);
        assert_eq!(p.push(batch(1, 100)), (0, 0));
        assert_eq!(p.push(batch(2, 100)), (0, 0));
        // 300 bytes > 250: the oldest goes.
        assert_eq!(p.push(batch(3, 100)), (1, 1));
        assert_eq!(p.len(), 2);
        assert_eq!(p.points(), 5);
        let b = p.pop().unwrap();
        assert_eq!(b.points, 2);
        p.push_front(b);
        assert_eq!(p.pop().unwrap().points, 2);
        assert_eq!(p.pop().unwrap().points, 3);
        assert!(p.pop().is_none() && p.is_empty());
    }

    #[test]
    fn a_batch_larger_than_the_bound_is_still_kept_alone() {
        let mut p = Pending::new(10);
        assert_eq!(p.push(batch(1, 5)), (0, 0));
        assert_eq!(p.push(batch(7, 50)), (1, 1));
        assert_eq!(p.len(), 1);
        assert_eq!(p.points(), 7);
        assert_eq!(p.push(batch(2, 50)), (1, 7));
        assert_eq!(p.points(), 2);
    }
}
