//! The last warnings and errors of the log, for the status page: a bounded ring
//! ([`CAPACITY`] entries of at most [`MAX_MESSAGE_CHARS`] characters) fed by a `tracing`
//! layer ([`RingLayer`]) that the binary adds to its subscriber. It holds what the log already
//! says (the privacy rules keep device identifiers and secrets out of every log line), never
//! more, and nothing below WARN.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Entries kept.
pub const CAPACITY: usize = 50;
/// Longest message kept, in characters (the rest is cut, marked with `…`).
pub const MAX_MESSAGE_CHARS: usize = 400;

/// One log event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogEntry {
    /// Wall time, seconds since the epoch.
    pub ts: i64,
    /// `"WARN"` or `"ERROR"`.
    pub level: &'static str,
    /// The message, then the event's fields as `key=value`.
    pub message: String,
}

/// The ring.
#[derive(Debug, Default)]
pub struct LogRing {
    entries: Mutex<VecDeque<LogEntry>>,
}

impl LogRing {
    /// The process's ring (the log is process-wide, so is its tail).
    pub fn global() -> &'static LogRing {
        static RING: OnceLock<LogRing> = OnceLock::new();
        RING.get_or_init(LogRing::default)
    }

    pub fn push(&self, entry: LogEntry) {
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if e.len() == CAPACITY {
            e.pop_front();
        }
        e.push_back(entry);
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> Vec<LogEntry> {
        let e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        e.iter().cloned().collect()
    }
}

/// The layer that copies WARN and ERROR events into [`LogRing::global`].
#[derive(Debug, Default, Clone, Copy)]
pub struct RingLayer;

impl<S: Subscriber> Layer<S> for RingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        LogRing::global().push(LogEntry {
            ts: crate::reading::now_ns() / crate::reading::NANOS_PER_SEC,
            level: if level == Level::ERROR {
                "ERROR"
            } else {
                "WARN"
            },
            message: text.finish(),
        });
    }
}

/// The message and fields of one event, bounded.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn finish(mut self) -> String {
        if !self.fields.is_empty() {
            self.message.push_str(&self.fields);
        }
        match self.message.char_indices().nth(MAX_MESSAGE_CHARS) {
            Some((cut, _)) => {
                self.message.truncate(cut);
                self.message.push('…');
                self.message
            }
            None => self.message,
        }
    }
}

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // Bounded as it grows: a huge field must not make a huge string first.
        if self.message.len() + self.fields.len() > 4 * MAX_MESSAGE_CHARS {
            return;
        }
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn keeps_the_last_warnings_and_errors_bounded() {
        let subscriber = tracing_subscriber::registry().with(RingLayer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not kept");
            for i in 0..(CAPACITY + 5) {
                tracing::warn!(n = i, "ring test warning");
            }
            tracing::error!(detail = %"é".repeat(2 * MAX_MESSAGE_CHARS), "ring test error");
        });
        let got: Vec<LogEntry> = (LogRing::global().entries().into_iter())
            .filter(|e| e.message.starts_with("ring test"))
            .collect();
        assert!(got.len() <= CAPACITY);
        assert!(!got.iter().any(|e| e.message.contains("not kept")));
        let last = got.last().expect("entries");
        assert_eq!(last.level, "ERROR");
        assert!(last.message.chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert!(last.message.ends_with('…'));
        assert!(got.iter().any(|e| e.message == "ring test warning n=54"));
    }
}
