//! Integration tests that read the log: they install the one global `tracing` subscriber that
//! captures every line at TRACE (`support::logs`). They have a binary of their own so that the
//! other tests do not format TRACE lines into that buffer, and the log a test reads holds only
//! these few tests' lines.

#[path = "../support/mod.rs"]
mod support;

mod privacy;
mod store_tls;
mod uplink_split;
