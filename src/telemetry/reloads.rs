//! The running config's identity and the outcome of every reload:
//! `citysense_config_reloads_total{result="ok|invalid|refused"}` and
//! `citysense_config_info{hash="..."} 1`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use super::expose;

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// Applied.
    Ok,
    /// The file did not load or validate; the running config stays.
    Invalid,
    /// Valid, but it changes settings that need a restart; the running config stays.
    Refused,
}

impl ReloadResult {
    pub const ALL: [ReloadResult; 3] = [Self::Ok, Self::Invalid, Self::Refused];

    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Invalid => "invalid",
            Self::Refused => "refused",
        }
    }
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct ConfigMetrics {
    reloads: [AtomicU64; 3],
    /// [`crate::config::config_hash`] of the running config's file; empty when it came from
    /// no file (the demo, tests).
    hash: Mutex<String>,
}

impl ConfigMetrics {
    pub fn reloaded(&self, result: ReloadResult) {
        self.reloads[result as usize].fetch_add(1, Relaxed);
    }

    pub fn reload_count(&self, result: ReloadResult) -> u64 {
        self.reloads[result as usize].load(Relaxed)
    }

    pub fn set_hash(&self, hash: &str) {
        *self.hash.lock().unwrap_or_else(|e| e.into_inner()) = hash.to_string();
    }

    pub fn hash(&self) -> String {
        self.hash.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Describes these metrics for `/metrics`.
    pub fn encode(&self, e: &mut expose::Encoder) -> expose::Encoded {
        let rows = ReloadResult::ALL.map(|r| ([("result", r.label())], self.reload_count(r)));
        expose::counters(
            e,
            "citysense_config_reloads",
            "Config reloads (SIGHUP), by result: ok, invalid (not loaded), refused (needs a restart).",
            rows,
        )?;
        let hash = self.hash();
        if hash.is_empty() {
            return Ok(());
        }
        expose::gauges(
            e,
            "citysense_config_info",
            "The running config: hash is the start of the file's SHA-256 (as sha256sum prints it).",
            [([("hash", hash)], 1i64)],
        )
    }
}
