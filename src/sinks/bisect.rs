//! The plan of one uplink round: the spooled batches peeked for it, cut into requests, and
//! the bisection of any request the store refuses. Pure bookkeeping, no I/O.
//!
//! The batches' payloads are indexed by line (one point per line). Requests are ranges of
//! lines, sent smallest start first from a stack. When the store refuses a range as bad data
//! (400/422) or as too large (413), the range is split in two halves by line count and both
//! are sent again; a single line that is still refused is the one to dead-letter. Re-sending
//! points the store already has is harmless (same timestamps overwrite), which is what makes
//! splitting a partial write (InfluxDB 1.x stores the good points of a 400) safe.
//!
//! Cost and termination: every refusal either shrinks a range (halving, at most log2(n)
//! times per path) or resolves a single line, so a request of n lines with one bad line costs
//! about 2·log2(n) extra requests, k bad lines at most k times that, and a store that refuses
//! everything about 2n. That last case (a schema change refusing every point) is cut short by
//! the uplink when the store says how many points it dropped (InfluxDB's `dropped=N`): a
//! range whose every point was dropped is dead-lettered at once. Retries (5xx, 429, ...)
//! leave the range on the stack unchanged.
//!
//! Lines are resolved in order, so batches are acknowledged as soon as every line of theirs
//! is delivered or dead-lettered ([`Plan::ackable`]); a crash mid-plan re-sends only the rest.

use std::ops::Range;

use super::filter::LineFilter;
use crate::spool::Batch;

/// One point: its batch and its bytes (newline included) in that batch's payload.
#[derive(Debug, Clone, Copy)]
struct Line {
    batch: usize,
    start: usize,
    end: usize,
}

/// A request to send: slices of the batches' payloads, in order.
#[derive(Debug)]
pub struct Chunk<'a> {
    pub parts: Vec<&'a [u8]>,
    pub points: u64,
    pub bytes: usize,
}

/// The batches of one round and what is left to send of them.
#[derive(Debug)]
pub struct Plan {
    batches: Vec<Batch>,
    lines: Vec<Line>,
    /// For each batch, the index of the first line after it.
    batch_end: Vec<usize>,
    /// Line ranges still to send; the top has the smallest start.
    stack: Vec<Range<usize>>,
    /// Batches `[0, acked)` are acknowledged (or reported as such by `ackable`).
    acked: usize,
    /// A request was resolved or split: the plan holds progress worth keeping.
    touched: bool,
}

impl Plan {
    /// Indexes `batches` and cuts them into requests of at most `max_bytes` (a line longer
    /// than that still goes, alone).
    #[cfg(test)]
    pub fn new(batches: Vec<Batch>, max_bytes: usize) -> Plan {
        Plan::filtered(batches, max_bytes, &LineFilter::default())
    }

    /// [`Plan::new`] sending only the lines `filter` keeps; a batch left without lines is
    /// acknowledged at once (the output's filter refuses all of it).
    pub fn filtered(batches: Vec<Batch>, max_bytes: usize, filter: &LineFilter) -> Plan {
        let mut lines = Vec::new();
        let mut batch_end = Vec::with_capacity(batches.len());
        for (b, batch) in batches.iter().enumerate() {
            let mut start = 0;
            for piece in batch.payload.split_inclusive(|c| *c == b'\n') {
                let end = start + piece.len();
                // Blank lines carry no point; the store would not count them either.
                if !piece.iter().all(u8::is_ascii_whitespace) && filter.keeps(piece) {
                    lines.push(Line {
                        batch: b,
                        start,
                        end,
                    });
                }
                start = end;
            }
            batch_end.push(lines.len());
        }
        let mut ranges = cut(&lines, 0..lines.len(), max_bytes);
        ranges.reverse();
        Plan {
            batches,
            lines,
            batch_end,
            stack: ranges,
            acked: 0,
            touched: false,
        }
    }

    /// Nothing was resolved or split yet: after a failed attempt the caller may as well
    /// peek the spool again (newer batches then join the request).
    pub fn untouched(&self) -> bool {
        !self.touched
    }

    /// Nothing left to send.
    pub fn is_done(&self) -> bool {
        self.stack.is_empty()
    }

    /// The next request, if any.
    pub fn next(&self) -> Option<Chunk<'_>> {
        let range = self.stack.last()?;
        let lines = &self.lines[range.clone()];
        let mut parts = Vec::new();
        let mut i = 0;
        while let Some(first) = lines.get(i) {
            // Adjacent lines of one batch go as one slice (a filtered-out line between two
            // ends the slice).
            let mut end = first.start;
            let run = lines[i..]
                .iter()
                .take_while(|l| {
                    let adjacent = l.batch == first.batch && l.start == end;
                    end = l.end;
                    adjacent
                })
                .count();
            let last = lines[i + run - 1];
            parts.push(&self.batches[first.batch].payload[first.start..last.end]);
            i += run;
        }
        Some(Chunk {
            bytes: parts.iter().map(|p| p.len()).sum(),
            parts,
            points: lines.len() as u64,
        })
    }

    /// The next request is a single line: `(batch id, the line)`, for the dead-letter file.
    pub fn single(&self) -> Option<(u64, &[u8])> {
        let range = self.stack.last()?;
        if range.len() != 1 {
            return None;
        }
        let line = self.lines[range.start];
        let batch = &self.batches[line.batch];
        Some((batch.id, &batch.payload[line.start..line.end]))
    }

    /// The batch the next request starts in.
    pub fn first_batch_id(&self) -> Option<u64> {
        let line = self.lines.get(self.stack.last()?.start)?;
        Some(self.batches[line.batch].id)
    }

    /// The next request is done with (delivered, or its one line dead-lettered).
    pub fn resolved(&mut self) {
        self.touched = true;
        self.stack.pop();
    }

    /// Replaces the next request by its two halves; false (and nothing changes) when it is a
    /// single line, which cannot be split.
    pub fn split(&mut self) -> bool {
        let Some(range) = self.stack.last().cloned() else {
            return false;
        };
        if range.len() < 2 {
            return false;
        }
        let mid = range.start + range.len() / 2;
        self.touched = true;
        self.stack.pop();
        self.stack.push(mid..range.end);
        self.stack.push(range.start..mid);
        true
    }

    /// Cuts every range still to send into requests of at most `max_bytes` (after the limit
    /// shrank, so later requests do not each earn a 413 first). True if the next request
    /// was cut.
    pub fn fit(&mut self, max_bytes: usize) -> bool {
        let top = self.stack.last().cloned();
        let mut ranges: Vec<Range<usize>> = std::mem::take(&mut self.stack)
            .into_iter()
            .rev()
            .flat_map(|r| cut(&self.lines, r, max_bytes))
            .collect();
        ranges.reverse();
        self.stack = ranges;
        let cut_top = self.stack.last() != top.as_ref();
        self.touched |= cut_top;
        cut_top
    }

    /// The id up to which batches can be acknowledged now, if that moved since the last call:
    /// every line of those batches is resolved.
    pub fn ackable(&mut self) -> Option<u64> {
        let pending = self.stack.last().map_or(self.lines.len(), |r| r.start);
        let before = self.acked;
        while self
            .batch_end
            .get(self.acked)
            .is_some_and(|&e| e <= pending)
        {
            self.acked += 1;
        }
        (self.acked > before).then(|| self.batches[self.acked - 1].id)
    }
}

/// `range` cut greedily into consecutive ranges of at most `max_bytes` (a longer line alone).
fn cut(lines: &[Line], range: Range<usize>, max_bytes: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut first, mut bytes) = (range.start, 0);
    for i in range.clone() {
        let len = lines[i].end - lines[i].start;
        if i > first && bytes + len > max_bytes {
            out.push(first..i);
            (first, bytes) = (i, 0);
        }
        bytes += len;
    }
    if first < range.end {
        out.push(first..range.end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(id: u64, lines: &[&str]) -> Batch {
        let payload: String = lines.iter().map(|l| format!("{l}\n")).collect();
        Batch {
            id,
            points: lines.len() as u32,
            min_ts: 0,
            max_ts: 0,
            payload: payload.into_bytes(),
        }
    }

    fn text(c: &Chunk) -> String {
        c.parts
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    /// Drives a plan against a store that refuses every request holding a line in `bad`;
    /// returns (requests sent, lines dead-lettered, acks seen).
    fn drive(mut plan: Plan, bad: &[&str]) -> (usize, Vec<String>, Vec<u64>) {
        let (mut sent, mut dead, mut acks) = (0, Vec::new(), Vec::new());
        while let Some(c) = plan.next() {
            sent += 1;
            assert!(sent < 10_000, "loops");
            let body = text(&c);
            if body.lines().any(|l| bad.contains(&l)) {
                if !plan.split() {
                    let (_, line) = plan.single().expect("a single line");
                    dead.push(String::from_utf8_lossy(line).trim_end().to_string());
                    plan.resolved();
                }
            } else {
                plan.resolved();
            }
            acks.extend(plan.ackable());
        }
        (sent, dead, acks)
    }

    #[test]
    fn one_bad_line_costs_log_n_requests_and_only_it_is_dead() {
        let lines: Vec<String> = (0..1024).map(|i| format!("m v={i}")).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let batches: Vec<Batch> = refs
            .chunks(64)
            .zip(1..)
            .map(|(c, id)| batch(id, c))
            .collect();
        let plan = Plan::new(batches, usize::MAX);
        let (sent, dead, acks) = drive(plan, &["m v=700"]);
        assert_eq!(dead, ["m v=700"]);
        // 1 refused + 2 per level of a 1024-line bisection.
        assert_eq!(sent, 1 + 2 * 10);
        assert_eq!(acks.last(), Some(&16));
        assert!(acks.windows(2).all(|w| w[0] < w[1]), "{acks:?}");
    }

    #[test]
    fn every_line_bad_terminates_and_dead_letters_all() {
        let plan = Plan::new(vec![batch(1, &["a", "b", "c"]), batch(2, &["d"])], 1 << 20);
        let (sent, dead, acks) = drive(plan, &["a", "b", "c", "d"]);
        assert_eq!(dead, ["a", "b", "c", "d"]);
        assert_eq!(sent, 7);
        assert_eq!(acks, [1, 2]);
    }

    #[test]
    fn requests_respect_max_bytes_and_slices_join_batches() {
        // "m v=1\n" is 6 bytes: 13 bytes fit two lines.
        let plan = Plan::new(
            vec![batch(1, &["m v=1", "m v=2", "m v=3"]), batch(2, &["m v=4"])],
            13,
        );
        let c = plan.next().unwrap();
        assert_eq!(
            (text(&c).as_str(), c.points, c.parts.len()),
            ("m v=1\nm v=2\n", 2, 1)
        );
        let mut plan = plan;
        plan.resolved();
        let c = plan.next().unwrap();
        assert_eq!(
            (text(&c).as_str(), c.parts.len(), c.bytes),
            ("m v=3\nm v=4\n", 2, 12)
        );
        plan.resolved();
        assert!(plan.is_done());
        assert_eq!(plan.ackable(), Some(2));
        assert_eq!(plan.ackable(), None);
    }

    #[test]
    fn a_line_longer_than_max_goes_alone_and_blank_batches_ack() {
        let long = "m v=\"".to_string() + &"x".repeat(100) + "\"";
        let mut plan = Plan::new(vec![batch(1, &[]), batch(2, &[&long, "m v=2"])], 10);
        assert_eq!(plan.ackable(), Some(1), "an empty batch needs no request");
        assert_eq!(plan.next().unwrap().points, 1);
        assert!(!plan.split());
        assert!(plan.single().is_some());
        plan.resolved();
        assert_eq!(plan.ackable(), None);
        assert_eq!(text(&plan.next().unwrap()), "m v=2\n");
        plan.resolved();
        assert_eq!(plan.ackable(), Some(2));
    }

    #[test]
    fn fit_recuts_what_is_left_to_the_new_limit() {
        let mut plan = Plan::new(
            vec![
                batch(1, &["m v=1", "m v=2", "m v=3"]),
                batch(2, &["m v=4", "m v=5"]),
            ],
            1 << 20,
        );
        assert_eq!(plan.next().unwrap().points, 5);
        assert!(plan.fit(12), "the next request was cut");
        let mut sizes = Vec::new();
        while let Some(c) = plan.next() {
            sizes.push(c.points);
            plan.resolved();
        }
        assert_eq!(sizes, [2, 2, 1]);
        let mut plan = Plan::new(vec![batch(1, &["m v=1"])], 1 << 20);
        assert!(!plan.fit(4), "a single line cannot be cut");
        assert!(plan.untouched());
    }

    #[test]
    fn a_payload_without_final_newline_keeps_its_last_line() {
        let b = Batch {
            id: 5,
            points: 2,
            min_ts: 0,
            max_ts: 0,
            payload: b"m v=1\nm v=2".to_vec(),
        };
        let plan = Plan::new(vec![b], 1 << 20);
        let c = plan.next().unwrap();
        assert_eq!((c.points, text(&c).as_str()), (2, "m v=1\nm v=2"));
    }

    #[test]
    fn a_filter_sends_only_its_lines_and_acks_batches_it_refuses_whole() {
        let f = LineFilter::new(Some(crate::config::OutputFilter {
            measurements: vec!["air_quality".into()],
            tags: Default::default(),
        }));
        let batches = vec![
            batch(1, &["footfall in=1i 1"]),
            batch(
                2,
                &["air_quality v=1 1", "footfall in=2i 1", "air_quality v=2 1"],
            ),
        ];
        let mut plan = Plan::filtered(batches, 1 << 20, &f);
        assert_eq!(
            plan.ackable(),
            Some(1),
            "batch 1 has nothing for this output"
        );
        let c = plan.next().unwrap();
        assert_eq!(text(&c), "air_quality v=1 1\nair_quality v=2 1\n");
        assert_eq!(c.points, 2);
        plan.resolved();
        assert_eq!(plan.ackable(), Some(2));
        assert!(plan.is_done());
        let mut none = Plan::filtered(vec![batch(3, &["footfall in=1i 1"])], 1 << 20, &f);
        assert!(none.is_done() && none.next().is_none());
        assert_eq!(none.ackable(), Some(3));
    }
}
