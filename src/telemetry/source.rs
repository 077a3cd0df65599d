//! Counters of one source (an MQTT broker, a serial port). The source fills them; the
//! aggregator reads them for the `sensor_health` source points (the source gives it the
//! handle at build time) and `service` renders them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use super::{RateLimit, Rejects};

/// See the module doc.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    pub name: String,
    pub kind: &'static str,
    pub messages: AtomicU64,
    pub readings: AtomicU64,
    pub bad_input: AtomicU64,
    pub connected: AtomicI64,
    pub reconnects: AtomicU64,
    /// Payloads skipped on purpose (TTN console-simulated uplinks).
    pub skipped: AtomicU64,
    bad_input_log: RateLimit,
    /// Serial: readings discarded while the sensor warmed up after its port (re)opened.
    pub warmup_discarded: AtomicU64,
    /// Serial: readings outside the sensor profile's valid range.
    pub out_of_range: AtomicU64,
    out_of_range_log: RateLimit,
    /// Too-large messages, unusable keys, series-limit drops: see `rejects.rs`.
    pub rejects: Rejects,
}

impl SourceMetrics {
    pub fn new(kind: &'static str, name: &str) -> SourceMetrics {
        SourceMetrics {
            name: name.to_string(),
            kind,
            ..Default::default()
        }
    }

    /// A payload or frame that could not be used: counted, logged rate-limited.
    pub fn bad_input(&self, origin: &str, error: &dyn std::fmt::Display) {
        self.bad_input.fetch_add(1, Relaxed);
        if let Some(suppressed) = self.bad_input_log.check() {
            tracing::warn!(source = %self.name, origin, %error, suppressed, "bad input skipped");
        }
    }

    /// A reading outside its profile's valid range: counted, logged rate-limited.
    pub fn out_of_range(&self, quantity: &str, value: f64) {
        self.out_of_range.fetch_add(1, Relaxed);
        if let Some(suppressed) = self.out_of_range_log.check() {
            tracing::warn!(source = %self.name, quantity, value, suppressed, "reading outside the valid range dropped");
        }
    }

    pub fn set_connected(&self, up: bool) {
        self.connected.store(i64::from(up), Relaxed);
    }
}
