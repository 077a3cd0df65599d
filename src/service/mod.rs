//! Running the daemon as a service: metrics, health endpoint, systemd notification.

pub mod http;
pub mod metrics;
/// Reasons the spool gives points up, by the path integration tests know them.
pub use crate::sinks::spool_drops;
pub mod systemd;
