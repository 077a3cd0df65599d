//! `[state]`: where the state file lives (`crate::state`) and how old a saved state may be
//! to be restored.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Outputs, SpoolConfig};

/// `[state]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Save counter totals, occupancy and learned sensor intervals at every window close and
    /// at stop, and restore them at start. Default: true (false with `output.api = "stdout"`
    /// and no `path`: nothing there is durable).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The state file. Default: `state.json` beside the spool directory, i.e.
    /// `$STATE_DIRECTORY/state.json` under systemd, else `/var/lib/citysense/state.json`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A state saved longer ago than this is discarded at start (logged): the counts made
    /// while the daemon was down would otherwise all land in one window. Occupancy re-bases
    /// daily anyway. Default: 86400 (24 h).
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
}

const fn default_true() -> bool {
    true
}
const fn default_max_age_secs() -> u64 {
    86_400
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            enabled: true,
            path: None,
            max_age_secs: default_max_age_secs(),
        }
    }
}

impl StateConfig {
    /// The state file in effect, `None` when state is off.
    pub fn file(&self, spool: &SpoolConfig, output: &Outputs) -> Option<PathBuf> {
        if !self.enabled {
            return None;
        }
        if let Some(p) = &self.path {
            return Some(p.clone());
        }
        if output.is_stdout() {
            return None;
        }
        let dir = spool.dir();
        let beside = dir.parent().unwrap_or(Path::new(""));
        Some(beside.join("state.json"))
    }

    pub(super) fn check(&self, errs: &mut Vec<(String, String)>) {
        if self.max_age_secs == 0 {
            errs.push(("state.max_age_secs".into(), "must be at least 1".into()));
        }
        if self.path.as_ref().is_some_and(|p| p.file_name().is_none()) {
            errs.push(("state.path".into(), "must name a file".into()));
        }
    }
}
