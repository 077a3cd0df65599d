//! Running the daemon as a service: metrics, health endpoint, systemd notification, config
//! reload.

pub mod auth;
pub mod http;
pub mod metrics;
pub mod reload;
pub mod status;
/// Reasons the spool gives points up, by the path integration tests know them.
pub use crate::sinks::spool_drops;
pub mod systemd;

/// A heartbeat of the aggregator loop older than this means the loop is stuck: `/healthz`
/// answers 503 and the systemd watchdog is no longer pinged.
pub const STALE_AFTER_SECS: i64 = 10;
