//! The integration tests, as one test binary: each file under `tests/it/` is a module, so the
//! crate and `tests/support/` are compiled and linked once instead of once per file. Tests run
//! on parallel threads of this one process, so none may change process-wide state (environment,
//! current directory, the global `tracing` subscriber, the allocator); tests that must
//! (`tests/it_logs/`, `tests/alloc.rs`) live in their own binaries.

#[path = "../support/mod.rs"]
mod support;

mod air_quality_periods;
mod arch;
mod cli;
mod clock;
mod dashboards;
mod domain_aq;
mod firmware_config;
mod gateway_health;
mod harness_smoke;
mod health;
mod hostile_mqtt;
mod late_data;
mod layers;
mod mqtt_output;
mod mqtt_source;
mod mqtt_stop;
mod outputs;
mod outputs_outage;
mod packaging;
mod pipeline;
mod reload;
mod serial;
mod sizes;
mod soak;
mod spool_corruption;
mod spool_daemon;
mod spool_disk_full;
mod spool_recovery;
mod state;
mod status_api;
mod status_auth;
mod status_page;
mod store_outage;
mod store_tls;
mod systemd_unit;
mod ttn;
mod uplink_faults;
mod validate_files;
